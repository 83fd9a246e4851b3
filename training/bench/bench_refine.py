"""The pose refinement's cost per instance, and how it grows with the number of starts.

    python -m training.bench.bench_refine --checkpoint RUN/checkpoint.pt --bag TEST_BAG [--frames 10]
        [--starts 1,4,8,24] [--depth-topic T --info-topic T] [--out bench_refine.json]

For each frame the model predicts as the node does (its own segments, the network's poses), then each
instance's pose is refined (:func:`bin_perception.model.refine.refine_pose`) from 1, 4, 8 and 24 starts;
the report gives the p50 and p95 per instance of each, and the unrefined predict's p50 per frame beside
them, measured in the same run.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import time

import numpy as np

from bin_perception.config import TopicsConfig
from bin_perception.geometry import floor_plane
from bin_perception.io.atomic import write_text
from bin_perception.io.bag import BagReader
from bin_perception.model import load_checkpoint
from bin_perception.model.refine import refine_pose


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--bag", required=True)
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--starts", default="1,4,8,24")
    parser.add_argument("--depth-topic", default=TopicsConfig().depth)
    parser.add_argument("--info-topic", default=TopicsConfig().camera_info)
    parser.add_argument("--out", default="bench_refine.json")
    args = parser.parse_args(argv)

    perception, _, _ = load_checkpoint(args.checkpoint)
    perception.eval()
    perception.config = dataclasses.replace(perception.config, refine="none")
    topics = dataclasses.replace(TopicsConfig(), depth=args.depth_topic, camera_info=args.info_topic)
    frames = list(itertools.islice(BagReader(args.bag, topics, skip_bad_frames=True), args.frames))
    model_m = perception.model_points_m()
    floor = floor_plane(perception.workspace, perception.camera_from_bin)
    starts = [int(s) for s in args.starts.split(",")]
    predict_s, refine_s = [], {s: [] for s in starts}
    perception.predict(frames[0])  # warm-up
    for frame in frames:
        start = time.perf_counter()
        prediction = perception.predict(frame)
        predict_s.append(time.perf_counter() - start)
        points_m = perception.normalization.to_metres(prediction.observation.points)
        for i, pose in enumerate(prediction.poses):
            segment_m = points_m[prediction.point_labels == i + 1]
            if len(segment_m) < 3:
                continue
            for count in starts:
                start = time.perf_counter()
                refine_pose(segment_m, model_m, pose, frame.depth_m, frame.K, count, perception.config.refine_iterations,
                            perception.config.refine_inlier_m, floor=floor)
                refine_s[count].append(time.perf_counter() - start)
    report = {
        "checkpoint": args.checkpoint, "bag": args.bag, "frames": len(frames),
        "predict_p50_ms": float(np.percentile(predict_s, 50) * 1000),
        "refine_per_instance": {
            str(count): {"p50_ms": float(np.percentile(times, 50) * 1000), "p95_ms": float(np.percentile(times, 95) * 1000),
                         "instances": len(times)}
            for count, times in refine_s.items()
        },
    }
    print(f"predict (unrefined) p50 {report['predict_p50_ms']:.1f} ms a frame")
    for count, row in report["refine_per_instance"].items():
        print(f"refine from {count:>2} starts: p50 {row['p50_ms']:.1f} ms, p95 {row['p95_ms']:.1f} ms an instance ({row['instances']} instances)")
    write_text(args.out, json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
