"""Inference latency, one frame from depth image to label image, against the ResNet-18 forward alone
and the clustering baselines on the same frames.

Two forwards are timed: the model's own network on this frame's input (for the per-seed method, N crops at
the configured size) and a ResNet-18 on one 224 x 224 image, the thesis's network and input. Ours is
split into the observation (back-projection and seeds), the network (timed again after it, so warm), and
the rest: rendering, HPR over the scene and label transfer where the config transfers labels, and the
poses and label image.

    python -m training.bench.bench_inference --bag BAG --checkpoint RUN/checkpoint.pt [--frames 40]
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np
import torch
import torchvision

from bin_perception.baselines import run_baseline
from bin_perception.io.bag import BagReader
from bin_perception.model import load_checkpoint


def _percentiles(times_s: list[float]) -> str:
    p50, p95 = np.percentile(np.asarray(times_s) * 1000, [50, 95])
    return f"p50 {p50:7.1f} ms   p95 {p95:7.1f} ms"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bag", required=True)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--dbscan-eps-m", type=float, default=0.002)
    args = parser.parse_args(argv)
    perception, _, _ = load_checkpoint(args.checkpoint)
    perception.eval()
    frames = list(itertools.islice(BagReader(args.bag), args.frames))
    names = ("network forward", "resnet18 224 forward", "ours: depth to labels", "  observe + seeds", "  the rest")
    timings: dict[str, list[float]] = {k: [] for k in (*names, "kmeans", "spectral", "dbscan")}
    resnet = torchvision.models.resnet18().eval()
    image = torch.zeros(1, 3, 224, 224)
    clouds_m = []
    with torch.no_grad():
        # The first calls allocate and pick kernels; a running node has long done that.
        perception.predict(frames[0])
        resnet(image)
        for frame in frames:
            start = time.perf_counter()
            observation = perception.observe(frame)
            observed = time.perf_counter()
            prediction = perception.predict(frame, observation)
            done = time.perf_counter()
            timings["ours: depth to labels"].append(done - start)
            timings["  observe + seeds"].append(observed - start)
            start = time.perf_counter()
            perception([observation])
            timings["network forward"].append(time.perf_counter() - start)
            timings["  the rest"].append(done - observed - timings["network forward"][-1])
            start = time.perf_counter()
            resnet(image)
            timings["resnet18 224 forward"].append(time.perf_counter() - start)
            clouds_m.append(perception.normalization.to_metres(observation.points))
            del prediction
    # The baselines after ours, not between its frames: their thread pools (OpenMP, BLAS) would stay awake
    # and slow the next frame's network, which no node running alone suffers.
    for points_m in clouds_m:
        for name, params in (("kmeans", {}), ("spectral", {}), ("dbscan", {"eps_m": args.dbscan_eps_m})):
            start = time.perf_counter()
            run_baseline(name, points_m, perception.instances, **params)
            timings[name].append(time.perf_counter() - start)
    size = perception.config.input_size_px
    print(f"{len(frames)} frames of {frames[0].depth_m.shape[1]}x{frames[0].depth_m.shape[0]}, network input {size} px, "
          f"{torch.get_num_threads()} threads")
    forward = np.median(timings["network forward"])
    resnet_forward = np.median(timings["resnet18 224 forward"])
    for name, times in timings.items():
        print(f"  {name:<26} {_percentiles(times)}   {np.median(times) / forward:5.2f}x the network, "
              f"{np.median(times) / resnet_forward:5.2f}x a ResNet-18 at 224 px")


if __name__ == "__main__":
    main()
