import numpy as np
import pytest

from bin_perception.config import GripperConfig
from bin_perception.picking import covered_share, plan_picks

K = np.array([[400.0, 0.0, 100.0], [0.0, 400.0, 100.0], [0.0, 0.0, 1.0]])
WORKSPACE = np.array([[-0.1, -0.1, 0.5], [0.1, 0.1, 0.65]])


def _plate_model(spacing_m: float = 0.0005) -> np.ndarray:
    """A 40 x 30 x 3 mm plate's top and bottom faces, centred on its origin, its top facing -z (the camera)."""
    x, y = np.meshgrid(np.arange(-0.02, 0.02 + 1e-9, spacing_m), np.arange(-0.015, 0.015 + 1e-9, spacing_m))
    face = np.stack([x.ravel(), y.ravel()], axis=1)
    return np.concatenate([np.column_stack([face, np.full(len(face), -0.0015)]), np.column_stack([face, np.full(len(face), 0.0015)])])


def _scene(poses: np.ndarray, model: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A z-buffer of the model at each pose: the depth image (200 x 200) and which instance each pixel sees."""
    depth, labels = np.full((200, 200), np.nan), np.zeros((200, 200), dtype=np.uint16)
    for instance, pose in enumerate(poses, start=1):
        placed = model @ pose[:3, :3].T + pose[:3, 3]
        u = np.round(K[0, 0] * placed[:, 0] / placed[:, 2] + K[0, 2]).astype(int)
        v = np.round(K[1, 1] * placed[:, 1] / placed[:, 2] + K[1, 2]).astype(int)
        for a, b, z in zip(v, u, placed[:, 2]):
            if not z >= depth[a, b]:  # NaN (nothing yet) or nearer
                depth[a, b], labels[a, b] = z, instance
    return depth, labels


def _points_of(depth: np.ndarray, labels: np.ndarray, instance: int) -> np.ndarray:
    v, u = np.nonzero(labels == instance)
    z = depth[v, u]
    return np.column_stack([(u - K[0, 2]) * z / K[0, 0], (v - K[1, 2]) * z / K[1, 1], z])


def _two_plates(top_first: bool) -> tuple[np.ndarray, np.ndarray]:
    top, buried = np.eye(4), np.eye(4)
    top[:3, 3] = [0.0, 0.0, 0.600]
    # Under the top plate's right half, resting 1 mm below it: its left half is hidden.
    buried[:3, 3] = [0.02, 0.0, 0.604]
    return (np.stack([top, buried]) if top_first else np.stack([buried, top])), _plate_model()


@pytest.mark.parametrize("top_first", [True, False])
def test_a_part_buried_under_another_is_picked_after_the_one_on_top(top_first):
    poses, model = _two_plates(top_first)
    depth, labels = _scene(poses, model)
    points = [_points_of(depth, labels, i) for i in (1, 2)]
    picks = plan_picks(points, poses, np.array([0.9, 0.9]), model, depth, labels, K, WORKSPACE, GripperConfig())
    top, buried = (1, 2) if top_first else (2, 1)
    assert [pick.instance for pick in picks] == [top, buried]
    by_instance = {pick.instance: pick for pick in picks}
    assert by_instance[top].covered == 0.0 and by_instance[buried].covered > 0.2
    assert by_instance[top].grasp is not None and by_instance[top].grasp.seals


def test_the_cover_is_measured_from_the_model_at_its_pose_not_from_the_pixels_seen():
    poses, model = _two_plates(True)
    depth, labels = _scene(poses, model)
    shares = covered_share(model, poses, depth, labels, K)
    # Half of the buried plate's projection lies under the top plate; its own bottom face, behind its top,
    # is hidden by itself, which is no cover.
    assert shares[0] == 0.0
    assert 0.3 < shares[1] < 0.6


def test_a_grasp_too_near_a_wall_scores_less_and_a_part_without_one_scores_nothing():
    poses, model = _two_plates(True)
    poses[1, :3, 3] = [0.06, 0.0, 0.600]  # apart now, and beside the workspace's side face at x = 0.1 m
    depth, labels = _scene(poses, model)
    points = [_points_of(depth, labels, i) for i in (1, 2)]
    narrow = WORKSPACE.copy()
    narrow[1, 0] = 0.066
    picks = {p.instance: p for p in plan_picks(points, poses, np.array([0.9, 0.9]), model, depth, labels, K, narrow, GripperConfig())}
    assert picks[1].clearance == 1.0 and picks[2].clearance < 1.0
    assert picks[2].score < picks[1].score
    # A cup wider than the plates seals on neither.
    wide = GripperConfig(suction_radius_m=0.03)
    assert all(p.score == 0.0 and p.grasp is None for p in plan_picks(points, poses, np.array([0.9, 0.9]), model, depth, labels, K, WORKSPACE, wide))


def test_a_cup_tilted_towards_a_wall_that_it_would_strike_on_its_way_down_is_no_grasp():
    # Two plates 16 mm from the wall at x = 0.1 m: one flat, one tilted 40 degrees, its face turned to the wall. The
    # tilted cup comes in over the wall from the box's top face, 100 mm higher; the flat one straight down.
    flat, tilted = np.eye(4), np.eye(4)
    flat[:3, 3] = [0.064, -0.05, 0.600]
    turn = np.radians(-40.0)
    tilted[:3, :3] = [[np.cos(turn), 0.0, np.sin(turn)], [0.0, 1.0, 0.0], [-np.sin(turn), 0.0, np.cos(turn)]]
    tilted[:3, 3] = [0.064, 0.05, 0.600]
    poses, model = np.stack([flat, tilted]), _plate_model()
    depth, labels = _scene(poses, model)
    points = [_points_of(depth, labels, i) for i in (1, 2)]
    gripper = GripperConfig(suction_radius_m=0.008, max_tilt_deg=50.0)
    picks = {p.instance: p for p in plan_picks(points, poses, np.array([0.9, 0.9]), model, depth, labels, K, WORKSPACE, gripper)}
    assert picks[1].grasp is not None and picks[1].clearance == 1.0 and picks[1].score > 0.0
    assert picks[2].grasp is None and picks[2].score == 0.0
    # Away from the wall, the same tilted plate has its grasp.
    poses[1, 0, 3] = -0.02
    depth, labels = _scene(poses, model)
    points = [_points_of(depth, labels, i) for i in (1, 2)]
    picks = {p.instance: p for p in plan_picks(points, poses, np.array([0.9, 0.9]), model, depth, labels, K, WORKSPACE, gripper)}
    assert picks[2].grasp is not None and picks[2].grasp.tilt_deg > 30.0


def test_a_part_whose_best_cup_would_strike_the_wall_is_taken_on_a_face_turned_away_from_it():
    # A roof 40 mm from the wall at x = 0.1 m: a 40 mm plate tilted 40 degrees with its face turned to the wall, and
    # a 20 mm one tilted 40 degrees the other way, both one part. The cup nearest the middle lands on the wide face,
    # and would come in over the wall; the narrow face's cup comes in from the bin's middle.
    def turned(degrees: float, x_m: float) -> np.ndarray:
        pose, turn = np.eye(4), np.radians(degrees)
        pose[:3, :3] = [[np.cos(turn), 0.0, np.sin(turn)], [0.0, 1.0, 0.0], [-np.sin(turn), 0.0, np.cos(turn)]]
        pose[:3, 3] = [x_m, 0.0, 0.600]
        return pose

    wide, narrow = turned(-40.0, 0.06), turned(40.0, 0.03)
    wide_depth, _ = _scene(wide[None], _plate_model())
    narrow_depth, _ = _scene(narrow[None], _plate_model()[np.abs(_plate_model()[:, 0]) <= 0.01])
    depth = np.fmin(wide_depth, narrow_depth)
    labels = np.isfinite(depth).astype(np.uint16)
    points = [_points_of(depth, labels, 1)]
    gripper = GripperConfig(suction_radius_m=0.005, max_tilt_deg=50.0)
    (pick,) = plan_picks(points, wide[None], np.array([0.9]), _plate_model(), depth, labels, K, WORKSPACE, gripper)
    # The cup moves towards -x onto the wide face (over the wall), towards +x onto the narrow one.
    assert pick.grasp is not None and pick.grasp.approach[0] > 0.3 and pick.clearance > 0.0, pick
