"""perception_node with real rclpy and real DDS, across processes.

The camera is another process (sim_camera_node, or a script publishing bad frames), the node is
its own process, and this test process is the client that reads what the node publishes.
"""

import json
import os
import random
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from geometry_msgs.msg import PoseArray  # noqa: E402
from rcl_interfaces.msg import Parameter as ParameterMsg  # noqa: E402
from rcl_interfaces.srv import SetParameters  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import Image, PointCloud2  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402
from visualization_msgs.msg import MarkerArray  # noqa: E402

from bin_perception.baselines import baseline_label_image  # noqa: E402
from bin_perception.config import Config, ModelConfig, TrainConfig  # noqa: E402
from bin_perception.io.pointcloud import FLOAT32, UINT32, records_from_cloud  # noqa: E402
from bin_perception.learning.trainer import train  # noqa: E402
from bin_perception.metrics import label_image_scores  # noqa: E402
from bin_perception.model.perception import load_checkpoint  # noqa: E402
from bin_perception.nodes.collector import collect  # noqa: E402
from bin_perception.sim.dataset import simulate_bag  # noqa: E402
from bin_perception.sim.parts import load_part  # noqa: E402
from bin_perception.sim.scene import bin_inner_size_m  # noqa: E402

BIN = Path(sys.executable).parent
REAL_CELL = Path(__file__).resolve().parents[1] / "config" / "real_cell.yaml"
PART, INSTANCES = "bolt", 3


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A small per-seed model of 3 bolts, really trained (about half a minute)."""
    root = tmp_path_factory.mktemp("node_model")
    bag = root / "bolt_n3.mcap"
    simulate_bag(PART, INSTANCES, 32, seed=3, out=bag, progress=False)
    model = ModelConfig(method="per_seed", input_size_px=64, model_points=256, observed_points=128)
    result = train([str(bag)], INSTANCES, Config(model=model, train=TrainConfig(batch_size=8, epochs=6, seed=0)), root / "run")
    return result.run_dir / "checkpoint.pt"


@pytest.fixture
def ros(monkeypatch):
    """This process's rclpy, on a DDS domain of its own that the child processes share."""
    monkeypatch.setenv("ROS_DOMAIN_ID", str(random.randint(100, 230)))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    rclpy.init()
    processes: list[subprocess.Popen] = []
    yield processes
    rclpy.try_shutdown()
    for process in processes:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def start(processes: list, executable: str, *ros_args: str) -> subprocess.Popen:
    process = subprocess.Popen([str(BIN / executable), "--ros-args", *ros_args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    processes.append(process)
    return process


def spin_until(node, condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.1)
    return condition()


def test_node_perceives_a_camera_in_another_process_and_beats_kmeans(ros, checkpoint):
    start(
        ros, "sim_camera_node", "-p", f"part:={PART}", "-p", f"instances:={INSTANCES}", "-p", "seed:=99",
        "-p", "rate_hz:=4.0", "-p", "frames_per_bin:=1",
    )
    # A cup small enough for the top of a bolt's 8 mm shank; a count given is a count kept.
    node = start(ros, "perception_node", "-p", f"checkpoint:={checkpoint}", "-p", "gripper.suction_radius_m:=0.002", "-p", f"instances:={INSTANCES}")

    listener = rclpy.create_node("listener")
    clouds, markers, overlays, detections, grasps = [], [], [], [], []
    listener.create_subscription(String, "/perception_node/detections", detections.append, 10)
    listener.create_subscription(PoseArray, "/perception_node/grasps", grasps.append, 10)
    listener.create_subscription(PointCloud2, "/perception_node/segments", clouds.append, 10)
    listener.create_subscription(MarkerArray, "/perception_node/markers", markers.append, 10)
    listener.create_subscription(Image, "/perception_node/overlay", overlays.append, 10)
    results = collect(10, timeout_s=150.0)
    assert spin_until(listener, lambda: clouds and markers and overlays and detections and grasps, 10.0)
    assert len(results) == 10, node.stdout.read() if node.poll() is not None else "the node is running but silent"

    ours, kmeans = [], []
    for result in results:
        frame = result.frame
        assert result.poses.shape == (INSTANCES, 4, 4)
        assert result.labels.shape == frame.depth_m.shape
        assert set(np.unique(result.labels)) <= set(range(INSTANCES + 1))
        assert frame.frame_id == "camera_depth_optical_frame"
        ours.append(label_image_scores(frame.gt_labels, result.labels).f1)
        kmeans.append(label_image_scores(frame.gt_labels, baseline_label_image(frame, result.labels > 0, "kmeans", INSTANCES)).f1)
    assert np.mean(ours) > np.mean(kmeans), (ours, kmeans)

    cloud = clouds[-1]
    assert cloud.header.frame_id == "camera_depth_optical_frame"
    fields = [(f.name, f.offset, f.datatype) for f in cloud.fields]
    assert fields == [("x", 0, FLOAT32), ("y", 4, FLOAT32), ("z", 8, FLOAT32), ("label", 12, UINT32)]
    records = records_from_cloud(cloud.data, fields, cloud.point_step, cloud.width)
    assert cloud.width > 100 and set(np.unique(records["label"])) == set(range(1, INSTANCES + 1))
    assert np.all(records["z"] > 0)
    # Each pose with its confidence and grasp, for a pick planner, stamped as the depth it came from.
    found = json.loads(detections[-1].data)
    assert found["frame_id"] == "camera_depth_optical_frame" and [d["id"] for d in found["detections"]] == [1, 2, 3]
    confidences = [d["confidence"] for d in found["detections"]]
    assert all(0.0 <= c <= 1.0 for c in confidences)
    # They and the poses are the library's own for that frame: the node perceives it as BinPerception.predict
    # does. (This half-minute model's poses fit their points too loosely to earn much confidence.)
    frames = {r.frame.stamp_ns: r.frame for r in results}
    stamped = {m["stamp"]["sec"] * 10**9 + m["stamp"]["nanosec"]: m for m in (json.loads(d.data) for d in detections)}
    matched = [(frames[stamp], message) for stamp, message in stamped.items() if stamp in frames]
    assert matched, "no detections message carries the stamp of a collected frame"
    perception = load_checkpoint(checkpoint)[0].eval()
    for frame, message in matched[-2:]:
        expected = perception.predict(frame)
        np.testing.assert_allclose([d["position_m"] for d in message["detections"]], expected.poses[:, :3, 3], atol=1e-4)
        np.testing.assert_allclose([d["confidence"] for d in message["detections"]], expected.confidences, atol=0.02)
    drawn = markers[-1].markers
    arrows = {m.id for m in drawn if m.action == m.ADD and m.ns == "grasp"}
    assert {(m.ns, m.id) for m in drawn if m.action == m.ADD} == {(ns, i) for ns in ("model", "axes", "id") for i in (1, 2, 3)} | {
        ("grasp", i) for i in arrows
    }
    # ~/grasps holds the cups' poses in pick order: the order ~/detections gives, best score first.
    orders = [json.loads(d.data) for d in detections]
    by_stamp = {(g.header.stamp.sec, g.header.stamp.nanosec): g for g in grasps}
    paired = [(o, by_stamp[(o["stamp"]["sec"], o["stamp"]["nanosec"])]) for o in orders if (o["stamp"]["sec"], o["stamp"]["nanosec"]) in by_stamp]
    assert paired and any(o["pick_order"] for o, _ in paired)
    for order, cups in paired:
        assert len(cups.poses) == len(order["pick_order"])
        scores = {d["id"]: d["pick_score"] for d in order["detections"]}
        assert [scores[i] for i in order["pick_order"]] == sorted((scores[i] for i in order["pick_order"]), reverse=True)
        for instance, cup in zip(order["pick_order"], cups.poses):
            grasp = order["detections"][instance - 1]["grasp"]
            assert grasp["support"] == 1.0
            np.testing.assert_allclose([cup.position.x, cup.position.y, cup.position.z], grasp["position_m"], atol=1e-9)
    overlay = overlays[-1]
    assert overlay.encoding == "rgb8" and (overlay.height, overlay.width) == results[0].labels.shape
    pixels = np.frombuffer(bytes(overlay.data), np.uint8).reshape(overlay.height, overlay.width, 3)
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > INSTANCES  # grey depth, the instances' colours, the axes
    listener.destroy_node()


# What both scripted cameras start with: the bag's frames, and a depth and a CameraInfo publisher that wait
# until the node under test has subscribed.
CAMERA_SCRIPT = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, Image
    from bin_perception.io.bag import BagReader
    from bin_perception.nodes import ros_messages

    frames = list(BagReader(sys.argv[1]))
    rclpy.init()
    node = rclpy.create_node("scripted_camera")
    depth = node.create_publisher(Image, "depth/image", qos_profile_sensor_data)
    info = node.create_publisher(CameraInfo, "depth/camera_info", qos_profile_sensor_data)
    while depth.get_subscription_count() == 0 or info.get_subscription_count() == 0:
        rclpy.spin_once(node, timeout_sec=0.1)
    time.sleep(1.0)
    """
)

BAD_FRAMES_PUBLISHER = CAMERA_SCRIPT + textwrap.dedent(
    """
    good = frames[0]
    K, (h, w) = good.K, good.depth_m.shape

    def head(offset_s=0.0):
        return ros_messages.header(node.get_clock().now().nanoseconds + int(offset_s * 1e9), "camera_depth_optical_frame")

    def send(pixels, encoding, with_info=True, info_offset_s=0.0, info_after=False):
        # As a driver does: the image and its CameraInfo stamped alike, on two topics.
        image_head = head()
        info_head = ros_messages.header(ros_messages_stamp(image_head) + int(info_offset_s * 1e9), image_head.frame_id)
        if with_info and not info_after:
            info.publish(ros_messages.camera_info(info_head, K, w, h))
            time.sleep(0.05)
        depth.publish(ros_messages.image(image_head, pixels, encoding))
        if with_info and info_after:
            time.sleep(0.005)
            info.publish(ros_messages.camera_info(info_head, K, w, h))
        time.sleep(0.5)  # one at a time: none of them may be dropped as stale

    def ros_messages_stamp(header):
        return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec

    metres = good.depth_m.astype(np.float32)
    send(metres, "32FC1", with_info=False)                        # no CameraInfo yet
    send(np.zeros((h, w, 3), np.uint8), "rgb8")                   # wrong encoding
    send(metres[: h // 2], "32FC1")                               # a size that disagrees with CameraInfo
    send(np.full((h, w), np.nan, np.float32), "32FC1")            # all NaN
    send(np.zeros((h, w), np.uint16), "16UC1")                    # all zero
    send(np.full((h, w), 5.0, np.float32), "32FC1")               # nothing in the workspace
    send(metres, "32FC1", info_offset_s=1.0)                      # a CameraInfo of another moment
    for i in range(3):
        send(metres, "32FC1", info_after=i == 0)                  # and good frames again, the first before its CameraInfo
    time.sleep(2.0)
    """
)


def test_the_node_counts_the_parts_when_not_told_how_many(ros, checkpoint, tmp_path):
    # Bins of two, from a model trained on bins of three: the count is the node's own, not its training's. The
    # simulator sizes a bin to its count; this one is the training's bin, which the model's workspace fits.
    shown = INSTANCES - 1
    cell = tmp_path / "cell.yaml"
    cell.write_text(f"scene:\n  bin_inner_m: {bin_inner_size_m(load_part(PART), INSTANCES, Config())}\n")
    start(
        ros, "sim_camera_node", "-p", f"part:={PART}", "-p", f"instances:={shown}", "-p", "seed:=7",
        "-p", "rate_hz:=4.0", "-p", "frames_per_bin:=1", "-p", f"config:={cell}",
    )
    node = start(ros, "perception_node", "-p", f"checkpoint:={checkpoint}")
    results = collect(8, timeout_s=150.0)
    assert len(results) == 8, node.stdout.read() if node.poll() is not None else "the node is running but silent"
    counts = [len(result.poses) for result in results]
    ours = [label_image_scores(r.frame.gt_labels, r.labels).f1 for r in results]
    # K-means is told each bin's count, which the node was not.
    kmeans = [label_image_scores(r.frame.gt_labels, baseline_label_image(r.frame, r.labels > 0, "kmeans", shown)).f1 for r in results]
    assert sum(count == shown for count in counts) >= 6, counts
    assert np.mean(ours) > np.mean(kmeans), (ours, kmeans)


def test_the_camera_can_simulate_its_bins_first_and_cycle_them(ros):
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    camera = start(ros, "sim_camera_node", "-p", "part:=pin", "-p", "instances:=2", "-p", "rate_hz:=10.0", "-p", "frames_per_bin:=1", "-p", "bins:=2")
    client = rclpy.create_node("client")
    labels = []
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    client.create_subscription(Image, "/gt/labels", lambda m: labels.append(bytes(m.data)), reliable)
    assert spin_until(client, lambda: len(labels) >= 6, 60.0), camera.stdout.read() if camera.poll() is not None else "no frames"
    client.destroy_node()
    # Two bins, one frame each: they alternate.
    assert len(set(labels)) == 2
    assert all(a != b for a, b in zip(labels, labels[1:]))


def test_a_real_cameras_depth_images_arrive_whole_across_processes(ros):
    """848 x 480 millimetres (814 KB a frame) at 10 Hz, best effort: FastDDS's default shared-memory segment
    (512 KB) lost about two frames in three of them; the package's transport profile loses none."""
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    rate_hz, frames = 10.0, 30
    camera = start(
        ros, "sim_camera_node", "-p", "part:=nut", "-p", "instances:=3", "-p", f"config:={REAL_CELL}", "-p", f"rate_hz:={rate_hz}", "-p", "bins:=2"
    )
    client = rclpy.create_node("client")
    stamps_ns = set()

    def on_depth(msg: Image) -> None:
        assert (msg.width, msg.height, msg.encoding) == (848, 480, "16UC1")
        stamps_ns.add(msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec)

    client.create_subscription(Image, "/depth/image", on_depth, qos_profile_sensor_data)
    arrived = spin_until(client, lambda: len(stamps_ns) > 0, 90.0)
    assert arrived, camera.stdout.read() if camera.poll() is not None else "no depth image in 90 s"
    spin_until(client, lambda: len(stamps_ns) >= frames, 2 * frames / rate_hz)
    client.destroy_node()
    # Counted from the first image that arrived, not from the camera's first: images published before this
    # process discovered the camera (seconds, on a loaded machine) were never meant for it.
    published = round((max(stamps_ns) - min(stamps_ns)) * rate_hz / 1e9) + 1
    # A frame or two may go while this process is descheduled on a loaded machine; two in three may not.
    assert published >= frames // 2, f"the camera published {published} frames in {2 * frames / rate_hz:g} s"
    assert len(stamps_ns) >= 0.9 * published, f"{len(stamps_ns)} of the {published} depth images published since the first arrived"


def test_bad_frames_are_dropped_counted_and_the_node_stays_alive(ros, checkpoint, tmp_path):
    node = start(ros, "perception_node", "-p", f"checkpoint:={checkpoint}", "-p", f"instances:={INSTANCES}")
    bag = checkpoint.parents[1] / "bolt_n3.mcap"
    publisher = subprocess.Popen([sys.executable, "-c", BAD_FRAMES_PUBLISHER, str(bag)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ros.append(publisher)

    listener = rclpy.create_node("listener")
    poses, diagnostics = [], {}

    def on_diagnostics(msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.startswith("perception_node"):
                diagnostics.update({kv.key: kv.value for kv in status.values})

    from geometry_msgs.msg import PoseArray

    listener.create_subscription(PoseArray, "/perception_node/poses", poses.append, 10)
    listener.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 10)
    expected = {
        "dropped_no_camera_info": "2",
        "dropped_encoding": "1",
        "dropped_size_mismatch": "1",
        "dropped_no_depth": "2",
        "dropped_too_few_points": "1",
    }
    done = spin_until(listener, lambda: len(poses) >= 3 and all(diagnostics.get(k) == v for k, v in expected.items()), 120.0)
    assert publisher.wait(timeout=60) == 0, publisher.stdout.read()
    assert done, (len(poses), diagnostics)
    assert all(len(p.poses) == INSTANCES for p in poses)
    assert node.poll() is None, "the node died"
    listener.destroy_node()


def test_a_parameter_file_is_read_like_ros2_run_reads_it(checkpoint, tmp_path):
    params = tmp_path / "params.yaml"
    shipped = (Path(__file__).parents[1] / "config" / "bin_perception.yaml").read_text()
    edited = shipped.replace("    # model:\n    #   hpr_exponent: 2.9", "    model:\n      hpr_exponent: 11.0")
    assert edited != shipped, "config/bin_perception.yaml no longer has the commented model section this test edits"
    params.write_text(edited)
    env = dict(os.environ, ROS_DOMAIN_ID=str(random.randint(100, 230)))
    run = subprocess.run(
        [str(BIN / "perception_node"), "--ros-args", "--params-file", str(params), "-p", f"checkpoint:={checkpoint}"],
        capture_output=True, text=True, timeout=60, env=env,
    )
    assert run.returncode == 2 and "model.hpr_exponent out of range" in run.stderr, run.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (("-p", "checkpoint:=/no/such/checkpoint.pt"), "parameter checkpoint: /no/such/checkpoint.pt: no such file"),
        (("-p", "instances:=-1"), "Parameter instances out of range. Min: 1, Max: 256, value: -1"),
        (("-p", "workspace:=[0.0,0.0,0.5,0.1,0.1,0.5]"), "parameter workspace: workspace [0.0, 0.0, 0.5, 0.1, 0.1, 0.5]: empty box"),
        (("-p", "device:=tpu"), "parameter device: 'tpu': expected one of cpu, cuda"),
        (("-p", "mode:=train_inloop", "-p", "checkpoint:=/tmp/no-such-run/checkpoint.pt"), "parameter instances: required to start in-loop training"),
        (("-p", "mode:=train_inloop", "-p", "inloop.replacement:=lifo"), "parameter inloop.replacement: 'lifo': expected one of reservoir, fifo"),
    ],
)
def test_a_bad_parameter_stops_start_up_with_one_line(checkpoint, args, message):
    env = dict(os.environ, ROS_DOMAIN_ID=str(random.randint(100, 230)))
    run = subprocess.run(
        [str(BIN / "perception_node"), "--ros-args", "-p", f"checkpoint:={checkpoint}", *args],
        capture_output=True, text=True, timeout=60, env=env,
    )
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("perception_node: error: ") and message in lines[0], run.stderr


def call(node, client, request, timeout_s: float = 60.0):
    # Generous: on two cores busy with the other test worker, a service's answer has taken over 20 s.
    assert client.wait_for_service(timeout_sec=30.0)
    future = client.call_async(request)
    rclpy.spin_until_future_complete(node, future, timeout_sec=timeout_s)
    assert future.done(), f"{client.srv_name}: no answer within {timeout_s:g} s"
    return future.result()


def test_parameters_change_at_run_time_and_services_save_and_reload(ros, checkpoint, tmp_path):
    start(ros, "perception_node", "-p", f"checkpoint:={checkpoint}")
    client_node = rclpy.create_node("client")
    set_parameters = client_node.create_client(SetParameters, "/perception_node/set_parameters")

    def set_one(name, value) -> tuple[bool, str]:
        message: ParameterMsg = Parameter(name, value=value).to_parameter_msg()
        result = call(client_node, set_parameters, SetParameters.Request(parameters=[message])).results[0]
        return result.successful, result.reason

    assert set_one("model.hpr_exponent", 2.0) == (True, "")
    ok, reason = set_one("model.refine", "ransac")
    assert not ok and "parameter model.refine: 'ransac': expected one of none, icp" in reason
    assert set_one("model.refine", "icp") == (True, "")
    assert set_one("model.floor_band_m", 0.002) == (True, "")
    ok, reason = set_one("model.floor_band_m", -0.001)
    assert not ok and "model.floor_band_m" in reason
    assert set_one("instances", "auto") == (True, "")  # this model counts the parts unless told how many
    ok, reason = set_one("instances", "many")
    assert not ok and "parameter instances: expected int, got 'many'" in reason
    assert set_one("instances", 4) == (True, "")  # the per-seed method takes any N
    ok, reason = set_one("mode", "train_inloop")
    assert not ok and "fixed at start-up" in reason
    ok, reason = set_one("workspace", [0.1, 0.1, 0.1, 0.0, 0.2, 0.2])
    assert not ok and "parameter workspace" in reason and "empty box" in reason
    ok, reason = set_one("checkpoint", str(tmp_path / "missing.pt"))
    assert not ok and "no such file" in reason
    ok, reason = set_one("bin_pose", [0.0, 0.0, 0.7, 0.0, 0.0, 0.0, 2.0])
    assert not ok and "parameter bin_pose" in reason and "norm 2.0000" in reason
    # A camera tilted 30 degrees about x, 0.7 m from the bin's floor: the box is now in the bin's frame.
    assert set_one("bin_pose", [0.0, 0.0, 0.7, 0.9659258, 0.0, 0.0, 0.2588190]) == (True, "")

    saved = tmp_path / "saved" / "checkpoint.pt"
    assert set_one("save_path", str(saved)) == (True, "")
    response = call(client_node, client_node.create_client(Trigger, "/perception_node/save_model"), Trigger.Request())
    assert response.success, response.message
    perception, _, _ = load_checkpoint(saved)
    assert perception.instances == 4 and perception.config.hpr_exponent == 2.0 and perception.config.refine == "icp"
    np.testing.assert_allclose(perception.camera_from_bin[:3, 3], [0.0, 0.0, 0.7])
    np.testing.assert_allclose(perception.camera_from_bin[1:3, 1:3], [[-0.8660254, -0.5], [0.5, -0.8660254]], atol=1e-6)
    response = call(client_node, client_node.create_client(Trigger, "/perception_node/reload_model"), Trigger.Request())
    assert response.success and str(checkpoint) in response.message
    client_node.destroy_node()


TINY_RECIPE = """
model: {method: per_seed, input_size_px: 64, model_points: 128, observed_points: 64}
train: {batch_size: 4, seed: 0}
"""


def latest_training_step(node, timeout_s: float, above: int) -> int:
    steps = []
    subscription = node.create_subscription(String, "/perception_node/training", lambda m: steps.append(json.loads(m.data).get("step", 0)), 10)
    spin_until(node, lambda: steps and steps[-1] > above, timeout_s)
    node.destroy_subscription(subscription)
    return steps[-1] if steps else -1


@pytest.mark.slow
def test_inloop_training_starts_from_nothing_saves_and_resumes(ros, tmp_path):
    from bin_perception.config import Config
    from bin_perception.sim.parts import load_part
    from bin_perception.sim.scene import BinSimulator

    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(TINY_RECIPE)
    checkpoint = tmp_path / "inloop" / "checkpoint.pt"
    workspace = BinSimulator(load_part("nut"), 2, Config()).workspace.ravel().tolist()
    start(ros, "sim_camera_node", "-p", "part:=nut", "-p", "instances:=2", "-p", "rate_hz:=4.0", "-p", "frames_per_bin:=2")
    inloop = ("-p", "mode:=train_inloop", "-p", f"checkpoint:={checkpoint}", "-p", f"train_config:={recipe}", "-p", "inloop.publish_every_steps:=3")
    node = start(ros, "perception_node", *inloop, "-p", "instances:=2", "-p", f"workspace:={workspace}")

    client = rclpy.create_node("client")
    clouds = []
    from rclpy.qos import DurabilityPolicy, QoSProfile

    latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    client.create_subscription(PointCloud2, "/perception_node/model_cloud", clouds.append, latched)
    step = latest_training_step(client, 150.0, above=5)
    assert step > 5, "the in-loop trainer made no steps"
    assert spin_until(client, lambda: len(clouds) >= 2, 30.0), "the model cloud was not republished as it changed"
    response = call(client, client.create_client(Trigger, "/perception_node/save_model"), Trigger.Request())
    assert response.success, response.message
    assert load_checkpoint(checkpoint)[2]["step"] >= step

    node.send_signal(2)  # SIGINT: the trainer writes its last checkpoint
    assert node.wait(timeout=60) == 0, node.stdout.read()
    stopped_at = load_checkpoint(checkpoint)[2]["step"]
    assert stopped_at >= step

    start(ros, "perception_node", *inloop)  # the same checkpoint: no instances or workspace needed
    assert latest_training_step(client, 150.0, above=stopped_at) > stopped_at
    client.destroy_node()


def test_a_checkpoint_set_at_run_time_loads_before_it_takes_the_model(checkpoint, monkeypatch):
    # In this process, so that the load can be held open: while it runs, perceiving must not wait.
    import threading

    from bin_perception.nodes.perception_node import PerceptionNode

    monkeypatch.setenv("ROS_DOMAIN_ID", str(random.randint(100, 230)))
    rclpy.init(args=["--ros-args", "-p", f"checkpoint:={checkpoint}"])
    node = PerceptionNode()
    loading, release = threading.Event(), threading.Event()
    load = node._load

    def held_load(path, device):
        loading.set()
        release.wait(30.0)
        return load(path, device)

    node._load = held_load
    setter = threading.Thread(target=node.set_parameters, args=([Parameter("checkpoint", value=str(checkpoint))],))
    setter.start()
    try:
        assert loading.wait(30.0)
        assert node._model_lock.acquire(timeout=2.0), "the model was locked for the whole load"
        node._model_lock.release()
    finally:
        release.set()
        setter.join(30.0)
        node.destroy_node()
        rclpy.try_shutdown()
    assert not setter.is_alive()


def test_the_managed_node_perceives_only_while_active_and_keeps_its_model_when_deactivated(ros, checkpoint):
    from geometry_msgs.msg import PoseArray
    from lifecycle_msgs.msg import State, Transition
    from lifecycle_msgs.srv import ChangeState, GetState

    start(ros, "sim_camera_node", "-p", f"part:={PART}", "-p", f"instances:={INSTANCES}", "-p", "rate_hz:=5.0", "-p", "bins:=2")
    node = start(ros, "managed_perception_node", "-p", "checkpoint:=/no/such/checkpoint.pt")
    client = rclpy.create_node("lifecycle_client")
    poses = []
    client.create_subscription(PoseArray, "/perception_node/poses", poses.append, 10)
    change = client.create_client(ChangeState, "/perception_node/change_state")
    get_state = client.create_client(GetState, "/perception_node/get_state")

    def transition(transition_id: int) -> bool:
        return call(client, change, ChangeState.Request(transition=Transition(id=transition_id))).success

    def state() -> int:
        return call(client, get_state, GetState.Request()).current_state.id

    def poses_within(seconds: float) -> int:
        poses.clear()
        spin_until(client, lambda: False, seconds)
        return len(poses)

    assert state() == State.PRIMARY_STATE_UNCONFIGURED
    # A bad checkpoint fails configure, named in the log, and the node waits to be configured again.
    assert not transition(Transition.TRANSITION_CONFIGURE)
    assert state() == State.PRIMARY_STATE_UNCONFIGURED and node.poll() is None
    set_parameters = client.create_client(SetParameters, "/perception_node/set_parameters")
    message = Parameter("checkpoint", value=str(checkpoint)).to_parameter_msg()
    assert call(client, set_parameters, SetParameters.Request(parameters=[message])).results[0].successful
    assert transition(Transition.TRANSITION_CONFIGURE) and state() == State.PRIMARY_STATE_INACTIVE
    assert poses_within(3.0) == 0  # configured, not yet perceiving

    assert transition(Transition.TRANSITION_ACTIVATE) and state() == State.PRIMARY_STATE_ACTIVE
    assert spin_until(client, lambda: len(poses) >= 3, 60.0)
    assert all(len(p.poses) == INSTANCES for p in poses)

    assert transition(Transition.TRANSITION_DEACTIVATE) and state() == State.PRIMARY_STATE_INACTIVE
    spin_until(client, lambda: False, 1.0)  # what was already on its way
    assert poses_within(3.0) == 0
    assert transition(Transition.TRANSITION_ACTIVATE)  # no reload: the model was kept
    assert spin_until(client, lambda: len(poses) >= 2, 30.0)

    assert transition(Transition.TRANSITION_DEACTIVATE) and transition(Transition.TRANSITION_CLEANUP)
    assert state() == State.PRIMARY_STATE_UNCONFIGURED and node.poll() is None
    client.destroy_node()


HOLEY_STREAM_PUBLISHER = CAMERA_SCRIPT + textwrap.dedent(
    """
    rng = np.random.default_rng(0)
    for i in range(12):
        frame = frames[i % len(frames)]
        depth_m = frame.depth_m.copy()
        if i % 3 == 0:  # a third of the frames lose half their pixels, in blobs, as a shadowed projector does
            h, w = depth_m.shape
            coarse = rng.random((h // 8 + 1, w // 8 + 1)) < 0.5
            depth_m[np.kron(coarse, np.ones((8, 8), bool))[:h, :w]] = np.nan
        head = ros_messages.header(node.get_clock().now().nanoseconds, "camera_depth_optical_frame")
        info.publish(ros_messages.camera_info(head, frame.K, depth_m.shape[1], depth_m.shape[0]))
        time.sleep(0.02)
        depth.publish(ros_messages.image(head, depth_m.astype(np.float32), "32FC1"))
        time.sleep(0.6)  # one at a time, so that none is replaced as stale
    time.sleep(2.0)
    """
)


def test_a_stream_with_holes_in_a_third_of_its_frames_is_perceived_frame_after_frame(ros, checkpoint):
    node = start(ros, "perception_node", "-p", f"checkpoint:={checkpoint}", "-p", f"instances:={INSTANCES}")
    bag = checkpoint.parents[1] / "bolt_n3.mcap"
    publisher = subprocess.Popen(
        [sys.executable, "-c", HOLEY_STREAM_PUBLISHER, str(bag)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    ros.append(publisher)
    listener = rclpy.create_node("listener")
    diagnostics = {}

    def on_diagnostics(msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.startswith("perception_node"):
                diagnostics.update({kv.key: kv.value for kv in status.values})

    # The node's own counters, which a subscriber that joins late cannot miss.
    listener.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 10)
    assert publisher.wait(timeout=90) == 0, publisher.stdout.read()
    done = spin_until(listener, lambda: int(diagnostics.get("frames", 0)) + int(diagnostics.get("dropped_stale", 0)) >= 12, 30.0)
    # Every frame is perceived, those with holes too: none is dropped as bad, and the node is still up.
    assert done, diagnostics
    assert not {k: v for k, v in diagnostics.items() if k.startswith("dropped_") and k != "dropped_stale"}, diagnostics
    assert int(diagnostics["frames"]) >= 10, diagnostics  # a loaded machine may still replace a frame by the next
    assert node.poll() is None
    listener.destroy_node()
