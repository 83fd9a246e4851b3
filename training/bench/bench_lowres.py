"""Throughput of the low-resolution classifier's classify path, as lowres_classifier_node runs it: an rgb8
message decoded, its LR view, the backbone, then the transfer net and the SVMs; one image at a time.

    python -m training.bench.bench_lowres --model MODEL.pt [--images 200] [--threads 2]

Prints images per second and the share of the time spent in each stage.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from bin_perception.io.messages import image_msg, rgb_from_image
from bin_perception.lowres.serving import ImageClassifier
from bin_perception.sim.renders import render_parts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="MODEL.pt written by `bin-perception lowres fit`")
    parser.add_argument("--images", type=int, default=200, help="images to classify, one at a time")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--warmup", type=int, default=10, help="untimed images first")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    classifier = ImageClassifier.load(args.model)
    renders = render_parts(max(1, -(-(args.images + args.warmup) // 6)), seed=0)
    messages = [image_msg(i, "camera", image, "rgb8") for i, image in enumerate(renders.images[: args.images + args.warmup])]
    stages = {"decode": [], "backbone": [], "transfer net + SVM": []}
    wall_s = []
    for index, msg in enumerate(messages):
        start = time.perf_counter()
        rgb = rgb_from_image(msg, "image")
        decoded = time.perf_counter()
        classifier.scores(rgb[None])
        end = time.perf_counter()
        if index >= args.warmup:
            wall_s.append(end - start)
            stages["decode"].append(decoded - start)
            stages["backbone"].append(classifier.last_timing.backbone_s)
            stages["transfer net + SVM"].append(classifier.last_timing.head_s)
    total_s = float(np.sum(wall_s))
    height, width = renders.images.shape[1:3]
    print(f"{len(wall_s)} images of {width}x{height} rgb8, model {classifier.model.protocol}, "
          f"backbone {classifier.backbone.key}, {torch.get_num_threads()} threads")
    print(f"  {len(wall_s) / total_s:6.1f} images/s   p50 {1000 * np.median(wall_s):6.1f} ms   p95 {1000 * np.percentile(wall_s, 95):6.1f} ms")
    for name, times in stages.items():
        print(f"  {name:<20} {1000 * np.mean(times):7.2f} ms  {100 * np.sum(times) / total_s:5.1f}% of the time")


if __name__ == "__main__":
    main()
