"""RGB renders of single parts, one part per image, for the low-resolution classifier (thesis ch. 5).

Each render drops one library part into a bin or onto a tray, lets PyBullet settle it, and photographs it
from a random camera height, tilt and roll under random lighting and colours. Render ``i`` of a part depends
only on ``(seed, part, i)``, so a set is reproducible and its images can be cached on disk.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pybullet
from pybullet_utils.bullet_client import BulletClient
from tqdm import tqdm

from ..cache import cache_dir
from .parts import Part, load_part, part_names
from .scene import TIME_STEP_S, _quiet_stdout, pybullet_assets

# Bump when the scene generator changes, so that cached render sets are rebuilt.
_RENDER_VERSION = 2

FIELD_OF_VIEW_DEG = 60.0
NEAR_M, FAR_M = 0.01, 3.0
SETTLE_S = 1.5
GRAVITY_M_S2 = 9.81
# The camera stands off so that the part's largest extent spans this fraction of the image width: a
# close-up to a wide view, at any part size.
PART_SPAN_OF_IMAGE = (0.2, 0.6)
MAX_TILT_DEG = 25.0
CONTAINERS = ("bin", "tray")

# Colours drawn for every class alike, so that colour carries no label.
_PART_COLOURS = ((0.72, 0.72, 0.75), (0.55, 0.56, 0.60), (0.25, 0.25, 0.27), (0.78, 0.66, 0.38), (0.85, 0.85, 0.88))
_CONTAINER_COLOURS = ((0.16, 0.36, 0.72), (0.30, 0.30, 0.32), (0.10, 0.10, 0.11), (0.20, 0.55, 0.30), (0.85, 0.45, 0.12))
_TABLE_COLOURS = ((0.45, 0.42, 0.38), (0.60, 0.60, 0.58), (0.30, 0.26, 0.22), (0.75, 0.74, 0.70))


@dataclass(frozen=True)
class RenderSet:
    """Images (N, H, W, 3) uint8 RGB, their class indices (N,) int64, and the class names."""

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]


def _jitter(rng: np.random.Generator, palette: tuple, spread: float = 0.06) -> list[float]:
    colour = np.asarray(palette[rng.integers(len(palette))]) + rng.uniform(-spread, spread, 3)
    return [*np.clip(colour, 0.0, 1.0).tolist(), 1.0]


class PartRenderer:
    """Renders one part at a time in its own PyBullet (DIRECT) world; reuse it for many images."""

    def __init__(self, size_px: int = 224) -> None:
        if size_px < 8:
            raise ValueError(f"render size {size_px} px is too small; use 8 px or more")
        self.size_px = size_px
        with _quiet_stdout():  # PyBullet greets every connection on stdout
            self._client = BulletClient(connection_mode=pybullet.DIRECT)
        self._projection = self._client.computeProjectionMatrixFOV(FIELD_OF_VIEW_DEG, 1.0, NEAR_M, FAR_M)

    def close(self) -> None:
        self._client.disconnect()

    def __enter__(self) -> PartRenderer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _box(self, half_extents_m, centre_m, rgba, mass_kg: float = 0.0) -> int:
        c = self._client
        collision = c.createCollisionShape(pybullet.GEOM_BOX, halfExtents=half_extents_m)
        visual = c.createVisualShape(pybullet.GEOM_BOX, halfExtents=half_extents_m, rgbaColor=rgba)
        return c.createMultiBody(mass_kg, collision, visual, basePosition=centre_m)

    def _container(self, kind: str, rng: np.random.Generator) -> float:
        """Table, floor and walls; the inner half side of the container in metres."""
        half_m = rng.uniform(0.045, 0.075)
        wall_m = 0.004
        # A bin's walls hide the part from oblique views; a tray's low rim does not.
        height_m = rng.uniform(0.03, 0.05) if kind == "bin" else rng.uniform(0.004, 0.008)
        colour = _jitter(rng, _CONTAINER_COLOURS)
        self._box((0.6, 0.6, 0.01), (0.0, 0.0, -wall_m - 0.01), _jitter(rng, _TABLE_COLOURS))
        self._box((half_m + wall_m, half_m + wall_m, wall_m / 2), (0.0, 0.0, -wall_m / 2), colour)
        for sign in (-1.0, 1.0):
            self._box((wall_m / 2, half_m + wall_m, height_m / 2), (sign * (half_m + wall_m / 2), 0.0, height_m / 2), colour)
            self._box((half_m, wall_m / 2, height_m / 2), (0.0, sign * (half_m + wall_m / 2), height_m / 2), colour)
        return half_m

    def _drop_part(self, part: Part, half_m: float, rng: np.random.Generator) -> int:
        """Drop the part from a random orientation and let it come to rest; its body id."""
        c = self._client
        visual_path, collision_path = pybullet_assets(part)
        collision = c.createCollisionShape(pybullet.GEOM_MESH, fileName=str(collision_path))
        visual = c.createVisualShape(pybullet.GEOM_MESH, fileName=str(visual_path), rgbaColor=_jitter(rng, _PART_COLOURS))
        reach_m = max(half_m - part.radius_m, 0.0)
        x, y = rng.uniform(-reach_m, reach_m, size=2)
        orientation = rng.normal(size=4)
        orientation /= np.linalg.norm(orientation)
        body = c.createMultiBody(
            7800.0 * part.mesh.volume, collision, visual,
            basePosition=(x, y, part.radius_m + 0.003), baseOrientation=orientation.tolist(),
        )
        c.changeDynamics(body, -1, lateralFriction=0.5, restitution=0.1, linearDamping=0.1, angularDamping=0.1)
        for _ in range(int(SETTLE_S / TIME_STEP_S)):
            c.stepSimulation()
        return body

    def render(self, name: str, rng: np.random.Generator) -> np.ndarray:
        """One (size, size, 3) uint8 RGB image of part ``name`` at rest in a random container."""
        c = self._client
        c.resetSimulation()
        c.setGravity(0.0, 0.0, -GRAVITY_M_S2)
        c.setTimeStep(TIME_STEP_S)
        kind = CONTAINERS[rng.integers(len(CONTAINERS))]
        half_m = self._container(kind, rng)
        part = load_part(name)
        body = self._drop_part(part, half_m, rng)
        target_m = np.asarray(c.getBasePositionAndOrientation(body)[0])
        # Aim near the part, not at it, so that it is not always at the image centre.
        target_m[:2] += rng.uniform(-0.015, 0.015, size=2)
        view_width_m = part.max_extent_m / rng.uniform(*PART_SPAN_OF_IMAGE)
        height_m = view_width_m / (2.0 * np.tan(np.deg2rad(FIELD_OF_VIEW_DEG / 2)))
        tilt_rad = np.deg2rad(rng.uniform(0.0, MAX_TILT_DEG))
        azimuth_rad = rng.uniform(0.0, 2 * np.pi)
        eye_m = target_m + height_m * np.array(
            [np.sin(tilt_rad) * np.cos(azimuth_rad), np.sin(tilt_rad) * np.sin(azimuth_rad), np.cos(tilt_rad)]
        )
        roll_rad = rng.uniform(0.0, 2 * np.pi)
        up = (np.cos(roll_rad), np.sin(roll_rad), 0.0)
        view = c.computeViewMatrix(eye_m.tolist(), target_m.tolist(), up)
        light = rng.normal(size=3)
        light[2] = abs(light[2]) + 0.5  # from above the table
        _, _, rgba, _, _ = c.getCameraImage(
            self.size_px,
            self.size_px,
            viewMatrix=view,
            projectionMatrix=self._projection,
            renderer=pybullet.ER_TINY_RENDERER,
            lightDirection=light.tolist(),
            lightColor=np.clip(1.0 - rng.uniform(0.0, 0.25, 3), 0.0, 1.0).tolist(),
            lightAmbientCoeff=rng.uniform(0.3, 0.7),
            lightDiffuseCoeff=rng.uniform(0.3, 0.8),
            lightSpecularCoeff=rng.uniform(0.0, 0.5),
            shadow=int(rng.integers(2)),
        )
        return np.reshape(np.asarray(rgba, dtype=np.uint8), (self.size_px, self.size_px, 4))[..., :3].copy()


def _cache_path(parts: tuple[str, ...], per_part: int, seed: int, size_px: int) -> Path:
    key = hashlib.sha256(repr((_RENDER_VERSION, parts, per_part, seed, size_px)).encode()).hexdigest()[:16]
    return cache_dir() / "renders" / f"parts{len(parts)}-n{per_part}-s{seed}-{size_px}px-{key}.npz"


def render_parts(
    per_part: int, seed: int = 0, parts: tuple[str, ...] | None = None, size_px: int = 224, progress: bool = True
) -> RenderSet:
    """``per_part`` renders of each part (default: the six library parts), cached under the cache dir.

    Image ``i`` of part ``p`` is drawn from the stream ``(seed, p's position in parts, i)``.
    """
    parts = tuple(parts) if parts is not None else tuple(part_names())
    if per_part < 1:
        raise ValueError(f"renders per part must be 1 or more, got {per_part}")
    if len(parts) < 2:
        raise ValueError(f"a classifier needs 2 or more parts, got {list(parts)}")
    path = _cache_path(parts, per_part, seed, size_px)
    if path.is_file():
        with np.load(path) as stored:
            return RenderSet(stored["images"], stored["labels"], parts)
    images = np.empty((len(parts) * per_part, size_px, size_px, 3), dtype=np.uint8)
    labels = np.repeat(np.arange(len(parts), dtype=np.int64), per_part)
    with PartRenderer(size_px) as renderer:
        jobs = [(p, i) for p in range(len(parts)) for i in range(per_part)]
        for row, (p, i) in enumerate(tqdm(jobs, desc="rendering parts", unit="img", disable=not progress)):
            images[row] = renderer.render(parts[p], np.random.default_rng([seed, p, i]))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
    np.savez(tmp, images=images, labels=labels)
    os.replace(tmp, path)
    return RenderSet(images, labels, parts)
