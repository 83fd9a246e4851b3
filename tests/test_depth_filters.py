"""Frames larger than the perception needs: decimated down, labels back up, the geometry kept."""

import numpy as np

from bin_perception.depth_filters import decimate_depth, decimate_frame, decimated_intrinsics, decimation_factor, upsampled_labels
from bin_perception.frame import Frame
from bin_perception.geometry import backproject

K = np.array([[600.0, 0.0, 423.5], [0.0, 600.0, 239.5], [0.0, 0.0, 1.0]])


def test_the_factor_brings_the_width_under_the_limit():
    assert decimation_factor(224, 320) == 1
    assert decimation_factor(640, 320) == 2
    assert decimation_factor(848, 320) == 3
    assert decimation_factor(1280, 320) == 4


def test_a_block_is_the_median_of_its_valid_depths():
    depth_m = np.array([[0.5, 0.5, 0.6, np.nan], [0.5, 9.0, np.nan, np.nan]], dtype=np.float32)
    # One flying pixel does not move its block; invalid pixels do not lower one; an empty block stays empty.
    np.testing.assert_array_equal(decimate_depth(depth_m, 2), np.array([[0.5, 0.6]], dtype=np.float32))
    assert np.isnan(decimate_depth(np.full((2, 2), np.nan, np.float32), 2)).all()


def test_the_small_frame_back_projects_where_the_full_one_does():
    rng = np.random.default_rng(0)
    depth_m = np.full((480, 848), 0.6, dtype=np.float32) + rng.normal(0, 1e-4, (480, 848)).astype(np.float32)
    frame = Frame(depth_m, K, stamp_ns=1, frame_id="camera")
    small = decimate_frame(frame, 4)
    assert small.depth_m.shape == (120, 212)
    # The small pixel (u', v') is the block whose centre is the full pixel (4 u' + 1.5, 4 v' + 1.5).
    full_points = backproject(depth_m, K)
    block_centre = full_points[1:3, 1:3].reshape(-1, 3).mean(0)
    np.testing.assert_allclose(backproject(small.depth_m, small.K)[0, 0], block_centre, atol=2e-4)
    np.testing.assert_allclose(decimated_intrinsics(K, 1), K)


def test_labels_go_back_to_every_pixel_of_their_block_that_the_full_frame_keeps():
    labels = np.array([[1, 2], [0, 3]], dtype=np.uint16)
    keep = np.ones((5, 5), dtype=bool)
    keep[0, 0] = False
    full = upsampled_labels(labels, 2, (5, 5), keep)
    assert full.shape == (5, 5) and full[0, 0] == 0 and full[0, 1] == 1 and full[1, 3] == 2 and full[3, 3] == 3
    assert not full[4].any() and not full[:, 4].any()  # the rows and columns a block did not cover


def _same_bin_at(width_px: int, height_px: int, seed: int = 3):
    import dataclasses

    from bin_perception.config import Config
    from bin_perception.sim.parts import load_part
    from bin_perception.sim.scene import BinSimulator

    fx_px = 194.0 * width_px / 224
    base = Config()
    with BinSimulator(load_part("nut"), 3, base) as reference:
        above_rim_m = float(reference.world_from_camera[2, 3] - reference.wall_height_m)
    camera = dataclasses.replace(
        base.camera, width_px=width_px, height_px=height_px, fx_px=fx_px, fy_px=fx_px,
        cx_px=(width_px - 1) / 2, cy_px=(height_px - 1) / 2, height_above_rim_m=above_rim_m,
    )
    with BinSimulator(load_part("nut"), 3, dataclasses.replace(base, camera=camera)) as simulator:
        sample = simulator.scene(seed)
        return Frame(sample.depth_m, sample.K, seed, "camera", gt_labels=sample.labels), simulator.workspace


def test_a_large_frame_gives_the_segments_of_a_small_one_up_to_resolution():
    from bin_perception.config import ModelConfig
    from bin_perception.metrics import label_image_scores
    from bin_perception.model import BinPerception

    small, workspace = _same_bin_at(640, 480)
    large, _ = _same_bin_at(1280, 720)
    # The seeds' segments need no trained network: the per-seed model's labels are its seeds'.
    perception = BinPerception(3, workspace, ModelConfig(input_size_px=32, segmentation="seeds")).eval()
    assert perception.decimation(small) == 2 and perception.decimation(large) == 4
    small_labels, large_labels = perception.predict(small).labels, perception.predict(large).labels
    assert large_labels.shape == (720, 1280) and small_labels.shape == (480, 640)
    # Each segments the bin as its truth does: the resolution changes the pixels, not the segments.
    assert label_image_scores(small.gt_labels, small_labels).f1 > 0.9
    assert label_image_scores(large.gt_labels, large_labels).f1 > 0.9


def _real_cell_frames(part: str, scenes: int):
    from pathlib import Path

    from bin_perception.config import load_config
    from bin_perception.sim.parts import load_part
    from bin_perception.sim.scene import BinSimulator

    config = load_config(Path(__file__).resolve().parents[1] / "config" / "real_cell.yaml")
    with BinSimulator(load_part(part), 4, config) as simulator:
        samples = [simulator.scene(i) for i in range(scenes)]
        workspace = simulator.workspace
    return [Frame(s.depth_m, s.K, i, "camera", gt_labels=s.labels) for i, s in enumerate(samples)], workspace


def test_a_real_camera_is_observed_in_its_bins_region_at_its_own_resolution():
    from bin_perception.config import ModelConfig
    from bin_perception.metrics import label_image_scores
    from bin_perception.model import BinPerception
    from bin_perception.model.observation import workspace_mask

    (frame,), workspace = _real_cell_frames("nut", 1)
    perception = BinPerception(4, workspace, ModelConfig(input_size_px=32, segmentation="seeds")).eval()
    rows, cols = perception.observed_region(frame)
    # 0.7 m from the floor, the 200 mm bin is a quarter of the 848 x 480 image's width: that region alone
    # is observed, undecimated, and nothing of the workspace lies outside it.
    assert (cols.stop - cols.start) < 848 / 3 and (rows.stop - rows.start) < 480 / 2
    assert perception.decimation(frame) == 1
    inside = workspace_mask(frame, workspace)
    outside = np.ones_like(inside)
    outside[rows, cols] = False
    assert inside.any() and not inside[outside].any()
    prediction = perception.predict(frame)
    assert prediction.labels.shape == (480, 848)
    # Each nut, 18 mm across, keeps the pixels the camera gave it.
    assert np.bincount(prediction.point_labels)[1:].min() > 60
    assert label_image_scores(frame.gt_labels, prediction.labels).f1 > 0.95


def test_the_part_is_measured_through_a_structured_light_cameras_holes_and_noise():
    from bin_perception.config import ModelConfig
    from bin_perception.model import BinPerception
    from bin_perception.sim.parts import load_part

    frames, workspace = _real_cell_frames("nut", 12)
    perception = BinPerception(4, workspace, ModelConfig(method="per_seed", input_size_px=32))
    size = perception.measure_part_size(frames)
    assert size is not None
    assert abs(size.extent - load_part("nut").max_extent_m) < 0.15 * load_part("nut").max_extent_m


def test_a_thin_part_within_the_floors_noise_margin_is_kept_whole_and_the_floor_left_out():
    from bin_perception.model.observation import workspace_mask

    # The bracket's plates stand 3 mm over the floor; the real cell's box, 3 sigma of structured light's
    # noise over it, cuts each plate into specks.
    frames, workspace = _real_cell_frames("bracket", 2)
    for frame in frames:
        part = frame.gt_labels > 0
        boxed = workspace_mask(frame, workspace)
        followed = workspace_mask(frame, workspace, floor_band_m=0.001)
        assert followed[boxed].all()
        assert followed[part].mean() > boxed[part].mean() + 0.15
        assert (~part[followed]).mean() < 0.01
