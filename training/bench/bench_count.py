"""One frame's latency against the number of parts in the bin, the parts counted as the node counts them.

    python -m training.bench.bench_count --checkpoint RUN/checkpoint.pt --part bolt
        [--counts 1,2,4,8,16,30] [--frames 10] [--sim-config config/real_pile.yaml] [--out bench_count.json]

For each count N, PyBullet pours ``--frames`` bins of N parts (the real cell, poured), and each frame is
timed through the node's own path: ``BinPerception.predict`` with ``instances: auto``, then
``picking.prediction_picks`` (a grasp and a pick score per part, the pick order). A ResNet-18 forward at
224 px is timed in the same run as the peer. Writes the JSON and a PNG of p50 and p95 against N, with the
line from the smallest N's p50 that grows in proportion to N: a latency that grows no faster than linearly
stays under it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torchvision

from bin_perception.config import AUTO, load_config
from bin_perception.frame import Frame
from bin_perception.io.atomic import write_text
from bin_perception.model import load_checkpoint
from bin_perception.picking import prediction_picks
from bin_perception.sim.parts import load_part
from bin_perception.sim.scene import BinSimulator
from bin_perception.viz import curves

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--part", default="bolt")
    parser.add_argument("--counts", default="1,2,4,8,16,30")
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--sim-config", default=str(CONFIG_DIR / "real_pile.yaml"))
    parser.add_argument("--suction-radius-m", type=float, help="the cup, sized to the part (default: the config's gripper)")
    parser.add_argument("--out", default="bench_count.json")
    args = parser.parse_args(argv)

    perception, _, _ = load_checkpoint(args.checkpoint)
    perception.eval()
    config = load_config(args.sim_config)
    if args.suction_radius_m:
        config = config.with_suction_radius(args.suction_radius_m)
    resnet = torchvision.models.resnet18().eval()
    image = torch.zeros(1, 3, 224, 224)
    rows = []
    for count in (int(c) for c in args.counts.split(",")):
        with BinSimulator(load_part(args.part), count, config) as simulator:
            perception.set_workspace(simulator.workspace, simulator.camera_from_bin)
            samples = [simulator.scene([count, seed]) for seed in range(args.frames)]
        perception.set_instances(AUTO)
        frame_s, resnet_s, counted = [], [], []
        with torch.no_grad():
            resnet(image)
            for seed, sample in enumerate(samples):
                frame = Frame(sample.depth_m, sample.K, seed, "camera")
                start = time.perf_counter()
                prediction = perception.predict(frame)
                points_m = perception.normalization.to_metres(prediction.observation.points)
                prediction_picks(
                    prediction, points_m, frame, perception.model_points_m(), perception.workspace, config.gripper, perception.camera_from_bin
                )
                frame_s.append(time.perf_counter() - start)
                counted.append(len(prediction.poses))
                start = time.perf_counter()
                resnet(image)
                resnet_s.append(time.perf_counter() - start)
        p50, p95 = np.percentile(np.asarray(frame_s) * 1000, [50, 95])
        resnet_p50 = float(np.median(resnet_s) * 1000)
        rows.append({"instances": count, "p50_ms": float(p50), "p95_ms": float(p95), "resnet18_p50_ms": resnet_p50,
                     "p50_over_resnet18": float(p50 / resnet_p50), "counted_mean": float(np.mean(counted))})
        print(f"N = {count:2d}: p50 {p50:6.1f} ms, p95 {p95:6.1f} ms, {p50 / resnet_p50:.2f}x a ResNet-18 forward; "
              f"counted {np.mean(counted):.1f} on average", flush=True)
    counts = [row["instances"] for row in rows]
    p50s = [row["p50_ms"] for row in rows]
    # Linear growth from the smallest N: p50(N) <= p50(N0) * N / N0 wherever it holds.
    linear = [p50s[0] * n / counts[0] for n in counts]
    summary = {"checkpoint": args.checkpoint, "part": args.part, "sim_config": args.sim_config, "threads": torch.get_num_threads(),
               "rows": rows, "no_faster_than_linear": bool(all(p <= line for p, line in zip(p50s, linear)))}
    write_text(args.out, json.dumps(summary, indent=1))
    curves(
        counts, {"p50": p50s, "p95": [row["p95_ms"] for row in rows], "linear from the smallest N": linear},
        Path(args.out).with_suffix(".png"), "parts in the bin, N", "ms per frame (predict + picks)",
        f"{args.part}: one frame against N, {torch.get_num_threads()} threads",
    )
    print(f"results: {args.out} and {Path(args.out).with_suffix('.png')}")


if __name__ == "__main__":
    main()
