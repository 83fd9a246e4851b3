"""rclpy messages from the library's arrays (the bag writer builds the same from rosbags' types)."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
from geometry_msgs.msg import Point, Pose, PoseArray, Quaternion
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from std_msgs.msg import ColorRGBA, Header, String
from visualization_msgs.msg import Marker, MarkerArray

from ..geometry import matrix_to_quaternion, transform_points
from ..grasp import SuctionGrasp, grasp_pose
from ..io.pointcloud import XYZ_FIELDS, XYZL_FIELDS, xyz_records, xyzl_records
from ..picking import Pick
from ..viz import instance_colours

# Marker namespaces, one marker per instance in each; an instance's id is its marker id.
MARKER_NAMESPACES = ("model", "axes", "id", "grasp")


def header(stamp_ns: int, frame_id: str) -> Header:
    msg = Header(frame_id=frame_id)
    msg.stamp.sec, msg.stamp.nanosec = divmod(int(stamp_ns), 1_000_000_000)
    return msg


def image(head: Header, pixels: np.ndarray, encoding: str) -> Image:
    pixels = np.ascontiguousarray(pixels)
    height, width = pixels.shape[:2]
    return Image(
        header=head,
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=0,
        step=pixels.nbytes // height,
        data=pixels.tobytes(),
    )


def camera_info(head: Header, K: np.ndarray, width_px: int, height_px: int) -> CameraInfo:
    K = np.asarray(K, dtype=np.float64)
    projection = np.zeros((3, 4))
    projection[:, :3] = K
    return CameraInfo(
        header=head,
        width=width_px,
        height=height_px,
        distortion_model="plumb_bob",
        d=[0.0] * 5,
        k=K.ravel().tolist(),
        r=np.eye(3).ravel().tolist(),
        p=projection.ravel().tolist(),
    )


def pose_array(head: Header, poses: np.ndarray) -> PoseArray:
    """(N, 4, 4) transforms as a PoseArray."""
    quaternions = matrix_to_quaternion(poses[:, :3, :3]) if len(poses) else np.zeros((0, 4))
    msg = PoseArray(header=head)
    for t, q in zip(poses[:, :3, 3].tolist(), quaternions.tolist()):
        msg.poses.append(Pose(position=Point(x=t[0], y=t[1], z=t[2]), orientation=Quaternion(x=q[0], y=q[1], z=q[2], w=q[3])))
    return msg


def _grasp_record(grasp: SuctionGrasp | None) -> dict | None:
    if grasp is None:
        return None
    return {
        "position_m": grasp.point_m.tolist(), "approach": grasp.approach.tolist(),
        "flatness_m": grasp.flatness_m, "support": grasp.support, "tilt_deg": grasp.tilt_deg,
    }


def detections(head: Header, poses: np.ndarray, confidences: np.ndarray, picks: Sequence[Pick]) -> String:
    """The poses with their confidences and grasps, as JSON that a pick planner reads without a message
    package: ``{"stamp": {"sec", "nanosec"}, "frame_id", "pick_order": [id, ...], "detections": [{"id",
    "position_m": [x, y, z], "orientation_xyzw": [x, y, z, w], "confidence", "pick_score", "covered",
    "grasp": {"position_m", "approach", "flatness_m", "support", "tilt_deg"} or null}]}``, in the order of
    ~/poses (id i is its i-th pose and its label). ``pick_order`` lists the ids with a grasp that seals,
    best first, as ~/grasps does."""
    quaternions = matrix_to_quaternion(poses[:, :3, :3]) if len(poses) else np.zeros((0, 4))
    by_id = {pick.instance: pick for pick in picks}
    found = []
    for i, (t, q, c) in enumerate(zip(poses[:, :3, 3].tolist(), quaternions.tolist(), confidences), start=1):
        pick = by_id.get(i)
        found.append({
            "id": i, "position_m": t, "orientation_xyzw": q, "confidence": float(c),
            "pick_score": None if pick is None else pick.score, "covered": None if pick is None else pick.covered,
            "grasp": None if pick is None else _grasp_record(pick.grasp),
        })
    stamp = {"sec": head.stamp.sec, "nanosec": head.stamp.nanosec}
    order = [pick.instance for pick in picks if pick.grasp is not None]
    return String(data=json.dumps({"stamp": stamp, "frame_id": head.frame_id, "pick_order": order, "detections": found}))


def grasp_array(head: Header, picks: Sequence[Pick]) -> PoseArray:
    """The grasps that seal, in pick order, as cup poses (:func:`~bin_perception.grasp.grasp_pose`: z along
    the approach); ~/detections' ``pick_order`` names their instances."""
    sealing = [pick.grasp for pick in picks if pick.grasp is not None]
    return pose_array(head, np.stack([grasp_pose(g) for g in sealing]) if sealing else np.zeros((0, 4, 4)))


def confidence_colour(confidence: float) -> np.ndarray:
    """Red for a pose not to trust, through yellow, to green for one to pick."""
    confidence = float(np.clip(confidence, 0.0, 1.0))
    return np.array([min(1.0, 2 * (1 - confidence)), min(1.0, 2 * confidence), 0.0])


def _cloud(head: Header, records: np.ndarray, fields: tuple[tuple[str, int, int], ...]) -> PointCloud2:
    return PointCloud2(
        header=head,
        height=1,
        width=len(records),
        fields=[PointField(name=name, offset=offset, datatype=datatype, count=1) for name, offset, datatype in fields],
        is_bigendian=False,
        point_step=records.dtype.itemsize,
        row_step=records.nbytes,
        data=records.tobytes(),
        is_dense=True,
    )


def xyz_cloud(head: Header, points_m: np.ndarray) -> PointCloud2:
    return _cloud(head, xyz_records(points_m), XYZ_FIELDS)


def xyzl_cloud(head: Header, points_m: np.ndarray, labels: np.ndarray) -> PointCloud2:
    """The PCL XYZL layout: x, y, z float32 and a uint32 ``label``, which RViz can colour by."""
    return _cloud(head, xyzl_records(points_m, labels), XYZL_FIELDS)


def _colour(rgb: np.ndarray, alpha: float = 1.0) -> ColorRGBA:
    return ColorRGBA(r=float(rgb[0]), g=float(rgb[1]), b=float(rgb[2]), a=alpha)


def instance_markers(
    head: Header, poses: np.ndarray, model_points_m: np.ndarray, previous_ids: set[int], confidences: np.ndarray,
    picks: Sequence[Pick] = (),
) -> tuple[MarkerArray, set[int]]:
    """The learned model drawn at each pose, an axis triad, a label of its id and confidence coloured by
    the confidence (:func:`confidence_colour`), and the suction cup's approach to each grasp that seals (an
    arrow onto the contact point, coloured by the pick score); and the ids drawn.

    Instances drawn last time but absent now get DELETE markers, so RViz never shows a stale part.
    """
    extent_m = float(np.ptp(model_points_m, axis=0).max()) if len(model_points_m) else 0.01
    axis_m = 0.6 * extent_m
    triad = np.array([[0, 0, 0], [axis_m, 0, 0], [0, 0, 0], [0, axis_m, 0], [0, 0, 0], [0, 0, axis_m]])
    triad_colours = [np.eye(3)[i // 2] for i in range(6)]
    markers = MarkerArray()
    ids = set(range(1, len(poses) + 1))
    for instance, (pose, confidence) in enumerate(zip(poses, confidences), start=1):
        colour = instance_colours(instance)
        model = Marker(header=head, ns="model", id=instance, type=Marker.POINTS, action=Marker.ADD)
        model.scale.x = model.scale.y = max(extent_m / 40, 0.0005)
        model.color = _colour(colour)
        model.pose.orientation.w = 1.0
        model.points = [Point(x=p[0], y=p[1], z=p[2]) for p in transform_points(pose, model_points_m).tolist()]
        axes = Marker(header=head, ns="axes", id=instance, type=Marker.LINE_LIST, action=Marker.ADD)
        axes.scale.x = max(extent_m / 30, 0.0005)
        axes.color = _colour(colour)
        axes.pose.orientation.w = 1.0
        axes.points = [Point(x=p[0], y=p[1], z=p[2]) for p in transform_points(pose, triad).tolist()]
        axes.colors = [_colour(c) for c in triad_colours]
        label = Marker(header=head, ns="id", id=instance, type=Marker.TEXT_VIEW_FACING, action=Marker.ADD)
        label.scale.z = max(extent_m / 2, 0.005)
        label.color = _colour(confidence_colour(confidence))
        label.text = f"{instance} ({confidence:.2f})"
        x, y, z = pose[:3, 3].tolist()
        # Towards the camera (-z in an optical frame), so the text is not hidden inside the part.
        label.pose.position = Point(x=x, y=y, z=z - extent_m)
        label.pose.orientation.w = 1.0
        markers.markers += [model, axes, label]
    for pick in picks:
        if pick.grasp is None:
            markers.markers.append(Marker(header=head, ns="grasp", id=pick.instance, action=Marker.DELETE))
            continue
        arrow = Marker(header=head, ns="grasp", id=pick.instance, type=Marker.ARROW, action=Marker.ADD)
        arrow.scale.x, arrow.scale.y, arrow.scale.z = max(extent_m / 20, 0.001), max(extent_m / 8, 0.002), max(extent_m / 8, 0.002)
        arrow.color = _colour(confidence_colour(pick.score))
        arrow.pose.orientation.w = 1.0
        start = pick.grasp.point_m - extent_m * pick.grasp.approach
        arrow.points = [Point(x=float(v[0]), y=float(v[1]), z=float(v[2])) for v in (start, pick.grasp.point_m)]
        markers.markers.append(arrow)
    for instance in sorted(previous_ids - ids):
        for namespace in MARKER_NAMESPACES:
            markers.markers.append(Marker(header=head, ns=namespace, id=instance, action=Marker.DELETE))
    return markers, ids
