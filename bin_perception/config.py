"""The one configuration schema: typed dataclasses, loaded from YAML and validated.

Every consumer (the CLI's ``--config``, the simulator, the trainers, the ROS
node's parameters) reads these same keys. A file may give any subset; the rest
keep their defaults. Unknown keys and wrong types are errors that name the file
and the key.
"""

from __future__ import annotations

import dataclasses
import types
import typing
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .camera import PinholeCamera
from .geometry import parse_bin_pose, parse_workspace


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@dataclass
class CameraConfig:
    """The simulated depth camera: a pinhole looking into the bin, straight down or at an angle."""

    width_px: int = 224
    height_px: int = 224
    fx_px: float = 194.0  # 60 degrees horizontal field of view at 224 px
    fy_px: float = 194.0
    cx_px: float = 111.5
    cy_px: float = 111.5
    near_m: float = 0.01
    far_m: float = 3.0
    # Height of the optical centre above the bin's rim; null frames the bin to fill the image.
    height_above_rim_m: float | None = None
    # The optical axis's angle to the vertical, turned about the bin's x axis, still aimed at the floor's
    # centre from the same distance: a camera mounted beside the bin rather than over it.
    tilt_deg: float = 0.0
    frame_id: str = "camera_depth_optical_frame"

    def __post_init__(self) -> None:
        self.pinhole()
        _require(0.0 <= self.tilt_deg < 60.0, f"tilt_deg={self.tilt_deg}: expected 0 <= tilt < 60 degrees")
        _require(0 < self.near_m < self.far_m, f"near_m={self.near_m} and far_m={self.far_m} need 0 < near < far")
        _require(self.height_above_rim_m is None or self.height_above_rim_m > 0, "height_above_rim_m must be positive")

    def pinhole(self) -> PinholeCamera:
        return PinholeCamera(self.width_px, self.height_px, self.fx_px, self.fy_px, self.cx_px, self.cy_px)


# The kinds of depth camera the simulator imitates (bin_perception.sim.noise.SENSOR_PRESETS).
SENSORS = ("clean", "structured_light", "tof", "stereo")
# The count of parts that says: count them in every frame (a per-seed model that measured the part).
AUTO = "auto"


@dataclass
class NoiseConfig:
    """The simulated camera's imperfections, over the ``sensor`` preset: a key given here replaces the preset's.

    ``enabled: true`` under ``sensor: clean`` selects the first sensor model (noise proportional to the
    depth, dropouts at depth edges). bin_perception/sim/noise.py says what each key does.
    """

    enabled: bool = False
    depth_sigma_per_m: float | None = None  # sigma's part proportional to the depth
    axial_sigma_m_at_1m: float | None = None  # sigma's part that grows with the square of the depth, at 1 m
    correlation_px: float | None = None  # the noise is correlated over about this many pixels
    edge_threshold_m: float | None = None  # a jump this large to a neighbour marks a depth edge
    edge_dropout: float | None = None  # probability that an edge pixel returns no depth
    flying_pixels: float | None = None  # probability that a remaining edge pixel returns a depth between its surfaces
    projector_baseline_m: float | None = None  # the projector (or second imager) this far along +x casts shadows; 0: none
    hole_fraction: float | None = None  # the fraction of the image lost in blobs
    hole_size_px: float | None = None
    depth_unit_m: float | None = None  # depths are multiples of this; 0: not quantised
    outlier_fraction: float | None = None  # pixels that return a depth of 10 to 60 m

    def __post_init__(self) -> None:
        for name in ("depth_sigma_per_m", "axial_sigma_m_at_1m", "projector_baseline_m", "depth_unit_m"):
            _require(getattr(self, name) is None or getattr(self, name) >= 0, f"{name} must not be negative")
        for name in ("correlation_px", "hole_size_px", "edge_threshold_m"):
            _require(getattr(self, name) is None or getattr(self, name) > 0, f"{name} must be positive")
        for name in ("edge_dropout", "flying_pixels", "hole_fraction", "outlier_fraction"):
            value = getattr(self, name)
            _require(value is None or 0 <= value <= 1, f"{name} is a fraction, in [0, 1]")


@dataclass
class SceneConfig:
    """The bin and how parts are dropped into it."""

    bin_inner_m: float | None = None  # inner side of the square bin; null sizes it to the part and N
    wall_height_m: float | None = None  # null: 0.6 of the part's largest extent
    wall_thickness_m: float = 0.004
    settle_timeout_s: float = 3.0  # simulated seconds allowed for one drop to come to rest
    max_redrops: int = 10  # per part, when it lands outside the bin
    # Where parts are dropped: over this share of the bin's half-width around its centre (1 spreads them over
    # the floor; less pours a heap), this many at a time before the pile settles.
    drop_spread: float = 1.0
    drop_layer: int = 1
    frame_period_s: float = 0.1  # stamp spacing of successive scenes in a bag

    def __post_init__(self) -> None:
        for name in ("bin_inner_m", "wall_height_m"):
            _require(getattr(self, name) is None or getattr(self, name) > 0, f"{name} must be positive")
        for name in ("wall_thickness_m", "settle_timeout_s", "frame_period_s"):
            _require(getattr(self, name) > 0, f"{name} must be positive")
        _require(self.max_redrops >= 0, "max_redrops must not be negative")
        _require(0.0 <= self.drop_spread <= 1.0, "drop_spread must be 0 to 1")
        _require(self.drop_layer >= 1, "drop_layer must be at least 1")


@dataclass
class TopicsConfig:
    """Topic names of the bags we write and read."""

    depth: str = "/camera/depth/image"
    camera_info: str = "/camera/depth/camera_info"
    rgb: str = "/camera/color/image"
    gt_labels: str = "/gt/labels"
    gt_poses: str = "/gt/poses"


METHODS = ("whole_image", "per_seed")
# The methods' first names said where they came from; configs and checkpoints that use them still load.
RENAMED_METHODS = {"thesis": "whole_image", "seeded": "per_seed"}
ROTATIONS = ("quaternion", "ortho6d", "axis_angle")
STEMS = ("depth3", "depth1")
REFINEMENTS = ("none", "icp")
OPTIMIZERS = ("adam", "sgd", "bpgrad")
REPLAY_POLICIES = ("reservoir", "fifo")  # in-loop training's replay buffer


@dataclass
class ModelConfig:
    """The perception model of the thesis (ch. 4): pose network, point-cloud model, renderer, loss.

    ``method: whole_image`` regresses all N poses from the whole depth image at once, as Wu (2019) does.
    ``method: per_seed`` first splits the bin into N depth-continuous seeds, then
    estimates each part's pose from its own crop (an N = 1 problem, repeated);
    the scene is rendered and its labels transferred as in the thesis.
    """

    method: str = "per_seed"
    seed_jump_px: float = 1.5  # per_seed: a depth jump of this many pixel footprints separates seeds
    seed_fragment_fraction: float = 0.25  # per_seed: regions below this fraction of an N-th of the points join a neighbour
    # Pixels this far beyond the workspace's floor face are kept where they touch the workspace's in the image
    # (hysteresis): a thin part's top may stand within the box's clearance over the noisy floor.
    # Keep it under that clearance (inspect --workspace-suggest leaves 3 sigma of the floor's noise); 0 crops at the box.
    floor_band_m: float = 0.001
    # per_seed: each crop is turned about the optical axis so that its seed's long axis runs along the image
    # rows, and the network's pose is turned back; false keeps the crops as the camera sees them.
    align_crops: bool = False
    segmentation: str = "transfer"  # transfer: labels from the rendered model (thesis); seeds: the seeds' (per_seed only)
    input_size_px: int = 224  # the depth image is resized to this square before the network
    # The image region that sees the workspace is decimated by a whole factor (median of each block's valid
    # depths) where it is wider than this, and its labels go back at full resolution (bin_perception.depth_filters).
    max_observed_width_px: int = 320
    stem: str = "depth3"  # depth3: the depth replicated to 3 channels (thesis); depth1: a 1-channel first conv
    rotation: str = "quaternion"
    model_points: int = 1024  # m, the learned model's points: 512, 1024 or 2048
    init_cube: float = 0.5  # rho, the side of the cube the model starts in (normalised units)
    rotation_channels: int = 1  # 2 also renders -R X + t, with the softmin loss of Eq. 4.2
    channel_loss: str = "softmin"  # or "min", the thesis's simplified two-channel loss
    gamma_step: float = 0.002  # growth of the softmin's gamma per iteration
    hpr_exponent: float | None = 2.9  # R = max|p| 10^exponent; null renders every point
    observed_points: int = 1024  # the observed cloud is subsampled to this many points
    # per_seed, aligned crops: the faces the parts rest on, for registering the fused model's views without
    # the network (model.registration); 0 fuses them under the network's poses
    registration_faces: int = 4
    # Each pose refined against the learned model at inference (bin_perception.model.refine): icp searches
    # refine_starts starts (the network's pose, its half turns, then other turns) by ICP of refine_iterations
    # iterations, points within refine_inlier_m explained; none keeps the network's poses.
    refine: str = "none"
    refine_starts: int = 4
    refine_iterations: int = 30
    refine_inlier_m: float = 0.002

    def __post_init__(self) -> None:
        if self.method in RENAMED_METHODS:
            new = RENAMED_METHODS[self.method]
            warnings.warn(f"model.method {self.method!r} is now called {new!r}; the old name will stop loading", FutureWarning, stacklevel=3)
            self.method = new
        _require(self.method in METHODS, f"method {self.method!r}: expected one of {', '.join(METHODS)}")
        _require(self.seed_jump_px > 0, "seed_jump_px must be positive")
        _require(0 <= self.seed_fragment_fraction < 1, "seed_fragment_fraction must be in [0, 1)")
        _require(0 <= self.floor_band_m <= 0.05, "floor_band_m must be in [0, 0.05] m")
        _require(self.segmentation in ("transfer", "seeds"), f"segmentation {self.segmentation!r}: expected transfer or seeds")
        _require(self.segmentation == "transfer" or self.method == "per_seed", "segmentation seeds needs method per_seed")
        _require(self.input_size_px >= 32, "input_size_px must be at least 32")
        _require(self.max_observed_width_px >= 32, "max_observed_width_px must be at least 32")
        _require(self.stem in STEMS, f"stem {self.stem!r}: expected one of {', '.join(STEMS)}")
        _require(self.rotation in ROTATIONS, f"rotation {self.rotation!r}: expected one of {', '.join(ROTATIONS)}")
        _require(self.model_points >= 16, "model_points must be at least 16")
        _require(self.init_cube > 0, "init_cube must be positive")
        _require(self.rotation_channels in (1, 2), "rotation_channels is 1 or 2")
        _require(self.channel_loss in ("softmin", "min"), "channel_loss is softmin or min")
        _require(self.observed_points >= 16, "observed_points must be at least 16")
        _require(self.refine in REFINEMENTS, f"refine {self.refine!r}: expected one of {', '.join(REFINEMENTS)}")
        _require(1 <= self.refine_starts <= 24, "refine_starts must be 1 to 24")
        _require(self.refine_iterations >= 1, "refine_iterations must be at least 1")
        _require(self.refine_inlier_m > 0, "refine_inlier_m must be positive")
        _require(self.registration_faces >= 0, "registration_faces must be 0 (off) or a number of faces")


@dataclass
class TrainConfig:
    """How the model is trained; the defaults are the thesis's GPU recipe."""

    optimizer: str = "adam"
    lr_model: float = 1e-3  # the object model's points
    lr_network: float = 1e-4  # the pose network
    momentum: float = 0.9  # sgd and bpgrad
    lipschitz: float = 50.0  # bpgrad's L
    lr_decay: float = 0.31
    lr_decay_epochs: int = 50
    batch_size: int = 250
    epochs: int = 250
    scenes: int | None = 5000  # frames used per bag; null: all
    seed: int = 0
    snapshot_every_epochs: int = 10  # PNG of the model forming
    checkpoint_every_s: float = 300.0
    threads: int | None = None  # torch intra-op threads; null: torch's default
    # after training, epochs of teaching the network the poses of the registered views (bin_perception.learning.self_training);
    # 0 leaves the network and its model as trained
    registration_epochs: int = 30
    # Each frame is observed once and kept for every later epoch, up to this much memory; frames beyond
    # it are observed again whenever a batch draws them.
    observation_cache_mb: float = 4096.0

    def __post_init__(self) -> None:
        _require(self.optimizer in OPTIMIZERS, f"optimizer {self.optimizer!r}: expected one of {', '.join(OPTIMIZERS)}")
        for name in ("lr_model", "lr_network", "lipschitz", "lr_decay", "checkpoint_every_s"):
            _require(getattr(self, name) > 0, f"{name} must be positive")
        for name in ("lr_decay_epochs", "batch_size", "epochs", "snapshot_every_epochs"):
            _require(getattr(self, name) >= 1, f"{name} must be at least 1")
        _require(self.scenes is None or self.scenes >= 1, "scenes must be at least 1")
        _require(self.registration_epochs >= 0, "registration_epochs must be at least 0")
        _require(self.observation_cache_mb >= 0, "observation_cache_mb must be 0 (off) or more")


@dataclass
class GripperConfig:
    """The suction cup that picks the parts (:func:`bin_perception.grasp.suction_grasp`)."""

    suction_radius_m: float = 0.008  # the cup's lip
    max_flatness_m: float = 0.001  # the surface under the cup lies within this of a plane (RMS), or it leaks
    max_tilt_deg: float = 45.0  # the approach's largest angle from the camera's viewing axis

    def __post_init__(self) -> None:
        _require(self.suction_radius_m > 0, "suction_radius_m must be positive")
        _require(self.max_flatness_m > 0, "max_flatness_m must be positive")
        _require(0 < self.max_tilt_deg <= 90, "max_tilt_deg must be in (0, 90]")


@dataclass
class Config:
    camera: CameraConfig = field(default_factory=CameraConfig)
    # The kind of depth camera the simulator imitates: clean, structured_light, tof or stereo.
    sensor: str = "clean"
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    scene: SceneConfig = field(default_factory=SceneConfig)
    topics: TopicsConfig = field(default_factory=TopicsConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    gripper: GripperConfig = field(default_factory=GripperConfig)
    # The parts' workspace box, xmin,ymin,zmin,xmax,ymax,zmax in the camera frame
    # (metres). Null takes the box a simulated bag records, if any.
    workspace: list[float] | None = None
    # The frame the workspace box is in, x,y,z,qx,qy,qz,qw of the bin in the camera frame (z up from its
    # floor), for a camera that looks at its bin at an angle. Null: the camera's own frame.
    bin_pose: list[float] | None = None

    def __post_init__(self) -> None:
        _require(self.sensor in SENSORS, f"sensor {self.sensor!r}: expected one of {', '.join(SENSORS)}")
        if self.workspace is not None:
            parse_workspace(self.workspace)
        if self.bin_pose is not None:
            _require(self.workspace is not None, "bin_pose: the frame of a workspace box; give the workspace too")
            parse_bin_pose(self.bin_pose)

    def with_suction_radius(self, radius_m: float) -> Config:
        """This config with its gripper's cup of ``radius_m``, checked as a config file's would be."""
        return dataclasses.replace(self, gripper=dataclasses.replace(self.gripper, suction_radius_m=radius_m))


class ConfigError(ValueError):
    """A configuration file or value that does not fit the schema."""


def _check_value(value: Any, annotation: Any, where: str) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(annotation):
            return None
        (inner,) = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _check_value(value, inner, where)
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return build_dataclass(annotation, value, where)
    if origin is list:
        (item,) = typing.get_args(annotation)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_check_value(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if annotation is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if annotation in (int, bool, str) and type(value) is annotation:
        return value
    raise ConfigError(f"{where}: expected {annotation.__name__}, got {value!r}")


def build_dataclass(cls: type, values: dict, where: str) -> Any:
    """A dataclass of the schema from a mapping, every key checked; errors name ``where``."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(
            f"{where or 'top level'}: unknown key {unknown[0]!r}; known keys: {', '.join(sorted(names))}"
        )
    kwargs = {k: _check_value(v, hints[k], f"{where}.{k}" if where else k) for k, v in values.items()}
    try:
        return cls(**kwargs)
    except ValueError as error:
        raise ConfigError(f"{where or 'top level'}: {error}") from None


def config_from_dict(values: dict | None, source: str = "config") -> Config:
    """Validate a nested mapping (as parsed from YAML) into a :class:`Config`."""
    try:
        return build_dataclass(Config, values or {}, "")
    except ConfigError as error:
        raise ConfigError(f"{source}: {error}") from None


def load_config(path: str | Path | None = None) -> Config:
    """The defaults, overridden by the YAML file at ``path`` if one is given. A file whose ``extends`` names
    another (relative to it) overrides that one's values, key by key."""
    if path is None:
        return Config()
    return config_from_dict(_config_values(Path(path), ()), str(path))


def _config_values(path: Path, seen: tuple[Path, ...]) -> dict:
    if not path.is_file():
        raise ConfigError(f"config {path}: no such file")
    if path.resolve() in seen:
        raise ConfigError(f"config {path}: extends itself, through {' -> '.join(map(str, seen))}")
    try:
        values = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"config {path}: not valid YAML: {error}") from None
    if values is not None and not isinstance(values, dict):
        raise ConfigError(f"config {path}: the top level must be a mapping")
    values = values or {}
    base = values.pop("extends", None)
    if base is None:
        return values
    if not isinstance(base, str):
        raise ConfigError(f"config {path}: extends {base!r}: expected the path of another config")
    try:
        base_values = _config_values(path.parent / base, (*seen, path.resolve()))
    except ConfigError as error:
        raise ConfigError(f"config {path}: extends {error}") from None
    return _merged(base_values, values)


def _merged(base: dict, override: dict) -> dict:
    merged = dict(base)
    for key, value in override.items():
        merged[key] = _merged(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return merged


def config_to_dict(config: Config) -> dict:
    return dataclasses.asdict(config)
