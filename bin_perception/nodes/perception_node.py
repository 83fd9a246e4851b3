"""perception_node: per-instance 6D poses and instance segments from a live depth stream.

Subscribes (sensor-data QoS, relative names to remap):
    depth/image          sensor_msgs/Image, 32FC1 metres or 16UC1 millimetres
    depth/camera_info    sensor_msgs/CameraInfo, paired with each image by stamp (camera_info_tolerance_s)
Publishes, stamped and framed like the depth image each result came from:
    ~/poses        geometry_msgs/PoseArray, one pose per instance, camera frame
    ~/segments     sensor_msgs/PointCloud2, x y z float32 + uint32 label (PCL XYZL)
    ~/labels       sensor_msgs/Image mono16, aligned with the depth, 0 = not a part
    ~/detections   std_msgs/String, JSON: each pose with its id, confidence in [0, 1], pick score and suction
                   grasp, in ~/poses' order, and the pick order
    ~/grasps       geometry_msgs/PoseArray: the suction grasps that seal, best pick first (z along the approach)
    ~/markers      visualization_msgs/MarkerArray: the learned model at each pose, axes, ids and
                   confidences (red to green), and each grasp's approach
    ~/overlay      sensor_msgs/Image rgb8: the segments and pose axes over the depth, drawn only while subscribed
    ~/model_cloud  sensor_msgs/PointCloud2, the learned model (transient local)
    /diagnostics   diagnostic_msgs/DiagnosticArray: rate, latency, dropped frames, model
    ~/training     std_msgs/String, JSON: the in-loop trainer's progress (mode train_inloop)
Services (std_srvs/Trigger): ~/save_model, ~/reload_model.
Parameters: see :mod:`bin_perception.nodes.perception_params` (``config/bin_perception.yaml``).

Frames are taken latest-first: the subscription only stores the newest depth image, a worker
thread perceives it, and a frame that arrives while another waits replaces it (counted as
``dropped_stale``). A frame that cannot be perceived is logged, counted and dropped.

In ``mode: train_inloop`` each perceived frame is also offered to a trainer process
(:mod:`bin_perception.learning.inloop`), whose newer weights are swapped in whole as they arrive.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from diagnostic_msgs.msg import DiagnosticStatus
from geometry_msgs.msg import PoseArray
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.exceptions import ParameterException
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import String
from std_srvs.srv import Trigger
from visualization_msgs.msg import MarkerArray

from .. import viz
from ..config import AUTO, ConfigError, GripperConfig, load_config
from ..geometry import bin_pose_values, parse_bin_pose, parse_workspace
from ..io import messages
from ..io.errors import FrameError
from ..io.pairing import StampPairing
from ..model.observation import TooFewPointsError
from ..model.perception import BinPerception, CheckpointError, load_checkpoint, save_checkpoint
from ..model.seeds import describe_part_size
from ..picking import prediction_picks
from . import ros_messages
from .common import Diagnostics, LatestSlot, StartupError, serve_latest, share_file, spin_node
from .perception_params import BY_NAME, NODE_NAME, ParameterValueError, check_parameter

if TYPE_CHECKING:
    from ..learning.inloop import InloopTraining

_ROS_TYPES = {
    bool: Parameter.Type.BOOL,
    int: Parameter.Type.INTEGER,
    float: Parameter.Type.DOUBLE,
    str: Parameter.Type.STRING,
    list: Parameter.Type.DOUBLE_ARRAY,
}
# Parameters that the model (rather than the node) holds; declared after the checkpoint is loaded.
_MODEL_PARAMETERS = (
    "instances", "workspace", "bin_pose", "model.floor_band_m", "model.hpr_exponent", "model.observed_points", "model.refine"
)
# The bin pose of a workspace box in the camera's own frame.
_CAMERA_FRAME_POSE = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]


def _descriptor(name: str) -> ParameterDescriptor:
    spec = BY_NAME[name]
    descriptor = ParameterDescriptor(
        name=name,
        type=_ROS_TYPES[spec.type].value,
        description=spec.description,
        read_only=False,
        additional_constraints="" if spec.live else "fixed at start-up",
        # A count, or the word that asks for counting.
        dynamic_typing=name == "instances",
    )
    if spec.range is not None:
        low, high = spec.range
        if spec.type is int:
            descriptor.integer_range = [IntegerRange(from_value=int(low), to_value=int(high), step=1)]
        else:
            descriptor.floating_point_range = [FloatingPointRange(from_value=float(low), to_value=float(high), step=0.0)]
    return descriptor


def _model_values(perception: BinPerception) -> dict[str, object]:
    """The model's own values of the parameters it holds."""
    hpr = perception.config.hpr_exponent
    return {
        # A model that can count the parts counts them unless told how many there are.
        "instances": AUTO if perception.can_count_parts else perception.instances,
        "workspace": perception.workspace.ravel().tolist(),
        "bin_pose": _CAMERA_FRAME_POSE if perception.camera_from_bin is None else bin_pose_values(perception.camera_from_bin).tolist(),
        "model.floor_band_m": float(perception.config.floor_band_m),
        "model.hpr_exponent": -1.0 if hpr is None else float(hpr),
        "model.observed_points": perception.config.observed_points,
        "model.refine": perception.config.refine,
    }


def _count_text(perception: BinPerception) -> str:
    return "the parts it counts" if perception.counts_parts else f"{perception.instances} instances"


def _apply_settings(perception: BinPerception, settings: dict) -> None:
    """The model parameters among ``settings`` applied to ``perception``, ``instances`` first: the one
    setting a model may refuse, before anything has changed."""
    for name in sorted(_MODEL_PARAMETERS, key=lambda n: n != "instances"):
        if name in settings:
            _apply(perception, name, settings[name])


def _apply(perception: BinPerception, name: str, value: object) -> None:
    """Set a model-held parameter on ``perception``; ValueError if the model cannot take it."""
    if name == "instances":
        perception.set_instances(value if value == AUTO else int(value))
    elif name == "workspace":
        perception.set_workspace(parse_workspace(list(value)), perception.camera_from_bin)
    elif name == "bin_pose":
        perception.set_workspace(perception.workspace, parse_bin_pose(list(value)))
    elif name == "model.floor_band_m":
        perception.config = dataclasses.replace(perception.config, floor_band_m=float(value))
    elif name == "model.hpr_exponent":
        hpr = None if value < 0 else float(value)
        perception.config = dataclasses.replace(perception.config, hpr_exponent=hpr)
    elif name == "model.observed_points":
        perception.config = dataclasses.replace(perception.config, observed_points=int(value))
    elif name == "model.refine":
        perception.config = dataclasses.replace(perception.config, refine=value)


class PerceptionNode(LifecycleNode):
    """The perception node. Unmanaged, it configures and activates itself as it starts, and a fault in
    its parameters stops start-up. Managed (``managed_perception_node``), it waits in ``unconfigured``:
    ``configure`` checks the parameters and loads the model, ``activate`` subscribes and perceives,
    ``deactivate`` stops perceiving without losing the model, ``cleanup`` lets the model go."""

    def __init__(self, managed: bool = False) -> None:
        super().__init__(NODE_NAME)
        self._slot: LatestSlot | None = None
        self._worker: threading.Thread | None = None
        self._training: InloopTraining | None = None
        self._perception: BinPerception | None = None
        self._inputs: list = []  # the subscriptions, while active
        self._output_publishers: list = []  # these three, while configured
        self._output_services: list = []
        self._output_timers: list = []
        self._startup_error: StartupError | ParameterException | None = None
        self._inloop = False
        self._managed = managed
        self._model_lock = threading.Lock()  # the worker perceives while a service may swap the model
        self._infos: StampPairing[CameraInfo] = StampPairing()
        self._marker_ids: set[int] = set()
        for name in BY_NAME:
            if name not in _MODEL_PARAMETERS:
                self._declare(name, BY_NAME[name].default)
        self.diagnostics = Diagnostics(self, "perception")
        self.add_on_set_parameters_callback(self._on_set_parameters)
        if not managed:
            for transition in (self.trigger_configure, self.trigger_activate):
                if transition() != TransitionCallbackReturn.SUCCESS:
                    raise self._startup_error or StartupError("perception_node could not start")

    # The lifecycle's transitions.

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._configure()
        except (StartupError, ParameterException) as error:  # the latter: rclpy's refusal of a value, a range
            self._startup_error = error
            if self._managed:  # unmanaged, start-up stops with this one line
                self.get_logger().error(f"configure: {error}")
            self._cleanup()
            return TransitionCallbackReturn.FAILURE
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._slot = LatestSlot()
        self._inputs = [
            self.create_subscription(CameraInfo, "depth/camera_info", self._on_camera_info, qos_profile_sensor_data),
            self.create_subscription(Image, "depth/image", self._on_depth, qos_profile_sensor_data),
        ]
        self._worker = threading.Thread(target=self._work, args=(self._slot,), name="perception", daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"{'training in the loop and ' if self._inloop else ''}perceiving {_count_text(self._perception)} "
            f"with {self._checkpoint} on {self._device}; depth from {self.resolve_topic_name('depth/image')}"
        )
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._deactivate()
        self.diagnostics.set_status(DiagnosticStatus.OK, "inactive: not perceiving")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._cleanup()
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._deactivate()
        self._cleanup()
        return super().on_shutdown(state)

    def _configure(self) -> None:
        """The parameters checked, the model loaded (or the in-loop trainer started), the outputs made."""
        values = {name: self.get_parameter(name).value for name in BY_NAME if name not in _MODEL_PARAMETERS}
        self._inloop = values["mode"] == "train_inloop"
        for name, value in values.items():
            self._check_or_stop(name, value)
        self._device = values["device"]
        if values["threads"]:
            torch.set_num_threads(values["threads"])
        try:
            perception = self._start_training(values) if self._inloop else self._load(values["checkpoint"], self._device)
        except (CheckpointError, ConfigError) as error:
            raise StartupError(f"parameter {'train_config' if isinstance(error, ConfigError) else 'checkpoint'}: {error}") from None
        defaults = _model_values(perception)
        for name in _MODEL_PARAMETERS:
            value = self._declare(name, defaults[name]) if not self.has_parameter(name) else self.get_parameter(name).value
            self._check_or_stop(name, value)
            try:
                _apply(perception, name, value)
            except ValueError as error:
                raise StartupError(f"parameter {name}: {error}") from None
        with self._model_lock:
            self._perception = perception
        self._checkpoint = values["checkpoint"]

        self._poses = self.create_publisher(PoseArray, "~/poses", 10)
        self._segments = self.create_publisher(PointCloud2, "~/segments", 10)
        self._labels = self.create_publisher(Image, "~/labels", 10)
        self._markers = self.create_publisher(MarkerArray, "~/markers", 10)
        self._detections = self.create_publisher(String, "~/detections", 10)
        self._grasps = self.create_publisher(PoseArray, "~/grasps", 10)
        self._overlay = self.create_publisher(Image, "~/overlay", 10)
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE)
        self._model_cloud = self.create_publisher(PointCloud2, "~/model_cloud", latched)
        self._output_publishers = [
            self._poses, self._grasps, self._detections, self._segments, self._labels, self._markers, self._overlay, self._model_cloud
        ]
        self._output_services = [
            self.create_service(Trigger, "~/save_model", self._on_save_model),
            self.create_service(Trigger, "~/reload_model", self._on_reload_model),
        ]
        if self._training is not None:
            self._progress = self.create_publisher(String, "~/training", 10)
            self._output_publishers.append(self._progress)
            self._output_timers = [self.create_timer(0.5, self._take_training_progress)]
        self._publish_model()

    def _deactivate(self) -> None:
        """Stop perceiving: no input is taken, and the frame in hand is finished first."""
        for subscription in self._inputs:
            self.destroy_subscription(subscription)
        self._inputs = []
        if self._slot is not None:
            self._slot.close()
        if self._worker is not None:
            self._worker.join(timeout=5.0)
        self._slot = self._worker = None

    def _cleanup(self) -> None:
        """Let the model and the outputs go; an in-loop trainer writes its last checkpoint."""
        for timer in self._output_timers:
            self.destroy_timer(timer)
        for service in self._output_services:
            self.destroy_service(service)
        for publisher in self._output_publishers:
            self.destroy_publisher(publisher)
        self._output_timers, self._output_services, self._output_publishers = [], [], []
        if self._training is not None:
            try:
                self._training.stop()  # it writes its last checkpoint
            except RuntimeError as error:
                self.get_logger().error(f"in-loop training ended without its last checkpoint: {error}")
            self._training = None
        with self._model_lock:
            self._perception = None

    def _start_training(self, values: dict) -> BinPerception:
        """train_inloop: the model to start from (resumed, or new) and the trainer process."""
        # Only this mode loads the trainer: a node that perceives imports no training code.
        from ..learning.inloop import InloopSettings, InloopTraining, initial_state

        config = load_config(values["train_config"] or share_file("config", "train_cpu.yaml"))
        settings = InloopSettings(
            checkpoint=values["checkpoint"],
            train=config.train,
            buffer_frames=values["inloop.buffer_frames"],
            buffer_bytes=values["inloop.buffer_mb"] * 2**20,
            replacement=values["inloop.replacement"],
            publish_every_steps=values["inloop.publish_every_steps"],
            checkpoint_every_s=values["inloop.checkpoint_every_s"],
            threads=values["inloop.threads"],
            min_frames=min(config.train.batch_size, values["inloop.buffer_frames"]),
        )
        instances = workspace = camera_from_bin = None
        if not Path(settings.checkpoint).is_file():
            # From nothing: the number of parts and their box cannot come from a checkpoint.
            instances = self._declare_required("instances", Parameter.Type.INTEGER)
            workspace = parse_workspace(list(self._declare_required("workspace", Parameter.Type.DOUBLE_ARRAY)))
            bin_pose = self._declare("bin_pose", _CAMERA_FRAME_POSE)
            self._check_or_stop("bin_pose", bin_pose)
            camera_from_bin = parse_bin_pose(list(bin_pose))
        perception, state, metadata = initial_state(settings, config.model, instances, workspace, camera_from_bin)
        self._training = InloopTraining(settings, perception, state, metadata)
        return perception.to(self._device).eval()

    def _declare_required(self, name: str, kind: Parameter.Type) -> object:
        descriptor = _descriptor(name)
        # Of this type only: a trainer that starts from nothing learns from bins of a number of parts it is told.
        descriptor.dynamic_typing = False
        value = self.declare_parameter(name, kind, descriptor).value
        if value is None:
            raise StartupError(f"parameter {name}: required to start in-loop training without a checkpoint")
        self._check_or_stop(name, value)
        return value

    def _take_training_progress(self) -> None:
        """Swap in the trainer's newest weights, and report its progress."""
        with self._model_lock:
            current = self._perception
        model = self._training.new_model(current)
        if model is not None:
            for name in _MODEL_PARAMETERS:
                _apply(model, name, self.get_parameter(name).value)
            with self._model_lock:
                self._perception = model
            self._publish_model()
        progress = self._training.progress()
        self._progress.publish(String(data=json.dumps(progress)))
        self.diagnostics.set_values({f"training_{k}": v for k, v in progress.items()})
        if not self._training.alive:
            self.diagnostics.set_status(DiagnosticStatus.ERROR, "the in-loop trainer process has ended")

    def _declare(self, name: str, default: object) -> object:
        """Declare a parameter (the user's value overrides ``default``); its value."""
        return self.declare_parameter(name, default, _descriptor(name)).value

    def _check_or_stop(self, name: str, value: object) -> None:
        try:
            check_parameter(name, value, torch.cuda.is_available(), checkpoint_must_exist=not self._inloop)
        except ParameterValueError as error:
            raise StartupError(str(error)) from None

    def _load(self, checkpoint: str, device: str) -> BinPerception:
        perception, _, _ = load_checkpoint(checkpoint)
        return perception.to(device).eval()

    def _status(self) -> None:
        perception = self._perception
        self.diagnostics.set_status(
            DiagnosticStatus.OK,
            f"model {self._checkpoint}: {_count_text(perception)}, "
            f"{len(perception.object_model.points)} model points, {self._device}",
        )

    def _publish_model(self) -> None:
        with self._model_lock:
            points_m = self._perception.model_points_m()
        # The model in its own frame, metres: a frame of the part, named after the node.
        head = ros_messages.header(self.get_clock().now().nanoseconds, self.get_name() + "_model")
        self._model_cloud.publish(ros_messages.xyz_cloud(head, points_m))
        self._status()

    # Parameters and services.

    def _on_set_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        changes = {p.name: p.value for p in parameters}
        reload = "checkpoint" in changes or "device" in changes
        try:
            if self._perception is None:  # unconfigured: configure reads and checks them
                return SetParametersResult(successful=True)
            for name, value in changes.items():
                if name in BY_NAME and not BY_NAME[name].live:
                    raise ParameterValueError(f"parameter {name}: fixed at start-up; restart the node to change it")
                if self._inloop and name in ("instances", "checkpoint", "device"):
                    raise ParameterValueError(f"parameter {name}: the in-loop trainer is built on it; restart the node to change it")
                check_parameter(name, value, torch.cuda.is_available())
            if reload:
                # Loaded and set up before the lock, as ~/reload_model does: inference goes on meanwhile.
                checkpoint = changes.get("checkpoint", self._checkpoint)
                perception = self._load(checkpoint, changes.get("device", self._device))
                # A new model keeps the node's settings, except those this change sets.
                _apply_settings(perception, {name: self.get_parameter(name).value for name in _MODEL_PARAMETERS} | changes)
                with self._model_lock:
                    self._perception, self._checkpoint = perception, checkpoint
                    self._device = changes.get("device", self._device)
            else:
                with self._model_lock:
                    _apply_settings(self._perception, changes)
            if changes.get("threads"):
                torch.set_num_threads(changes["threads"])
        except (ParameterValueError, CheckpointError, ValueError) as error:
            self.get_logger().warning(f"refused: {error}")
            return SetParametersResult(successful=False, reason=str(error))
        if reload:
            self._publish_model()
        return SetParametersResult(successful=True)

    def _on_save_model(self, _request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        path = Path(self.get_parameter("save_path").value or self._checkpoint)
        try:
            if self._training is not None:  # the trainer's model, with its optimizer state and step
                self._training.save(str(path))
            else:
                with self._model_lock:
                    save_checkpoint(path, self._perception)
        except (OSError, RuntimeError) as error:
            response.success, response.message = False, f"save_model: {path}: {error}"
        else:
            response.success, response.message = True, f"saved the model to {path}"
        return response

    def _on_reload_model(self, _request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        checkpoint = self._checkpoint
        if self._training is not None:
            response.success, response.message = False, "reload_model: in train_inloop the trainer owns the model"
            return response
        try:
            perception = self._load(checkpoint, self._device)
            for name in _MODEL_PARAMETERS:
                _apply(perception, name, self.get_parameter(name).value)
        except (CheckpointError, ValueError) as error:
            response.success, response.message = False, f"reload_model: {error}"
            return response
        with self._model_lock:
            self._perception = perception
        self._publish_model()
        response.success, response.message = True, f"reloaded {checkpoint}"
        return response

    # Frames.

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self._infos.add(messages.stamp_ns(msg.header), msg)

    def _on_depth(self, msg: Image) -> None:
        slot = self._slot  # None once deactivated, for a callback already on its way
        if slot is not None and slot.put((msg, time.monotonic())):
            self.diagnostics.count("dropped_stale")

    def _camera_info_for(self, msg: Image) -> CameraInfo:
        """The CameraInfo stamped as the image is, within the tolerance; it may arrive a moment after the image."""
        tolerance_s = self.get_parameter("camera_info_tolerance_s").value
        stamp = messages.stamp_ns(msg.header)
        info, gap_ns = self._infos.nearest(stamp, round(tolerance_s * 1e9), wait_s=max(tolerance_s, 0.05))
        if info is not None:
            return info
        if gap_ns is None:
            raise FrameError("no CameraInfo received yet on depth/camera_info", "no_camera_info")
        raise FrameError(
            f"depth image at stamp {stamp}: the nearest CameraInfo is {gap_ns / 1e6:.1f} ms away, beyond "
            f"camera_info_tolerance_s ({tolerance_s:g} s)",
            "no_camera_info",
        )

    def _take_part_size(self) -> None:
        """A model trained from nothing takes the part's size once the first frames have measured it."""
        size_m = self._training.part_size_m
        if size_m is None:
            return
        with self._model_lock:  # the weights swapped in later keep it (InloopTraining.new_model copies the metadata)
            if self._perception.part_size_m is not None:
                return
            self._perception.part_size_m = size_m
        self.get_logger().info(f"the part, measured on the first frames: {describe_part_size(size_m)}")

    def _gripper(self) -> GripperConfig:
        return GripperConfig(**{key: self.get_parameter(f"gripper.{key}").value for key in ("suction_radius_m", "max_flatness_m", "max_tilt_deg")})

    def _work(self, slot: LatestSlot) -> None:
        serve_latest(slot, self._perceive, self.diagnostics, {TooFewPointsError: "too_few_points"})

    def _perceive(self, msg: Image, received_s: float) -> None:
        frame = messages.frame_from_messages(msg, self._camera_info_for(msg), "depth/image")
        with self._model_lock:
            perception = self._perception
            prediction = perception.predict(frame)
            model_points_m = perception.model_points_m()
            segment_points_m = perception.normalization.to_metres(prediction.observation.points)
            workspace, camera_from_bin = perception.workspace, perception.camera_from_bin
        if self._training is not None:
            self._training.offer(prediction.observation, frame)
            self._take_part_size()
        head = msg.header
        picks = []
        # Up to 12 ms a frame of four parts on 2 cores (a bin no cup seals on tries every contact): planned for
        # a listener only, as the overlay is drawn.
        if any(p.get_subscription_count() for p in (self._grasps, self._detections, self._markers)):
            picks = prediction_picks(prediction, segment_points_m, frame, model_points_m, workspace, self._gripper(), camera_from_bin)
        self._poses.publish(ros_messages.pose_array(head, prediction.poses))
        self._grasps.publish(ros_messages.grasp_array(head, picks))
        self._detections.publish(ros_messages.detections(head, prediction.poses, prediction.confidences, picks))
        self._labels.publish(ros_messages.image(head, prediction.labels, "mono16"))
        self._segments.publish(ros_messages.xyzl_cloud(head, segment_points_m, prediction.point_labels))
        markers, self._marker_ids = ros_messages.instance_markers(
            head, prediction.poses, model_points_m, self._marker_ids, prediction.confidences, picks
        )
        self._markers.publish(markers)
        if self._overlay.get_subscription_count():
            # A picture costs a few milliseconds at a real camera's size, so it is drawn for a viewer only.
            axis_m = 0.6 * float(np.ptp(model_points_m, axis=0).max())
            picture = viz.overlay_image(frame.depth_m, prediction.labels, frame.K, prediction.poses, axis_m)
            self._overlay.publish(ros_messages.image(head, picture, "rgb8"))
        self.diagnostics.done(time.monotonic() - received_s)

    def destroy_node(self) -> None:
        self._deactivate()
        self._cleanup()
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    raise SystemExit(spin_node(PerceptionNode, "perception_node", args))


def main_managed(args: list[str] | None = None) -> None:
    """``managed_perception_node``: the same node as a lifecycle node, for a launch system to configure and activate."""
    raise SystemExit(spin_node(functools.partial(PerceptionNode, managed=True), "managed_perception_node", args))


if __name__ == "__main__":
    main()
