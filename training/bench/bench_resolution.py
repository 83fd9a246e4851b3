"""One frame's latency at the resolutions real cameras give, of the same bin seen by the same camera.

    python -m training.bench.bench_resolution --checkpoint RUN/checkpoint.pt --part nut --instances 3
        [--sizes 224x224,640x480,1280x720] [--frames 20] [--sim-config config/real_cell.yaml] [--out bench_resolution.json]

The simulator renders each bin at every size, from one camera pose with one field of view (the focal
length scales with the width), so that the sizes differ in pixels only: the default cell's camera (the bin
fills the image), or ``--sim-config``'s (the real cell's: the bin is a quarter of the image's width). For each size: p50 and p95 of
``BinPerception.predict`` (depth image to poses and labels, as the node runs it), the back-projection
alone, and a ResNet-18 forward at 224 px in the same run, the peer the latency targets are set against.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import numpy as np
import torch
import torchvision

from bin_perception.config import Config, load_config
from bin_perception.frame import Frame
from bin_perception.geometry import backproject
from bin_perception.io.atomic import write_text
from bin_perception.model import load_checkpoint
from bin_perception.sim.parts import load_part
from bin_perception.sim.scene import BinSimulator


def camera_config(base: Config, width_px: int, height_px: int, height_above_rim_m: float) -> Config:
    """``base`` with its camera at ``width_px`` x ``height_px``, the same field of view and the same pose."""
    fx_px = base.camera.fx_px * width_px / base.camera.width_px
    camera = dataclasses.replace(
        base.camera, width_px=width_px, height_px=height_px, fx_px=fx_px, fy_px=fx_px,
        cx_px=(width_px - 1) / 2, cy_px=(height_px - 1) / 2, height_above_rim_m=height_above_rim_m,
    )
    return dataclasses.replace(base, camera=camera)


def _percentiles_ms(times_s: list[float]) -> dict:
    p50, p95 = np.percentile(np.asarray(times_s) * 1000, [50, 95])
    return {"p50_ms": float(p50), "p95_ms": float(p95)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--part", default="nut")
    parser.add_argument("--instances", type=int, default=3)
    parser.add_argument("--sizes", default="224x224,640x480,1280x720")
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--sensor", help="the simulated depth camera [the cell's]")
    parser.add_argument("--sim-config", help="the cell, e.g. config/real_cell.yaml [the default cell]")
    parser.add_argument("--max-observed-width-px", type=int, help="the model's decimation threshold [the checkpoint's]")
    parser.add_argument("--out", default="bench_resolution.json")
    args = parser.parse_args(argv)

    perception, _, _ = load_checkpoint(args.checkpoint)
    perception.eval()
    if args.max_observed_width_px:
        perception.config = dataclasses.replace(perception.config, max_observed_width_px=args.max_observed_width_px)
    part = load_part(args.part)
    base = load_config(args.sim_config)
    if args.sensor:
        base = dataclasses.replace(base, sensor=args.sensor)
    with BinSimulator(part, args.instances, base) as reference:
        height_above_rim_m = float(reference.world_from_camera[2, 3] - reference.wall_height_m)
    resnet = torchvision.models.resnet18().eval()
    image = torch.zeros(1, 3, 224, 224)
    rows = []
    for size in args.sizes.split(","):
        width_px, height_px = map(int, size.split("x"))
        config = camera_config(base, width_px, height_px, height_above_rim_m)
        with BinSimulator(part, args.instances, config) as simulator:
            frames = []
            for seed in range(args.frames):
                sample = simulator.scene(seed)
                frames.append(Frame(sample.depth_m, sample.K, seed, "camera"))
        predict_s, backproject_s, resnet_s = [], [], []
        with torch.no_grad():
            perception.predict(frames[0])
            resnet(image)
            for frame in frames:
                start = time.perf_counter()
                perception.predict(frame)
                predict_s.append(time.perf_counter() - start)
                start = time.perf_counter()
                backproject(frame.depth_m, frame.K)
                backproject_s.append(time.perf_counter() - start)
                start = time.perf_counter()
                resnet(image)
                resnet_s.append(time.perf_counter() - start)
        row = {"size": size, "predict": _percentiles_ms(predict_s), "backproject": _percentiles_ms(backproject_s),
               "resnet18_224": _percentiles_ms(resnet_s)}
        row["predict_over_resnet18"] = row["predict"]["p50_ms"] / row["resnet18_224"]["p50_ms"]
        rows.append(row)
        print(f"{size:>10}: predict p50 {row['predict']['p50_ms']:6.1f} ms, p95 {row['predict']['p95_ms']:6.1f} ms; "
              f"back-projection p50 {row['backproject']['p50_ms']:5.1f} ms; {row['predict_over_resnet18']:.2f}x a ResNet-18 forward",
              flush=True)
    by_size = {row["size"]: row["predict"]["p50_ms"] for row in rows}
    summary = {"checkpoint": args.checkpoint, "part": args.part, "instances": args.instances, "sensor": base.sensor,
               "sim_config": args.sim_config, "max_observed_width_px": perception.config.max_observed_width_px,
               "threads": torch.get_num_threads(), "rows": rows}
    if "1280x720" in by_size and "640x480" in by_size:
        summary["p50_1280x720_over_640x480"] = by_size["1280x720"] / by_size["640x480"]
        print(f"1280x720 / 640x480: {summary['p50_1280x720_over_640x480']:.2f}x (target 1.5x)")
    write_text(args.out, json.dumps(summary, indent=1))
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
