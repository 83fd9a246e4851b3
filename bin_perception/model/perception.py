"""The estimator: a pose network and a learned object model that, together, explain a bin.

``BinPerception`` holds everything a trained model needs at inference (the
networks, the workspace, the normalisation, the model config and, for the
per-seed method, the part's measured size) and saves to a weights-only
checkpoint with a JSON sidecar.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

from ..config import AUTO, ModelConfig, build_dataclass
from ..depth_filters import crop_frame, decimate_frame, decimation_factor, upsampled_labels
from ..frame import Frame
from ..geometry import floor_plane, format_bin_pose, parse_bin_pose, workspace_image_region
from ..io.atomic import replacing, write_text
from .fusion import fuse_views, views_in_model_frame
from .network import ObjectModel, PoseNet, seed_poses
from .observation import (
    MIN_POINTS,
    Normalization,
    Observation,
    observe,
    subsample,
    whole_part_sizes_m,
    workspace_mask,
    workspace_points,
)
from .refine import model_spacing_m, refine_pose, score_pose
from .render import best_channels, instance_ids, render, visible_scene
from .seeds import PartSize, part_size
from .segment import label_image, transfer_labels

# 2: the per-seed method's part_size_m (extent and box) replaced part_extent_m, which still loads.
CHECKPOINT_FORMAT = 2
# An instance with fewer points than this has no pose to check.
MIN_SEGMENT_POINTS = 3


@dataclass(frozen=True)
class Prediction:
    """What the model says of one frame."""

    poses: np.ndarray  # (N, 4, 4) camera_from_model, metres
    point_labels: np.ndarray  # (n,) instance ids 1..N of the frame's workspace points
    labels: np.ndarray  # (H, W) uint16 label image, 0 = not a part
    observation: Observation
    visible_points: np.ndarray | None  # (k, 3) the rendered scene's visible points, model units; None if not rendered
    visible_ids: np.ndarray | None  # (k,) their instance ids
    confidences: np.ndarray  # (N,) in [0, 1], each pose's fit to its points less the free space it violates


class CheckpointError(ValueError):
    """A checkpoint that is missing, malformed or does not fit what it is used with."""


class BinPerception(nn.Module):
    def __init__(
        self,
        instances: int,
        workspace: np.ndarray,
        config: ModelConfig | None = None,
        seed: int = 0,
        camera_from_bin: np.ndarray | None = None,
    ) -> None:
        super().__init__()
        self.instances = instances
        # Whether each frame's parts are counted (set_instances("auto")) rather than taken to be ``instances``.
        self.counts_parts = False
        self.config = config or ModelConfig()
        self.workspace = np.asarray(workspace, dtype=np.float64).reshape(2, 3)
        # The frame of the workspace box: the bin's (4, 4) in the camera's, or None for the camera's own.
        self.camera_from_bin = _bin_pose(camera_from_bin)
        self.normalization = Normalization.from_workspace(self.workspace, self.camera_from_bin)
        # The per-seed method's measure of the part (seeds.part_size); None until measured.
        self.part_size_m: PartSize | None = None
        # Seeded initial weights, without reseeding the caller's global generator.
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            # The per-seed method's network sees one part at a time.
            self.net = PoseNet(1 if self.per_seed else instances, self.config.rotation, self.config.stem)
            self.object_model = ObjectModel(self.config.model_points, self.config.init_cube)

    @property
    def per_seed(self) -> bool:
        return self.config.method == "per_seed"

    @property
    def can_count_parts(self) -> bool:
        """Whether this model can count the parts in each frame (``set_instances("auto")``): a per-seed model that
        measured the part's size in training."""
        return self.per_seed and self.part_size_m is not None

    def set_instances(self, instances: int | Literal["auto"]) -> None:
        """Perceive ``instances`` parts per bin from now on, or with ``"auto"`` as many as the seeds count.

        The per-seed method's network sees one part at a time, so any N >= 1 works, and so does a count that
        changes from frame to frame, given the part's size that training measured; the whole-image network
        regresses a fixed N poses, the N it was trained for.
        """
        if instances == AUTO:
            if not self.can_count_parts:
                raise ValueError(
                    "instances auto: counting the parts needs a per_seed model that measured the part's size in training"
                    + ("" if self.per_seed else f"; this whole_image model perceives exactly {self.instances}")
                )
            self.counts_parts = True
            return
        if not isinstance(instances, int) or instances < 1:
            raise ValueError(f"instances {instances}: a bin holds at least one part")
        if not self.per_seed and instances != self.instances:
            raise ValueError(f"instances {instances}: this model (method whole_image) was trained for exactly {self.instances}")
        self.instances, self.counts_parts = instances, False

    def set_workspace(self, workspace: np.ndarray, camera_from_bin: np.ndarray | None = None) -> None:
        """Crop frames to another box, in the bin's frame ``camera_from_bin`` (None: the camera's). The
        normalisation, which the learned model's scale depends on, stays."""
        self.workspace = np.asarray(workspace, dtype=np.float64).reshape(2, 3)
        self.camera_from_bin = _bin_pose(camera_from_bin)

    def check_observable(self, frame: Frame) -> None:
        """Raise :class:`TooFewPointsError` where :meth:`observe` would, at the cost of the back-projection alone."""
        workspace_points(frame, self.workspace, MIN_POINTS, self.camera_from_bin, self.config.floor_band_m)

    def workspace_mask(self, frame: Frame) -> np.ndarray:
        """The (H, W) mask of ``frame``'s pixels that this model observes (before any decimation): the workspace,
        and what touches it up to ``floor_band_m`` beyond its floor face."""
        return workspace_mask(frame, self.workspace, self.camera_from_bin, self.config.floor_band_m)

    def observed_region(self, frame: Frame) -> tuple[slice, slice]:
        """The rows and columns of ``frame`` that can see the workspace: all that is observed of it."""
        return workspace_image_region(frame.K, frame.depth_m.shape, self.workspace, self.camera_from_bin)

    def decimation(self, frame: Frame) -> int:
        """The whole factor by which ``frame``'s observed region is decimated (1 for a region that fits)."""
        columns = self.observed_region(frame)[1]
        return decimation_factor(columns.stop - columns.start, self.config.max_observed_width_px)

    def observed_frame(self, frame: Frame) -> Frame:
        """The frame that :meth:`observe` sees: the region of ``frame`` that can see the workspace, decimated
        where it is wider than ``max_observed_width_px``, its ground truth with it. An observation's pixels
        index this frame's images."""
        return decimate_frame(crop_frame(frame, *self.observed_region(frame)), self.decimation(frame))

    def observe(self, frame: Frame, seeds: np.ndarray | None = None) -> Observation:
        """The observation of ``frame``'s region that can see the workspace, decimated first where it is wider
        than ``max_observed_width_px``. A per-seed model may be given its ``seeds`` (labels 1..k, 0 for
        none, one per observed point, as the observation's points come) in place of its own: to score the
        poses that it fits to known segments."""
        if seeds is not None and not self.per_seed:
            raise ValueError("seeds given to a whole_image model, which has none")
        config = self.config
        seed_instances = (AUTO if self.counts_parts else self.instances) if self.per_seed else None
        return observe(
            self.observed_frame(frame), self.workspace, self.normalization, config.input_size_px,
            seed_instances, config.seed_jump_px, config.seed_fragment_fraction, self.part_size_m,
            config.align_crops, camera_from_bin=self.camera_from_bin, floor_band_m=config.floor_band_m, seeds=seeds,
        )

    def frame_part_sizes_m(self, frame: Frame) -> np.ndarray:
        """The sizes (k, 4) in metres of the whole parts in one frame: its seeds' regions where they number exactly N."""
        config = self.config
        return whole_part_sizes_m(
            self.observed_frame(frame), self.workspace, self.instances, config.seed_jump_px, config.seed_fragment_fraction,
            self.camera_from_bin, config.floor_band_m,
        )

    def measure_part_size(self, frames: Iterable[Frame]) -> PartSize | None:
        """The part's size in metres, from the frames where the seeds find N whole parts; None from too few."""
        sizes = [self.frame_part_sizes_m(f) for f in frames]
        return part_size(np.concatenate(sizes)) if sizes else None

    @torch.no_grad()
    def fused_model_m(self, frames: Iterable[Frame], voxel_m: float = 0.0015, min_views: int = 3) -> np.ndarray:
        """The part's model in metres fused from ``frames``: each instance's points brought into the model's
        frame by its predicted pose, kept where ``min_views`` views agree (:mod:`.fusion`)."""
        views = []
        for frame in frames:
            prediction = self.predict(frame)
            points_m = self.normalization.to_metres(prediction.observation.points)
            views += views_in_model_frame(points_m, prediction.point_labels, prediction.poses)
        return fuse_views(views, voxel_m, min_views)

    def forward(self, observations: list[Observation]) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotations (B, N, 3, 3) and translations (B, N, 3), model units, of B observed frames."""
        device = self.object_model.points.device
        if not self.per_seed:
            images = torch.from_numpy(np.stack([o.image for o in observations]))[:, None].to(device)
            return self.net(images)
        crops = torch.from_numpy(np.concatenate([o.crops for o in observations]))[:, None].to(device)
        angles = torch.from_numpy(np.concatenate([o.angles for o in observations])).to(device)
        rotations, offsets = seed_poses(self.net, crops, angles)
        centres = torch.from_numpy(np.stack([o.centres for o in observations])).to(device)
        shape = (len(observations), len(observations[0].centres))
        return rotations.view(*shape, 3, 3), offsets.view(*shape, 3) + centres

    @torch.no_grad()
    def predict(self, frame: Frame, observation: Observation | None = None, render_scene: bool = False) -> Prediction:
        """Poses and segments for one frame.

        The segments come from the label transfer (each point takes the instance of its nearest visible
        rendered point), or with ``segmentation: seeds`` from the seeds, and then the scene is rendered
        only when ``render_scene`` asks for its visible points (``Prediction.visible_points``).
        """
        obs = observation or self.observe(frame)
        if obs.centres is not None and len(obs.centres) == 0:
            # A counted bin with no part in it: an empty bin is an answer, not an error.
            return Prediction(
                np.zeros((0, 4, 4)), np.zeros(len(obs.points), np.uint16), np.zeros(frame.depth_m.shape, np.uint16), obs, None, None, np.zeros(0)
            )
        device = self.object_model.points.device
        rotations, translations = self([obs])
        model = self.object_model()
        transfer = self.config.segmentation == "transfer"
        visible_points = visible_ids = None
        if transfer or render_scene:
            signs = None
            if self.config.rotation_channels == 2:
                # The channel choice needs only a sample of the observed cloud, as the loss does in training.
                sample = subsample(obs.points, self.config.observed_points, np.random.default_rng(0))
                observed = torch.from_numpy(obs.points[sample])[None].to(device)
                signs = best_channels(observed, model, rotations, translations, self.normalization.camera, self.config.hpr_exponent)
            scene = render(model, rotations, translations, signs)
            visible = visible_scene(scene, self.normalization.camera, self.config.hpr_exponent)[0].cpu().numpy()
            visible_points, visible_ids = scene[0].cpu().numpy()[visible], instance_ids(rotations.shape[1], len(model))[visible]
        point_labels = transfer_labels(obs.points, visible_points, visible_ids) if transfer else obs.seeds
        if transfer and obs.seeds is not None:
            # What the seeds found to be no part stays none: the rendered parts would claim it.
            point_labels = np.where(obs.seeds > 0, point_labels, 0)
        poses = np.tile(np.eye(4), (rotations.shape[1], 1, 1))
        # Model units to metres: the rotation is unchanged, the translation rescales.
        poses[:, :3, :3] = rotations[0].cpu().numpy()
        poses[:, :3, 3] = self.normalization.to_metres(translations[0].cpu().numpy())
        poses, confidences = self._checked_poses(frame, obs, point_labels, poses)
        labels = label_image(obs.shape, obs.pixels, point_labels)
        if obs.shape != frame.depth_m.shape:
            rows, cols = self.observed_region(frame)
            full = np.zeros(frame.depth_m.shape, dtype=labels.dtype)
            factor = self.decimation(frame)
            if factor == 1:  # the region itself was observed: its labels are the frame's there
                full[rows, cols] = labels
            else:
                region = crop_frame(frame, rows, cols)
                full[rows, cols] = upsampled_labels(labels, factor, region.depth_m.shape, self.workspace_mask(region))
            labels = full
        return Prediction(poses, point_labels.astype(np.uint16), labels, obs, visible_points, visible_ids, confidences)

    def _checked_poses(
        self, frame: Frame, obs: Observation, point_labels: np.ndarray, poses: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The poses, refined against the learned model where ``refine`` asks, and each one's confidence
        (:mod:`.refine`); an instance with too few points keeps its pose, with confidence 0."""
        config = self.config
        model_m = self.model_points_m()
        spacing_m = model_spacing_m(model_m) if config.refine == "icp" else None
        floor = floor_plane(self.workspace, self.camera_from_bin)
        points_m = self.normalization.to_metres(obs.points)
        confidences = np.zeros(len(poses))
        for i in range(len(poses)):
            segment_m = points_m[point_labels == i + 1]
            if len(segment_m) < MIN_SEGMENT_POINTS:
                continue
            if config.refine == "icp":
                checked = refine_pose(
                    segment_m, model_m, poses[i], frame.depth_m, frame.K, config.refine_starts, config.refine_iterations,
                    config.refine_inlier_m, spacing_m, floor,
                )
            else:
                checked = score_pose(segment_m, model_m, poses[i], frame.depth_m, frame.K, config.refine_inlier_m, floor=floor)
            poses[i], confidences[i] = checked.pose, checked.confidence
        return poses, confidences

    def model_points_m(self) -> np.ndarray:
        """The learned model in metres, in its own frame (scaled, not shifted)."""
        return self.object_model.points.detach().cpu().numpy().astype(np.float64) * self.normalization.scale_m

    def metadata(self) -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
            "instances": self.instances,
            "workspace": self.workspace.ravel().tolist(),
            "bin_pose": None if self.camera_from_bin is None else format_bin_pose(self.camera_from_bin),
            "normalization": self.normalization.to_dict(),
            "model": dataclasses.asdict(self.config),
            "part_size_m": dataclasses.asdict(self.part_size_m) if self.part_size_m else None,
            "model_points_m": self.model_points_m().round(7).tolist(),
        }

    @classmethod
    def from_metadata(cls, metadata: dict) -> BinPerception:
        config = build_dataclass(ModelConfig, metadata["model"], "model")
        bin_pose = metadata.get("bin_pose")
        perception = cls(int(metadata["instances"]), np.asarray(metadata["workspace"]), config,
                         camera_from_bin=None if bin_pose is None else parse_bin_pose(bin_pose))
        # The workspace may have been changed after training; the units of the model may not.
        if "normalization" in metadata:
            perception.normalization = Normalization.from_dict(metadata["normalization"])
        if metadata.get("part_size_m"):
            size = metadata["part_size_m"]
            perception.part_size_m = PartSize(float(size["extent"]), tuple(float(s) for s in size["box"]))
        elif metadata.get("part_extent_m"):
            # Checkpoints from before the box measured only the extent: a cube of it, so that the seeds'
            # shape tests act only on a region that spreads wider than the whole extent.
            extent = float(metadata["part_extent_m"])
            perception.part_size_m = PartSize(extent, (extent, extent, extent))
        return perception


def _bin_pose(camera_from_bin: np.ndarray | None) -> np.ndarray | None:
    """A (4, 4) bin frame, or None for the camera's own (the identity too: it crops alike, without the turn)."""
    if camera_from_bin is None:
        return None
    camera_from_bin = np.asarray(camera_from_bin, dtype=np.float64)
    if camera_from_bin.shape != (4, 4):
        raise ValueError(f"camera_from_bin: expected a (4, 4) transform, got shape {camera_from_bin.shape}")
    return None if np.allclose(camera_from_bin, np.eye(4), atol=1e-9) else camera_from_bin


def save_checkpoint(path: str | os.PathLike, perception: BinPerception, extra_state: dict | None = None, extra_metadata: dict | None = None) -> None:
    """Write ``path`` (weights, optimiser state) and ``path.json`` beside it, each atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"net": perception.net.state_dict(), "object_model": perception.object_model.state_dict(), **(extra_state or {})}
    with replacing(path) as tmp:
        torch.save(state, tmp)
    write_text(sidecar_path(path), json.dumps({**perception.metadata(), **(extra_metadata or {})}, indent=1))


def sidecar_path(path: str | os.PathLike) -> Path:
    return Path(path).with_suffix(".json")


def load_checkpoint(path: str | os.PathLike, map_location: str = "cpu") -> tuple[BinPerception, dict, dict]:
    """The model of a checkpoint, its full state dict (optimiser and all) and its JSON metadata."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: no such file")
    sidecar = sidecar_path(path)
    if not sidecar.is_file():
        raise CheckpointError(f"checkpoint {path}: its sidecar {sidecar.name} is missing")
    try:
        metadata = json.loads(sidecar.read_text())
        perception = BinPerception.from_metadata(metadata)
        state = torch.load(path, map_location=map_location, weights_only=True)
        perception.net.load_state_dict(state["net"])
        perception.object_model.load_state_dict(state["object_model"])
    except (KeyError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"checkpoint {path}: {error}") from None
    return perception, state, metadata
