"""``bin-perception export``: a checkpoint's learned object model as PLY, and its pose network as TorchScript.

The exported network takes what :func:`bin_perception.model.observation.observe`
makes of one frame (its image, or its N seeds' crops and centroids) and returns
the poses :meth:`BinPerception.predict` does: the rotations, and the
translations in metres in the camera frame. ``export.json`` beside it records
the input shapes, the workspace and the normalisation a deployment needs to
make those inputs.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import open3d as o3d
import torch
from torch import nn

from ..io.atomic import replacing, write_text
from ..model import BinPerception, load_checkpoint
from ..model.network import PoseNet, seed_poses
from ..model.observation import Normalization


class _PosesInMetres(nn.Module):
    def __init__(self, net: PoseNet, normalization: Normalization) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("centre_m", torch.as_tensor(normalization.centre_m, dtype=torch.float32))
        self.scale_m = float(normalization.scale_m)


class ScenePoses(_PosesInMetres):
    """The thesis's network: images (B, 1, S, S) -> rotations (B, N, 3, 3), translations (B, N, 3) in metres."""

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rotations, translations = self.net(images)
        return rotations, translations * self.scale_m + self.centre_m


class SeedPoses(_PosesInMetres):
    """The per-seed network: one crop per seed (K, 1, S, S), the seeds' centroids (K, 3) in model units and the
    crops' turns (K,) in radians -> rotations (K, 3, 3), translations (K, 3) in metres."""

    def forward(self, crops: torch.Tensor, centres: torch.Tensor, angles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rotations, offsets = seed_poses(self.net, crops, angles)
        return rotations, (offsets + centres) * self.scale_m + self.centre_m


def pose_module(perception: BinPerception) -> nn.Module:
    """The deployable pose network of ``perception``, in eval mode."""
    kind = SeedPoses if perception.per_seed else ScenePoses
    return kind(perception.net, perception.normalization).eval()


def example_inputs(perception: BinPerception, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """Random inputs of the shapes the network is exported for: one frame's image, or its N crops and centroids.

    The shapes are fixed because PoseNet reads its batch size with ``len``, which a trace records as a constant.
    """
    size = perception.config.input_size_px
    if not perception.per_seed:
        return (torch.rand(1, 1, size, size, generator=generator),)
    crops = perception.instances
    angles = (torch.rand(crops, generator=generator) - 0.5) * 2 * torch.pi
    return torch.rand(crops, 1, size, size, generator=generator), torch.rand(crops, 3, generator=generator) - 0.5, angles


@dataclass(frozen=True)
class ExportResult:
    model_ply: Path
    manifest: Path
    pose_network: Path | None  # None where the network does not trace cleanly
    problem: str | None  # why it does not


def write_model_ply(points_m: np.ndarray, path: str | os.PathLike) -> Path:
    """The learned model's points (metres) as a PLY point cloud, written to a temporary name and renamed."""
    path = Path(path)
    with replacing(path) as tmp:
        cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.asarray(points_m, dtype=np.float64)))
        if not o3d.io.write_point_cloud(str(tmp), cloud):
            raise OSError(f"{path}: Open3D could not write the point cloud")
    return path


def trace_pose_network(perception: BinPerception, path: str | os.PathLike, tolerance: float = 1e-5) -> Path:
    """TorchScript of the pose network, traced and then checked against the eager module on other inputs.

    Raises RuntimeError where the trace does not reproduce the eager outputs (a data-dependent branch).
    """
    path = Path(path)
    module = pose_module(perception)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad(), warnings.catch_warnings():
        # The trace's own warnings concern shapes, which are fixed here; its outputs are checked below.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(module, example_inputs(perception, generator), check_trace=False)
        for _ in range(2):
            inputs = example_inputs(perception, generator)
            for eager, scripted in zip(module(*inputs), traced(*inputs), strict=True):
                if not torch.allclose(eager, scripted, rtol=tolerance, atol=tolerance):
                    raise RuntimeError("the traced network gives other outputs than the eager one on the same inputs")
    with replacing(path) as tmp:
        torch.jit.save(traced, str(tmp))
    return path


def export(checkpoint: str | os.PathLike, out_dir: str | os.PathLike) -> ExportResult:
    """Write OUT_DIR/model.ply, OUT_DIR/pose_network.pt (TorchScript, where it traces) and OUT_DIR/export.json."""
    perception, _, metadata = load_checkpoint(checkpoint)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model_ply = write_model_ply(perception.model_points_m(), out_dir / "model.ply")
    pose_network, problem = None, None
    try:
        pose_network = trace_pose_network(perception, out_dir / "pose_network.pt")
    except RuntimeError as error:
        problem = str(error)
    config = perception.config
    size, count = config.input_size_px, perception.instances
    inputs = (
        f"crops ({count}, 1, {size}, {size}) float32, centres ({count}, 3) float32 model units and angles ({count},) "
        "float32 radians: Observation.crops, Observation.centres and Observation.angles of one frame"
        if perception.per_seed
        else f"images (1, 1, {size}, {size}) float32: Observation.image of one frame"
    )
    manifest = {
        "checkpoint": str(Path(checkpoint).resolve()),
        "step": metadata.get("step"),
        "method": config.method,
        "instances": perception.instances,
        "input_size_px": config.input_size_px,
        "rotation": config.rotation,
        "workspace": perception.workspace.ravel().tolist(),
        "normalization": perception.normalization.to_dict(),
        "pose_network": pose_network.name if pose_network else None,
        "pose_network_inputs": inputs,
        "pose_network_outputs": "rotations (..., 3, 3) and translations (..., 3) in metres, camera frame",
        "problem": problem,
        "model_ply": model_ply.name,
    }
    path = out_dir / "export.json"
    write_text(path, json.dumps(manifest, indent=1))
    return ExportResult(model_ply, path, pose_network, problem)
