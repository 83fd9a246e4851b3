import os
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from bin_perception.config import Config, TopicsConfig
from bin_perception.frame import Frame
from bin_perception.io.bag import BagReader, BagWriter
from bin_perception.io.errors import BagError, FrameError
from bin_perception.sim.dataset import scene_frame, simulate_bag
from bin_perception.sim.parts import load_part
from bin_perception.sim.scene import BinSimulator

from .conftest import NUT_BAG_SCENES

TS = get_typestore(Stores.ROS2_KILTED)
Image = TS.types["sensor_msgs/msg/Image"]
CameraInfo = TS.types["sensor_msgs/msg/CameraInfo"]
Header = TS.types["std_msgs/msg/Header"]
Time = TS.types["builtin_interfaces/msg/Time"]
ROI = TS.types["sensor_msgs/msg/RegionOfInterest"]


def _same_frame(a: Frame, b: Frame) -> None:
    assert a.depth_m.tobytes() == b.depth_m.tobytes()
    assert a.rgb.tobytes() == b.rgb.tobytes()
    assert a.gt_labels.tobytes() == b.gt_labels.tobytes()
    np.testing.assert_allclose(a.gt_poses, b.gt_poses, atol=1e-12)
    np.testing.assert_array_equal(a.K, b.K)
    assert (a.stamp_ns, a.frame_id) == (b.stamp_ns, b.frame_id)


def test_simulated_bag_round_trips_through_our_reader(nut_bag):
    reader = BagReader(nut_bag)
    assert len(reader) == NUT_BAG_SCENES and reader.has_ground_truth
    assert reader.part_name == "nut"
    mesh = reader.part_mesh()
    np.testing.assert_allclose(mesh.volume, load_part("nut").mesh.volume, rtol=1e-9)
    frames = list(reader)
    assert len(frames) == NUT_BAG_SCENES
    config = Config()
    with BinSimulator(load_part("nut"), 3, config) as simulator:
        for index in (0, NUT_BAG_SCENES - 1):
            expected = scene_frame(simulator, 7, index, config.scene.frame_period_s, config.camera.frame_id)
            _same_frame(frames[index], expected)
    assert [f.stamp_ns for f in frames] == sorted(f.stamp_ns for f in frames)
    np.testing.assert_allclose(reader.workspace(), simulator.workspace, atol=1e-6)


def test_a_tilted_cameras_bag_records_the_frame_of_its_box(tmp_path):
    config = Config()
    config.camera.tilt_deg = 30.0
    simulate_bag("nut", 2, 1, 0, tmp_path / "tilted", config, progress=False)
    reader = BagReader(tmp_path / "tilted")
    with BinSimulator(load_part("nut"), 2, config) as simulator:
        np.testing.assert_allclose(reader.bin_pose(), simulator.camera_from_bin, atol=1e-6)
        np.testing.assert_allclose(reader.workspace(), simulator.workspace, atol=1e-6)
    # The box is the bin's inside over its floor, in the bin's frame.
    assert reader.workspace()[0, 2] > 0 and np.allclose(reader.workspace()[0, :2], -reader.workspace()[1, :2])


def test_raw_messages_deserialize_with_rclpy_into_ros2_messages(nut_bag):
    from geometry_msgs.msg import PoseArray
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import CameraInfo as RosCameraInfo
    from sensor_msgs.msg import Image as RosImage

    from bin_perception.io.messages import depth_from_image, poses_from_pose_array

    first = next(iter(BagReader(nut_bag)))
    topics = TopicsConfig()
    seen = set()
    with Reader(nut_bag) as reader:
        for connection, _, raw in reader.messages():
            msg_class = {"sensor_msgs/msg/Image": RosImage, "sensor_msgs/msg/CameraInfo": RosCameraInfo,
                         "geometry_msgs/msg/PoseArray": PoseArray}[connection.msgtype]
            msg = deserialize_message(raw, msg_class)
            if msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec != first.stamp_ns:
                continue
            seen.add(connection.topic)
            assert msg.header.frame_id == first.frame_id
            if connection.topic == topics.depth:
                assert msg.encoding == "32FC1" and (msg.height, msg.width) == first.depth_m.shape
                assert depth_from_image(msg).tobytes() == first.depth_m.tobytes()
            elif connection.topic == topics.camera_info:
                np.testing.assert_array_equal(np.reshape(msg.k, (3, 3)), first.K)
            elif connection.topic == topics.gt_labels:
                assert msg.encoding == "mono16"
                np.testing.assert_array_equal(np.frombuffer(bytes(msg.data), np.uint16).reshape(first.gt_labels.shape), first.gt_labels)
            elif connection.topic == topics.gt_poses:
                np.testing.assert_allclose(poses_from_pose_array(msg), first.gt_poses, atol=1e-9)
            elif connection.topic == topics.rgb:
                assert msg.encoding == "rgb8"
                np.testing.assert_array_equal(np.frombuffer(bytes(msg.data), np.uint8).reshape(first.rgb.shape), first.rgb)
    assert seen == {topics.depth, topics.camera_info, topics.rgb, topics.gt_labels, topics.gt_poses}


def test_sqlite3_bags_and_parallel_workers_give_the_same_images(nut_bag, tmp_path):
    path = tmp_path / "nut_n3_sqlite"
    simulate_bag("nut", 3, NUT_BAG_SCENES, seed=7, out=path, workers=2, storage="sqlite3", progress=False)
    assert list(path.glob("*.db3"))
    for a, b in zip(BagReader(nut_bag), BagReader(path), strict=True):
        _same_frame(a, b)


def _info(stamp_ns: int, fx: float = 300.0, width: int = 64, height: int = 48):
    sec, nsec = divmod(stamp_ns, 10**9)
    return CameraInfo(
        header=Header(stamp=Time(sec=sec, nanosec=nsec), frame_id="cam"), height=height, width=width,
        distortion_model="plumb_bob", d=np.zeros(5), k=np.array([fx, 0, 32, 0, fx, 24, 0, 0, 1.0]),
        r=np.eye(3).ravel(), p=np.zeros(12), binning_x=0, binning_y=0,
        roi=ROI(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False),
    )


def _depth(stamp_ns: int, pixels: np.ndarray, encoding: str):
    sec, nsec = divmod(stamp_ns, 10**9)
    return Image(header=Header(stamp=Time(sec=sec, nanosec=nsec), frame_id="cam"), height=pixels.shape[0],
                 width=pixels.shape[1], encoding=encoding, is_bigendian=0, step=pixels.nbytes // pixels.shape[0],
                 data=np.ascontiguousarray(pixels).view(np.uint8).ravel())


def _hand_made_bag(path: Path, depths: list, infos: list, depth_topic="/cam/depth/image_rect_raw", info_topic="/cam/depth/camera_info"):
    """A bag as a real camera driver records it: sqlite3, its own topic names."""
    with Writer(path, version=8, storage_plugin=StoragePlugin.SQLITE3) as writer:
        info_conn = writer.add_connection(info_topic, CameraInfo.__msgtype__, typestore=TS)
        depth_conn = writer.add_connection(depth_topic, Image.__msgtype__, typestore=TS)
        for msg in infos:
            writer.write(info_conn, msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec, TS.serialize_cdr(msg, msg.__msgtype__))
        for msg in depths:
            writer.write(depth_conn, msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec + 1, TS.serialize_cdr(msg, msg.__msgtype__))
    return path


REAL_TOPICS = TopicsConfig(depth="/cam/depth/image_rect_raw", camera_info="/cam/depth/camera_info")


def test_hand_made_16uc1_sqlite3_bag_reads_in_metres(tmp_path):
    rng = np.random.default_rng(0)
    stamps = [10**9 * (i + 1) + 5 for i in range(5)]
    millimetres = [rng.integers(300, 900, size=(48, 64)).astype(np.uint16) for _ in stamps]
    for image in millimetres:
        image[:3, :] = 0  # no return
    # The driver published its CameraInfo once, before the first image.
    path = _hand_made_bag(tmp_path / "real", [_depth(s, mm, "16UC1") for s, mm in zip(stamps, millimetres)], [_info(stamps[0] - 1000)])
    reader = BagReader(path, REAL_TOPICS)
    assert not reader.has_ground_truth
    frames = list(reader)
    assert [f.stamp_ns for f in frames] == stamps
    for frame, mm in zip(frames, millimetres):
        assert np.isnan(frame.depth_m[:3]).all()
        np.testing.assert_allclose(frame.depth_m[3:], mm[3:] / 1000.0, rtol=1e-6)
        assert frame.K[0, 0] == 300.0 and frame.gt_labels is None


def test_depth_in_millimetres_round_trips_as_a_cameras_driver_publishes_it():
    from bin_perception.io.messages import depth_from_image, depth_mm_from_m, image_msg

    depth_m = np.array([[0.7004, 0.6996, np.nan], [-1.0, np.inf, 70.0]])
    depth_mm = depth_mm_from_m(depth_m)
    assert depth_mm.dtype == np.uint16
    assert depth_mm.tolist() == [[700, 700, 0], [0, 0, 0]]  # no return, behind, infinite and out of range: 0
    back_m = depth_from_image(image_msg(1, "camera", depth_mm, "16UC1"))
    np.testing.assert_allclose(back_m[0, :2], [0.7, 0.7], rtol=1e-6)
    assert np.isnan(back_m[0, 2]) and np.isnan(back_m[1]).all()


def test_reading_streams_rather_than_loading_the_bag(tmp_path):
    stamps = [10**9 * (i + 1) for i in range(120)]
    depth = np.full((240, 320), 0.5, dtype=np.float32)  # 300 kB a frame, 36 MB in all
    path = _hand_made_bag(tmp_path / "long", [_depth(s, depth, "32FC1") for s in stamps],
                          [_info(s, width=320, height=240) for s in stamps])
    tracemalloc.start()
    count = sum(1 for _ in BagReader(path, REAL_TOPICS))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert count == 120
    assert peak < 12e6, f"reading held {peak / 1e6:.1f} MB at its peak"


def test_bad_inputs_get_errors_that_name_the_file_topic_and_problem(tmp_path, nut_bag):
    with pytest.raises(BagError, match="no such file"):
        BagReader(tmp_path / "nowhere")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(BagError, match="empty_dir: not a rosbag2 bag directory"):
        BagReader(tmp_path / "empty_dir")
    with pytest.raises(BagError, match=r"no depth topic '/camera/ir/image'; the bag has: /camera/color/image"):
        BagReader(nut_bag, TopicsConfig(depth="/camera/ir/image"))

    stamp = 10**9
    cases = {
        "encoding": (
            [_depth(stamp, np.zeros((48, 64, 3), np.uint8), "rgb8")], [_info(stamp)],
            r"image_rect_raw at stamp 1000000000: unknown depth encoding 'rgb8'",
        ),
        "focal": (
            [_depth(stamp, np.ones((48, 64), np.float32), "32FC1")], [_info(stamp, fx=0.0)],
            r"camera_info at stamp 1000000000: focal length fx=0",
        ),
        "size": ([_depth(stamp, np.ones((40, 64), np.float32), "32FC1")], [_info(stamp)], r"depth image is 64x40 but its CameraInfo says 64x48"),
    }
    for name, (depths, infos, message) in cases.items():
        path = _hand_made_bag(tmp_path / name, depths, infos)
        with pytest.raises(FrameError, match=message) as error:
            list(BagReader(path, REAL_TOPICS))
        assert str(path) in str(error.value)
        skipping = BagReader(path, REAL_TOPICS, skip_bad_frames=True)
        assert list(skipping) == [] and skipping.skipped == 1


def test_an_aborted_writer_leaves_no_bag(tmp_path, nut_bag):
    frame = next(iter(BagReader(nut_bag)))
    target = tmp_path / "aborted.mcap"
    with pytest.raises(RuntimeError):
        with BagWriter(target) as writer:
            writer.write(frame)
            raise RuntimeError("crash mid-write")
    assert not target.exists() and list(tmp_path.iterdir()) == []
    with pytest.raises(FileExistsError, match="already exists"):
        BagWriter(nut_bag)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM])
def test_a_killed_simulation_leaves_no_bag(tmp_path, signum):
    target = tmp_path / "killed.mcap"
    process = subprocess.Popen(
        [sys.executable, "-m", "bin_perception.cli", "simulate", "--part", "nut", "--instances", "2",
         "--scenes", "100000", "--out", str(target)],
        stderr=subprocess.PIPE, text=True,
    )
    # Wait until scenes are being written, then kill it.
    deadline = time.monotonic() + 60
    partial = []
    while time.monotonic() < deadline and not any(p.stat().st_size > 1e6 for p in partial):
        partial = [p for p in tmp_path.rglob("*.mcap") if p.is_file()]
        time.sleep(0.2)
    os.kill(process.pid, signum)
    process.wait()
    assert partial, "the simulation never started writing"
    assert not target.exists()
    if signum == signal.SIGTERM:  # a polite stop also removes what was staged
        assert list(tmp_path.iterdir()) == []
