"""The DeepOBS-style protocol (Schneider et al., 2019): a log-spaced grid per solver, the setting with the
best validation score, then that setting rerun over fresh seeds."""

from __future__ import annotations

import contextlib
import math
import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any

import torch
from tqdm import tqdm

Record = dict[str, Any]


@dataclass(frozen=True)
class Trial:
    solver: str
    rate: float  # the learning rate, or BPGrad's L
    seed: int  # the initial weights and the batch order
    final: bool  # a rerun of the chosen setting, on the full budget; else a tuning run


@dataclass
class ProtocolResult:
    tuning: dict[str, list[dict[str, float]]]  # solver -> [{"rate", "score"}] over its grid
    chosen: dict[str, float]  # solver -> the rate with the best (lowest) validation score
    runs: dict[str, list[Record]]  # solver -> one record per final seed


def run_protocol(
    trial: Callable[[Trial], Record],
    grids: dict[str, Sequence[float]],
    score_key: str,
    seeds: Sequence[int],
    *,
    tuning_seed: int = 0,
    workers: int = 1,
    desc: str = "runs",
) -> ProtocolResult:
    """Tune every solver of ``grids`` on ``tuning_seed``, then rerun its best rate on each of ``seeds``.

    ``trial`` returns a JSON-able record with a validation score at ``score_key`` (lower is better; a
    diverged run's NaN counts as worst). A grid of one rate (a setting the thesis gives) is not tuned.
    With ``workers`` > 1 the trials run in that many single-threaded processes; ``trial`` must then be
    picklable (a module-level function, or a functools.partial of one).
    """
    tuning_trials = [Trial(s, r, tuning_seed, final=False) for s, grid in grids.items() if len(grid) > 1 for r in grid]
    with _executor(workers) as executor:
        tuned = _run_all(executor, trial, tuning_trials, f"{desc}: tuning")
        tuning: dict[str, list[dict[str, float]]] = {solver: [] for solver in grids}
        for t, record in zip(tuning_trials, tuned, strict=True):
            tuning[t.solver].append({"rate": t.rate, "score": _score(record, score_key)})
        chosen = {
            solver: min(tuning[solver], key=lambda row: row["score"])["rate"] if len(grid) > 1 else grid[0]
            for solver, grid in grids.items()
        }
        final_trials = [Trial(s, chosen[s], seed, final=True) for s in grids for seed in seeds]
        finals = _run_all(executor, trial, final_trials, f"{desc}: final runs")
    runs: dict[str, list[Record]] = {solver: [] for solver in grids}
    for t, record in zip(final_trials, finals, strict=True):
        runs[t.solver].append({"seed": t.seed, **record})
    return ProtocolResult(tuning=tuning, chosen=chosen, runs=runs)


def run_trials(
    trial: Callable[[Trial], Record], trials: Sequence[Trial], *, workers: int = 1, desc: str = "runs"
) -> list[Record]:
    """``trial`` on each of ``trials``, in order; in ``workers`` single-threaded processes when more than one."""
    with _executor(workers) as executor:
        return _run_all(executor, trial, list(trials), desc)


def _score(record: Record, key: str) -> float:
    value = record[key]
    return value if value is not None and math.isfinite(value) else math.inf


def _single_threaded() -> None:
    # Two workers of one thread each use two cores without the contention of two thread pools.
    torch.set_num_threads(1)


def _executor(workers: int) -> contextlib.AbstractContextManager[Executor | None]:
    if workers <= 1:
        return contextlib.nullcontext()
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_single_threaded)


def _run_all(
    executor: Executor | None, trial: Callable[[Trial], Record], trials: list[Trial], desc: str
) -> list[Record]:
    if executor is None:
        return [trial(t) for t in tqdm(trials, desc=desc)]
    futures = {executor.submit(trial, t): i for i, t in enumerate(trials)}
    records: list[Record] = [{}] * len(trials)
    for future in tqdm(as_completed(futures), total=len(trials), desc=desc):
        records[futures[future]] = future.result()
    return records
