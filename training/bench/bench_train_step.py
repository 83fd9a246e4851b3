"""Where a training step's time goes, and which batch size trains fastest on this machine.

    python -m training.bench.bench_train_step --bag BAG --instances N [--config config/train_cpu.yaml]
        [--batch-sizes 4,8,16,32,64] [--steps 6] [--loop-epochs 3] [--out bench_train_step.json]

For each batch size: frames per second through a whole step on observations computed beforehand
(forward, loss, backward, optimiser), the time of the geometry (rendering, HPR, the chamfer forward
and the label transfer) as a share of the step, and then the frames per second of the loop that users
run, ``train()`` itself on the same bag for ``--loop-epochs`` epochs (its first epoch observes each
frame; the later ones read the observations back), and its ratio to the step's.
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bin_perception.config import load_config
from bin_perception.io.atomic import write_text
from bin_perception.learning.data import resolve_workspace
from bin_perception.learning.trainer import load_observations, make_optimizer, observed_clouds, train, train_step
from bin_perception.model import BinPerception
from bin_perception.model.chamfer import chamfer_distance
from bin_perception.model.render import instance_ids, render, visible_scene
from bin_perception.model.segment import transfer_labels


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bag", required=True)
    parser.add_argument("--instances", type=int, required=True)
    parser.add_argument("--config")
    parser.add_argument("--batch-sizes", default="4,8,16,32,64")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--loop-epochs", type=int, default=3, help="epochs of train() per batch size; 0 skips the real loop")
    parser.add_argument("--out", default="bench_train_step.json")
    args = parser.parse_args(argv)

    config = load_config(args.config)
    config.train.scenes = max(map(int, args.batch_sizes.split(",")))
    workspace, camera_from_bin = resolve_workspace(None, config, [args.bag])
    perception = BinPerception(args.instances, workspace, config.model, camera_from_bin=camera_from_bin)
    observations = load_observations(perception, [args.bag], config)
    optimizer = make_optimizer(perception, config.train)
    camera = perception.normalization.camera
    rng = np.random.default_rng(0)
    print(f"threads {torch.get_num_threads()}, input {config.model.input_size_px} px, "
          f"{config.model.observed_points} observed and {config.model.model_points} model points, N = {args.instances}")
    print(f"{'batch':>5} {'step s':>7} {'frames/s':>9} {'geometry share':>15} {'loop frames/s':>14} {'after epoch 1':>14} {'loop/step':>10}")
    rows = []
    for batch_size in map(int, args.batch_sizes.split(",")):
        batch_size = min(batch_size, len(observations))
        step_s, geometry_s = [], []
        for step in range(args.steps + 1):
            indices = rng.choice(len(observations), batch_size, replace=False)
            start = time.perf_counter()
            train_step(perception, optimizer, observations, indices, rng)
            elapsed = time.perf_counter() - start
            # The geometry again, alone: rendering, HPR and the chamfer forward on
            # this batch's poses, and the label transfer inference adds to them.
            with torch.no_grad():
                batch = [observations[i] for i in indices]
                rotations, translations = perception(batch)
                start = time.perf_counter()
                scene = render(perception.object_model(), rotations, translations)
                visible = visible_scene(scene, camera, config.model.hpr_exponent)
                chamfer_distance(observed_clouds(batch, config.model.observed_points, rng, False), scene, visible)
                ids = instance_ids(args.instances, config.model.model_points)
                for b, observation in enumerate(batch):
                    mask = visible[b].numpy()
                    transfer_labels(observation.points, scene[b].numpy()[mask], ids[mask])
                geometry = time.perf_counter() - start
            if step > 0:  # the first step warms up allocators and thread pools
                step_s.append(elapsed)
                geometry_s.append(geometry)
        mean_step = float(np.mean(step_s))
        row = {"batch_size": batch_size, "step_s": mean_step, "step_frames_per_s": batch_size / mean_step,
               "geometry_share": float(np.sum(geometry_s) / np.sum(step_s))}
        if args.loop_epochs:
            row.update(_real_loop(args, config, batch_size))
            row["loop_over_step"] = row["loop_frames_per_s"] / row["step_frames_per_s"]
        rows.append(row)
        loop = (f"{row['loop_frames_per_s']:>14.1f} {row['loop_after_first_epoch_frames_per_s']:>14.1f} {row['loop_over_step']:>9.2f}x"
                if args.loop_epochs else "")
        print(f"{batch_size:>5} {mean_step:>7.3f} {batch_size / mean_step:>9.1f} {row['geometry_share']:>14.0%} {loop}", flush=True)
    write_text(args.out, json.dumps({"bag": args.bag, "instances": args.instances, "threads": torch.get_num_threads(), "rows": rows}, indent=1))
    print(f"results: {args.out}")


def _real_loop(args: argparse.Namespace, config, batch_size: int) -> dict:
    """Frames per second of ``train()`` over its steps, from its own loss log: in all, and after its first epoch."""
    config.train.batch_size, config.train.epochs, config.train.registration_epochs = batch_size, args.loop_epochs, 0
    config.train.checkpoint_every_s = 1e9
    config.model.registration_faces = 0  # the closing registration is not the loop
    with tempfile.TemporaryDirectory() as run:
        train([args.bag], args.instances, config, run)
        with open(Path(run) / "loss_log.csv", newline="") as log:
            rows = [(int(r["epoch"]), float(r["elapsed_s"])) for r in csv.DictReader(log)]
    # The elapsed time is logged after each step, so the first step's own time is not counted.
    frames = batch_size * (len(rows) - 1)
    later = [t for epoch, t in rows if epoch >= 1]
    return {
        "loop_frames_per_s": frames / (rows[-1][1] - rows[0][1]),
        "loop_after_first_epoch_frames_per_s": batch_size * (len(later) - 1) / (later[-1] - later[0]) if len(later) > 1 else float("nan"),
    }


if __name__ == "__main__":
    main()
