"""Offline training of the perception model on bags: ``bin-perception train`` and ``python -m training.train_pose``.

Writes into RUN_DIR: checkpoint.pt (weights-only) with checkpoint.json beside
it, loss_log.csv, model.ply (the learned model, metres), snapshots/ (PNGs of
the model forming) and loss.png.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import trimesh
from tqdm import tqdm

from bin_perception.config import Config, ConfigError, TrainConfig, load_config
from bin_perception.io.errors import BagError
from bin_perception.model import BinPerception, save_checkpoint
from bin_perception.model.observation import Observation, TooFewPointsError, subsample
from bin_perception.model.render import scene_loss
from bin_perception.viz import loss_curve, model_views

from .data import iter_frames, resolve_workspace


def make_optimizer(perception: BinPerception, train: TrainConfig) -> torch.optim.Optimizer:
    """The optimiser named in the config, with the thesis's two learning rates (model, network).

    BPGrad sets its own step length from the loss and L, so it takes neither
    learning rates nor their decay.
    """
    parameters = [perception.object_model.parameters(), perception.net.parameters()]
    if train.optimizer == "bpgrad":
        from bin_perception.optim import BPGrad

        return BPGrad([{"params": p} for p in parameters], lipschitz=train.lipschitz, momentum=train.momentum)
    groups = [{"params": p, "lr": lr} for p, lr in zip(parameters, (train.lr_model, train.lr_network))]
    if train.optimizer == "adam":
        return torch.optim.Adam(groups)
    return torch.optim.SGD(groups, momentum=train.momentum)


def optimizer_step(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    # BPGrad's step size depends on the objective's value, so it takes the loss.
    if "lipschitz" in optimizer.defaults:
        optimizer.step(loss=loss.detach())
    else:
        optimizer.step()


def load_observations(perception: BinPerception, bags: list[str], config: Config) -> list[Observation]:
    observations, too_few = [], 0
    for frame in iter_frames(bags, config.topics, config.train.scenes, "decode"):
        try:
            observations.append(perception.observe(frame))
        except TooFewPointsError:
            too_few += 1
    if too_few:
        tqdm.write(f"skipped {too_few} frames with too few points in the workspace")
    if not observations:
        raise BagError(f"no usable frames in {', '.join(bags)}")
    return observations


def observed_clouds(observations: list[Observation], points: int, rng: np.random.Generator, per_seed: bool) -> torch.Tensor:
    """The clouds the loss compares with: each frame's (B, n, 3), or each seed's (B * N, n, 3)."""
    if per_seed:
        clouds = [o.points[o.seeds == k] for o in observations for k in range(1, len(o.centres) + 1)]
    else:
        clouds = [o.points for o in observations]
    return torch.from_numpy(np.stack([c[subsample(c, points, rng)] for c in clouds]))


def train_step(
    perception: BinPerception,
    optimizer: torch.optim.Optimizer,
    observations: list[Observation],
    indices: np.ndarray,
    rng: np.random.Generator,
    gamma: float = 0.0,
) -> torch.Tensor:
    """One optimiser step on the batch ``indices``; returns the batch's loss (detached)."""
    config = perception.config
    batch = [observations[i] for i in indices]
    rotations, translations = perception(batch)
    observed = observed_clouds(batch, config.observed_points, rng, perception.seeded)
    if perception.seeded:
        # Each part against its own seed: N = 1 problems, one per seed.
        rotations, translations = rotations.reshape(-1, 1, 3, 3), translations.reshape(-1, 1, 3)
    loss = scene_loss(
        observed, perception.object_model(), rotations, translations, perception.normalization.camera,
        config.hpr_exponent, config.rotation_channels, gamma, config.channel_loss,
    ).mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer_step(optimizer, loss)
    return loss.detach()


@dataclass
class TrainResult:
    run_dir: Path
    steps: int
    epochs: int
    final_loss: float
    seconds: float


def train(
    bags: list[str],
    instances: int,
    config: Config,
    run_dir: str | os.PathLike,
    workspace: np.ndarray | None = None,
    max_minutes: float | None = None,
) -> TrainResult:
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    train_config, model_config = config.train, config.model
    if train_config.threads:
        torch.set_num_threads(train_config.threads)
    workspace = resolve_workspace(workspace, config, bags)
    perception = BinPerception(instances, workspace, model_config, seed=train_config.seed)
    observations = load_observations(perception, bags, config)
    optimizer = make_optimizer(perception, train_config)
    schedule = (
        torch.optim.lr_scheduler.StepLR(optimizer, train_config.lr_decay_epochs, gamma=train_config.lr_decay)
        if "lr" in optimizer.defaults
        else None
    )
    rng = np.random.default_rng(train_config.seed)
    batch_size = min(train_config.batch_size, len(observations))
    steps_per_epoch = max(len(observations) // batch_size, 1)
    snapshots = run_dir / "snapshots"
    snapshots.mkdir(exist_ok=True)
    log_path = run_dir / "loss_log.csv"
    metadata = {"bags": [str(b) for b in bags], "train": train_config.__dict__}

    start = time.perf_counter()
    deadline = start + 60 * max_minutes if max_minutes else float("inf")
    last_checkpoint = start
    step, epoch, gamma, loss_value = 0, 0, 0.0, float("nan")
    history: list[tuple[int, float]] = []

    def checkpoint() -> None:
        save_checkpoint(
            run_dir / "checkpoint.pt",
            perception,
            {"optimizer": optimizer.state_dict(), **({"schedule": schedule.state_dict()} if schedule else {})},
            {**metadata, "step": step, "epoch": epoch, "gamma": gamma, "loss": loss_value},
        )

    with open(log_path, "w", newline="") as log_file:
        log = csv.writer(log_file)
        log.writerow(["step", "epoch", "loss", "elapsed_s"])
        bar = tqdm(total=train_config.epochs * steps_per_epoch, desc="train", unit="step")
        while epoch < train_config.epochs and time.perf_counter() < deadline:
            order = rng.permutation(len(observations))
            for batch_start in range(0, steps_per_epoch * batch_size, batch_size):
                loss = train_step(perception, optimizer, observations, order[batch_start : batch_start + batch_size], rng, gamma)
                step += 1
                gamma += model_config.gamma_step
                loss_value = loss.item()
                history.append((step, loss_value))
                log.writerow([step, epoch, f"{loss_value:.6g}", f"{time.perf_counter() - start:.2f}"])
                bar.update()
                bar.set_postfix(loss=f"{loss_value:.4f}", epoch=epoch)
                if time.perf_counter() - last_checkpoint > train_config.checkpoint_every_s:
                    checkpoint()
                    last_checkpoint = time.perf_counter()
                if time.perf_counter() > deadline:
                    break
            else:
                epoch += 1
                if schedule:
                    schedule.step()
                if epoch % train_config.snapshot_every_epochs == 0:
                    model_views(perception.model_points_m(), snapshots / f"model_epoch_{epoch:04d}.png", f"epoch {epoch}")
                continue
            break
        bar.close()
    checkpoint()
    trimesh.PointCloud(perception.model_points_m()).export(run_dir / "model.ply")
    model_views(perception.model_points_m(), snapshots / "model_final.png", f"after {step} steps")
    loss_curve(history, run_dir / "loss.png")
    return TrainResult(run_dir, step, epoch, loss_value, time.perf_counter() - start)


def run_from_args(args: argparse.Namespace) -> int:
    from bin_perception.cli import topics_from_args

    config = load_config(args.config)
    config.topics = topics_from_args(args, config)
    if args.optimizer:
        config.train.optimizer = args.optimizer
    if args.instances < 1:
        raise ConfigError(f"--instances must be at least 1, got {args.instances}")
    result = train(args.bag, args.instances, config, args.out, args.workspace, args.max_minutes)
    print(
        f"trained {result.steps} steps ({result.epochs} epochs) in {result.seconds / 60:.1f} min, "
        f"final loss {result.final_loss:.4f}; wrote {result.run_dir / 'checkpoint.pt'}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    from bin_perception.cli import add_train_arguments

    parser = argparse.ArgumentParser(prog="python -m training.train_pose", description=__doc__)
    add_train_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run_from_args(args)
    except (BagError, ConfigError, ValueError, FileNotFoundError) as error:
        print(f"train: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
