"""Simulated datasets: many bins of one part, rendered in parallel, written to one bag."""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from ..config import Config, config_to_dict
from ..frame import Frame
from ..geometry import format_bin_pose
from ..io.bag import META_BIN_POSE, META_INSTANCES, META_MESH, META_PART, META_SYMMETRY, META_WORKSPACE, BagWriter, encode_mesh
from .parts import load_part
from .scene import BinSimulator

_worker_simulator: BinSimulator | None = None


def scene_frame(simulator: BinSimulator, seed: int, index: int, frame_period_s: float, frame_id: str) -> Frame:
    """Scene ``index`` of the dataset with ``seed``; independent of every other scene."""
    sample = simulator.scene([seed, index])
    stamp_ns = int(round((index + 1) * frame_period_s * 1e9))
    return Frame(sample.depth_m, sample.K, stamp_ns, frame_id, sample.rgb, sample.labels, sample.poses)


def _init_worker(part: str, instances: int, config: Config) -> None:
    global _worker_simulator
    _worker_simulator = BinSimulator(load_part(part), instances, config)


def _worker_scene(args: tuple[int, int, float, str]) -> Frame:
    return scene_frame(_worker_simulator, *args)


@dataclass(frozen=True)
class SimulationSummary:
    path: Path
    scenes: int
    seconds: float

    @property
    def scenes_per_s(self) -> float:
        return self.scenes / self.seconds


def simulate_bag(
    part: str | os.PathLike,
    instances: int,
    scenes: int,
    seed: int,
    out: str | os.PathLike,
    config: Config | None = None,
    workers: int = 1,
    storage: str = "mcap",
    overwrite: bool = False,
    progress: bool = True,
) -> SimulationSummary:
    """Simulate ``scenes`` bins of ``instances`` copies of ``part`` into the bag ``out``.

    Scene i depends only on ``(seed, i)``, so the bag's images are the same
    byte for byte whatever the number of workers.
    """
    if scenes < 1:
        raise ValueError(f"scenes must be at least 1, got {scenes}")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    config = config or Config()
    part_obj = load_part(part)
    simulator = BinSimulator(part_obj, instances, config)
    workspace = ",".join(f"{v:.6f}" for v in simulator.workspace.ravel())
    custom_data = {
        META_PART: part_obj.name,
        META_SYMMETRY: part_obj.symmetry,
        META_MESH: encode_mesh(part_obj.mesh),
        META_WORKSPACE: workspace,
        META_INSTANCES: str(instances),
        **({} if simulator.camera_from_bin is None else {META_BIN_POSE: format_bin_pose(simulator.camera_from_bin)}),
        "bin_perception.seed": str(seed),
        "bin_perception.config": json.dumps(config_to_dict(config), sort_keys=True),
    }
    jobs = [(seed, i, config.scene.frame_period_s, config.camera.frame_id) for i in range(scenes)]
    start = time.perf_counter()
    with BagWriter(out, config.topics, storage, custom_data, overwrite) as writer:
        bar = tqdm(total=scenes, desc=f"simulate {part_obj.name} x{instances}", unit="scene", disable=not progress)
        if workers == 1:
            for job in jobs:
                writer.write(scene_frame(simulator, *job))
                bar.update()
        else:
            # spawn: PyBullet and the BLAS pools do not survive a fork cleanly.
            context = multiprocessing.get_context("spawn")
            with context.Pool(workers, _init_worker, (str(part), instances, config)) as pool:
                for frame in pool.imap(_worker_scene, jobs, chunksize=4):
                    writer.write(frame)
                    bar.update()
        bar.close()
    simulator.close()
    return SimulationSummary(Path(out), scenes, time.perf_counter() - start)
