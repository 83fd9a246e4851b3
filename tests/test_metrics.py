import itertools

import numpy as np
import pytest
import trimesh
from scipy.spatial.transform import Rotation
from sklearn.metrics import pair_confusion_matrix

from bin_perception.config import Config
from bin_perception.geometry import transform_points
from bin_perception.metrics import (
    chamfer_distance,
    model_fidelity,
    model_fidelity_floor,
    pairwise_scores,
    part_diameter,
    pose_errors,
    pose_recalls,
    rotation_error_deg,
    taught_alignment,
)
from bin_perception.sim.parts import load_part
from bin_perception.sim.scene import BinSimulator


def brute_force_pair_counts(true_labels, pred_labels):
    counts = {"tp": 0, "fp": 0, "fn": 0, "tn": 0}
    for a, b in itertools.combinations(range(len(true_labels)), 2):
        same_true, same_pred = true_labels[a] == true_labels[b], pred_labels[a] == pred_labels[b]
        key = {(True, True): "tp", (False, True): "fp", (True, False): "fn", (False, False): "tn"}
        counts[key[same_true, same_pred]] += 1
    return counts


def random_labellings(rng, n, k_true, k_pred):
    return rng.integers(0, k_true, n), rng.integers(0, k_pred, n)


@pytest.mark.parametrize("n, k_true, k_pred", [(1000, 3, 3), (5000, 4, 7), (300, 1, 5), (2000, 9, 1), (50, 40, 40)])
def test_pair_counts_match_sklearn(n, k_true, k_pred):
    rng = np.random.default_rng(n + k_true + k_pred)
    true_labels, pred_labels = random_labellings(rng, n, k_true, k_pred)
    scores = pairwise_scores(true_labels, pred_labels)
    # sklearn counts ordered pairs: every unordered pair twice.
    (tn, fp), (fn, tp) = pair_confusion_matrix(true_labels, pred_labels) // 2
    assert (scores.tp, scores.fp, scores.fn, scores.tn) == (tp, fp, fn, tn)
    assert scores.tp + scores.fp + scores.fn + scores.tn == n * (n - 1) // 2
    assert scores.precision == pytest.approx(tp / (tp + fp))
    assert scores.recall == pytest.approx(tp / (tp + fn))
    assert scores.f1 == pytest.approx(2 * tp / (2 * tp + fp + fn))


@pytest.mark.parametrize("seed", range(5))
def test_pair_counts_match_a_brute_force_count(seed):
    rng = np.random.default_rng(seed)
    true_labels, pred_labels = random_labellings(rng, 60, 1 + seed, 2 + seed % 3)
    scores = pairwise_scores(true_labels, pred_labels)
    assert {"tp": scores.tp, "fp": scores.fp, "fn": scores.fn, "tn": scores.tn} == brute_force_pair_counts(
        true_labels, pred_labels
    )


def test_scores_ignore_label_names_and_swap_precision_with_recall():
    rng = np.random.default_rng(7)
    true_labels, pred_labels = random_labellings(rng, 3000, 4, 5)
    scores = pairwise_scores(true_labels, pred_labels)
    renamed_true = np.array(["a", "b", "c", "d"])[rng.permutation(4)][true_labels]
    renamed_pred = (-10 * rng.permutation(5) + 3)[pred_labels]
    assert pairwise_scores(renamed_true, renamed_pred) == scores
    swapped = pairwise_scores(pred_labels, true_labels)
    assert (swapped.precision, swapped.recall, swapped.fp, swapped.fn) == (
        scores.recall,
        scores.precision,
        scores.fn,
        scores.fp,
    )


def test_a_perfect_labelling_and_the_degenerate_ones():
    truth = np.repeat([1, 2, 3], [40, 30, 30])
    perfect = pairwise_scores(truth, np.repeat([7, 5, 6], [40, 30, 30]))
    assert (perfect.precision, perfect.recall, perfect.f1, perfect.fp, perfect.fn) == (1.0, 1.0, 1.0, 0, 0)

    merged = pairwise_scores(truth, np.ones(100, dtype=int))  # every pair claimed: all true pairs found
    assert merged.recall == 1.0 and merged.tn == 0
    assert merged.precision == pytest.approx((40 * 39 + 2 * 30 * 29) / (100 * 99))

    singletons = pairwise_scores(truth, np.arange(100))  # no pair claimed: no false claim, nothing found
    assert (singletons.precision, singletons.recall, singletons.f1, singletons.tp) == (1.0, 0.0, 0.0, 0)

    nothing_to_find = pairwise_scores(np.arange(100), truth)
    assert (nothing_to_find.precision, nothing_to_find.recall, nothing_to_find.f1) == (0.0, 1.0, 0.0)

    both_singletons = pairwise_scores(np.arange(10), np.arange(10)[::-1])
    assert (both_singletons.precision, both_singletons.recall, both_singletons.f1) == (1.0, 1.0, 1.0)
    single_point = pairwise_scores([3], [9])
    assert (single_point.f1, single_point.tp + single_point.fp + single_point.fn + single_point.tn) == (1.0, 0)


def test_pairwise_scores_never_form_the_pairs_nor_a_dense_table():
    rng = np.random.default_rng(3)
    n = 2_000_000  # 2e12 pairs
    scores = pairwise_scores(rng.integers(0, 4, n), rng.integers(0, 4, n))
    assert scores.tp + scores.fp + scores.fn + scores.tn == n * (n - 1) // 2
    assert scores.f1 == pytest.approx(0.25, abs=1e-3)  # independent labellings of 4 equal classes
    # 200,000 labels a side: a dense contingency table would hold 4e10 cells.
    singletons = pairwise_scores(np.arange(200_000), rng.permutation(200_000))
    assert (singletons.f1, singletons.tn) == (1.0, 200_000 * 199_999 // 2)


def test_pairwise_scores_reject_mismatched_labels():
    with pytest.raises(ValueError, match="true_labels has 3 points but pred_labels has 2"):
        pairwise_scores([1, 1, 2], [1, 2])
    with pytest.raises(ValueError, match="1-D"):
        pairwise_scores(np.ones((2, 3)), np.ones((2, 3)))
    with pytest.raises(ValueError, match="empty"):
        pairwise_scores([], [])


# ---------------------------------------------------------------------------


def rotation_about(axis, angle_deg):
    return Rotation.from_rotvec(np.deg2rad(angle_deg) * np.asarray(axis, dtype=float)).as_matrix()


def turned(poses, R):
    """The poses turned by R in the part frame: each part rotated about its own centre."""
    part_turn = np.eye(4)
    part_turn[:3, :3] = R
    return poses @ part_turn


@pytest.fixture(scope="module")
def nut_scene():
    part = load_part("nut")
    with BinSimulator(part, 3, Config()) as simulator:
        sample = simulator.scene(11)
    surface, _ = trimesh.sample.sample_surface(part.mesh, 1000, seed=2)
    return part, sample.poses, np.asarray(surface)


def test_a_nut_turned_by_its_own_symmetry_has_no_rotation_error(nut_scene):
    part, poses, surface = nut_scene
    assert part.symmetry == "D6"
    for R in (rotation_about([0, 0, 1], 60), rotation_about([0, 0, 1], -120), rotation_about([1, 0, 0], 180)):
        errors = pose_errors(poses, turned(poses, R), surface, part.symmetry)
        np.testing.assert_allclose(errors.rotation_error_deg, 0.0, atol=1e-5)
        np.testing.assert_allclose(errors.translation_error_m, 0.0, atol=1e-12)
        # ADD compares the same model point and sees the turn; ADD-S finds the turned surface in place.
        assert np.all(errors.add_m > 3e-3) and np.all(errors.adds_m < 1e-3)
    turned_30 = pose_errors(poses, turned(poses, rotation_about([0, 0, 1], 30)), surface, "D6")
    np.testing.assert_allclose(turned_30.rotation_error_deg, 30.0, atol=1e-5)
    flipped = pose_errors(poses, turned(poses, rotation_about([1, 0, 0], 180)), surface, "C6")
    np.testing.assert_allclose(flipped.rotation_error_deg, 180.0, atol=1e-5)


def test_a_translation_of_one_centimetre(nut_scene):
    part, poses, surface = nut_scene
    moved = poses.copy()
    moved[:, :3, 3] += 0.01 * np.array([1.0, -2.0, 3.0]) / np.sqrt(14.0)
    errors = pose_errors(poses, moved, surface, part.symmetry)
    np.testing.assert_allclose(errors.translation_error_m, 0.01, rtol=1e-9)
    np.testing.assert_allclose(errors.add_m, 0.01, rtol=1e-9)
    assert np.all(errors.adds_m <= 0.01) and np.all(errors.adds_m > 0.003)
    np.testing.assert_allclose(errors.rotation_error_deg, 0.0, atol=1e-5)


def test_shuffled_predictions_are_matched_back_and_surplus_counted(nut_scene):
    part, poses, surface = nut_scene
    rng = np.random.default_rng(4)
    order = np.array([2, 0, 1])
    noisy = poses[order].copy()
    noisy[:, :3, 3] += rng.normal(scale=0.001, size=(3, 3))
    errors = pose_errors(poses, noisy, surface, part.symmetry)
    np.testing.assert_array_equal(errors.true_index, [0, 1, 2])
    np.testing.assert_array_equal(order[errors.pred_index], errors.true_index)
    assert np.all(errors.translation_error_m < 0.003)
    assert (errors.unmatched_true, errors.unmatched_pred) == (0, 0)

    missing = pose_errors(poses, noisy[:2], surface, part.symmetry)
    np.testing.assert_array_equal(order[missing.pred_index], missing.true_index)
    assert (len(missing.true_index), missing.unmatched_true, missing.unmatched_pred) == (2, 1, 0)

    far = np.eye(4)
    far[:3, 3] = poses[:, :3, 3].mean(axis=0) + [0.5, 0.0, 0.0]
    spurious = pose_errors(poses, np.concatenate([far[None], noisy]), surface, part.symmetry)
    np.testing.assert_array_equal(order[spurious.pred_index - 1], spurious.true_index)
    assert (spurious.unmatched_true, spurious.unmatched_pred) == (0, 1)

    none = pose_errors(poses, np.zeros((0, 4, 4)), surface, part.symmetry)
    assert len(none.rotation_error_deg) == 0 and none.unmatched_true == 3


@pytest.mark.parametrize("symmetry", ["none", "C2", "C6", "D2", "D6"])
def test_a_small_error_survives_any_symmetry_of_the_part(symmetry):
    # pred @ S is the same rendered part for every S in the group; what is left is the small turn.
    rng = np.random.default_rng(len(symmetry))
    order = 1 if symmetry == "none" else int(symmetry[1:])
    for _ in range(20):
        true = Rotation.random(random_state=rng).as_matrix()
        small_deg = rng.uniform(0.5, 10.0)
        axis = rng.normal(size=3)
        S = rotation_about([0, 0, 1], 360.0 * rng.integers(order) / order)
        if symmetry.startswith("D") and rng.random() < 0.5:
            S = S @ rotation_about([1, 0, 0], 180)
        pred = true @ rotation_about(axis / np.linalg.norm(axis), small_deg) @ S.T
        assert rotation_error_deg(true, pred, symmetry) == pytest.approx(small_deg, abs=1e-6)


def test_continuous_symmetry_measures_the_axis_alone():
    rng = np.random.default_rng(5)
    true = Rotation.random(3, random_state=rng).as_matrix()
    spun = true @ rotation_about([0, 0, 1], 77)
    tilted = true @ rotation_about([1, 0, 0], 20) @ rotation_about([0, 0, 1], -140)
    flipped = true @ rotation_about([0, 1, 0], 180)
    np.testing.assert_allclose(rotation_error_deg(true, spun, "Cinf"), 0.0, atol=1e-6)
    np.testing.assert_allclose(rotation_error_deg(true, tilted, "Cinf"), 20.0, atol=1e-6)
    np.testing.assert_allclose(rotation_error_deg(true, flipped, "Cinf"), 180.0, atol=1e-6)
    np.testing.assert_allclose(rotation_error_deg(true, flipped, "Dinf"), 0.0, atol=1e-6)
    flipped_and_tilted = flipped @ rotation_about([1, 0, 0], 20)
    np.testing.assert_allclose(rotation_error_deg(true, flipped_and_tilted, "Dinf"), 20.0, atol=1e-6)
    np.testing.assert_allclose(rotation_error_deg(true, spun, "none"), 77.0, atol=1e-6)


def test_pose_errors_reject_bad_inputs(nut_scene):
    _, poses, surface = nut_scene
    with pytest.raises(ValueError, match="unknown symmetry 'D'"):
        pose_errors(poses, poses, surface, "D")
    with pytest.raises(ValueError, match="unknown symmetry 'C0'"):
        rotation_error_deg(np.eye(3), np.eye(3), "C0")
    with pytest.raises(ValueError, match=r"pred_poses must be \(N, 4, 4\)"):
        pose_errors(poses, poses[:, :3], surface)
    scaled = poses.copy()
    scaled[0, :3, :3] *= 1.01
    with pytest.raises(ValueError, match="pred_poses.*proper rotations"):
        pose_errors(poses, scaled, surface)
    mirrored = poses.copy()
    mirrored[1, :3, 0] *= -1
    with pytest.raises(ValueError, match="true_poses.*proper rotations"):
        pose_errors(mirrored, poses, surface)
    with pytest.raises(ValueError, match="model_points"):
        pose_errors(poses, poses, surface[:, :2])


# ---------------------------------------------------------------------------


def test_chamfer_distance_is_eq_4_1():
    a = np.zeros((1, 3))
    b = np.array([[1.0, 0, 0], [0, 3.0, 0]])
    # a to b: 1; b to a: (1 + 3) / 2 = 2; the larger of the two.
    assert chamfer_distance(a, b) == chamfer_distance(b, a) == 2.0
    with pytest.raises(ValueError, match="points_b must be a non-empty"):
        chamfer_distance(a, np.zeros((0, 3)))


def random_rigid(rng):
    T = np.eye(4)
    T[:3, :3] = Rotation.random(random_state=rng).as_matrix()
    T[:3, 3] = rng.uniform(-0.2, 0.2, 3)
    return T


def surface_points(mesh, count, seed):
    return np.asarray(trimesh.sample.sample_surface(mesh, count, seed=seed)[0])


def test_the_parts_own_surface_in_any_pose_is_faithful():
    part = load_part("nut")
    rng = np.random.default_rng(8)
    samples = surface_points(part.mesh, 2000, seed=3)
    model_from_part = random_rigid(rng)
    fidelity = model_fidelity(transform_points(model_from_part, samples), part.mesh)
    assert fidelity.chamfer_m < 1e-3
    R = fidelity.part_from_model[:3, :3]
    np.testing.assert_allclose(R.T @ R, np.eye(3), atol=1e-9)
    assert np.linalg.det(R) == pytest.approx(1.0)
    np.testing.assert_allclose(
        fidelity.aligned_points, transform_points(fidelity.part_from_model @ model_from_part, samples), atol=1e-12
    )
    # The alignment undoes the pose up to one of the nut's own symmetries.
    recovered = fidelity.part_from_model @ model_from_part
    assert rotation_error_deg(np.eye(3), recovered[:3, :3], part.symmetry) < 2.0
    assert np.linalg.norm(recovered[:3, 3]) < 5e-4


def test_a_model_of_few_points_is_held_to_the_floor_of_its_sampling():
    mesh = load_part("housing").mesh
    floor_512, floor_2048 = model_fidelity_floor(mesh, 512), model_fidelity_floor(mesh, 2048)
    # Four times the points, half the spacing and half the floor.
    assert 1.2e-3 < floor_512 < 1.8e-3 and 0.4 < floor_2048 / floor_512 < 0.6, (floor_512, floor_2048)
    # 512 points exactly on the surface: accurate to the surface samples' own spacing, and as far from covering the
    # part as the floor says (drawn at random rather than evenly, a little further).
    fidelity = model_fidelity(surface_points(mesh, 512, seed=2), mesh)
    assert fidelity.model_to_surface_m < 0.4e-3 and fidelity.chamfer_m == fidelity.surface_to_model_m
    assert floor_512 <= fidelity.chamfer_m < 1.3 * floor_512, (fidelity.chamfer_m, floor_512)


def test_a_box_of_the_parts_size_is_not_an_elongated_part():
    part = load_part("lever")
    rng = np.random.default_rng(9)
    true_shape = model_fidelity(transform_points(random_rigid(rng), surface_points(part.mesh, 2000, 4)), part.mesh)
    box = trimesh.creation.box(extents=part.mesh.extents)  # the lever's bounding box, bend and bores filled in
    stand_in = model_fidelity(transform_points(random_rigid(rng), surface_points(box, 2000, 5)), part.mesh)
    assert stand_in.chamfer_m > 2 * true_shape.chamfer_m


def test_a_mirror_image_cannot_be_aligned_onto_a_chiral_part():
    part = load_part("housing")  # no plane of symmetry
    samples = surface_points(part.mesh, 2000, seed=6)
    true_shape = model_fidelity(samples, part.mesh)
    mirrored = model_fidelity(samples * [-1.0, 1.0, 1.0], part.mesh)
    assert np.linalg.det(mirrored.part_from_model[:3, :3]) == pytest.approx(1.0)
    assert mirrored.chamfer_m > 1.5 * true_shape.chamfer_m


def test_model_fidelity_rejects_a_bad_model():
    mesh = load_part("nut").mesh
    with pytest.raises(ValueError, match="model_points must be a non-empty"):
        model_fidelity(np.zeros((10, 2)), mesh)
    with pytest.raises(ValueError, match="non-finite"):
        model_fidelity(np.full((10, 3), np.nan), mesh)


# BOP's measures, against cases worked by hand.
_BOX = np.array([[x, y, z] for x in (-0.02, 0.02) for y in (-0.01, 0.01) for z in (-0.005, 0.005)])
_K640 = np.array([[600.0, 0.0, 319.5], [0.0, 600.0, 239.5], [0.0, 0.0, 1.0]])


def _at(z_m: float, x_m: float = 0.0, turn_deg: float = 0.0) -> np.ndarray:
    pose = np.eye(4)
    pose[:3, :3] = Rotation.from_euler("z", turn_deg, degrees=True).as_matrix()
    pose[:3, 3] = (x_m, 0.0, z_m)
    return pose[None]


def test_the_diameter_is_the_widest_pair_of_points():
    assert part_diameter(_BOX) == pytest.approx(np.sqrt(0.04**2 + 0.02**2 + 0.01**2))


def test_a_perfect_pose_scores_every_recall():
    errors = pose_errors(_at(0.5), _at(0.5), _BOX, K=_K640)
    assert errors.mssd_m[0] == pytest.approx(0.0, abs=1e-12) and errors.mspd_px[0] == pytest.approx(0.0, abs=1e-9)
    recalls = pose_recalls([errors], part_diameter(_BOX), "none", image_width_px=640)
    assert (recalls.add_recall, recalls.ar_mssd, recalls.ar_mspd, recalls.ar) == (1.0, 1.0, 1.0, 1.0)
    assert recalls.rotation_median_deg == pytest.approx(0.0, abs=1e-6) and recalls.rotation_under_5deg == 1.0


def test_a_shift_by_a_fifth_of_the_diameter_passes_the_thresholds_above_it():
    diameter = part_diameter(_BOX)
    shift = 0.2 * diameter
    errors = pose_errors(_at(0.5), _at(0.5, x_m=shift), _BOX, K=_K640)
    # Every point moves by the shift; in the image the nearest points (z = 0.495 m) move the most.
    assert errors.mssd_m[0] == pytest.approx(shift)
    assert errors.mspd_px[0] == pytest.approx(600.0 * shift / 0.495)  # 11.1 px
    recalls = pose_recalls([errors], diameter, "none", image_width_px=640)
    assert recalls.add_recall == 0.0  # ADD is the shift, twice the 10 % bar
    assert recalls.ar_mssd == pytest.approx(0.6)  # under 25 %, 30 %, ... 50 % of the diameter: 6 of 10
    assert recalls.ar_mspd == pytest.approx(0.8)  # under 15, 20, ... 50 px: 8 of 10
    assert recalls.ar == pytest.approx(0.7)
    # At twice the width the pixel thresholds double, 10 to 100 px: 11.1 px passes 9 of them.
    assert pose_recalls([errors], diameter, "none", image_width_px=1280).ar_mspd == pytest.approx(0.9)


def test_a_part_turned_by_its_own_symmetry_is_right():
    plate = np.array([[x, y, z] for x in (-0.01, 0.01) for y in (-0.01, 0.01) for z in (-0.002, 0.002)])
    symmetric = pose_errors(_at(0.5), _at(0.5, turn_deg=90.0), plate, "C4", K=_K640)
    assert symmetric.mssd_m[0] == pytest.approx(0.0, abs=1e-9) and symmetric.mspd_px[0] == pytest.approx(0.0, abs=1e-6)
    assert symmetric.rotation_error_deg[0] == pytest.approx(0.0, abs=1e-6)
    # Without the symmetry, each corner lands on its neighbour, 20 mm away.
    assert pose_errors(_at(0.5), _at(0.5, turn_deg=90.0), plate, "none").mssd_m[0] == pytest.approx(0.02)
    # A spin about the axis of a part of continuous symmetry, sampled as the BOP toolkit samples it.
    ring = np.array([[0.01 * np.cos(a), 0.01 * np.sin(a), h] for a in np.linspace(0, 2 * np.pi, 90, endpoint=False) for h in (-0.01, 0.01)])
    spun = pose_errors(_at(0.5), _at(0.5, turn_deg=37.0), ring, "Cinf")
    assert spun.mssd_m[0] < 0.01 * part_diameter(ring)


def test_an_instance_without_a_pose_is_a_miss_in_every_recall():
    found = pose_errors(_at(0.5), _at(0.5), _BOX, K=_K640)
    missed = pose_errors(np.concatenate([_at(0.5), _at(0.6, x_m=0.1)]), _at(0.5), _BOX, K=_K640)
    assert missed.unmatched_true == 1
    recalls = pose_recalls([found, missed], part_diameter(_BOX), "none", image_width_px=640)
    assert recalls.instances == 3
    assert recalls.add_recall == pytest.approx(2 / 3) and recalls.ar == pytest.approx(2 / 3)
    assert recalls.rotation_p90_deg == pytest.approx(180.0 - 0.2 * 180.0, rel=0.01)  # a miss counts 180 deg
    with pytest.raises(ValueError, match="no true instances"):
        pose_recalls([], part_diameter(_BOX), "none")


def test_the_top_pick_and_the_reliability_table_follow_the_confidences():
    truth = np.concatenate([_at(0.5), _at(0.5, x_m=0.1)])
    # The first pose exact, the second a quarter turn off (ADD far above 10 % of the diameter).
    predicted = np.concatenate([_at(0.5), _at(0.5, x_m=0.1, turn_deg=90.0)])
    errors = pose_errors(truth, predicted, _BOX, K=_K640)
    confident_right = np.array([0.9, 0.3])  # the most confident pose is the right one
    confident_wrong = np.array([0.2, 0.8])  # the most confident pose is the wrong one
    recalls = pose_recalls([errors, errors], part_diameter(_BOX), "none", 640, [confident_right, confident_wrong])
    assert recalls.top_pick == 0.5
    rows = {(round(low, 1), round(high, 1)): (count, right) for low, high, count, right in recalls.reliability}
    assert rows[(0.8, 1.0)] == (2, 0.5) and rows[(0.2, 0.4)] == (2, 0.5) and rows[(0.4, 0.6)][0] == 0


def test_the_axis_error_leaves_out_the_turn_about_the_symmetry_axis():
    hexagon = np.array([[0.008 * np.cos(a), 0.008 * np.sin(a), h] for a in np.radians(np.arange(0, 360, 60)) for h in (-0.004, 0.004)])
    tilted = np.eye(4)
    # A hex turned 20 degrees about its axis, and the axis tipped 3 degrees about x.
    tilted[:3, :3] = Rotation.from_euler("xz", [3.0, 20.0], degrees=True).as_matrix()
    tilted[:3, 3] = (0.0, 0.0, 0.5)
    errors = pose_errors(_at(0.5), tilted[None], hexagon, "D6")
    assert errors.rotation_error_deg[0] == pytest.approx(20.2, abs=0.1)
    assert errors.axis_error_deg[0] == pytest.approx(3.0)
    # Upside down is the same axis for a D group; the miss counts 180 degrees, so the median of three is the middle one.
    flipped = np.concatenate([_at(0.5), _at(0.6, x_m=0.1)])
    upside_down = _at(0.5) @ np.diag([1.0, -1.0, -1.0, 1.0])
    recalls = pose_recalls([errors, pose_errors(flipped, upside_down, hexagon, "D6")], part_diameter(hexagon), "D6")
    assert recalls.axis_median_deg == pytest.approx(3.0)
    assert pose_recalls([errors], part_diameter(hexagon), "none").axis_median_deg is None
    assert np.isnan(pose_errors(_at(0.5), tilted[None], hexagon, "none").axis_error_deg).all()


def _part_from_model(rng) -> np.ndarray:
    T = random_rigid(rng)
    T[:3, 3] *= 0.05  # a model's centre lies within a few millimetres of the part's
    return T


@pytest.mark.parametrize("symmetry", ["none", "C6"])
def test_the_frames_poses_teach_the_map_that_the_shape_could_not_tell(nut_scene, symmetry):
    """A model whose shape ties its alignment with that alignment turned end for end: the poses of held-out
    frames choose the right one, and refine it to within their noise, whatever symmetry each pose is given in."""
    _, true_poses, surface = nut_scene
    rng = np.random.default_rng(4)
    part_from_model = _part_from_model(rng)
    group = [rotation_about([0, 0, 1], 60 * k) for k in range(6)] if symmetry == "C6" else [np.eye(3)]
    true_frames, pred_frames = [], []
    for _ in range(8):
        noise = np.stack([turned(np.eye(4)[None], rotation_about(rng.normal(size=3), rng.normal(0, 3)))[0] for _ in true_poses])
        noise[:, :3, 3] = rng.normal(0, 0.0005, (len(true_poses), 3))
        # camera_from_model = camera_from_part @ S @ part_from_model, up to a few degrees and half a millimetre.
        spins = np.stack([turned(np.eye(4)[None], group[rng.integers(len(group))])[0] for _ in true_poses])
        true_frames.append(true_poses)
        pred_frames.append(true_poses @ spins @ part_from_model @ noise)
    flipped = part_from_model @ turned(np.eye(4)[None], rotation_about([1, 0, 0], 180))[0]
    off = part_from_model.copy()
    off[:3, :3] = off[:3, :3] @ rotation_about([0, 1, 0], 12)
    taught = taught_alignment(true_frames, pred_frames, np.stack([flipped, off]), surface, symmetry)
    assert rotation_error_deg(part_from_model[:3, :3], taught[:3, :3], symmetry) < 1.5
    assert np.linalg.norm(taught[:3, 3] - part_from_model[:3, 3]) < 5e-4
    # With the flip alone to choose from, it is refined only within reach of the flip: the poses do not
    # invent a map the shape never offered.
    stuck = taught_alignment(true_frames, pred_frames, flipped[None], surface, symmetry)
    assert rotation_error_deg(part_from_model[:3, :3], stuck[:3, :3], symmetry) > 150


def test_taught_alignment_rejects_bad_input(nut_scene):
    _, true_poses, surface = nut_scene
    with pytest.raises(ValueError, match="candidates"):
        taught_alignment([true_poses], [true_poses], np.eye(4), surface)
    with pytest.raises(ValueError, match="one of each per frame"):
        taught_alignment([true_poses], [], np.eye(4)[None], surface)
    # No frame with both a true and a predicted pose: the first candidate stands.
    assert np.array_equal(taught_alignment([true_poses], [np.empty((0, 4, 4))], np.eye(4)[None], surface), np.eye(4))
