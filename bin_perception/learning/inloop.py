"""Training in the loop: the node's frames feed a replay buffer, and a trainer process learns from it.

The trainer is a process of its own, not a thread: torch's intra-op thread count is one setting for a
whole process (setting it in one thread sets it for all), so only a process lets the trainer run on
fewer threads than inference, and it keeps the trainer's Python off the GIL that the node's callbacks
need. The node offers each observation it perceived (dropped when the trainer is behind: frames are
plentiful); the trainer sends whole state dicts back every ``publish_every_steps`` steps, which the node
loads into a fresh model and swaps in, so inference never sees half-updated weights. Checkpoints (model,
optimizer state with BPGrad's min f, step) are written every ``checkpoint_every_s`` and on request,
atomically; a trainer started on an existing checkpoint resumes from it.
"""

from __future__ import annotations

import dataclasses
import math
import queue
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.multiprocessing as mp

from ..config import REPLAY_POLICIES, ModelConfig, TrainConfig
from ..frame import Frame
from ..model.observation import Observation
from ..model.perception import BinPerception, load_checkpoint, save_checkpoint
from ..model.seeds import part_size
from ..optim import BPGrad

# A model from nothing measures its part on this many frames (10 s at 10 Hz; seeds.part_size needs 8
# whole parts among them).
MEASURE_FRAMES = 100


class ReplayBuffer:
    """Observations to train on, bounded in count and in bytes.

    ``fifo`` keeps the newest; ``reservoir`` keeps a uniform sample of everything offered so far
    (Vitter's algorithm R), so a long run still trains on its early bins.
    """

    def __init__(self, max_frames: int, max_bytes: int, policy: str = "reservoir", seed: int = 0) -> None:
        if max_frames < 1 or max_bytes < 1:
            raise ValueError(f"replay buffer: max_frames ({max_frames}) and max_bytes ({max_bytes}) must be positive")
        if policy not in REPLAY_POLICIES:
            raise ValueError(f"replay buffer: policy {policy!r}: expected one of {', '.join(REPLAY_POLICIES)}")
        self.max_frames, self.max_bytes, self.policy = max_frames, max_bytes, policy
        self._items: list[Observation] = []
        self._sizes: list[int] = []
        self._rng = np.random.default_rng(seed)
        self.seen = 0
        self.nbytes = 0

    def __len__(self) -> int:
        return len(self._items)

    def add(self, observation: Observation) -> None:
        # The pixel indices are for label images, not for training.
        observation = dataclasses.replace(observation, pixels=np.empty(0, dtype=np.int64))
        size = sum(v.nbytes for v in dataclasses.astuple(observation) if isinstance(v, np.ndarray))
        if size > self.max_bytes:
            raise ValueError(f"replay buffer: one observation of {size} bytes exceeds max_bytes {self.max_bytes}")
        self.seen += 1
        full = len(self._items) >= self.max_frames or self.nbytes + size > self.max_bytes
        if not full:
            self._put(len(self._items), observation, size)
            return
        if self.policy == "fifo":
            slot = 0
        else:
            slot = int(self._rng.integers(self.seen))
            if slot >= len(self._items):
                return  # algorithm R: the newcomer is not kept
        self._drop(slot)
        while self._items and self.nbytes + size > self.max_bytes:
            self._drop(0 if self.policy == "fifo" else int(self._rng.integers(len(self._items))))
        self._put(len(self._items), observation, size)

    def _put(self, slot: int, observation: Observation, size: int) -> None:
        self._items.insert(slot, observation)
        self._sizes.insert(slot, size)
        self.nbytes += size

    def _drop(self, slot: int) -> None:
        self._items.pop(slot)
        self.nbytes -= self._sizes.pop(slot)

    def sample(self, count: int) -> list[Observation]:
        """``count`` observations drawn uniformly, without replacement where there are enough."""
        picks = self._rng.choice(len(self._items), size=count, replace=len(self._items) < count)
        return [self._items[i] for i in picks]


@dataclass(frozen=True)
class InloopSettings:
    """What the trainer process needs besides the model: all plain values, so it crosses a spawn."""

    checkpoint: str
    train: TrainConfig
    buffer_frames: int = 1000
    buffer_bytes: int = 512 * 2**20
    replacement: str = "reservoir"
    publish_every_steps: int = 20
    checkpoint_every_s: float = 60.0
    threads: int = 1
    min_frames: int = 8  # frames in the buffer before the first step


def _trainer(settings: InloopSettings, metadata: dict, state: dict, frames, weights, stats, commands) -> None:
    """The trainer process's body: buffer, train, publish weights, checkpoint, report."""
    from .trainer import make_optimizer, train_step  # the trainer's own, offline and in the loop

    # Ctrl-C reaches the whole process group; the node decides when the trainer stops (after saving).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(settings.threads)
    perception = BinPerception.from_metadata(metadata)
    perception.net.load_state_dict(state["net"])
    perception.object_model.load_state_dict(state["object_model"])
    perception.train()
    optimizer = make_optimizer(perception, settings.train)
    if "optimizer" in state:
        optimizer.load_state_dict(state["optimizer"])
    step = int(metadata.get("step", 0))
    gamma = float(metadata.get("gamma", 0.0))
    buffer = ReplayBuffer(settings.buffer_frames, settings.buffer_bytes, settings.replacement, settings.train.seed)
    rng = np.random.default_rng([settings.train.seed, step])
    batch_size = settings.train.batch_size
    loss_value, last_checkpoint_s, window_start_s, window_steps = math.nan, time.monotonic(), time.monotonic(), 0

    def save(path: str) -> str:
        save_checkpoint(
            path, perception, {"optimizer": optimizer.state_dict()},
            {"step": step, "epoch": 0, "gamma": gamma, "loss": loss_value, "mode": "train_inloop", "train": dataclasses.asdict(settings.train)},
        )
        return path

    while True:
        try:
            command = commands.get_nowait()
        except queue.Empty:
            command = None
        if command is not None:
            if command[0] == "stop":
                save(settings.checkpoint)
                stats.put(("saved", settings.checkpoint))
                return
            if command[0] == "save":
                stats.put(("saved", save(command[1] or settings.checkpoint)))
            if command[0] == "part_size":
                perception.part_size_m = command[1]
        try:  # everything offered since the last step, without waiting when there is enough to train on
            while True:
                buffer.add(frames.get(timeout=0.1 if len(buffer) < settings.min_frames else 0))
        except queue.Empty:
            pass
        if len(buffer) < settings.min_frames:
            continue
        batch = buffer.sample(batch_size)
        loss = train_step(perception, optimizer, batch, np.arange(len(batch)), rng, gamma)
        step += 1
        window_steps += 1
        gamma += perception.config.gamma_step
        loss_value = float(loss)
        if step % settings.publish_every_steps == 0:
            # Copies: a queue moves what it sends into shared memory, and the live weights must stay private.
            snapshot = {
                part: {k: v.detach().clone() for k, v in module.state_dict().items()}
                for part, module in (("net", perception.net), ("object_model", perception.object_model))
            }
            try:
                weights.put_nowait((step, snapshot))
            except queue.Full:
                pass  # the node has not taken the last ones yet; newer ones follow

            now_s = time.monotonic()
            bounds = {}
            if isinstance(optimizer, BPGrad):
                bounds = {"lower_bound": float(optimizer.lower_bound), "upper_bound": float(optimizer.upper_bound)}
            stats.put(("stats", {
                "step": step, "loss": loss_value, "steps_per_s": window_steps / max(now_s - window_start_s, 1e-9),
                "buffer_frames": len(buffer), "buffer_fill": len(buffer) / settings.buffer_frames,
                "buffer_mb": buffer.nbytes / 2**20, "frames_seen": buffer.seen, **bounds,
            }))
            window_start_s, window_steps = now_s, 0
        if time.monotonic() - last_checkpoint_s > settings.checkpoint_every_s:
            save(settings.checkpoint)
            last_checkpoint_s = time.monotonic()


def initial_state(
    settings: InloopSettings,
    model: ModelConfig,
    instances: int | None,
    workspace: np.ndarray | None,
    camera_from_bin: np.ndarray | None = None,
) -> tuple[BinPerception, dict, dict]:
    """The model to start from: the checkpoint's, resumed, if the file exists; else a new, random one.

    Returns the model, its state (weights, and the optimizer's when resuming) and its metadata.
    """
    if Path(settings.checkpoint).is_file():
        perception, state, metadata = load_checkpoint(settings.checkpoint)
        return perception, state, metadata
    if instances is None or workspace is None:
        raise ValueError("starting from nothing needs the number of instances and the workspace")
    perception = BinPerception(instances, workspace, model, seed=settings.train.seed, camera_from_bin=camera_from_bin)
    state = {"net": perception.net.state_dict(), "object_model": perception.object_model.state_dict()}
    return perception, state, {**perception.metadata(), "step": 0}


class InloopTraining:
    """The node's side of in-loop training: offer frames, take new weights and progress, save, stop."""

    def __init__(self, settings: InloopSettings, perception: BinPerception, state: dict, metadata: dict) -> None:
        context = mp.get_context("spawn")
        # Small queues: a frame the trainer has no room for is dropped, never waited for.
        self._frames = context.Queue(maxsize=4)
        self._weights = context.Queue(maxsize=2)
        self._stats = context.Queue()
        self._commands = context.Queue()
        self._metadata = {**perception.metadata(), **{k: v for k, v in metadata.items() if k in ("step", "gamma")}}
        self.latest: dict = {"step": int(metadata.get("step", 0))}
        self.offered = self.dropped = 0
        # A per-seed model started from nothing has not measured its part (seeds.part_size): the first
        # frames offered measure it, and the trainer's checkpoints and the node's model then carry it.
        self.part_size_m = perception.part_size_m
        self._measuring = perception if perception.per_seed and perception.part_size_m is None else None
        self._sizes: list[np.ndarray] = []
        self._saved: queue.Queue[str] = queue.Queue()
        self._lock = threading.Lock()
        self._process = context.Process(
            target=_trainer,
            args=(settings, self._metadata, state, self._frames, self._weights, self._stats, self._commands),
            name="inloop-trainer",
            daemon=True,
        )
        self._process.start()

    @property
    def alive(self) -> bool:
        return self._process.is_alive()

    def offer(self, observation: Observation, frame: Frame | None = None) -> bool:
        """Give the trainer a perceived frame; False if it had no room (the frame is dropped).

        With the ``frame`` itself, the first MEASURE_FRAMES offered also measure the part's size where the
        model has none (``part_size_m``, None until then, and still None if they held too few whole parts).
        """
        if frame is not None and self._measuring is not None:
            self._measure_part(frame)
        with self._lock:
            self.offered += 1
            try:
                self._frames.put_nowait(observation)
                return True
            except queue.Full:
                self.dropped += 1
                return False

    def _measure_part(self, frame: Frame) -> None:
        self._sizes.append(self._measuring.frame_part_sizes_m(frame))
        if len(self._sizes) < MEASURE_FRAMES:
            return
        self._measuring = None
        self.part_size_m = part_size(np.concatenate(self._sizes))
        if self.part_size_m is not None:
            self._commands.put(("part_size", self.part_size_m))

    def new_model(self, like: BinPerception) -> BinPerception | None:
        """A fresh model with the newest weights the trainer sent since the last call, or None."""
        newest = None
        while True:
            try:
                newest = self._weights.get_nowait()
            except queue.Empty:
                break
        if newest is None:
            return None
        _, state = newest
        model = BinPerception.from_metadata(like.metadata())
        model.net.load_state_dict(state["net"])
        model.object_model.load_state_dict(state["object_model"])
        return model.to(like.object_model.points.device).eval()

    def progress(self) -> dict:
        """The trainer's latest figures (step, loss, steps/s, buffer fill, BPGrad's bounds)."""
        while True:
            try:
                kind, value = self._stats.get_nowait()
            except queue.Empty:
                break
            if kind == "stats":
                self.latest = value
            else:
                self._saved.put(value)
        return dict(self.latest, frames_offered=self.offered, frames_dropped=self.dropped)

    def save(self, path: str = "", timeout_s: float = 60.0) -> str:
        """Ask the trainer to write a checkpoint (at ``path``, or its own); the path, once written."""
        self._commands.put(("save", path))
        return self._await_saved(timeout_s)

    def _await_saved(self, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.progress()
            try:
                return self._saved.get(timeout=0.1)
            except queue.Empty:
                if not self.alive:
                    break
        raise RuntimeError("the in-loop trainer did not confirm the checkpoint")

    def stop(self, timeout_s: float = 60.0) -> None:
        """Checkpoint and end the trainer."""
        try:
            if self.alive:
                self._commands.put(("stop",))
                self._await_saved(timeout_s)
        finally:
            self._process.join(timeout=10)
            if self._process.is_alive():
                self._process.kill()
            # Frames still queued for a trainer that is gone must not hold this process at exit.
            for channel in (self._frames, self._commands):
                channel.cancel_join_thread()
                channel.close()
