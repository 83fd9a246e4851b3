"""Experiments as jobs of the project's own CLI: run the missing ones, a few single-threaded processes at a time."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tqdm import tqdm


def cli(*args: str) -> list[str]:
    """The command line of one ``bin-perception`` verb, in this interpreter."""
    return [sys.executable, "-m", "bin_perception.cli", *args]


def run_job(command: list[str], log: Path) -> None:
    # One thread a process: several processes then share the cores without oversubscribing them.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}); see {log}")


def run_missing(label: str, jobs: list[tuple[list[str], Path, Path]], workers: int) -> None:
    """Run the (command, log, output) jobs whose output does not exist yet, ``workers`` at a time."""
    todo = [(command, log) for command, log, output in jobs if not output.exists()]
    with ThreadPoolExecutor(workers) as pool, tqdm(total=len(todo), desc=label, unit="job") as bar:
        for _ in pool.map(lambda job: run_job(*job), todo):
            bar.update()
