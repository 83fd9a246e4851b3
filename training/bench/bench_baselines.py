"""Clustering baselines per frame: wall time and pairwise F1 on simulated 224 x 224 bins.

    python -m training.bench.bench_baselines [--cases nut:3,lever:4] [--frames 20] [--tuning-frames 10]

Each baseline labels the observed cloud the model sees (the frame's workspace
points, as ``observe`` makes them) one frame at a time. DBSCAN's eps is chosen
per case on tuning frames simulated from another seed. Times exclude
simulation and one warm-up call per baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from bin_perception.baselines import BASELINE_NAMES, choose_dbscan_eps, run_baseline
from bin_perception.config import Config
from bin_perception.metrics import pairwise_scores
from bin_perception.model.observation import Normalization, observe
from bin_perception.sim.dataset import scene_frame
from bin_perception.sim.parts import load_part
from bin_perception.sim.scene import BinSimulator

EVALUATION_SEED, TUNING_SEED = 0, 1


def observed_clouds(
    simulator: BinSimulator, seed: int, frames: int, config: Config
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each frame's observed cloud (metres) and the true instance of each of its points."""
    normalization = Normalization.from_workspace(simulator.workspace)
    clouds = []
    for index in range(frames):
        frame = scene_frame(simulator, seed, index, config.scene.frame_period_s, config.camera.frame_id)
        observation = observe(frame, simulator.workspace, normalization, config.model.input_size_px)
        truth = frame.gt_labels.ravel()[observation.pixels].astype(np.int64)
        clouds.append((normalization.to_metres(observation.points), truth))
    return clouds


def bench_case(part: str, instances: int, frames: int, tuning_frames: int, eps_candidates_m: list[float]) -> list[dict]:
    config = Config()
    with BinSimulator(load_part(part), instances, config) as simulator:
        evaluation = observed_clouds(simulator, EVALUATION_SEED, frames, config)
        tuning = observed_clouds(simulator, TUNING_SEED, tuning_frames, config)
    params = {name: {} for name in BASELINE_NAMES}
    params["dbscan"]["eps_m"] = choose_dbscan_eps([p for p, _ in tuning], [t for _, t in tuning], eps_candidates_m)

    rows = []
    for name in BASELINE_NAMES:
        run_baseline(name, evaluation[0][0], instances, **params[name])
        times_ms, f1 = [], []
        for points_m, truth in evaluation:
            start = time.perf_counter()
            labels = run_baseline(name, points_m, instances, **params[name])
            times_ms.append(1000 * (time.perf_counter() - start))
            part_points = truth > 0
            f1.append(pairwise_scores(truth[part_points], labels[part_points]).f1)
        rows.append(
            {
                "part": part,
                "instances": instances,
                "baseline": name,
                "params": params[name],
                "frames": frames,
                "mean_points": float(np.mean([len(p) for p, _ in evaluation])),
                "f1_mean": float(np.mean(f1)),
                "f1_min": float(np.min(f1)),
                "ms_p50": float(np.percentile(times_ms, 50)),
                "ms_p95": float(np.percentile(times_ms, 95)),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default="nut:3,lever:4", help="part:N pairs, comma-separated")
    parser.add_argument("--frames", type=int, default=20, help="evaluation frames per case")
    parser.add_argument("--tuning-frames", type=int, default=10, help="frames (another seed) that choose DBSCAN's eps")
    parser.add_argument("--eps-candidates-mm", default="0.3,0.5,0.8,1.2,1.6,2,2.5,3,4,6")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    eps_candidates_m = [float(v) / 1000 for v in args.eps_candidates_mm.split(",")]

    print(f"{args.frames} frames per case, {os.cpu_count()} cores")
    print(f"{'case':<9} {'baseline':<9} {'points':>7} {'F1 mean':>8} {'F1 min':>7} {'ms p50':>8} {'ms p95':>8}")
    results = []
    for case in args.cases.split(","):
        part, instances = case.split(":")
        for row in bench_case(part, int(instances), args.frames, args.tuning_frames, eps_candidates_m):
            results.append(row)
            label = f"{part} N={instances}"
            eps = f"  eps {row['params']['eps_m'] * 1000:.1f} mm" if "eps_m" in row["params"] else ""
            print(
                f"{label:<9} {row['baseline']:<9} {row['mean_points']:>7.0f} {row['f1_mean']:>8.3f} "
                f"{row['f1_min']:>7.3f} {row['ms_p50']:>8.1f} {row['ms_p95']:>8.1f}{eps}",
                flush=True,
            )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
