"""A workspace suggested from one frame holds what stands on the bin's floor inside its walls, in any camera pose."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from bin_perception.config import Config, load_config
from bin_perception.depth_filters import decimate_frame, decimation_factor
from bin_perception.frame import Frame
from bin_perception.geometry import backproject, in_workspace
from bin_perception.metrics import pairwise_scores
from bin_perception.model.observation import Normalization, observe
from bin_perception.sim.parts import load_part
from bin_perception.sim.scene import BinSimulator
from bin_perception.workspace import suggest_workspace


@pytest.mark.parametrize(("part", "instances", "sensor"), [("bolt", 4, "clean"), ("lever", 2, "stereo"), ("bracket", 4, "tof")])
def test_the_suggested_box_is_the_bins_inside_above_its_floor(part, instances, sensor):
    with BinSimulator(load_part(part), instances, Config(sensor=sensor)) as simulator:
        sample = simulator.scene(0)
        truth = simulator.workspace
    box, camera_from_bin = suggest_workspace(Frame(sample.depth_m, sample.K, 0, "camera"))
    assert camera_from_bin is None  # a camera square to its bin gets a box of its own frame
    # Inside the walls by its margin, and just above the floor.
    assert np.all(box[0, :2] >= truth[0, :2] - 0.001) and np.all(box[1, :2] <= truth[1, :2] + 0.001)
    assert np.all(box[1, :2] - box[0, :2] > 0.85 * (truth[1, :2] - truth[0, :2]))
    assert abs(box[1, 2] - truth[1, 2]) < 0.004
    # It keeps nearly all of the parts, and none of the floor.
    points = backproject(sample.depth_m, sample.K)
    kept = in_workspace(points, box)
    parts = (sample.labels > 0) & np.isfinite(sample.depth_m) & (sample.depth_m < 10)  # what the camera measured of them
    assert kept[parts].mean() > 0.9
    floor = (sample.labels == 0) & in_workspace(points, truth) & (points[..., 2] > truth[1, 2] - 0.0005)
    assert not kept[floor].any()


def test_in_a_real_cell_the_bin_is_found_and_not_the_ground_around_it():
    # 848 x 480 structured-light depth 0.6 m over a 200 mm bin on a ground that is deeper still and fills the view.
    config = load_config(Path(__file__).resolve().parents[1] / "config" / "real_cell.yaml")
    with BinSimulator(load_part("nut"), 4, config) as simulator:
        sample = simulator.scene(1)
        truth = simulator.workspace
    box, _ = suggest_workspace(Frame(sample.depth_m, sample.K, 0, "camera"))
    np.testing.assert_allclose(box[:, :2], truth[:, :2], atol=0.003)
    assert abs(box[1, 2] - truth[1, 2]) < 0.005
    # Room above for a pile twice as high as this one, the floor's noise left out.
    pile_top_m = float(np.nanmin(np.where(sample.labels > 0, sample.depth_m, np.nan)))
    assert box[0, 2] < box[1, 2] - 1.9 * (box[1, 2] - pile_top_m)
    kept = in_workspace(backproject(sample.depth_m, sample.K), box)
    assert (kept & (sample.labels == 0)).sum() < 0.1 * kept.sum()


def _real_cell(tilt_deg: float, sensor: str = "structured_light"):
    config = load_config(Path(__file__).resolve().parents[1] / "config" / "real_cell.yaml")
    return dataclasses.replace(config, sensor=sensor, camera=dataclasses.replace(config.camera, tilt_deg=tilt_deg))


def test_a_camera_tilted_30_deg_gets_the_bins_inside_in_the_bins_frame():
    with BinSimulator(load_part("bracket"), 4, _real_cell(30.0)) as simulator:
        sample = simulator.scene(0)
        truth_pose = simulator.camera_from_bin
    box, camera_from_bin = suggest_workspace(Frame(sample.depth_m, sample.K, 0, "camera"))
    assert camera_from_bin is not None
    # The floor's normal is the bin's up, within a degree, and the frame's origin lies on its floor.
    assert np.degrees(np.arccos(camera_from_bin[:3, 2] @ truth_pose[:3, 2])) < 1.0
    origin_in_bin = (camera_from_bin[:3, 3] - truth_pose[:3, 3]) @ truth_pose[:3, :3]
    assert abs(origin_in_bin[2]) < 0.002
    # Its box spans the bin's inside, 200 mm a side, with the strip of floor behind the near wall.
    sides = np.sort(box[1, :2] - box[0, :2])
    assert np.all(sides > 0.185) and np.all(sides < 0.205)
    points = backproject(sample.depth_m, sample.K)
    kept = in_workspace(points, box, camera_from_bin)
    parts = (sample.labels > 0) & np.isfinite(sample.depth_m)
    assert kept[parts].mean() > 0.9
    assert (kept & ~parts).sum() < 0.1 * kept.sum()
    # No box of the camera frame does that: the one around the parts keeps walls or floor too.
    camera_box = np.stack([points[parts].min(axis=0), points[parts].max(axis=0)])
    assert (in_workspace(points, camera_box) & ~parts).sum() > kept.sum()


def _seed_f1(tilt_deg: float, scenes: int) -> list[float]:
    """The seeds' pairwise F1 over bins of four bolts seen at ``tilt_deg``, in the workspace that the first
    frame suggests, each frame decimated as the model observes it."""
    scores = []
    with BinSimulator(load_part("bolt"), 4, _real_cell(tilt_deg)) as simulator:
        for i in range(scenes):
            sample = simulator.scene(i)
            frame = Frame(sample.depth_m, sample.K, 0, "camera", gt_labels=sample.labels)
            if i == 0:
                box, camera_from_bin = suggest_workspace(frame)
            frame = decimate_frame(frame, decimation_factor(frame.depth_m.shape[1], 320))
            normalization = Normalization.from_workspace(box, camera_from_bin)
            obs = observe(frame, box, normalization, 32, seed_instances=4, camera_from_bin=camera_from_bin)
            truth = frame.gt_labels.ravel()[obs.pixels]
            scores.append(pairwise_scores(truth[truth > 0], obs.seeds[truth > 0]).f1)
    return scores


def test_a_camera_tilted_30_deg_gets_the_segments_of_one_square_to_the_bin():
    square, tilted = _seed_f1(0.0, 4), _seed_f1(30.0, 4)
    assert np.mean(square) > 0.95
    assert np.mean(tilted) > np.mean(square) - 0.03
