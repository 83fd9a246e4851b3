"""Where a training step's time goes, and which batch size trains fastest on this machine.

    python -m training.bench.bench_train_step --bag BAG --instances N [--config config/train_cpu.yaml]
        [--batch-sizes 4,8,16,32,64] [--steps 6]

For each batch size: frames per second through a whole step (forward, loss,
backward, optimiser), and the share of the step spent in the chamfer distance,
HPR and label transfer, against the network's forward and backward.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from bin_perception.config import load_config
from bin_perception.model import BinPerception
from bin_perception.model.chamfer import chamfer_distance
from bin_perception.model.render import instance_ids, render, visible_scene
from bin_perception.model.segment import transfer_labels
from training.train_pose import load_observations, make_batch, make_optimizer
from training.data import resolve_workspace


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
        totals = {"step": 0.0, "geometry": 0.0}
        for step in range(args.steps + 1):
            indices = rng.choice(len(observations), batch_size, replace=False)
            images, observed = make_batch(observations, indices, config.model.observed_points, rng)
            start = time.perf_counter()
            rotations, translations = perception(images)
            geometry_start = time.perf_counter()
            scene = render(perception.object_model(), rotations, translations)
            visible = visible_scene(scene, camera, config.model.hpr_exponent)
            loss = chamfer_distance(observed, scene, visible).mean()
            geometry = time.perf_counter() - geometry_start
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            # Label transfer is inference's share of the geometry: time it once per frame.
            label_start = time.perf_counter()
            ids = instance_ids(args.instances, config.model.model_points)
            for b in range(batch_size):
                transfer_labels(observations[indices[b]].points, scene[b].detach().numpy()[visible[b].numpy()], ids[visible[b].numpy()])
            geometry += time.perf_counter() - label_start
            if step > 0:  # the first step warms up allocators and thread pools
                totals["step"] += time.perf_counter() - start
                totals["geometry"] += geometry
        step_s = totals["step"] / args.steps
        print(f"{batch_size:>5} {step_s:>7.3f} {batch_size / step_s:>9.1f} {totals['geometry'] / totals['step']:>14.0%}", flush=True)


if __name__ == "__main__":
    main()
