from pathlib import Path

import numpy as np
import pytest
import trimesh

from bin_perception.config import Config, NoiseConfig, load_config
from bin_perception.geometry import backproject, fit_plane_ransac, in_workspace, transform_points
from bin_perception.sim.parts import load_part
from bin_perception.sim.scene import REST_ANGULAR_RAD_S, REST_LINEAR_M_S, BinSimulator

CONFIG_DIR = Path(__file__).resolve().parents[1] / "config"


@pytest.fixture(scope="module")
def nut_bins():
    with BinSimulator(load_part("nut"), 3, Config()) as simulator:
        yield simulator


def test_same_seed_same_scene_byte_for_byte(nut_bins):
    first = nut_bins.scene([7, 0])
    nut_bins.scene([7, 1])  # an unrelated scene in between changes nothing
    again = nut_bins.scene([7, 0])
    assert first.depth_m.tobytes() == again.depth_m.tobytes()
    assert first.labels.tobytes() == again.labels.tobytes()
    assert first.rgb.tobytes() == again.rgb.tobytes()
    np.testing.assert_array_equal(first.poses, again.poses)
    other = nut_bins.scene([8, 0])
    assert first.depth_m.tobytes() != other.depth_m.tobytes()


@pytest.mark.parametrize("name", ["nut", "lever", "bracket"])
def test_parts_end_in_the_bin_at_rest_and_the_mask_has_n_labels(name):
    with BinSimulator(load_part(name), 4, Config()) as simulator:
        for seed in range(3):
            sample = simulator.scene(seed)
            half_m = simulator.bin_inner_m / 2
            world = simulator.world_from_camera @ sample.poses
            assert np.all(np.abs(world[:, :2, 3]) < half_m)
            assert np.all(world[:, 2, 3] > 0)
            for body in simulator._bodies:
                linear, angular = simulator._client.getBaseVelocity(body)
                assert np.linalg.norm(linear) < REST_LINEAR_M_S and np.linalg.norm(angular) < REST_ANGULAR_RAD_S
            assert set(np.unique(sample.labels)) == {0, 1, 2, 3, 4}


def test_a_poured_bin_of_thirty_is_a_heap_at_rest_in_the_bin():
    spread = load_config(CONFIG_DIR / "real_cell.yaml")
    poured = load_config(CONFIG_DIR / "real_pile.yaml")
    tops_m = []
    # 16 spread lie as deep as 30 do, and settle in half the time.
    for config, instances in ((spread, 16), (poured, 30)):
        with BinSimulator(load_part("nut"), instances, config) as simulator:
            sample = simulator.scene(5)
            world = simulator.world_from_camera @ sample.poses
            assert np.all(np.abs(world[:, :2, 3]) < simulator.bin_inner_m / 2) and np.all(world[:, 2, 3] > 0)
            for body in simulator._bodies:
                linear, angular = simulator._client.getBaseVelocity(body)
                assert np.linalg.norm(linear) < REST_LINEAR_M_S and np.linalg.norm(angular) < REST_ANGULAR_RAD_S
            tops_m.append(np.sort(world[:, 2, 3])[-3:].mean())
    # Spread over the floor, nuts lie one deep; poured, the top of the heap stands on other nuts (measured: its
    # three highest centres 14.7 mm over the floor, against 8.4 mm spread).
    assert tops_m[1] > tops_m[0] + 0.003, tops_m


def test_a_shaken_bin_keeps_its_parts_in_it_at_rest_and_turns_some_over():
    with BinSimulator(load_part("nut"), 8, load_config(CONFIG_DIR / "real_pile.yaml")) as simulator:
        rng = np.random.default_rng(3)
        before = simulator.simulate(rng)
        simulator.shake(rng)
        after = simulator.world_poses()
        assert len(after) == 8 and np.all(np.abs(after[:, :2, 3]) < simulator.bin_inner_m / 2) and np.all(after[:, 2, 3] > 0)
        for body in simulator.bodies:
            linear, angular = simulator._client.getBaseVelocity(body)
            assert np.linalg.norm(linear) < REST_LINEAR_M_S and np.linalg.norm(angular) < REST_ANGULAR_RAD_S
    # A nut's axis, its principal axis of least extent, before and after: a nut that lay flat may now stand on a flank.
    turned_deg = np.degrees(np.arccos(np.clip(np.abs(np.einsum("ni,ni->n", before[:, :3, 2], after[:, :3, 2])), 0.0, 1.0)))
    moved_m = np.linalg.norm(after[:, :3, 3] - before[:, :3, 3], axis=1)
    assert np.all(moved_m > 0.0005) and np.any(turned_deg > 45.0), (moved_m, turned_deg)


def test_depth_of_the_bin_floor_is_its_true_distance():
    # An empty bin: the floor is a plane at a known distance from the camera.
    with BinSimulator(load_part("nut"), 0, Config()) as simulator:
        sample = simulator.scene(0)
        floor_distance_m = simulator.world_from_camera[2, 3]
        inner_m = simulator.bin_inner_m / 2
    points = backproject(sample.depth_m, sample.K).reshape(-1, 3)
    # Rays that reach the floor: well inside the walls' parallax.
    floor = points[np.all(np.abs(points[:, :2]) < 0.5 * inner_m, axis=1)]
    assert len(floor) > 500
    np.testing.assert_allclose(floor[:, 2], floor_distance_m, atol=1e-3)
    plane, inliers = fit_plane_ransac(floor, threshold_m=5e-4)
    assert inliers.mean() > 0.99
    assert abs(abs(plane[2]) - 1.0) < 1e-4 and abs(abs(plane[3]) - floor_distance_m) < 1e-3
    assert sample.labels.max() == 0


@pytest.mark.parametrize("name", ["nut", "housing"])
def test_ground_truth_poses_project_onto_their_masks(name):
    part = load_part(name)
    surface, _ = trimesh.sample.sample_surface(part.mesh, 200000, seed=1)
    with BinSimulator(part, 3, Config()) as simulator:
        sample = simulator.scene(3)
    h, w = sample.depth_m.shape
    for instance, pose in enumerate(sample.poses, start=1):
        points = transform_points(pose, surface)
        uvw = points @ sample.K.T
        u = np.round(uvw[:, 0] / uvw[:, 2]).astype(int)
        v = np.round(uvw[:, 1] / uvw[:, 2]).astype(int)
        inside = (u >= 0) & (u < w) & (v >= 0) & (v < h)
        u, v, z = u[inside], v[inside], points[inside, 2]
        # The surface points the camera sees are those at the rendered depth
        # (within 0.1 mm: a face resting on the floor is at the floor's depth).
        visible = np.abs(sample.depth_m[v, u] - z) < 1e-4
        assert visible.sum() > 2000
        assert np.mean(sample.labels[v[visible], u[visible]] == instance) > 0.99
        # And every pixel of the mask is covered by the part's projection.
        covered = np.zeros((h, w), dtype=bool)
        covered[v, u] = True
        mask = sample.labels == instance
        assert covered[mask].mean() > 0.99


def test_workspace_holds_the_parts_and_not_the_bin(nut_bins):
    sample = nut_bins.scene([7, 2])
    points = backproject(sample.depth_m, sample.K)
    inside = in_workspace(points, nut_bins.workspace)
    parts = sample.labels > 0
    assert inside[parts].mean() > 0.95
    assert not inside[~parts].any()


def test_sensor_noise_is_off_by_default_and_realistic_when_on():
    part = load_part("nut")
    with BinSimulator(part, 2, Config()) as clean_simulator:
        clean = clean_simulator.scene(5)
    config = Config(noise=NoiseConfig(enabled=True, depth_sigma_per_m=0.01, edge_dropout=1.0))
    with BinSimulator(part, 2, config) as noisy_simulator:
        noisy = noisy_simulator.scene(5)
    np.testing.assert_array_equal(clean.labels, noisy.labels)
    kept = np.isfinite(noisy.depth_m)
    relative = (noisy.depth_m[kept] - clean.depth_m[kept]) / clean.depth_m[kept]
    assert abs(relative.std() - 0.01) < 0.001
    dropped = ~kept
    # Dropouts happen at depth edges (a jump of over 4 mm to a 4-neighbour), and nowhere else.
    padded = np.pad(clean.depth_m, 1, mode="edge")
    jumps = np.stack([np.abs(padded[1 + dv : 1 + dv + clean.depth_m.shape[0], 1 + du : 1 + du + clean.depth_m.shape[1]] - clean.depth_m)
                      for dv, du in ((-1, 0), (1, 0), (0, -1), (0, 1))])
    at_edge = jumps.max(axis=0) > 0.004
    assert dropped.sum() > 50 and dropped.mean() < 0.2
    assert at_edge[dropped].all()
