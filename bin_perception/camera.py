"""Pinhole camera models: intrinsics, and the OpenGL matrices a renderer needs.

Image conventions follow OpenCV and ROS (REP 103/105): the optical frame has x
right, y down and z forward, in metres; pixel (u, v) = (0, 0) is the centre of
the top-left pixel.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class PinholeCamera:
    """Intrinsics of an undistorted pinhole camera, in pixels."""

    width_px: int
    height_px: int
    fx_px: float
    fy_px: float
    cx_px: float
    cy_px: float

    def __post_init__(self) -> None:
        if self.width_px <= 0 or self.height_px <= 0:
            raise ValueError(f"camera size {self.width_px}x{self.height_px} px must be positive")
        if self.fx_px <= 0 or self.fy_px <= 0:
            raise ValueError(f"camera focal lengths fx={self.fx_px}, fy={self.fy_px} px must be positive")

    @property
    def K(self) -> np.ndarray:
        """The 3x3 intrinsic matrix."""
        return np.array(
            [[self.fx_px, 0.0, self.cx_px], [0.0, self.fy_px, self.cy_px], [0.0, 0.0, 1.0]]
        )

    @classmethod
    def from_K(cls, K: np.ndarray, width_px: int, height_px: int) -> PinholeCamera:
        K = np.asarray(K, dtype=np.float64).reshape(3, 3)
        return cls(int(width_px), int(height_px), float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]))


def opengl_projection(camera: PinholeCamera, near_m: float, far_m: float) -> np.ndarray:
    """The OpenGL projection matrix (4x4, row-major) that images like ``camera``.

    OpenGL's eye frame has y up and z backward, its window origin is the
    bottom-left corner, and pixel centres sit at half-integers; the rows below
    fold those three differences into the pinhole model.
    """
    w, h = camera.width_px, camera.height_px
    return np.array(
        [
            [2 * camera.fx_px / w, 0.0, 1.0 - 2 * (camera.cx_px + 0.5) / w, 0.0],
            [0.0, 2 * camera.fy_px / h, 2 * (camera.cy_px + 0.5) / h - 1.0, 0.0],
            [0.0, 0.0, -(far_m + near_m) / (far_m - near_m), -2 * far_m * near_m / (far_m - near_m)],
            [0.0, 0.0, -1.0, 0.0],
        ]
    )


# The optical frame (x right, y down, z forward) seen from OpenGL's eye frame.
OPTICAL_TO_OPENGL = np.diag([1.0, -1.0, -1.0, 1.0])


def opengl_view(world_from_camera: np.ndarray) -> np.ndarray:
    """The OpenGL view matrix (4x4, row-major) of a camera whose optical frame has pose ``world_from_camera``."""
    return OPTICAL_TO_OPENGL @ np.linalg.inv(world_from_camera)


def depth_from_zbuffer(zbuffer: np.ndarray, near_m: float, far_m: float) -> np.ndarray:
    """Metric depth (z along the optical axis) from an OpenGL depth buffer in [0, 1].

    Pixels at the far plane saw nothing; they become NaN, as REP 118 asks of
    invalid float depth.
    """
    zbuffer = np.asarray(zbuffer, dtype=np.float64)
    depth_m = near_m * far_m / (far_m - (far_m - near_m) * zbuffer)
    depth_m[zbuffer >= 1.0] = np.nan
    return depth_m.astype(np.float32)


# The distortion models of sensor_msgs/CameraInfo that OpenCV's pinhole model takes as they are.
UNDISTORTABLE_MODELS = ("plumb_bob", "rational_polynomial")


def undistort_depth(depth_m: np.ndarray, K: np.ndarray, distortion: np.ndarray) -> np.ndarray:
    """A distorted camera's depth image as the pinhole camera ``K`` would see it, for back-projection by ``K``.

    ``distortion`` holds OpenCV's coefficients (k1, k2, p1, p2[, k3[, k4, k5, k6]]), as CameraInfo's ``d``
    does for ``plumb_bob`` and ``rational_polynomial``. Each output pixel takes its nearest source pixel,
    as image_proc rectifies depth: interpolating depth would invent points between a part and what lies
    behind it. Pixels that map outside the image are NaN.
    """
    height, width = depth_m.shape
    map_u, map_v = _undistortion_maps(np.asarray(K, dtype=np.float64).tobytes(), np.asarray(distortion, dtype=np.float64).tobytes(), width, height)
    return cv2.remap(depth_m.astype(np.float32), map_u, map_v, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=float("nan"))


@functools.lru_cache(maxsize=4)
def _undistortion_maps(K_bytes: bytes, distortion_bytes: bytes, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    # A camera's maps are the same for every frame: built once, keyed by the calibration and the size.
    K = np.frombuffer(K_bytes, dtype=np.float64).reshape(3, 3)
    distortion = np.frombuffer(distortion_bytes, dtype=np.float64)
    return cv2.initUndistortRectifyMap(K, distortion, None, K, (width, height), cv2.CV_32FC1)
