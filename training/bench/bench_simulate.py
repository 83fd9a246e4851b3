"""Simulator throughput: scenes per second into a bag, for N parts at 224 x 224, with 1 and 2 workers.

    python -m training.bench.bench_simulate [--instances 4] [--scenes 200] [--parts nut,bolt,...]

Each run simulates, renders and writes a whole MCAP bag, as `bin-perception simulate` does.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from bin_perception.sim.dataset import simulate_bag
from bin_perception.sim.parts import part_names


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=4)
    parser.add_argument("--scenes", type=int, default=200)
    parser.add_argument("--parts", default=",".join(part_names()))
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)

    results = []
    print(f"N = {args.instances}, {args.scenes} scenes per run, {os.cpu_count()} cores")
    print(f"{'part':<10} {'workers':>7} {'scenes/s':>9} {'per worker':>11}")
    with tempfile.TemporaryDirectory() as tmp:
        for part in args.parts.split(","):
            for workers in map(int, args.workers.split(",")):
                out = Path(tmp) / f"{part}_{workers}"
                summary = simulate_bag(part, args.instances, args.scenes, seed=0, out=out, workers=workers, progress=False)
                rate = summary.scenes_per_s
                results.append({"part": part, "workers": workers, "scenes_per_s": rate})
                print(f"{part:<10} {workers:>7} {rate:>9.1f} {rate / workers:>11.1f}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
