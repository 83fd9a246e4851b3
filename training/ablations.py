"""The thesis's ablations (Wu 2019, Sec. 4.3) as config switches, each trained and evaluated the same way.

    python -m training.ablations --out runs/ablations [--part nut] [--instances 2] [--train-minutes 3] [--jobs 2]

Every variant changes one switch of the base config (the thesis's method sized
for a CPU, ``config/train_thesis_cpu.yaml``): one or two rotation channels,
the HPR exponent (2.0, 2.9, 3.14, none), the rotation representation, the
model's points m, the initial cube's side and the number of training scenes.
Each is trained for the same wall-clock budget on the same bag and evaluated
on the same held-out bag; ``ablations.md`` and ``ablations.json`` hold the
pairwise F1, the chamfer distance, the learned model's fidelity and the pose
errors. Finished steps are skipped, so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import yaml

from bin_perception.config import load_config
from bin_perception.io.atomic import write_text

from .jobs import cli, run_missing

BASE_CONFIG = Path(__file__).resolve().parent.parent / "config" / "train_thesis_cpu.yaml"
TRAIN_SEED, TEST_SEED = 1, 2

# name -> the one switch it changes, as (section, key, value).
VARIANTS: dict[str, tuple[str, str, object] | None] = {
    "base": None,
    "two_channels": ("model", "rotation_channels", 2),
    "hpr_2.0": ("model", "hpr_exponent", 2.0),
    "hpr_3.14": ("model", "hpr_exponent", 3.14),
    "hpr_none": ("model", "hpr_exponent", None),
    "rotation_ortho6d": ("model", "rotation", "ortho6d"),
    "rotation_axis_angle": ("model", "rotation", "axis_angle"),
    "points_1024": ("model", "model_points", 1024),
    "points_2048": ("model", "model_points", 2048),
    "cube_0.1": ("model", "init_cube", 0.1),
    "cube_0.25": ("model", "init_cube", 0.25),
    "cube_1.0": ("model", "init_cube", 1.0),
    "scenes_100": ("train", "scenes", 100),
}
REPORTED = ("f1", "precision", "recall", "chamfer", "rotation_error_deg", "translation_error_m")


def variant_config(base: dict, switch: tuple[str, str, object] | None) -> dict:
    config = copy.deepcopy(base)
    if switch is not None:
        section, key, value = switch
        config.setdefault(section, {})[key] = value
    return config


def run_ablations(
    out: Path, base_path: Path, part: str, instances: int, train_scenes: int, test_scenes: int, train_minutes: float, jobs: int,
    variants: list[str] | None = None,
) -> dict:
    """Simulate, train and evaluate what is missing under ``out``; the figures of each variant."""
    variants = variants or list(VARIANTS)
    base = yaml.safe_load(base_path.read_text()) or {}
    bags = {split: out / "bags" / f"{part}_n{instances}_{split}" for split in ("train", "test")}
    simulate = [
        (cli("simulate", "--part", part, "--instances", str(instances), "--scenes", str(scenes), "--seed", str(seed), "--out", str(bags[split])),
         out / "logs" / f"simulate_{split}.log", bags[split])
        for split, scenes, seed in (("train", train_scenes, TRAIN_SEED), ("test", test_scenes, TEST_SEED))
    ]
    train, evaluate = [], []
    for name in variants:
        switch = VARIANTS[name]
        config_path = out / "configs" / f"{name}.yaml"
        config_path.parent.mkdir(parents=True, exist_ok=True)
        write_text(config_path, yaml.safe_dump(variant_config(base, switch), sort_keys=False))
        load_config(config_path)  # a bad switch fails here, before any training
        run = out / "runs" / name
        command = cli("train", "--bag", str(bags["train"]), "--instances", str(instances), "--config", str(config_path), "--out", str(run))
        train.append((command + ["--max-minutes", str(train_minutes)], out / "logs" / f"train_{name}.log", run / "checkpoint.pt"))
        report = out / "reports" / name
        # No baseline: they do not change with the variant. The first frames are held out as in the table's reports.
        command = cli("evaluate", "--bag", str(bags["test"]), "--checkpoint", str(run / "checkpoint.pt"), "--baselines", "", "--out", str(report))
        evaluate.append((command, out / "logs" / f"evaluate_{name}.log", report / "metrics.json"))
    run_missing("simulate", simulate, jobs)
    run_missing("train", train, jobs)
    run_missing("evaluate", evaluate, jobs)
    rows = {}
    for name in variants:
        metrics = json.loads((out / "reports" / name / "metrics.json").read_text())
        ours = metrics["methods"]["model"]
        sidecar = json.loads((out / "runs" / name / "checkpoint.json").read_text())
        rows[name] = {**{k: ours.get(k) for k in REPORTED}, "model_fidelity_m": metrics.get("model_fidelity_m"), "steps": sidecar.get("step")}
    return rows


def markdown(rows: dict) -> str:
    lines = ["| variant | switch | F1 (P / R) | chamfer | model fidelity (mm) | rotation error (deg) | steps |", "|---|---|---|---|---|---|---|"]
    for name, row in rows.items():
        switch = VARIANTS[name]
        label = "-" if switch is None else f"{switch[0]}.{switch[1]}: {switch[2]}"
        fidelity = "-" if row["model_fidelity_m"] is None else f"{row['model_fidelity_m'] * 1000:.2f}"
        rotation = "-" if row["rotation_error_deg"] is None else f"{row['rotation_error_deg']:.1f}"
        lines.append(
            f"| {name} | {label} | {row['f1']:.3f} ({row['precision']:.2f} / {row['recall']:.2f}) | {row['chamfer']:.4f} | "
            f"{fidelity} | {rotation} | {row['steps']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--config", type=Path, default=BASE_CONFIG, help="the base every variant changes one switch of")
    parser.add_argument("--part", default="nut")
    parser.add_argument("--instances", type=int, default=2)
    parser.add_argument("--train-scenes", type=int, default=300)
    parser.add_argument("--test-scenes", type=int, default=30, help="the first 10 tune DBSCAN's eps and are left out of every score")
    parser.add_argument("--train-minutes", type=float, default=3.0, help="per variant")
    parser.add_argument("--jobs", type=int, default=2, help="processes at a time, one thread each")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), help="a subset; all by default")
    args = parser.parse_args(argv)
    rows = run_ablations(
        args.out, args.config, args.part, args.instances, args.train_scenes, args.test_scenes, args.train_minutes, args.jobs, args.variants
    )
    write_text(args.out / "ablations.json", json.dumps(rows, indent=1))
    write_text(args.out / "ablations.md", markdown(rows))
    print(markdown(rows))


if __name__ == "__main__":
    main()
