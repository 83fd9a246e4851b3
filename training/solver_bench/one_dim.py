"""Suite ``1d`` (Wu 2019, Sec. 3.3.3.1, Figs. 3.3 and 3.7-3.9): x sin x plus an offset, on a box.

The thesis's claim: every solver finds the global minimum of f1, but only the exact BPGrad (Alg. 1)
finds that of f2 and f3; the others stop in the local minimum near x = 4.91. The hyper-parameters are
Appendix A.3's, so there is no grid and, the problems being deterministic, a single run per solver.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.optimize
import torch
from tqdm import tqdm

from bin_perception.optim import BPGradSearch

from .plotting import COLORS, new_figure, save_figure
from .report import Report, markdown_table, number
from .solvers import SOLVER_BY_KEY, SOLVERS, make_optimizer, take_step

START = 2.5  # x_1 of Fig. 3.3, for every solver and function
TOLERANCE = 1e-4  # "converged": f stays within this of its final value
RHO = 0.1
LIPSCHITZ = 4 * math.pi
NEAR_GLOBAL = 0.1  # |x - x*| under which a solver "reaches the global minimum"; the local one is 6 away


@dataclass(frozen=True)
class Problem:
    name: str
    offset: float
    high: float  # the box is [0, high]
    doubling_period: int | None  # BPGrad's L doubles every this many iterations (A.3, f2 and f3)
    sgd_momentum_lr: float  # the one setting A.3 changes between f1 and f2, f3

    def f(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sin(x) + self.offset

    def global_minimizer(self) -> float:
        """x* to 1e-10: a dense grid, then Brent's method in the grid cell around the grid's best."""
        grid = np.linspace(0, self.high, 100_001)
        coarse = grid[np.argmin(grid * np.sin(grid))]
        step = grid[1] - grid[0]
        bracket = (coarse - step, coarse + step)
        polished = scipy.optimize.minimize_scalar(
            lambda x: x * math.sin(x), bounds=bracket, method="bounded", options={"xatol": 1e-10}
        )
        return float(polished.x)


PROBLEMS = (
    Problem("f1", 4.815, 8.0, None, 0.008),
    Problem("f2", 11.05, 4 * math.pi, 10, 0.1),
    Problem("f3", 15.0, 4 * math.pi, 10, 0.1),
)


def settings(problem: Problem) -> dict[str, tuple[float, dict[str, Any]]]:
    """Appendix A.3: solver -> (learning rate or L, other options)."""
    return {
        "sgd": (0.1, {}),
        "sgd-m": (problem.sgd_momentum_lr, {}),
        "adam": (0.1, {"betas": (0.9, 0.99), "eps": 1e-6}),
        "rmsprop": (0.05, {"alpha": 0.99, "eps": 1e-6}),
        "adagrad": (0.5, {"eps": 1e-10}),
        "adadelta": (1.0, {"rho": 0.99, "eps": 1e-6}),
        "bpgrad": (LIPSCHITZ, {"rho": RHO}),
        "bpgrad-m": (LIPSCHITZ, {"rho": RHO}),
    }


def iterations_to_converge(values: list[float], tolerance: float = TOLERANCE) -> int:
    """The first iteration from which f stays within ``tolerance`` of its final value (0-based)."""
    final = values[-1]
    for t in range(len(values) - 1, -1, -1):
        if abs(values[t] - final) > tolerance:
            return t + 1
    return 0


def run_solver(problem: Problem, key: str, iterations: int) -> dict[str, Any]:
    """Alg. 2 or a torch.optim solver from x = START, projected back onto the box after every step."""
    rate, options = settings(problem)[key]
    x = torch.nn.Parameter(torch.tensor([START], dtype=torch.float64))
    optimizer = make_optimizer(key, [x], rate, **options)
    xs, fs = [], []
    for t in range(iterations):
        optimizer.zero_grad()
        value = problem.f(x).sum()
        value.backward()
        xs.append(x.item())
        fs.append(value.item())
        take_step(optimizer, value)
        with torch.no_grad():
            x.clamp_(0.0, problem.high)
        if key.startswith("bpgrad") and problem.doubling_period and (t + 1) % problem.doubling_period == 0:
            optimizer.param_groups[0]["lipschitz"] *= 2
    xs.append(x.item())
    fs.append(problem.f(x.detach()).item())
    return {"x": xs, "f": fs}


def run_alg1(problem: Problem, budget: int) -> dict[str, Any]:
    search = BPGradSearch(problem.f, bounds=[(0.0, problem.high)], lipschitz=LIPSCHITZ, rho=RHO, x0=[START])
    result = search.run(max_iters=budget)
    xs = result.history.x[:, 0].tolist()
    best_so_far = np.minimum.accumulate(result.history.f.numpy()).tolist()
    return {
        "x": xs,
        "f": result.history.f.tolist(),
        "best_so_far": best_so_far,
        "radii": result.radii.tolist(),
        "best_x": result.x.item(),
        "best_iteration": result.best_iteration,
        "covered": result.covered,
        "lower": result.lower,
        "upper": result.upper,
    }


def run(out: Path, quick: bool, workers: int = 1) -> Report:
    iterations, budget = (300, 400) if quick else (2000, 5000)
    data: dict[str, Any] = {"start": START, "tolerance": TOLERANCE, "iterations": iterations, "alg1_budget": budget}
    data["problems"] = {}
    sections, figures = [], []
    for problem in tqdm(PROBLEMS, desc="1d: functions"):
        x_star = problem.global_minimizer()
        traces = {"alg1": run_alg1(problem, budget)}
        traces.update({s.key: run_solver(problem, s.key, iterations) for s in SOLVERS})
        summary = {key: _summary(problem, key, trace, x_star) for key, trace in traces.items()}
        data["problems"][problem.name] = {
            "offset": problem.offset,
            "box": [0.0, problem.high],
            "global_minimizer": x_star,
            "solvers": summary,
        }
        rows = [
            [_label(key), f"{s['final_x']:.3f}", number(s["final_f"], 4), s["iterations_to_converge"],
             "yes" if s["reaches_global_minimum"] else "no"]
            for key, s in summary.items()
        ]  # fmt: skip
        heading = f"### {problem.name} = x sin x + {problem.offset:g} on [0, {problem.high:.4g}]"
        sections.append(
            f"{heading} (global minimum at x = {x_star:.3f})\n\n"
            + markdown_table(["solver", "final x", "f(final x)", "iterations to converge", "global minimum"], rows)
        )
        figures.append(_plot_trajectories(problem, traces, x_star, out / f"1d_{problem.name}.png"))
        if problem.name == "f3":
            figures.append(_plot_fig_3_3(problem, traces["alg1"], out / "1d_alg1_f3.png"))

    at_global = {
        name: sorted(key for key, s in data["problems"][name]["solvers"].items() if s["reaches_global_minimum"])
        for name in ("f2", "f3")
    }
    reproduced = all(found == ["alg1"] for found in at_global.values())
    data["claim_only_alg1_finds_global_of_f2_f3"] = {"reproduced": reproduced, "solvers_at_global": at_global}
    alg1 = data["problems"]["f3"]["solvers"]["alg1"]
    data["fig_3_3"] = {key: alg1[key] for key in ("samples", "covered", "best_iteration", "final_x")}
    found = {name: ", ".join(map(_label, keys)) or "none" for name, keys in at_global.items()}
    headline = (
        f"Every solver starts at x = {START}; the box is enforced by projection after each step. Iterations to "
        f"converge: the first from which f stays within {TOLERANCE:g} of its final value (for Alg. 1, the best f so "
        f"far). Budget: {iterations} iterations; Alg. 1 stops when its balls cover the box (at most {budget} samples)."
        f"\n\n**Claim: only Alg. 1 reaches the global minimum of f2 and f3: "
        f"{'reproduced' if reproduced else 'not reproduced'}** (at the global minimum: f2 {found['f2']}; "
        f"f3 {found['f3']}).\n\n"
        f"**Fig. 3.3** (Alg. 1 on f3, L = 4π, ρ = 0.1, x1 = 2.5): {alg1['samples']} samples, the box "
        f"{'covered' if alg1['covered'] else 'NOT covered'}; the best is x{alg1['best_iteration']} = "
        f"{alg1['final_x']:.3f}. The thesis: covered within 16 iterations, x12 = 11.117."
    )
    markdown = headline + "\n\n" + "\n\n".join(sections)
    title = "Solver benchmark 1d: x sin x (thesis Sec. 3.3.3.1)"
    return Report(title=title, data=data, markdown=markdown, figures=figures)


def _summary(problem: Problem, key: str, trace: dict[str, Any], x_star: float) -> dict[str, Any]:
    """Where a solver ended, and when it got there: Alg. 1's result is its best sample."""
    final_x = trace["best_x"] if key == "alg1" else trace["x"][-1]
    summary = {
        "final_x": final_x,
        "final_f": problem.f(torch.tensor(final_x)).item(),
        "iterations_to_converge": iterations_to_converge(trace["best_so_far"] if key == "alg1" else trace["f"]),
        "reaches_global_minimum": abs(final_x - x_star) < NEAR_GLOBAL,
    }
    if key == "alg1":
        summary.update({k: trace[k] for k in ("covered", "best_iteration", "lower", "upper")})
        summary["samples"] = len(trace["x"])
    return summary


def _label(key: str) -> str:
    return "BPGrad Alg. 1" if key == "alg1" else SOLVER_BY_KEY[key].label


def _plot_trajectories(problem: Problem, traces: dict[str, dict[str, Any]], x_star: float, path: Path) -> Path:
    figure, axes = new_figure(3, 3, width=3.6, height=2.8)
    grid = np.linspace(0, problem.high, 600)
    curve = grid * np.sin(grid) + problem.offset
    for ax, (key, trace) in zip(axes.flat, traces.items(), strict=True):
        xs = np.asarray(trace["x"])
        ax.plot(grid, curve, color="0.6", linewidth=1)
        ax.axvline(x_star, color="0.4", linestyle="--", linewidth=0.8)
        ax.scatter(xs, xs * np.sin(xs) + problem.offset, c=np.arange(len(xs)), cmap="viridis", s=10, zorder=3)
        final = trace["best_x"] if key == "alg1" else xs[-1]
        final_f = final * math.sin(final) + problem.offset
        ax.plot([final], [final_f], marker="*", color=COLORS[key], markersize=12, zorder=4)
        ax.set_title(f"{_label(key)}: x = {final:.3f}", fontsize=9)
        ax.set_xlabel("x (colour: iteration)", fontsize=8)
    figure.suptitle(f"{problem.name} = x sin x + {problem.offset:g}, from x = {START}; dashed: the global minimum")
    return save_figure(figure, path)


def _plot_fig_3_3(problem: Problem, trace: dict[str, Any], path: Path) -> Path:
    """Fig. 3.3: the samples, each one's Lipschitz cone f(x_j) - L |x - x_j| down to the lower bound estimate."""
    figure, axes = new_figure(1, 1, width=9.0, height=4.2)
    ax = axes[0, 0]
    grid = np.linspace(0, problem.high, 800)
    ax.plot(grid, grid * np.sin(grid) + problem.offset, color="0.3", linewidth=1.2, label="f3")
    ax.axhline(trace["lower"], color="tab:red", linestyle="--", linewidth=0.9, label="ρ min f (lower bound estimate)")
    for j, (x, fx, r) in enumerate(zip(trace["x"], trace["f"], trace["radii"], strict=True), start=1):
        ax.fill([x - r, x, x + r], [trace["lower"], fx, trace["lower"]], color="tab:blue", alpha=0.12, linewidth=0)
        ax.plot([x], [fx], "o", color="tab:blue", markersize=4)
        ax.annotate(str(j), (x, fx), textcoords="offset points", xytext=(0, 5), ha="center", fontsize=7)
    best = f"best: x{trace['best_iteration']} = {trace['best_x']:.3f}"
    ax.plot([trace["best_x"]], [trace["upper"]], marker="*", color=COLORS["alg1"], markersize=14, label=best)
    ax.set_xlim(0, problem.high)
    ax.set_xlabel("x")
    ax.set_title(f"Alg. 1 on f3 (L = 4π, ρ = 0.1, x1 = {START}): {len(trace['x'])} samples; shaded: removed cones")
    ax.legend(fontsize=8, loc="upper left")
    return save_figure(figure, path)
