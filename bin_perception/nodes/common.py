"""What the package's nodes share: start-up and shutdown, diagnostics, and message classes by name."""

from __future__ import annotations

import importlib
import os
import signal
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from pathlib import Path

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.exceptions import InvalidHandle, ParameterException
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from ..io.errors import FrameError


class StartupError(Exception):
    """A parameter or resource that keeps a node from starting; the message names it and the problem."""


_GIL_SWITCH_INTERVAL_S = 0.0005
_STOP_POLL_S = 0.1

# FastDDS reads its profile from the first of these that is set.
_FASTDDS_PROFILE_VARIABLES = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")


def use_large_image_transport() -> Path | None:
    """Point FastDDS at ``config/fastdds_large_images.xml``, whose shared-memory segment holds camera-sized
    images whole (the default's drops or delays them), unless the user set a profile or chose another
    middleware; the profile in force, or None for another middleware.

    Call it before ``rclpy.init``: FastDDS reads the profile once per process. Child processes inherit it.
    """
    if not os.environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp").startswith("rmw_fastrtps"):
        return None
    for variable in _FASTDDS_PROFILE_VARIABLES:
        if os.environ.get(variable):
            return Path(os.environ[variable])
    profile = share_file("config", "fastdds_large_images.xml")
    os.environ[_FASTDDS_PROFILE_VARIABLES[0]] = str(profile)
    return profile


def spin_node(make_node: Callable[[], Node], executable: str, args: list[str] | None = None) -> int:
    """Run a node until SIGINT or SIGTERM, or until it sets its own ``finished`` event; the exit status, 0.

    A :class:`StartupError` from ``make_node``, or rclpy's own refusal of a parameter value (a type,
    a range), becomes one line on stderr and ends the process with status 2, as a command-line tool
    reports a bad flag. A node that started always runs ``destroy_node`` on the way out, so one that
    holds a file (a bag being recorded) closes it.
    """
    use_large_image_transport()
    # rclpy's own handlers shut the context down from the signal, while the executor and the node's threads still
    # use it. Stopping a looping bag player again and again found three ways that ends: a wait set refused for the
    # shut-down context, a wait never woken, a segfault destroying a service after the shutdown. Here a signal
    # only asks to stop; this thread then stops spinning, destroys the node, and shuts the context down last.
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        node = make_node()
    except (StartupError, ParameterException) as error:
        print(f"{executable}: error: {error}", file=sys.stderr, flush=True)
        # Destroying an rcl node moments after creating it can crash in the middleware (a segfault in
        # rcl_node_fini, about one start-up in a hundred with ten starting at once). A node that failed
        # to start has nothing to save (each refuses before it opens a file), so the process leaves
        # without tearing the middleware down.
        os._exit(2)
    finished = getattr(node, "finished", None) or threading.Event()
    # The executor's threads and a node's worker share the GIL. At Python's default switch interval (5
    # ms) every torch op of the worker waits that long to take it back from the executor (the convoy
    # effect): with a 30 Hz camera on 2 cores perception_node perceived 2 frames/s, p95 latency 1.7 s;
    # at 0.5 ms, 20 frames/s and 126 ms.
    sys.setswitchinterval(_GIL_SWITCH_INTERVAL_S)
    # Two threads: a service call or a parameter change is answered while a callback is busy.
    executor = MultiThreadedExecutor(num_threads=2)
    executor.add_node(node)
    try:
        # A signal's handler runs on this thread only between waits: the wait's timeout bounds how long a stop takes.
        while not (stop.is_set() or finished.is_set()):
            try:
                executor.spin_once(timeout_sec=_STOP_POLL_S)
            except InvalidHandle:
                # A callback destroyed an entity (a lifecycle transition, its subscriptions) while this thread added
                # the entity's events to the next wait: nothing was taken yet, and the next wait leaves it out.
                pass
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


def share_file(*parts: str) -> Path:
    """A file the package ships in share/bin_perception (config/, launch/): from the source tree when
    running from a checkout, else from the install prefix (pip's data files, or colcon's share)."""
    source = Path(__file__).resolve().parents[2].joinpath(*parts)
    if source.is_file():
        return source
    installed = Path(sys.prefix, "share", "bin_perception", *parts)
    if installed.is_file():
        return installed
    from ament_index_python.packages import get_package_share_directory

    return Path(get_package_share_directory("bin_perception"), *parts)


def message_class(type_name: str) -> type:
    """The rclpy class of a message type named as rosbag2 and ``ros2 topic`` name it: ``pkg/msg/Name``."""
    package, kind, name = (type_name.split("/") + ["", ""])[:3]
    if kind != "msg" or not package or not name:
        raise ValueError(f"message type {type_name!r}: expected the form package/msg/Name")
    try:
        return getattr(importlib.import_module(f"{package}.msg"), name)
    except (ImportError, AttributeError):
        raise ValueError(f"message type {type_name!r}: its Python package is not installed") from None


class Diagnostics:
    """A node's health on ``/diagnostics``: rate, latency, dropped frames by reason, and a status line.

    Frames are counted from any thread. A dropped frame is also logged, at most once per ``log_period_s``
    for each reason, so that a camera sending bad frames at 30 Hz does not flood the log.
    """

    def __init__(self, node: Node, name: str, period_s: float = 1.0, log_period_s: float = 5.0, window: int = 300) -> None:
        self._node = node
        self._name = name
        self._log_period_s = log_period_s
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._last_logged_s: dict[str, float] = {}
        self._latencies_s: deque[float] = deque(maxlen=window)
        self._done_at_s: deque[float] = deque(maxlen=window)
        self._level = DiagnosticStatus.OK
        self._message = "starting"
        self._extra: dict[str, object] = {}
        self._publisher = node.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._timer = node.create_timer(period_s, self.publish)

    def set_status(self, level: bytes, message: str) -> None:
        """The summary a monitor shows: a ``DiagnosticStatus`` level and one line."""
        with self._lock:
            self._level, self._message = level, message

    def set_values(self, values: dict[str, object]) -> None:
        """Figures published beside the counters until replaced (a trainer's loss, step, ...)."""
        with self._lock:
            self._extra = dict(values)

    def count(self, key: str, amount: int = 1) -> None:
        with self._lock:
            self._counts[key] += amount

    def drop(self, reason: str, message: str) -> None:
        """Count a dropped frame under ``dropped_<reason>`` and log why, throttled per reason."""
        now_s = time.monotonic()
        with self._lock:
            self._counts[f"dropped_{reason}"] += 1
            last_s = self._last_logged_s.get(reason)
            due = last_s is None or now_s - last_s >= self._log_period_s
            if due:
                self._last_logged_s[reason] = now_s
        if due:
            self._node.get_logger().warning(f"dropped a frame ({reason}): {message}")

    def done(self, latency_s: float | None = None) -> None:
        """One frame handled end to end, ``latency_s`` after it arrived (None: a source, with no latency)."""
        with self._lock:
            self._counts["frames"] += 1
            if latency_s is not None:
                self._latencies_s.append(latency_s)
            self._done_at_s.append(time.monotonic())

    def snapshot(self) -> dict[str, object]:
        """The counters, the processing rate over the recent frames and their latency percentiles."""
        with self._lock:
            values: dict[str, object] = {**self._extra, **self._counts}
            done = list(self._done_at_s)
            latencies_ms = 1000.0 * np.asarray(self._latencies_s)
        if done:  # a node that handles no frames (a recorder) has no rate to report
            span_s = done[-1] - done[0]
            values["rate_hz"] = round((len(done) - 1) / span_s, 2) if span_s > 0 else 0.0
        if latencies_ms.size:
            values["latency_p50_ms"] = round(float(np.percentile(latencies_ms, 50)), 2)
            values["latency_p95_ms"] = round(float(np.percentile(latencies_ms, 95)), 2)
        return values

    def publish(self) -> None:
        values = self.snapshot()
        with self._lock:
            level, message = self._level, self._message
        status = DiagnosticStatus(
            level=level,
            name=f"{self._node.get_name()}: {self._name}",
            message=message,
            hardware_id=self._node.get_fully_qualified_name(),
            values=[KeyValue(key=key, value=str(value)) for key, value in sorted(values.items())],
        )
        array = DiagnosticArray(status=[status])
        array.header.stamp = self._node.get_clock().now().to_msg()
        self._publisher.publish(array)


class LatestSlot:
    """A queue of depth one: a new item replaces the waiting one, which counts as dropped.

    A camera faster than the model then never builds a backlog: the worker always takes the newest
    frame, and the latency stays that of one frame.
    """

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._item: object | None = None
        self._closed = False

    def put(self, item: object) -> bool:
        """Offer ``item``; True if it replaced one that was never taken."""
        with self._condition:
            replaced = self._item is not None
            self._item = item
            self._condition.notify()
        return replaced

    def take(self, timeout_s: float | None = None) -> object | None:
        """The waiting item, once there is one; None on timeout or after :meth:`close`."""
        with self._condition:
            self._condition.wait_for(lambda: self._item is not None or self._closed, timeout_s)
            item, self._item = self._item, None
        return item

    def close(self) -> None:
        with self._condition:
            self._closed = True
            self._condition.notify_all()


def serve_latest(
    slot: LatestSlot, handle: Callable[..., None], diagnostics: Diagnostics, reasons: dict[type[Exception], str] | None = None
) -> None:
    """A worker thread's loop: handle the newest (message, arrival time) until the slot closes.

    An item that fails is counted and logged through ``diagnostics`` and dropped, never raised: a
    :class:`~bin_perception.io.errors.FrameError` under its own reason, the exception types of
    ``reasons`` under theirs, anything else under ``error``. The node never dies on a frame.
    """
    reasons = reasons or {}
    while (taken := slot.take()) is not None:
        try:
            handle(*taken)
        except FrameError as error:
            diagnostics.drop(error.reason, str(error))
        except Exception as error:  # noqa: BLE001 - a frame must never take the node down
            if not rclpy.ok():
                return  # shutting down: the publishers went first, this frame has nowhere to go
            reason = next((r for kind, r in reasons.items() if isinstance(error, kind)), None)
            diagnostics.drop(reason or "error", str(error) if reason else f"{type(error).__name__}: {error}")
