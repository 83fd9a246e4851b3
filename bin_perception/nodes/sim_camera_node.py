"""sim_camera_node: the PyBullet bin, published as a live depth camera would publish it.

Publishes (relative names), all stamped alike with the node's clock and framed in the camera's
optical frame (``camera.frame_id`` of the config):
    depth/image        sensor_msgs/Image 32FC1, metres (NaN = no return), or  sensor-data QoS
                       16UC1, millimetres (0 = no return) for a sensor with 1 mm depth units
    depth/camera_info  sensor_msgs/CameraInfo                              sensor-data QoS
    color/image        sensor_msgs/Image rgb8                              sensor-data QoS
    gt/labels          sensor_msgs/Image mono16, the true instance ids     reliable
    gt/poses           geometry_msgs/PoseArray, the true poses             reliable
Parameters:
    part (string, "nut"): a library part (`bin-perception parts`) or a mesh path
    instances (int, 3): parts per bin, N
    seed (int, 0): bin k is the simulator's scene [seed, k], the same as in a simulated bag
    rate_hz (double, 10.0): frames per second
    frames_per_bin (int, 10): frames of each bin before a fresh one is dropped
    bins (int, 0): simulate this many bins before the first frame and publish them in a cycle, so
        that no physics runs beside the nodes being measured; 0 simulates each next bin while the
        current one is published
    config (string, ""): a YAML config of the library's schema (camera, sensor, noise, scene)
    sensor (string, ""): the depth camera imitated, clean, structured_light, tof or stereo; empty: the config's
    max_frames (int, 0): stop after this many frames; 0 runs until shut down

The next bin is simulated in the background while the current one is published, so the rate
holds as long as one bin simulates faster than ``frames_per_bin / rate_hz``. That simulation takes
a core: on a small machine it slows whatever runs beside the camera (the demo's perception node
stalled for up to half a second at every few bins on 2 cores), which ``bins`` avoids.
"""

from __future__ import annotations

import dataclasses
import time
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus
from geometry_msgs.msg import PoseArray
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image

from ..config import ConfigError, load_config
from ..frame import Frame
from ..io.messages import depth_mm_from_m
from ..sim.dataset import scene_frame
from ..sim.parts import load_part
from ..sim.scene import BinSimulator
from . import ros_messages
from .common import Diagnostics, StartupError, spin_node


def _int_range(low: int, high: int) -> ParameterDescriptor:
    return ParameterDescriptor(integer_range=[IntegerRange(from_value=low, to_value=high, step=1)])


class CameraTopics:
    """The topics of a simulated depth camera, created on ``node``: depth, CameraInfo and colour with sensor-data
    QoS, and the simulator's truth (labels, poses), reliable. A sensor with 1 mm depth units publishes 16UC1,
    as RealSense's driver does: half the bytes of 32FC1 on the wire."""

    def __init__(self, node: Node, depth_unit_m: float) -> None:
        truth_qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self._depth = node.create_publisher(Image, "depth/image", qos_profile_sensor_data)
        self._info = node.create_publisher(CameraInfo, "depth/camera_info", qos_profile_sensor_data)
        self._color = node.create_publisher(Image, "color/image", qos_profile_sensor_data)
        self._gt_labels = node.create_publisher(Image, "gt/labels", truth_qos)
        self._gt_poses = node.create_publisher(PoseArray, "gt/poses", truth_qos)
        self._depth_in_mm = depth_unit_m == 0.001

    def publish(self, frame: Frame, stamp_ns: int) -> None:
        """``frame`` stamped ``stamp_ns`` on every topic."""
        head = ros_messages.header(stamp_ns, frame.frame_id)
        height_px, width_px = frame.shape
        # Ground truth first: a client that pairs results with the truth by stamp has it waiting.
        self._gt_labels.publish(ros_messages.image(head, frame.gt_labels.astype(np.uint16), "mono16"))
        self._gt_poses.publish(ros_messages.pose_array(head, frame.gt_poses))
        self._info.publish(ros_messages.camera_info(head, frame.K, width_px, height_px))
        self._color.publish(ros_messages.image(head, frame.rgb, "rgb8"))
        if self._depth_in_mm:
            self._depth.publish(ros_messages.image(head, depth_mm_from_m(frame.depth_m), "16UC1"))
        else:
            self._depth.publish(ros_messages.image(head, frame.depth_m.astype(np.float32), "32FC1"))


class SimCameraNode(Node):
    def __init__(self) -> None:
        super().__init__("sim_camera_node")
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="simulate")
        part_name = self.declare_parameter("part", "nut").value
        instances = self.declare_parameter("instances", 3, _int_range(0, 64)).value
        self._seed = self.declare_parameter("seed", 0).value
        rate_hz = self.declare_parameter(
            "rate_hz", 10.0, ParameterDescriptor(floating_point_range=[FloatingPointRange(from_value=0.1, to_value=200.0)])
        ).value
        self._frames_per_bin = self.declare_parameter("frames_per_bin", 10, _int_range(1, 1_000_000)).value
        config_path = self.declare_parameter("config", "").value
        sensor = self.declare_parameter("sensor", "").value
        self._max_frames = self.declare_parameter("max_frames", 0, _int_range(0, 2**31 - 1)).value
        cycled_bins = self.declare_parameter("bins", 0, _int_range(0, 100_000)).value
        try:
            config = load_config(config_path or None)
            if sensor:
                config = dataclasses.replace(config, sensor=sensor)
            part = load_part(part_name)
            self._simulator = BinSimulator(part, instances, config)
        except (ConfigError, FileNotFoundError, ValueError) as error:
            raise StartupError(f"{error}") from None
        self._frame_id = config.camera.frame_id
        self._topics = CameraTopics(self, self._simulator.sensor.depth_unit_m)
        self.diagnostics = Diagnostics(self, "simulated camera")
        self.diagnostics.set_status(DiagnosticStatus.OK, f"{instances} x {part_name}, seed {self._seed}, {rate_hz:g} Hz")

        self._frames_sent = 0
        self._bin_index = 0
        self._cycle: list[Frame] = []
        if cycled_bins:
            start_s = time.monotonic()
            self._cycle = [self._simulate(index) for index in range(cycled_bins)]
            self.get_logger().info(f"simulated {cycled_bins} bins in {time.monotonic() - start_s:.1f} s; publishing them in a cycle")
            self._bin = self._cycle[0]
        else:
            self._bin = self._simulate(0)
            self._next_bin: Future = self._pool.submit(self._simulate, 1)
        self.create_timer(1.0 / rate_hz, self._tick)
        self.get_logger().info(
            f"publishing bins of {instances} x {part_name} at {rate_hz:g} Hz on {self.resolve_topic_name('depth/image')}"
        )

    def _simulate(self, index: int) -> Frame:
        return scene_frame(self._simulator, self._seed, index, 0.0, self._frame_id)

    def _tick(self) -> None:
        if self._max_frames and self._frames_sent >= self._max_frames:
            return
        if self._frames_sent and self._frames_sent % self._frames_per_bin == 0:
            self._bin_index += 1
            if self._cycle:
                self._bin = self._cycle[self._bin_index % len(self._cycle)]
            else:
                if not self._next_bin.done():
                    self.diagnostics.count("late_bins")  # the rate outran the simulator; this tick waits
                self._bin = self._next_bin.result()
                self._next_bin = self._pool.submit(self._simulate, self._bin_index + 1)
        self._topics.publish(self._bin, self.get_clock().now().nanoseconds)
        self._frames_sent += 1
        self.diagnostics.done()
        if self._max_frames and self._frames_sent >= self._max_frames:
            self.get_logger().info(f"published {self._frames_sent} frames; max_frames reached")

    def destroy_node(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    raise SystemExit(spin_node(SimCameraNode, "sim_camera_node", args))


if __name__ == "__main__":
    main()
