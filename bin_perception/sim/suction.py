"""A suction cup brought onto the simulated bin: does it hold a part, and which one.

The cup comes down its approach axis and meets the first surface in its way, as a real one does: the
part it was sent for, another lying over it, the bin, or nothing. It holds when its whole lip lands on
one part whose surface there is flat and faces the cup, within what a real bellows cup forgives:

- **one part**: the rays along the cup's axis and around its lip all meet the same part;
- **flat**: the points they meet lie within ``max_flatness_m`` (RMS) of their plane, on the true
  surface (the simulated camera's noise has no say here);
- **facing**: the surface's normal there is within ``COMPLIANCE_DEG`` of the cup's axis. On a curved face
  that is the smooth surface's normal, which the mesh's facets stand for, not a facet's own.

Otherwise the pick fails, and the reason says which: ``nothing``, ``bin``, ``two parts``, ``edge``
(the lip off the part or over a step), or ``tilt``.

The rays meet the part's own mesh, the surface the camera renders, not the convex pieces that PyBullet
collides (V-HACD's hulls fill a bracket's bore and stand up to millimetres proud of the surface: as much
as the flatness a cup needs).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import open3d as o3d
import trimesh

# A bellows cup seals on a surface up to this many degrees off its axis.
COMPLIANCE_DEG = 20.0
# Neighbouring faces that meet at less than this are facets of one curved surface (a 24-sided shank's facets
# meet at 15 degrees), and their own normals stray up to half that angle from the surface they stand for. The
# parts' real edges meet at 30 degrees and more.
_FACET_ANGLE_DEG = 20.0
# Rays around the lip; the cup travels this far before and beyond the contact point along its axis.
_LIP_RAYS = 12
_REACH_M = 0.05


@dataclass(frozen=True)
class CupContact:
    """Where the cup landed: the part it holds (an index of the part poses it was given), or None and why not."""

    part: int | None
    reason: str  # "held", or why the cup holds nothing


class CellSurfaces:
    """The true surfaces of a cell that a cup can meet: one part's mesh, placed at each part's pose, and the bin
    (its floor and walls as one mesh), both in the world frame; the rays are Open3D's."""

    def __init__(self, part_mesh: trimesh.Trimesh, bin_mesh: trimesh.Trimesh) -> None:
        # Split at the real edges only, so that each vertex's normal is the curved surface's there.
        smooth = trimesh.graph.smooth_shade(part_mesh, angle=np.radians(_FACET_ANGLE_DEG))
        self._part_vertices = np.asarray(smooth.vertices, dtype=np.float64)
        self._part_triangles = np.asarray(smooth.faces, dtype=np.uint32)
        self._part_vertex_normals = np.asarray(smooth.vertex_normals, dtype=np.float64)
        self._bin_vertices = np.asarray(bin_mesh.vertices, dtype=np.float32)
        self._bin_triangles = np.asarray(bin_mesh.faces, dtype=np.uint32)

    def first_hits(
        self, origins_w: np.ndarray, direction_w: np.ndarray, part_poses_w: np.ndarray, reach_m: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For each ray from ``origins_w`` (k, 3) along the unit ``direction_w`` within ``reach_m``, what it meets
        first: the part's index (-1 the bin, -2 nothing), the point and the surface's outward normal there
        (on a part, its vertices' normals interpolated across the triangle hit)."""
        scene = o3d.t.geometry.RaycastingScene()
        labels = {scene.add_triangles(self._bin_vertices, self._bin_triangles): -1}
        for index, pose in enumerate(part_poses_w):
            placed = (self._part_vertices @ pose[:3, :3].T + pose[:3, 3]).astype(np.float32)
            labels[scene.add_triangles(placed, self._part_triangles)] = index
        rays = np.hstack([origins_w, np.tile(direction_w, (len(origins_w), 1))]).astype(np.float32)
        hits = scene.cast_rays(o3d.core.Tensor(rays))
        distance_m = hits["t_hit"].numpy()
        reached = np.isfinite(distance_m) & (distance_m <= reach_m)
        found = np.array([labels.get(int(g), -2) if ok else -2 for g, ok in zip(hits["geometry_ids"].numpy(), reached)])
        points = origins_w + np.where(reached, distance_m, np.nan)[:, None] * direction_w
        normals = hits["primitive_normals"].numpy().astype(np.float64)
        on_part = np.flatnonzero(found >= 0)
        u, v = hits["primitive_uvs"].numpy()[on_part].T
        corners = self._part_vertex_normals[self._part_triangles[hits["primitive_ids"].numpy()[on_part]]]
        local = (1.0 - u - v)[:, None] * corners[:, 0] + u[:, None] * corners[:, 1] + v[:, None] * corners[:, 2]
        placed = np.einsum("kij,kj->ki", np.asarray(part_poses_w)[found[on_part], :3, :3], local)
        normals[on_part] = placed / np.linalg.norm(placed, axis=1, keepdims=True)
        return found, points, normals


def _lip_ring(point_w: np.ndarray, axis: np.ndarray, radius_m: float) -> np.ndarray:
    """The cup's centre and ``_LIP_RAYS`` points on its lip (k, 3), in the plane across ``axis``."""
    helper = np.array([1.0, 0.0, 0.0]) if abs(axis[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    u = np.cross(axis, helper)
    u /= np.linalg.norm(u)
    v = np.cross(axis, u)
    angles = np.linspace(0.0, 2 * np.pi, _LIP_RAYS, endpoint=False)
    ring = point_w + radius_m * (np.cos(angles)[:, None] * u + np.sin(angles)[:, None] * v)
    return np.vstack([point_w, ring])


def cup_contact(
    surfaces: CellSurfaces,
    part_poses_w: np.ndarray,
    point_w: np.ndarray,
    approach_w: np.ndarray,
    radius_m: float,
    max_flatness_m: float,
) -> CupContact:
    """The cup of ``radius_m`` sent to ``point_w`` along ``approach_w`` (world frame, the direction it moves
    in): which of the parts at ``part_poses_w`` (N, 4, 4) it holds."""
    axis = np.asarray(approach_w, dtype=np.float64)
    axis = axis / np.linalg.norm(axis)
    targets = _lip_ring(np.asarray(point_w, dtype=np.float64), axis, radius_m)
    met, positions, normals = surfaces.first_hits(targets - _REACH_M * axis, axis, np.asarray(part_poses_w), 2 * _REACH_M)
    touched = {int(m) for m in met if m >= 0}
    if len(touched) > 1:
        return CupContact(None, "two parts")
    if not touched:
        return CupContact(None, "nothing" if np.all(met == -2) else "bin")
    centre = touched.pop()
    # Over a part's edge or its bore, some of the rays pass it by.
    if np.any(met != centre):
        return CupContact(None, "edge")
    centred = positions - positions.mean(axis=0)
    if np.sqrt(max(np.linalg.eigvalsh(centred.T @ centred / len(centred))[0], 0.0)) > max_flatness_m:
        return CupContact(None, "edge")
    # The mesh's outward normal at the centre ray's hit faces the cup.
    if np.degrees(np.arccos(np.clip(-normals[0] @ axis, -1.0, 1.0))) > COMPLIANCE_DEG:
        return CupContact(None, "tilt")
    return CupContact(centre, "held")
