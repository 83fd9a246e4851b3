import numpy as np
import pytest
import trimesh
from scipy.spatial import cKDTree

from bin_perception.sim.parts import load_part, part_names


def _reflection_gap_m(mesh: trimesh.Trimesh, normal: np.ndarray) -> float:
    """How far the mesh, mirrored in the plane through its centre of mass with this normal, lies from itself."""
    surface, _ = trimesh.sample.sample_surface(mesh, 40000, seed=0)
    points = surface[:3000]
    mirrored = points - 2 * np.outer(points @ normal, normal)
    distance, _ = cKDTree(surface).query(mirrored)
    return float(np.percentile(distance, 95))


@pytest.mark.parametrize("name", part_names())
def test_shipped_parts_are_real_watertight_solids_of_part_size(name):
    part = load_part(name)
    assert part.mesh.is_watertight and part.mesh.volume > 0
    assert 0.01 <= part.max_extent_m <= 0.10
    np.testing.assert_allclose(part.mesh.center_mass, 0.0, atol=1e-6)


def test_library_has_the_six_kinds_of_part():
    assert {"nut", "bolt", "pin", "lever", "housing", "bracket"} <= set(part_names())
    nut = load_part("nut").mesh
    # The bore is really there: the nut's volume is its hexagon's minus the hole's.
    hexagon_m3 = 3 * np.sqrt(3) / 2 * (0.016 / np.sqrt(3)) ** 2 * 0.0084
    assert nut.volume < 0.8 * hexagon_m3


def test_housing_has_no_plane_of_symmetry():
    # A rigid body's symmetry planes pass through its centre of mass and, with
    # distinct principal moments, are normal to a principal axis: check all three.
    mesh = load_part("housing").mesh
    moments, axes = np.linalg.eigh(mesh.moment_inertia)
    assert np.min(np.diff(moments)) > 0.01 * moments.max()
    for axis in axes.T:
        assert _reflection_gap_m(mesh, axis) > 0.002


def test_lever_has_exactly_one_plane_of_symmetry():
    mesh = load_part("lever").mesh
    _, axes = np.linalg.eigh(mesh.moment_inertia)
    gaps = sorted(_reflection_gap_m(mesh, axis) for axis in axes.T)
    assert gaps[0] < 5e-4  # the mid-thickness plane
    assert gaps[1] > 0.002


def test_user_mesh_is_a_part(tmp_path):
    path = tmp_path / "spacer.stl"
    box = trimesh.creation.box(extents=(0.03, 0.02, 0.01))
    box.apply_translation((0.1, 0.0, 0.0))
    box.export(path)
    part = load_part(path)
    assert part.name == "spacer"
    np.testing.assert_allclose(part.mesh.center_mass, 0.0, atol=1e-9)
    np.testing.assert_allclose(sorted(part.mesh.extents), [0.01, 0.02, 0.03])


def test_bad_part_names_and_meshes_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown part 'sprocket'"):
        load_part("sprocket")
    with pytest.raises(FileNotFoundError, match="missing.obj"):
        load_part(tmp_path / "missing.obj")
    huge = tmp_path / "huge.ply"
    trimesh.creation.box(extents=(2.0, 2.0, 2.0)).export(huge)
    with pytest.raises(ValueError, match="not a part size in metres"):
        load_part(huge)
