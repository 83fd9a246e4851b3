"""A workspace box suggested from one frame of the bin: its floor found by RANSAC, the box inside the walls.

For a camera that looks into the bin roughly along its floor's normal, the parts lie in a box of the
camera frame: above the floor by a margin, and inside the part of the floor the camera sees, which the
walls bound. The floor is the deepest plane whose image region the walls enclose: a ground or a table
around the bin, deeper still, reaches the image's border (and flat parts lying side by side make a plane
too, but a nearer one). A camera tilted so far that an axis-aligned box would cut the floor or the
walls is refused, with the tilt measured.
"""

from __future__ import annotations

import cv2
import numpy as np

from .frame import Frame
from .geometry import backproject, fit_plane_ransac

# Beyond this angle between the floor's normal and the optical axis, a box of the camera frame either
# keeps part of the floor or loses part of the bin.
MAX_TILT_DEG = 10.0
# The ground and a table under the bin may each be a deeper plane than its floor.
MAX_PLANES = 3
# The least of the image a floor's region covers.
MIN_FLOOR_FRACTION = 0.01


def suggest_workspace(frame: Frame, margin_m: float = 0.0015, plane_threshold_m: float | None = None) -> np.ndarray:
    """The box (2, 3) of the camera frame, metres, that holds what stands on the bin's floor inside its walls.

    ``margin_m`` is left above the floor and inside the floor's seen edges. ``plane_threshold_m`` is the
    floor's RANSAC inlier distance; by default 0.5 % of the median depth, which a depth camera's noise
    stays within. ValueError names a frame that has no floor to find, or a camera tilted too far.
    """
    image_points_m = backproject(frame.depth_m, frame.K)
    valid = np.isfinite(image_points_m).all(axis=2)
    points_m = image_points_m[valid]
    if len(points_m) < 100:
        raise ValueError(f"frame at stamp {frame.stamp_ns}: {len(points_m)} valid points, too few to find the bin's floor")
    threshold_m = plane_threshold_m or 0.005 * float(np.median(points_m[:, 2]))
    candidates = np.ones(len(points_m), dtype=bool)
    for _ in range(MAX_PLANES):
        normal, offset, on_plane = _deepest_plane(points_m, candidates, threshold_m)
        tilt_deg = float(np.degrees(np.arccos(min(1.0, abs(normal[2])))))
        if tilt_deg > MAX_TILT_DEG:
            raise ValueError(
                f"frame at stamp {frame.stamp_ns}: the bin's floor is tilted {tilt_deg:.0f} deg to the optical axis (more than "
                f"{MAX_TILT_DEG:.0f}); a box of the camera frame cannot crop it: give --workspace by hand"
            )
        inliers = _enclosed_region(on_plane, valid)
        if inliers is not None:
            break
        # The plane of the ground or the table the bin stands on, which reaches the image's border.
        candidates &= ~on_plane
    else:
        raise ValueError(f"frame at stamp {frame.stamp_ns}: no floor enclosed by walls among its {MAX_PLANES} deepest planes")
    if normal[2] > 0:  # the normal towards the camera: then the parts' side has negative z
        normal, offset = -normal, -offset
    floor = points_m[inliers]
    low, high = floor[:, :2].min(axis=0) + margin_m, floor[:, :2].max(axis=0) - margin_m
    # Everything the camera sees inside the floor's outline and above it by the margin.
    above = points_m @ normal + offset > margin_m
    inside = np.all((points_m[:, :2] >= low) & (points_m[:, :2] <= high), axis=1) & above
    if not np.any(inside):
        raise ValueError(f"frame at stamp {frame.stamp_ns}: nothing stands on the floor inside its seen outline")
    floor_near_m = float(floor[:, 2].min())
    # Room above for a pile up to twice as high as this frame's.
    top_m = max(float(points_m[inside, 2].min()) - margin_m, 0.0)
    top_m = max(2 * top_m - floor_near_m, 0.5 * top_m)
    return np.array([[low[0], low[1], top_m], [high[0], high[1], floor_near_m - margin_m]])


def _deepest_plane(points_m: np.ndarray, candidates: np.ndarray, threshold_m: float) -> tuple[np.ndarray, float, np.ndarray]:
    """The plane of the deepest fifth of the candidate points (far outliers left out): its normal, offset
    and the mask of every candidate point on it."""
    z = points_m[candidates, 2]
    low_z, high_z = np.quantile(z, [0.8, 0.995])
    deepest = points_m[candidates][(z >= low_z) & (z <= high_z)]
    plane, _ = fit_plane_ransac(deepest, threshold_m, iterations=300)
    normal, offset = plane[:3], float(plane[3])
    return normal, offset, candidates & (np.abs(points_m @ normal + offset) < threshold_m)


def _enclosed_region(on_plane: np.ndarray, valid: np.ndarray) -> np.ndarray | None:
    """Of the points on a plane, those of its largest image region that no image border touches: a floor
    that walls enclose. None where every sizeable region reaches the border (a ground around the bin)."""
    mask = np.zeros(valid.shape, dtype=np.uint8)
    mask[valid] = on_plane
    # A closing bridges the gaps that lying parts leave in the floor.
    closed = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
    count, regions, stats, _ = cv2.connectedComponentsWithStats(closed, connectivity=8)
    height, width = valid.shape
    # A speck of a deeper plane that the noise leaves inside the bin is not a floor.
    best, best_area = None, MIN_FLOOR_FRACTION * height * width
    for region in range(1, count):
        left, top, w, h, area = stats[region]
        if left > 0 and top > 0 and left + w < width and top + h < height and area > best_area:
            best, best_area = region, area
    if best is None:
        return None
    return ((regions == best) & (mask > 0))[valid]
