"""bag_player and bag_recorder as separate processes over real DDS, with this test listening in a third."""

import importlib.util
import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.signals import SignalHandlerOptions  # noqa: E402

from bin_perception.io.bag import BagReader, BagWriter, bag_topics, iter_raw_messages  # noqa: E402
from bin_perception.io.errors import BagError  # noqa: E402

from .conftest import NUT_BAG_SCENES  # noqa: E402

SCRIPTS = Path(sys.executable).parent
DEPTH = "/camera/depth/image"


def _payloads(path: Path) -> dict[str, list[bytes]]:
    by_topic = defaultdict(list)
    for topic, _, _, data in iter_raw_messages(path):
        by_topic[topic].append(data)
    return dict(by_topic)


def _as_received(data: bytes) -> bytes:
    """A CDR buffer as a subscriber receives it: DDS pads the payload with zeros to a multiple of 4 bytes."""
    return data + bytes(-len(data) % 4)


class Domain:
    """A ROS domain of its own for one test: its processes, and a listener to the recorder's diagnostics."""

    def __init__(self, log_dir: Path) -> None:
        self.domain_id = random.randint(100, 230)
        # PYTHONFAULTHANDLER: a node that is aborted writes every thread's stack to its log (see stop).
        self.env = {
            **os.environ, "ROS_DOMAIN_ID": str(self.domain_id), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "PYTHONFAULTHANDLER": "1",
        }
        self.log_dir = log_dir
        self.processes: list[tuple[subprocess.Popen, Path]] = []
        self.recorded: dict[str, int] = {}
        self.context = Context()
        rclpy.init(context=self.context, domain_id=self.domain_id, signal_handler_options=SignalHandlerOptions.NO)
        self.node = rclpy.create_node("test_bag_nodes", context=self.context)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.startswith("bag_recorder"):
                self.recorded = {kv.key.removeprefix("messages "): int(kv.value) for kv in status.values if kv.key.startswith("messages ")}

    def start(self, script: str, *ros_args: str) -> subprocess.Popen:
        log = self.log_dir / f"{script}_{len(self.processes)}.log"
        with open(log, "w") as output:
            process = subprocess.Popen([str(SCRIPTS / script), "--ros-args", *ros_args], env=self.env,
                                       stdout=output, stderr=subprocess.STDOUT)
        self.processes.append((process, log))
        return process

    def log(self, process: subprocess.Popen) -> str:
        return next(log.read_text() for p, log in self.processes if p is process)

    def wait_until(self, condition, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            for process, log in self.processes:
                assert process.poll() is None or process.returncode == 0, f"{log.name} failed:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"no {what} after {timeout_s} s; recorded {self.recorded}"
            self.executor.spin_once(timeout_sec=0.1)

    def stop(self, process: subprocess.Popen, signum: int = signal.SIGINT) -> int:
        """SIGINT, as Ctrl-C sends it (or ``signum``); the exit status. A node still running 30 s later is aborted,
        and the test fails with its log, where the fault handler has put the stack of each of its threads."""
        process.send_signal(signum)
        try:
            return process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGABRT)
            process.wait(timeout=30)
            raise AssertionError(f"still running 30 s after SIGINT, then aborted:\n{self.log(process)[-6000:]}") from None

    def close(self) -> None:
        for process, _ in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


@pytest.fixture
def domain(tmp_path):
    domain = Domain(tmp_path)
    yield domain
    domain.close()


def test_a_bag_played_and_recorded_has_the_same_messages(domain, nut_bag, tmp_path):
    played = _payloads(nut_bag)
    output = tmp_path / "recorded"
    recorder = domain.start("bag_recorder", "-p", f"topics:=[{', '.join(played)}]", "-p", f"output:={output}")
    rate = 0.5
    player = domain.start("bag_player", "-p", f"bag:={nut_bag}", "-p", "wait_for_subscribers:=1", "-p", f"rate:={rate}")
    assert player.wait(timeout=60) == 0, domain.log(player)
    assert "the bag has been played" in domain.log(player)
    expected = {topic: len(messages) for topic, messages in played.items()}
    domain.wait_until(lambda: domain.recorded == expected, 30, "complete recording")

    # SIGTERM, as a launch system sends it to a node that ignored SIGINT, closes the bag as well.
    assert domain.stop(recorder, signal.SIGTERM) == 0, domain.log(recorder)
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["recorded"], "a .partial was left behind"
    assert (output / "metadata.yaml").is_file()
    recorded = _payloads(output)
    assert {t: m for t, (m, _) in bag_topics(output).items()} == {t: m for t, (m, _) in bag_topics(nut_bag).items()}
    for topic, messages in played.items():
        assert len(recorded[topic]) == len(messages) == NUT_BAG_SCENES
        assert recorded[topic] == [_as_received(m) for m in messages], f"{topic}: the payloads differ"

    frames, originals = list(BagReader(output)), list(BagReader(nut_bag))
    assert len(frames) == NUT_BAG_SCENES
    for frame, original in zip(frames, originals, strict=True):
        assert frame.stamp_ns == original.stamp_ns and frame.depth_m.tobytes() == original.depth_m.tobytes()
        np.testing.assert_array_equal(frame.gt_labels, original.gt_labels)
    # Receive times keep the recorded spacing, stretched by 1 / rate.
    bag_ns = [stamp for topic, _, stamp, _ in iter_raw_messages(nut_bag, [DEPTH])]
    received_ns = [stamp for topic, _, stamp, _ in iter_raw_messages(output, [DEPTH])]
    assert received_ns[-1] - received_ns[0] >= 0.9 * (bag_ns[-1] - bag_ns[0]) / rate


def test_remapped_best_effort_loop_from_sqlite3(domain, nut_bag, tmp_path):
    sqlite_bag = tmp_path / "nut_sqlite3"
    with BagWriter(sqlite_bag, storage="sqlite3") as writer:
        for topic, msgtype, stamp_ns, data in iter_raw_messages(nut_bag):
            writer.write_raw(topic, msgtype, data, stamp_ns)
    assert _payloads(sqlite_bag) == _payloads(nut_bag)
    depth_images = {_as_received(m) for m in _payloads(nut_bag)[DEPTH]}

    output = tmp_path / "remapped"
    recorder = domain.start("bag_recorder", "-p", "topics:=[/other/depth]", "-p", f"output:={output}", "-p", "storage:=sqlite3")
    player = domain.start(
        "bag_player", "-p", f"bag:={sqlite_bag}", "-p", f"topics:=[{DEPTH}]", "-p", "loop:=true",
        "-p", "qos_reliability:=best_effort", "-p", "wait_for_subscribers:=1", "-r", f"{DEPTH}:=/other/depth",
    )
    # More images than the bag holds: the player went round again.
    domain.wait_until(lambda: domain.recorded.get("/other/depth", 0) > NUT_BAG_SCENES, 30, "second pass")
    assert domain.stop(player) == 0, domain.log(player)
    assert domain.stop(recorder) == 0, domain.log(recorder)

    assert list(output.glob("*.db3")) and (output / "metadata.yaml").is_file()
    recorded = _payloads(output)
    assert list(recorded) == ["/other/depth"]
    assert len(recorded["/other/depth"]) > NUT_BAG_SCENES
    assert set(recorded["/other/depth"]) <= depth_images


def test_the_bag_writer_refuses_types_it_cannot_describe(tmp_path):
    unknown = pytest.raises(BagError, match="topic /thing: message type foo_msgs/msg/Thing is unknown to the Kilted type store")
    with unknown, BagWriter(tmp_path / "unknown") as writer:
        writer.add_topic("/thing", "foo_msgs/msg/Thing")
    retyped = pytest.raises(BagError, match="topic /a is std_msgs/msg/String, not std_msgs/msg/Bool")
    with retyped, BagWriter(tmp_path / "two_types") as writer:
        writer.add_topic("/a", "std_msgs/msg/String")
        writer.write_raw("/a", "std_msgs/msg/Bool", bytes(5), 1)
    assert list(tmp_path.iterdir()) == []


def _odometry_bag(path: Path) -> Path:
    """A bag of nav_msgs/Odometry, a type the typestore knows; the player stops before reading a message."""
    with BagWriter(path) as writer:
        writer.write_raw("/odom", "nav_msgs/msg/Odometry", bytes(4), 10**9)
    return path


def test_bad_inputs_stop_start_up_with_one_line_and_status_2(tmp_path, nut_bag):
    (tmp_path / "empty").mkdir()
    cases = [
        ("bag_player", [], "bag_player: error: parameter bag: required"),
        ("bag_player", ["-p", f"bag:={tmp_path / 'nowhere'}"], f"bag_player: error: bag {tmp_path / 'nowhere'}: no such file or directory"),
        ("bag_player", ["-p", f"bag:={tmp_path / 'empty'}"], "empty: not a rosbag2 bag directory"),
        ("bag_player", ["-p", f"bag:={nut_bag}", "-p", "topics:=[/nope]"], "no topic '/nope'; the bag has: /camera/color/image, "),
        ("bag_player", ["-p", f"bag:={nut_bag}", "-p", "rate:=-1.0"], "parameter rate: -1.0 is negative"),
        ("bag_player", ["-p", f"bag:={nut_bag}", "-p", "rate:=2"], "parameter 'rate' to '2' of type 'INTEGER', expecting type 'DOUBLE'"),
        ("bag_recorder", ["-p", f"output:={tmp_path / 'out'}"], "bag_recorder: error: parameter topics: required"),
        ("bag_recorder", ["-p", "topics:=[/a]", "-p", f"output:={nut_bag}"], f"parameter output: {nut_bag} already exists"),
        (
            "bag_recorder", ["-p", "topics:=[/a]", "-p", f"output:={tmp_path / 'out'}", "-p", "storage:=rosbag"],
            "parameter storage: 'rosbag' is not one of mcap, sqlite3",
        ),
    ]
    if importlib.util.find_spec("nav_msgs") is None:
        cases.append(("bag_player", ["-p", f"bag:={_odometry_bag(tmp_path / 'odometry')}"],
                      "topic /odom: message type 'nav_msgs/msg/Odometry': its Python package is not installed"))
    env = {**os.environ, "ROS_DOMAIN_ID": str(random.randint(100, 230)), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    processes = [
        subprocess.Popen([str(SCRIPTS / script), "--ros-args", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for script, args, _ in cases
    ]
    for process, (script, args, expected) in zip(processes, cases):
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 2, f"{script} {args}: exit {process.returncode}\n{stderr}"
        assert "Traceback" not in stderr, stderr
        assert any(expected in line and line.startswith(f"{script}: error: ") for line in stderr.splitlines()), stderr
    assert not (tmp_path / "out").exists() and not any(p.name.endswith(".partial") for p in tmp_path.iterdir())
