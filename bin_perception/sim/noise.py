"""A depth sensor model: noise that grows with range, and dropouts at depth edges."""

from __future__ import annotations

import numpy as np

from ..config import NoiseConfig


def depth_edges(depth_m: np.ndarray, threshold_m: float) -> np.ndarray:
    """Pixels whose depth differs from a 4-neighbour's by more than ``threshold_m`` (or that border invalid depth)."""
    padded = np.pad(depth_m, 1, mode="edge")
    centre = padded[1:-1, 1:-1]
    edges = np.zeros(depth_m.shape, dtype=bool)
    for neighbour in (padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]):
        jump = np.abs(neighbour - centre)
        edges |= ~(jump <= threshold_m)  # NaN jumps count as edges
    return edges & np.isfinite(depth_m)


def apply_depth_noise(depth_m: np.ndarray, noise: NoiseConfig, rng: np.random.Generator) -> np.ndarray:
    """Depth with Gaussian noise of sigma proportional to depth, and edge pixels dropped to NaN."""
    noisy = depth_m + rng.standard_normal(depth_m.shape).astype(np.float32) * (noise.depth_sigma_per_m * depth_m)
    dropped = depth_edges(depth_m, noise.edge_threshold_m) & (rng.random(depth_m.shape) < noise.edge_dropout)
    noisy[dropped] = np.nan
    return noisy.astype(np.float32)
