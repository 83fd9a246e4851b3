"""Where a training step's time goes, and which batch size trains fastest on this machine.

    python -m training.bench.bench_train_step --bag BAG --instances N [--config config/train_cpu.yaml]
        [--batch-sizes 4,8,16,32,64] [--steps 6]

For each batch size: frames per second through a whole step (forward, loss,
backward, optimiser), and the time of the geometry (rendering, HPR, the
chamfer forward and the label transfer) as a share of the step.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from bin_perception.config import load_config
from bin_perception.learning.data import resolve_workspace
from bin_perception.learning.trainer import load_observations, make_optimizer, observed_clouds, train_step
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
    args = parser.parse_args(argv)

    config = load_config(args.config)
    config.train.scenes = max(map(int, args.batch_sizes.split(",")))
    workspace = resolve_workspace(None, config, [args.bag])
    perception = BinPerception(args.instances, workspace, config.model)
    observations = load_observations(perception, [args.bag], config)
    optimizer = make_optimizer(perception, config.train)
    camera = perception.normalization.camera
    rng = np.random.default_rng(0)
    print(f"threads {torch.get_num_threads()}, input {config.model.input_size_px} px, "
          f"{config.model.observed_points} observed and {config.model.model_points} model points, N = {args.instances}")
    print(f"{'batch':>5} {'step s':>7} {'frames/s':>9} {'geometry share':>15}")
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
        print(f"{batch_size:>5} {mean_step:>7.3f} {batch_size / mean_step:>9.1f} {np.sum(geometry_s) / np.sum(step_s):>14.0%}", flush=True)


if __name__ == "__main__":
    main()
