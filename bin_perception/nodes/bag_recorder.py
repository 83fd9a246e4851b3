"""``bag_recorder``: records topics to a rosbag2 bag, for machines without ``ros2 bag record``.

Each topic is subscribed once a publisher of it appears, with the type the graph reports and a
QoS its publishers can serve: reliable only if all of them are reliable, transient-local only if
all of them are (as rosbag2 does). Messages are stored as the CDR bytes received, stamped with
their receive time on the node's clock. The bag is written under a temporary name and renamed
into place when the node stops (SIGINT or SIGTERM), so a bag at ``output`` is always complete.

Parameters (read-only):
    topics (string array, required): the topics to record; relative names and remappings
        resolve as a subscription's would, and the bag holds the resolved names.
    output (string, required): the bag directory to create; it must not exist yet.
    storage (string, default "mcap"): "mcap" or "sqlite3".

Subscribed topics: ``topics``, with history depth ``QUEUE_DEPTH``.
Published topics: ``/diagnostics``, with the count of messages recorded on each topic.
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from diagnostic_msgs.msg import DiagnosticStatus
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.topic_endpoint_info import TopicEndpointInfo

from ..io.bag import STORAGES, BagWriter
from ..io.errors import BagError
from .common import Diagnostics, StartupError, message_class, spin_node

# Three seconds of a 30 Hz camera, queued for each topic while a message is written.
QUEUE_DEPTH = 100
# How often the graph is searched for the publishers of topics not subscribed yet.
DISCOVERY_PERIOD_S = 0.1

PARAMETERS = (  # name, default or type, description
    ("topics", Parameter.Type.STRING_ARRAY, "the topics to record"),
    ("output", "", "the bag directory to create"),
    ("storage", "mcap", "mcap or sqlite3"),
)


def matching_qos(publishers: list[TopicEndpointInfo]) -> QoSProfile:
    """A subscription QoS that every one of ``publishers`` is compatible with."""
    reliable = all(p.qos_profile.reliability == ReliabilityPolicy.RELIABLE for p in publishers)
    latched = all(p.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL for p in publishers)
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST, depth=QUEUE_DEPTH,
        reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE,
    )


class BagRecorder(Node):
    """Records raw messages; all its callbacks share the node's default, mutually exclusive group."""

    def __init__(self) -> None:
        super().__init__("bag_recorder")
        # rosbags' sqlite3 storage may only be used on the thread that opened it, and the executor
        # runs callbacks on any of its threads: every call into the bag goes through this one.
        self._bag_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bag_writer")
        self._writer: BagWriter | None = None
        self.declare_parameters("", [
            (name, default, ParameterDescriptor(description=description, read_only=True))
            for name, default, description in PARAMETERS
        ])
        topics = self.get_parameter_or("topics", Parameter("topics", Parameter.Type.STRING_ARRAY, [])).value
        output = self.get_parameter("output").value
        storage = self.get_parameter("storage").value
        if not topics:
            raise StartupError("parameter topics: required, the list of topics to record")
        if not output:
            raise StartupError("parameter output: required, the directory of the bag to write")
        if storage not in STORAGES:
            raise StartupError(f"parameter storage: {storage!r} is not one of {', '.join(STORAGES)}")
        self._pending: dict[str, str] = {}  # resolved name -> the name as given, until subscribed
        for topic in topics:
            try:
                self._pending[self.resolve_topic_name(topic)] = topic
            except _rclpy.RCLError as error:  # an invalid name
                raise StartupError(f"parameter topics: {topic!r}: {error}") from None
        try:
            self._writer = self._bag_thread.submit(BagWriter, output, storage=storage).result()
        except FileExistsError:
            raise StartupError(f"parameter output: {output} already exists; the recorder never writes over a bag") from None
        except OSError as error:  # its directory cannot be made
            raise StartupError(f"parameter output: {error}") from None
        self._output = output
        self._unrecordable: list[str] = []
        self._diagnostics = Diagnostics(self, "bag recorder")
        self._report_status()
        self._discovery = self.create_timer(DISCOVERY_PERIOD_S, self._discover)
        self.get_logger().info(f"recording {', '.join(self._pending)} to {output} as each gets a publisher")

    def _discover(self) -> None:
        types = dict(self.get_topic_names_and_types())
        for topic, given in list(self._pending.items()):
            publishers = self.get_publishers_info_by_topic(topic)
            if topic not in types or not publishers:
                continue
            del self._pending[topic]
            msgtype = types[topic][0]
            try:
                msg_class = message_class(msgtype)
                self._bag_thread.submit(self._writer.add_topic, topic, msgtype).result()
            except (ValueError, BagError) as error:  # BagError: a type the bag cannot describe
                self.get_logger().error(f"topic {topic} is not recorded: {error}")
                self._unrecordable.append(topic)
                continue
            qos = matching_qos(publishers)
            self.create_subscription(msg_class, given, partial(self._record, topic, msgtype), qos, raw=True)
            self.get_logger().info(f"recording {topic} ({msgtype}, {qos.reliability.name.lower()})")
        if not self._pending:
            self._discovery.cancel()
        self._report_status()

    def _record(self, topic: str, msgtype: str, data: bytes) -> None:
        stamp_ns = self.get_clock().now().nanoseconds
        self._bag_thread.submit(self._writer.write_raw, topic, msgtype, data, stamp_ns).result()
        self._diagnostics.count(f"messages {topic}")

    def _report_status(self) -> None:
        if self._unrecordable:
            self._diagnostics.set_status(DiagnosticStatus.ERROR, f"cannot record {', '.join(self._unrecordable)}")
        elif self._pending:
            self._diagnostics.set_status(DiagnosticStatus.WARN, f"no publisher yet on {', '.join(self._pending)}")
        else:
            self._diagnostics.set_status(DiagnosticStatus.OK, "recording every topic")

    def destroy_node(self) -> None:
        super().destroy_node()  # first, so that no callback writes to a closed bag
        if self._writer is not None:
            self._bag_thread.submit(self._writer.close).result()
            self._writer = None
            self.get_logger().info(f"closed {self._output}")
        self._bag_thread.shutdown()


def main(args: list[str] | None = None) -> None:
    sys.exit(spin_node(BagRecorder, "bag_recorder", args))


if __name__ == "__main__":
    main()
