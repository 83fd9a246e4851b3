"""lowres_classifier_node: which part a low-resolution colour camera sees (thesis ch. 5).

Subscribes (sensor-data QoS, a relative name to remap):
    image          sensor_msgs/Image, rgb8, bgr8 or mono8, any size
Publishes, stamped and framed like the image each result came from:
    ~/class        std_msgs/String, JSON: {"label", "score", "scores": {class: margin}, "stamp": {"sec", "nanosec"}, "frame_id"}
    ~/marker       visualization_msgs/Marker, the label and its score as text, for RViz
    /diagnostics   diagnostic_msgs/DiagnosticArray: rate, latency, dropped frames by reason, the model
Parameters (fixed at start-up):
    model             path of MODEL.pt written by ``bin-perception lowres fit`` (MODEL.json beside it)
    class_names       string array; display names in the model's class order (default: the model's own)
    backbone_weights  the local ResNet weights a ResNet-based model was fitted with ("" for EfficientNet-Lite0)
    threads           torch threads, 0 = torch's default
    marker_height_m   the RViz text's height

Every image gets the model's LR view (down to its ``low_px``, up to 224), so a native low-resolution
camera and a sharp one both work. Scores are SVM margins, not probabilities. Frames are taken
latest-first (a frame that arrives while another waits replaces it, counted as ``dropped_stale``);
a frame with a wrong encoding or no pixels is logged (throttled), counted and dropped.
"""

from __future__ import annotations

import json
import threading
import time

import torch
from diagnostic_msgs.msg import DiagnosticStatus
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import (
    InvalidParameterTypeException,
    InvalidParameterValueException,
)
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image
from std_msgs.msg import String
from visualization_msgs.msg import Marker

from ..io import messages
from ..io.errors import FrameError
from ..lowres.estimator import ModelFileError
from ..lowres.serving import ImageClassifier
from .common import Diagnostics, LatestSlot, StartupError, serve_latest, spin_node

NODE_NAME = "lowres_classifier"
_DESCRIPTORS = {
    "model": ParameterDescriptor(description="MODEL.pt written by `bin-perception lowres fit`", read_only=True),
    "class_names": ParameterDescriptor(description="display names in the model's class order; unset: the model's own", read_only=True),
    "backbone_weights": ParameterDescriptor(description="local ResNet weights, for a ResNet-based model", read_only=True),
    "threads": ParameterDescriptor(
        description="torch threads, 0 = torch's default", read_only=True,
        integer_range=[IntegerRange(from_value=0, to_value=256, step=1)],
    ),
    "marker_height_m": ParameterDescriptor(
        description="height of the RViz text marker", read_only=True,
        floating_point_range=[FloatingPointRange(from_value=0.001, to_value=10.0, step=0.0)],
    ),
}
_DEFAULTS = {"model": "", "class_names": Parameter.Type.STRING_ARRAY, "backbone_weights": "", "threads": 0, "marker_height_m": 0.05}


class LowResClassifierNode(Node):
    def __init__(self) -> None:
        super().__init__(NODE_NAME)
        self._slot = LatestSlot()
        self._worker: threading.Thread | None = None
        values = {name: self._declare(name) for name in _DESCRIPTORS}
        if not values["model"]:
            raise StartupError("parameter model: not set; give the MODEL.pt written by `bin-perception lowres fit`")
        if values["threads"]:
            torch.set_num_threads(values["threads"])
        try:
            self._classifier = ImageClassifier.load(values["model"], values["backbone_weights"] or None)
        except (FileNotFoundError, ModelFileError, ValueError) as error:
            raise StartupError(f"parameter model: {error}") from None
        names = values["class_names"]
        if names is not None and len(names) != len(self._classifier.class_names):
            raise StartupError(
                f"parameter class_names: {len(names)} names for a model of {len(self._classifier.class_names)} classes "
                f"({', '.join(self._classifier.class_names)})"
            )
        self._class_names = tuple(names) if names is not None else self._classifier.class_names
        self._marker_height_m = values["marker_height_m"]

        self._class_pub = self.create_publisher(String, "~/class", 10)
        self._marker_pub = self.create_publisher(Marker, "~/marker", 10)
        self.diagnostics = Diagnostics(self, "low-resolution classifier")
        self.diagnostics.set_status(
            DiagnosticStatus.OK, f"model {values['model']}: {len(self._class_names)} classes, backbone {self._classifier.backbone.key}"
        )
        self.create_subscription(Image, "image", self._on_image, qos_profile_sensor_data)
        self._worker = threading.Thread(target=self._work, name="lowres_classifier", daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"classifying {', '.join(self._class_names)} with {values['model']}; images from {self.resolve_topic_name('image')}"
        )

    def _declare(self, name: str) -> object:
        try:
            return self.declare_parameter(name, _DEFAULTS[name], _DESCRIPTORS[name]).value
        except (InvalidParameterTypeException, InvalidParameterValueException) as error:
            raise StartupError(f"parameter {name}: {error}") from None

    def _on_image(self, msg: Image) -> None:
        if self._slot.put((msg, time.monotonic())):
            self.diagnostics.count("dropped_stale")

    def _work(self) -> None:
        serve_latest(self._slot, self._classify, self.diagnostics)

    def _classify(self, msg: Image, received_s: float) -> None:
        if msg.width == 0 or msg.height == 0:
            raise FrameError(f"image: empty ({msg.width}x{msg.height} px)", "empty")
        rgb = messages.rgb_from_image(msg, "image")
        scores = self._classifier.scores(rgb[None])[0]
        best = int(scores.argmax())
        label, score = self._class_names[best], float(scores[best])
        result = {
            "label": label,
            "score": round(score, 4),
            "scores": {name: round(float(s), 4) for name, s in zip(self._class_names, scores)},
            "stamp": {"sec": msg.header.stamp.sec, "nanosec": msg.header.stamp.nanosec},
            "frame_id": msg.header.frame_id,
        }
        self._class_pub.publish(String(data=json.dumps(result)))
        self._marker_pub.publish(self._marker(msg, f"{label} ({score:+.2f})"))
        self.diagnostics.done(time.monotonic() - received_s)

    def _marker(self, msg: Image, text: str) -> Marker:
        marker = Marker(header=msg.header, ns=NODE_NAME, id=0, type=Marker.TEXT_VIEW_FACING, action=Marker.ADD, text=text)
        marker.pose.orientation.w = 1.0
        marker.scale.z = self._marker_height_m
        marker.color.r = marker.color.g = marker.color.b = marker.color.a = 1.0
        # Outlives a few missed frames, then vanishes rather than showing a stale label.
        marker.lifetime.sec = 1
        return marker

    def destroy_node(self) -> None:
        self._slot.close()
        if self._worker is not None:
            self._worker.join(timeout=5.0)
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    raise SystemExit(spin_node(LowResClassifierNode, "lowres_classifier_node", args))


if __name__ == "__main__":
    main()
