"""A pose refined against the part's model: found again from the starts the network confuses, flips
told apart by the free space they violate, and a confidence that prefers the true pose."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import trimesh
from scipy.spatial.transform import Rotation

from bin_perception.config import load_config
from bin_perception.geometry import backproject, floor_plane
from bin_perception.metrics import rotation_error_deg
from bin_perception.model.refine import START_TURNS, principal_frame, refine_pose, score_pose, start_rotations
from bin_perception.sim.parts import load_part
from bin_perception.sim.scene import BinSimulator


@pytest.fixture(scope="module")
def housings():
    """Three housings (no symmetry) in the real cell under structured light, and the part's surface samples."""
    part = load_part("housing")
    config = dataclasses.replace(load_config(Path(__file__).resolve().parents[1] / "config" / "real_cell.yaml"), sensor="structured_light")
    with BinSimulator(part, 3, config) as simulator:
        sample = simulator.scene(0)
    model_m = trimesh.sample.sample_surface(part.mesh, 1500, seed=0)[0]
    return sample, backproject(sample.depth_m, sample.K), model_m


def _segment(sample, points, instance: int) -> np.ndarray:
    return points[(sample.labels == instance) & np.isfinite(sample.depth_m)]


def _turned(pose: np.ndarray, turn: np.ndarray, degrees=(0.0, 0.0, 0.0), shift_m=(0.0, 0.0, 0.0)) -> np.ndarray:
    turned = pose.copy()
    turned[:3, :3] = pose[:3, :3] @ turn @ Rotation.from_euler("xyz", degrees, degrees=True).as_matrix()
    turned[:3, 3] += shift_m
    return turned


def test_the_starts_are_the_pose_then_its_half_turns_about_the_models_axes(housings):
    _, _, model_m = housings
    rotation = Rotation.from_euler("xyz", [20, -30, 50], degrees=True).as_matrix()
    starts = start_rotations(rotation, model_m, 24)
    assert len(starts) == 24 and np.allclose(starts[0], rotation)
    frame = principal_frame(model_m)
    for k, axis in zip(range(1, 4), np.eye(3)):
        # Half turns about the principal axes: the model's frame turned 180 degrees about one of its own axes.
        turn = rotation.T @ starts[k]
        assert np.isclose(np.degrees(Rotation.from_matrix(turn).magnitude()), 180.0)
        assert np.isclose(abs(Rotation.from_matrix(turn).as_rotvec() @ (frame @ axis)), np.pi)
    assert len({tuple(np.round(t, 6).ravel()) for t in START_TURNS}) == 24
    with pytest.raises(ValueError, match="starts 25"):
        start_rotations(rotation, model_m, 25)


@pytest.mark.parametrize("flip", [0, 1, 2, 3])
def test_refinement_finds_the_pose_again_from_each_confusable_start(housings, flip):
    sample, points, model_m = housings
    frame = principal_frame(model_m)
    for instance in (1, 2):
        truth = sample.poses[instance - 1]
        # The network's kind of error: a face for its opposite, and a few degrees and millimetres besides.
        start = _turned(truth, frame @ START_TURNS[flip] @ frame.T, (10.0, -8.0, 12.0), (0.003, -0.002, 0.002))
        refined = refine_pose(_segment(sample, points, instance), model_m, start, sample.depth_m, sample.K, starts=4)
        assert rotation_error_deg(truth[:3, :3], refined.pose[:3, :3]) < 5.0
        assert np.linalg.norm(refined.pose[:3, 3] - truth[:3, 3]) < 0.002
        assert refined.start == flip


def test_free_space_ranks_a_flipped_pose_below_the_true_one(housings):
    sample, points, model_m = housings
    frame = principal_frame(model_m)
    truth = sample.poses[0]
    segment = _segment(sample, points, 1)
    true_fit = refine_pose(segment, model_m, truth, sample.depth_m, sample.K, starts=1)
    for flip in (1, 2, 3):
        # Refined from the flip alone, ICP fits the flipped part as well as it can.
        flipped = refine_pose(segment, model_m, _turned(truth, frame @ START_TURNS[flip] @ frame.T), sample.depth_m, sample.K, starts=1)
        assert rotation_error_deg(truth[:3, :3], flipped.pose[:3, :3]) > 90.0
        assert flipped.free_space_violation > true_fit.free_space_violation
        assert flipped.score < true_fit.score


def test_the_confidence_is_higher_for_the_true_pose_than_for_a_perturbed_one(housings):
    sample, points, model_m = housings
    for instance in (1, 2, 3):
        truth = sample.poses[instance - 1]
        segment = _segment(sample, points, instance)
        true_score = score_pose(segment, model_m, truth, sample.depth_m, sample.K)
        perturbed = score_pose(segment, model_m, _turned(truth, np.eye(3), (0.0, 0.0, 15.0), (0.004, 0.0, 0.0)), sample.depth_m, sample.K)
        assert 0.5 < true_score.confidence <= 1.0
        assert perturbed.confidence < true_score.confidence - 0.2


def _three_in_the_real_cell(part_name: str, scene: int):
    """Scene ``scene`` of three of a part in the real cell under structured light: the sample, its points, the
    part's surface as coarse as a learned model (512 points) and the bin's floor as a plane."""
    part = load_part(part_name)
    config = dataclasses.replace(load_config(Path(__file__).resolve().parents[1] / "config" / "real_cell.yaml"), sensor="structured_light")
    with BinSimulator(part, 3, config) as simulator:
        sample = simulator.scene(scene)
        floor = floor_plane(simulator.workspace, simulator.camera_from_bin)
    model_m = trimesh.sample.sample_surface(part.mesh, 512, seed=0)[0]
    return sample, backproject(sample.depth_m, sample.K), model_m, floor


def test_a_lever_turned_end_for_end_scores_below_the_true_pose():
    # Turned half round its middle axis, a flat lever lies on its own outline but for its ends, a boss
    # against a bore a few millimetres apart: the fit must be tighter than the model's own spacing.
    sample, points, model_m, _ = _three_in_the_real_cell("lever", 1)
    end_for_end = Rotation.from_euler("y", 180, degrees=True).as_matrix()
    for instance, truth in enumerate(sample.poses, start=1):
        segment = _segment(sample, points, instance)
        if len(segment) < 200:  # one mostly hidden by another says little of its ends
            continue
        true_fit = refine_pose(segment, model_m, truth, sample.depth_m, sample.K, starts=1)
        turned = refine_pose(segment, model_m, _turned(truth, end_for_end), sample.depth_m, sample.K, starts=1)
        assert rotation_error_deg(truth[:3, :3], turned.pose[:3, :3]) > 90.0
        assert turned.score < true_fit.score


def test_a_turn_that_hides_a_brackets_leg_in_the_floor_is_counted_against_it():
    # Lying on one leg, an L-bracket shows the camera that leg alone; turned, its other leg goes up into the free
    # space or down into the floor, where the camera cannot see it. Only the floor tells the second from the truth.
    sample, points, model_m, floor = _three_in_the_real_cell("bracket", 0)
    frame = principal_frame(model_m)
    into_the_floor = 0
    for instance, truth in enumerate(sample.poses, start=1):
        segment = _segment(sample, points, instance)
        true_fit = refine_pose(segment, model_m, truth, sample.depth_m, sample.K, starts=1, floor=floor)
        assert true_fit.under_floor < 0.01  # resting on the floor, not in it
        for flip in (1, 2, 3):
            start = _turned(truth, frame @ START_TURNS[flip] @ frame.T)
            turned = refine_pose(segment, model_m, start, sample.depth_m, sample.K, starts=1, floor=floor)
            unfloored = score_pose(segment, model_m, turned.pose, sample.depth_m, sample.K)
            assert unfloored.under_floor == 0.0 and np.isclose(turned.score, unfloored.score - turned.under_floor)
            if turned.under_floor > 0.2:  # a quarter of the part in the floor: the leg that went down
                into_the_floor += 1
                assert turned.score < true_fit.score and turned.confidence < true_fit.confidence
    # Measured in this bin: two of the three brackets lie on a leg, each with two turns that sink the other.
    assert into_the_floor >= 2
