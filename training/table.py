"""Table 4.2 of Wu (2019) on simulated bins: every part x N, our method and the thesis's against the baselines.

    python -m training.table --out runs/table [--parts nut bolt] [--instances 2 3 4] [--train-minutes 6] [--jobs 2]
        [--results-md docs/RESULTS.md [--bench-json runs/bench/node.json ...]]

For each part it simulates the training bags and held-out test bags (another
seed), trains the per-seed method once at ``--per-seed-train-n`` (its network sees
one part at a time, so that model serves every N) and the thesis's method at
each N, evaluates each test bag with both checkpoints and the baselines, and
writes ``table.md`` and ``table.json``, and with ``--results-md`` the generated
section of that file (``training.results``). Every step runs the project's own CLI,
``--jobs`` processes of one thread each at a time, and is skipped when its
output exists, so an interrupted table resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from bin_perception.io.atomic import write_text
from bin_perception.sim.parts import part_names

from .jobs import cli, run_missing
from .results import load_benchmarks, markdown_table, write_results_md

CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"
METHODS = {"per_seed": CONFIG_DIR / "train_cpu.yaml", "whole_image": CONFIG_DIR / "train_thesis_cpu.yaml"}
# "model" is the per-seed method as its recipe segments; the other of its two segmentations follows.
COLUMNS = ("model", "model_transfer", "model_seeds", "whole_image", "kmeans", "spectral", "dbscan")
TRAIN_SEED, TEST_SEED = 1, 2


def _bag(out: Path, part: str, instances: int, split: str) -> Path:
    return out / "bags" / f"{part}_n{instances}_{split}"


def _run_dir(out: Path, method: str, part: str, instances: int) -> Path:
    return out / method / f"{part}_n{instances}"


def build_table(
    out: Path, parts: list[str], counts: list[int], train_scenes: int, test_scenes: int, train_minutes: float, per_seed_n: int, jobs: int
) -> dict:
    """Simulate, train and evaluate what is missing under ``out``; return the table's figures."""
    simulate, train, evaluate = [], [], []
    for part in parts:
        for n in sorted(set(counts) | {per_seed_n}):
            bag = _bag(out, part, n, "train")
            command = cli(
                "simulate", "--part", part, "--instances", str(n), "--scenes", str(train_scenes), "--seed", str(TRAIN_SEED), "--out", str(bag)
            )
            simulate.append((command, out / "logs" / f"{bag.name}.log", bag))
        for n in counts:
            bag = _bag(out, part, n, "test")
            command = cli(
                "simulate", "--part", part, "--instances", str(n), "--scenes", str(test_scenes), "--seed", str(TEST_SEED), "--out", str(bag)
            )
            simulate.append((command, out / "logs" / f"{bag.name}.log", bag))
        trained = [("per_seed", per_seed_n)] + [("whole_image", n) for n in counts]
        for method, n in trained:
            run = _run_dir(out, method, part, n)
            command = cli("train", "--bag", str(_bag(out, part, n, "train")), "--instances", str(n), "--config", str(METHODS[method]))
            command += ["--out", str(run), "--max-minutes", str(train_minutes)]
            train.append((command, out / "logs" / f"train_{method}_{part}_n{n}.log", run / "checkpoint.pt"))
        for n in counts:
            test = str(_bag(out, part, n, "test"))
            ours = out / "reports" / f"{part}_n{n}"
            checkpoint = _run_dir(out, "per_seed", part, per_seed_n) / "checkpoint.pt"
            command = cli("evaluate", "--bag", test, "--checkpoint", str(checkpoint), "--baselines", "kmeans,spectral,dbscan", "--out", str(ours))
            evaluate.append((command, out / "logs" / f"evaluate_{part}_n{n}.log", ours / "metrics.json"))
            whole_image = out / "reports" / f"{part}_n{n}_whole_image"
            checkpoint = _run_dir(out, "whole_image", part, n) / "checkpoint.pt"
            command = cli("evaluate", "--bag", test, "--checkpoint", str(checkpoint), "--baselines", "", "--out", str(whole_image))
            evaluate.append((command, out / "logs" / f"evaluate_{part}_n{n}_whole_image.log", whole_image / "metrics.json"))
    run_missing("simulate", simulate, jobs)
    run_missing("train", train, jobs)
    run_missing("evaluate", evaluate, jobs)
    return collect(out, parts, counts)


def collect(out: Path, parts: list[str], counts: list[int]) -> dict:
    """{"columns": [method], "rows": [{"part", "instances", "<method>": {"f1", "precision", "recall"}}], "mean": {N: {method: f1}}}."""
    rows = []
    for n in counts:
        for part in parts:
            ours = json.loads((out / "reports" / f"{part}_n{n}" / "metrics.json").read_text())["methods"]
            whole_image = json.loads((out / "reports" / f"{part}_n{n}_whole_image" / "metrics.json").read_text())["methods"]
            row = {"part": part, "instances": n, **{name: ours[name] for name in COLUMNS if name in ours}, "whole_image": whole_image["model"]}
            rows.append({k: v if k in ("part", "instances") else {m: v[m] for m in ("f1", "precision", "recall")} for k, v in row.items()})
    columns = [name for name in COLUMNS if all(name in r for r in rows)]
    mean = {n: {name: float(np.mean([r[name]["f1"] for r in rows if r["instances"] == n])) for name in columns} for n in counts}
    return {"columns": columns, "rows": rows, "mean": mean}


def markdown(table: dict) -> str:
    """Laid out like Table 4.2, with P and R as in Table B.1: F1 (P / R) per part, N and method."""
    return markdown_table(table)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--parts", nargs="+", default=part_names())
    parser.add_argument("--instances", nargs="+", type=int, default=[2, 3, 4])
    parser.add_argument("--train-scenes", type=int, default=300)
    parser.add_argument("--test-scenes", type=int, default=30, help="the first 10 tune DBSCAN's eps and are left out of every score")
    parser.add_argument("--train-minutes", type=float, default=6.0, help="per training run")
    parser.add_argument("--per-seed-train-n", type=int, default=3, help="the N of the per-seed method's training bins")
    parser.add_argument("--jobs", type=int, default=2, help="processes at a time, one thread each")
    parser.add_argument("--results-md", type=Path, help="also write the table into this Markdown file's generated section (docs/RESULTS.md)")
    parser.add_argument("--bench-json", type=Path, action="append", default=[], help="with --results-md: a benchmark's JSON to add (repeat)")
    args = parser.parse_args(argv)
    if args.bench_json and not args.results_md:
        parser.error("--bench-json goes into the file of --results-md; give that too")
    # Read before the table is built: a mistyped path should fail now, not after hours of training.
    try:
        benchmarks = load_benchmarks(args.bench_json)
    except FileNotFoundError as error:
        parser.error(str(error))
    table = build_table(
        args.out, args.parts, args.instances, args.train_scenes, args.test_scenes, args.train_minutes, args.per_seed_train_n, args.jobs
    )
    table["settings"] = {
        "train_scenes": args.train_scenes, "test_scenes": args.test_scenes, "train_minutes": args.train_minutes,
        "per_seed_train_n": args.per_seed_train_n, "jobs": args.jobs,
    }
    write_text(args.out / "table.json", json.dumps(table, indent=1))
    write_text(args.out / "table.md", markdown(table))
    if args.results_md:
        write_results_md(args.results_md, table, benchmarks, source=str(args.out / "table.json"))
    print(markdown(table))


if __name__ == "__main__":
    main()
