"""rosbag2 bags (MCAP or sqlite3) of depth frames, written and read without ROS.

The writer and reader share one topic layout (:class:`~bin_perception.config.TopicsConfig`):
depth (``32FC1`` metres), CameraInfo, RGB, ground-truth labels (``mono16``)
and ground-truth poses (PoseArray), all stamped alike. The reader also takes
bags recorded by real ROS 2 cameras, with ``16UC1`` millimetre depth.
"""

from __future__ import annotations

import base64
import gzip
import io
import os
import shutil
import tempfile
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml
from rosbags.rosbag2 import Reader, StoragePlugin, Writer

from ..config import TopicsConfig
from ..extras import require
from ..frame import Frame
from ..geometry import parse_bin_pose, parse_workspace
from . import messages
from .errors import BagError, FrameError

if TYPE_CHECKING:
    import trimesh

STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}

# Metadata keys (rosbag2 custom_data) of bags written by the simulator.
META_PART = "bin_perception.part"
META_MESH = "bin_perception.part_mesh_ply_gz_b64"
META_SYMMETRY = "bin_perception.part_symmetry"
META_WORKSPACE = "bin_perception.workspace"
META_BIN_POSE = "bin_perception.bin_pose"
META_INSTANCES = "bin_perception.instances"

# How many stamps the reader holds while it waits for a frame's other messages.
_PAIRING_WINDOW = 16


def encode_mesh(mesh: trimesh.Trimesh) -> str:
    """A mesh as text for a bag's metadata: binary PLY, gzipped, base64."""
    ply = mesh.export(file_type="ply")  # a trimesh.Trimesh
    return base64.b64encode(gzip.compress(ply, mtime=0)).decode("ascii")


def decode_mesh(text: str) -> trimesh.Trimesh:
    trimesh = require("trimesh", "the part's mesh in a bag's metadata")
    ply = gzip.decompress(base64.b64decode(text))
    return trimesh.load_mesh(io.BytesIO(ply), file_type="ply", process=False)


class BagWriter:
    """Writes frames to a new bag directory, atomically.

    The bag is assembled under a temporary name beside ``path`` and renamed
    into place on a clean close; an interrupted run leaves no bag at ``path``.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        topics: TopicsConfig | None = None,
        storage: str = "mcap",
        custom_data: dict[str, str] | None = None,
        overwrite: bool = False,
    ) -> None:
        if storage not in STORAGES:
            raise ValueError(f"bag storage {storage!r}: expected one of {', '.join(STORAGES)}")
        self.path = Path(path)
        if self.path.exists() and not overwrite:
            raise FileExistsError(f"bag {self.path}: already exists (overwrite it explicitly)")
        self.topics = topics or TopicsConfig()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._staging = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", suffix=".partial", dir=self.path.parent))
        self._writer = Writer(self._staging / self.path.name, version=9, storage_plugin=STORAGES[storage])
        self._writer.open()
        for key, value in (custom_data or {}).items():
            self._writer.set_custom_data(key, value)
        self._connections: dict[str, Any] = {}
        self.count = 0

    def add_topic(self, topic: str, msgtype: str) -> None:
        """Declare a topic; the bag lists it even if no message follows.

        The type must be in the Kilted type store, which holds the definitions the bag records.
        """
        connection = self._connections.get(topic)
        if connection is not None:
            if connection.msgtype != msgtype:
                raise BagError(f"bag {self.path}: topic {topic} is {connection.msgtype}, not {msgtype}")
            return
        if msgtype not in messages.TYPESTORE.types:
            raise BagError(f"bag {self.path}: topic {topic}: message type {msgtype} is unknown to the Kilted type store")
        self._connections[topic] = self._writer.add_connection(topic, msgtype, typestore=messages.TYPESTORE)

    def write_raw(self, topic: str, msgtype: str, data: bytes, stamp_ns: int) -> None:
        """Write one CDR-serialized message, logged at ``stamp_ns``."""
        self.add_topic(topic, msgtype)
        self._writer.write(self._connections[topic], stamp_ns, data)

    def _write(self, topic: str, msg: Any, stamp_ns: int) -> None:
        self.write_raw(topic, msg.__msgtype__, messages.TYPESTORE.serialize_cdr(msg, msg.__msgtype__), stamp_ns)

    def write(self, frame: Frame) -> None:
        """Write a frame's depth and CameraInfo, and its RGB and ground truth where it has them."""
        stamp, frame_id, topics = frame.stamp_ns, frame.frame_id, self.topics
        h, w = frame.depth_m.shape
        self._write(topics.depth, messages.image_msg(stamp, frame_id, frame.depth_m.astype(np.float32), "32FC1"), stamp)
        self._write(topics.camera_info, messages.camera_info_msg(stamp, frame_id, frame.K, w, h), stamp)
        if frame.rgb is not None:
            self._write(topics.rgb, messages.image_msg(stamp, frame_id, frame.rgb, "rgb8"), stamp)
        if frame.gt_labels is not None:
            self._write(topics.gt_labels, messages.image_msg(stamp, frame_id, frame.gt_labels.astype(np.uint16), "mono16"), stamp)
        if frame.gt_poses is not None:
            self._write(topics.gt_poses, messages.pose_array_msg(stamp, frame_id, frame.gt_poses), stamp)
        self.count += 1

    def close(self) -> None:
        """Finish the bag and move it into place."""
        self._writer.close()
        if self.path.exists():
            shutil.rmtree(self.path)
        os.replace(self._staging / self.path.name, self.path)
        shutil.rmtree(self._staging)

    def abort(self) -> None:
        """Drop everything written; nothing appears at the bag's path."""
        try:
            self._writer.close()
        finally:
            shutil.rmtree(self._staging, ignore_errors=True)

    def __enter__(self) -> BagWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def resolve_bag_path(path: str | os.PathLike) -> Path:
    """The bag directory: ``path`` itself, or the directory of a data file inside one."""
    path = Path(path)
    if not path.exists():
        raise BagError(f"bag {path}: no such file or directory")
    if path.is_file() and (path.parent / "metadata.yaml").is_file():
        return path.parent
    if not (path / "metadata.yaml").is_file():
        raise BagError(f"bag {path}: not a rosbag2 bag directory (it has no metadata.yaml)")
    return path


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The ``rosbag2_bagfile_information`` of a bag's metadata.yaml."""
    path = resolve_bag_path(path)
    try:
        return yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    except (yaml.YAMLError, KeyError, TypeError) as error:
        raise BagError(f"bag {path}: unreadable metadata.yaml: {error!r}") from None


def describe_topics(path: str | os.PathLike) -> list[tuple[str, str, int, str]]:
    """(topic, type, count, what its first message holds) for every topic of a bag."""
    path = resolve_bag_path(path)
    rows = []
    try:
        with Reader(path) as reader:
            for connection in sorted(reader.connections, key=lambda c: c.topic):
                detail = ""
                for _, _, raw in reader.messages(connections=[connection]):
                    if connection.msgtype in messages.TYPESTORE.types:
                        detail = _describe(messages.TYPESTORE.deserialize_cdr(raw, connection.msgtype))
                    break
                rows.append((connection.topic, connection.msgtype, connection.msgcount, detail))
    except Exception as error:  # rosbags raises several unrelated types for broken bags
        raise BagError(f"bag {path}: cannot be read: {error}") from None
    return rows


def bag_topics(path: str | os.PathLike, topics: list[str] | None = None) -> dict[str, tuple[str, int]]:
    """The message type and count of each of ``topics``, or of every topic of the bag.

    Opening the bag checks that it reads; a topic it lacks is a :class:`BagError`.
    """
    path = resolve_bag_path(path)
    try:
        with Reader(path) as reader:
            connections = sorted(reader.connections, key=lambda c: c.topic)
    except Exception as error:  # rosbags raises several unrelated types for broken bags
        raise BagError(f"bag {path}: cannot be read: {error}") from None
    available: dict[str, tuple[str, int]] = {}
    # A topic recorded with several QoS profiles has one connection for each.
    for connection in connections:
        msgtype, count = available.get(connection.topic, (connection.msgtype, 0))
        if msgtype != connection.msgtype:
            raise BagError(f"bag {path}: topic {connection.topic} holds two types, {msgtype} and {connection.msgtype}")
        available[connection.topic] = (msgtype, count + connection.msgcount)
    unknown = [topic for topic in topics or () if topic not in available]
    if unknown:
        have = ", ".join(available) or "none"
        raise BagError(f"bag {path}: no topic {', '.join(map(repr, unknown))}; the bag has: {have}")
    return {topic: available[topic] for topic in topics or available}


def iter_raw_messages(path: str | os.PathLike, topics: list[str] | None = None) -> Iterator[tuple[str, str, int, bytes]]:
    """Stream (topic, type, log time in ns, CDR bytes) in log-time order, of ``topics`` or of every topic.

    The bag and the topics are checked on the call, before the first message is read.
    """
    path = resolve_bag_path(path)
    return _raw_messages(path, set(bag_topics(path, topics)))


def _raw_messages(path: Path, topics: set[str]) -> Iterator[tuple[str, str, int, bytes]]:
    with Reader(path) as reader:
        connections = [c for c in reader.connections if c.topic in topics]
        try:
            for connection, stamp_ns, data in reader.messages(connections=connections):
                yield connection.topic, connection.msgtype, stamp_ns, data
        except Exception as error:  # a truncated chunk or a broken database
            raise BagError(f"bag {path}: cannot be read: {error}") from None


class BagReader:
    """Streams :class:`Frame` objects out of a rosbag2 bag, one at a time.

    Each depth image is paired with the CameraInfo of its stamp (or, failing an
    exact match, the latest one before it), and with the ground-truth labels
    and poses of its stamp where the bag has those topics.

    With ``skip_bad_frames``, a frame that cannot be decoded is counted in
    ``skipped`` and passed over; otherwise its :class:`FrameError` is raised.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        topics: TopicsConfig | None = None,
        skip_bad_frames: bool = False,
    ) -> None:
        self.path = resolve_bag_path(path)
        self.topics = topics or TopicsConfig()
        self.skip_bad_frames = skip_bad_frames
        self.skipped = 0
        metadata = read_metadata(self.path)
        self.storage_id: str = metadata.get("storage_identifier", "?")
        self.custom_data: dict[str, str] = metadata.get("custom_data") or {}
        self.topic_info = {
            t["topic_metadata"]["name"]: (t["topic_metadata"]["type"], int(t["message_count"]))
            for t in metadata.get("topics_with_message_count", [])
        }
        for role, topic, msgtype in (
            ("depth", self.topics.depth, "sensor_msgs/msg/Image"),
            ("camera_info", self.topics.camera_info, "sensor_msgs/msg/CameraInfo"),
        ):
            if topic not in self.topic_info:
                have = ", ".join(f"{t} ({m})" for t, (m, _) in sorted(self.topic_info.items())) or "none"
                raise BagError(f"bag {self.path}: no {role} topic {topic!r}; the bag has: {have}")
            if self.topic_info[topic][0] != msgtype:
                raise BagError(f"bag {self.path}: topic {topic} is {self.topic_info[topic][0]}, expected {msgtype}")
        self._optional = {
            role: topic
            for role, topic in (("rgb", self.topics.rgb), ("gt_labels", self.topics.gt_labels), ("gt_poses", self.topics.gt_poses))
            if self.topic_info.get(topic, (None, 0))[1] > 0
        }

    def __len__(self) -> int:
        """The number of depth images in the bag."""
        return self.topic_info[self.topics.depth][1]

    @property
    def has_ground_truth(self) -> bool:
        return "gt_labels" in self._optional and "gt_poses" in self._optional

    @property
    def part_name(self) -> str | None:
        return self.custom_data.get(META_PART)

    def part_mesh(self) -> trimesh.Trimesh | None:
        """The simulated part's mesh, from the bag's metadata, if the simulator wrote it."""
        text = self.custom_data.get(META_MESH)
        return decode_mesh(text) if text else None

    def workspace(self) -> np.ndarray | None:
        """The workspace box the simulator recorded, (2, 3), if any."""
        text = self.custom_data.get(META_WORKSPACE)
        return parse_workspace(text) if text else None

    def bin_pose(self) -> np.ndarray | None:
        """The frame (4, 4) of the recorded workspace box, the bin's in the camera's; None: the camera's own."""
        text = self.custom_data.get(META_BIN_POSE)
        return parse_bin_pose(text) if text else None

    def __iter__(self) -> Iterator[Frame]:
        role_of = {self.topics.depth: "depth", self.topics.camera_info: "camera_info"}
        role_of.update({topic: role for role, topic in self._optional.items()})
        needed = {"depth", *self._optional}
        infos: OrderedDict[int, Any] = OrderedDict()  # the latest CameraInfos by stamp
        pending: OrderedDict[int, dict[str, Any]] = OrderedDict()  # stamp -> {role: message}
        with Reader(self.path) as reader:
            connections = [c for c in reader.connections if c.topic in role_of]
            for connection, _, raw in reader.messages(connections=connections):
                try:
                    msg = messages.TYPESTORE.deserialize_cdr(raw, connection.msgtype)
                except Exception as error:  # a truncated or foreign CDR buffer
                    raise BagError(f"bag {self.path}: topic {connection.topic}: undecodable message: {error}") from None
                stamp = messages.stamp_ns(msg.header)
                role = role_of[connection.topic]
                if role == "camera_info":
                    infos[stamp] = msg
                    if len(infos) > _PAIRING_WINDOW:
                        infos.popitem(last=False)
                else:
                    pending.setdefault(stamp, {})[role] = msg
                parts = pending.get(stamp)
                if parts is not None and needed <= parts.keys() and stamp in infos:
                    del pending[stamp]
                    yield from self._emit(stamp, parts, infos[stamp])
                while len(pending) > _PAIRING_WINDOW:
                    old_stamp, old_parts = pending.popitem(last=False)
                    yield from self._emit(old_stamp, old_parts, _nearest_info(infos, old_stamp))
            for stamp, parts in pending.items():
                yield from self._emit(stamp, parts, _nearest_info(infos, stamp))

    def _emit(self, stamp: int, parts: dict[str, Any], info: Any) -> Iterator[Frame]:
        if "depth" not in parts:
            return  # ground truth or colour without its depth image
        try:
            yield self._frame(stamp, parts, info)
        except FrameError:
            if not self.skip_bad_frames:
                raise
            self.skipped += 1

    def _frame(self, stamp: int, parts: dict[str, Any], info: Any) -> Frame:
        where = f"bag {self.path}: topic {self.topics.depth} at stamp {stamp}"
        depth_msg = parts["depth"]
        if info is None:
            raise FrameError(f"{where}: no CameraInfo on {self.topics.camera_info} at or before this stamp")
        depth_m = messages.depth_from_image(depth_msg, where)
        info_source = f"bag {self.path}: topic {self.topics.camera_info} at stamp {stamp}"
        K = messages.intrinsics_from_camera_info(info, info_source)
        messages.check_size(depth_m, info, where)
        depth_m = messages.pinhole_depth(depth_m, info, K, info_source)
        rgb = labels = poses = None
        if "rgb" in parts:
            rgb = messages.rgb_from_image(parts["rgb"], f"bag {self.path}: topic {self.topics.rgb} at stamp {stamp}")
        if "gt_labels" in parts:
            labels = messages.labels_from_image(parts["gt_labels"], f"bag {self.path}: topic {self.topics.gt_labels} at stamp {stamp}")
        if "gt_poses" in parts:
            poses = messages.poses_from_pose_array(parts["gt_poses"])
        return Frame(depth_m, K, stamp, depth_msg.header.frame_id, rgb, labels, poses)


def _nearest_info(infos: OrderedDict[int, Any], stamp: int) -> Any:
    """The CameraInfo of ``stamp``, else the latest before it, else the earliest after it."""
    if stamp in infos:
        return infos[stamp]
    earlier = [s for s in infos if s < stamp]
    if earlier:
        return infos[max(earlier)]
    return infos[min(infos)] if infos else None


def _describe(msg: Any) -> str:
    kind = msg.__msgtype__
    if kind == "sensor_msgs/msg/Image":
        return f"{msg.encoding} {msg.width}x{msg.height}"
    if kind == "sensor_msgs/msg/CameraInfo":
        return f"{msg.width}x{msg.height} fx={msg.k[0]:.1f} fy={msg.k[4]:.1f}"
    if kind == "geometry_msgs/msg/PoseArray":
        return f"{len(msg.poses)} poses"
    return ""
