"""Depth filters for frames larger than the perception needs: the bin's region cut out, decimation down,
labels back up.

A real camera's 848 x 480 or 1280 x 720 frame sees far more than its bin: the region of the image that
can see the workspace box is cut out first (:func:`crop_frame`), so that the work per frame follows the
bin's size in pixels and not the camera's. Where that region still holds several times the pixels that
the seeds and crops need to tell the parts apart, it is reduced by a whole factor, as the depth cameras'
own pipelines do (librealsense's decimation filter): each block to the median of its valid depths, so that
an invalid pixel never lowers a block and a single flying pixel never sets it; the labels found on the
small frame go back to every full-resolution pixel of its block.
"""

from __future__ import annotations

import math
import warnings

import cv2
import numpy as np

from .frame import Frame


def decimation_factor(width_px: int, max_width_px: int) -> int:
    """The smallest whole factor that brings ``width_px`` to ``max_width_px`` or below; 1 for a frame that fits."""
    if max_width_px < 1:
        raise ValueError(f"max_width_px must be at least 1, got {max_width_px}")
    return max(1, math.ceil(width_px / max_width_px))


def decimated_intrinsics(K: np.ndarray, factor: int) -> np.ndarray:
    """K of the image whose pixel (u', v') is the block of pixels f u' .. f u' + f - 1 (and likewise in v)."""
    small = np.array(K, dtype=np.float64)
    small[:2, :2] /= factor
    # A block's centre, f u' + (f - 1) / 2, in the pixel-centre convention.
    small[:2, 2] = (small[:2, 2] - (factor - 1) / 2) / factor
    return small


def decimate_depth(depth_m: np.ndarray, factor: int) -> np.ndarray:
    """(H // f, W // f): each f x f block's median over its valid (finite) depths, NaN where it has none.

    The last H % f rows and W % f columns, less than a block, are left out.
    """
    if factor == 1:
        return depth_m
    height, width = (depth_m.shape[0] // factor) * factor, (depth_m.shape[1] // factor) * factor
    blocks = depth_m[:height, :width].reshape(height // factor, factor, width // factor, factor).transpose(0, 2, 1, 3)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="All-NaN slice encountered")
        return np.nanmedian(blocks.reshape(*blocks.shape[:2], factor * factor), axis=2).astype(np.float32)


def crop_frame(frame: Frame, rows: slice, cols: slice) -> Frame:
    """The frame's window ``rows`` x ``cols`` (slices with a start and a stop), its ground truth with it, and its
    intrinsics to match: the principal point moves with the window's corner."""
    if (rows.start, cols.start) == (0, 0) and (rows.stop, cols.stop) == frame.depth_m.shape:
        return frame
    K = np.array(frame.K, dtype=np.float64)
    K[0, 2] -= cols.start
    K[1, 2] -= rows.start

    def cut(image: np.ndarray | None) -> np.ndarray | None:
        return None if image is None else image[rows, cols]

    return Frame(cut(frame.depth_m), K, frame.stamp_ns, frame.frame_id, cut(frame.rgb), cut(frame.gt_labels), frame.gt_poses)


def decimate_frame(frame: Frame, factor: int) -> Frame:
    """``frame`` with its depth decimated by ``factor`` and its intrinsics to match; the ground truth, if any,
    at the block's centre pixel, so that the small frame is a frame like any other."""
    if factor == 1:
        return frame
    centre = (factor - 1) // 2
    height, width = (frame.depth_m.shape[0] // factor) * factor, (frame.depth_m.shape[1] // factor) * factor

    def picked(image: np.ndarray | None) -> np.ndarray | None:
        return None if image is None else image[centre:height:factor, centre:width:factor].copy()

    return Frame(
        decimate_depth(frame.depth_m, factor), decimated_intrinsics(frame.K, factor), frame.stamp_ns, frame.frame_id,
        picked(frame.rgb), picked(frame.gt_labels), frame.gt_poses,
    )


def upsampled_labels(labels: np.ndarray, factor: int, shape: tuple[int, int], keep: np.ndarray) -> np.ndarray:
    """A small frame's (h, w) label image at the full ``shape``: each pixel takes its block's label where ``keep``
    (the full frame's own valid workspace pixels), 0 elsewhere and in the rows and columns left out."""
    if factor == 1:
        return np.where(keep, labels, 0).astype(labels.dtype)
    full = np.zeros(shape, dtype=labels.dtype)
    grown = cv2.resize(labels, (labels.shape[1] * factor, labels.shape[0] * factor), interpolation=cv2.INTER_NEAREST)
    full[: grown.shape[0], : grown.shape[1]] = grown
    full[~keep] = 0
    return full
