"""Figures of the suites: matplotlib's object API (no pyplot state), PNGs written atomically."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from .protocol import ProtocolResult
from .solvers import SOLVERS

# One colour per solver across every suite; BPGrad in warm colours.
_PALETTE = ("#1f77b4", "#17becf", "#2ca02c", "#9467bd", "#8c564b", "#7f7f7f", "#ff7f0e", "#d62728")
COLORS = {**dict(zip((s.key for s in SOLVERS), _PALETTE, strict=True)), "alg1": "#e377c2"}


def new_figure(rows: int = 1, columns: int = 1, *, width: float = 4.0, height: float = 3.2) -> tuple[Figure, Any]:
    """A figure and its axes as a (rows, columns) array; ``width`` and ``height`` per subplot, in inches."""
    figure = Figure(figsize=(width * columns, height * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False)
    return figure, axes


def save_figure(figure: Figure, path: Path) -> Path:
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as tmp:
        figure.savefig(tmp, format="png", dpi=120)
    os.replace(tmp.name, path)
    return path


def median_band(ax, x: Sequence[float], runs: Sequence[Sequence[float]], color: str, label: str) -> None:
    """The median over seeds as a line, their range as a shaded band."""
    values = np.asarray(runs, dtype=float)
    ax.plot(x, np.median(values, axis=0), color=color, label=label, linewidth=1.4)
    if len(values) > 1:
        ax.fill_between(x, values.min(axis=0), values.max(axis=0), color=color, alpha=0.2, linewidth=0)


def tuning_figure(
    result: ProtocolResult, score: str, problem: str, path: Path, *, scale: float = 1.0, log_score: bool = False
) -> Path:
    """The protocol's grids: the validation score (seed 0) of every rate; learning rates left, BPGrad's L right."""
    figure, axes = new_figure(1, 2, width=5.2, height=3.9)
    for solver in SOLVERS:
        rows = result.tuning.get(solver.key)
        if not rows:  # a suite that runs fewer solvers, or a setting the thesis gives
            continue
        values = [scale * row["score"] if np.isfinite(row["score"]) else np.nan for row in rows]
        ax = axes[0, 1] if solver.rate == "L" else axes[0, 0]
        rates = [row["rate"] for row in rows]
        ax.plot(rates, values, marker="o", markersize=3, color=COLORS[solver.key], label=solver.label)
    for ax, rate in ((axes[0, 0], "learning rate"), (axes[0, 1], "L")):
        ax.set_xscale("log")
        if log_score:
            ax.set_yscale("log")
        ax.set(xlabel=rate, ylabel=f"{score}, seed 0")
        ax.legend(fontsize=7)
    figure.suptitle(f"{problem}: the grids (missing points diverged)")
    return save_figure(figure, path)
