"""Which part to pick next: a suction grasp and a pick score for every instance, and the instances in pick order.

The score asks what a bin-picking cell asks of a part before it sends the arm:

- can a cup seal on it (:func:`bin_perception.grasp.suction_grasps`), clear of the other parts? An
  instance without a grasp that seals scores 0;
- is its pose to be trusted (the pose's confidence)?
- does another part lie on it? The learned model, placed at the instance's pose, is projected into the
  depth image. Where its projection falls on another instance's pixels, and that instance's surface is
  nearer the camera than the model's, the other part covers this one. A covered part drags its neighbour
  when lifted, and its pose is the least certain;
- does the cup clear the bin's walls? Its least distance from the workspace's side faces on its way down
  the approach, in cup radii, up to one. A placement whose cup would strike a wall gives way to the next
  best that does not.

score = confidence x (1 - covered) x clearance, for an instance whose grasp seals. Equal scores go to the
higher part, as a person empties a bin from the top.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .config import GripperConfig
from .frame import Frame
from .geometry import project_to_pixels, transform_points
from .grasp import SuctionGrasp, suction_grasps

if TYPE_CHECKING:
    from .model.perception import Prediction

# A model point covered by another instance's surface lies this much behind it, beyond the depth's noise.
_COVER_MARGIN_M = 0.003


@dataclass(frozen=True)
class Pick:
    """One instance's grasp and how it ranks."""

    instance: int  # its label (1..N) in the label image, and its row (instance - 1) of the poses
    score: float  # in [0, 1]; 0: not to be picked now
    grasp: SuctionGrasp | None  # the best placement of the cup that seals; None where none does
    covered: float  # the share of its model's projection that another instance's nearer surface covers
    clearance: float  # the cup's least distance from the side walls on its way down, in cup radii, up to 1
    height_m: float  # the instance's top above the workspace's floor face


def _in_box_frame(points_m: np.ndarray, camera_from_bin: np.ndarray | None) -> np.ndarray:
    if camera_from_bin is None:
        return points_m
    return (points_m - camera_from_bin[:3, 3]) @ camera_from_bin[:3, :3]


def covered_share(
    model_points_m: np.ndarray, poses: np.ndarray, depth_m: np.ndarray, labels: np.ndarray, K: np.ndarray
) -> np.ndarray:
    """For each instance (N,), the share of its model points (at its pose, projected into the image) whose
    pixel belongs to another instance with a surface nearer than the point by the margin."""
    shares = np.zeros(len(poses))
    for row, pose in enumerate(poses):
        placed = transform_points(pose, model_points_m)
        seen, rows, cols = project_to_pixels(placed, K, depth_m.shape)
        if len(seen) == 0:
            continue
        owner = labels[rows, cols]
        with np.errstate(invalid="ignore"):
            nearer = depth_m[rows, cols] < placed[seen, 2] - _COVER_MARGIN_M
        shares[row] = float(np.mean((owner > 0) & (owner != row + 1) & nearer))
    return shares


def _wall_clearance(grasp: SuctionGrasp, workspace: np.ndarray, camera_from_bin: np.ndarray | None, radius_m: float) -> float:
    """The cup's least distance from the workspace's side faces on its way down its approach, from the box's
    top face to the contact, in cup radii, up to 1: 0 where it would strike a wall. A tilted approach near a
    wall passes over it at the top."""
    at = _in_box_frame(grasp.point_m[None], camera_from_bin)[0]
    down = grasp.approach if camera_from_bin is None else camera_from_bin[:3, :3].T @ grasp.approach
    # The top face: the box's z face nearer the camera (z min in the camera's frame, z max in the bin's).
    top_z = workspace[0, 2] if camera_from_bin is None else workspace[1, 2]
    travel_m = (at[2] - top_z) / down[2] if abs(down[2]) > 1e-9 else 0.0
    path = np.stack([at, at - max(travel_m, 0.0) * down])
    wall_m = np.min(np.concatenate([path[:, :2] - workspace[0, :2], workspace[1, :2] - path[:, :2]], axis=1))
    return float(np.clip(wall_m / radius_m, 0.0, 1.0))


def plan_picks(
    instance_points_m: list[np.ndarray],
    poses: np.ndarray,
    confidences: np.ndarray,
    model_points_m: np.ndarray,
    depth_m: np.ndarray,
    labels: np.ndarray,
    K: np.ndarray,
    workspace: np.ndarray,
    gripper: GripperConfig,
    camera_from_bin: np.ndarray | None = None,
) -> list[Pick]:
    """Every instance's :class:`Pick`, best first.

    ``instance_points_m``: each instance's observed points (n_i, 3), camera frame, in label order;
    ``poses`` (N, 4, 4) camera_from_model and ``confidences`` (N,) as the perception gives them;
    ``model_points_m`` (m, 3) the learned model; ``depth_m`` and ``labels`` (H, W) the frame's depth and
    the perception's label image; ``workspace`` (2, 3) the parts' box, in the frame of ``camera_from_bin``
    (the camera's without it), whose side faces stand for the bin's walls.
    """
    if not (len(instance_points_m) == len(poses) == len(confidences)):
        raise ValueError(f"plan_picks: {len(instance_points_m)} point sets, {len(poses)} poses and {len(confidences)} confidences must agree")
    workspace = np.asarray(workspace, dtype=np.float64).reshape(2, 3)
    covered = covered_share(model_points_m, poses, depth_m, labels, K)
    every_m = np.concatenate([np.asarray(p, dtype=np.float64).reshape(-1, 3) for p in instance_points_m]) if instance_points_m else np.zeros((0, 3))
    owner = np.repeat(np.arange(len(instance_points_m)), [len(p) for p in instance_points_m])
    picks = []
    for row, points_m in enumerate(instance_points_m):
        grasp, clearance = None, 0.0
        if len(points_m):
            # The other parts' points that a cup on this one could touch: within its box, grown by the cup.
            low, high = points_m.min(axis=0) - gripper.suction_radius_m, points_m.max(axis=0) + gripper.suction_radius_m
            near = (owner != row) & np.all((every_m >= low) & (every_m <= high), axis=1)
            grasps = suction_grasps(points_m, gripper.suction_radius_m, gripper.max_flatness_m, gripper.max_tilt_deg, others_m=every_m[near])
            # The best placement whose cup does not strike a wall on its way down: a slanted approach beside a
            # wall may have a placement on another face, slanted away from it.
            for candidate in grasps:
                clearance = _wall_clearance(candidate, workspace, camera_from_bin, gripper.suction_radius_m)
                if clearance > 0.0:
                    grasp = candidate
                    break
        in_box = _in_box_frame(np.asarray(points_m, dtype=np.float64).reshape(-1, 3), camera_from_bin)
        # The floor face is the box's z face away from the camera: the far one in the camera's frame, z = min
        # in the bin's (z up from its floor).
        if camera_from_bin is None:
            height_m = float(workspace[1, 2] - in_box[:, 2].min()) if len(in_box) else 0.0
        else:
            height_m = float(in_box[:, 2].max() - workspace[0, 2]) if len(in_box) else 0.0
        score = float(confidences[row]) * (1.0 - covered[row]) * clearance if grasp is not None else 0.0
        picks.append(Pick(row + 1, score, grasp, float(covered[row]), clearance, height_m))
    return sorted(picks, key=lambda pick: (-pick.score, -pick.height_m))


def prediction_picks(
    prediction: Prediction,
    points_m: np.ndarray,
    frame: Frame,
    model_points_m: np.ndarray,
    workspace: np.ndarray,
    gripper: GripperConfig,
    camera_from_bin: np.ndarray | None = None,
) -> list[Pick]:
    """:func:`plan_picks` of one perceived frame, as the node plans them: ``points_m`` are the prediction's
    observed points in metres, split by its point labels."""
    instance_points_m = [points_m[prediction.point_labels == i] for i in range(1, len(prediction.poses) + 1)]
    return plan_picks(
        instance_points_m, prediction.poses, prediction.confidences, model_points_m, frame.depth_m, prediction.labels, frame.K,
        workspace, gripper, camera_from_bin,
    )
