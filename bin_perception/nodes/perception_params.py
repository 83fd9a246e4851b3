"""The perception node's parameters: their names, types, ranges and checks, without rclpy.

The names are the library's YAML schema keys (``workspace``, ``model.hpr_exponent``,
``model.observed_points``) plus what only a running node has (the checkpoint, the
device, the mode). The node declares them from :data:`PARAMETERS`, checks every
value, at start-up and on every change, with :func:`check_parameter`, and a
parameter file is checked the same way by :func:`check_parameter_file`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..config import AUTO, REFINEMENTS, REPLAY_POLICIES, GripperConfig
from ..geometry import BIN_POSE_DOC, WORKSPACE_DOC, parse_bin_pose, parse_workspace

NODE_NAME = "perception_node"
MODES = ("infer", "train_inloop")
DEVICES = ("cpu", "cuda")
_GRIPPER = GripperConfig()


@dataclass(frozen=True)
class Parameter:
    name: str
    type: type  # bool, int, float, str or list (of floats)
    default: Any  # None: the loaded checkpoint's value
    description: str
    live: bool  # whether a change at run time is applied; else it is refused
    range: tuple[float, float] | None = None  # inclusive bounds of a number


PARAMETERS = (
    Parameter("checkpoint", str, "", "the trained model: RUN_DIR/checkpoint.pt (its .json sidecar beside it)", live=True),
    Parameter("mode", str, "infer", "infer, or train_inloop (learn while perceiving; starts from nothing without a checkpoint)", live=False),
    Parameter("device", str, "cpu", "where the model runs: cpu or cuda", live=True),
    Parameter("threads", int, 0, "torch's intra-op threads; 0 keeps torch's default", live=True, range=(0, 256)),
    Parameter("save_path", str, "", "where ~/save_model writes; empty writes over the checkpoint", live=True),
    Parameter(
        "camera_info_tolerance_s", float, 0.02,
        "a depth image pairs with the CameraInfo whose stamp is within this of its own (a driver stamps both alike)",
        live=True, range=(0.0, 3600.0),
    ),
    # train_inloop only; fixed at start-up (the trainer process gets them once).
    Parameter("train_config", str, "", "train_inloop: a YAML of the library's schema (model, train); empty: config/train_cpu.yaml", live=False),
    Parameter("inloop.buffer_frames", int, 1000, "train_inloop: the replay buffer's size in frames", live=False, range=(1, 10_000_000)),
    Parameter("inloop.buffer_mb", int, 512, "train_inloop: the replay buffer's size in MiB", live=False, range=(1, 1_000_000)),
    Parameter("inloop.replacement", str, "reservoir", "train_inloop: reservoir (a uniform sample of all frames) or fifo (the newest)", live=False),
    Parameter(
        "inloop.publish_every_steps", int, 20, "train_inloop: steps between weight updates of the inference model",
        live=False, range=(1, 1_000_000),
    ),
    Parameter("inloop.checkpoint_every_s", float, 60.0, "train_inloop: seconds between checkpoints", live=False, range=(1.0, 1e7)),
    Parameter("inloop.threads", int, 1, "train_inloop: the trainer process's torch threads", live=False, range=(1, 256)),
    # The suction cup of ~/grasps (bin_perception.grasp).
    Parameter("gripper.suction_radius_m", float, _GRIPPER.suction_radius_m, "the suction cup's lip radius", live=True, range=(0.001, 0.1)),
    Parameter(
        "gripper.max_flatness_m", float, _GRIPPER.max_flatness_m,
        "the surface under the cup lies within this of a plane (RMS), or the cup leaks", live=True, range=(0.0001, 0.02),
    ),
    Parameter(
        "gripper.max_tilt_deg", float, _GRIPPER.max_tilt_deg, "the approach's largest angle from the camera's viewing axis",
        live=True, range=(1.0, 90.0),
    ),
    # Declared once the checkpoint is loaded, with its values as defaults.
    Parameter(
        "instances", int, None,
        f"parts per bin, N, or {AUTO}: count them in every frame (a per-seed model does, where it measured the part in "
        "training; the whole-image method takes only its own N)",
        live=True, range=(1, 256),
    ),
    Parameter("workspace", list, None, f"the parts' box, {WORKSPACE_DOC}", live=True),
    Parameter("bin_pose", list, None, f"the frame of the workspace box, {BIN_POSE_DOC}; 0,0,0,0,0,0,1: the camera's", live=True),
    Parameter(
        "model.floor_band_m", float, None,
        "how far beyond the workspace's floor face pixels that touch the workspace's are kept (thin parts on a "
        "noisy floor); keep it under the box's clearance over the floor",
        live=True, range=(0.0, 0.05),
    ),
    Parameter(
        "model.hpr_exponent",
        float,
        None,
        "HPR's R = max|p| 10^exponent (thesis: 2.0, 2.9, 3.14); negative turns hidden point removal off",
        live=True,
        range=(-1.0, 10.0),
    ),
    Parameter("model.observed_points", int, None, "observed points the two-channel choice samples", live=True, range=(16, 1_000_000)),
    Parameter(
        "model.refine", str, None, "icp refines each pose against the learned model (model.refine_starts starts); none keeps the network's",
        live=True,
    ),
)
BY_NAME = {p.name: p for p in PARAMETERS}


class ParameterValueError(ValueError):
    """A parameter value that the node cannot use; the message names the parameter."""


def _fail(name: str, problem: str) -> None:
    raise ParameterValueError(f"parameter {name}: {problem}")


def check_parameter(name: str, value: Any, cuda_available: bool = False, checkpoint_must_exist: bool = True) -> None:
    """Raise :class:`ParameterValueError` naming ``name`` if ``value`` is not usable.

    In-loop training may start from nothing, so its checkpoint (where it writes) need not exist yet.
    """
    if name not in BY_NAME:
        _fail(name, f"unknown; known parameters: {', '.join(BY_NAME)}")
    spec = BY_NAME[name]
    if name == "instances" and value == AUTO:
        return
    if spec.type is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if spec.type is list:
        # rclpy hands a double array over as an array.array('d'), a YAML file as a list.
        if not isinstance(value, Sequence) or isinstance(value, str) or not all(isinstance(v, (int, float)) for v in value):
            _fail(name, f"expected a list of numbers, got {value!r}")
    elif not isinstance(value, spec.type) or isinstance(value, bool) != (spec.type is bool):
        _fail(name, f"expected {spec.type.__name__}, got {value!r}")
    if spec.range is not None:
        low, high = spec.range
        if not (low <= value <= high) or (isinstance(value, float) and math.isnan(value)):
            _fail(name, f"{value} is outside [{low:g}, {high:g}]")
    if name == "checkpoint":
        if not value:
            _fail(name, "required: the path of a checkpoint.pt that `bin-perception train` wrote")
        if Path(value).exists() and not Path(value).is_file():
            _fail(name, f"{value}: exists and is not a file")
        if checkpoint_must_exist and not Path(value).is_file():
            _fail(name, f"{value}: no such file")
    elif name in ("workspace", "bin_pose"):
        try:
            (parse_workspace if name == "workspace" else parse_bin_pose)(value)
        except ValueError as error:
            _fail(name, str(error))
    elif name == "device":
        if value not in DEVICES:
            _fail(name, f"{value!r}: expected one of {', '.join(DEVICES)}")
        if value == "cuda" and not cuda_available:
            _fail(name, "cuda: torch sees no CUDA device on this machine")
    elif name == "mode" and value not in MODES:
        _fail(name, f"{value!r}: expected one of {', '.join(MODES)}")
    elif name == "train_config" and value and not Path(value).is_file():
        _fail(name, f"{value}: no such file")
    elif name == "model.refine" and value not in REFINEMENTS:
        _fail(name, f"{value!r}: expected one of {', '.join(REFINEMENTS)}")
    elif name == "inloop.replacement" and value not in REPLAY_POLICIES:
        _fail(name, f"{value!r}: expected one of {', '.join(REPLAY_POLICIES)}")


def check_parameter_file(path: str | Path, node_name: str = NODE_NAME, require_checkpoint: bool = False) -> dict[str, Any]:
    """The node's parameters in a ROS 2 parameter file, each checked; nested keys joined by dots.

    The checkpoint is checked only with ``require_checkpoint``: a shipped file leaves it for the
    user to give at launch.
    """
    path = Path(path)
    document = yaml.safe_load(path.read_text()) if path.is_file() else None
    if not isinstance(document, dict):
        raise ParameterValueError(f"parameter file {path}: missing, empty or not a mapping")
    section = document.get(node_name) or document.get("/**") or {}
    values = section.get("ros__parameters") if isinstance(section, dict) else None
    if not isinstance(values, dict):
        raise ParameterValueError(f"parameter file {path}: no {node_name}: ros__parameters: section")
    flat = _flatten(values)
    for name, value in flat.items():
        if name == "checkpoint" and not require_checkpoint:
            continue
        try:
            check_parameter(name, value)
        except ParameterValueError as error:
            raise ParameterValueError(f"parameter file {path}: {error}") from None
    return flat


def _flatten(values: dict, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat
