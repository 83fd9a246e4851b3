"""Hidden point removal (Katz, Tal and Basri, SIGGRAPH 2007): which points a camera sees.

Spherical flipping maps each point p (relative to the camera) to
p + 2 (R - |p|) p / |p|, with R = max |p| * 10^exponent; the visible points
are those whose images are vertices of the convex hull of the flipped points
and the camera. The hull comes from Qhull, as in Open3D's
``hidden_point_removal``, so both mark the same points. It is not
differentiable: gradients flow through the points it selects.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy.spatial import ConvexHull, QhullError

# The thesis's settings; None renders every point as visible.
HPR_EXPONENTS = (2.0, 2.9, 3.14, None)

_pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 1)


def flip_radius(points: np.ndarray, camera: np.ndarray, exponent: float) -> float:
    """The flipping sphere's radius R for a cloud seen from ``camera``."""
    return float(np.linalg.norm(points - camera, axis=1).max() * 10.0**exponent)


def visible_points(points: np.ndarray, camera: np.ndarray, radius: float) -> np.ndarray:
    """A boolean mask of the points (n, 3) visible from ``camera`` (3,), flipping in a sphere of ``radius``."""
    p = np.asarray(points, dtype=np.float64) - np.asarray(camera, dtype=np.float64)
    norms = np.linalg.norm(p, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError("hidden point removal: a point coincides with the camera")
    flipped = p + 2.0 * (radius - norms) * p / norms
    visible = np.zeros(len(p), dtype=bool)
    try:
        hull = ConvexHull(np.vstack([flipped, np.zeros((1, 3))]))
    except QhullError:
        # A degenerate (flat or tiny) cloud has no 3-D hull; nothing hides anything.
        visible[:] = True
        return visible
    vertices = hull.vertices[hull.vertices < len(p)]
    visible[vertices] = True
    return visible


def visible_mask(points: np.ndarray, camera: np.ndarray, exponent: float | None) -> np.ndarray:
    """HPR over a batch: points (B, n, 3), cameras (B, 3) or (3,); returns (B, n) booleans.

    Batch elements run in parallel threads (Qhull releases the GIL); a batch of one runs here.
    """
    points = np.asarray(points)
    if exponent is None:
        return np.ones(points.shape[:2], dtype=bool)
    cameras = np.broadcast_to(np.asarray(camera, dtype=np.float64), (len(points), 3))

    def one(b: int) -> np.ndarray:
        return visible_points(points[b], cameras[b], flip_radius(points[b], cameras[b], exponent))

    if len(points) == 1:  # one frame at inference: a thread hand-off would cost a third of the hull's time
        return one(0)[None]
    return np.stack(list(_pool.map(one, range(len(points)))))
