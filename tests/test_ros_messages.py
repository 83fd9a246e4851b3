"""The rclpy messages the nodes publish, built from arrays (no DDS needed)."""

import numpy as np
import pytest

pytest.importorskip("rclpy")

from bin_perception.grasp import SuctionGrasp  # noqa: E402
from bin_perception.io.pointcloud import records_from_cloud  # noqa: E402
from bin_perception.nodes import ros_messages  # noqa: E402
from bin_perception.picking import Pick  # noqa: E402


def test_markers_draw_each_instance_and_delete_the_vanished_ones():
    head = ros_messages.header(1_500_000_000, "camera_depth_optical_frame")
    poses = np.tile(np.eye(4), (2, 1, 1))
    poses[:, :3, 3] = [[0.0, 0.0, 0.3], [0.05, 0.0, 0.3]]
    model = np.random.default_rng(0).normal(scale=0.01, size=(50, 3))
    # The first part has a grasp that seals, the second none.
    grasp = SuctionGrasp(np.array([0.0, 0.0, 0.29]), np.array([0.0, 0.0, 1.0]), 0.0003, 1.0, 0.0, True)
    picks = [Pick(1, 0.9, grasp, 0.0, 1.0, 0.01), Pick(2, 0.0, None, 0.0, 0.0, 0.01)]
    markers, drawn = ros_messages.instance_markers(head, poses, model, {1, 2, 3, 4}, np.array([0.95, 0.1]), picks)
    assert drawn == {1, 2}
    added = {(m.ns, m.id): m for m in markers.markers if m.action == m.ADD}
    deleted = {(m.ns, m.id) for m in markers.markers if m.action == m.DELETE}
    assert set(added) == {(ns, i) for ns in ("model", "axes", "id") for i in (1, 2)} | {("grasp", 1)}
    assert deleted == {(ns, i) for ns in ros_messages.MARKER_NAMESPACES for i in (3, 4)} | {("grasp", 2)}
    # The cup's arrow comes down the approach onto the contact point.
    start, end = added[("grasp", 1)].points
    assert (end.x, end.y, end.z) == (0.0, 0.0, 0.29) and start.z < end.z
    points = np.array([[p.x, p.y, p.z] for p in added[("model", 2)].points])
    np.testing.assert_allclose(points, model + [0.05, 0.0, 0.3], atol=1e-9)
    assert all(m.header.frame_id == "camera_depth_optical_frame" and m.header.stamp.sec == 1 for m in markers.markers)
    # The labels carry the confidence, a trusted pose in green, a doubtful one in red.
    sure, doubtful = added[("id", 1)], added[("id", 2)]
    assert sure.text == "1 (0.95)" and doubtful.text == "2 (0.10)"
    assert sure.color.g > sure.color.r and doubtful.color.r > doubtful.color.g


def test_detections_carry_each_pose_with_its_id_and_confidence_as_json():
    import json

    head = ros_messages.header(1_500_000_000, "camera_depth_optical_frame")
    poses = np.tile(np.eye(4), (2, 1, 1))
    poses[1, :3, :3] = [[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]  # a quarter turn about z
    poses[:, :3, 3] = [[0.0, 0.0, 0.3], [0.05, 0.0, 0.3]]
    # The second part is the better pick, the first has no grasp that seals.
    grasp = SuctionGrasp(np.array([0.05, 0.0, 0.29]), np.array([0.0, 0.0, 1.0]), 0.0003, 1.0, 0.0, True)
    picks = [Pick(2, 0.2, grasp, 0.0, 1.0, 0.01), Pick(1, 0.0, None, 0.4, 0.0, 0.005)]
    message = json.loads(ros_messages.detections(head, poses, np.array([0.9, 0.25]), picks).data)
    assert message["stamp"] == {"sec": 1, "nanosec": 500_000_000} and message["frame_id"] == "camera_depth_optical_frame"
    first, second = message["detections"]
    assert (first["id"], second["id"]) == (1, 2) and (first["confidence"], second["confidence"]) == (0.9, 0.25)
    np.testing.assert_allclose(second["position_m"], [0.05, 0.0, 0.3])
    np.testing.assert_allclose(second["orientation_xyzw"], [0.0, 0.0, np.sqrt(0.5), np.sqrt(0.5)], atol=1e-9)
    assert message["pick_order"] == [2]
    assert first["grasp"] is None and first["covered"] == 0.4 and second["pick_score"] == 0.2
    np.testing.assert_allclose(second["grasp"]["position_m"], [0.05, 0.0, 0.29])
    # ~/grasps holds the cup's pose of each grasp in that order, its z axis along the approach.
    (cup,) = ros_messages.grasp_array(head, picks).poses
    assert (cup.position.x, cup.position.y, cup.position.z) == (0.05, 0.0, 0.29)
    # Approaching along the camera's axis, the cup is the camera's own orientation.
    np.testing.assert_allclose([cup.orientation.x, cup.orientation.y, cup.orientation.z, cup.orientation.w], [0, 0, 0, 1], atol=1e-12)


def test_segments_cloud_round_trips_points_and_labels():
    head = ros_messages.header(0, "cam")
    points = np.random.default_rng(1).normal(size=(100, 3)).astype(np.float32)
    labels = np.arange(100) % 3 + 1
    cloud = ros_messages.xyzl_cloud(head, points, labels)
    records = records_from_cloud(cloud.data, [(f.name, f.offset, f.datatype) for f in cloud.fields], cloud.point_step, cloud.width)
    np.testing.assert_array_equal(np.stack([records["x"], records["y"], records["z"]], axis=1), points)
    np.testing.assert_array_equal(records["label"], labels)
    assert cloud.point_step == 16 and cloud.row_step == 1600 and cloud.height == 1
