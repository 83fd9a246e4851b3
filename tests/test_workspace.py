"""A workspace suggested from one frame holds what stands on the bin's floor inside its walls."""

from pathlib import Path

import numpy as np
import pytest

from bin_perception.config import Config, load_config
from bin_perception.frame import Frame
from bin_perception.geometry import backproject, in_workspace
from bin_perception.sim.parts import load_part
from bin_perception.sim.scene import BinSimulator
from bin_perception.workspace import suggest_workspace


@pytest.mark.parametrize(("part", "instances", "sensor"), [("bolt", 4, "clean"), ("lever", 2, "stereo"), ("bracket", 4, "tof")])
def test_the_suggested_box_is_the_bins_inside_above_its_floor(part, instances, sensor):
    with BinSimulator(load_part(part), instances, Config(sensor=sensor)) as simulator:
        sample = simulator.scene(0)
        truth = simulator.workspace
    box = suggest_workspace(Frame(sample.depth_m, sample.K, 0, "camera"))
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


def test_a_tilted_camera_is_refused_with_its_tilt():
    # A floor seen at 30 degrees: no box of the camera frame crops it.
    v, u = np.mgrid[0:240, 0:320]
    K = np.array([[300.0, 0.0, 160.0], [0.0, 300.0, 120.0], [0.0, 0.0, 1.0]])
    normal = np.array([0.0, np.sin(np.radians(30)), -np.cos(np.radians(30))])
    rays = np.stack([(u - 160) / 300, (v - 120) / 300, np.ones_like(u, dtype=float)], axis=-1)
    depth_m = (0.6 * -normal[2] / -(rays @ normal)).astype(np.float32)  # the plane normal . p = -0.6 cos 30
    with pytest.raises(ValueError, match="tilted 30 deg"):
        suggest_workspace(Frame(depth_m, K, 0, "camera"))


def test_in_a_real_cell_the_bin_is_found_and_not_the_ground_around_it():
    # 848 x 480 structured-light depth 0.6 m over a 200 mm bin on a ground that is deeper still and fills the view.
    config = load_config(Path(__file__).resolve().parents[1] / "config" / "real_cell.yaml")
    with BinSimulator(load_part("nut"), 4, config) as simulator:
        sample = simulator.scene(1)
        truth = simulator.workspace
    box = suggest_workspace(Frame(sample.depth_m, sample.K, 0, "camera"))
    np.testing.assert_allclose(box[:, :2], truth[:, :2], atol=0.003)
    assert abs(box[1, 2] - truth[1, 2]) < 0.005 and box[0, 2] < truth[1, 2] - 0.05
