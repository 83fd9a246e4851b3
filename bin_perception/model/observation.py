"""From a depth frame to what the model sees: the observed cloud and the network's input image.

Normalisation. Points are mapped to model units by one similarity fixed per
workspace, never per image, so that one learned model fits every frame:
p_model = (p_m - centre_m) / scale_m, with the centre of the workspace box and
half its largest side as the scale. The parts then lie within [-1, 1]^3. The
network's input is the depth image in the same units: (centre_z - depth) /
scale inside the workspace (nearer is larger), 0 elsewhere and where invalid,
resized to the input size with area averaging. No ground truth is involved.

The per-seed method (see :mod:`bin_perception.model.seeds`) also cuts one crop
per seed: the seed's pixels in a square around it, their height relative to
the seed's centroid, resized to the input size. Its network sees one part at
a time and predicts the part's pose relative to that centroid. With
``align_crops``, each crop is first turned about the seed's centroid so that the
seed's long axis runs along the image rows, pointing to its heavier tail: the
network then meets every part at one in-plane angle (up to the tail's sign on
a symmetric silhouette), and the angle is given back to the pose
(:func:`bin_perception.model.network.seed_poses`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
import torch
from scipy import ndimage

from ..config import AUTO
from ..frame import Frame
from ..geometry import backproject, floor_side_extended, in_workspace
from .seeds import PartSize, seed_labels, whole_part_sizes


@dataclass(frozen=True)
class Normalization:
    centre_m: np.ndarray  # (3,)
    scale_m: float

    @classmethod
    def from_workspace(cls, workspace: np.ndarray, camera_from_bin: np.ndarray | None = None) -> Normalization:
        """The box's centre in the camera frame, and half its largest side."""
        workspace = np.asarray(workspace, dtype=np.float64)
        centre_m = workspace.mean(axis=0)
        if camera_from_bin is not None:
            centre_m = camera_from_bin[:3, :3] @ centre_m + camera_from_bin[:3, 3]
        return cls(centre_m, float((workspace[1] - workspace[0]).max() / 2))

    def to_model(self, points_m: np.ndarray) -> np.ndarray:
        return ((points_m - self.centre_m) / self.scale_m).astype(np.float32)

    def to_metres(self, points: np.ndarray) -> np.ndarray:
        return np.asarray(points, dtype=np.float64) * self.scale_m + self.centre_m

    @property
    def camera(self) -> np.ndarray:
        """The camera's optical centre in model units."""
        return (-self.centre_m / self.scale_m).astype(np.float32)

    def to_dict(self) -> dict:
        return {"centre_m": [float(v) for v in self.centre_m], "scale_m": self.scale_m}

    @classmethod
    def from_dict(cls, values: dict) -> Normalization:
        return cls(np.asarray(values["centre_m"], dtype=np.float64), float(values["scale_m"]))


# Fewer valid points than this in the workspace is not a bin of parts.
MIN_POINTS = 32


@dataclass(frozen=True)
class Observation:
    """The parts' points of one frame, in model units, and the pixels they came from."""

    points: np.ndarray  # (n, 3) float32, model units
    pixels: np.ndarray  # (n,) flat pixel indices into the depth image
    image: np.ndarray  # (S, S) float32, the network's input
    shape: tuple[int, int]  # the depth image's (H, W)
    seeds: np.ndarray | None = None  # (n,) seed label 1..N of each point, 0 for none (per_seed method)
    crops: np.ndarray | None = None  # (N, S, S) float32, one input per seed
    centres: np.ndarray | None = None  # (N, 3) float32, each seed's centroid, model units
    angles: np.ndarray | None = None  # (N,) float32 radians, each crop's turn about the optical axis (0 unaligned)


class TooFewPointsError(ValueError):
    """A frame whose workspace holds too few valid points to be a bin of parts."""


def observe(
    frame: Frame,
    workspace: np.ndarray,
    normalization: Normalization,
    input_size_px: int,
    seed_instances: int | Literal["auto"] | None = None,
    seed_jump_px: float = 1.5,
    seed_fragment_fraction: float = 0.25,
    seed_part_size_m: PartSize | None = None,
    align_crops: bool = False,
    min_points: int = MIN_POINTS,
    camera_from_bin: np.ndarray | None = None,
    floor_band_m: float = 0.0,
    seeds: np.ndarray | None = None,
) -> Observation:
    """Back-project a frame, keep the workspace, normalise, and make the network's input.

    With ``seed_instances``, also seed that many instances and cut their crops (``"auto"``: as many as the
    seeds count, which needs ``seed_part_size_m``); with
    ``seed_part_size_m`` too, the seeds go by the part's shape and rejoin the pieces of occluded parts.
    With ``camera_from_bin``, the workspace box is in the bin's frame (:func:`~bin_perception.geometry.in_workspace`);
    ``floor_band_m`` keeps what touches it that far beyond its floor face (:func:`workspace_mask`). Given
    ``seeds`` (labels 1..k, 0 for none, one per workspace point in row-major order), the crops are cut from
    them instead.
    """
    inside, points_m = workspace_points(frame, workspace, min_points, camera_from_bin, floor_band_m)
    pixels = np.flatnonzero(inside)
    points = normalization.to_model(points_m)
    height_m = np.where(inside, normalization.centre_m[2] - frame.depth_m, 0.0) / normalization.scale_m
    image = _resized(height_m, input_size_px)
    if seeds is not None:
        seeds = np.asarray(seeds, dtype=np.int64)
        present = np.unique(seeds[seeds > 0])
        if seeds.shape != (len(points),) or not np.array_equal(present, np.arange(1, len(present) + 1)) or len(present) == 0:
            raise ValueError(f"seeds: expected labels 1..k, each given, for the {len(points)} workspace points")
        seed_instances = len(present)
    elif seed_instances is None:
        return Observation(points, pixels, image, frame.depth_m.shape)
    else:
        part_size = None if seed_part_size_m is None else seed_part_size_m.scaled(1.0 / normalization.scale_m)
        seeds = seed_labels(
            frame.depth_m, inside, points, float(frame.K[0, 0]), None if seed_instances == AUTO else seed_instances,
            seed_jump_px, seed_fragment_fraction, part_size=part_size, unit_m=normalization.scale_m,
        )
        seed_instances = int(seeds.max())
    centres = np.zeros((seed_instances, 3), dtype=np.float32)
    for i in range(seed_instances):
        centres[i] = points[seeds == i + 1].mean(axis=0)
    rows, cols = np.divmod(pixels, frame.depth_m.shape[1])
    crops, angles = [], []
    for i in range(1, seed_instances + 1):
        own_rows, own_cols, base = rows[seeds == i], cols[seeds == i], -centres[i - 1, 2]
        if align_crops:
            angles.append(_long_axis_angle(own_rows, own_cols))
            crops.append(_turned_crop(height_m, own_rows, own_cols, base, angles[-1], input_size_px))
        else:
            angles.append(0.0)
            crops.append(_crop(height_m, own_rows, own_cols, base, input_size_px))
    crops, angles = _stacked(crops, input_size_px), np.asarray(angles, dtype=np.float32)
    return Observation(points, pixels, image, frame.depth_m.shape, seeds, crops, centres, angles)


def whole_part_sizes_m(
    frame: Frame,
    workspace: np.ndarray,
    instances: int,
    seed_jump_px: float = 1.5,
    seed_fragment_fraction: float = 0.25,
    camera_from_bin: np.ndarray | None = None,
    floor_band_m: float = 0.0,
) -> np.ndarray:
    """The sizes (k, 4) in metres of the frame's whole visible parts, where its seeds' regions number exactly N
    (:func:`bin_perception.model.seeds.whole_part_sizes`); none for a frame with too few points."""
    try:
        inside, points_m = workspace_points(frame, workspace, instances, camera_from_bin, floor_band_m)
    except TooFewPointsError:
        return np.empty((0, 4))
    return whole_part_sizes(frame.depth_m, inside, points_m, float(frame.K[0, 0]), instances, seed_jump_px, seed_fragment_fraction)


def _inside(points_m: np.ndarray, workspace: np.ndarray, camera_from_bin: np.ndarray | None, floor_band_m: float) -> np.ndarray:
    """The mask of :func:`workspace_mask`, of back-projected ``points_m`` (H, W, 3)."""
    if floor_band_m <= 0:
        return in_workspace(points_m, workspace, camera_from_bin)
    # Hysteresis, as an edge detector keeps its weak edges: the box's clearance over the floor is the floor's
    # noise, and a thin part's top may stand within it. Beyond the floor face, only what touches the surfaces
    # inside the box is kept, never the floor's own noise, which stays under the band.
    if camera_from_bin is not None:
        points_m = (points_m - camera_from_bin[:3, 3]) @ camera_from_bin[:3, :3]
    near = in_workspace(points_m, floor_side_extended(workspace, floor_band_m, camera_from_bin))
    with np.errstate(invalid="ignore"):
        inside = near & (points_m[..., 2] >= workspace[0, 2]) & (points_m[..., 2] <= workspace[1, 2])
    if near.sum() == inside.sum():
        return inside
    regions, count = ndimage.label(near, structure=np.ones((3, 3), dtype=bool))
    reached = np.zeros(count + 1, dtype=bool)
    reached[regions[inside]] = True
    return reached[regions] & near


def workspace_mask(
    frame: Frame, workspace: np.ndarray, camera_from_bin: np.ndarray | None = None, floor_band_m: float = 0.0
) -> np.ndarray:
    """The (H, W) mask of the frame's valid pixels inside the workspace, and of those up to ``floor_band_m``
    beyond its floor face that touch them in the image, through one another."""
    return _inside(backproject(frame.depth_m, frame.K), workspace, camera_from_bin, floor_band_m)


def workspace_points(
    frame: Frame,
    workspace: np.ndarray,
    min_points: int,
    camera_from_bin: np.ndarray | None = None,
    floor_band_m: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """The (H, W) :func:`workspace_mask`, and its points (n, 3) in metres, row-major."""
    points_m = backproject(frame.depth_m, frame.K)
    inside = _inside(points_m, workspace, camera_from_bin, floor_band_m)
    count = int(inside.sum())
    if count < min_points:
        raise TooFewPointsError(f"frame at stamp {frame.stamp_ns}: {count} valid points in the workspace, need {min_points}")
    return inside, points_m[inside]


def _resized(image: np.ndarray, size_px: int) -> np.ndarray:
    return torch.nn.functional.interpolate(
        torch.from_numpy(image.astype(np.float32))[None, None], size=(size_px, size_px), mode="area"
    )[0, 0].numpy()


def _stacked(crops: list[np.ndarray], size_px: int) -> np.ndarray:
    """The crops as one array (k, size, size), k = 0 for a bin with no part."""
    return np.stack(crops) if crops else np.zeros((0, size_px, size_px), dtype=np.float32)


def _crop(height: np.ndarray, rows: np.ndarray, cols: np.ndarray, base_height: float, size_px: int) -> np.ndarray:
    """The seed's pixels (others zero) in the square around them, heights relative to ``base_height``."""
    half = (max(np.ptp(rows), np.ptp(cols)) + 1) // 2 + 2
    centre_row, centre_col = (rows.min() + rows.max()) // 2, (cols.min() + cols.max()) // 2
    canvas = np.zeros((2 * half, 2 * half), dtype=np.float32)
    canvas[rows - centre_row + half, cols - centre_col + half] = height[rows, cols] - base_height
    return _resized(canvas, size_px)


def _long_axis_angle(rows: np.ndarray, cols: np.ndarray) -> float:
    """The direction of the pixels' long axis, radians from +u towards +v, pointing to their heavier tail."""
    offsets = np.stack([cols - cols.mean(), rows - rows.mean()])
    axis = np.linalg.eigh(offsets @ offsets.T)[1][:, 1]
    if np.mean((axis @ offsets) ** 3) < 0:
        axis = -axis
    return float(np.arctan2(axis[1], axis[0]))


def _turned_crop(height: np.ndarray, rows: np.ndarray, cols: np.ndarray, base_height: float, angle: float, size_px: int) -> np.ndarray:
    """The seed's pixels turned by -``angle`` about their centroid (others zero), heights relative to ``base_height``."""
    centre_row, centre_col = rows.mean(), cols.mean()
    half = int(np.ceil(np.hypot(rows - centre_row, cols - centre_col).max())) + 2
    # The seed's own box is all the warp reads: the pixels outside it are not the seed's.
    top, left = rows.min(), cols.min()
    seed = np.zeros((rows.max() - top + 1, cols.max() - left + 1), dtype=np.float32)
    seed[rows - top, cols - left] = height[rows, cols] - base_height
    # Canvas pixel (half + u, half + v) takes the seed pixel that the turn by +angle brings it to, nearest neighbour.
    cos, sin = np.cos(angle), np.sin(angle)
    canvas_to_seed = np.array(
        [
            [cos, -sin, centre_col - left - half * (cos - sin)],
            [sin, cos, centre_row - top - half * (sin + cos)],
        ]
    )
    canvas = cv2.warpAffine(
        seed, canvas_to_seed, (2 * half, 2 * half), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT
    )
    return _resized(canvas, size_px)


def subsample(points: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` indices into ``points``: without replacement when there are enough, else with."""
    return rng.choice(len(points), size=count, replace=len(points) < count)
