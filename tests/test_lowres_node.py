"""lowres_classifier_node end to end, in three processes: a publisher of rendered images, the node, and this test."""

import json
import os
import random
import shutil
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from bin_perception.lowres.backbone import load_backbone
from bin_perception.lowres.datasets import sim_parts
from bin_perception.lowres.estimator import LowResClassifier, save_classifier
from bin_perception.lowres.experiment import dataset_features
from bin_perception.lowres.serving import ImageClassifier
from bin_perception.lowres.transfer_net import TransferTraining

rclpy = pytest.importorskip("rclpy")

NODE = shutil.which("lowres_classifier_node") or f"{sys.prefix}/bin/lowres_classifier_node"

# Publishes, over and over: a 32FC1 image (wrong encoding), an empty image, then the good images as
# rgb8 and as bgr8, until killed.
PUBLISHER = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    import rclpy
    from sensor_msgs.msg import Image

    images = np.load(sys.argv[1])["images"]
    rclpy.init()
    node = rclpy.create_node("lowres_test_publisher")
    pub = node.create_publisher(Image, "/lowres_test/image", 10)

    def msg(pixels, encoding):
        m = Image(height=pixels.shape[0], width=pixels.shape[1] if pixels.ndim > 1 else 0, encoding=encoding,
                  step=pixels.nbytes // max(pixels.shape[0], 1), data=pixels.tobytes())
        m.header.frame_id = "camera_color_optical_frame"
        m.header.stamp = node.get_clock().now().to_msg()
        return m

    while rclpy.ok():
        pub.publish(msg(np.zeros((8, 8), np.float32), "32FC1"))
        time.sleep(0.1)
        pub.publish(Image(encoding="rgb8"))
        time.sleep(0.1)
        for image in images:
            pub.publish(msg(image, "rgb8"))
            time.sleep(0.3)
            pub.publish(msg(np.ascontiguousarray(image[..., ::-1]), "bgr8"))
            time.sleep(0.3)
    """
)


@pytest.fixture(scope="module")
def model_and_image(tmp_path_factory):
    """A small model fitted on renders, and a training render of each of two classes that it labels right."""
    data = sim_parts(12, seed=0, progress=False)
    backbone = load_backbone()
    features = dataset_features(backbone, data, progress=False)
    model = LowResClassifier(
        data.class_names, k=10, hidden_dim=256, training=TransferTraining(iterations=60, lr_step_iterations=30),
        assignment="paired", backbone_key=backbone.key, protocol=data.protocol, progress=False,
    ).fit(features.lr_train, data.train_labels, features.hr_train)
    path = tmp_path_factory.mktemp("lowres_node") / "model.pt"
    save_classifier(path, model)
    predicted = ImageClassifier(model, backbone).scores(data.train_images).argmax(axis=1)
    right = np.flatnonzero(predicted == data.train_labels)
    assert len(right), "the fixture's model labels no training render right"
    chosen = right[0]
    images_path = path.with_name("images.npz")
    np.savez(images_path, images=data.train_images[[chosen]])
    return path, images_path, data.class_names[data.train_labels[chosen]]


def _ros_env(domain_id: int) -> dict:
    return {**os.environ, "ROS_DOMAIN_ID": str(domain_id), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}


@pytest.mark.slow
def test_node_classifies_images_from_another_process_and_survives_bad_ones(model_and_image):
    model_path, images_path, expected_label = model_and_image
    domain_id = random.randint(100, 200)
    env = _ros_env(domain_id)
    node = subprocess.Popen(
        [NODE, "--ros-args", "-r", "image:=/lowres_test/image", "-p", f"model:={model_path}", "-p", "threads:=1"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    publisher = subprocess.Popen([sys.executable, "-c", PUBLISHER, str(images_path)], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from std_msgs.msg import String

    context = Context()
    rclpy.init(context=context, domain_id=domain_id)
    try:
        listener = rclpy.create_node("lowres_test_listener", context=context)
        results, drops = [], {}
        listener.create_subscription(String, "/lowres_classifier/class", lambda m: results.append(json.loads(m.data)), 10)

        def on_diagnostics(msg):
            for status in msg.status:
                if status.name.startswith("lowres_classifier"):
                    drops.update({kv.key: int(kv.value) for kv in status.values if kv.key.startswith("dropped_")})

        listener.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 10)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(listener)
        deadline = time.monotonic() + 90.0
        while time.monotonic() < deadline and not (len(results) >= 3 and drops.get("dropped_encoding") and drops.get("dropped_empty")):
            executor.spin_once(timeout_sec=0.2)
            assert node.poll() is None, f"the node died: {node.communicate()[0]}"
        assert node.poll() is None, "the node must survive bad frames"
        assert len(results) >= 3, f"got {len(results)} class messages in 90 s; node said: {node.stdout}"
        assert drops.get("dropped_encoding", 0) >= 1 and drops.get("dropped_empty", 0) >= 1, drops
        assert {r["label"] for r in results} == {expected_label}
        first = results[0]
        assert set(first) == {"label", "score", "scores", "stamp", "frame_id"}
        assert first["frame_id"] == "camera_color_optical_frame" and first["score"] == max(first["scores"].values())
        executor.shutdown()
        listener.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)
        for process in (publisher, node):
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    assert node.returncode in (0, -15), f"the node exited with {node.returncode}"


def test_node_without_a_usable_model_exits_with_one_clear_line(tmp_path):
    env = _ros_env(random.randint(100, 200))
    missing = tmp_path / "missing.pt"
    result = subprocess.run([NODE, "--ros-args", "-p", f"model:={missing}"], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert f"parameter model: low-resolution classifier {missing}: no such file" in result.stderr
