import numpy as np
import pytest
from scipy.spatial.transform import Rotation
from sklearn.metrics import adjusted_rand_score, homogeneity_score

from bin_perception.metrics import model_fidelity
from bin_perception.model.registration import face_clusters, placement_turns, register_views

from .synthetic_views import housing_views, lever_views


def test_face_clusters_find_the_faces_and_their_half_turns():
    rng = np.random.default_rng(0)
    # Four faces, each a distinct height pattern; each crop of a face is its pattern, noisy, half-turned at random.
    patterns = [np.kron(rng.uniform(0, 0.02, (4, 4)), np.ones((8, 8))) for _ in range(4)]
    face = np.repeat(np.arange(4), 30)
    turned = rng.random(len(face)) < 0.5
    crops = np.stack([np.rot90(patterns[f], 2) if h else patterns[f] for f, h in zip(face, turned)]) + rng.normal(0, 0.002, (len(face), 32, 32))
    labels, flipped = face_clusters(crops, 4)
    assert adjusted_rand_score(face, labels) == 1.0
    for f in range(4):
        members = face == f
        # The half turns are found up to one turn of the whole face.
        agree = (flipped[members] == turned[members]).mean()
        assert agree in (0.0, 1.0)


def test_a_flat_parts_two_faces_are_told_apart_by_their_outlines():
    # Lying flat, the lever's crops are heights near zero on both faces: only the outline, a mirror image
    # from the other face, says which face is up.
    views = lever_views(per_face=40)
    face = np.repeat([0, 1], 40)
    labels, _ = face_clusters(views.crops, 4)
    assert homogeneity_score(face, labels) > 0.9


def test_a_cluster_too_small_to_be_a_face_joins_its_nearest():
    rng = np.random.default_rng(0)
    patterns = [np.kron(rng.uniform(0, 0.02, (4, 4)), np.ones((8, 8))) for _ in range(3)]
    # Two faces seen often, and a third in 6 views of 86: too few for a face model of its own.
    face = np.repeat([0, 1, 2], [40, 40, 6])
    crops = np.stack([patterns[f] for f in face]) + rng.normal(0, 0.002, (len(face), 32, 32))
    labels, _ = face_clusters(crops, 3)
    assert labels.max() + 1 == 2
    # The frequent faces stay whole and apart.
    assert len(set(labels[face == 0])) == 1 and len(set(labels[face == 1])) == 1 and labels[0] != labels[40]


def _agreeing(registration, views) -> float:
    """The share of views whose pose agrees within 15 deg with the truth, up to one motion of the whole."""
    relative = Rotation.from_matrix(np.einsum("nji,njk->nik", registration.poses[:, :3, :3], views.poses[:, :3, :3]))
    return max((relative * relative[i].inv()).magnitude().__lt__(np.radians(15)).mean() for i in range(0, len(relative), 5))


@pytest.mark.slow
def test_registration_puts_the_housing_together_without_poses():
    views = housing_views(per_face=60)
    registration = register_views(views.points_m, views.crops, views.angles)
    # Up to one motion of the whole, every view's pose should agree with the truth: model_from_object.
    assert _agreeing(registration, views) > 0.8
    fidelity = model_fidelity(registration.model_m, views.mesh)
    assert fidelity.chamfer_m < 0.0015
    # Its proportions are the part's, not a plate's.
    spans = np.sort(np.sqrt(np.linalg.eigvalsh(np.cov(registration.model_m.T))))
    assert spans[0] > 0.6 * np.sort(np.sqrt(np.linalg.eigvalsh(np.cov(views.mesh.sample(5000).T))))[0]


@pytest.mark.slow
def test_registration_puts_the_levers_two_mirror_faces_together():
    # The lever's faces are each other's mirror image, and differ end to end only at its boss and bore: placed
    # on each other end for end, a model learned from them would confuse its ends.
    views = lever_views(per_face=40)
    registration = register_views(views.points_m, views.crops, views.angles, faces=2)
    assert _agreeing(registration, views) > 0.9
    # The model is the whole lever, both faces, close to its mesh.
    assert model_fidelity(registration.model_m, views.mesh).chamfer_m < 0.0025


def test_too_few_views_are_refused_by_name():
    views = housing_views(per_face=3)
    with pytest.raises(ValueError, match="12 views are too few for 4 faces"):
        register_views(views.points_m, views.crops, views.angles)
    with pytest.raises(ValueError, match="must agree"):
        register_views(views.points_m, views.crops[:5], views.angles)


def test_the_finer_turns_keep_the_long_axis_and_include_the_axis_turns():
    axis_turns = placement_turns()
    fine = placement_turns(15)
    assert len(axis_turns) == 24 and len(fine) == 24 + 8 * 5
    assert len({tuple(np.round(t, 6).ravel()) for t in fine}) == len(fine)
    np.testing.assert_allclose(fine @ fine.transpose(0, 2, 1), np.broadcast_to(np.eye(3), fine.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(fine), 1.0)
    extra = fine[24:]
    assert np.allclose(np.abs(extra[:, 0, 0]), 1.0)  # the long axis stays on the long axis
    # A tent's 45 degrees about the long axis is one of them; right angles alone have none such.
    tent = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(np.pi / 4), -np.sin(np.pi / 4)], [0.0, np.sin(np.pi / 4), np.cos(np.pi / 4)]])
    assert np.isclose(fine, tent).all(axis=(1, 2)).any() and not np.isclose(axis_turns, tent).all(axis=(1, 2)).any()
    with pytest.raises(ValueError, match="long_axis_step_deg"):
        placement_turns(90)
