"""Suite ``two-layer`` (Wu 2019, Sec. 3.3.3.3): Li & Yuan's (2017) two-layer ReLU network, taught by a teacher.

The student and the teacher are y = W2 relu((I + W1) x + b1) + b2, with x in R^100, 100 hidden units
and 2 outputs: 10,302 parameters, the thesis's count. The identity mapping is Li & Yuan's: with the small
weights they assume, it keeps each hidden unit near its own input, so that solvers starting from the same
weights meet the same minimum rather than a permutation of it (the ReLU's scale symmetry remains: the
distance to the teacher need not vanish at zero loss). Inputs are standard Gaussian; the loss is the mean
squared error to the teacher's outputs.
Batch 200, 20 epochs, momentum 0.9. The thesis tunes lr and L by grid search and finds SGD's and
BPGrad's solutions 0.6 apart; here all eight solvers run the DeepOBS protocol (see protocol.py).
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

from .plotting import COLORS, median_band, new_figure, save_figure, tuning_figure
from .protocol import ProtocolResult, Record, Trial, run_protocol
from .report import Report, markdown_table, median_range
from .solvers import SOLVERS, log_grid, make_optimizer, start_epoch, take_step

INPUTS, HIDDEN, OUTPUTS = 100, 100, 2
BATCH = 200
DATA_SEED = 2019  # the teacher and the data; a trial's seed draws the student's initial weights and the batch order
FINAL_SEEDS = (1, 2, 3)


@dataclass(frozen=True)
class Budget:
    train: int
    validation: int
    test: int
    epochs: int
    lr_grid: tuple[float, ...]
    lipschitz_grid: tuple[float, ...]
    seeds: tuple[int, ...]


FULL = Budget(20_000, 5_000, 5_000, 20, tuple(log_grid(-4, 0.5)), tuple(log_grid(-0.5, 3)), FINAL_SEEDS)
QUICK = Budget(2_000, 1_000, 1_000, 4, (1e-3, 1e-2, 1e-1), (3.0, 30.0, 300.0), FINAL_SEEDS[:2])


class TwoLayer(nn.Module):
    """y = W2 relu((I + W1) x + b1) + b2: a two-layer ReLU network with Li & Yuan's identity mapping."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = nn.Linear(INPUTS, HIDDEN)
        self.output = nn.Linear(HIDDEN, OUTPUTS)

    def forward(self, x: Tensor) -> Tensor:
        return self.output(torch.relu(x + self.hidden(x)))


def _draw(model: TwoLayer, generator: torch.Generator, hidden_scale: float) -> TwoLayer:
    """W1 ~ N(0, hidden_scale^2 / d), small as Li & Yuan assume; W2 ~ N(0, 1 / d); zero biases."""
    with torch.no_grad():
        model.hidden.weight.normal_(0, hidden_scale / math.sqrt(INPUTS), generator=generator)
        model.output.weight.normal_(0, 1 / math.sqrt(HIDDEN), generator=generator)
        model.hidden.bias.zero_()
        model.output.bias.zero_()
    return model


@functools.lru_cache(maxsize=2)
def problem(budget: Budget) -> tuple[TwoLayer, dict[str, tuple[Tensor, Tensor]]]:
    """The teacher and its train, validation and test sets."""
    generator = torch.Generator().manual_seed(DATA_SEED)
    teacher = _draw(TwoLayer(), generator, hidden_scale=0.5)
    with torch.no_grad():
        teacher.hidden.bias.normal_(0, 0.1, generator=generator)
        teacher.output.bias.normal_(0, 0.1, generator=generator)
        splits = {}
        for name, size in (("train", budget.train), ("validation", budget.validation), ("test", budget.test)):
            inputs = torch.randn(size, INPUTS, generator=generator)
            splits[name] = (inputs, teacher(inputs))
    return teacher, splits


def flat_parameters(model: nn.Module) -> Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def trial(t: Trial, quick: bool) -> Record:
    """Train a student with solver ``t.solver`` at ``t.rate`` from the seed's initial weights and batch order."""
    budget = QUICK if quick else FULL
    _, splits = problem(budget)
    generator = torch.Generator().manual_seed(t.seed)
    student = _draw(TwoLayer(), generator, hidden_scale=0.01)
    optimizer = make_optimizer(t.solver, student.parameters(), t.rate)
    inputs, targets = splits["train"]
    train_curve, validation_curve = [], []
    for _ in range(budget.epochs):
        start_epoch(optimizer)
        order = torch.randperm(len(inputs), generator=generator)
        total = 0.0
        for batch in order.split(BATCH):
            optimizer.zero_grad()
            loss = nn.functional.mse_loss(student(inputs[batch]), targets[batch])
            loss.backward()
            take_step(optimizer, loss)
            total += loss.item() * len(batch)
        train_curve.append(total / len(inputs))
        validation_curve.append(_loss(student, splits["validation"]))
        if not math.isfinite(train_curve[-1]):
            break
    record: Record = {
        "train_loss": _loss(student, splits["train"]),
        "validation_loss": validation_curve[-1],
        "test_loss": _loss(student, splits["test"]),
        "train_curve": train_curve,
        "validation_curve": validation_curve,
    }
    if t.final:
        record["parameters"] = flat_parameters(student).tolist()
    return record


@torch.no_grad()
def _loss(model: nn.Module, split: tuple[Tensor, Tensor]) -> float:
    inputs, targets = split
    return nn.functional.mse_loss(model(inputs), targets).item()


def run(out: Path, quick: bool, workers: int = 1) -> Report:
    budget = QUICK if quick else FULL
    teacher, _ = problem(budget)
    grids = {s.key: budget.lipschitz_grid if s.rate == "L" else budget.lr_grid for s in SOLVERS}
    train = functools.partial(trial, quick=quick)
    result = run_protocol(train, grids, "validation_loss", budget.seeds, workers=workers, desc="two-layer")
    distances = _distances(result, flat_parameters(teacher))
    figures = [
        _plot_curves(result, budget, out / "two_layer_curves.png"),
        tuning_figure(result, "validation MSE", "Two-layer network", out / "two_layer_tuning.png", log_score=True),
    ]
    for runs in result.runs.values():
        for record in runs:
            record.pop("parameters")

    rows = []
    for s in SOLVERS:
        runs = result.runs[s.key]
        rows.append([
            s.label,
            f"{s.rate} = {result.chosen[s.key]:g}",
            median_range([r["train_loss"] for r in runs], 3),
            median_range([r["test_loss"] for r in runs], 3),
            median_range(distances["to_teacher"][s.key], 3),
            "—" if s.key == "sgd-m" else median_range(distances["to_sgd-m"][s.key], 3),
        ])
    pairs = {pair: median_range(values, 3) for pair, values in distances["pairs"].items()}
    lr, lipschitz = budget.lr_grid, budget.lipschitz_grid
    headers = ["solver", "chosen", "train MSE", "test MSE", "distance to teacher", "distance to SGD μ=0.9's"]
    markdown = (
        f"{sum(p.numel() for p in teacher.parameters()):,} parameters; {budget.train:,} training, "
        f"{budget.validation:,} validation and {budget.test:,} test inputs; batch {BATCH}, {budget.epochs} epochs. "
        f"Protocol: each solver's rate on a log grid ({len(lr)} learning rates {lr[0]:g}..{lr[-1]:g}; "
        f"{len(lipschitz)} L {lipschitz[0]:g}..{lipschitz[-1]:g} for BPGrad), the best final validation MSE on "
        f"seed 0, then that setting rerun on seeds {', '.join(map(str, budget.seeds))} (median and range). Within a "
        f"seed every solver starts from the same weights and sees the same batches.\n\n"
        f"**Distance between the tuned solutions (Euclidean, over all parameters; the thesis: 0.6 between SGD and "
        f"BPGrad):** SGD μ=0.9 to BPGrad μ=0.9: {pairs['sgd-m/bpgrad-m']}; SGD μ=0 to BPGrad μ=0: "
        f"{pairs['sgd/bpgrad']}. For scale, the student starts {median_range(distances['initial_to_teacher'], 3)} "
        f"from the teacher.\n\n"
        + markdown_table(headers, rows)
    )
    data = {
        "budget": {
            "train": budget.train,
            "validation": budget.validation,
            "test": budget.test,
            "epochs": budget.epochs,
            "batch": BATCH,
        },
        "grids": grids,
        "tuning": result.tuning,
        "chosen": result.chosen,
        "runs": result.runs,
        "distances": distances,
    }
    title = "Solver benchmark two-layer: Li & Yuan's ReLU network (thesis Sec. 3.3.3.3)"
    return Report(title=title, data=data, markdown=markdown, figures=figures)


def _distances(result: ProtocolResult, teacher: Tensor) -> dict[str, Any]:
    """Per seed: each solver's distance to the teacher and to SGD mu = 0.9's solution, and the thesis's pairs."""

    def apart(xs: list[Tensor], ys: list[Tensor]) -> list[float]:
        return [float(torch.linalg.vector_norm(x - y)) for x, y in zip(xs, ys, strict=True)]

    solution = {key: [torch.tensor(r["parameters"]) for r in runs] for key, runs in result.runs.items()}
    seeds = [r["seed"] for r in result.runs["sgd-m"]]
    initial = [flat_parameters(_draw(TwoLayer(), torch.Generator().manual_seed(seed), 0.01)) for seed in seeds]
    return {
        "seeds": seeds,
        "initial_to_teacher": apart(initial, [teacher] * len(seeds)),
        "to_teacher": {key: apart(xs, [teacher] * len(xs)) for key, xs in solution.items()},
        "to_sgd-m": {key: apart(xs, solution["sgd-m"]) for key, xs in solution.items()},
        "pairs": {f"{a}/{b}": apart(solution[a], solution[b]) for a, b in (("sgd-m", "bpgrad-m"), ("sgd", "bpgrad"))},
    }


def _plot_curves(result: ProtocolResult, budget: Budget, path: Path) -> Path:
    figure, axes = new_figure(1, 2, width=5.0, height=3.8)
    panels = (("train_curve", "training MSE (epoch mean)"), ("validation_curve", "validation MSE"))
    for ax, (key, title) in zip(axes.flat, panels, strict=True):
        for s in SOLVERS:
            runs = [r[key] for r in result.runs[s.key] if len(r[key]) == budget.epochs]
            if runs:
                median_band(ax, np.arange(1, budget.epochs + 1), runs, COLORS[s.key], s.label)
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_title(title)
    axes[0, 1].legend(fontsize=7)
    figure.suptitle("Two-layer network, tuned settings: median over seeds, range shaded")
    return save_figure(figure, path)


def lipschitz_problem(seed: int) -> dict[str, Any]:
    """For ``python -m training.solver_bench lipschitz``: estimate_lipschitz's arguments for a student drawn as trial() draws it."""
    _, splits = problem(FULL)
    inputs, targets = splits["train"]
    generator = torch.Generator().manual_seed(seed)

    def batches():
        for _ in itertools.count():
            order = torch.randperm(len(inputs), generator=generator)
            yield from ((inputs[b], targets[b]) for b in order.split(BATCH))

    return {
        "model": TwoLayer(),
        "loss_fn": nn.functional.mse_loss,
        "batches": batches(),
        "init": lambda model: _draw(model, generator, hidden_scale=0.01),
    }
