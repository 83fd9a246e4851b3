import numpy as np
from scipy.spatial.transform import Rotation

from bin_perception.model.fusion import fuse_views, views_in_model_frame


def _face(axis: int, side: float, rng: np.random.Generator, half_m: float = 0.01, count: int = 400) -> np.ndarray:
    """Points on one face of a 20 mm cube centred at the origin."""
    points = rng.uniform(-half_m, half_m, (count, 3))
    points[:, axis] = side * half_m
    return points


def test_views_return_to_the_model_frame_by_their_poses():
    rng = np.random.default_rng(0)
    model = rng.normal(size=(50, 3))
    poses = np.tile(np.eye(4), (2, 1, 1))
    poses[:, :3, :3] = Rotation.random(2, random_state=1).as_matrix()
    poses[:, :3, 3] = [[0.1, 0.0, 0.5], [-0.1, 0.05, 0.6]]
    points = np.concatenate([model @ pose[:3, :3].T + pose[:3, 3] for pose in poses])
    labels = np.repeat([1, 2], len(model))
    views = views_in_model_frame(points, labels, np.concatenate([poses, np.eye(4)[None]]))  # a third instance, unseen
    assert len(views) == 2
    for view in views:
        np.testing.assert_allclose(view, model, atol=1e-9)


def test_fusion_keeps_what_several_views_agree_on():
    rng = np.random.default_rng(0)
    # Each face of the cube seen by three views; one more view, under a wrong pose, lands beside the cube.
    views = [_face(axis, side, rng) for axis in range(3) for side in (-1, 1) for _ in range(3)]
    stray = _face(0, 1, rng) @ Rotation.from_euler("z", 30, degrees=True).as_matrix().T + [0.02, 0.0, 0.0]
    fused = fuse_views(views + [stray], voxel_m=0.002, min_views=3)
    # Every fused point lies on the cube's surface (within a voxel), none on the stray view, and all six faces are there.
    on_surface = np.abs(np.abs(fused).max(axis=1) - 0.01) < 0.002
    assert on_surface.all()
    for axis in range(3):
        for side in (-1, 1):
            assert (np.abs(fused[:, axis] - side * 0.01) < 0.002).sum() > 20
    assert len(fuse_views(views[:2], voxel_m=0.002, min_views=3)) == 0  # two views never make three
    assert fuse_views([], 0.002).shape == (0, 3)
