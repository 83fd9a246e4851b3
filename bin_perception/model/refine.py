"""A part's pose refined against its learned model, and how far to trust it.

The network's pose of a part is often a whole turn off: it puts whichever face is up on the model's top
(docs/METHOD.md). So each instance's pose is searched from several starts: the network's own, then that
pose turned by the half turns about the model's principal axes (the flips that swap a face for its
opposite), then the other axis-aligned turns of the principal frame, as many as ``starts`` asks.
Each start is refined by ICP (Open3D's, point to plane) of the instance's observed points against the
learned model, and scored on two counts:

- **fit**: the fraction of the instance's points that the posed model explains (within ``inlier_m``);
- **free space**: the fraction of the posed model's points that stand in front of what the camera
  measured at their pixel, by more than ``inlier_m``. The camera saw through that space, so no part can
  fill it: a flipped part sticks out into it where the true one does not;
- **the floor**: the fraction of the posed model's points beyond the bin's floor (the workspace's floor
  face, given as a plane). A part rests on the floor or on other parts and cannot reach through it. The
  camera cannot see under a part, so a turn that hides a part's other half in the floor violates no free
  space (an L-bracket lying on one leg fits the same points with its other leg up, in the free space, or
  down, in the floor).

The start with the best score, its fit less the free space violated and the share under the floor, wins,
where it beats the network's own start by a margin. The confidence of the pose is that score, clipped to
[0, 1]: what ranks one instance's poses also ranks the instances of a frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import open3d as o3d
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from ..geometry import project_to_pixels


def _start_order(turns: np.ndarray) -> np.ndarray:
    """The turns ordered as starts: the identity, then the half turns about each axis, then the rest by angle."""
    identity = np.all(np.isclose(turns, np.eye(3)), axis=(1, 2))
    half_turn_about_axis = np.all(np.isclose(np.abs(turns), np.eye(3)), axis=(1, 2)) & ~identity
    rank = np.where(identity, 0, np.where(half_turn_about_axis, 1, 2))
    return turns[np.lexsort((Rotation.from_matrix(turns).magnitude().round(6), rank))]


# Another start replaces the network's own only where its score is higher by this much. A part whose
# faces nearly copy each other (a bracket's inner and outer sides, 3 mm apart) fits a flip almost as closely
# as the truth, and between near ties the network's pose, learned from every view, is the better guess.
_NETWORK_MARGIN = 0.05
# A workspace's floor face sits just above the floor's noise (3 mm in the real cell): a model point counts as
# under the floor beyond the face by this much and the inlier distance.
_FLOOR_CLEARANCE_M = 0.003
# The 24 turns that map a frame's axes onto its axes, in the order they are tried.
START_TURNS = _start_order(Rotation.create_group("O").as_matrix())


@dataclass(frozen=True)
class RefinedPose:
    pose: np.ndarray  # (4, 4) camera_from_model, metres
    fit: float  # the fraction of the instance's points within the inlier distance of the posed model
    free_space_violation: float  # the fraction of the posed model's points the camera saw through
    start: int  # the start that won: 0 the network's pose, 1 to 3 its half turns, then the other turns
    under_floor: float = 0.0  # the fraction of the posed model's points under the bin's floor

    @property
    def score(self) -> float:
        return self.fit - self.free_space_violation - self.under_floor

    @property
    def confidence(self) -> float:
        return float(np.clip(self.score, 0.0, 1.0))


def principal_frame(points: np.ndarray) -> np.ndarray:
    """The (3, 3) rotation whose columns are the points' principal axes, longest first."""
    centred = points - points.mean(axis=0)
    axes = np.linalg.eigh(centred.T @ centred)[1][:, ::-1]
    if np.linalg.det(axes) < 0:
        axes[:, 2] *= -1
    return axes


def start_rotations(rotation: np.ndarray, model_points: np.ndarray, starts: int) -> np.ndarray:
    """``starts`` rotations (S, 3, 3) to search from: ``rotation`` itself, then it turned by the half turns
    about the model's principal axes, then by the other axis-aligned turns of that frame."""
    if not 1 <= starts <= len(START_TURNS):
        raise ValueError(f"starts {starts}: expected 1 to {len(START_TURNS)}")
    frame = principal_frame(model_points)
    # A turn of the model about its own principal axes, in the model's frame: frame @ turn @ frame.T.
    return rotation @ (frame @ START_TURNS[:starts] @ frame.T)


def free_space_violation(points_m: np.ndarray, depth_m: np.ndarray, K: np.ndarray, margin_m: float) -> float:
    """The fraction of ``points_m`` (camera frame) that project into the image nearer than the depth measured
    there by more than ``margin_m``: space the camera saw through. Points off the image or over invalid depth
    say nothing and are left out; none left says nothing either (0)."""
    seen, rows, cols = project_to_pixels(points_m, K, depth_m.shape)
    measured = depth_m[rows, cols]
    valid = np.isfinite(measured) & (measured > 0)
    if not valid.any():
        return 0.0
    return float((points_m[seen[valid], 2] < measured[valid] - margin_m).mean())


def under_floor(points_m: np.ndarray, floor: np.ndarray | None, margin_m: float) -> float:
    """The fraction of ``points_m`` (camera frame) beyond the ``floor`` plane (:func:`bin_perception.geometry.floor_plane`,
    the workspace's floor face) by more than ``margin_m`` and the face's clearance over the floor; 0 without a floor."""
    if floor is None or len(points_m) == 0:
        return 0.0
    return float((points_m @ floor[:3] + floor[3] < -(margin_m + _FLOOR_CLEARANCE_M)).mean())


def _cloud(points: np.ndarray) -> o3d.geometry.PointCloud:
    return o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.asarray(points, dtype=np.float64)))


def model_spacing_m(model_m: np.ndarray) -> float:
    """The mean distance from each model point to its nearest neighbour: how finely the model samples its surface."""
    return float(cKDTree(model_m).query(model_m, k=2)[0][:, 1].mean())


def score_pose(
    segment_m: np.ndarray,
    model_m: np.ndarray,
    pose: np.ndarray,
    depth_m: np.ndarray,
    K: np.ndarray,
    inlier_m: float = 0.002,
    start: int = 0,
    floor: np.ndarray | None = None,
) -> RefinedPose:
    """``pose`` (camera_from_model) of one instance, scored by its fit to the instance's points (those within
    ``inlier_m`` of the posed model), the free space it violates in ``depth_m`` and its share under the
    ``floor`` plane (none without one).

    The inlier distance is tight, below the model's own spacing on the larger parts: a lever turned end for
    end lies within a looser one of its own points, and only the tight one tells its boss from its bore (its
    poses correct at ADD(-S) 0.1 d: 0.71 ranked with the spacing added, 0.83 without). The score is lower on
    a coarsely sampled model, but every instance of a frame is scored against the same one.
    """
    posed_model_m = model_m @ pose[:3, :3].T + pose[:3, 3]
    fit = float((cKDTree(posed_model_m).query(segment_m)[0] < inlier_m).mean())
    return RefinedPose(pose, fit, free_space_violation(posed_model_m, depth_m, K, inlier_m), start, under_floor(posed_model_m, floor, inlier_m))


def refine_pose(
    segment_m: np.ndarray,
    model_m: np.ndarray,
    start_pose: np.ndarray,
    depth_m: np.ndarray,
    K: np.ndarray,
    starts: int = 4,
    iterations: int = 30,
    inlier_m: float = 0.002,
    spacing_m: float | None = None,
    floor: np.ndarray | None = None,
) -> RefinedPose:
    """The best pose of one instance among ``starts`` refined starts around ``start_pose``.

    Args:
        segment_m: (n, 3) the instance's observed points, camera frame, metres.
        model_m: (m, 3) the learned model, in its own frame, metres.
        start_pose: (4, 4) camera_from_model, the network's pose.
        depth_m, K: the depth image the segment came from, and its intrinsics, for the free-space count.
        starts: how many starts (1 to 24): the network's pose, its three half turns, then the other turns.
        iterations: ICP's iterations per start.
        inlier_m: the distance within which a point is explained, and beyond which free space is violated.
        spacing_m: the model's :func:`model_spacing_m`, where the caller has it already.
        floor: the bin's floor as a plane in the camera frame (:func:`bin_perception.geometry.floor_plane`).
    """
    if len(segment_m) < 3:
        raise ValueError(f"segment of {len(segment_m)} points: too few to refine a pose")
    model = _cloud(model_m)
    spacing_m = model_spacing_m(model_m) if spacing_m is None else spacing_m
    # The model's normals, for point-to-plane ICP, from the few neighbours its sampling gives a patch.
    model.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=4 * spacing_m, max_nn=20))
    # The camera samples a near part more densely than the model is sampled: ICP on the segment thinned to
    # the model's spacing costs a fraction and finds the same pose; the score counts every point.
    segment = _cloud(segment_m).voxel_down_sample(spacing_m)
    criteria = o3d.pipelines.registration.ICPConvergenceCriteria(max_iteration=iterations)
    estimation = o3d.pipelines.registration.TransformationEstimationPointToPlane()
    best = None
    for index, rotation in enumerate(start_rotations(start_pose[:3, :3], model_m, starts)):
        pose = start_pose.copy()
        pose[:3, :3] = rotation
        # The segment brought into the model's frame: ICP moves it onto the model, with a correspondence
        # distance that shrinks from the part's size to the inlier distance.
        model_from_camera = np.linalg.inv(pose)
        for distance_m in (4 * inlier_m + spacing_m, inlier_m + spacing_m):
            model_from_camera = o3d.pipelines.registration.registration_icp(
                segment, model, distance_m, model_from_camera, estimation, criteria
            ).transformation
        candidate = score_pose(segment_m, model_m, np.linalg.inv(model_from_camera), depth_m, K, inlier_m, index, floor)
        if best is None or candidate.score > best.score + (_NETWORK_MARGIN if best.start == 0 else 0.0):
            best = candidate
    return best
