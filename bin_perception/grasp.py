"""Where a suction cup can take a part: a contact point on the part's seen surface, the approach along the
surface's normal there, and whether the surface under the cup would seal.

A cup seals on a surface that is flat across its whole lip. Three checks say so, each from the points
that the camera saw of the one instance:

- **flatness**: the points under the cup lie within ``max_flatness_m`` (RMS) of their own plane. A
  root mean square, not the largest distance, because a real camera's depth is noisy and quantised
  (a millimetre at 0.6 m): a flat face measures a few tenths of a millimetre, an edge or a corner under
  the cup millimetres;
- **support**: the cup's lip rests on the part all round, not half over the part's edge or a hole. The
  ring under the lip is cut into sectors, and each must hold a point of the instance;
- **tilt**: the approach is within ``max_tilt_deg`` of the camera's viewing axis, since the arm comes in
  from the camera's side of the bin.

Among the contact points that pass, the one nearest the instance's centroid wins: a part held near its
centre of mass swings least when lifted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

# Sectors of the ring under the cup's lip, which must each hold a point of the instance.
_LIP_SECTORS = 12
# The lip's ring, as fractions of the cup's radius.
_LIP_INNER = 0.6
# Contact points tried per instance, spread over its points; more buy little on a part a few cups wide.
_CANDIDATES = 256


@dataclass(frozen=True)
class SuctionGrasp:
    """One cup placement on one instance, in the camera frame."""

    point_m: np.ndarray  # (3,) the centre of the cup's contact
    approach: np.ndarray  # (3,) unit vector along which the cup moves onto the surface
    flatness_m: float  # the RMS distance of the points under the cup from their plane
    support: float  # the share of the lip's sectors that rest on the instance
    tilt_deg: float  # the approach's angle from the camera's viewing axis (+z)
    seals: bool  # flat, supported all round and within the tilt


def _plane(points_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The least-squares plane of ``points_m``: a point on it and its unit normal, facing the camera."""
    centre = points_m.mean(axis=0)
    normal = np.linalg.svd(points_m - centre, full_matrices=False)[2][-1]
    # The camera sits at the origin and looks along +z: the seen side of a surface faces it.
    return centre, normal if normal @ centre < 0 else -normal


def _assess(points_m: np.ndarray, tree: cKDTree, contact_m: np.ndarray, radius_m: float, max_flatness_m: float, max_tilt_deg: float) -> SuctionGrasp:
    under = points_m[tree.query_ball_point(contact_m, radius_m)]
    if len(under) < 3:
        return SuctionGrasp(contact_m, np.array([0.0, 0.0, 1.0]), np.inf, 0.0, 90.0, False)
    centre, normal = _plane(under)
    flatness_m = float(np.sqrt(np.mean(((under - centre) @ normal) ** 2)))
    # The lip's sectors, in the plane: two axes perpendicular to the normal.
    u = np.cross(normal, [1.0, 0.0, 0.0] if abs(normal[0]) < 0.9 else [0.0, 1.0, 0.0])
    u /= np.linalg.norm(u)
    v = np.cross(normal, u)
    offsets = under - contact_m
    in_plane = np.stack([offsets @ u, offsets @ v], axis=1)
    reach = np.linalg.norm(in_plane, axis=1)
    lip = in_plane[reach >= _LIP_INNER * radius_m]
    sectors = np.floor((np.arctan2(lip[:, 1], lip[:, 0]) + np.pi) / (2 * np.pi) * _LIP_SECTORS).astype(int) % _LIP_SECTORS
    support = len(np.unique(sectors)) / _LIP_SECTORS
    approach = -normal
    tilt_deg = float(np.degrees(np.arccos(np.clip(approach[2], -1.0, 1.0))))
    seals = flatness_m <= max_flatness_m and support == 1.0 and tilt_deg <= max_tilt_deg
    return SuctionGrasp(contact_m, approach, flatness_m, support, tilt_deg, seals)


def suction_grasp(
    points_m: np.ndarray, radius_m: float, max_flatness_m: float, max_tilt_deg: float = 45.0, seed: int = 0
) -> SuctionGrasp | None:
    """The best cup placement on one instance's seen points (n, 3), camera frame, metres: of those that
    seal, the nearest the points' centroid; None where no placement seals."""
    points_m = np.asarray(points_m, dtype=np.float64)
    if points_m.ndim != 2 or points_m.shape[1] != 3:
        raise ValueError(f"points_m: expected an (n, 3) array, got shape {points_m.shape}")
    if radius_m <= 0 or max_flatness_m <= 0:
        raise ValueError(f"radius_m {radius_m} and max_flatness_m {max_flatness_m} must be positive")
    if len(points_m) < 3:
        return None
    tree = cKDTree(points_m)
    rng = np.random.default_rng(seed)
    centroid = points_m.mean(axis=0)
    candidates = points_m if len(points_m) <= _CANDIDATES else points_m[rng.choice(len(points_m), _CANDIDATES, replace=False)]
    order = np.argsort(np.linalg.norm(candidates - centroid, axis=1))
    for contact_m in candidates[order]:
        grasp = _assess(points_m, tree, contact_m, radius_m, max_flatness_m, max_tilt_deg)
        if grasp.seals:
            return grasp
    return None


def assess_suction(points_m: np.ndarray, contact_m: np.ndarray, radius_m: float, max_flatness_m: float, max_tilt_deg: float = 45.0) -> SuctionGrasp:
    """The cup placed at ``contact_m`` on the instance's seen points (n, 3): its approach and its checks."""
    points_m = np.asarray(points_m, dtype=np.float64)
    return _assess(points_m, cKDTree(points_m), np.asarray(contact_m, dtype=np.float64), radius_m, max_flatness_m, max_tilt_deg)


def grasp_pose(grasp: SuctionGrasp) -> np.ndarray:
    """The cup's pose (4, 4) in the camera frame: at the contact point, its z axis along the approach (into
    the surface), as a tool frame's z axis points; its x axis the camera's x made perpendicular to it."""
    z = grasp.approach / np.linalg.norm(grasp.approach)
    x = np.array([1.0, 0.0, 0.0]) if abs(z[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    x = x - (x @ z) * z
    x /= np.linalg.norm(x)
    pose = np.eye(4)
    pose[:3, :3] = np.column_stack([x, np.cross(z, x), z])
    pose[:3, 3] = grasp.point_m
    return pose
