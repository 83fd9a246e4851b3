"""A workspace suggested from one frame of the bin: its floor found by RANSAC, the box inside the walls.

The floor is the deepest plane whose image region the walls enclose: a ground or a table around the bin,
deeper still, reaches the image's border (and flat parts lying side by side make a plane too, but a nearer
one). The parts are what stands above the floor, inside its outline.

A camera that looks into the bin roughly along the floor's normal gets a box of its own frame. A camera
that looks at the bin at an angle gets a box in the bin's frame (z up from the floor, x and y along the
walls, which bound the floor's outline) and that frame's pose in the camera's: no box of the camera frame
would hold the bin's inside without a wall or the floor. The wall nearest such a camera hides a strip of
the floor behind it; the box reaches under the wall's top to hold the parts that lie there.
"""

from __future__ import annotations

import cv2
import numpy as np

from .frame import Frame
from .geometry import backproject, fit_plane_ransac

# Within this angle between the floor's normal and the optical axis, a box of the camera frame crops the
# bin as well as a box of the bin's: the simpler answer is given.
MAX_CAMERA_FRAME_TILT_DEG = 10.0
# The ground and a table under the bin may each be a deeper plane than its floor.
MAX_PLANES = 3
# The least of the image a floor's region covers.
MIN_FLOOR_FRACTION = 0.01
# How far beyond the floor's outline a wall's inner face is looked for.
WALL_BAND_M = 0.03


def suggest_workspace(
    frame: Frame, margin_m: float = 0.0015, plane_threshold_m: float | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """The box (2, 3), metres, that holds what stands on the bin's floor inside its walls, and its frame: the
    bin's (4, 4) in the camera's for a camera tilted more than 10 degrees to the floor, else None (the box is
    in the camera's own frame).

    ``margin_m`` is left above the floor and inside the walls, and above the floor at least three sigmas of
    its measured noise. ``plane_threshold_m`` is the floor's RANSAC inlier distance; by default 0.5 % of the
    median depth, which a depth camera's noise stays within. ValueError names a frame that has no floor to find.
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
        inliers = _enclosed_region(on_plane, valid)
        if inliers is not None:
            break
        # The plane of the ground or the table the bin stands on, which reaches the image's border.
        candidates &= ~on_plane
    else:
        raise ValueError(f"frame at stamp {frame.stamp_ns}: no floor enclosed by walls among its {MAX_PLANES} deepest planes")
    normal, offset, inliers = _refined_floor(points_m, candidates, valid, inliers, threshold_m)
    if offset < 0:  # the normal up, towards the camera: a point's height over the floor is normal . p + offset
        normal, offset = -normal, -offset
    floor = points_m[inliers]
    # Above the floor by three sigmas of its own noise, which a fixed margin does not cover at a real
    # camera's range. The sigma is taken within half the inlier distance, which leaves out most of the
    # parts' lowest points that lie among the floor's inliers.
    residuals_m = floor @ normal + offset
    margin_m = max(margin_m, 3 * float(np.std(residuals_m[np.abs(residuals_m) < threshold_m / 2])))
    tilt_deg = float(np.degrees(np.arccos(min(1.0, -normal[2]))))
    if tilt_deg <= MAX_CAMERA_FRAME_TILT_DEG:
        return _camera_frame_box(frame, points_m, floor, normal, offset, margin_m), None
    # A wall seen face-on scatters its points across the floor's edge by the depth noise, which the
    # inlier distance bounds.
    return _bin_frame_box(frame, points_m, floor, normal, offset, margin_m, max(margin_m, threshold_m))


def _camera_frame_box(
    frame: Frame, points_m: np.ndarray, floor: np.ndarray, normal: np.ndarray, offset: float, margin_m: float
) -> np.ndarray:
    low, high = floor[:, :2].min(axis=0) + margin_m, floor[:, :2].max(axis=0) - margin_m
    # Everything the camera sees inside the floor's outline and above it by the margin.
    above = points_m @ normal + offset > margin_m
    inside = np.all((points_m[:, :2] >= low) & (points_m[:, :2] <= high), axis=1) & above
    if not np.any(inside):
        raise ValueError(f"frame at stamp {frame.stamp_ns}: nothing stands on the floor inside its seen outline")
    # The plane's own nearest depth under the floor's points, without their noise, which the margin is for.
    floor_near_m = float((floor[:, 2] - (floor @ normal + offset) * normal[2]).min())
    # Room above for a pile up to twice as high as this frame's.
    top_m = max(float(points_m[inside, 2].min()) - margin_m, 0.0)
    top_m = max(2 * top_m - floor_near_m, 0.5 * top_m)
    return np.array([[low[0], low[1], top_m], [high[0], high[1], floor_near_m - margin_m]])


def _bin_frame_box(
    frame: Frame, points_m: np.ndarray, floor: np.ndarray, normal: np.ndarray, offset: float, margin_m: float, wall_margin_m: float
) -> tuple[np.ndarray, np.ndarray]:
    # The floor's outline in its own plane: the smallest rectangle around its points, whose sides run along
    # the walls that bound it.
    across = np.array([1.0, 0.0, 0.0]) - normal[0] * normal
    across /= np.linalg.norm(across)
    plane_axes = np.stack([across, np.cross(normal, across)])
    origin = floor.mean(axis=0)
    corners = cv2.boxPoints(cv2.minAreaRect(((floor - origin) @ plane_axes.T).astype(np.float32))).astype(np.float64)
    side = corners[1] - corners[0]
    x_plane = side / np.linalg.norm(side)
    half = np.array([np.linalg.norm(side), np.linalg.norm(corners[2] - corners[1])]) / 2
    y_plane = np.array([-x_plane[1], x_plane[0]])
    camera_from_bin = np.eye(4)
    camera_from_bin[:3, 0], camera_from_bin[:3, 1], camera_from_bin[:3, 2] = x_plane @ plane_axes, y_plane @ plane_axes, normal
    centre = origin + corners.mean(axis=0) @ plane_axes
    camera_from_bin[:3, 3] = centre - (normal @ centre + offset) * normal  # on the floor
    in_bin = (points_m - camera_from_bin[:3, 3]) @ camera_from_bin[:3, :3]
    low, high = -half.copy(), half.copy()
    # The sides beyond which the camera stands hide a strip of floor behind their wall: the wall stands
    # nearer the camera than the floor's seen edge by the fraction rim height / camera height of the way.
    camera = -camera_from_bin[:3, :3].T @ camera_from_bin[:3, 3]
    rim_m = _rim_height(in_bin, half, camera)
    for axis in range(2):
        if camera[axis] > half[axis]:
            high[axis] += (camera[axis] - half[axis]) * rim_m / camera[2]
        elif camera[axis] < -half[axis]:
            low[axis] += (camera[axis] + half[axis]) * rim_m / camera[2]
    low, high = low + wall_margin_m, high - wall_margin_m
    inside = np.all((in_bin[:, :2] >= low) & (in_bin[:, :2] <= high), axis=1) & (in_bin[:, 2] > margin_m)
    if not np.any(inside):
        raise ValueError(f"frame at stamp {frame.stamp_ns}: nothing stands on the floor inside its seen outline")
    # Room above for a pile up to twice as high as this frame's.
    top_m = 2 * float(in_bin[inside, 2].max())
    return np.array([[low[0], low[1], margin_m], [high[0], high[1], top_m]]), camera_from_bin


def _rim_height(in_bin: np.ndarray, half: np.ndarray, camera: np.ndarray) -> float:
    """The walls' height over the floor, from the inner faces the camera sees: those of the sides it stands
    inside of (0 where it sees none)."""
    heights = []
    for axis in range(2):
        other = 1 - axis
        along = np.abs(in_bin[:, other]) <= half[other]
        for sign in (-1.0, 1.0):
            if sign * camera[axis] > half[axis]:
                continue  # the camera sees this wall's outside
            beyond = sign * in_bin[:, axis] - half[axis]
            heights.append(in_bin[along & (beyond > 0) & (beyond < WALL_BAND_M), 2])
    heights = np.concatenate(heights)
    return float(np.quantile(heights, 0.99)) if len(heights) else 0.0


def _refined_floor(
    points_m: np.ndarray, candidates: np.ndarray, valid: np.ndarray, inliers: np.ndarray, threshold_m: float, rounds: int = 3
) -> tuple[np.ndarray, float, np.ndarray]:
    """The floor's plane fitted again to its whole region, whose inliers it then takes again: the first fit saw
    only the deepest points, a strip of the floor for a tilted camera, and tilts with the noise there."""
    for _ in range(rounds):
        floor = points_m[inliers]
        centroid = floor.mean(axis=0)
        normal = np.linalg.svd(floor - centroid, full_matrices=False)[2][-1]
        offset = -float(normal @ centroid)
        region = _enclosed_region(candidates & (np.abs(points_m @ normal + offset) < threshold_m), valid)
        if region is None:
            break
        inliers = region
    return normal, offset, inliers


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
