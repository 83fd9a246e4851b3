"""pick_cell_node: the simulated picking cell as a ROS 2 node: a poured bin that a camera watches and a suction
cup empties, one pick at a time, at the request of a picking client.

Publishes the camera's topics, as sim_camera_node does (relative names, the camera's optical frame): depth/image,
depth/camera_info, color/image, gt/labels and gt/poses, of the bin as it is now, ``rate_hz`` times a second
and at once after each pick, with fresh sensor noise in every frame.
Subscribes:
    ~/pick    geometry_msgs/PoseStamped, reliable: send the cup to the pose's position along its z axis (the
              convention of perception_node's ~/grasps), in the camera's optical frame
    ~/shake   std_msgs/Empty, reliable: shake the bin (a shaker table's toss), for when nothing in it can be picked
Publishes:
    ~/state   std_msgs/String, JSON, reliable and transient local (a client that joins late reads it): the
              bin now and the last pick: {"picks": k, "shakes": s, "parts_left": n, "bin_stamp_ns": t,
              "outcome": ..., "reason": ...}. Frames stamped ``bin_stamp_ns`` or later show the bin after pick k
              and shake s; ``outcome`` is "held" or what the cup met instead (bin_perception.sim.suction), and
              null before the first pick
    /diagnostics
Parameters:
    part (string, "housing"): a library part (`bin-perception parts`) or a mesh path
    instances (int, 20): parts poured into the bin
    seed (int, 0): the same seed pours the same bin and draws the same noise
    config (string, ""): the cell's YAML (camera, sensor, scene, gripper); empty: config/real_pile.yaml
    suction_radius_m (double, 0.0): the cup's lip radius; 0 takes the config's gripper
    rate_hz (double, 2.0): frames per second

No service type among ROS 2's standard interfaces carries a pose and an outcome, so a pick is a message and
its answer the next state; a client waits for ``picks`` (or ``shakes``) to count its request. The pick runs on the node's one
thread, between two frames: no frame shows the bin half way through a pick.
"""

from __future__ import annotations

import json

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus
from geometry_msgs.msg import PoseStamped
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import Empty, String

from ..config import ConfigError, load_config
from ..frame import Frame
from ..io.messages import matrices_from_poses
from ..learning.pick_cell import execute_pick
from ..sim.parts import load_part
from ..sim.scene import BinSimulator
from .common import Diagnostics, StartupError, share_file, spin_node
from .sim_camera_node import CameraTopics

# The answers a client reads after the pick it sent, the last one kept for a client that joins late.
STATE_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
PICK_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


def _range(low: float, high: float) -> ParameterDescriptor:
    if isinstance(low, int):
        return ParameterDescriptor(integer_range=[IntegerRange(from_value=low, to_value=high, step=1)])
    return ParameterDescriptor(floating_point_range=[FloatingPointRange(from_value=low, to_value=high)])


class PickCellNode(Node):
    def __init__(self) -> None:
        super().__init__("pick_cell_node")
        part_name = self.declare_parameter("part", "housing").value
        instances = self.declare_parameter("instances", 20, _range(1, 64)).value
        seed = self.declare_parameter("seed", 0).value
        config_path = self.declare_parameter("config", "").value or str(share_file("config", "real_pile.yaml"))
        radius_m = self.declare_parameter("suction_radius_m", 0.0, _range(0.0, 0.1)).value
        rate_hz = self.declare_parameter("rate_hz", 2.0, _range(0.1, 30.0)).value
        try:
            config = load_config(config_path)
            if radius_m > 0:
                config = config.with_suction_radius(radius_m)
            self._simulator = BinSimulator(load_part(part_name), instances, config)
        except (ConfigError, FileNotFoundError, ValueError) as error:
            raise StartupError(f"{error}") from None
        self._gripper = config.gripper
        self._frame_id = config.camera.frame_id
        self._rng = np.random.default_rng(seed)
        self._simulator.simulate(self._rng)

        self._topics = CameraTopics(self, self._simulator.sensor.depth_unit_m)
        self._state = self.create_publisher(String, "~/state", STATE_QOS)
        self.create_subscription(PoseStamped, "~/pick", self._on_pick, PICK_QOS)
        self.create_subscription(Empty, "~/shake", self._on_shake, PICK_QOS)
        self.diagnostics = Diagnostics(self, "picking cell")
        self._picks = 0
        self._shakes = 0
        self._held = 0
        self._outcome: str | None = None
        self._bin_stamp_ns = self.get_clock().now().nanoseconds
        self._publish_state(None, "")
        self.create_timer(1.0 / rate_hz, self._publish_frame)
        self.get_logger().info(
            f"{instances} x {part_name} poured (seed {seed}); a {1000 * self._gripper.suction_radius_m:g} mm cup takes picks on "
            f"{self.resolve_topic_name('~/pick')}"
        )

    def _publish_frame(self) -> None:
        sample = self._simulator.observe(self._rng)
        frame = Frame(sample.depth_m, sample.K, 0, self._frame_id, sample.rgb, sample.labels, sample.poses)
        self._topics.publish(frame, self.get_clock().now().nanoseconds)
        self.diagnostics.done()

    def _on_pick(self, msg: PoseStamped) -> None:
        self._picks += 1
        if msg.header.frame_id != self._frame_id:
            reason = f"pick {self._picks}: frame {msg.header.frame_id!r}, expected the camera's {self._frame_id!r}; not executed"
            self.get_logger().error(reason)
            self.diagnostics.count("refused_picks")
            self._publish_state("refused", reason)
            return
        q, t = msg.pose.orientation, msg.pose.position
        norm = float(np.linalg.norm([q.x, q.y, q.z, q.w]))
        if not np.all(np.isfinite([t.x, t.y, t.z])) or not abs(norm - 1.0) <= 0.01:
            reason = f"pick {self._picks}: a pose with a non-finite position or a quaternion of norm {norm:.3f}, not 1; not executed"
            self.get_logger().error(reason)
            self.diagnostics.count("refused_picks")
            self._publish_state("refused", reason)
            return
        cup_pose = matrices_from_poses([msg.pose])[0]
        outcome = execute_pick(self._simulator, cup_pose[:3, 3], cup_pose[:3, 2], self._gripper)
        self._held += outcome == "held"
        self.diagnostics.count(outcome.replace(" ", "_"))
        # Every frame from here on shows the bin as the pick left it.
        self._bin_stamp_ns = self.get_clock().now().nanoseconds
        self._publish_state(outcome, "")
        self.get_logger().info(f"pick {self._picks}: {outcome}; {len(self._simulator.bodies)} parts left")
        self._publish_frame()

    def _on_shake(self, _msg: Empty) -> None:
        self._shakes += 1
        self._simulator.shake(self._rng)
        self._bin_stamp_ns = self.get_clock().now().nanoseconds
        self._publish_state(self._outcome, "")
        self.get_logger().info(f"shake {self._shakes}: {len(self._simulator.bodies)} parts settled again")
        self._publish_frame()

    def _publish_state(self, outcome: str | None, reason: str) -> None:
        self._outcome = outcome
        parts_left = len(self._simulator.bodies)
        state = {
            "picks": self._picks, "shakes": self._shakes, "parts_left": parts_left, "bin_stamp_ns": self._bin_stamp_ns,
            "outcome": outcome, "reason": reason,
        }
        self._state.publish(String(data=json.dumps(state)))
        level = DiagnosticStatus.OK if parts_left else DiagnosticStatus.WARN
        self.diagnostics.set_status(level, f"{parts_left} parts left; {self._held} held in {self._picks} picks")

    def destroy_node(self) -> None:
        self._simulator.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    raise SystemExit(spin_node(PickCellNode, "pick_cell_node", args))


if __name__ == "__main__":
    main()
