"""A client that collects what the perception node says of each frame, beside the camera's truth.

It listens to the camera (depth, CameraInfo, and the simulator's ground truth) and to the node's
``poses`` and ``labels``, and pairs them by stamp: the node stamps its results like the depth image
they came from. The demo, the end-to-end tests and the latency benchmark read the node through it.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import rclpy
from geometry_msgs.msg import PoseArray
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image

from ..frame import Frame
from ..io import messages

# Stamps held while their other messages are on the way; a stamp older than this many is given up.
_PENDING = 64


@dataclass(frozen=True)
class Result:
    """One frame as the camera sent it and as the node perceived it."""

    frame: Frame  # depth, K and, from a simulated camera, the true labels and poses
    labels: np.ndarray  # (H, W) uint16, the node's label image
    poses: np.ndarray  # (N, 4, 4), the node's poses
    latency_s: float  # from the depth image's stamp to the node's poses arriving here


class ResultCollector(Node):
    """Pairs camera frames with the node's results; ``results`` fills as they complete."""

    def __init__(self, perception_node: str = "/perception_node", camera_namespace: str = "/", with_truth: bool = True) -> None:
        super().__init__("result_collector")
        self.results: list[Result] = []
        self._with_truth = with_truth
        self._pending: OrderedDict[int, dict] = OrderedDict()
        self._info: CameraInfo | None = None
        camera = camera_namespace.rstrip("/")
        reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self.create_subscription(Image, f"{camera}/depth/image", lambda m: self._add(m.header, "depth", m), qos_profile_sensor_data)
        self.create_subscription(CameraInfo, f"{camera}/depth/camera_info", self._on_info, qos_profile_sensor_data)
        if with_truth:
            self.create_subscription(Image, f"{camera}/gt/labels", lambda m: self._add(m.header, "gt_labels", m), reliable)
            self.create_subscription(PoseArray, f"{camera}/gt/poses", lambda m: self._add(m.header, "gt_poses", m), reliable)
        self.create_subscription(Image, f"{perception_node}/labels", lambda m: self._add(m.header, "labels", m), reliable)
        self.create_subscription(PoseArray, f"{perception_node}/poses", self._on_poses, reliable)

    def _on_info(self, msg: CameraInfo) -> None:
        self._info = msg

    def _on_poses(self, msg: PoseArray) -> None:
        self._add(msg.header, "received_ns", time.time_ns())
        self._add(msg.header, "poses", msg)

    def _add(self, header, key: str, value: object) -> None:
        stamp = messages.stamp_ns(header)
        parts = self._pending.setdefault(stamp, {})
        parts[key] = value
        needed = {"depth", "labels", "poses", "received_ns"} | ({"gt_labels", "gt_poses"} if self._with_truth else set())
        if needed <= parts.keys() and self._info is not None:
            del self._pending[stamp]
            self.results.append(self._result(stamp, parts))
        while len(self._pending) > _PENDING:
            self._pending.popitem(last=False)

    def _result(self, stamp: int, parts: dict) -> Result:
        depth = parts["depth"]
        frame = Frame(
            messages.depth_from_image(depth),
            messages.intrinsics_from_camera_info(self._info),
            stamp,
            depth.header.frame_id,
            gt_labels=messages.labels_from_image(parts["gt_labels"]) if self._with_truth else None,
            gt_poses=messages.poses_from_pose_array(parts["gt_poses"]) if self._with_truth else None,
        )
        return Result(
            frame,
            messages.labels_from_image(parts["labels"]),
            messages.poses_from_pose_array(parts["poses"]),
            (parts["received_ns"] - stamp) / 1e9,
        )


def collect(count: int, timeout_s: float, **collector_args) -> list[Result]:
    """Spin a :class:`ResultCollector` until ``count`` results or ``timeout_s``; rclpy must be initialised."""
    collector = ResultCollector(**collector_args)
    deadline = time.monotonic() + timeout_s
    try:
        while len(collector.results) < count and time.monotonic() < deadline:
            rclpy.spin_once(collector, timeout_sec=0.1)
    finally:
        collector.destroy_node()
    return collector.results[:count]
