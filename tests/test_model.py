import json

import numpy as np
import open3d as o3d
import pytest
import torch
import trimesh

from bin_perception.config import Config, ModelConfig
from bin_perception.frame import Frame
from bin_perception.geometry import backproject, in_workspace, parse_bin_pose, transform_points
from bin_perception.model import BinPerception, CheckpointError, load_checkpoint, save_checkpoint
from bin_perception.model.chamfer import _nearest_chunked, chamfer_distance
from bin_perception.model.hpr import HPR_EXPONENTS, flip_radius, visible_mask, visible_points
from bin_perception.model.observation import Normalization
from bin_perception.model.rotations import PARAMS_PER_ROTATION, about_optical_axis, matrix_to_params, params_to_matrix
from bin_perception.model.seeds import PartSize
from bin_perception.model.segment import transfer_labels
from bin_perception.sim.parts import load_part
from bin_perception.sim.scene import BinSimulator


@pytest.fixture(scope="module")
def nut_scene():
    part = load_part("nut")
    with BinSimulator(part, 3, Config()) as simulator:
        return part, simulator.scene(11), simulator.workspace


def _scene_cloud(part, sample, points_per_instance=1500):
    surface, _ = trimesh.sample.sample_surface(part.mesh, points_per_instance, seed=0)
    clouds = [transform_points(pose, surface) for pose in sample.poses]
    return np.vstack(clouds), np.repeat(np.arange(1, len(clouds) + 1), points_per_instance)


@pytest.mark.parametrize("exponent", [e for e in HPR_EXPONENTS if e is not None])
def test_hpr_marks_the_same_points_visible_as_open3d(nut_scene, exponent):
    part, sample, _ = nut_scene
    cloud, _ = _scene_cloud(part, sample)
    camera = np.zeros(3)
    radius = flip_radius(cloud, camera, exponent)
    ours = visible_points(cloud, camera, radius)
    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(cloud))
    _, theirs_index = pcd.hidden_point_removal(camera, radius)
    theirs = np.zeros(len(cloud), dtype=bool)
    theirs[theirs_index] = True
    np.testing.assert_array_equal(ours, theirs)
    assert 0.1 < ours.mean() < 0.9  # really hides something, really shows something


def test_hpr_lets_one_instance_hide_another_and_batches(nut_scene):
    part, _, _ = nut_scene
    surface, _ = trimesh.sample.sample_surface(part.mesh, 1500, seed=0)
    # Two nuts on one line of sight: the far one is mostly behind the near one.
    cloud = np.vstack([surface + (0.0, 0.0, 0.05), surface + (0.004, 0.0, 0.07)])
    ids = np.repeat([1, 2], 1500)
    camera = np.zeros(3)
    radius = flip_radius(cloud, camera, 2.9)
    together = visible_points(cloud, camera, radius)
    alone = np.concatenate([visible_points(cloud[ids == i], camera, radius) for i in (1, 2)])
    # A hull vertex of the whole scene is a hull vertex of its own instance, so
    # with one flipping radius nothing hidden alone shows up together.
    assert not np.any(together & ~alone)
    assert together[ids == 2].sum() < 0.3 * alone[ids == 2].sum()
    assert together[ids == 1].sum() == alone[ids == 1].sum()
    batch = visible_mask(np.stack([cloud, cloud[::-1]]), camera, 2.9)
    np.testing.assert_array_equal(batch[0], together)
    np.testing.assert_array_equal(batch[1], together[::-1])
    assert visible_mask(cloud[None], camera, None).all()


@pytest.mark.parametrize("use_mask", [False, True])
def test_chamfer_matches_brute_force_in_value_and_gradient(use_mask):
    generator = torch.Generator().manual_seed(0)
    observed = torch.randn(3, 300, 3, generator=generator, dtype=torch.float64, requires_grad=True)
    predicted = torch.randn(3, 200, 3, generator=generator, dtype=torch.float64, requires_grad=True)
    mask = torch.rand(3, 200, generator=generator) > 0.4 if use_mask else torch.ones(3, 200, dtype=torch.bool)

    def brute(a, b):
        out = []
        for i in range(len(a)):
            d = torch.cdist(a[i], b[i][mask[i]])
            out.append(torch.maximum(d.min(1).values.mean(), d.min(0).values.mean()))
        return torch.stack(out)

    ours = chamfer_distance(observed, predicted, mask if use_mask else None)
    reference = brute(observed, predicted)
    torch.testing.assert_close(ours, reference)
    weights = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    grads = torch.autograd.grad((ours * weights).sum(), (observed, predicted))
    grads_ref = torch.autograd.grad((brute(observed, predicted) * weights).sum(), (observed, predicted))
    for g, r in zip(grads, grads_ref):
        torch.testing.assert_close(g, r)
    # The GPU path (chunked brute force) finds the same neighbours, computed here on the CPU.
    from bin_perception.model.chamfer import _nearest_kdtree

    chunked = _nearest_chunked(observed, predicted, mask if use_mask else None, chunk_rows=64)
    tree = _nearest_kdtree(observed, predicted, mask if use_mask else None)
    torch.testing.assert_close(chunked[0], tree[0])
    torch.testing.assert_close(chunked[1][mask], tree[1][mask])


@pytest.mark.parametrize("representation", list(PARAMS_PER_ROTATION))
def test_rotation_representations_round_trip(representation):
    generator = torch.Generator().manual_seed(1)
    q = torch.nn.functional.normalize(torch.randn(200, 4, generator=generator, dtype=torch.float64), dim=-1)
    R = params_to_matrix(q, "quaternion")
    torch.testing.assert_close(R @ R.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(200, 3, 3))
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(200, dtype=torch.float64))
    params = matrix_to_params(R, representation)
    assert params.shape[-1] == PARAMS_PER_ROTATION[representation]
    torch.testing.assert_close(params_to_matrix(params, representation), R)


def test_segmentation_is_perfect_from_true_poses_and_the_true_mesh(nut_scene):
    part, sample, workspace = nut_scene
    points = backproject(sample.depth_m, sample.K)
    inside = in_workspace(points, workspace) & (sample.labels > 0)
    observed, truth = points[inside], sample.labels[inside]
    predicted, ids = _scene_cloud(part, sample, points_per_instance=4000)
    visible = visible_points(predicted, np.zeros(3), flip_radius(predicted, np.zeros(3), 2.9))
    labels = transfer_labels(observed, predicted[visible], ids[visible])
    assert np.mean(labels == truth) > 0.995


def test_checkpoints_round_trip_and_refuse_what_does_not_fit(tmp_path, nut_scene):
    _, sample, workspace = nut_scene
    config = ModelConfig(input_size_px=64, model_points=128, observed_points=256)
    perception = BinPerception(3, workspace, config, seed=3)
    path = tmp_path / "run" / "checkpoint.pt"
    save_checkpoint(path, perception, {"step": 7}, {"step": 7})
    loaded, state, metadata = load_checkpoint(path)
    assert state["step"] == 7 and metadata["instances"] == 3
    frame = Frame(sample.depth_m, sample.K, 1, "cam")
    a, b = perception.eval().predict(frame), loaded.eval().predict(frame)
    np.testing.assert_allclose(a.poses, b.poses)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert set(np.unique(a.labels)) <= {0, 1, 2, 3}
    # A workspace in the bin's frame travels with the checkpoint.
    tilted = parse_bin_pose("0,0,0.7,0.9659258,0,0,0.2588190")
    perception.set_workspace(workspace, tilted)
    save_checkpoint(path, perception)
    np.testing.assert_allclose(load_checkpoint(path)[0].camera_from_bin, tilted, atol=1e-6)
    (tmp_path / "run" / "checkpoint.json").unlink()
    with pytest.raises(CheckpointError, match="sidecar checkpoint.json is missing"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="no such file"):
        load_checkpoint(tmp_path / "none.pt")


def test_the_seeded_part_size_round_trips_and_old_checkpoints_keep_their_extent(nut_scene):
    _, _, workspace = nut_scene
    perception = BinPerception(3, workspace, ModelConfig(method="per_seed", input_size_px=64, model_points=64))
    perception.part_size_m = PartSize(0.046, (0.045, 0.015, 0.012))
    metadata = json.loads(json.dumps(perception.metadata()))
    assert BinPerception.from_metadata(metadata).part_size_m == perception.part_size_m
    # Checkpoints from before the box carry only the extent: a cube of it, which no shape test prefers a region by.
    del metadata["part_size_m"]
    metadata["part_extent_m"] = 0.046
    assert BinPerception.from_metadata(metadata).part_size_m == PartSize(0.046, (0.046, 0.046, 0.046))


def test_normalisation_is_fixed_by_the_workspace(nut_scene):
    _, _, workspace = nut_scene
    norm = Normalization.from_workspace(workspace)
    corners = norm.to_model(workspace)
    assert np.abs(corners).max() == pytest.approx(1.0)
    np.testing.assert_allclose(norm.to_metres(norm.to_model(workspace)), workspace, atol=1e-6)
    np.testing.assert_allclose(norm.to_metres(norm.camera[None])[0], 0.0, atol=1e-6)


def test_two_rotation_channels_follow_eq_4_2():
    generator = torch.Generator().manual_seed(4)
    model = torch.randn(64, 3, generator=generator)
    rotations = params_to_matrix(torch.randn(2, 2, 4, generator=generator), "quaternion")
    translations = torch.randn(2, 2, 3, generator=generator) * 0.3 + torch.tensor([0.0, 0.0, 4.0])
    observed = torch.randn(2, 200, 3, generator=generator) * 0.5 + torch.tensor([0.0, 0.0, 4.0])
    camera = np.zeros(3)
    from bin_perception.model.render import _channel_losses, best_channels, channel_signs, scene_loss

    per_combination = _channel_losses(observed, model, rotations, translations, camera, 2.9)
    assert per_combination.shape == (2, 4)
    # The first combination (+1, +1) is the one-channel loss.
    torch.testing.assert_close(per_combination[:, 0], scene_loss(observed, model, rotations, translations, camera, 2.9))
    # gamma = 0 weighs every combination alike; a large gamma approaches the minimum.
    torch.testing.assert_close(scene_loss(observed, model, rotations, translations, camera, 2.9, 2, 0.0), per_combination.mean(dim=1))
    sharp = scene_loss(observed, model, rotations, translations, camera, 2.9, 2, 1e4)
    torch.testing.assert_close(sharp, per_combination.min(dim=1).values, rtol=1e-3, atol=1e-4)
    best = best_channels(observed, model, rotations, translations, camera, 2.9)
    winners = channel_signs(2)[per_combination.argmin(dim=1)]
    torch.testing.assert_close(best, winners)


def test_segmentation_from_the_seeds_renders_nothing_unless_asked(nut_scene):
    _, sample, workspace = nut_scene
    frame = Frame(sample.depth_m, sample.K, 1, "cam")
    perception = BinPerception(3, workspace, ModelConfig(input_size_px=64, model_points=128, segmentation="seeds"), seed=0).eval()
    prediction = perception.predict(frame)
    np.testing.assert_array_equal(prediction.point_labels, prediction.observation.seeds)
    assert prediction.visible_points is None and prediction.poses.shape == (3, 4, 4)
    rendered = perception.predict(frame, render_scene=True)
    assert len(rendered.visible_points) == len(rendered.visible_ids) > 0
    np.testing.assert_array_equal(rendered.labels, prediction.labels)
    with pytest.raises(ValueError, match="segmentation seeds needs method per_seed"):
        ModelConfig(method="whole_image", segmentation="seeds")


def _bar_frame(quarter_turns: int) -> Frame:
    # A 40 x 12 px bar with a knob at one end, 5 mm above a floor, in a square image whose principal point
    # is its centre: turning the image by quarter turns turns the scene about the optical axis.
    depth_m = np.full((96, 96), 0.30, dtype=np.float32)
    depth_m[40:52, 20:60] = 0.295
    depth_m[36:56, 56:62] = 0.294
    K = np.array([[300.0, 0, 47.5], [0, 300.0, 47.5], [0, 0, 1]])
    return Frame(np.ascontiguousarray(np.rot90(depth_m, quarter_turns)), K, 1, "cam")


@pytest.mark.parametrize("align", [True, False])
def test_aligned_crops_make_the_pose_turn_with_the_part(align):
    workspace = np.array([[-0.05, -0.05, 0.25], [0.05, 0.05, 0.298]])
    config = ModelConfig(method="per_seed", align_crops=align, input_size_px=32, model_points=64, observed_points=64)
    perception = BinPerception(1, workspace, config, seed=3).eval()
    with torch.no_grad():
        first, turned = (perception([perception.observe(_bar_frame(k))])[0][0, 0] for k in (0, 1))
    # np.rot90 moves pixel (u, v) to (v, 95 - u): a turn by -90 degrees from +u towards +v.
    expected = about_optical_axis(torch.tensor(-np.pi / 2)) @ first
    angle_deg = np.degrees(np.arccos(np.clip((torch.trace(expected.T @ turned).item() - 1) / 2, -1, 1)))
    if align:
        assert angle_deg < 1.0
    else:  # the network alone has no reason to turn with the part
        assert angle_deg > 5.0

