import numpy as np
import pytest

from bin_perception.grasp import assess_suction, suction_grasp

RADIUS_M, FLATNESS_M = 0.008, 0.001


def _grid(size_m: float, spacing_m: float = 0.001) -> np.ndarray:
    axis = np.arange(-size_m / 2, size_m / 2 + 1e-9, spacing_m)
    x, y = np.meshgrid(axis, axis)
    return np.stack([x.ravel(), y.ravel()], axis=1)


def _plate(size_m: float, depth_m: float = 0.6, noise_m: float = 0.0002, seed: int = 0) -> np.ndarray:
    """A square plate seen from above, square to the camera, with the depth noise of a real camera."""
    xy = _grid(size_m)
    z = depth_m + np.random.default_rng(seed).normal(0, noise_m, len(xy))
    return np.column_stack([xy, z])


def test_a_flat_face_seals_near_its_centre_with_the_approach_along_its_normal():
    grasp = suction_grasp(_plate(0.04), RADIUS_M, FLATNESS_M)
    assert grasp is not None and grasp.seals
    assert np.linalg.norm(grasp.point_m[:2]) < 0.003
    np.testing.assert_allclose(grasp.approach, [0.0, 0.0, 1.0], atol=0.02)
    assert grasp.flatness_m < FLATNESS_M and grasp.support == 1.0


def test_a_cup_on_an_edge_fails_the_flatness_check():
    # A ridge: two faces meeting at 90 degrees, the cup centred on the line where they meet.
    xy = _grid(0.04)
    roof = np.column_stack([xy, 0.6 + np.abs(xy[:, 0])])
    grasp = assess_suction(roof, [0.0, 0.0, 0.6], RADIUS_M, FLATNESS_M)
    assert not grasp.seals and grasp.flatness_m > FLATNESS_M
    # Off the ridge, on one face, it is flat but tilted 45 degrees: within a 50 degree limit it seals.
    assert assess_suction(roof, [0.012, 0.0, 0.612], RADIUS_M, FLATNESS_M, max_tilt_deg=50.0).seals


def test_a_cup_half_over_the_parts_border_has_no_support_all_round():
    plate = _plate(0.04)
    border = plate[np.argmin(np.abs(plate[:, 0] - 0.02) + np.abs(plate[:, 1]))]
    grasp = assess_suction(plate, border, RADIUS_M, FLATNESS_M)
    assert not grasp.seals and grasp.support < 0.75


def test_a_lip_that_hangs_over_the_edge_by_a_quarter_of_its_radius_does_not_seal():
    # Every ring of sectors still holds points of the plate (a sector alone forgave four tenths of the radius); the
    # lip's own circle does not.
    plate = _plate(0.04)
    for overhang in (0.25, 0.4):
        contact = [0.02 - RADIUS_M * (1 - overhang), 0.0, 0.6]
        grasp = assess_suction(plate, contact, RADIUS_M, FLATNESS_M)
        assert not grasp.seals and 0.9 < grasp.support < 1.0
    # A spacing inside the edge, it seals.
    assert assess_suction(plate, [0.02 - RADIUS_M - 0.001, 0.0, 0.6], RADIUS_M, FLATNESS_M).seals


def test_a_cup_over_a_bore_does_not_seal_and_the_grasp_moves_off_it():
    plate = _plate(0.04)
    plate = plate[np.linalg.norm(plate[:, :2], axis=1) > 0.003]  # a 6 mm bore through the middle
    assert not assess_suction(plate, [0.0, 0.0, 0.6], RADIUS_M, FLATNESS_M).seals
    grasp = suction_grasp(plate, RADIUS_M, FLATNESS_M)
    assert grasp is not None and grasp.seals and np.linalg.norm(grasp.point_m[:2]) > 0.003


def test_a_cup_that_would_touch_another_part_moves_off_it():
    plate = _plate(0.04)
    # A post of another part, 3 mm across, stands 20 mm over the plate 6 mm from its middle; it hides the plate
    # under it. The cup at the middle would land on the plate all round its lip, and on the post.
    post = np.linalg.norm(plate[:, :2] - [0.006, 0.0], axis=1) < 0.0015
    others = np.column_stack([plate[post, :2], np.full(post.sum(), 0.58)])
    plate = plate[~post]
    alone = suction_grasp(plate, RADIUS_M, FLATNESS_M)
    assert np.linalg.norm(alone.point_m[:2] - [0.006, 0.0]) < RADIUS_M  # blind to the post, the cup takes both
    beside = suction_grasp(plate, RADIUS_M, FLATNESS_M, others_m=others)
    assert beside is not None and beside.seals and np.linalg.norm(beside.point_m[:2] - [0.006, 0.0]) > RADIUS_M
    # Another part lower than the plate by more than the lip gives is no obstacle.
    lower = suction_grasp(plate, RADIUS_M, FLATNESS_M, others_m=others + [0.0, 0.0, 0.03])
    np.testing.assert_allclose(lower.point_m, alone.point_m)


def test_a_face_tilted_beyond_the_limit_does_not_seal():
    plate = _plate(0.04)
    tilt = np.radians(60)
    turned = np.column_stack([plate[:, 0] * np.cos(tilt), plate[:, 1], 0.6 + plate[:, 0] * np.sin(tilt)])
    assert suction_grasp(turned, RADIUS_M, FLATNESS_M, max_tilt_deg=45.0) is None


def test_a_part_narrower_than_the_cup_gets_no_grasp():
    strip = _plate(0.04)
    strip = strip[np.abs(strip[:, 1]) <= 0.003]  # 6 mm wide, as a dowel pin seen from above
    assert suction_grasp(strip, RADIUS_M, FLATNESS_M) is None


def test_bad_points_are_refused_by_name():
    with pytest.raises(ValueError, match="points_m"):
        suction_grasp(np.zeros((10, 2)), RADIUS_M, FLATNESS_M)


@pytest.mark.parametrize(("part", "seals"), [("housing", True), ("pin", False)])
def test_a_simulated_part_in_the_real_cell_gets_a_grasp_where_a_cup_fits(part, seals):
    from pathlib import Path

    from bin_perception.config import load_config
    from bin_perception.geometry import backproject, in_workspace
    from bin_perception.sim.parts import load_part
    from bin_perception.sim.scene import BinSimulator

    config = load_config(Path(__file__).resolve().parents[1] / "config" / "real_cell.yaml")
    with BinSimulator(load_part(part), 1, config) as simulator:
        sample = simulator.scene(0)
        workspace, camera_from_bin = simulator.workspace, simulator.camera_from_bin
    points_m = backproject(sample.depth_m, sample.K)
    # The instance's points as the node has them: its pixels within the workspace (no far outliers).
    points_m = points_m[(sample.labels == 1) & in_workspace(points_m, workspace, camera_from_bin)]
    grasp = suction_grasp(points_m, config.gripper.suction_radius_m, config.gripper.max_flatness_m)
    # The housing's faces are 24 mm and more across; the 6 mm pin is narrower than the cup.
    assert (grasp is not None) == seals
    if seals:
        assert grasp.support == 1.0 and grasp.flatness_m <= config.gripper.max_flatness_m


def test_a_small_cup_on_millimetre_depth_steps_comes_in_square_to_the_face():
    # A face tilted 10 degrees, its depth in whole millimetres as a structured-light camera gives it: under a
    # 2 mm cup a dozen points and a step of the depth unit; the normal comes from the wider patch around them.
    xy = _grid(0.03)
    tilt = np.radians(10.0)
    depth_m = np.round((0.6 + xy[:, 1] * np.tan(tilt) + np.random.default_rng(1).normal(0, 0.0002, len(xy))) * 1000) / 1000
    face = np.column_stack([xy, depth_m])
    normal = np.array([0.0, -np.sin(tilt), np.cos(tilt)])
    grasps = [assess_suction(face, contact, 0.002, FLATNESS_M) for contact in face[np.linalg.norm(face[:, :2], axis=1) < 0.006][::7]]
    sealing = [grasp for grasp in grasps if grasp.seals]
    assert len(sealing) >= 0.75 * len(grasps)
    for grasp in sealing:
        assert np.degrees(np.arccos(abs(grasp.approach @ normal))) < 8.0


def test_points_too_sparse_for_any_cup_get_no_grasp_and_no_error():
    # Five millimetres apart under a 2 mm cup: no placement has the three points of a plane.
    sparse = np.column_stack([_grid(0.03, spacing_m=0.005), np.full(len(_grid(0.03, spacing_m=0.005)), 0.6)])
    assert suction_grasp(sparse, 0.002, FLATNESS_M) is None
    assert not assess_suction(sparse, sparse[0], 0.002, FLATNESS_M).seals


def test_a_small_cup_on_a_lying_pin_comes_in_along_the_normal_where_it_lands():
    # The top of a 6 mm pin lying across the camera's view, 0.5 mm sampling. A plane through the points round a
    # contact 0.5 mm off the pin's top line is square to that line, 10 degrees off the flank's normal there:
    # half the 20 degrees that a real cup's bellows forgive, and further off, more.
    pin_radius_m, depth_m = 0.003, 0.6
    xy = _grid(0.02, spacing_m=0.0005)
    xy = xy[np.abs(xy[:, 0]) <= 0.0029]
    height_m = np.sqrt(pin_radius_m**2 - xy[:, 0] ** 2)
    pin = np.column_stack([xy, depth_m - height_m + np.random.default_rng(2).normal(0, 0.0001, len(xy))])
    for off_m in (-0.0005, 0.0, 0.0005):
        contact = pin[np.argmin(np.abs(pin[:, 0] - off_m) + np.abs(pin[:, 1]))]
        grasp = assess_suction(pin, contact, 0.0015, FLATNESS_M)
        assert grasp.seals
        normal = np.array([contact[0], 0.0, contact[2] - depth_m])
        normal /= -np.linalg.norm(normal)
        assert np.degrees(np.arccos(grasp.approach @ normal)) < 5.0


def test_a_lone_flying_pixel_past_the_edge_does_not_hold_the_lip():
    # A structured-light camera mixes some pixels of an edge with the surface beyond it: here every third pixel
    # of the column past the plate's edge, a millimetre farther than the plate. The lip's circle reaches 1.4 mm
    # past the edge, where only such a pixel lies within its reach.
    plate = _plate(0.04, noise_m=0.0)
    flying = np.column_stack([np.full(13, 0.021), np.linspace(-0.018, 0.018, 13), np.full(13, 0.601)])
    contact = [0.0214 - RADIUS_M - 0.001, 0.0, 0.6]
    assert not assess_suction(np.vstack([plate, flying]), contact, RADIUS_M, FLATNESS_M).seals
    # A millimetre further in, the lip's circle lies on the plate, and the cup seals.
    assert assess_suction(np.vstack([plate, flying]), [contact[0] - 0.001, 0.0, 0.6], RADIUS_M, FLATNESS_M).seals
