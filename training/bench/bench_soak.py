"""perception_node on a long, fast, large stream: does its memory stay flat and its latency hold?

    python -m training.bench.bench_soak --checkpoint RUN/checkpoint.pt --part nut --instances 4
        [--size 1280x720] [--rate-hz 30] [--duration-s 600] [--out runs/bench/soak]

The real cell of ``config/real_cell.yaml`` (structured-light depth, 0.6 m over a 200 mm bin), rendered at
``--size`` with the D415's field of view, is written to a bag once; ``bag_player`` then plays its depth
images and CameraInfos in a loop at ``--rate-hz`` to perception_node, in processes of their own over DDS.
Every ``--sample-s`` seconds the node's resident memory (/proc) and its own diagnostics (frames perceived,
stale frames dropped, latency from arrival to publication) are read. The report gives the memory's drift
over the second half of the run (a straight line fitted to it, MB per minute), the latency's first and
last samples, and a picture of both against time (``soak.png``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import rclpy
from tqdm import tqdm

from bin_perception.config import load_config
from bin_perception.io.atomic import replacing, write_text
from bin_perception.nodes.common import use_large_image_transport
from bin_perception.nodes.demo import start_process, stop_process
from bin_perception.sim.dataset import simulate_bag

from .bench_node import node_counters, rss_mb

REAL_CELL = Path(__file__).resolve().parents[2] / "config" / "real_cell.yaml"


def soak_bag(out: Path, part: str, instances: int, width_px: int, height_px: int, scenes: int) -> tuple[Path, object]:
    """The real cell's bag at ``width_px`` x ``height_px`` (the field of view of its 848 px camera), and its topics."""
    config = load_config(REAL_CELL)
    scale = width_px / config.camera.width_px
    camera = dataclasses.replace(
        config.camera, width_px=width_px, height_px=height_px, fx_px=config.camera.fx_px * scale,
        fy_px=config.camera.fy_px * scale, cx_px=(width_px - 1) / 2, cy_px=(height_px - 1) / 2,
    )
    config = dataclasses.replace(config, camera=camera)
    bag = out / f"{part}_n{instances}_{width_px}x{height_px}"
    if not bag.exists():
        simulate_bag(part, instances, scenes, 5150, bag, config)
    return bag, config.topics


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="the model, trained in the real cell")
    parser.add_argument("--part", default="nut")
    parser.add_argument("--instances", type=int, default=4)
    parser.add_argument("--size", default="1280x720", help="WIDTHxHEIGHT of the depth images")
    parser.add_argument("--scenes", type=int, default=30, help="bins in the bag that is played in a loop")
    parser.add_argument("--rate-hz", type=float, default=30.0)
    parser.add_argument("--duration-s", type=float, default=600.0)
    parser.add_argument("--sample-s", type=float, default=10.0)
    parser.add_argument("--out", type=Path, default=Path("runs/bench/soak"))
    args = parser.parse_args(argv)
    width_px, height_px = (int(v) for v in args.size.lower().split("x"))
    args.out.mkdir(parents=True, exist_ok=True)
    bag, topics = soak_bag(args.out, args.part, args.instances, width_px, height_px, args.scenes)
    logs = Path(tempfile.mkdtemp(prefix="bench_soak."))
    # The simulator writes a frame every 0.1 s.
    rate = args.rate_hz * 0.1

    use_large_image_transport()  # as the nodes use it, and the user's shell would
    rclpy.init()
    node = start_process(
        "perception_node", "-p", f"checkpoint:={args.checkpoint}", "-p", f"instances:={args.instances}",
        "-r", f"depth/image:={topics.depth}", "-r", f"depth/camera_info:={topics.camera_info}", log=logs / "node.log",
    )
    player = start_process(
        "bag_player", "-p", f"bag:={bag}", "-p", f"topics:=[{topics.depth},{topics.camera_info}]", "-p", f"rate:={rate}",
        "-p", "loop:=true", "-p", "qos_reliability:=best_effort", log=logs / "player.log",
    )
    samples = []
    try:
        # Start-up and the first frames' warm-up are not the stream's steady state.
        deadline = time.monotonic() + 120.0
        while node_counters().get("frames", 0) < 10:
            if time.monotonic() > deadline or node.poll() is not None or player.poll() is not None:
                raise RuntimeError(f"the node perceived no frames within 120 s; see {logs}")
        start_s = time.monotonic()
        with tqdm(total=int(args.duration_s), desc=f"soak {args.size} at {args.rate_hz:g} Hz", unit="s") as bar:
            while (elapsed_s := time.monotonic() - start_s) < args.duration_s:
                counters = node_counters()
                samples.append({"t_s": elapsed_s, "rss_mb": rss_mb(node.pid), **counters})
                bar.n = int(elapsed_s)
                bar.set_postfix(rss_mb=f"{samples[-1]['rss_mb']:.0f}", p50_ms=counters.get("latency_p50_ms"))
                time.sleep(max(0.0, args.sample_s - (time.monotonic() - start_s - elapsed_s)))
        if node.poll() is not None:
            raise RuntimeError(f"perception_node ended during the run; see {logs / 'node.log'}")
    finally:
        stop_process(player)
        stop_process(node)
        rclpy.try_shutdown()

    t_s = np.array([s["t_s"] for s in samples])
    rss = np.array([s["rss_mb"] for s in samples])
    second_half = t_s >= t_s[-1] / 2
    drift_mb_per_min = float(np.polyfit(t_s[second_half] / 60, rss[second_half], 1)[0])
    perceived = samples[-1].get("frames", 0) - samples[0].get("frames", 0)
    report = {
        "checkpoint": args.checkpoint, "bag": str(bag), "size": args.size, "camera_hz": args.rate_hz, "duration_s": float(t_s[-1]),
        "node_hz": perceived / (t_s[-1] - t_s[0]),
        "dropped_stale": samples[-1].get("dropped_stale", 0) - samples[0].get("dropped_stale", 0),
        "rss_first_mb": float(rss[0]), "rss_last_mb": float(rss[-1]), "rss_max_mb": float(rss.max()),
        "rss_drift_second_half_mb_per_min": drift_mb_per_min,
        "latency_p50_ms_first": samples[0].get("latency_p50_ms"), "latency_p50_ms_last": samples[-1].get("latency_p50_ms"),
        "latency_p95_ms_first": samples[0].get("latency_p95_ms"), "latency_p95_ms_last": samples[-1].get("latency_p95_ms"),
        "samples": samples,
    }
    write_text(args.out / "soak.json", json.dumps(report, indent=1))
    figure, (memory, latency) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    memory.plot(t_s / 60, rss)
    memory.set_ylabel("node RSS (MB)")
    memory.set_title(f"perception_node, {args.size} depth at {args.rate_hz:g} Hz: drift {drift_mb_per_min:+.2f} MB/min (second half)")
    latency.plot(t_s / 60, [s.get("latency_p50_ms", np.nan) for s in samples], label="p50")
    latency.plot(t_s / 60, [s.get("latency_p95_ms", np.nan) for s in samples], label="p95")
    latency.set_ylabel("latency, arrival to publication (ms)")
    latency.set_xlabel("minutes")
    latency.legend()
    figure.tight_layout()
    with replacing(args.out / "soak.png") as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    plt.close(figure)
    print(
        f"{args.size} at {args.rate_hz:g} Hz for {t_s[-1] / 60:.1f} min: the node perceived {report['node_hz']:.1f} frames/s, "
        f"dropped {report['dropped_stale']:.0f} stale; RSS {rss[0]:.0f} -> {rss[-1]:.0f} MB (max {rss.max():.0f}), "
        f"{drift_mb_per_min:+.2f} MB/min over the second half; latency p50 {report['latency_p50_ms_first']} -> "
        f"{report['latency_p50_ms_last']} ms, p95 {report['latency_p95_ms_first']} -> {report['latency_p95_ms_last']} ms; "
        f"{args.out / 'soak.png'}"
    )
    return report


if __name__ == "__main__":
    main()
