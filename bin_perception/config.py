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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .camera import PinholeCamera
from .geometry import parse_workspace


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@dataclass
class CameraConfig:
    """The simulated depth camera: a pinhole looking straight down into the bin."""

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
    frame_id: str = "camera_depth_optical_frame"

    def __post_init__(self) -> None:
        self.pinhole()
        _require(0 < self.near_m < self.far_m, f"near_m={self.near_m} and far_m={self.far_m} need 0 < near < far")
        _require(self.height_above_rim_m is None or self.height_above_rim_m > 0, "height_above_rim_m must be positive")

    def pinhole(self) -> PinholeCamera:
        return PinholeCamera(self.width_px, self.height_px, self.fx_px, self.fy_px, self.cx_px, self.cy_px)


@dataclass
class NoiseConfig:
    """An optional depth sensor model; off by default."""

    enabled: bool = False
    depth_sigma_per_m: float = 0.002  # Gaussian sigma as a fraction of the depth
    edge_threshold_m: float = 0.004  # a jump this large to a neighbour marks a depth edge
    edge_dropout: float = 0.5  # probability that an edge pixel returns no depth

    def __post_init__(self) -> None:
        _require(self.depth_sigma_per_m >= 0, "depth_sigma_per_m must not be negative")
        _require(self.edge_threshold_m > 0, "edge_threshold_m must be positive")
        _require(0 <= self.edge_dropout <= 1, "edge_dropout is a probability, in [0, 1]")


@dataclass
class SceneConfig:
    """The bin and how parts are dropped into it."""

    bin_inner_m: float | None = None  # inner side of the square bin; null sizes it to the part and N
    wall_height_m: float | None = None  # null: 0.6 of the part's largest extent
    wall_thickness_m: float = 0.004
    settle_timeout_s: float = 3.0  # simulated seconds allowed for one drop to come to rest
    max_redrops: int = 10  # per part, when it lands outside the bin
    frame_period_s: float = 0.1  # stamp spacing of successive scenes in a bag

    def __post_init__(self) -> None:
        for name in ("bin_inner_m", "wall_height_m"):
            _require(getattr(self, name) is None or getattr(self, name) > 0, f"{name} must be positive")
        for name in ("wall_thickness_m", "settle_timeout_s", "frame_period_s"):
            _require(getattr(self, name) > 0, f"{name} must be positive")
        _require(self.max_redrops >= 0, "max_redrops must not be negative")


@dataclass
class TopicsConfig:
    """Topic names of the bags we write and read."""

    depth: str = "/camera/depth/image"
    camera_info: str = "/camera/depth/camera_info"
    rgb: str = "/camera/color/image"
    gt_labels: str = "/gt/labels"
    gt_poses: str = "/gt/poses"


@dataclass
class Config:
    camera: CameraConfig = field(default_factory=CameraConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    scene: SceneConfig = field(default_factory=SceneConfig)
    topics: TopicsConfig = field(default_factory=TopicsConfig)
    # The parts' workspace box, xmin,ymin,zmin,xmax,ymax,zmax in the camera frame
    # (metres). Null takes the box a simulated bag records, if any.
    workspace: list[float] | None = None

    def __post_init__(self) -> None:
        if self.workspace is not None:
            parse_workspace(self.workspace)


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
        return _build(annotation, value, where)
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


def _build(cls: type, values: dict, where: str) -> Any:
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
        return _build(Config, values or {}, "")
    except ConfigError as error:
        raise ConfigError(f"{source}: {error}") from None


def load_config(path: str | Path | None = None) -> Config:
    """The defaults, overridden by the YAML file at ``path`` if one is given."""
    if path is None:
        return Config()
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config {path}: no such file")
    try:
        values = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"config {path}: not valid YAML: {error}") from None
    if values is not None and not isinstance(values, dict):
        raise ConfigError(f"config {path}: the top level must be a mapping")
    return config_from_dict(values, str(path))


def config_to_dict(config: Config) -> dict:
    return dataclasses.asdict(config)
