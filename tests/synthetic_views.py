"""Seed views of a part as the observation cuts them, from poses we choose: for tests that need the truth."""

from typing import NamedTuple

import numpy as np
import trimesh
from scipy.spatial.transform import Rotation

from bin_perception.frame import Frame
from bin_perception.model.observation import Normalization, observe
from bin_perception.sim.parts import load_part


class SyntheticViews(NamedTuple):
    points_m: list[np.ndarray]
    crops: np.ndarray
    angles: np.ndarray
    centres: np.ndarray
    poses: np.ndarray
    mesh: trimesh.Trimesh


K = np.array([[500.0, 0.0, 160.0], [0.0, 500.0, 120.0], [0.0, 0.0, 1.0]])
WORKSPACE = np.array([[-0.2, -0.15, 0.4], [0.2, 0.15, 0.68]])


def _depth_image(points_m: np.ndarray) -> np.ndarray:
    """A 320 x 240 depth image of dense surface points over a floor at 0.7 m (a z-buffer)."""
    depth = np.full((240, 320), 0.7)
    u = np.round(K[0, 0] * points_m[:, 0] / points_m[:, 2] + K[0, 2]).astype(int)
    v = np.round(K[1, 1] * points_m[:, 1] / points_m[:, 2] + K[1, 2]).astype(int)
    np.minimum.at(depth, (v, u), points_m[:, 2])
    return depth.astype(np.float32)


def resting_views(part: str, normals: list[list[float]], per_face: int, seed: int = 0, points: int = 300) -> SyntheticViews:
    """Views of ``part`` resting on each of the faces whose outward ``normals`` (part frame) point down,
    tilted up to 8 degrees, as the seeds see them: each view's points (``points``, metres) with the observation's
    own aligned crop, its turn and the seed's centroid (model units of ``WORKSPACE``), and the true poses
    (camera_from_part)."""
    rng = np.random.default_rng(seed)
    mesh = load_part(part).mesh
    surface = trimesh.sample.sample_surface(mesh, 40000, seed=seed)[0]
    normalization = Normalization.from_workspace(WORKSPACE)
    views, crops, angles, centres, poses = [], [], [], [], []
    for normal in normals:
        face_up = Rotation.align_vectors([[0, 0, -1]], [normal])[0]
        for _ in range(per_face):
            tilt = Rotation.from_rotvec(np.r_[rng.normal(size=2), 0] / np.sqrt(2) * np.radians(rng.uniform(0, 8)))
            pose = np.eye(4)
            pose[:3, :3] = (tilt * Rotation.from_euler("z", rng.uniform(0, 2 * np.pi)) * face_up).as_matrix()
            pose[:3, 3] = np.r_[rng.uniform(-0.05, 0.05, 2), 0.6]
            frame = Frame(_depth_image(surface @ pose[:3, :3].T + pose[:3, 3]), K, 0, "camera")
            observation = observe(frame, WORKSPACE, normalization, 64, seed_instances=1, align_crops=True)
            points_m = normalization.to_metres(observation.points)
            views.append(points_m[rng.choice(len(points_m), points, replace=False)] + rng.normal(0, 0.0003, (points, 3)))
            crops.append(observation.crops[0])
            angles.append(observation.angles[0])
            centres.append(observation.centres[0])
            poses.append(pose)
    return SyntheticViews(views, np.stack(crops), np.array(angles), np.stack(centres), np.stack(poses), mesh)


def housing_views(per_face: int, seed: int = 0) -> SyntheticViews:
    """The housing resting on each of its four large faces (:func:`resting_views`)."""
    return resting_views("housing", [[0, 0, 1], [0, 0, -1], [0, 1, 0], [0, -1, 0]], per_face, seed)


def lever_views(per_face: int, seed: int = 0) -> SyntheticViews:
    """The lever, a flat part whose two faces are each other's mirror image, resting on either (:func:`resting_views`)."""
    return resting_views("lever", [[0, 0, 1], [0, 0, -1]], per_face, seed)
