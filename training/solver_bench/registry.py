"""The suites, by the name ``python -m training.solver_bench run --suite`` takes. Adding a suite is one module
and one line here.

A suite module has ``run(out: Path, quick: bool, workers: int) -> Report``: it writes its PNGs into
``out`` and returns its results (see report.py); ``quick`` is a short run of the same protocol, for the
tests. A suite with a network may also have ``lipschitz_problem(seed: int) -> dict``, the arguments of
estimate_lipschitz (model, loss_fn, batches and optionally init), for ``python -m training.solver_bench lipschitz``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

SUITES = {
    "1d": "training.solver_bench.one_dim",
    "rosenbrock": "training.solver_bench.rosenbrock",
    "two-layer": "training.solver_bench.two_layer",
    "fashion-mnist": "training.solver_bench.fashion_mnist",
    "pose": "training.solver_bench.pose",
}


def load_suite(name: str) -> ModuleType:
    if name not in SUITES:
        raise ValueError(f"unknown suite {name!r}; the suites are {', '.join(SUITES)}")
    return importlib.import_module(SUITES[name])
