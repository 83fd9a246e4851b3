"""Offline training of the perception model on bags: what ``bin-perception train`` runs.

Writes into RUN_DIR: checkpoint.pt (weights-only) with checkpoint.json beside
it, loss_log.csv, model.ply (the learned model, metres), snapshots/ (PNGs of
the model forming) and loss.png.

The bags' frames are decoded once, into the frame cache (:mod:`bin_perception.learning.frame_cache`),
and every epoch reads them from there. Under torchrun each process trains its
share of every batch (:mod:`bin_perception.learning.distributed`) and rank 0 writes RUN_DIR.

Nothing random is carried from step to step: an epoch's order is the
DistributedSampler's permutation for (seed, epoch), and a frame's point sample
comes from a generator seeded with (seed, epoch, frame). So a run resumed from
its checkpoint (model, optimiser, schedule, step, epoch) continues the same
order, and W processes draw the samples one process draws for the same batch.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler
from tqdm import tqdm

from ..config import Config, TrainConfig
from ..frame import Frame
from ..io.atomic import replacing
from ..io.errors import BagError
from ..model import BinPerception, CheckpointError, load_checkpoint, save_checkpoint
from ..model.observation import Observation, TooFewPointsError, subsample
from ..model.registration import Registration
from ..model.render import scene_loss
from ..model.seeds import describe_part_size
from ..optim import BPGrad
from ..viz import loss_curve, model_views
from .data import iter_frames, resolve_workspace
from .distributed import Cluster, data_parallel, mean_over_ranks
from .export import write_model_ply
from .frame_cache import CachedFrames, open_frames
from .observations import ObservationCache
from .self_training import SeedViews, adopt_registration, register_seed_views

LOG_COLUMNS = ["step", "epoch", "loss", "elapsed_s"]
# The fused model (model_fused.ply) is made from this many training frames at most (one prediction each),
# or from as many as give REGISTRATION_VIEWS seeds at small N: the registration by faces needs about
# that many views to assemble an asymmetric part (docs/RESULTS.md).
FUSION_FRAMES = 150
REGISTRATION_VIEWS = 450


def make_optimizer(perception: BinPerception, train: TrainConfig) -> torch.optim.Optimizer:
    """The optimiser named in the config, with the thesis's two learning rates (model, network).

    BPGrad sets its own step length from the loss and L, so it takes neither
    learning rates nor their decay.
    """
    parameters = [perception.object_model.parameters(), perception.net.parameters()]
    if train.optimizer == "bpgrad":
        return BPGrad([{"params": p} for p in parameters], lipschitz=train.lipschitz, momentum=train.momentum)
    groups = [{"params": p, "lr": lr} for p, lr in zip(parameters, (train.lr_model, train.lr_network))]
    if train.optimizer == "adam":
        return torch.optim.Adam(groups)
    return torch.optim.SGD(groups, momentum=train.momentum)


def make_schedule(optimizer: torch.optim.Optimizer, train: TrainConfig) -> torch.optim.lr_scheduler.StepLR | None:
    """The learning rates' step decay; None for BPGrad, which has no learning rate to decay."""
    if isinstance(optimizer, BPGrad):
        return None
    return torch.optim.lr_scheduler.StepLR(optimizer, train.lr_decay_epochs, gamma=train.lr_decay)


def optimizer_step(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    # BPGrad's step size depends on the objective's value, so it takes the loss.
    if isinstance(optimizer, BPGrad):
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


def observed_clouds(
    observations: list[Observation], points: int, rng: np.random.Generator | Sequence[np.random.Generator], per_seed: bool
) -> torch.Tensor:
    """The clouds the loss compares with: each frame's (B, n, 3), or each seed's (B * N, n, 3).

    ``rng`` draws every frame's sample in turn, or is one generator per frame: then a frame's sample
    does not depend on the batch around it, as sharding a batch over processes needs.
    """
    rngs = itertools.repeat(rng) if isinstance(rng, np.random.Generator) else rng
    clouds = []
    for observation, frame_rng in zip(observations, rngs):
        if per_seed:
            own = [observation.points[observation.seeds == k] for k in range(1, len(observation.centres) + 1)]
        else:
            own = [observation.points]
        clouds.extend(c[subsample(c, points, frame_rng)] for c in own)
    return torch.from_numpy(np.stack(clouds))


def train_step(
    perception: BinPerception,
    optimizer: torch.optim.Optimizer,
    observations: list[Observation],
    indices: np.ndarray,
    rng: np.random.Generator | Sequence[np.random.Generator],
    gamma: float = 0.0,
    model: nn.Module | None = None,
) -> torch.Tensor:
    """One optimiser step on the batch ``indices``; returns the batch's loss (detached).

    ``rng`` is one generator, or one per index (see :func:`observed_clouds`). ``model`` runs the
    forward pass in place of ``perception``: its DistributedDataParallel wrapper
    (:func:`bin_perception.learning.distributed.data_parallel`), whose backward averages the gradients of the network
    and the object model over the ranks. The loss is then averaged over the ranks too, so that BPGrad's
    f, and the loss returned, are the whole batch's on every rank.
    """
    config = perception.config
    batch = [observations[i] for i in indices]
    rotations, translations = (perception if model is None else model)(batch)
    observed = observed_clouds(batch, config.observed_points, rng, perception.per_seed).to(rotations.device)
    if perception.per_seed:
        # Each part against its own seed: N = 1 problems, one per seed.
        rotations, translations = rotations.reshape(-1, 1, 3, 3), translations.reshape(-1, 1, 3)
    loss = scene_loss(
        observed, perception.object_model(), rotations, translations, perception.normalization.camera,
        config.hpr_exponent, config.rotation_channels, gamma, config.channel_loss,
    ).mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if isinstance(model, DistributedDataParallel):
        loss = mean_over_ranks(loss)
    optimizer_step(optimizer, loss)
    return loss.detach()


def observable_frames(perception: BinPerception, frames: CachedFrames, progress: bool = True) -> np.ndarray:
    """The indices of the frames ``perception`` can observe; the others (too few workspace points) are counted."""
    usable = []
    for index in tqdm(range(len(frames)), desc="check frames", unit="frame", disable=not progress):
        try:
            perception.check_observable(frames[index])
        except TooFewPointsError:
            continue
        usable.append(index)
    if len(usable) < len(frames) and progress:
        tqdm.write(f"skipped {len(frames) - len(usable)} frames with too few points in the workspace")
    if not usable:
        raise BagError(f"no usable frames in {', '.join(b.bag for b in frames.bags)}")
    return np.asarray(usable)


@dataclass
class TrainResult:
    run_dir: Path
    steps: int
    epochs: int
    final_loss: float
    seconds: float
    perception: BinPerception  # the trained model (each rank's own copy, under torchrun)


def _check_resumable(path: Path, perception: BinPerception, metadata: dict, instances: int, config: Config, frames: CachedFrames) -> None:
    if perception.instances != instances:
        raise CheckpointError(f"checkpoint {path}: trained for N={perception.instances}, but --instances is {instances}")
    trained = dataclasses.asdict(perception.config)
    differing = [k for k, v in dataclasses.asdict(config.model).items() if trained.get(k) != v]
    if differing:
        raise CheckpointError(f"checkpoint {path}: its model config differs from this one in {', '.join(differing)}")
    if metadata.get("data") != frames.keys:
        raise CheckpointError(f"checkpoint {path}: trained on other frames than those of {', '.join(b.bag for b in frames.bags)}")


def _resumed_log(path: Path, step: int) -> list[tuple[int, float]]:
    """Steps 1..``step`` of the loss log, which is rewritten to hold just them (a killed run may have logged more)."""
    history, rows = [], []
    try:
        with open(path, newline="") as log:
            for row in csv.DictReader(log):
                if len(rows) == step or row["step"] != str(len(rows) + 1):
                    break
                history.append((int(row["step"]), float(row["loss"])))
                rows.append([row[c] for c in LOG_COLUMNS])
    except (OSError, KeyError, ValueError) as error:
        raise CheckpointError(f"loss log {path}: unreadable ({error}); it must hold steps 1 to {step} to resume") from None
    if len(rows) != step:
        raise CheckpointError(f"loss log {path}: holds steps 1 to {len(rows)}, but the checkpoint is at step {step}")
    with replacing(path) as tmp, open(tmp, "w", newline="") as log:
        csv.writer(log).writerows([LOG_COLUMNS, *rows])
    return history


def _start(
    checkpoint_path: Path,
    resume: bool,
    instances: int,
    workspace: tuple[np.ndarray, np.ndarray | None],
    config: Config,
    frames: CachedFrames,
    cluster: Cluster,
) -> tuple[BinPerception, dict, dict, bool]:
    """The model to train, its optimiser's state and its progress: resumed from ``checkpoint_path``, or new."""
    # Rank 0's view decides, so that every rank resumes or none does.
    resumed = cluster.any(cluster.is_main and resume and checkpoint_path.is_file())
    if resumed:
        perception, state, progress = load_checkpoint(checkpoint_path)
        _check_resumable(checkpoint_path, perception, progress, instances, config, frames)
        if cluster.is_main:
            tqdm.write(f"{checkpoint_path}: resuming at step {progress['step']} (epoch {progress['epoch']})")
        return perception, state, progress, True
    if resume and cluster.is_main:
        tqdm.write(f"{checkpoint_path}: no checkpoint yet, so training starts afresh")
    box, camera_from_bin = workspace
    perception = BinPerception(instances, box, config.model, seed=config.train.seed, camera_from_bin=camera_from_bin)
    return perception, {}, {"step": 0, "epoch": 0, "gamma": 0.0, "loss": float("nan"), "elapsed_s": 0.0}, False


def _measure_part(perception: BinPerception, frames: CachedFrames, usable: np.ndarray, cluster: Cluster) -> None:
    """The per-seed model's part size, from the frames whose seeds are N whole parts, unless already measured."""
    if not perception.per_seed or perception.part_size_m is not None:
        return
    perception.part_size_m = perception.measure_part_size(
        frames[i] for i in tqdm(usable, desc="measure the part", unit="frame", disable=not cluster.is_main)
    )
    if cluster.is_main:
        tqdm.write(f"the part, from frames whose seeds are N whole parts: {describe_part_size(perception.part_size_m)}")


def _open_log(path: Path, step: int, resumed: bool) -> list[tuple[int, float]]:
    """The loss history so far: the resumed run's steps, or none in a new log with its header."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if resumed:
        return _resumed_log(path, step)
    with open(path, "w", newline="") as log_file:
        csv.writer(log_file).writerow(LOG_COLUMNS)
    return []


def _register(perception: BinPerception, fusion_frames: list[Frame], train_config: TrainConfig) -> tuple[Registration | None, bool]:
    """After the last step: the seeds' views registered, and adopted where the config asks; the registration and whether."""
    registered = _registered_views(perception, fusion_frames)
    adopted = bool(registered and train_config.registration_epochs)
    if adopted:
        losses = adopt_registration(perception, *registered, train_config.registration_epochs, seed=train_config.seed)
        tqdm.write(
            f"X is the registered model, and the network learned its poses: "
            f"loss {losses[0]:.4f} -> {losses[-1]:.4f} over {len(losses)} epochs"
        )
    return (registered[0] if registered else None), adopted


def train(
    bags: list[str],
    instances: int,
    config: Config,
    run_dir: str | os.PathLike,
    workspace: np.ndarray | None = None,
    max_minutes: float | None = None,
    resume: bool = False,
    camera_from_bin: np.ndarray | None = None,
) -> TrainResult:
    """Train on ``bags`` into ``run_dir``; with ``resume``, continue from its checkpoint.pt where there is one.

    In a process group (torchrun, then :func:`bin_perception.learning.distributed.init_from_env`) each of the W
    processes trains batch_size / W frames of every batch, and rank 0 alone writes ``run_dir``, which
    every rank must be able to read to resume. ``max_minutes`` bounds this call, not the whole run.
    ``camera_from_bin`` is the frame of ``workspace`` (the bin's in the camera's; None: the camera's own).
    """
    run_dir = Path(run_dir)
    cluster = Cluster.current()
    train_config, model_config = config.train, config.model
    if train_config.threads:
        torch.set_num_threads(train_config.threads)
    workspace, camera_from_bin = resolve_workspace(workspace, config, bags, camera_from_bin)
    with cluster.local_leader_first():
        frames = open_frames(bags, config.topics, train_config.scenes)
    checkpoint_path = run_dir / "checkpoint.pt"
    perception, state, progress, resumed = _start(checkpoint_path, resume, instances, (workspace, camera_from_bin), config, frames, cluster)
    perception.to(cluster.device)
    usable = observable_frames(perception, frames, cluster.is_main)
    _measure_part(perception, frames, usable, cluster)
    observations = ObservationCache(perception, frames, int(train_config.observation_cache_mb * 2**20))
    batch_size = min(train_config.batch_size, len(usable)) // cluster.world_size
    if batch_size < 1:
        raise ValueError(f"{len(usable)} usable frames cannot make a batch for each of {cluster.world_size} processes")
    sampler = DistributedSampler(usable, cluster.world_size, cluster.rank, shuffle=True, seed=train_config.seed, drop_last=True)
    steps_per_epoch = len(sampler) // batch_size
    if resumed and progress.get("steps_per_epoch") != steps_per_epoch:
        raise CheckpointError(
            f"checkpoint {checkpoint_path}: written at {progress.get('steps_per_epoch')} steps per epoch, but this run "
            f"makes {steps_per_epoch} (another batch size or number of processes)"
        )
    model = data_parallel(perception, cluster)
    optimizer = make_optimizer(perception, train_config)
    schedule = make_schedule(optimizer, train_config)
    if resumed:
        optimizer.load_state_dict(state["optimizer"])
        if schedule:
            schedule.load_state_dict(state["schedule"])
    step, epoch, gamma, loss_value = progress["step"], progress["epoch"], progress["gamma"], progress["loss"]
    snapshots = run_dir / "snapshots"
    log_path = run_dir / "loss_log.csv"
    metadata = {"bags": [str(b) for b in bags], "train": train_config.__dict__, "data": frames.keys, "steps_per_epoch": steps_per_epoch}
    history: list[tuple[int, float]] = []
    if cluster.is_main:
        snapshots.mkdir(parents=True, exist_ok=True)
        history = _open_log(log_path, step, resumed)

    now = time.perf_counter()
    start, deadline = now - progress["elapsed_s"], now + 60 * max_minutes if max_minutes else float("inf")
    last_checkpoint = now

    def checkpoint() -> None:
        save_checkpoint(
            checkpoint_path,
            perception,
            {"optimizer": optimizer.state_dict(), **({"schedule": schedule.state_dict()} if schedule else {})},
            {**metadata, "step": step, "epoch": epoch, "gamma": gamma, "loss": loss_value, "elapsed_s": time.perf_counter() - start},
        )

    # Line-buffered, so that every step the checkpoint counts is in the log before the checkpoint is.
    with open(log_path if cluster.is_main else os.devnull, "a", newline="", buffering=1) as log_file:
        log = csv.writer(log_file)
        bar = tqdm(total=train_config.epochs * steps_per_epoch, initial=step, desc="train", unit="step", disable=not cluster.is_main)
        stop = False
        while epoch < train_config.epochs and not stop:
            sampler.set_epoch(epoch)
            order = usable[list(sampler)]
            for position in range(step - epoch * steps_per_epoch, steps_per_epoch):
                indices = order[position * batch_size : (position + 1) * batch_size]
                batch = [observations[i] for i in indices]
                rngs = [np.random.default_rng([train_config.seed, epoch, i]) for i in indices]
                loss = train_step(perception, optimizer, batch, np.arange(len(indices)), rngs, gamma, model)
                step += 1
                gamma += model_config.gamma_step
                loss_value = loss.item()
                if cluster.is_main:
                    history.append((step, loss_value))
                    log.writerow([step, epoch, f"{loss_value:.6g}", f"{time.perf_counter() - start:.2f}"])
                    bar.update()
                    bar.set_postfix(loss=f"{loss_value:.4f}", epoch=epoch)
                    if time.perf_counter() - last_checkpoint > train_config.checkpoint_every_s:
                        checkpoint()
                        last_checkpoint = time.perf_counter()
                stop = max_minutes is not None and cluster.any(time.perf_counter() > deadline)
                # After an epoch's last step, the epoch is counted done before stopping.
                if stop and position + 1 < steps_per_epoch:
                    break
            else:
                epoch += 1
                if schedule:
                    schedule.step()
                if cluster.is_main and epoch % train_config.snapshot_every_epochs == 0:
                    model_views(perception.model_points_m(), snapshots / f"model_epoch_{epoch:04d}.png", f"epoch {epoch}")
        bar.close()
    if cluster.is_main:
        fusion_frames = [frames[i] for i in usable[: max(FUSION_FRAMES, math.ceil(REGISTRATION_VIEWS / perception.instances))]]
        registration, adopted = _register(perception, fusion_frames, train_config)
        checkpoint()
        write_model_ply(perception.model_points_m(), run_dir / "model.ply")
        model_views(perception.model_points_m(), snapshots / "model_final.png", f"after {step} steps" + (", registered" if adopted else ""))
        write_fused_model(perception, fusion_frames, run_dir, registration)
        loss_curve(history, run_dir / "loss.png")
    return TrainResult(run_dir, step, epoch, loss_value, time.perf_counter() - start, perception)


def _registered_views(perception: BinPerception, frames: Sequence[Frame]) -> tuple[Registration, SeedViews] | None:
    """The seeds' views of ``frames`` registered without the network, or None (and why) where they cannot be."""
    try:
        return register_seed_views(perception, frames)
    except ValueError as reason:
        tqdm.write(f"the views are not registered, so the fused model takes the network's poses: {reason}")
        return None


def write_fused_model(perception: BinPerception, frames: Sequence[Frame], run_dir: Path, registration: Registration | None = None) -> Path | None:
    """``model_fused.ply`` and ``snapshots/model_fused.png``: the part fused from the seeds' views of
    ``frames``, by ``registration`` where given (centred, as the learned model is once it adopts it), else
    under the network's poses (:meth:`BinPerception.fused_model_m`); None where no voxel had enough views."""
    if registration is not None:
        fused_m = registration.model_m - registration.model_m.mean(0)
        how = f"registered from {len(registration.poses)} views of {len(frames)} frames"
    else:
        was_training = perception.training
        fused_m = perception.eval().fused_model_m(tqdm(frames, desc="fuse the model", unit="frame", leave=False))
        perception.train(was_training)
        how = f"fused from {len(frames)} frames under the network's poses"
    if len(fused_m) == 0:
        tqdm.write("the fused model is empty: no voxel was seen by enough views")
        return None
    model_views(fused_m, run_dir / "snapshots" / "model_fused.png", how)
    return write_model_ply(fused_m, run_dir / "model_fused.ply")
