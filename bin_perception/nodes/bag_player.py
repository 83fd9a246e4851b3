"""``bag_player``: publishes a rosbag2 bag (MCAP or sqlite3) through rclpy, for machines without ``ros2 bag play``.

Each message goes out as the CDR bytes stored in the bag, on the topic it was recorded on, so
``--ros-args -r /camera/depth/image:=/other`` remaps it like any publisher's topic. Messages keep
their recorded spacing, scaled by ``rate``. The node exits with status 0 once the bag has been
played (unless it loops), after its reliable subscribers have acknowledged every message.

Parameters (read-only):
    bag (string, required): the bag directory, or a data file inside it.
    topics (string array, default []): the topics to play; empty plays every topic of the bag.
    rate (double, default 1.0): playback speed as a factor of the recorded one; 0 plays as fast
        as the messages can be published.
    loop (bool, default false): start again from the first message when the bag ends.
    qos_reliability (string, default "reliable"): "reliable" or "best_effort" for every publisher.
    wait_for_subscribers (integer, default 0): the subscriptions each played topic must have
        before the first message goes out.
    wait_timeout_s (double, default 10.0): how long to wait for those subscriptions (then play
        anyway, with a warning), and for the acknowledgements after the last message.

Published topics: those of the bag, with their recorded types, history depth ``QUEUE_DEPTH``.
"""

from __future__ import annotations

import sys
import threading
import time

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from tqdm import tqdm

from ..io.bag import bag_topics, iter_raw_messages
from ..io.errors import BagError
from .common import StartupError, message_class, spin_node

# Three seconds of a 30 Hz camera, queued for each topic while a subscriber catches up.
QUEUE_DEPTH = 100

RELIABILITY = {"reliable": ReliabilityPolicy.RELIABLE, "best_effort": ReliabilityPolicy.BEST_EFFORT}

PARAMETERS = (  # name, default or type, description
    ("bag", "", "the bag directory, or a data file inside it"),
    ("topics", Parameter.Type.STRING_ARRAY, "the topics to play; empty plays them all"),
    ("rate", 1.0, "playback speed as a factor of the recorded one; 0 plays as fast as possible"),
    ("loop", False, "start again when the bag ends"),
    ("qos_reliability", "reliable", "reliable or best_effort"),
    ("wait_for_subscribers", 0, "subscriptions each topic needs before playback starts"),
    ("wait_timeout_s", 10.0, "the longest wait for those subscriptions, and for acknowledgements at the end"),
)


class BagPlayer(Node):
    """Plays a bag on a thread of its own, so that message timing does not wait on the executor."""

    def __init__(self) -> None:
        super().__init__("bag_player")
        self._stop = threading.Event()
        self._playback: threading.Thread | None = None
        self.declare_parameters("", [
            (name, default, ParameterDescriptor(description=description, read_only=True))
            for name, default, description in PARAMETERS
        ])
        self._bag = self.get_parameter("bag").value
        self._topics = self.get_parameter_or("topics", Parameter("topics", Parameter.Type.STRING_ARRAY, [])).value
        self._rate = self.get_parameter("rate").value
        self._loop = self.get_parameter("loop").value
        reliability = self.get_parameter("qos_reliability").value
        self._wait_for_subscribers = self.get_parameter("wait_for_subscribers").value
        self._wait_timeout_s = self.get_parameter("wait_timeout_s").value
        if not self._bag:
            raise StartupError("parameter bag: required, the path of a rosbag2 bag")
        if self._rate < 0:
            raise StartupError(f"parameter rate: {self._rate} is negative (0 plays as fast as possible)")
        if reliability not in RELIABILITY:
            raise StartupError(f"parameter qos_reliability: {reliability!r} is not one of {', '.join(RELIABILITY)}")
        if self._wait_for_subscribers < 0:
            raise StartupError(f"parameter wait_for_subscribers: {self._wait_for_subscribers} is negative")
        try:
            played = bag_topics(self._bag, self._topics)
        except BagError as error:
            raise StartupError(str(error)) from None
        self._message_count = sum(count for _, count in played.values())
        qos = QoSProfile(
            history=HistoryPolicy.KEEP_LAST, depth=QUEUE_DEPTH,
            reliability=RELIABILITY[reliability], durability=DurabilityPolicy.VOLATILE,
        )
        self._publishers_by_topic = {}
        for topic, (msgtype, _) in played.items():
            try:
                msg_class = message_class(msgtype)
            except ValueError as error:
                raise StartupError(f"bag {self._bag}: topic {topic}: {error}") from None
            self._publishers_by_topic[topic] = self.create_publisher(msg_class, topic, qos)
        self._reliable = reliability == "reliable"
        self.finished = threading.Event()  # set when the bag has been played: spin_node then ends the process
        self._playback = threading.Thread(target=self._play, name="bag_player", daemon=True)
        self._playback.start()

    def _play(self) -> None:
        try:
            if not self._await_subscribers():
                return
            self.get_logger().info(
                f"playing {self._message_count} messages of {', '.join(self._publishers_by_topic)} from {self._bag}"
                + (f" at {self._rate}x" if self._rate else " as fast as possible")
            )
            while True:
                if not self._play_once():
                    return
                if not self._loop:
                    break
            if self._reliable:
                self._await_acknowledgements()
            self.get_logger().info("the bag has been played")
        except BagError as error:
            self.get_logger().error(str(error))
        self.finished.set()

    def _await_subscribers(self) -> bool:
        """Wait until each topic has its subscribers, or the timeout; False if the node is stopping."""
        deadline_s = time.monotonic() + self._wait_timeout_s
        while True:
            waiting = [t for t, p in self._publishers_by_topic.items() if p.get_subscription_count() < self._wait_for_subscribers]
            if not waiting:
                return True
            if time.monotonic() >= deadline_s:
                self.get_logger().warning(
                    f"playing without {self._wait_for_subscribers} subscriptions on {', '.join(waiting)}"
                    f" after {self._wait_timeout_s:g} s"
                )
                return True
            if self._stop.wait(0.05):
                return False

    def _play_once(self) -> bool:
        """Publish the bag once, at its recorded pace over ``rate``; False if the node is stopping."""
        start_s = time.monotonic()
        first_ns = None
        with tqdm(total=self._message_count, unit="msg", desc="bag_player", disable=None) as progress:
            for topic, _, log_ns, data in iter_raw_messages(self._bag, self._topics):
                if first_ns is None:
                    first_ns = log_ns
                delay_s = start_s + (log_ns - first_ns) / 1e9 / self._rate - time.monotonic() if self._rate else 0.0
                if self._stop.wait(max(delay_s, 0.0)):
                    return False
                self._publishers_by_topic[topic].publish(data)
                progress.update()
        return True

    def _await_acknowledgements(self) -> None:
        # Destroying a publisher drops the messages its subscribers have not yet received.
        deadline_s = time.monotonic() + self._wait_timeout_s
        for topic, publisher in self._publishers_by_topic.items():
            remaining = Duration(seconds=max(deadline_s - time.monotonic(), 0.0))
            if not publisher.wait_for_all_acked(remaining):
                self.get_logger().warning(f"{topic}: not every message was acknowledged")

    def destroy_node(self) -> None:
        self._stop.set()
        if self._playback is not None:
            self._playback.join()
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    sys.exit(spin_node(BagPlayer, "bag_player", args))


if __name__ == "__main__":
    main()
