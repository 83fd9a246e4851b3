"""A depth camera's imperfections, as the simulator renders them over its clean depth.

What real depth cameras get wrong, each as one step over the clean render:

- shadows: a structured-light or stereo camera sees depth only where its projector (or its second
  imager), ``projector_baseline_m`` along +x, sees the surface too; the background just beside a
  near object, on the side away from the projector, returns nothing;
- dropouts and flying pixels at depth edges: an edge pixel returns nothing (``edge_dropout``), or
  a depth between the two surfaces it straddles (``flying_pixels``);
- axial noise whose sigma is ``depth_sigma_per_m`` z + ``axial_sigma_m_at_1m`` z^2, correlated over
  ``correlation_px`` pixels, as the matching window of a stereo or structured-light camera makes it;
- holes, blobs of about ``hole_size_px`` covering ``hole_fraction`` of the image (dark, shiny or
  textureless surfaces);
- quantisation to the camera's depth unit ``depth_unit_m``;
- far outliers, ``outlier_fraction`` of the pixels at 10 to 60 m.

:data:`SENSOR_PRESETS` name the kinds of camera that users have; ``docs/METHOD.md`` gives their figures.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import cv2
import numpy as np

from ..config import SENSORS, NoiseConfig

OUTLIER_RANGE_M = (10.0, 60.0)


@dataclass(frozen=True)
class SensorModel:
    """Every imperfection's size; zero turns it off."""

    depth_sigma_per_m: float = 0.0
    axial_sigma_m_at_1m: float = 0.0
    correlation_px: float = 1.0
    edge_threshold_m: float = 0.004
    edge_dropout: float = 0.0
    flying_pixels: float = 0.0
    projector_baseline_m: float = 0.0
    hole_fraction: float = 0.0
    hole_size_px: float = 8.0
    depth_unit_m: float = 0.0
    outlier_fraction: float = 0.0

    @property
    def is_clean(self) -> bool:
        """Whether it changes nothing: every imperfection's size is zero."""
        return not any(
            (self.depth_sigma_per_m, self.axial_sigma_m_at_1m, self.edge_dropout, self.flying_pixels,
             self.projector_baseline_m, self.hole_fraction, self.depth_unit_m, self.outlier_fraction)
        )

    def sigma_m(self, depth_m: np.ndarray | float) -> np.ndarray | float:
        """The axial noise's standard deviation at ``depth_m``."""
        return self.depth_sigma_per_m * depth_m + self.axial_sigma_m_at_1m * np.square(depth_m)


SENSOR_PRESETS: dict[str, SensorModel] = {
    "clean": SensorModel(),
    # An active structured-light or IR-stereo camera over a bin (a RealSense D415 at 0.6 m): sub-millimetre
    # noise correlated over its matching window, shadows beside every part, 1 mm depth units.
    "structured_light": SensorModel(
        axial_sigma_m_at_1m=0.0015, correlation_px=3.0, edge_dropout=0.5, flying_pixels=0.3, projector_baseline_m=0.055,
        hole_fraction=0.03, hole_size_px=6.0, depth_unit_m=0.001, outlier_fraction=0.0005,
    ),
    # A time-of-flight camera: no shadows (its emitter sits by the lens), but mixed pixels at every edge
    # and multipath outliers.
    "tof": SensorModel(
        axial_sigma_m_at_1m=0.002, correlation_px=2.0, edge_dropout=0.2, flying_pixels=0.8, hole_fraction=0.01,
        hole_size_px=4.0, depth_unit_m=0.001, outlier_fraction=0.002,
    ),
    # A passive stereo pair: more noise, wide holes where the surface has no texture, occlusion by the second imager.
    "stereo": SensorModel(
        axial_sigma_m_at_1m=0.004, correlation_px=5.0, edge_dropout=0.6, flying_pixels=0.3, projector_baseline_m=0.05,
        hole_fraction=0.15, hole_size_px=10.0, depth_unit_m=0.001, outlier_fraction=0.001,
    ),
}
# The first sensor model, which ``noise: {enabled: true}`` still selects.
RELATIVE_NOISE = SensorModel(depth_sigma_per_m=0.002, edge_dropout=0.5)
assert set(SENSOR_PRESETS) == set(SENSORS)


def sensor_model(sensor: str, noise: NoiseConfig) -> SensorModel:
    """The preset ``sensor`` (or, for ``clean`` with ``noise.enabled``, the first model), with the keys that
    ``noise`` sets in place of the preset's."""
    base = RELATIVE_NOISE if sensor == "clean" and noise.enabled else SENSOR_PRESETS[sensor]
    overrides = {k: v for k, v in dataclasses.asdict(noise).items() if k != "enabled" and v is not None}
    return dataclasses.replace(base, **overrides)


def depth_edges(depth_m: np.ndarray, threshold_m: float) -> np.ndarray:
    """Pixels whose depth differs from a 4-neighbour's by more than ``threshold_m`` (or that border invalid depth)."""
    padded = np.pad(depth_m, 1, mode="edge")
    centre = padded[1:-1, 1:-1]
    edges = np.zeros(depth_m.shape, dtype=bool)
    for neighbour in (padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]):
        jump = np.abs(neighbour - centre)
        edges |= ~(jump <= threshold_m)  # NaN jumps count as edges
    return edges & np.isfinite(depth_m)


def projector_shadows(depth_m: np.ndarray, fx_px: float, baseline_m: float) -> np.ndarray:
    """The pixels that a projector ``baseline_m`` along +x cannot light: a nearer surface between it and them.

    A point at column u and depth z falls at u - fx b / z in the projector's image. Seen from the camera,
    it is lit when every pixel on the projector's side of it falls further along in the projector's
    image; a pixel that falls before it, nearer, blocks the light.
    """
    if baseline_m <= 0:
        return np.zeros(depth_m.shape, dtype=bool)
    columns = np.arange(depth_m.shape[1], dtype=np.float64)
    projector_u = np.where(np.isfinite(depth_m), columns - fx_px * baseline_m / depth_m, np.inf)
    # The smallest projector column among the pixels to the right of each (the projector's side).
    to_the_right = np.minimum.accumulate(projector_u[:, ::-1], axis=1)[:, ::-1]
    blocking = np.concatenate([to_the_right[:, 1:], np.full((depth_m.shape[0], 1), np.inf)], axis=1)
    return np.isfinite(depth_m) & (blocking < projector_u - 0.5)


def _smooth_field(shape: tuple[int, int], scale_px: float, rng: np.random.Generator) -> np.ndarray:
    """A standard normal field whose values are correlated over about ``scale_px`` pixels."""
    if scale_px <= 1:
        return rng.standard_normal(shape)
    coarse = (max(2, round(shape[0] / scale_px)), max(2, round(shape[1] / scale_px)))
    field = cv2.resize(rng.standard_normal(coarse), (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
    return (field - field.mean()) / max(field.std(), 1e-12)


def apply_depth_noise(depth_m: np.ndarray, sensor: SensorModel, rng: np.random.Generator, fx_px: float) -> np.ndarray:
    """The clean ``depth_m`` (H, W) as ``sensor`` measures it, NaN where it returns nothing."""
    clean = np.asarray(depth_m, dtype=np.float64)
    measured = clean.copy()
    lost = ~np.isfinite(clean) | projector_shadows(clean, fx_px, sensor.projector_baseline_m)

    edges = depth_edges(clean, sensor.edge_threshold_m)
    draw = rng.random(clean.shape)
    lost |= edges & (draw < sensor.edge_dropout)
    flying = edges & ~lost & (draw < sensor.edge_dropout + sensor.flying_pixels * (1 - sensor.edge_dropout))
    if flying.any():
        # A mixed pixel lies between its own surface and the farthest of its 4-neighbours.
        padded = np.pad(np.where(np.isfinite(clean), clean, -np.inf), 1, mode="edge")
        farthest = np.max([padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]], axis=0)
        farthest = np.where(np.isfinite(farthest), farthest, clean)
        measured[flying] += rng.random(int(flying.sum())) * (farthest[flying] - clean[flying])

    sigma_m = sensor.sigma_m(np.where(np.isfinite(clean), clean, 0.0))
    if np.any(sigma_m > 0):
        measured += _smooth_field(clean.shape, sensor.correlation_px, rng) * sigma_m
    if sensor.hole_fraction > 0:
        field = _smooth_field(clean.shape, sensor.hole_size_px, rng)
        lost |= field < np.quantile(field, sensor.hole_fraction)
    if sensor.depth_unit_m > 0:
        measured = np.round(measured / sensor.depth_unit_m) * sensor.depth_unit_m
    if sensor.outlier_fraction > 0:
        outliers = ~lost & (rng.random(clean.shape) < sensor.outlier_fraction)
        measured[outliers] = rng.uniform(*OUTLIER_RANGE_M, int(outliers.sum()))
    measured[lost] = np.nan
    return measured.astype(np.float32)
