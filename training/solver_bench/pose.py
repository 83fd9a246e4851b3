"""Suite ``pose``: the product's own task (Wu 2019, ch. 4). Which optimizer should the in-loop trainer use?

The perception model, by the thesis's method (a ResNet-18 that regresses every instance's pose from the
whole depth image, and a learned point-cloud model of the part, fitted by the chamfer loss through
hidden-point removal), is trained, unsupervised, on simulated bins of two nuts at a size a CPU trains in
minutes: 64 px input, 512 model and 512 observed points, batch 16. Every trial is
bin_perception.learning.trainer's own step (train_step) from the seed's initial weights and batch order, and is scored
on a disjoint validation bag by the thesis's measure, the pairwise F1 of the instance segmentation
(Sec. 4.2.5) over the points whose truth is a part, as ``bin-perception evaluate`` scores it.

The thesis trains the model with Adam and two learning rates, 1e-3 for the object model and 1e-4 for the
network (Sec. 4.3.2); every learning-rate solver here keeps that ratio and tunes the model's rate. BPGrad
takes one step length for all the parameters, its gradient norm being global, so its L is both groups'.

Protocol (see protocol.py): each solver's rate on a log grid, scored on seed 0 by 1 - the final validation
F1, then that setting rerun on three seeds. The score is the F1 and not the loss: the F1 is what the
trainer is for, and the chamfer loss goes on falling after the F1 has levelled off, so the two need not
rank settings alike (results.md shows both). Tuning and final runs train for the same number of epochs,
so that tuning does not favour the solvers that start fast. Within a seed every solver starts from the
same weights and sees the same batches. The official code's three variants of BPGrad mu = 0.9 (see
BPGrad) then run at its chosen L on the same seeds, each alone and all together, against the thesis's
form (Alg. 2).
"""

from __future__ import annotations

import functools
import math
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bin_perception.config import Config, ModelConfig, TrainConfig
from bin_perception.frame import Frame
from bin_perception.io.bag import BagReader
from bin_perception.learning.data import resolve_workspace
from bin_perception.learning.trainer import load_observations, train_step
from bin_perception.metrics import pairwise_scores
from bin_perception.model import BinPerception
from bin_perception.model.observation import Observation, TooFewPointsError
from bin_perception.sim.dataset import simulate_bag

from .plotting import COLORS, median_band, new_figure, save_figure, tuning_figure
from .protocol import ProtocolResult, Record, Trial, run_protocol, run_trials
from .report import Report, markdown_table, median_range, number
from .solvers import SOLVER_BY_KEY, SOLVERS, VARIANTS, log_grid, make_optimizer, start_epoch

PART, INSTANCES = "nut", 2
TRAIN_SEED, VALIDATION_SEED = 2019, 2020  # the simulator's: scene i of a bag depends only on (seed, i)
NETWORK_LR_FRACTION = 0.1  # the thesis's network rate over its model rate: 1e-4 / 1e-3
THRESHOLD_FRACTION = 0.9  # the F1 threshold: this fraction of the way from the initial F1 to Adam's final
FINAL_SEEDS = (1, 2, 3)
VARIANT_BASE = "bpgrad-m"  # eta outside the momentum is only a variant with momentum
THESIS_FORM = "thesis (Alg. 2)"
# The trainer (bin_perception.learning.trainer.make_optimizer) sets no weight decay, and without it the norm before the decay is
# the norm after it: that variant is the thesis's form, the same computation, and is not run again.
INERT_OPTIONS = ("norm_before_decay",)


@dataclass(frozen=True)
class Budget:
    train_scenes: int
    validation_scenes: int
    model: ModelConfig
    batch: int
    epochs: int  # of every trial, tuning and final alike
    grids: dict[str, tuple[float, ...]]  # solver -> its rates: lr_model, or BPGrad's L
    seeds: tuple[int, ...]


# The grids are half-decade steps around where short probes found each solver's useful range: Adam around the
# thesis's 1e-3; SGD with momentum stalls at lr 0.1; BPGrad mu = 0.9 trains at L = 50 (TrainConfig's
# default) but not at 5, and without momentum its steps are ten times shorter, so its L is lower.
FULL = Budget(
    train_scenes=300,
    validation_scenes=24,
    model=ModelConfig(method="whole_image", input_size_px=64, model_points=512, observed_points=512),
    batch=16,
    epochs=6,
    grids={
        "adam": tuple(log_grid(-3.5, -2)),
        "sgd-m": tuple(log_grid(-3, -1.5)),
        "bpgrad-m": tuple(log_grid(1, 2.5)),
        "bpgrad": tuple(log_grid(0, 1.5)),
    },
    seeds=FINAL_SEEDS,
)
QUICK = Budget(
    train_scenes=16,
    validation_scenes=4,
    model=ModelConfig(method="whole_image", input_size_px=32, model_points=128, observed_points=128),
    batch=4,
    epochs=2,
    grids={"adam": (1e-3, 1e-2), "sgd-m": (1e-2, 3e-2), "bpgrad-m": (10.0, 30.0), "bpgrad": (3.0, 10.0)},
    seeds=FINAL_SEEDS[:2],
)
SUITE_SOLVERS = tuple(s for s in SOLVERS if s.key in FULL.grids)


@dataclass(frozen=True)
class Bags:
    """The simulated bags of a run, by path: trials in worker processes load them themselves."""

    train: str
    validation: str


@dataclass(frozen=True)
class ValidationFrame:
    frame: Frame
    observation: Observation
    truth: np.ndarray  # the ground-truth label of each of the observation's points; 0 = not a part


@dataclass(frozen=True)
class BinData:
    workspace: np.ndarray  # (2, 3) the parts' box, metres
    train: list[Observation]
    validation: list[ValidationFrame]


def simulate(folder: Path, budget: Budget, workers: int) -> Bags:
    """The training and validation bags of ``budget``, simulated into ``folder``."""
    bags = Bags(train=str(folder / "train.mcap"), validation=str(folder / "validation.mcap"))
    simulate_bag(PART, INSTANCES, budget.train_scenes, TRAIN_SEED, bags.train, workers=workers)
    simulate_bag(PART, INSTANCES, budget.validation_scenes, VALIDATION_SEED, bags.validation, workers=workers)
    return bags


@functools.lru_cache(maxsize=1)
def load_bin(bags: Bags, quick: bool) -> BinData:
    """The bags' observations, read once per process: every trial of a run trains on the same ones."""
    budget = QUICK if quick else FULL
    config = Config(model=budget.model, train=TrainConfig(scenes=None))
    workspace, _ = resolve_workspace(None, config, [bags.train])
    # Observations depend on the workspace and the model's config, not on its weights.
    perception = BinPerception(INSTANCES, workspace, budget.model)
    train = load_observations(perception, [bags.train], config)
    validation = []
    for frame in BagReader(bags.validation, config.topics):
        try:
            observation = perception.observe(frame)
        except TooFewPointsError:
            continue  # as load_observations and evaluate skip them
        validation.append(ValidationFrame(frame, observation, frame.gt_labels.ravel()[observation.pixels]))
    return BinData(workspace, train, validation)


def parameter_groups(perception: BinPerception, solver: str, rate: float) -> list[dict[str, Any]]:
    """The thesis's two groups, the object model's and the network's, for ``solver`` at ``rate``."""
    network: dict[str, Any] = {"params": perception.net.parameters()}
    if SOLVER_BY_KEY[solver].rate == "lr":
        network["lr"] = rate * NETWORK_LR_FRACTION
    return [{"params": perception.object_model.parameters()}, network]


def validation_f1(perception: BinPerception, frames: Sequence[ValidationFrame]) -> float:
    """The mean over ``frames`` of the pairwise F1 over each frame's points whose truth is a part."""
    perception.eval()
    try:
        scores = []
        for v in frames:
            labels = perception.predict(v.frame, v.observation).point_labels
            part = v.truth > 0
            scores.append(pairwise_scores(v.truth[part], labels[part]).f1)
    finally:
        perception.train()
    return float(np.mean(scores))


def trial(t: Trial, bags: Bags, quick: bool, options: dict[str, bool] | None = None) -> Record:
    """Train the perception model with solver ``t.solver`` at ``t.rate``; ``options`` are BPGrad's variants.

    A final run is evaluated on the validation bag before training and after every epoch, a tuning run
    after its last; ``seconds`` are training time, evaluations excluded.
    """
    budget = QUICK if quick else FULL
    data = load_bin(bags, quick)
    perception = BinPerception(INSTANCES, data.workspace, budget.model, seed=t.seed)
    optimizer = make_optimizer(t.solver, parameter_groups(perception, t.solver, t.rate), t.rate, **(options or {}))
    rng = np.random.default_rng(t.seed)
    steps_per_epoch = len(data.train) // budget.batch
    losses: list[float] = []
    evaluations: list[dict[str, float]] = []
    seconds, gamma = 0.0, 0.0

    def evaluate() -> None:
        evaluations.append({"step": len(losses), "seconds": seconds, "f1": validation_f1(perception, data.validation)})

    if t.final:
        evaluate()
    diverged = False
    for epoch in range(budget.epochs):
        start_epoch(optimizer)
        order = rng.permutation(len(data.train))[: steps_per_epoch * budget.batch]
        started = time.perf_counter()
        for batch in order.reshape(steps_per_epoch, budget.batch):
            loss = train_step(perception, optimizer, observations=data.train, indices=batch, rng=rng, gamma=gamma)
            gamma += budget.model.gamma_step  # as train() grows the two-channel softmin's gamma
            losses.append(loss.item())
            # A non-finite weight would reach hidden-point removal, which refuses NaN, at the next step.
            weights = torch.nn.utils.get_total_norm(perception.parameters())
            diverged = not (math.isfinite(losses[-1]) and weights.isfinite())
            if diverged:
                break
        seconds += time.perf_counter() - started
        if diverged:
            break
        if t.final or epoch == budget.epochs - 1:
            evaluate()
    final_f1 = math.nan if diverged else evaluations[-1]["f1"]
    return {
        "score": 1 - final_f1,
        "validation_f1": final_f1,
        # The last epoch's mean: a single mini-batch's loss is as much the batch as the weights.
        "final_loss": float(np.mean(losses[-steps_per_epoch:])),
        "loss": losses,
        "steps_per_epoch": steps_per_epoch,
        "seconds": seconds,
        "evaluations": evaluations,
    }


def run(out: Path, quick: bool, workers: int = 1) -> Report:
    budget = QUICK if quick else FULL
    with tempfile.TemporaryDirectory(prefix="solver-bench-pose-") as folder:
        bags = simulate(Path(folder), budget, workers)
        train = functools.partial(trial, bags=bags, quick=quick)
        result = run_protocol(train, budget.grids, "score", budget.seeds, workers=workers, desc="pose")
        variants = _run_variants(result, bags, budget, quick, workers)
        data = load_bin(bags, quick)
    threshold = _threshold(result)
    figures = [
        _plot(result, variants, "loss", threshold, out / "pose_loss.png"),
        _plot(result, variants, "f1", threshold, out / "pose_f1_time.png"),
        # tuning_figure reads a grid for every solver of SOLVERS; this suite runs four of them.
        tuning_figure(
            ProtocolResult({s.key: result.tuning.get(s.key, []) for s in SOLVERS}, result.chosen, result.runs),
            "1 - validation F1", "Pose", out / "pose_tuning.png",
        ),
    ]
    markdown = _markdown(result, variants, threshold, budget, data)
    initial = [r["evaluations"][0]["f1"] for r in result.runs["adam"]]
    data_out = {
        "budget": {
            "part": PART,
            "instances": INSTANCES,
            "train_scenes": len(data.train),
            "validation_scenes": len(data.validation),
            "model": vars(budget.model),
            "batch": budget.batch,
            "epochs": budget.epochs,
            "steps": budget.epochs * (len(data.train) // budget.batch),
            "network_lr_fraction": NETWORK_LR_FRACTION,
        },
        "grids": budget.grids,
        "score": "1 - final validation pairwise F1",
        "tuning": result.tuning,
        "chosen": result.chosen,
        "runs": result.runs,
        "initial_f1": initial,
        "threshold": {"f1": threshold, "fraction_of_adams_gain": THRESHOLD_FRACTION},
        "variants": {"base": VARIANT_BASE, "options": VARIANTS, "inert_options": INERT_OPTIONS, "runs": variants},
    }
    title = "Solver benchmark pose: the perception model on a simulated bin (thesis ch. 4)"
    return Report(title=title, data=data_out, markdown=markdown, figures=figures)


def _run_variants(
    result: ProtocolResult, bags: Bags, budget: Budget, quick: bool, workers: int
) -> dict[str, list[Record]]:
    """The thesis's form (the final runs of BPGrad mu = 0.9), then each variant that differs from it here."""
    outcomes = {THESIS_FORM: result.runs[VARIANT_BASE]}
    trials = [Trial(VARIANT_BASE, result.chosen[VARIANT_BASE], seed, final=True) for seed in budget.seeds]
    for name, options in VARIANTS.items():
        if _is_thesis_form(options):
            continue
        variant = functools.partial(trial, bags=bags, quick=quick, options=options)
        records = run_trials(variant, trials, workers=workers, desc=f"pose: {name}")
        outcomes[name] = [{"seed": t.seed, **record} for t, record in zip(trials, records, strict=True)]
    return outcomes


def _is_thesis_form(options: dict[str, bool]) -> bool:
    """Whether a variant's options leave BPGrad's step as the thesis's on this task (see INERT_OPTIONS)."""
    return set(options) <= set(INERT_OPTIONS)


def _threshold(result: ProtocolResult) -> float:
    """THRESHOLD_FRACTION of the way from the initial F1 to Adam's final F1 (medians over seeds).

    Adam is the thesis's solver and the trainer's default; a threshold short of its end point is one that
    most runs reach, so that the time to it compares speeds rather than where each solver ends.
    """
    adam = result.runs["adam"]
    initial = float(np.median([r["evaluations"][0]["f1"] for r in adam]))
    final = float(np.nanmedian([r["validation_f1"] for r in adam]))
    return initial + THRESHOLD_FRACTION * (final - initial)


def _first_reaching(record: Record, threshold: float) -> dict[str, float]:
    """The first evaluation at or above ``threshold`` (step and training seconds); NaN where none is."""
    for evaluation in record["evaluations"]:
        if evaluation["f1"] >= threshold:
            return evaluation
    return {"step": math.nan, "seconds": math.nan}


def _reach_cell(values: Sequence[float], digits: int = 3) -> str:
    """"median (min-max)" over the seeds that reached the threshold, and how many did."""
    reached = sorted(v for v in values if math.isfinite(v))
    if not reached:
        return "not reached"
    cell = f"{number(float(np.median(reached)), digits)} ({number(reached[0], digits)}-{number(reached[-1], digits)})"
    return cell if len(reached) == len(values) else f"{cell}, {len(reached)}/{len(values)} reached"


def _row(runs: Sequence[Record], threshold: float) -> list[str]:
    """The table cells of one solver's (or variant's) runs: F1, loss, steps and seconds to the threshold."""
    reached = [_first_reaching(r, threshold) for r in runs]
    return [
        median_range([r["validation_f1"] for r in runs], 3),
        median_range([r["final_loss"] for r in runs], 3),
        _reach_cell([e["step"] for e in reached]),
        _reach_cell([e["seconds"] for e in reached], 2),
    ]


def _markdown(
    result: ProtocolResult, variants: dict[str, list[Record]], threshold: float, budget: Budget, data: BinData
) -> str:
    steps_per_epoch = len(data.train) // budget.batch
    model = budget.model
    rows = []
    for s in SUITE_SOLVERS:
        grid = budget.grids[s.key]
        chosen = f"{s.rate} = {result.chosen[s.key]:g} ({grid[0]:g}..{grid[-1]:g})"
        rows.append([s.label, chosen, *_row(result.runs[s.key], threshold)])
    variant_rows = [[name, *_row(runs, threshold)] for name, runs in variants.items()]
    inert = [name for name, options in VARIANTS.items() if _is_thesis_form(options)]
    metrics = ["final validation F1", "final training loss", f"steps to F1 ≥ {threshold:.3f}", "seconds to it"]
    initial = median_range([r["evaluations"][0]["f1"] for r in result.runs["adam"]], 3)
    seeds = ", ".join(map(str, budget.seeds))
    return (
        f"{len(data.train)} training and {len(data.validation)} validation scenes of {INSTANCES} {PART}s (simulator "
        f"seeds {TRAIN_SEED} and {VALIDATION_SEED}); method {model.method}, {model.input_size_px} px input, "
        f"{model.model_points} model and {model.observed_points} observed points; batch {budget.batch}, "
        f"{budget.epochs} epochs ({budget.epochs * steps_per_epoch} steps), no learning-rate decay. Learning-rate "
        f"solvers tune the object model's rate, the network's being a tenth of it (the thesis's 1e-3 and 1e-4); "
        f"BPGrad's L is both groups'. Tuning: each grid point on seed 0, scored by 1 - the final validation F1 "
        f"(pairwise, over the points that are parts); then the best rate on seeds {seeds} (median and range). The "
        f"training loss is the last epoch's mean chamfer loss. The F1 before training is {initial}.\n\n"
        f"The threshold, F1 ≥ {threshold:.3f}, is {THRESHOLD_FRACTION:g} of the way from the initial F1 to Adam's "
        f"median final F1. Its steps and seconds are those of the first evaluation (one per epoch, every "
        f"{steps_per_epoch} steps) at or above it; seconds are training time, evaluations excluded, of one "
        f"single-threaded process on cores shared with other jobs: compare them loosely, and the steps exactly.\n\n"
        + markdown_table(["solver", "chosen (grid)", *metrics], rows)
        + f"\n\n**The official code's variants** of BPGrad μ=0.9 at its chosen L = {result.chosen[VARIANT_BASE]:g}, "
        + f"seeds {seeds} (the thesis's form: the runs above). The trainer uses no weight decay, so "
        + " and ".join(f"“{name}”" for name in inert)
        + " is the thesis's form itself, and in “all three” only the other two act:\n\n"
        + markdown_table(["BPGrad μ=0.9", *metrics], variant_rows)
    )


# The thesis's form in BPGrad μ=0.9's colour.
_VARIANT_COLORS = dict(
    zip((THESIS_FORM, *VARIANTS), (COLORS[VARIANT_BASE], "#1f77b4", "#2ca02c", "#8c564b", "#9467bd"), strict=True)
)


def _series(ax, runs: Sequence[Record], color: str, label: str, kind: str) -> None:
    """Median band of one solver's runs: its epoch-mean training loss per step, or F1 over training seconds."""
    runs = [r for r in runs if math.isfinite(r["validation_f1"])]
    if not runs:
        return
    if kind == "loss":
        per_epoch = runs[0]["steps_per_epoch"]
        curves = [np.asarray(r["loss"]).reshape(-1, per_epoch).mean(axis=1) for r in runs]
        median_band(ax, per_epoch * np.arange(1, len(curves[0]) + 1), curves, color, label)
    else:
        seconds = np.median([[e["seconds"] for e in r["evaluations"]] for r in runs], axis=0)
        median_band(ax, seconds, [[e["f1"] for e in r["evaluations"]] for r in runs], color, label)


def _plot(
    result: ProtocolResult, variants: dict[str, list[Record]], kind: str, threshold: float, path: Path
) -> Path:
    """The final runs' training loss (``kind`` "loss") or validation F1 ("f1"): solvers left, variants right."""
    figure, axes = new_figure(1, 2, width=5.2, height=3.9)
    solvers, official = axes[0]
    for s in SUITE_SOLVERS:
        _series(solvers, result.runs[s.key], COLORS[s.key], s.label, kind)
    for name, runs in variants.items():
        _series(official, runs, _VARIANT_COLORS[name], name, kind)
    solvers.set_title("tuned solvers")
    official.set_title(f"BPGrad μ=0.9 at L = {result.chosen[VARIANT_BASE]:g}")
    for ax in axes.flat:
        if kind == "loss":
            ax.set_yscale("log")
            ax.set(xlabel="step", ylabel="training loss (epoch mean)")
        else:
            ax.axhline(threshold, color="0.5", linestyle="--", linewidth=1, label=f"threshold {threshold:.3f}")
            ax.set(xlabel="training seconds (median over seeds)", ylabel="validation pairwise F1")
        ax.legend(fontsize=7)
    what = "the chamfer loss" if kind == "loss" else "the segmentation's F1 against training time"
    figure.suptitle(f"Pose: {what}, median over seeds, range shaded")
    return save_figure(figure, path)
