"""Offline training throughput at the CPU recipe: a first epoch (decode and cache) against a cached one, and DDP.

    python -m training.bench.bench_offline [--part bolt] [--instances 4] [--scenes 128]
        [--config config/train_cpu.yaml] [--out bench_offline]

1. The frame cache. Simulates a bag, then times ``train()`` for one epoch, each
   in a fresh process, first with an empty ``$BIN_PERCEPTION_CACHE`` (hash,
   decode and cache the bag, then train), then with the cache built; ``--repeats``
   times, alternating. Both include the same fixed costs (start-up, the check
   pass over the frames, the final checkpoint, PLY and PNGs); they differ by the
   decoding. The data pipeline alone is timed too: decoding the bag into the
   cache, and reading every frame back from it.
2. DDP. Two epochs through the real command line, on the built cache:
   ``torchrun --nproc_per_node 2`` with one thread a process, against one
   process with two threads and one with one thread, at the same global batch.
   Throughput is the second epoch's, from loss_log.csv, after start-up.

Writes OUT/bench_offline.json and prints a table; the machine may be shared, so
the figures are the wall clock's, as measured, with the load average around them
and the cores each run kept busy (its CPU seconds over its wall seconds): fewer
than it asked for means other work had the rest.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from bin_perception.config import load_config
from bin_perception.learning.data import topics_for
from bin_perception.learning.frame_cache import open_frames
from bin_perception.sim.dataset import simulate_bag

_TIMED_TRAIN = """
import json, sys, time
from bin_perception.config import load_config
from bin_perception.learning.trainer import train
bag, instances, config, run = sys.argv[1:]
start = time.perf_counter()
result = train([bag], int(instances), load_config(config), run)
print(json.dumps({"seconds": time.perf_counter() - start, "steps": result.steps}))
"""


def _recipe(base: str, out: Path, name: str, **train: object) -> Path:
    config = yaml.safe_load(Path(base).read_text())
    config["train"].update(train)
    path = out / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _run(command: list[str], cache: Path) -> tuple[str, float]:
    """The command's stdout, and the cores it kept busy on average (its CPU seconds over its wall seconds)."""
    env = {**os.environ, "BIN_PERCEPTION_CACHE": str(cache), "PYTHONPATH": str(Path(__file__).parents[2])}
    before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    wall_s, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return done.stdout, cpu_s / wall_s


def _timed_epoch(bag: Path, instances: int, config: Path, run: Path, cache: Path, batch_size: int) -> dict:
    stdout, cores = _run([sys.executable, "-c", _TIMED_TRAIN, str(bag), str(instances), str(config), str(run)], cache)
    result = json.loads(stdout.splitlines()[-1])
    frames = result["steps"] * batch_size
    return {**result, "frames": frames, "frames_per_s": frames / result["seconds"], "cores_busy": cores}


def _last_epoch_rate(run: Path, global_batch: int) -> dict:
    with open(run / "loss_log.csv") as log:
        rows = list(csv.DictReader(log))
    last_epoch = rows[-1]["epoch"]
    before = [r for r in rows if r["epoch"] != last_epoch][-1]
    steps = sum(1 for r in rows if r["epoch"] == last_epoch)
    seconds = float(rows[-1]["elapsed_s"]) - float(before["elapsed_s"])
    return {"steps": steps, "seconds": seconds, "frames_per_s": steps * global_batch / seconds}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", default="bolt")
    parser.add_argument("--instances", type=int, default=4)
    parser.add_argument("--scenes", type=int, default=128)
    parser.add_argument("--config", default="config/train_cpu.yaml")
    parser.add_argument("--repeats", type=int, default=2, help="cold and warm runs of part 1")
    parser.add_argument("--out", default="bench_offline")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    bag, cache = out / f"{args.part}_n{args.instances}.mcap", out / "cache"
    if not bag.exists():
        simulate_bag(args.part, args.instances, args.scenes, seed=11, out=bag, progress=False)
    batch_size = load_config(args.config).train.batch_size
    epoch = _recipe(args.config, out, "one_epoch", epochs=1, scenes=args.scenes)
    results: dict = {"cpus": os.cpu_count(), "bag": str(bag), "scenes": args.scenes, "batch_size": batch_size}

    # 1. The frame cache, through train() and alone; cold and warm alternate, so that a change in the
    # machine's load falls on both.
    results["load_average_before"] = os.getloadavg()
    for repeat in range(args.repeats):
        shutil.rmtree(cache, ignore_errors=True)
        for name in ("first_epoch", "cached_epoch"):
            run = out / f"run_{name}_{repeat}"
            results.setdefault(name, []).append(_timed_epoch(bag, args.instances, epoch, run, cache, batch_size))
    topics = topics_for(str(bag), load_config(args.config).topics)
    start = time.perf_counter()
    frames = open_frames([str(bag)], topics, args.scenes, out / "cache_alone")
    decode_s = time.perf_counter() - start
    start = time.perf_counter()
    pixels = sum(frames[index].depth_m.size for index in range(len(frames)))
    read_s = time.perf_counter() - start
    results["decode_into_cache_frames_per_s"] = len(frames) / decode_s
    results["read_from_cache_frames_per_s"] = len(frames) / read_s
    results["frame_pixels"] = pixels // len(frames)

    # 2. DDP: two processes of one thread against one process, at the same global batch.
    torchrun = Path(sys.executable).with_name("torchrun")
    layouts = {
        "ddp_2x1_threads": ([str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "bin_perception.cli", "train"], 1),
        "single_1x2_threads": ([sys.executable, "-m", "bin_perception.cli", "train"], 2),
        "single_1x1_thread": ([sys.executable, "-m", "bin_perception.cli", "train"], 1),
    }
    for name, (launcher, threads) in layouts.items():
        config = _recipe(args.config, out, name, epochs=2, scenes=args.scenes, threads=threads)
        run = out / f"run_{name}"
        _, cores = _run([*launcher, "--bag", str(bag), "--instances", str(args.instances), "--config", str(config), "--out", str(run)], cache)
        results[name] = {**_last_epoch_rate(run, batch_size), "cores_busy": cores}

    results["load_average_after"] = os.getloadavg()
    (out / "bench_offline.json").write_text(json.dumps(results, indent=1))
    print(f"{os.cpu_count()} CPUs, {args.scenes} bins of {args.instances} {args.part}s, batch {batch_size}, {args.config}")
    print("load average (1, 5, 15 min) before: {:.2f} {:.2f} {:.2f}, after: {:.2f} {:.2f} {:.2f}".format(
        *results["load_average_before"], *results["load_average_after"]))
    for name, label in (("first_epoch", "first epoch (hash, decode, cache, train)"), ("cached_epoch", "cached epoch (memmap, train)")):
        rates = ", ".join(f"{r['frames_per_s']:.1f}" for r in results[name])
        seconds = ", ".join(f"{r['seconds']:.1f}" for r in results[name])
        cores = ", ".join(f"{r['cores_busy']:.2f}" for r in results[name])
        print(f"{label:<42} {rates} frames/s ({seconds} s; {cores} cores busy)")
    print(f"decode into the cache alone:              {results['decode_into_cache_frames_per_s']:6.0f} frames/s")
    print(f"read from the cache alone:                {results['read_from_cache_frames_per_s']:6.0f} frames/s")
    for name in layouts:
        r = results[name]
        print(f"{name:<20} second epoch: {r['frames_per_s']:6.1f} frames/s ({r['seconds']:.1f} s); {r['cores_busy']:.2f} cores busy over the run")
    ddp_ratio = results["ddp_2x1_threads"]["frames_per_s"] / results["single_1x2_threads"]["frames_per_s"]
    print(f"DDP 2 processes / 1 process of 2 threads: {ddp_ratio:.2f}x")


if __name__ == "__main__":
    main()
