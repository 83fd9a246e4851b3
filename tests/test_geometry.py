import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from bin_perception.geometry import (
    backproject,
    fit_plane_ransac,
    floor_plane,
    floor_side_extended,
    format_bin_pose,
    in_workspace,
    matrix_to_quaternion,
    parse_bin_pose,
    parse_workspace,
    pose_to_matrix,
    quaternion_to_matrix,
    transform_points,
)


def test_backprojection_inverts_the_pinhole_projection():
    K = np.array([[500.0, 0, 319.5], [0, 480.0, 239.5], [0, 0, 1]])
    rng = np.random.default_rng(0)
    depth_m = rng.uniform(0.3, 1.5, size=(480, 640)).astype(np.float32)
    depth_m[0, 0], depth_m[1, 1], depth_m[2, 2] = np.nan, 0.0, np.inf
    points = backproject(depth_m, K)
    assert np.isnan(points[0, 0]).all() and np.isnan(points[1, 1]).all() and np.isnan(points[2, 2]).all()
    v, u = 123, 456
    x, y, z = points[v, u]
    assert z == depth_m[v, u]
    np.testing.assert_allclose([500.0 * x / z + 319.5, 480.0 * y / z + 239.5], [u, v], atol=1e-3)


def test_workspace_parsing_and_cropping():
    box = parse_workspace("-0.1,-0.1,0.2,0.1,0.1,0.6")
    np.testing.assert_array_equal(box, [[-0.1, -0.1, 0.2], [0.1, 0.1, 0.6]])
    points = np.array([[0, 0, 0.3], [0.2, 0, 0.3], [np.nan, 0, 0.3]])
    np.testing.assert_array_equal(in_workspace(points, box), [True, False, False])
    with pytest.raises(ValueError, match="six"):
        parse_workspace("1,2,3")
    with pytest.raises(ValueError, match="empty box"):
        parse_workspace([0, 0, 0.5, 0.1, 0.1, 0.4])
    with pytest.raises(ValueError, match="could not convert"):
        parse_workspace("a,b,c,d,e,f")


def test_a_box_in_the_bins_frame_crops_a_bin_seen_at_an_angle():
    # The bin's frame, z up from its floor, seen by a camera 0.7 m away and tilted 30 degrees about x.
    camera_from_bin = parse_bin_pose("0,0,0.7,0.9659258,0,0,0.2588190")
    np.testing.assert_allclose(camera_from_bin[:3, 2], [0.0, -0.5, -0.8660254], atol=1e-6)  # up, towards the camera
    box = np.array([[-0.1, -0.1, 0.002], [0.1, 0.1, 0.15]])
    # A part inside, a floor point under the margin, a point beyond a wall: in the camera frame.
    in_bin = np.array([[0.09, -0.09, 0.03], [0.0, 0.0, 0.001], [0.0, 0.12, 0.03], [np.nan, 0.0, 0.0]])
    points = transform_points(camera_from_bin, in_bin)
    np.testing.assert_array_equal(in_workspace(points, box, camera_from_bin), [True, False, False, False])
    # The same box in the camera frame crops something else entirely.
    assert not in_workspace(points, box).any()
    np.testing.assert_allclose(parse_bin_pose(format_bin_pose(camera_from_bin)), camera_from_bin, atol=1e-6)
    with pytest.raises(ValueError, match="norm 2.0000"):
        parse_bin_pose([0, 0, 0.7, 0, 0, 0, 2])
    with pytest.raises(ValueError, match="seven"):
        parse_bin_pose("0,0,0.7")


def test_the_floor_side_of_a_box_is_the_face_away_from_the_camera_in_either_frame():
    box = np.array([[-0.1, -0.1, 0.5], [0.1, 0.1, 0.697]])
    # In the camera's frame the floor is the far face, z max.
    np.testing.assert_allclose(floor_side_extended(box, 0.001), [[-0.1, -0.1, 0.5], [0.1, 0.1, 0.698]])
    # In the bin's frame, z up from the floor towards a camera above it, the floor is z min.
    camera_from_bin = parse_bin_pose("0,0,0.7,0.9659258,0,0,0.2588190")
    bin_box = np.array([[-0.1, -0.1, 0.003], [0.1, 0.1, 0.15]])
    np.testing.assert_allclose(floor_side_extended(bin_box, 0.001, camera_from_bin), [[-0.1, -0.1, 0.002], [0.1, 0.1, 0.15]])
    np.testing.assert_array_equal(bin_box[0, 2], 0.003)  # the box given is left as it was


def test_ransac_finds_the_floor_among_parts():
    rng = np.random.default_rng(1)
    floor = np.column_stack([rng.uniform(-0.1, 0.1, (2000, 2)), 0.5 + rng.normal(0, 2e-4, 2000)])
    parts = np.column_stack([rng.uniform(-0.05, 0.05, (600, 2)), rng.uniform(0.44, 0.49, 600)])
    plane, inliers = fit_plane_ransac(np.vstack([floor, parts]), threshold_m=1e-3, rng=rng)
    assert inliers[:2000].mean() > 0.99 and inliers[2000:].mean() < 0.02
    normal, d = plane[:3], plane[3]
    assert abs(abs(normal[2]) - 1) < 1e-3 and abs(abs(d) - 0.5) < 1e-3


def test_quaternions_and_matrices_round_trip():
    rng = np.random.default_rng(2)
    q = rng.normal(size=(100, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    q *= np.sign(q[:, 3:])
    R = quaternion_to_matrix(q)
    np.testing.assert_allclose(R @ np.swapaxes(R, 1, 2), np.broadcast_to(np.eye(3), R.shape), atol=1e-12)
    np.testing.assert_allclose(matrix_to_quaternion(R), q, atol=1e-12)
    T = pose_to_matrix(np.array([1.0, 2.0, 3.0]), np.array([0, 0, np.sin(np.pi / 4), np.cos(np.pi / 4)]))
    np.testing.assert_allclose(T[:3, :3] @ [1, 0, 0], [0, 1, 0], atol=1e-12)
    np.testing.assert_array_equal(T[:3, 3], [1, 2, 3])


def test_the_floor_plane_gives_heights_above_the_workspaces_floor_face_in_the_camera_frame():
    # Straight down: the floor face is the box's far z face, 0.7 m away.
    plane = floor_plane(np.array([[-0.1, -0.1, 0.3], [0.1, 0.1, 0.7]]))
    assert np.isclose(plane[:3] @ [0.05, 0.0, 0.69] + plane[3], 0.01) and np.isclose(plane[:3] @ [0.0, 0.0, 0.72] + plane[3], -0.02)
    # A camera tilted 20 degrees over a bin whose box is in the bin's frame, z up from its floor.
    camera_from_bin = np.eye(4)
    camera_from_bin[:3, :3] = Rotation.from_euler("x", 160, degrees=True).as_matrix()
    camera_from_bin[:3, 3] = [0.0, 0.05, 0.7]
    plane = floor_plane(np.array([[-0.1, -0.1, 0.003], [0.1, 0.1, 0.15]]), camera_from_bin)
    for height_m in (0.05, -0.01):
        point_in_bin = np.array([0.04, -0.02, 0.003 + height_m])
        assert np.isclose(plane[:3] @ transform_points(camera_from_bin, point_in_bin[None])[0] + plane[3], height_m)
