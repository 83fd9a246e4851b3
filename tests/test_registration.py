import numpy as np
import pytest
import trimesh
from scipy.spatial.transform import Rotation
from sklearn.metrics import adjusted_rand_score

from bin_perception.metrics import model_fidelity
from bin_perception.frame import Frame
from bin_perception.model.observation import Normalization, observe
from bin_perception.model.registration import face_clusters, register_views
from bin_perception.sim.parts import load_part

K = np.array([[500.0, 0.0, 160.0], [0.0, 500.0, 120.0], [0.0, 0.0, 1.0]])
WORKSPACE = np.array([[-0.2, -0.15, 0.4], [0.2, 0.15, 0.68]])


def _depth_image(points_m: np.ndarray) -> np.ndarray:
    """A 320 x 240 depth image of dense surface points over a floor at 0.7 m (a z-buffer)."""
    depth = np.full((240, 320), 0.7)
    u = np.round(K[0, 0] * points_m[:, 0] / points_m[:, 2] + K[0, 2]).astype(int)
    v = np.round(K[1, 1] * points_m[:, 1] / points_m[:, 2] + K[1, 2]).astype(int)
    np.minimum.at(depth, (v, u), points_m[:, 2])
    return depth.astype(np.float32)


def _housing_views(per_face: int, seed: int = 0):
    """Views of the housing resting on each of its four large faces, tilted up to 8 degrees, as the seeds
    see them: each view's points (300, metres) with the observation's own aligned crop and its turn."""
    rng = np.random.default_rng(seed)
    mesh = load_part("housing").mesh
    surface = trimesh.sample.sample_surface(mesh, 40000, seed=seed)[0]
    normalization = Normalization.from_workspace(WORKSPACE)
    views, crops, angles, poses = [], [], [], []
    for normal in ([0, 0, 1], [0, 0, -1], [0, 1, 0], [0, -1, 0]):
        face_up = Rotation.align_vectors([[0, 0, -1]], [normal])[0]
        for _ in range(per_face):
            tilt = Rotation.from_rotvec(np.r_[rng.normal(size=2), 0] / np.sqrt(2) * np.radians(rng.uniform(0, 8)))
            pose = np.eye(4)
            pose[:3, :3] = (tilt * Rotation.from_euler("z", rng.uniform(0, 2 * np.pi)) * face_up).as_matrix()
            pose[:3, 3] = np.r_[rng.uniform(-0.05, 0.05, 2), 0.6]
            frame = Frame(_depth_image(surface @ pose[:3, :3].T + pose[:3, 3]), K, 0, "camera")
            observation = observe(frame, WORKSPACE, normalization, 64, seed_instances=1, align_crops=True)
            points_m = normalization.to_metres(observation.points)
            views.append(points_m[rng.choice(len(points_m), 300, replace=False)] + rng.normal(0, 0.0003, (300, 3)))
            crops.append(observation.crops[0])
            angles.append(observation.angles[0])
            poses.append(pose)
    return views, np.stack(crops), np.array(angles), np.stack(poses), mesh


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


@pytest.mark.slow
def test_registration_puts_the_housing_together_without_poses():
    views, crops, angles, true_poses, mesh = _housing_views(per_face=60)
    registration = register_views(views, crops, angles)
    # Up to one motion of the whole, every view's pose should agree with the truth: model_from_object.
    relative = Rotation.from_matrix(np.einsum("nji,njk->nik", registration.poses[:, :3, :3], true_poses[:, :3, :3]))
    agreeing = max((relative * relative[i].inv()).magnitude().__lt__(np.radians(15)).mean() for i in range(0, len(views), 5))
    assert agreeing > 0.8
    fidelity = model_fidelity(registration.model_m, mesh)
    assert fidelity.chamfer_m < 0.0015
    # Its proportions are the part's, not a plate's.
    spans = np.sort(np.sqrt(np.linalg.eigvalsh(np.cov(registration.model_m.T))))
    assert spans[0] > 0.6 * np.sort(np.sqrt(np.linalg.eigvalsh(np.cov(mesh.sample(5000).T))))[0]


def test_too_few_views_are_refused_by_name():
    views, crops, angles, _, _ = _housing_views(per_face=3)
    with pytest.raises(ValueError, match="12 views are too few for 4 faces"):
        register_views(views, crops, angles)
    with pytest.raises(ValueError, match="must agree"):
        register_views(views, crops[:5], angles)
