"""``python -m training.solver_bench lipschitz``: Sec. 3.4.1's estimate of L for a suite's network, printed and drawn as Fig. 3.15."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from bin_perception.optim import LipschitzEstimate, estimate_lipschitz

from .plotting import new_figure, save_figure
from .registry import load_suite

PERCENTILES = (50.0, 90.0, 95.0, 99.0)


def lipschitz_report(
    suite: str, out: str | os.PathLike, *, copies: int = 600, percentile: float = 90.0, seed: int = 0
) -> LipschitzEstimate:
    """Estimate L on ``suite``'s network, print the distribution's summary and draw it into ``out`` (PNG)."""
    module = load_suite(suite)
    if not hasattr(module, "lipschitz_problem"):
        raise ValueError(f"suite {suite!r} has no network to estimate L for")
    estimate = estimate_lipschitz(**module.lipschitz_problem(seed), copies=copies, percentile=percentile)
    ratios = estimate.ratios
    print(f"{suite}: {copies} random initial copies, {len(ratios):,} pairs; f over the copies "
          f"{estimate.objectives.min().item():.4g}..{estimate.objectives.max().item():.4g}")
    print(f"|f(x_i) - f(x_j)| / ||x_i - x_j||: min {ratios[0].item():.4g}, max {ratios[-1].item():.4g}; "
          + ", ".join(f"{p:g}th percentile {estimate.quantile(p):.4g}" for p in PERCENTILES))
    print(f"suggested L (the {percentile:g}th percentile): {estimate.suggested:.4g}")
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    _plot(estimate, suite, path)
    print(f"figure: {path}")
    return estimate


def _plot(estimate: LipschitzEstimate, suite: str, path: Path) -> None:
    """Fig. 3.15: the computed L's in ascending order, the suggested one in red."""
    figure, axes = new_figure(1, 1, width=6.0, height=4.0)
    ax = axes[0, 0]
    ratios = estimate.ratios.numpy()
    ax.plot(np.arange(len(ratios)), ratios, color="tab:blue", linewidth=1.2)
    rank = float(np.searchsorted(ratios, estimate.suggested))
    label = f"suggested L = {estimate.suggested:.3g} ({estimate.percentile:g}th percentile)"
    ax.plot([rank], [estimate.suggested], "o", color="red", label=label)
    title = f"Computed L's on {suite} ({len(estimate.objectives)} copies)"
    ax.set(xlabel="pair (ascending)", ylabel="|f(x_i) - f(x_j)| / ||x_i - x_j||", title=title)
    ax.legend(fontsize=8)
    save_figure(figure, path)
