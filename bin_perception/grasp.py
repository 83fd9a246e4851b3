"""Where a suction cup can take a part: a contact point on the part's seen surface, the approach along the
surface's normal there, and whether the surface under the cup would seal.

A cup seals on a surface that is flat across its whole lip. Three checks say so, each from the points
that the camera saw of the one instance:

- **flatness**: the points under the cup lie within ``max_flatness_m`` (RMS) of their own plane. A
  root mean square, not the largest distance, because a real camera's depth is noisy and quantised
  (a millimetre at 0.6 m): a flat face measures a few tenths of a millimetre, an edge or a corner under
  the cup millimetres;
- **support**: the cup's face rests on the part all round and across, not half over the part's edge or
  over a bore. The disc under the cup is cut into its hub and two rings of sectors (the lip's and the one
  inside it), as many cells as the camera's sampling fills, and each must hold a point of the instance.
  The lip itself must too, with a pixel to spare: ``_LIP_SUPPORT`` points of the instance near each of
  ``_LIP_POINTS`` points of a circle a point spacing outside it, in the plane and along it. A sector alone
  lets the lip hang over an edge by four tenths of the radius, and one point may be a flying pixel;
- **tilt**: the approach is within ``max_tilt_deg`` of the camera's viewing axis, since the arm comes in
  from the camera's side of the bin. The approach is the surface's normal at the contact, from the points within
  ``_NORMAL_RADIUS_M`` of it however small the cup: a 2 mm cup over 1 mm pixels spans a dozen points, and one
  step of a millimetre's depth unit across them tilts their plane by 25°. Under a cup smaller than that radius
  the normal is the quadric's fitted to those points, not their plane's, since a face a small cup can take may
  be curved (a pin's flank).

Among the contact points that pass, the one nearest the instance's centroid whose approach is within
``_TILT_BAND_DEG`` of the camera's axis wins; where none is, the straightest approach, and of those within
the band of it the one nearest the centroid. A cup that comes straight down seals on the top of a cylinder
rather than its flank, and a part held near its centre of mass swings least.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

# Sectors of each ring under the cup, which must each hold a point of the instance.
_LIP_SECTORS = 12
# The lip's ring, the ring inside it and the hub inside that, as fractions of the cup's radius: a bore under
# the cup's middle leaks as surely as a lip over an edge (a bracket's 6 mm bore under a 16 mm cup).
_LIP_INNER = 0.6
_HUB = 0.3
# Points a cell under the cup expects at the camera's sampling, at the least, to be checked.
_POINTS_PER_CELL = 3
# Points on a circle round the lip, a point spacing out from it, that must each have a point of the instance
# within this many point spacings of it across the plane, and within _LIP_TRAVEL_M along the normal. The spacing
# out: the border pixel of a segment is as likely the next surface's (a structured-light camera mixes the depths
# of an edge's two sides), so the lip rests a pixel inside the seen border.
_LIP_POINTS = 12
_LIP_MARGIN_SPACINGS = 1.0
_LIP_REACH_SPACINGS = 1.2
_LIP_NEIGHBOURS = 6
# Points within reach that each point of the circle needs: one alone may be a flying pixel of the edge, mixed
# between the part's face and the surface beyond it.
_LIP_SUPPORT = 2
# How far a cup's lip gives as it seals: another part this little below the contact is touched too.
_LIP_TRAVEL_M = 0.002
# The surface's normal is fitted over at least this radius.
_NORMAL_RADIUS_M = 0.004
# Points that a quadric over that radius needs at the least.
_QUADRIC_POINTS = 10
# Approaches within this many degrees of the straightest are ranked by their distance from the centroid.
_TILT_BAND_DEG = 5.0
# Contact points tried per instance, spread over its points; more buy little on a part a few cups wide.
_CANDIDATES = 64


@dataclass(frozen=True)
class SuctionGrasp:
    """One cup placement on one instance, in the camera frame."""

    point_m: np.ndarray  # (3,) the centre of the cup's contact
    approach: np.ndarray  # (3,) unit vector along which the cup moves onto the surface
    flatness_m: float  # the RMS distance of the points under the cup from their plane
    support: float  # the share of the cells under the cup (its hub, two rings of sectors, the lip) that rest on the instance
    tilt_deg: float  # the approach's angle from the camera's viewing axis (+z)
    seals: bool  # flat, supported all round and within the tilt


def _spacing_m(tree: cKDTree) -> float:
    """The points' spacing: the median distance from a point to its nearest neighbour."""
    if tree.n < 2:
        return float("inf")
    return float(np.median(tree.query(tree.data, k=2)[0][:, 1]))


def _planes(
    points_m: np.ndarray, tree: cKDTree, contacts_m: np.ndarray, radius_m: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The least-squares plane of the points within ``radius_m`` of each contact: each neighbour's contact
    (owner) and offset from it, and per contact the RMS distance from the plane, its normal facing the camera
    (NaN with fewer than 3 points) and whether it had 3."""
    neighbours = tree.query_ball_point(contacts_m, radius_m)
    counts = np.array([len(n) for n in neighbours], dtype=np.int64)
    owner = np.repeat(np.arange(len(contacts_m)), counts)
    offsets = points_m[np.concatenate(neighbours).astype(np.int64)] - contacts_m[owner] if counts.sum() else np.zeros((0, 3))
    enough = counts >= 3
    safe = np.maximum(counts, 1)
    mean = np.stack([np.bincount(owner, offsets[:, k], len(contacts_m)) for k in range(3)], axis=1) / safe[:, None]
    products = (offsets[:, :, None] * offsets[:, None, :]).reshape(-1, 9)
    second = np.stack([np.bincount(owner, products[:, k], len(contacts_m)) for k in range(9)], axis=1).reshape(-1, 3, 3)
    eigenvalues, eigenvectors = np.linalg.eigh(second / safe[:, None, None] - mean[:, :, None] * mean[:, None, :])
    normals = np.where(enough[:, None], eigenvectors[:, :, 0], np.nan)
    flatness_m = np.where(enough, np.sqrt(np.maximum(eigenvalues[:, 0], 0.0)), np.inf)
    # The camera sits at the origin and looks along +z: the seen side of a surface faces it.
    facing = np.einsum("ij,ij->i", normals, contacts_m) > 0
    normals[facing] *= -1
    return owner, offsets, flatness_m, normals, enough


def _curved_normals(points_m: np.ndarray, tree: cKDTree, contacts_m: np.ndarray, radius_m: float) -> tuple[np.ndarray, np.ndarray]:
    """The surface's normal at each contact (C, 3), facing the camera, and whether there were points enough for
    it: the normal of the quadric fitted to the points within ``radius_m`` (their height over their plane, a
    second-order polynomial across it). A plane's normal over a curved face is the mean of the normals it spans:
    on a 6 mm pin it is square to the pin's top line wherever the contact lies, and a cup a millimetre off that
    line meets the flank 20 degrees askew."""
    owner, offsets, _, normals, enough = _planes(points_m, tree, contacts_m, radius_m)
    normals = np.where(enough[:, None], normals, [0.0, 0.0, -1.0])
    u, v = _plane_axes(normals)
    # In units of the radius, which keeps the six terms of a like size.
    x = np.einsum("ij,ij->i", offsets, u[owner]) / radius_m
    y = np.einsum("ij,ij->i", offsets, v[owner]) / radius_m
    height = np.einsum("ij,ij->i", offsets, normals[owner]) / radius_m
    terms = np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=1)
    count = len(contacts_m)
    products = (terms[:, :, None] * terms[:, None, :]).reshape(-1, 36)
    normal_matrix = np.stack([np.bincount(owner, products[:, k], count) for k in range(36)], axis=1).reshape(-1, 6, 6)
    right = np.stack([np.bincount(owner, terms[:, k] * height, count) for k in range(6)], axis=1)
    # Six coefficients want more than six points; the small ridge keeps a thin strip's matrix invertible.
    fitted = enough & (np.bincount(owner, minlength=count) >= _QUADRIC_POINTS)
    coefficients = np.linalg.solve(normal_matrix + 1e-6 * np.eye(6), right[:, :, None])[:, :, 0]
    # The height's slopes at the contact tilt the plane's normal: n - dh/dx u - dh/dy v.
    curved = normals - coefficients[:, 1:2] * u - coefficients[:, 2:3] * v
    curved /= np.linalg.norm(curved, axis=1, keepdims=True)
    return np.where(fitted[:, None], curved, normals), enough


def _plane_axes(normals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit axes (C, 3) each across each normal (C, 3)."""
    helper = np.where(np.abs(normals[:, :1]) < 0.9, [[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]])
    u = np.cross(normals, helper)
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    return u, np.cross(normals, u)


def _lip_held(
    tree: cKDTree, points_m: np.ndarray, contacts_m: np.ndarray, u: np.ndarray, v: np.ndarray, radius_m: float, spacing_m: float
) -> np.ndarray:
    """Per contact (C,), whether every one of ``_LIP_POINTS`` points on a circle ``_LIP_MARGIN_SPACINGS`` outside
    the lip, in the plane of the axes ``u`` and ``v`` (C, 3), has a point of the instance within
    ``_LIP_REACH_SPACINGS`` spacings across the plane and ``_LIP_TRAVEL_M`` along its normal."""
    angles = np.linspace(0.0, 2 * np.pi, _LIP_POINTS, endpoint=False)
    lip_m = radius_m + _LIP_MARGIN_SPACINGS * spacing_m
    lips = contacts_m[:, None] + lip_m * (np.cos(angles)[None, :, None] * u[:, None] + np.sin(angles)[None, :, None] * v[:, None])
    reach_m = np.hypot(_LIP_REACH_SPACINGS * spacing_m, _LIP_TRAVEL_M)
    # The few nearest points to each lip point stand for all within reach: a point across the plane within
    # the reach and along it beyond the travel lies over another surface, which the next nearest may not.
    _, nearest = tree.query(lips.reshape(-1, 3), k=_LIP_NEIGHBOURS, distance_upper_bound=reach_m)
    found = nearest < len(points_m)
    offsets = points_m[np.where(found, nearest, 0)] - lips.reshape(-1, 1, 3)
    normal = np.repeat(np.cross(u, v), _LIP_POINTS, axis=0)[:, None, :]
    along = np.einsum("ijk,ijk->ij", offsets, normal)
    across = np.linalg.norm(offsets - along[..., None] * normal, axis=2)
    close = found & (across <= _LIP_REACH_SPACINGS * spacing_m) & (np.abs(along) <= _LIP_TRAVEL_M)
    return (close.sum(axis=1) >= _LIP_SUPPORT).reshape(-1, _LIP_POINTS).all(axis=1)


def _assess(
    points_m: np.ndarray, tree: cKDTree, contacts_m: np.ndarray, radius_m: float, max_flatness_m: float, max_tilt_deg: float,
    spacing_m: float,
) -> list[SuctionGrasp]:
    """The cup placed at each of ``contacts_m`` (C, 3), all at once: each placement's least-squares plane
    (its RMS residual is the square root of the scatter's least eigenvalue), lip support and tilt."""
    owner, offsets, flatness_m, normals, enough = _planes(points_m, tree, contacts_m, radius_m)
    u, v = _plane_axes(normals)
    along_u, along_v = np.einsum("ij,ij->i", offsets, u[owner]), np.einsum("ij,ij->i", offsets, v[owner])
    distance = np.hypot(along_u, along_v)
    # Cells: the hub, the inner ring's sectors and the lip's, each as many as the camera's sampling fills: a
    # cell must expect _POINTS_PER_CELL points, or a small cup's cells would be empty for want of pixels.
    expected = np.pi * radius_m**2 * np.array([_HUB**2, _LIP_INNER**2 - _HUB**2, 1 - _LIP_INNER**2]) / spacing_m**2
    counts_per_ring = np.minimum(np.floor(expected / _POINTS_PER_CELL), [1, _LIP_SECTORS, _LIP_SECTORS]).astype(np.int64)
    counts_per_ring[2] = max(counts_per_ring[2], 4)  # the lip is always checked all round
    first = np.concatenate([[0], np.cumsum(counts_per_ring)[:-1]])
    rings = np.where(distance >= _LIP_INNER * radius_m, 2, np.where(distance >= _HUB * radius_m, 1, 0))
    in_ring = np.maximum(counts_per_ring[rings], 1)
    # A placement with too few points for a plane has no axes (NaN): it fails on ``enough``, its sectors are moot.
    angle = np.nan_to_num(np.arctan2(along_v, along_u))
    sectors = np.floor((angle + np.pi) / (2 * np.pi) * in_ring).astype(np.int64) % in_ring
    checked = counts_per_ring[rings] > 0
    cells = int(counts_per_ring.sum())
    occupied = np.unique(owner[checked] * cells + first[rings[checked]] + sectors[checked])
    resting = np.bincount(occupied // cells, minlength=len(contacts_m))
    # The wider normal and the lip's circle, the costlier checks, only where the cup's own disc passed.
    passed = enough & (flatness_m <= max_flatness_m) & (resting == cells)
    if radius_m < _NORMAL_RADIUS_M and passed.any():
        wide_normals, wide_enough = _curved_normals(points_m, tree, contacts_m[passed], _NORMAL_RADIUS_M)
        normals[passed] = np.where(wide_enough[:, None], wide_normals, normals[passed])
    approach = -normals
    with np.errstate(invalid="ignore"):
        tilt_deg = np.degrees(np.arccos(np.clip(approach[:, 2], -1.0, 1.0)))
    passed &= tilt_deg <= max_tilt_deg
    lip_held = np.zeros(len(contacts_m), dtype=bool)
    if passed.any():
        lip_u, lip_v = _plane_axes(normals[passed])
        lip_held[passed] = _lip_held(tree, points_m, contacts_m[passed], lip_u, lip_v, radius_m, spacing_m)
    # The lip's circle counts as one more cell of the cup's face (checked where the rest of the face passed).
    support = (resting + lip_held) / (cells + 1)
    seals = passed & lip_held
    return [
        SuctionGrasp(contact, a if ok else np.array([0.0, 0.0, 1.0]), float(f), float(s), float(t) if ok else 90.0, bool(seal))
        for contact, a, f, s, t, ok, seal in zip(contacts_m, approach, flatness_m, support, tilt_deg, enough, seals)
    ]


def suction_grasps(
    points_m: np.ndarray,
    radius_m: float,
    max_flatness_m: float,
    max_tilt_deg: float = 45.0,
    seed: int = 0,
    others_m: np.ndarray | None = None,
) -> Iterator[SuctionGrasp]:
    """The cup placements that seal on one instance's seen points (n, 3), camera frame, metres, best first:
    those within ``_TILT_BAND_DEG`` of the camera's axis nearest the points' centroid first, then the
    straightest of the rest. With ``others_m`` (k, 3), the seen points of the other parts, a placement whose
    cup would touch one of them on its way down is passed over: the cup would meet two parts, and hold
    neither."""
    points_m = np.asarray(points_m, dtype=np.float64)
    if points_m.ndim != 2 or points_m.shape[1] != 3:
        raise ValueError(f"points_m: expected an (n, 3) array, got shape {points_m.shape}")
    if radius_m <= 0 or max_flatness_m <= 0:
        raise ValueError(f"radius_m {radius_m} and max_flatness_m {max_flatness_m} must be positive")
    if len(points_m) < 3:
        return
    centroid = points_m.mean(axis=0)
    spread = points_m - centroid
    # A part narrower than the cup (a pin under a wide cup) has no lip support anywhere: skip the search.
    if 2 * np.sqrt(3 * np.linalg.eigvalsh(np.cov(spread.T))[1]) < 2 * _LIP_INNER * radius_m:
        return
    rng = np.random.default_rng(seed)
    nearest = int(np.argmin(np.linalg.norm(spread, axis=1)))
    drawn = rng.choice(len(points_m), min(_CANDIDATES, len(points_m)), replace=False)
    candidates = points_m[np.r_[nearest, drawn]]
    candidates = candidates[np.argsort(np.linalg.norm(candidates - centroid, axis=1), kind="stable")]
    tree = cKDTree(points_m)
    spacing_m = _spacing_m(tree)
    others_m = np.zeros((0, 3)) if others_m is None else np.asarray(others_m, dtype=np.float64).reshape(-1, 3)
    # All at once: most parts in a pile have no placement within the band, so every candidate is assessed anyway,
    # and one vectorised batch costs less than several small ones.
    placed = [g for g in _assess(points_m, tree, candidates, radius_m, max_flatness_m, max_tilt_deg, spacing_m) if g.seals]
    if not placed:
        return
    contacts, approaches = np.stack([g.point_m for g in placed]), np.stack([g.approach for g in placed])
    # Another part in the cup's way anywhere down to the lip's travel; the part's own points only where they
    # stand above the contact by more than the travel (a step, which the ball round the contact leaves out).
    clear = _clear(contacts, approaches, others_m, radius_m, _LIP_TRAVEL_M) & _clear(contacts, approaches, points_m, radius_m, -_LIP_TRAVEL_M)
    tilted: list[SuctionGrasp] = []
    # Nearest the centroid first: a part lying flat has a square approach near its middle.
    for grasp in (g for g, ok in zip(placed, clear) if ok):
        if grasp.tilt_deg <= _TILT_BAND_DEG:
            yield grasp
        else:
            tilted.append(grasp)
    if not tilted:
        return
    # The straightest, and those within the band of it nearest the centroid (their order in the list) first.
    straightest_deg = min(g.tilt_deg for g in tilted)
    yield from sorted(tilted, key=lambda g: max(g.tilt_deg - straightest_deg - _TILT_BAND_DEG, 0.0))


def suction_grasp(
    points_m: np.ndarray,
    radius_m: float,
    max_flatness_m: float,
    max_tilt_deg: float = 45.0,
    seed: int = 0,
    others_m: np.ndarray | None = None,
) -> SuctionGrasp | None:
    """The best of :func:`suction_grasps`; None where no placement seals."""
    return next(suction_grasps(points_m, radius_m, max_flatness_m, max_tilt_deg, seed, others_m), None)


def _clear(points_m: np.ndarray, approaches: np.ndarray, in_way_m: np.ndarray, radius_m: float, down_to_m: float) -> np.ndarray:
    """For each cup (G,) coming down its approach (G, 3) onto its contact (G, 3), whether none of ``in_way_m``
    lies within its radius of its axis, anywhere above ``down_to_m`` along the approach from the contact."""
    offsets = in_way_m[None] - points_m[:, None]
    along = np.einsum("gkj,gj->gk", offsets, approaches)
    across = np.linalg.norm(offsets - along[..., None] * approaches[:, None], axis=2)
    return ~np.any((across < radius_m) & (along < down_to_m), axis=1)


def assess_suction(points_m: np.ndarray, contact_m: np.ndarray, radius_m: float, max_flatness_m: float, max_tilt_deg: float = 45.0) -> SuctionGrasp:
    """The cup placed at ``contact_m`` on the instance's seen points (n, 3): its approach and its checks."""
    points_m = np.asarray(points_m, dtype=np.float64)
    contact_m = np.asarray(contact_m, dtype=np.float64).reshape(1, 3)
    tree = cKDTree(points_m)
    return _assess(points_m, tree, contact_m, radius_m, max_flatness_m, max_tilt_deg, _spacing_m(tree))[0]


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
