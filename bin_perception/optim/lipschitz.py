"""An empirical Lipschitz constant for BPGrad (Wu 2019, Sec. 3.4.1, Eq. 3.17)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from tqdm import tqdm

__all__ = ["LipschitzEstimate", "estimate_lipschitz"]


@dataclass(frozen=True)
class LipschitzEstimate:
    """The distribution of Eq. 3.17's ratios, and the L it suggests."""

    ratios: Tensor  # |f(x_i) - f(x_j)| / ||x_i - x_j||_2 over every pair i < j of copies, ascending
    objectives: Tensor  # f(x_i) of each copy, on its mini-batch
    percentile: float  # where in the distribution `suggested` sits, in [0, 100]

    @property
    def suggested(self) -> float:
        """L at ``percentile`` of the ratios: a value that "surpasses a threshold on the distribution"."""
        return self.quantile(self.percentile)

    def quantile(self, percentile: float) -> float:
        """The ratio at ``percentile``, interpolated linearly between the sorted ratios."""
        position = percentile / 100 * (len(self.ratios) - 1)
        below = int(position)
        above = min(below + 1, len(self.ratios) - 1)
        weight = position - below
        return float((1 - weight) * self.ratios[below] + weight * self.ratios[above])


def _redraw_parameters(model: nn.Module) -> None:
    for module in model.modules():
        reset = getattr(module, "reset_parameters", None)
        if callable(reset):
            reset()


@torch.no_grad()
def estimate_lipschitz(
    model: nn.Module,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    batches: Iterable[tuple[Tensor, Tensor]],
    copies: int = 600,
    *,
    percentile: float = 90.0,
    init: Callable[[nn.Module], None] = _redraw_parameters,
    progress: bool = True,
) -> LipschitzEstimate:
    """Sec. 3.4.1: draw ``copies`` random initial parameter vectors, each with its own mini-batch, and
    return |f(x_i) - f(x_j)| / ||x_i - x_j||_2 over every pair (Eq. 3.17).

    Args:
        model: the network. It is left as it was: its parameters and buffers are restored.
        loss_fn: ``loss_fn(model(inputs), targets)`` is the objective f, a scalar.
        batches: (inputs, targets) pairs, e.g. a shuffled DataLoader; copy i takes the i-th, and an
            iterable that runs out is iterated again.
        copies: how many random parameter vectors (the thesis: 600 on MNIST, one epoch's batches).
        percentile: where in the ratios the suggested L sits.
        init: redraws the model's parameters in place, from torch's global generator; by default
            every submodule's ``reset_parameters()``, i.e. the model's own initialisation.
        progress: show a progress bar.

    The copies are kept as one (copies, parameters) float32 matrix, copies x 4 bytes per parameter.
    f is evaluated in the model's current mode: call ``model.train()`` first for the training objective.
    """
    if copies < 2:
        raise ValueError(f"need at least 2 copies for a pair, got {copies}")
    if not 0 <= percentile <= 100:
        raise ValueError(f"percentile must be in [0, 100], got {percentile}")
    saved = copy.deepcopy(model.state_dict())
    params = [p for p in model.parameters()]
    vectors = torch.empty(copies, sum(p.numel() for p in params), dtype=torch.float32)
    objectives = torch.empty(copies, dtype=torch.float64)
    stream = iter(batches)
    try:
        for i in tqdm(range(copies), desc="Lipschitz copies", disable=not progress):
            batch = next(stream, None)
            if batch is None:
                stream = iter(batches)
                batch = next(stream, None)
                if batch is None:
                    raise ValueError(f"batches ran out after {i} copies and cannot be iterated again")
            inputs, targets = batch
            init(model)
            objectives[i] = float(loss_fn(model(inputs), targets))
            vectors[i] = torch.cat([p.detach().reshape(-1).float().cpu() for p in params])
    finally:
        model.load_state_dict(saved)
    distances = torch.cdist(vectors, vectors)
    upper = torch.triu_indices(copies, copies, offset=1)
    pair_distances = distances[upper[0], upper[1]].to(torch.float64)
    if bool((pair_distances == 0).any()):
        raise ValueError("two copies have the same parameters: init must draw them at random")
    gaps = (objectives[upper[0]] - objectives[upper[1]]).abs()
    ratios = gaps / pair_distances
    return LipschitzEstimate(ratios=torch.sort(ratios).values, objectives=objectives, percentile=percentile)
