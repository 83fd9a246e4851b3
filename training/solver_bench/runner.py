"""Run a suite into a directory: its PNGs, results.json and results.md."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import torch

from .registry import load_suite
from .report import Report, write_report


def run_suite(name: str, out: str | os.PathLike, *, quick: bool = False, workers: int = 1) -> tuple[Report, Path, Path]:
    """Run suite ``name``; returns its report and the paths of results.json and results.md."""
    suite = load_suite(name)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    if workers <= 1:
        # The suites' networks are small: one thread is faster than two that contend on shared cores.
        torch.set_num_threads(1)
    start = time.perf_counter()
    report = suite.run(folder, quick=quick, workers=workers)
    seconds = time.perf_counter() - start
    report.data = {
        "suite": name,
        "quick": quick,
        "wall_seconds": seconds,
        "environment": {
            "workers": workers,
            "threads_per_worker": 1,
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "machine": platform.machine(),
        },
        **report.data,
    }
    mode = "quick run" if quick else "full run"
    cores = os.cpu_count()
    report.markdown += f"\n\n{mode}: {seconds / 60:.1f} min wall time, {workers} single-threaded worker(s), {cores} cores."
    json_path, markdown_path = write_report(report, folder)
    return report, json_path, markdown_path
