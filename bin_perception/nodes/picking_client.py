"""A picking client: what a robot cell's executive does with perception_node's grasps, run against
pick_cell_node.

It reads the node's ``~/grasps`` (the cup poses that seal, best pick first), takes the best grasp of a frame
that shows the bin as it is now, sends the cup there (the cell's ``~/pick``) and waits for the cell's answer
(``~/state``). A grasp that failed is passed over on the next frames of the same bin, as a cell skips a pick it
has just missed, until a part is held. Where a frame of the bin as it is now has no grasp left to try, the
client asks the cell to shake the bin (``~/shake``), as the in-process cell does. It stops when the bin is empty,
the attempts run out, or shaking :data:`~bin_perception.learning.pick_cell.SHAKES_BEFORE_HELP` times in a row has
left nothing to pick. Every attempt is recorded as the in-process cell records it
(:class:`bin_perception.learning.pick_cell.Attempt`), with a picture of the bin the grasp came from.
"""

from __future__ import annotations

import functools
import json
import time
from collections import OrderedDict

import numpy as np
import rclpy
from geometry_msgs.msg import PoseArray, PoseStamped
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Empty, String

from ..frame import Frame
from ..io import messages
from ..learning.pick_cell import NO_GRASP, SHAKES_BEFORE_HELP, Attempt, PickReport, pick_picture, untried
from .pick_cell_node import PICK_QOS, STATE_QOS

# Camera frames kept for the pictures, newest last: the grasps of a frame arrive within a few of it.
_FRAMES_KEPT = 16


class PickingClient(Node):
    """Sends perception_node's best grasps to pick_cell_node; :func:`empty_bin` drives it."""

    def __init__(self, perception_node: str = "/perception_node", cell: str = "/pick_cell_node", camera_namespace: str = "/") -> None:
        super().__init__("picking_client")
        camera = camera_namespace.rstrip("/")
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.state: dict | None = None
        self.grasps: PoseArray | None = None
        self.grasps_received_ns = 0
        self.frames: OrderedDict[int, dict] = OrderedDict()
        self._info: CameraInfo | None = None
        self.create_subscription(String, f"{cell}/state", self._on_state, STATE_QOS)
        self.create_subscription(PoseArray, f"{perception_node}/grasps", self._on_grasps, reliable)
        self.create_subscription(Image, f"{camera}/depth/image", lambda m: self._keep(m, "depth"), qos_profile_sensor_data)
        self.create_subscription(Image, f"{camera}/gt/labels", lambda m: self._keep(m, "labels"), reliable)
        self.create_subscription(CameraInfo, f"{camera}/depth/camera_info", self._on_info, qos_profile_sensor_data)
        self.pick = self.create_publisher(PoseStamped, f"{cell}/pick", PICK_QOS)
        self.shake = self.create_publisher(Empty, f"{cell}/shake", PICK_QOS)

    def _on_state(self, msg: String) -> None:
        self.state = json.loads(msg.data)

    def _on_grasps(self, msg: PoseArray) -> None:
        self.grasps = msg
        self.grasps_received_ns = time.time_ns()

    def has_grasps_since(self, stamp_ns: int) -> bool:
        return self.grasps is not None and messages.stamp_ns(self.grasps.header) >= stamp_ns

    def cell_listens(self) -> bool:
        return self.pick.get_subscription_count() > 0 and self.shake.get_subscription_count() > 0

    def has_answered(self, picks: int, shakes: int = 0) -> bool:
        return self.state is not None and self.state["picks"] >= picks and self.state["shakes"] >= shakes

    def _on_info(self, msg: CameraInfo) -> None:
        self._info = msg

    def _keep(self, msg: Image, key: str) -> None:
        self.frames.setdefault(messages.stamp_ns(msg.header), {})[key] = msg
        while len(self.frames) > _FRAMES_KEPT:
            self.frames.popitem(last=False)

    def frame_at(self, stamp_ns: int) -> Frame | None:
        """The camera's frame of ``stamp_ns``, with its true labels, if it is still kept."""
        parts = self.frames.get(stamp_ns, {})
        if self._info is None or not {"depth", "labels"} <= parts.keys():
            return None
        return Frame(
            messages.depth_from_image(parts["depth"]), messages.intrinsics_from_camera_info(self._info), stamp_ns,
            parts["depth"].header.frame_id, gt_labels=messages.labels_from_image(parts["labels"]),
        )


def _spin_until(client: PickingClient, condition, timeout_s: float, waiting_for: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"picking client: no {waiting_for} in {timeout_s:g} s")
        rclpy.spin_once(client, timeout_sec=0.05)


def empty_bin(
    part: str, cup_radius_m: float, max_attempts: int = 40, timeout_s: float = 60.0, strip_attempts: int = 24, **client_args
) -> tuple[PickReport, list[np.ndarray], list[str]]:
    """Pick from pick_cell_node with perception_node's grasps until the bin is empty, ``max_attempts`` have been
    made, or shaking has left nothing to pick; the report and, for the first ``strip_attempts``, a picture of the bin before
    each pick with the cup's lip drawn and its title. rclpy must be initialised; ``timeout_s`` bounds each wait."""
    client = PickingClient(**client_args)
    pictures: list[np.ndarray] = []
    titles: list[str] = []
    try:
        _spin_until(client, functools.partial(client.has_answered, 0), timeout_s, "state from the picking cell")
        _spin_until(client, client.cell_listens, timeout_s, "picking cell listening")
        report = PickReport(part, client.state["parts_left"], "model, over ROS 2")
        failed_m: list[np.ndarray] = []
        stuck = 0
        last_answer_s = time.monotonic()
        for attempt in range(max_attempts):
            state = client.state
            if state["parts_left"] == 0:
                break
            since_ns = state["bin_stamp_ns"]
            # The grasps of a frame that shows the bin as the last pick left it.
            _spin_until(
                client, functools.partial(client.has_grasps_since, since_ns), timeout_s, "grasps from perception_node of the bin as it is now"
            )
            grasps = client.grasps
            stamp_ns = messages.stamp_ns(grasps.header)
            perceive_ms = (client.grasps_received_ns - stamp_ns) / 1e6
            cups = messages.poses_from_pose_array(grasps)
            to_try = [i for i, cup in enumerate(cups) if untried(cup[:3, 3], failed_m, cup_radius_m)]
            chosen = None if not to_try else cups[to_try[0]][:3, 3]
            if chosen is not None:
                client.pick.publish(PoseStamped(header=grasps.header, pose=grasps.poses[to_try[0]]))
                _spin_until(client, functools.partial(client.has_answered, state["picks"] + 1), timeout_s, "answer from the picking cell")
                outcome = client.state["outcome"]
                if outcome == "held":
                    failed_m.clear()
                else:
                    failed_m.append(chosen)
            else:
                outcome = NO_GRASP
            now_s = time.monotonic()
            report.attempts.append(Attempt(state["parts_left"], outcome, perceive_ms, now_s - last_answer_s))
            last_answer_s = now_s
            frame = client.frame_at(stamp_ns)
            if frame is not None and len(pictures) < strip_attempts:
                pictures.append(pick_picture(frame, frame.gt_labels, chosen, cup_radius_m))
                titles.append(f"{attempt + 1}: {state['parts_left']} left, {outcome}")
            if chosen is None:
                stuck += 1
                if stuck > SHAKES_BEFORE_HELP:
                    break
                client.shake.publish(Empty())
                _spin_until(
                    client, functools.partial(client.has_answered, state["picks"], state["shakes"] + 1), timeout_s, "the cell's shake"
                )
                report.shakes += 1
                failed_m.clear()
            else:
                stuck = 0
    finally:
        client.destroy_node()
    return report, pictures, titles
