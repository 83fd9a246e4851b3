import numpy as np
import pytest
import torch

from bin_perception.config import ModelConfig
from bin_perception.learning.self_training import SeedViews, adopt_registration, register_within_extent
from bin_perception.model import BinPerception
from bin_perception.model.network import seed_poses
from bin_perception.model.registration import Registration

from .synthetic_views import WORKSPACE, housing_views, resting_views


def _pose_error_m(perception: BinPerception, views, model_m: np.ndarray) -> float:
    """Mean distance (metres) between the model's points under the network's poses and under the true ones."""
    with torch.no_grad():
        R, offsets = seed_poses(perception.net, torch.from_numpy(views.crops)[:, None].float(), torch.from_numpy(views.angles).float())
    t_m = perception.normalization.to_metres((offsets + torch.from_numpy(views.centres)).numpy())
    predicted = np.einsum("nij,kj->nki", R.numpy(), model_m) + t_m[:, None]
    true = np.einsum("nij,kj->nki", views.poses[:, :3, :3], model_m) + views.poses[:, None, :3, 3]
    return float(np.linalg.norm(predicted - true, axis=-1).mean())


def test_the_network_learns_the_registered_poses_and_the_model_becomes_x():
    views = housing_views(per_face=16)
    count = len(views.poses)
    model_m = views.mesh.sample(3000)
    # A registration as the true poses would give it: the part's surface and each view's pose.
    registration = Registration(views.poses, np.zeros(count), model_m, np.zeros(count, dtype=int))
    seeds = SeedViews(views.points_m, views.crops, views.angles, views.centres)
    perception = BinPerception(1, WORKSPACE, ModelConfig(method="per_seed", align_crops=True, input_size_px=64, model_points=256), seed=0)
    centred_m = model_m - model_m.mean(0)
    # As after training, the batch norms' statistics are those of these crops.
    with torch.no_grad():
        for norm in perception.net.modules():
            if isinstance(norm, torch.nn.BatchNorm2d):
                norm.momentum = None
        perception.net.train()
        seed_poses(perception.net, torch.from_numpy(views.crops)[:, None].float(), torch.from_numpy(views.angles).float())
    before = _pose_error_m(perception, views, centred_m)
    losses = adopt_registration(perception, registration, seeds, epochs=16, batch_size=16)
    after = _pose_error_m(perception, views, centred_m)
    assert losses[-1] < 0.5 * losses[0]
    assert after < 0.5 * before
    # X is the registered model, centred, in the network's units: every point one of the model's.
    x_m = perception.model_points_m()
    assert len(x_m) == 256
    assert np.abs(x_m[:, None] - centred_m[None]).sum(-1).min(1).max() < 1e-6


@pytest.mark.slow
def test_faces_that_do_not_assemble_into_one_part_are_tried_again_fewer_then_refused_by_size(capsys):
    # A pin rests on its flank whatever its turn about its axis: its views are one face's, however many faces
    # are asked for. Told a part a third of its length, no count of faces assembles into one that small.
    normals = [[np.cos(a), np.sin(a), 0.0] for a in np.radians([0, 90, 180, 270])]
    pin_views = resting_views("pin", normals, per_face=5, points=80)
    views = SeedViews(pin_views.points_m, pin_views.crops, pin_views.angles, pin_views.centres)
    with pytest.raises(ValueError, match=r"wider than the part the seeds measured \(10.0 mm\), with any number of faces from 2 to 1"):
        register_within_extent(views, 2, 0.010)
    out = capsys.readouterr().out
    assert "turns about their long axes" in out and "the 2 faces did not assemble into one part" in out and "trying 1" in out
