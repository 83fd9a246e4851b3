"""The part library: procedural industrial parts as watertight meshes, and user meshes.

Every part is a watertight ``trimesh.Trimesh`` in metres, translated so that its
centre of mass is the origin; a part's 6D pose is the pose of that frame. Meshes
are built once and cached on disk, together with the convex decomposition that
PyBullet needs to let concave parts (a nut's hole, a bracket's corner) collide
as what they are rather than as their convex hulls.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh

from ..cache import cache_dir

# Bump when a builder changes, so that stale cached meshes are rebuilt.
_LIBRARY_VERSION = 1

MESH_SUFFIXES = (".obj", ".stl", ".ply")


@dataclass(frozen=True)
class Part:
    """A rigid part: its mesh (metres, centre of mass at the origin) and symmetry.

    ``symmetry`` names the proper rotation group that maps the part onto itself,
    for symmetry-aware pose errors: ``"none"``, ``"C<n>"`` (n-fold about z),
    ``"D<n>"`` (n-fold about z plus a half-turn about x), ``"Dinf"`` (a solid of
    revolution about z that is also mirror-symmetric end to end) or ``"Cinf"``.
    """

    name: str
    mesh: trimesh.Trimesh
    symmetry: str
    description: str

    @property
    def max_extent_m(self) -> float:
        return float(np.max(self.mesh.extents))

    @property
    def radius_m(self) -> float:
        """Radius of the smallest origin-centred sphere holding the part."""
        return float(np.linalg.norm(self.mesh.vertices, axis=1).max())


def _hex_prism(across_flats_m: float, height_m: float) -> trimesh.Trimesh:
    corner_radius_m = across_flats_m / np.sqrt(3.0)
    return trimesh.creation.cylinder(radius=corner_radius_m, height=height_m, sections=6)


def _translated(mesh: trimesh.Trimesh, offset_m: tuple[float, float, float]) -> trimesh.Trimesh:
    mesh = mesh.copy()
    mesh.apply_translation(offset_m)
    return mesh


def _rotated(mesh: trimesh.Trimesh, angle_rad: float, axis: tuple[float, float, float]) -> trimesh.Trimesh:
    mesh = mesh.copy()
    mesh.apply_transform(trimesh.transformations.rotation_matrix(angle_rad, axis))
    return mesh


def _build_nut() -> trimesh.Trimesh:
    # ISO 4032 M10: 16 mm across flats, 8.4 mm high, bore at the 8.5 mm tap drill.
    body = _hex_prism(0.016, 0.0084)
    bore = trimesh.creation.cylinder(radius=0.00425, height=0.012, sections=32)
    return body.difference(bore, engine="manifold")


def _build_bolt() -> trimesh.Trimesh:
    # M8 x 40 hex bolt: 13 mm across flats, 5.3 mm head.
    head = _translated(_hex_prism(0.013, 0.0053), (0.0, 0.0, 0.02 + 0.00265))
    shank = trimesh.creation.cylinder(radius=0.004, height=0.040, sections=24)
    return head.union(shank, engine="manifold")


def _build_pin() -> trimesh.Trimesh:
    # A 6 x 30 mm dowel pin with 0.8 mm chamfers, as a solid of revolution about z.
    r, half, c = 0.003, 0.015, 0.0008
    profile = np.array(
        [[0.0, -half], [r - c, -half], [r, -half + c], [r, half - c], [r - c, half], [0.0, half]]
    )
    return trimesh.creation.revolve(profile, sections=32)


def _build_lever() -> trimesh.Trimesh:
    # A 62 mm flat lever bent 30 degrees in its plane, a bore at one end and a
    # round boss at the other: elongated, with its mid-thickness plane as its
    # only plane of symmetry.
    thickness_m, width_m, arm_m = 0.005, 0.010, 0.032
    arm = trimesh.creation.box(extents=(arm_m, width_m, thickness_m))
    left = _rotated(_translated(arm, (-arm_m / 2, 0.0, 0.0)), np.deg2rad(15.0), (0, 0, 1))
    right = _rotated(_translated(arm, (arm_m / 2, 0.0, 0.0)), np.deg2rad(-15.0), (0, 0, 1))
    left_end = left.vertices[:, 0].argmin()
    right_end = right.vertices[:, 0].argmax()
    knuckle = trimesh.creation.cylinder(radius=width_m / 2, height=thickness_m, sections=32)
    boss_xy = right.vertices[right_end, :2] - np.array([0.004, -0.001])
    boss = _translated(trimesh.creation.cylinder(radius=0.0065, height=thickness_m, sections=32), (*boss_xy, 0.0))
    body = trimesh.boolean.union([left, right, knuckle, boss], engine="manifold")
    bore_xy = left.vertices[left_end, :2] + np.array([0.006, -0.0015])
    bore = _translated(trimesh.creation.cylinder(radius=0.0025, height=0.01, sections=24), (*bore_xy, 0.0))
    return body.difference(bore, engine="manifold")


def _build_housing() -> trimesh.Trimesh:
    # A small camera head housing: a box with an off-centre lens barrel on its
    # front, a cable gland on its back at another offset, and one corner
    # chamfered off. No plane maps it onto itself.
    body = trimesh.creation.box(extents=(0.040, 0.030, 0.024))
    lens = trimesh.creation.cylinder(radius=0.008, height=0.012, sections=32)
    lens = _translated(_rotated(lens, np.pi / 2, (0, 1, 0)), (0.025, 0.004, 0.003))
    gland = trimesh.creation.cylinder(radius=0.0035, height=0.008, sections=24)
    gland = _translated(_rotated(gland, np.pi / 2, (0, 1, 0)), (-0.023, -0.008, -0.005))
    chamfer = _translated(
        _rotated(_rotated(trimesh.creation.box(extents=(0.02, 0.02, 0.02)), np.pi / 4, (0, 0, 1)), np.pi / 5, (1, 0, 0)),
        (-0.020, 0.015, 0.012),
    )
    body = trimesh.boolean.union([body, lens, gland], engine="manifold")
    return body.difference(chamfer, engine="manifold")


def _build_bracket() -> trimesh.Trimesh:
    # A 40 mm wide L-bracket of 3 mm sheet, legs of 30 and 22 mm, a bore in each.
    sheet_m, width_m = 0.003, 0.040
    base = _translated(trimesh.creation.box(extents=(0.030, width_m, sheet_m)), (0.015, 0.0, sheet_m / 2))
    upright = _translated(trimesh.creation.box(extents=(sheet_m, width_m, 0.022)), (sheet_m / 2, 0.0, 0.011))
    bore_base = _translated(trimesh.creation.cylinder(radius=0.003, height=0.01, sections=24), (0.019, 0.0, 0.0))
    bore_upright = _translated(
        _rotated(trimesh.creation.cylinder(radius=0.003, height=0.01, sections=24), np.pi / 2, (0, 1, 0)),
        (0.0, 0.0, 0.014),
    )
    body = base.union(upright, engine="manifold")
    return trimesh.boolean.difference([body, bore_base, bore_upright], engine="manifold")


@dataclass(frozen=True)
class _PartSpec:
    build: Callable[[], trimesh.Trimesh]
    symmetry: str
    description: str


_LIBRARY: dict[str, _PartSpec] = {
    "nut": _PartSpec(_build_nut, "D6", "M10 hex nut, 16 mm across flats, with its bore"),
    "bolt": _PartSpec(_build_bolt, "C6", "M8 x 40 hex bolt: hex head and shank"),
    "pin": _PartSpec(_build_pin, "Dinf", "6 x 30 mm chamfered dowel pin"),
    "lever": _PartSpec(_build_lever, "none", "62 mm lever bent 30 deg, bore and boss; one symmetry plane"),
    "housing": _PartSpec(_build_housing, "none", "camera head housing, 58 mm; no symmetry plane"),
    "bracket": _PartSpec(_build_bracket, "none", "40 mm L-bracket of 3 mm sheet, two bores"),
}


def part_names() -> list[str]:
    """The names of the shipped parts."""
    return list(_LIBRARY)


def _centred(mesh: trimesh.Trimesh, source: str) -> trimesh.Trimesh:
    if not mesh.is_watertight:
        raise ValueError(f"{source}: mesh is not watertight; a part needs a closed surface")
    if mesh.volume <= 0:
        mesh.invert()
    mesh = mesh.copy()
    mesh.apply_translation(-mesh.center_mass)
    return mesh


def _write_atomic(mesh: trimesh.Trimesh, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    mesh.export(tmp, file_type=path.suffix.lstrip("."))
    os.replace(tmp, path)


def load_part(name_or_path: str | os.PathLike) -> Part:
    """A shipped part by name, or a user's mesh (OBJ, STL or PLY, in metres) by path."""
    key = str(name_or_path)
    if key in _LIBRARY:
        spec = _LIBRARY[key]
        path = cache_dir() / "parts" / f"{key}-v{_LIBRARY_VERSION}.ply"
        if not path.exists():
            _write_atomic(_centred(spec.build(), key), path)
        mesh = trimesh.load_mesh(path, process=False)
        return Part(key, mesh, spec.symmetry, spec.description)

    path = Path(key)
    if path.suffix.lower() not in MESH_SUFFIXES:
        raise ValueError(
            f"unknown part {key!r}: not one of {', '.join(part_names())}, "
            f"and not a mesh path ending in {', '.join(MESH_SUFFIXES)}"
        )
    if not path.is_file():
        raise FileNotFoundError(f"part mesh {path}: no such file")
    mesh = trimesh.load_mesh(path, force="mesh")
    if len(mesh.faces) == 0:
        raise ValueError(f"part mesh {path}: holds no triangles")
    extent_m = float(np.max(mesh.extents))
    if not 0.002 <= extent_m <= 1.0:
        raise ValueError(f"part mesh {path}: largest extent {extent_m:g} is not a part size in metres")
    return Part(path.stem, _centred(mesh, str(path)), "none", f"user mesh {path}")


def mesh_digest(mesh: trimesh.Trimesh) -> str:
    """A content hash of a mesh, for cache keys."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(mesh.vertices, dtype=np.float64).tobytes())
    digest.update(np.ascontiguousarray(mesh.faces, dtype=np.int64).tobytes())
    return digest.hexdigest()[:16]
