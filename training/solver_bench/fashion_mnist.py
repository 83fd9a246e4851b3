"""Suite ``fashion-mnist``: the thesis's MNIST experiment (Sec. 3.4.3.1, Figs. 3.18 and 3.20) on Fashion-MNIST.

LeNet-5 (LeCun et al., 1998: 6 and 16 5x5 convolutions, 120-84-10 fully connected; here with ReLU and max
pooling), batch 100, weight decay 5e-4 for every solver, momentum 0.9 for SGD and BPGrad with momentum.
Appendix A.5's settings fix every option but the rate (they were tuned on MNIST); each rate is tuned on
a log grid that holds A.5's value, by the validation error after one epoch, and the chosen setting is
rerun on three seeds. Within a seed every solver starts from the same weights and sees the same batches.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from bin_perception.lowres.fashion_mnist import load_fashion_mnist
from bin_perception.optim import BPGrad

from .plotting import COLORS, median_band, new_figure, save_figure, tuning_figure
from .protocol import ProtocolResult, Record, Trial, run_protocol, run_trials
from .report import Report, markdown_table, median_range
from .solvers import SOLVER_BY_KEY, SOLVERS, VARIANTS, make_optimizer, start_epoch, take_step

BATCH = 100
WEIGHT_DECAY = 5e-4
SPLIT_SEED = 2019  # which 10,000 training images are the validation split
POINTS_PER_EPOCH = 6  # of the objective and bound curves
FINAL_SEEDS = (1, 2, 3)

# Appendix A.5, all but the rate. Its Adagrad rho = 1.0 is torch's Adagrad.
OPTIONS: dict[str, dict[str, Any]] = {
    "sgd": {},
    "sgd-m": {},
    "adam": {"betas": (0.9, 0.999), "eps": 1e-8},
    "rmsprop": {"alpha": 0.7, "eps": 1e-8},
    "adagrad": {"eps": 1e-10},
    "adadelta": {"rho": 0.5, "eps": 1e-6},
    "bpgrad": {"rho": 0.1},
    "bpgrad-m": {"rho": 0.1},
}
# A.5's rates on MNIST (Adadelta has none: torch's default scale, 1), and the grids around them: the
# exponents of 10 (first, last, step) that multiply them. Whole decades for the learning rates; half
# decades for L, reaching higher with momentum, whose steps are up to 1 / (1 - mu) times longer.
THESIS_RATES = {
    "sgd": 1e-3, "sgd-m": 1e-3, "adam": 1e-3, "rmsprop": 1e-3, "adagrad": 1e-3, "adadelta": 1.0,
    "bpgrad": 15.0, "bpgrad-m": 15.0,
}  # fmt: skip
_GRID_EXPONENTS = {
    "sgd": (0, 3, 1), "sgd-m": (-1, 3, 1), "adam": (-1, 2, 1), "rmsprop": (-1, 2, 1), "adagrad": (0, 2, 1),
    "adadelta": (-1, 2, 1), "bpgrad": (-1.5, 1, 0.5), "bpgrad-m": (-0.5, 1.5, 0.5),
}  # fmt: skip


def _grid(key: str) -> tuple[float, ...]:
    first, last, step = _GRID_EXPONENTS[key]
    count = round((last - first) / step) + 1
    return tuple(float(f"{THESIS_RATES[key] * 10 ** (first + i * step):.3g}") for i in range(count))


@dataclass(frozen=True)
class Budget:
    train: int | None  # training images (None: all but the validation split)
    validation: int
    test: int | None  # test images (None: all 10,000)
    tuning_epochs: int
    epochs: int
    seeds: tuple[int, ...]
    grid: int | None  # the grid's points nearest A.5's value (None: the whole grid)
    variant_epochs: int  # of the official code's variants of BPGrad mu = 0.9


FULL = Budget(None, 10_000, None, 1, 8, FINAL_SEEDS, None, 3)
QUICK = Budget(2_000, 1_000, 1_000, 1, 1, FINAL_SEEDS[:2], 2, 1)


def grids(budget: Budget) -> dict[str, tuple[float, ...]]:
    full = {s.key: _grid(s.key) for s in SOLVERS}
    if budget.grid is None:
        return full

    def nearest(key: str, grid: tuple[float, ...]) -> tuple[float, ...]:
        return tuple(sorted(sorted(grid, key=lambda rate: abs(math.log(rate / THESIS_RATES[key])))[: budget.grid]))

    return {key: nearest(key, grid) for key, grid in full.items()}


def lenet5() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120), nn.ReLU(),
        nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, 10),
    )  # fmt: skip


@dataclass(frozen=True)
class Splits:
    train: tuple[Tensor, Tensor]
    validation: tuple[Tensor, Tensor]
    test: tuple[Tensor, Tensor]
    mean: float  # of the training pixels, in [0, 1]
    std: float


@functools.lru_cache(maxsize=2)
def splits(budget: Budget) -> Splits:
    images, labels = load_fashion_mnist("train")
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(SPLIT_SEED))
    validation, train = order[: budget.validation], order[budget.validation :]
    train = train[: budget.train] if budget.train is not None else train
    test_images, test_labels = load_fashion_mnist("test")
    test = slice(None, budget.test)
    pixels = images[train].float() / 255
    return Splits(
        train=(images[train], labels[train]),
        validation=(images[validation], labels[validation]),
        test=(test_images[test], test_labels[test]),
        mean=pixels.mean().item(),
        std=pixels.std().item(),
    )


def _normalised(images: Tensor, data: Splits) -> Tensor:
    return (images.float() / 255 - data.mean) / data.std


@torch.no_grad()
def top1_error(model: nn.Module, split: tuple[Tensor, Tensor], data: Splits) -> float:
    images, labels = split
    wrong = 0
    for chunk, truth in zip(images.split(1000), labels.split(1000), strict=True):
        wrong += int((model(_normalised(chunk, data)).argmax(1) != truth).sum())
    return wrong / len(labels)


def trial(t: Trial, quick: bool, options: dict[str, Any] | None = None, epochs: int | None = None) -> Record:
    """Train LeNet-5 with solver ``t.solver`` at ``t.rate``; the seed fixes the initial weights and the batch order.

    ``options`` are added to the solver's; ``epochs`` overrides the budget's.
    """
    budget = QUICK if quick else FULL
    data = splits(budget)
    torch.manual_seed(t.seed)
    model = lenet5()
    order_generator = torch.Generator().manual_seed(t.seed)
    solver_options = {**OPTIONS[t.solver], **(options or {})}
    optimizer = make_optimizer(t.solver, model.parameters(), t.rate, weight_decay=WEIGHT_DECAY, **solver_options)
    images, labels = data.train
    if epochs is None:
        epochs = budget.epochs if t.final else budget.tuning_epochs
    iterations_per_epoch = math.ceil(len(images) / BATCH)
    log_every = max(1, iterations_per_epoch // POINTS_PER_EPOCH)
    objective, bounds, test_error = [], [], []
    window: list[Tensor] = []
    diverged = False
    for _ in range(epochs):
        model.train()
        start_epoch(optimizer)
        for batch in torch.randperm(len(images), generator=order_generator).split(BATCH):
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(_normalised(images[batch], data)), labels[batch])
            loss.backward()
            take_step(optimizer, loss)
            window.append(loss.detach())
            if len(window) == log_every:
                objective.append(torch.stack(window).mean().item())
                window.clear()
                if isinstance(optimizer, BPGrad):
                    bounds.append((optimizer.lower_bound.item(), optimizer.upper_bound.item()))
                diverged = not math.isfinite(objective[-1])
                if diverged:
                    break
        model.eval()
        if t.final and not diverged:
            test_error.append(top1_error(model, data.test, data))
        if diverged:
            break
    record: Record = {
        "validation_error": math.nan if diverged else top1_error(model, data.validation, data),
        "objective": objective,
        "iterations_per_point": log_every,
        "iterations_per_epoch": iterations_per_epoch,
    }
    if t.final:
        record["test_error"] = test_error
        record["final_test_error"] = test_error[-1] if test_error and not diverged else math.nan
        record["bounds"] = bounds
    return record


def run(out: Path, quick: bool, workers: int = 1) -> Report:
    budget = QUICK if quick else FULL
    data = splits(budget)
    train = functools.partial(trial, quick=quick)
    result = run_protocol(train, grids(budget), "validation_error", budget.seeds, workers=workers, desc="fashion-mnist")
    variants = _run_variants(result, budget, quick, workers)
    figures = [
        _plot_fig_3_18(result, budget, out / "fashion_mnist_objective_error.png"),
        _plot_fig_3_20(result, out / "fashion_mnist_bounds.png"),
        tuning_figure(result, "validation error (%)", "Fashion-MNIST", out / "fashion_mnist_tuning.png", scale=100),
    ]
    rows = []
    for s in SOLVERS:
        runs = result.runs[s.key]
        rows.append([
            s.label,
            f"{s.rate} = {result.chosen[s.key]:g} (A.5: {THESIS_RATES[s.key]:g})",
            median_range([r["objective"][-1] if r["objective"] else math.nan for r in runs], 3),
            median_range([r["final_test_error"] for r in runs], 3, scale=100),
        ])
    gaps = {
        s.key: median_range([r["bounds"][-1][1] - r["bounds"][-1][0] for r in result.runs[s.key] if r["bounds"]], 3)
        for s in SOLVERS if s.key.startswith("bpgrad")
    }
    parameters = sum(p.numel() for p in lenet5().parameters())
    variant_rows = [
        [name, median_range(outcome["objective"], 3), median_range(outcome["test_error"], 3, scale=100)]
        for name, outcome in variants.items()
    ]
    seeds = ", ".join(map(str, budget.seeds))
    markdown = (
        f"LeNet-5 ({parameters:,} parameters), {len(data.train[1]):,} training images, {len(data.validation[1]):,} for "
        f"validation, {len(data.test[1]):,} test images; batch {BATCH}, weight decay {WEIGHT_DECAY:g}. Tuning: "
        f"{_epochs(budget.tuning_epochs)} per grid point on seed 0, scored by validation error; then "
        f"{_epochs(budget.epochs)} on seeds {seeds} (median and range). The objective is the mean cross-entropy over "
        f"each {POINTS_PER_EPOCH}th of an epoch's mini-batches (weight decay not included).\n\n"
        + markdown_table(["solver", "chosen rate", "final training objective", "final test top-1 error (%)"], rows)
        + "\n\nBPGrad's bound gap (min f - ρ min f over mini-batch losses) at the end: "
        + "; ".join(f"{SOLVER_BY_KEY[k].label} {v}" for k, v in gaps.items())
        + f".\n\n**The official code's variants** of BPGrad μ=0.9 at L = {result.chosen['bpgrad-m']:g}, after "
        + f"{_epochs(budget.variant_epochs)}, seeds {seeds} (the thesis's form: the runs above, whose first epochs "
        + "are the same computation):\n\n"
        + markdown_table(["BPGrad μ=0.9", "training objective", "test top-1 error (%)"], variant_rows)
    )
    data_out = {
        "budget": {
            "train": len(data.train[1]),
            "validation": len(data.validation[1]),
            "test": len(data.test[1]),
            "batch": BATCH,
            "weight_decay": WEIGHT_DECAY,
            "tuning_epochs": budget.tuning_epochs,
            "epochs": budget.epochs,
        },
        "options": OPTIONS,
        "thesis_rates": THESIS_RATES,
        "grids": grids(budget),
        "tuning": result.tuning,
        "chosen": result.chosen,
        "runs": result.runs,
        "variants": {"epochs": budget.variant_epochs, "options": VARIANTS, "results": variants},
    }
    title = "Solver benchmark fashion-mnist: LeNet-5 (thesis Sec. 3.4.3.1, on Fashion-MNIST)"
    return Report(title=title, data=data_out, markdown=markdown, figures=figures)


def _run_variants(result: ProtocolResult, budget: Budget, quick: bool, workers: int) -> dict[str, dict[str, list]]:
    """Test error and training objective after ``budget.variant_epochs`` of each variant, per seed."""
    epochs = budget.variant_epochs
    thesis: dict[str, list[float]] = {"objective": [], "test_error": []}
    for run in result.runs["bpgrad-m"]:
        points = epochs * run["iterations_per_epoch"] // run["iterations_per_point"]
        thesis["objective"].append(run["objective"][points - 1] if len(run["objective"]) >= points else math.nan)
        thesis["test_error"].append(run["test_error"][epochs - 1] if len(run["test_error"]) >= epochs else math.nan)
    outcomes = {"thesis (Alg. 2)": thesis}
    trials = [Trial("bpgrad-m", result.chosen["bpgrad-m"], seed, final=True) for seed in budget.seeds]
    for name, options in VARIANTS.items():
        variant = functools.partial(trial, quick=quick, options=options, epochs=epochs)
        records = run_trials(variant, trials, workers=workers, desc=f"fashion-mnist: {name}")
        outcomes[name] = {
            "objective": [r["objective"][-1] if r["objective"] else math.nan for r in records],
            "test_error": [r["final_test_error"] for r in records],
        }
    return outcomes


def _epochs(count: int) -> str:
    return f"{count} epoch{'s' if count != 1 else ''}"


def _epochs_axis(record: Record) -> np.ndarray:
    return (np.arange(len(record["objective"])) + 1) * record["iterations_per_point"] / record["iterations_per_epoch"]


def _plot_fig_3_18(result: ProtocolResult, budget: Budget, path: Path) -> Path:
    figure, axes = new_figure(1, 2, width=5.2, height=3.9)
    for s in SOLVERS:
        runs = [r for r in result.runs[s.key] if r["objective"] and math.isfinite(r["final_test_error"])]
        if not runs:
            continue
        length = min(len(r["objective"]) for r in runs)
        objectives = [r["objective"][:length] for r in runs]
        median_band(axes[0, 0], _epochs_axis(runs[0])[:length], objectives, COLORS[s.key], s.label)
        errors = [np.asarray(r["test_error"]) * 100 for r in runs]
        median_band(axes[0, 1], np.arange(1, budget.epochs + 1), errors, COLORS[s.key], s.label)
    axes[0, 0].set_yscale("log")
    axes[0, 0].set(xlabel="epoch", title="training objective")
    axes[0, 1].set(xlabel="epoch", ylabel="%", title="test top-1 error")
    axes[0, 1].legend(fontsize=7)
    figure.suptitle("LeNet-5 on Fashion-MNIST (as Fig. 3.18): median over seeds, range shaded")
    return save_figure(figure, path)


def _plot_fig_3_20(result: ProtocolResult, path: Path) -> Path:
    figure, axes = new_figure(1, 2, width=5.2, height=3.9)
    for ax, key in zip(axes.flat, ("bpgrad", "bpgrad-m"), strict=True):
        runs = [r for r in result.runs[key] if r["bounds"]]
        if runs:
            length = min(len(r["bounds"]) for r in runs)
            x = _epochs_axis(runs[0])[:length]
            median_band(ax, x, [[b[1] for b in r["bounds"][:length]] for r in runs], "tab:blue", "upper bound: min f")
            median_band(ax, x, [[b[0] for b in r["bounds"][:length]] for r in runs], "tab:red", "lower bound: ρ min f")
            median_band(ax, x, [r["objective"][:length] for r in runs], "0.5", "objective")
        ax.set_yscale("log")
        ax.set(xlabel="epoch", title=f"{SOLVER_BY_KEY[key].label}, L = {result.chosen[key]:g}")
        ax.legend(fontsize=7)
    figure.suptitle("BPGrad's bound estimates on Fashion-MNIST (as Fig. 3.20)")
    return save_figure(figure, path)


def lipschitz_problem(seed: int) -> dict[str, Any]:
    """For ``python -m training.solver_bench lipschitz``: LeNet-5 as trial() draws it, the cross-entropy, shuffled batches of 100."""
    data = splits(FULL)
    images, labels = data.train
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # the copies: reset_parameters() draws from torch's global generator

    def batches():
        for _ in itertools.count():
            order = torch.randperm(len(images), generator=generator)
            yield from ((_normalised(images[b], data), labels[b]) for b in order.split(BATCH))

    return {"model": lenet5().train(), "loss_fn": nn.functional.cross_entropy, "batches": batches()}
