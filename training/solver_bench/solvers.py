"""The eight solver settings the suites compare: BPGrad (mu = 0, 0.9) and torch.optim's SGD (mu = 0, 0.9),
Adam, RMSProp, Adagrad and Adadelta."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from bin_perception.optim import BPGrad


@dataclass(frozen=True)
class Solver:
    key: str
    label: str
    rate: str  # the hyper-parameter a grid tunes: "lr", or "L" for BPGrad


SOLVERS = (
    Solver("sgd", "SGD μ=0", "lr"),
    Solver("sgd-m", "SGD μ=0.9", "lr"),
    Solver("adam", "Adam", "lr"),
    Solver("rmsprop", "RMSProp", "lr"),
    Solver("adagrad", "Adagrad", "lr"),
    Solver("adadelta", "Adadelta", "lr"),
    Solver("bpgrad", "BPGrad μ=0", "L"),
    Solver("bpgrad-m", "BPGrad μ=0.9", "L"),
)
SOLVER_BY_KEY = {s.key: s for s in SOLVERS}


def make_optimizer(key: str, params: Iterable[Tensor], rate: float, **options: Any) -> torch.optim.Optimizer:
    """Solver ``key`` with ``rate`` (its learning rate, or BPGrad's L) and its other ``options``."""
    match key:
        case "sgd":
            return torch.optim.SGD(params, lr=rate, momentum=0.0, **options)
        case "sgd-m":
            return torch.optim.SGD(params, lr=rate, momentum=0.9, **options)
        case "adam":
            return torch.optim.Adam(params, lr=rate, **options)
        case "rmsprop":
            return torch.optim.RMSprop(params, lr=rate, **options)
        case "adagrad":
            return torch.optim.Adagrad(params, lr=rate, **options)
        case "adadelta":
            return torch.optim.Adadelta(params, lr=rate, **options)
        case "bpgrad":
            return BPGrad(params, lipschitz=rate, momentum=0.0, **options)
        case "bpgrad-m":
            return BPGrad(params, lipschitz=rate, momentum=0.9, **options)
    raise ValueError(f"unknown solver {key!r}; the solvers are {', '.join(SOLVER_BY_KEY)}")


def take_step(optimizer: torch.optim.Optimizer, loss: Tensor) -> None:
    """One step from the gradients in ``.grad``; BPGrad also takes f(x_t)."""
    if isinstance(optimizer, BPGrad):
        optimizer.step(loss=loss.detach())
    else:
        optimizer.step()


def start_epoch(optimizer: torch.optim.Optimizer) -> None:
    """Tell BPGrad that an epoch starts (its running-mean option needs it); other solvers need not know."""
    if isinstance(optimizer, BPGrad):
        optimizer.start_epoch()


def log_grid(low_exponent: float, high_exponent: float, per_decade: int = 2) -> list[float]:
    """10^low .. 10^high, ``per_decade`` points a decade, rounded to 3 significant figures."""
    count = round((high_exponent - low_exponent) * per_decade) + 1
    return [float(f"{10 ** (low_exponent + i / per_decade):.3g}") for i in range(count)]


# The authors' MatConvNet code's departures from the thesis's Alg. 2 (see BPGrad), one at a time and together.
VARIANTS: dict[str, dict[str, bool]] = {
    "eta outside the momentum": {"eta_outside_momentum": True},
    "f = the epoch's running mean loss": {"epoch_mean_loss": True},
    "norm before weight decay": {"norm_before_decay": True},
    "all three (the official code)": {"eta_outside_momentum": True, "epoch_mean_loss": True, "norm_before_decay": True},
}
