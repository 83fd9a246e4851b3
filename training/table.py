"""Table 4.2 of Wu (2019) on simulated bins: every part x N, our method and the thesis's against the baselines.

    python -m training.table --out runs/table [--parts nut bolt] [--instances 2 3 4] [--train-minutes 6] [--jobs 2]
        [--sim-config config/real_cell.yaml] [--sensor structured_light] [--methods per_seed]
        [--results-md docs/RESULTS.md [--bench-json runs/bench/node.json ...]]

For each part it simulates the training bags and held-out test bags (another
seed), trains the per-seed method once at ``--per-seed-train-n`` (its network sees
one part at a time, so that model serves every N) and the thesis's method at
each N, evaluates each test bag with both checkpoints and the baselines, and
writes ``table.md`` and ``table.json``, and with ``--results-md`` the generated
section of that file (``training.results``). Every step runs the project's own CLI,
``--jobs`` processes of one thread each at a time, and is skipped when its
output exists, so an interrupted table resumes where it stopped.

``--sim-config`` sets the cell (the camera, the bin, the sensor and the topics it
publishes on): by default ``config/real_cell.yaml``, a structured-light camera
0.6 m over a 200 mm bin; ``config/sim.yaml`` is the thesis's close 224 px view.
``--sensor`` overrides the cell's depth camera. Give each cell its own ``--out``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from bin_perception.config import SENSORS, load_config
from bin_perception.io.atomic import write_text
from bin_perception.sim.parts import part_names

from .jobs import cli, run_missing
from .results import load_benchmarks, markdown_table, pose_table, write_results_md

CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"
METHODS = {"per_seed": CONFIG_DIR / "train_cpu.yaml", "whole_image": CONFIG_DIR / "train_thesis_cpu.yaml"}
# "model" is the per-seed method as its recipe segments; the other of its two segmentations follows.
COLUMNS = ("model", "model_refined", "model_transfer", "model_seeds", "whole_image", "kmeans", "spectral", "dbscan")
TRAIN_SEED, TEST_SEED = 1, 2
# What the table keeps of each method's report: the segments' scores, and the model's poses'.
SCORES = (
    "f1", "precision", "recall", "add_recall", "ar", "ar_mssd", "ar_mspd", "rotation_median_deg", "rotation_p90_deg", "top_pick",
    "true_segments_add_recall", "true_segments_ar", "true_segments_rotation_median_deg",
    "shape_alignment_add_recall", "shape_alignment_rotation_median_deg",
)


def _bag(out: Path, part: str, instances: int, split: str) -> Path:
    return out / "bags" / f"{part}_n{instances}_{split}"


def _run_dir(out: Path, method: str, part: str, instances: int) -> Path:
    return out / method / f"{part}_n{instances}"


def build_table(
    out: Path,
    parts: list[str],
    counts: list[int],
    train_scenes: int,
    test_scenes: int,
    train_minutes: float,
    per_seed_n: int,
    jobs: int,
    sim_config: Path | None = CONFIG_DIR / "real_cell.yaml",
    sensor: str | None = None,
    methods: tuple[str, ...] = tuple(METHODS),
    refine: bool = False,
) -> dict:
    """Simulate, train and evaluate what is missing under ``out``; return the table's figures."""
    cell = []
    if sim_config is not None:
        cell += ["--config", str(sim_config)]
    if sensor is not None:
        cell += ["--sensor", sensor]
    topics = load_config(sim_config).topics
    # The bags carry the cell's topic names; train and evaluate read them there.
    bag_topics = ["--depth-topic", topics.depth, "--info-topic", topics.camera_info, "--gt-labels-topic", topics.gt_labels]
    bag_topics += ["--gt-poses-topic", topics.gt_poses]
    simulate, train, evaluate = [], [], []
    for part in parts:
        # Training bags only where a method trains: the per-seed method at one N, the thesis's at each.
        train_counts = ({per_seed_n} if "per_seed" in methods else set()) | (set(counts) if "whole_image" in methods else set())
        for split, seed, scenes, split_counts in (
            ("train", TRAIN_SEED, train_scenes, sorted(train_counts)),
            ("test", TEST_SEED, test_scenes, counts),
        ):
            for n in split_counts:
                bag = _bag(out, part, n, split)
                command = cli("simulate", "--part", part, "--instances", str(n), "--scenes", str(scenes), "--seed", str(seed), "--out", str(bag))
                simulate.append((command + cell, out / "logs" / f"{bag.name}.log", bag))
        trained = [("per_seed", per_seed_n)] + [("whole_image", n) for n in counts]
        for method, n in trained:
            if method not in methods:
                continue
            run = _run_dir(out, method, part, n)
            command = cli("train", "--bag", str(_bag(out, part, n, "train")), "--instances", str(n), "--config", str(METHODS[method]))
            command += ["--out", str(run), "--max-minutes", str(train_minutes), *bag_topics]
            train.append((command, out / "logs" / f"train_{method}_{part}_n{n}.log", run / "checkpoint.pt"))
        for n in counts:
            test = str(_bag(out, part, n, "test"))
            if "per_seed" in methods:
                ours = out / "reports" / f"{part}_n{n}"
                checkpoint = _run_dir(out, "per_seed", part, per_seed_n) / "checkpoint.pt"
                command = cli("evaluate", "--bag", test, "--checkpoint", str(checkpoint), "--baselines", "kmeans,spectral,dbscan", "--out", str(ours))
                evaluate.append((command + bag_topics, out / "logs" / f"evaluate_{part}_n{n}.log", ours / "metrics.json"))
                if refine:  # the same model, its poses refined against its learned model
                    refined = out / "reports" / f"{part}_n{n}_refined"
                    command = cli("evaluate", "--bag", test, "--checkpoint", str(checkpoint), "--baselines", "", "--refine", "icp",
                                  "--out", str(refined))
                    evaluate.append((command + bag_topics, out / "logs" / f"evaluate_{part}_n{n}_refined.log", refined / "metrics.json"))
            if "whole_image" in methods:
                whole_image = out / "reports" / f"{part}_n{n}_whole_image"
                checkpoint = _run_dir(out, "whole_image", part, n) / "checkpoint.pt"
                command = cli("evaluate", "--bag", test, "--checkpoint", str(checkpoint), "--baselines", "", "--out", str(whole_image))
                evaluate.append((command + bag_topics, out / "logs" / f"evaluate_{part}_n{n}_whole_image.log", whole_image / "metrics.json"))
    run_missing("simulate", simulate, jobs)
    run_missing("train", train, jobs)
    run_missing("evaluate", evaluate, jobs)
    return collect(out, parts, counts)


def _methods_of(report: Path) -> dict:
    return json.loads((report / "metrics.json").read_text())["methods"] if (report / "metrics.json").exists() else {}


def collect(out: Path, parts: list[str], counts: list[int]) -> dict:
    """{"columns": [method], "rows": [{"part", "instances", "<method>": {"f1", "precision", "recall", [pose scores]}}],
    "mean": {N: {method: f1}}}.

    A method that was not run is left out of the columns."""
    rows = []
    for n in counts:
        for part in parts:
            ours = _methods_of(out / "reports" / f"{part}_n{n}")
            whole_image = _methods_of(out / "reports" / f"{part}_n{n}_whole_image")
            refined = _methods_of(out / "reports" / f"{part}_n{n}_refined")
            row = {"part": part, "instances": n, **{name: ours[name] for name in COLUMNS if name in ours}}
            if "model" in refined:
                row["model_refined"] = refined["model"]
            if "model" in whole_image:
                row["whole_image"] = whole_image["model"]
            rows.append({k: v if k in ("part", "instances") else {m: v[m] for m in SCORES if m in v} for k, v in row.items()})
    columns = [name for name in COLUMNS if all(name in r for r in rows)]
    mean = {n: {name: float(np.mean([r[name]["f1"] for r in rows if r["instances"] == n])) for name in columns} for n in counts}
    return {"columns": columns, "rows": rows, "mean": mean}


def markdown(table: dict) -> str:
    """Laid out like Table 4.2, with P and R as in Table B.1: F1 (P / R) per part, N and method."""
    poses = pose_table(table)
    return markdown_table(table) + (f"\n{poses}" if poses else "")


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
    parser.add_argument(
        "--sim-config", type=Path, default=CONFIG_DIR / "real_cell.yaml",
        help="the simulated cell (camera, bin, sensor, topics) [config/real_cell.yaml]; config/sim.yaml: the thesis's 224 px view",
    )
    parser.add_argument("--sensor", choices=SENSORS, help="the simulated depth camera, over the cell's")
    parser.add_argument("--methods", nargs="+", choices=tuple(METHODS), default=list(METHODS), help="the trained methods to run")
    parser.add_argument("--refine", action="store_true", help="also score the per-seed model with its poses refined (evaluate --refine icp)")
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
        args.out, args.parts, args.instances, args.train_scenes, args.test_scenes, args.train_minutes, args.per_seed_train_n, args.jobs,
        args.sim_config, args.sensor, tuple(args.methods), args.refine,
    )
    table["settings"] = {
        "train_scenes": args.train_scenes, "test_scenes": args.test_scenes, "train_minutes": args.train_minutes,
        "per_seed_train_n": args.per_seed_train_n, "jobs": args.jobs,
        "sim_config": None if args.sim_config is None else str(args.sim_config), "sensor": args.sensor, "methods": args.methods,
        "refine": args.refine,
    }
    write_text(args.out / "table.json", json.dumps(table, indent=1))
    write_text(args.out / "table.md", markdown(table))
    if args.results_md:
        write_results_md(args.results_md, table, benchmarks, source=str(args.out / "table.json"))
    print(markdown(table))


if __name__ == "__main__":
    main()
