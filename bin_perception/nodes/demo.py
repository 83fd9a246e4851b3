"""The main job: the simulated camera, the perception node and a collecting client, over real DDS.

``bin-perception demo`` (and ``make demo``) starts ``sim_camera_node`` and ``perception_node`` as
their own processes, collects the node's results for a fixed number of frames in this one, and
prints the frame rate, the p50 / p95 latency and the pairwise F1 against the simulator's truth
(beside K-means on the same frames). It writes ``report.md``, ``metrics.json`` and a PNG of the
segments and poses over the depth images.

The camera imitates a real cell, ``config/real_cell.yaml`` (a structured-light camera at 848 x 480,
0.6 m over a 200 mm bin), or the cell of ``--cell``. Without ``--checkpoint`` it uses the model it
trained in that cell on an earlier run (cached under ``$BIN_PERCEPTION_CACHE/demo``), or trains one
first with ``config/train_cpu.yaml`` (a few minutes).

Then it empties a poured bin over ROS 2 (:func:`run_pick_demo`): of housings, whose faces a suction cup
takes; a nut lying flat shows a ring that no cup seals on, and wants another gripper.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rclpy

from ..baselines import baseline_label_image
from ..cache import cache_dir
from ..config import load_config
from ..depth_filters import crop_frame
from ..geometry import format_bin_pose
from ..io.atomic import write_text
from ..learning.pick_cell import write_report
from ..metrics import label_image_scores
from ..model.perception import CHECKPOINT_FORMAT, load_checkpoint
from ..sim.dataset import simulate_bag
from ..viz import curves, segmentation_overlays
from .collector import Result, collect
from .common import share_file, use_large_image_transport
from .picking_client import empty_bin

# The training bag's bins are not the demo's: the camera's seed differs.
TRAIN_SEED, CAMERA_SEED = 11, 2024


def default_cell() -> Path:
    """The simulated cell of the demo: a real one (``config/real_cell.yaml``)."""
    return share_file("config", "real_cell.yaml")


def demo_checkpoint(part: str, instances: int, scenes: int, train_minutes: float, cell: Path | None = None) -> Path:
    """The cached demo model for this part, N, cell, recipe and checkpoint format; trained (atomically) if
    there is none."""
    from ..learning.trainer import train

    cell = cell or default_cell()
    recipe = share_file("config", "train_cpu.yaml")
    key_text = f"{part}|{instances}|{scenes}|{train_minutes}|{CHECKPOINT_FORMAT}|"
    key = hashlib.sha256(key_text.encode() + recipe.read_bytes() + cell.read_bytes()).hexdigest()[:10]
    run = cache_dir() / "demo" / f"{Path(part).stem}_n{instances}_{key}"
    checkpoint = run / "checkpoint.pt"
    if checkpoint.is_file():
        print(f"demo: using the model trained on an earlier run: {checkpoint}")
        return checkpoint
    print(f"demo: no cached model; simulating {scenes} bins and training for up to {train_minutes:g} min (once)")
    run.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{run.name}.", dir=run.parent))
    try:
        bag = staging / "train.mcap"
        cell_config = load_config(cell)
        simulate_bag(part, instances, scenes, TRAIN_SEED, bag, cell_config, workers=os.cpu_count() or 1)
        recipe_config = load_config(recipe)
        recipe_config.topics = cell_config.topics  # the bag's, as the cell publishes them
        train([str(bag)], instances, recipe_config, staging / "run", max_minutes=train_minutes)
        os.replace(staging / "run", run)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return checkpoint


def start_process(executable: str, *ros_args: str, log: Path) -> subprocess.Popen:
    """One of the package's executables as a process of its own, its output in ``log``."""
    script = Path(sys.executable).with_name(executable)
    command = [str(script) if script.exists() else executable, "--ros-args", *ros_args]
    return subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT)


def stop_process(process: subprocess.Popen) -> None:
    """SIGINT, as Ctrl-C would; a process that does not end in 10 s is killed."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def start_camera(out: Path, part: str, instances: int, rate_hz: float, cell: Path, bins: int = 0) -> subprocess.Popen:
    """sim_camera_node in ``cell`` on bins the demo's model never trained on, a fresh bin every 3 frames; with
    ``bins``, that many simulated before the first frame and cycled (see sim_camera_node)."""
    return start_process(
        "sim_camera_node",
        *("-p", f"part:={part}", "-p", f"instances:={instances}", "-p", f"seed:={CAMERA_SEED}", "-p", f"config:={cell}"),
        *("-p", f"rate_hz:={rate_hz}", "-p", "frames_per_bin:=3", "-p", f"bins:={bins}"),
        log=out / "sim_camera_node.log",
    )


def summarise(results: list[Result], instances: int, wall_s: float) -> dict:
    """Rate, latency and pairwise F1 (the node's and K-means's on the same frames and points) of collected results."""
    latencies_ms = 1000 * np.array([r.latency_s for r in results])
    ours = [label_image_scores(r.frame.gt_labels, r.labels).f1 for r in results]
    kmeans = [label_image_scores(r.frame.gt_labels, baseline_label_image(r.frame, r.labels > 0, "kmeans", instances)).f1 for r in results]
    return {
        "frames": len(results),
        "rate_hz": len(results) / wall_s,
        "latency_p50_ms": float(np.percentile(latencies_ms, 50)),
        "latency_p95_ms": float(np.percentile(latencies_ms, 95)),
        "f1": float(np.mean(ours)),
        "f1_kmeans": float(np.mean(kmeans)),
        "poses_per_frame": float(np.mean([len(r.poses) for r in results])),
        # The node counts the parts; each bin the camera drops holds ``instances``.
        "count_exact": float(np.mean([len(r.poses) == instances for r in results])),
    }


def run_demo(
    out: Path,
    checkpoint: Path | None,
    part: str,
    instances: int,
    frames: int,
    rate_hz: float,
    train_scenes: int,
    train_minutes: float,
    cell: Path | None = None,
    pick_instances: int = 0,
    pick_part: str = "housing",
    suction_radius_m: float = 0.008,
) -> dict:
    """The perception node on the simulated camera (rate, latency, count and F1 against K-means), then, with
    ``pick_instances``, a poured bin of ``pick_part`` emptied by the picking cell (:func:`run_pick_demo`), with
    ``checkpoint`` where it is of that part, else the demo's own model of it."""
    out.mkdir(parents=True, exist_ok=True)
    cell = cell or default_cell()
    checkpoint = checkpoint or demo_checkpoint(part, instances, train_scenes, train_minutes, cell)
    perception, _, _ = load_checkpoint(checkpoint)  # fails here, with its reason, before any process starts
    use_large_image_transport()  # for this process's collector and, inherited, for the camera and the node
    # Bins simulated up front: physics beside the node would measure the simulator, not the node.
    camera = start_camera(out, part, instances, rate_hz, cell, bins=frames // 3 + 1)
    node = start_process(
        "perception_node",
        # Not told how many parts there are: the node counts them, as it does for a user.
        "-p", f"checkpoint:={checkpoint}",
        log=out / "perception_node.log",
    )
    rclpy.init()
    try:
        print(f"demo: {part} x {instances} at {rate_hz:g} Hz; collecting {frames} frames (logs in {out})")
        start_s = time.monotonic()
        first = collect(1, timeout_s=120.0)  # the processes start and discover each other
        if not first:
            raise RuntimeError(f"no result from the node in 120 s; see {out}/perception_node.log")
        start_s = time.monotonic()
        results = collect(frames, timeout_s=max(60.0, 5 * frames / rate_hz))
        wall_s = time.monotonic() - start_s
    finally:
        rclpy.try_shutdown()
        stop_process(node)
        stop_process(camera)
    if not results:
        raise RuntimeError(f"no results collected; see the logs in {out}")
    summary = summarise(results, instances, wall_s)
    summary.update(part=part, instances=instances, camera_rate_hz=rate_hz, checkpoint=str(checkpoint), cell=str(cell))
    shown = results[:: max(len(results) // 4, 1)][:4]
    extent_m = float(np.ptp(perception.model_points_m(), axis=0).max())
    # The bin, not the whole view: the region of each frame that the node observes.
    regions = [perception.observed_region(r.frame) for r in shown]
    segmentation_overlays(
        [crop_frame(r.frame, *region) for r, region in zip(shown, regions)],
        [r.labels[region] for r, region in zip(shown, regions)], out / "segments_and_poses.png",
        title=f"perception_node: {part} x {instances}", poses=[r.poses for r in shown], axis_m=0.6 * extent_m,
    )
    if pick_instances:
        pick_checkpoint = checkpoint if pick_part == part else demo_checkpoint(pick_part, instances, train_scenes, train_minutes, cell)
        summary["pick"] = run_pick_demo(out / "pick", pick_checkpoint, pick_part, pick_instances, suction_radius_m, seed=CAMERA_SEED)
    write_text(out / "metrics.json", json.dumps(summary, indent=1))
    write_text(out / "report.md", _report(summary))
    return summary


def run_pick_demo(out: Path, checkpoint: Path, part: str, instances: int, suction_radius_m: float, seed: int = 0, max_attempts: int = 40) -> dict:
    """A bin emptied over ROS 2: pick_cell_node pours ``instances`` parts (``config/real_pile.yaml``),
    perception_node perceives it with ``checkpoint``, counting the parts, and this process, the picking client,
    sends a cup of ``suction_radius_m`` to its best grasps until the bin is empty or ``max_attempts`` are spent.
    Writes the cell's ``report.md``, ``metrics.json`` and ``strip.png`` into ``out``; their summary."""
    out.mkdir(parents=True, exist_ok=True)
    use_large_image_transport()
    cup = ("-p", f"suction_radius_m:={suction_radius_m}")
    cell = start_process(
        "pick_cell_node", "-p", f"part:={part}", "-p", f"instances:={instances}", "-p", f"seed:={seed}", *cup, log=out / "pick_cell_node.log"
    )
    node = start_process(
        "perception_node", "-p", f"checkpoint:={checkpoint}", "-p", f"gripper.{cup[1]}", log=out / "perception_node.log"
    )
    rclpy.init()
    try:
        print(f"demo: emptying a bin of {instances} {part}s with a {1000 * suction_radius_m:g} mm suction cup (logs in {out})")
        report, pictures, titles = empty_bin(Path(part).stem, suction_radius_m, max_attempts, timeout_s=120.0)
    finally:
        rclpy.try_shutdown()
        stop_process(node)
        stop_process(cell)
    return write_report(report, pictures, titles, out)


def _report(s: dict) -> str:
    return "\n".join(
        [
            "# bin_perception demo",
            "",
            f"sim_camera_node ({s['part']} x {s['instances']}, {s['camera_rate_hz']:g} Hz) -> perception_node -> this client, "
            "three processes over DDS (localhost).",
            f"Model: `{s['checkpoint']}`.",
            "",
            "| frames | rate (Hz) | latency p50 (ms) | latency p95 (ms) | count exact | F1 (node) | F1 (K-means, same frames) |",
            "|---|---|---|---|---|---|---|",
            f"| {s['frames']} | {s['rate_hz']:.1f} | {s['latency_p50_ms']:.1f} | {s['latency_p95_ms']:.1f} "
            f"| {s['count_exact']:.3f} | {s['f1']:.3f} | {s['f1_kmeans']:.3f} |",
            "",
            "Latency: from the depth image's stamp to the node's PoseArray arriving in this client. The node counts the "
            "parts in each frame; K-means is told the bin's count.",
            "",
            "![segments and poses](segments_and_poses.png)",
            "",
            *(_pick_report(s["pick"]) if "pick" in s else []),
        ]
    )


def _pick_report(p: dict) -> list[str]:
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(p["outcomes"].items()))
    return [
        "## Emptying a bin",
        "",
        f"pick_cell_node poured {p['instances']} {p['part']}s; perception_node counted and perceived them; this client sent the "
        "cup to the node's best grasp, one pick at a time, three processes over DDS.",
        "",
        "| cups sent | shakes | picked | parts left | success rate (held per cup sent) | cycle (s) |",
        "|---|---|---|---|---|---|",
        f"| {p['cups_sent']} | {p['shakes']} | {p['picked']} | {p['parts_left']} | {p['success_rate']:.3f} | {p['cycle_s_mean']:.2f} |",
        "",
        f"Outcomes: {outcomes}. Each attempt: [pick/report.md](pick/report.md).",
        "",
        "![the bin before each pick, the cup's lip circled](pick/strip.png)",
        "",
    ]


def run_inloop_demo(
    out: Path, part: str, instances: int, minutes: float, rate_hz: float, cell: Path | None = None, window_s: float = 30.0
) -> dict:
    """In-loop training from nothing (a random model and network) on the simulated camera: the node's
    pairwise F1 on the live stream, window by window, against K-means on the same frames."""
    from ..sim.parts import load_part
    from ..sim.scene import BinSimulator

    out.mkdir(parents=True, exist_ok=True)
    cell = cell or default_cell()
    with BinSimulator(load_part(part), instances, load_config(cell)) as simulator:
        workspace, camera_from_bin = simulator.workspace, simulator.camera_from_bin
    bin_pose = () if camera_from_bin is None else ("-p", f"bin_pose:=[{format_bin_pose(camera_from_bin)}]")
    run = out / "inloop"
    shutil.rmtree(run, ignore_errors=True)  # from nothing, every time
    use_large_image_transport()
    camera = start_camera(out, part, instances, rate_hz, cell)
    node = start_process(
        "perception_node",
        *("-p", "mode:=train_inloop", "-p", f"checkpoint:={run / 'checkpoint.pt'}", "-p", f"instances:={instances}"),
        *("-p", f"workspace:={workspace.ravel().tolist()}"), *bin_pose,
        log=out / "perception_node.log",
    )
    rows = []
    rclpy.init()
    try:
        print(f"demo: in-loop training from nothing on {part} x {instances} at {rate_hz:g} Hz for {minutes:g} min")
        if not collect(1, timeout_s=180.0):
            raise RuntimeError(f"no result from the node in 180 s; see {out}/perception_node.log")
        start_s = time.monotonic()
        while time.monotonic() - start_s < 60 * minutes:
            window_start_s = time.monotonic()
            results = collect(10**9, timeout_s=window_s)  # every result of the window
            if results:
                row = summarise(results, instances, time.monotonic() - window_start_s)
                row["minute"] = (time.monotonic() - start_s) / 60
                rows.append(row)
                print(f"  {row['minute']:5.1f} min: F1 {row['f1']:.3f} (K-means {row['f1_kmeans']:.3f}), "
                      f"{row['rate_hz']:.1f} Hz, latency p50 {row['latency_p50_ms']:.0f} ms")
    finally:
        rclpy.try_shutdown()
        stop_process(node)
        stop_process(camera)
    if not rows:
        raise RuntimeError(f"no results collected; see the logs in {out}")
    curves(
        [r["minute"] for r in rows], {"perception_node (in-loop)": [r["f1"] for r in rows], "K-means": [r["f1_kmeans"] for r in rows]},
        out / "inloop_f1.png", "minutes since start (random init)", "pairwise F1", f"in-loop training, {part} x {instances}",
    )
    above = next((r["minute"] for r in rows if r["f1"] > r["f1_kmeans"]), None)
    summary = {"part": part, "instances": instances, "camera_rate_hz": rate_hz, "windows": rows, "first_minute_above_kmeans": above}
    write_text(out / "inloop.json", json.dumps(summary, indent=1))
    return summary
