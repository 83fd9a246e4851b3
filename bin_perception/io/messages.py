"""Conversion between numpy arrays and ROS 2 messages, for any message implementation.

Decoders read only the standard field names, so they take rclpy's messages and
``rosbags``' deserialized dataclasses alike. Encoders build ``rosbags`` messages
from the Kilted type store, the ones our bag writer serializes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from rosbags.typesys import Stores, get_typestore

from ..camera import UNDISTORTABLE_MODELS, undistort_depth
from ..frame import Frame
from ..geometry import matrix_to_quaternion, pose_to_matrix
from .errors import FrameError

TYPESTORE = get_typestore(Stores.ROS2_KILTED)
_T = TYPESTORE.types

DEPTH_ENCODINGS = ("32FC1", "16UC1", "mono16")
RGB_ENCODINGS = ("rgb8", "bgr8", "mono8")


def stamp_ns(header: Any) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def _header(stamp: int, frame_id: str) -> Any:
    sec, nanosec = divmod(int(stamp), 1_000_000_000)
    return _T["std_msgs/msg/Header"](stamp=_T["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec), frame_id=frame_id)


def _pixels(msg: Any, dtype: np.dtype, channels: int, source: str) -> np.ndarray:
    """The image's pixels as an (H, W[, C]) array, honouring its row step and byte order."""
    dtype = np.dtype(dtype).newbyteorder(">" if msg.is_bigendian else "<")
    row_bytes = msg.width * channels * dtype.itemsize
    data = np.frombuffer(bytes(msg.data) if not isinstance(msg.data, np.ndarray) else msg.data, dtype=np.uint8)
    if msg.height == 0 or msg.width == 0:
        raise FrameError(f"{source}: empty image ({msg.width}x{msg.height})")
    if msg.step < row_bytes or len(data) < msg.step * msg.height:
        raise FrameError(
            f"{source}: {msg.encoding} image of {msg.width}x{msg.height} needs {row_bytes} bytes a row "
            f"and {msg.step * msg.height} in all; it has step {msg.step} and {len(data)} bytes"
        )
    rows = data[: msg.step * msg.height].reshape(msg.height, msg.step)[:, :row_bytes]
    pixels = np.ascontiguousarray(rows).view(dtype).astype(dtype.newbyteorder("="))
    return pixels.reshape(msg.height, msg.width, channels) if channels > 1 else pixels


def depth_from_image(msg: Any, source: str = "depth image") -> np.ndarray:
    """Metres, float32, NaN where invalid, from a ``32FC1`` (metres) or ``16UC1`` (millimetres) image.

    Per REP 118, zero millimetres and non-finite or non-positive metres are invalid.
    """
    if msg.encoding == "32FC1":
        depth_m = _pixels(msg, np.float32, 1, source)
        depth_m[~(depth_m > 0)] = np.nan  # also catches NaN
        depth_m[np.isinf(depth_m)] = np.nan
        return depth_m
    if msg.encoding in ("16UC1", "mono16"):
        depth_mm = _pixels(msg, np.uint16, 1, source)
        depth_m = depth_mm.astype(np.float32) / np.float32(1000.0)
        depth_m[depth_mm == 0] = np.nan
        return depth_m
    raise FrameError(f"{source}: unknown depth encoding {msg.encoding!r}; expected one of {', '.join(DEPTH_ENCODINGS)}", "encoding")


def depth_mm_from_m(depth_m: np.ndarray) -> np.ndarray:
    """``16UC1`` millimetres from metres, as a depth camera's driver publishes them: rounded to the
    millimetre, 0 where invalid (non-finite or not positive) and beyond 65.535 m."""
    depth_mm = np.rint(np.asarray(depth_m, dtype=np.float64) * 1000.0)
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(depth_mm) & (depth_mm > 0) & (depth_mm <= np.iinfo(np.uint16).max)
    return np.where(valid, depth_mm, 0).astype(np.uint16)


def labels_from_image(msg: Any, source: str = "label image") -> np.ndarray:
    if msg.encoding not in ("mono16", "16UC1"):
        raise FrameError(f"{source}: label images must be mono16, got {msg.encoding!r}", "encoding")
    return _pixels(msg, np.uint16, 1, source)


def rgb_from_image(msg: Any, source: str = "colour image") -> np.ndarray:
    """An (H, W, 3) uint8 RGB array from an ``rgb8``, ``bgr8`` or ``mono8`` image."""
    if msg.encoding == "rgb8":
        return _pixels(msg, np.uint8, 3, source)
    if msg.encoding == "bgr8":
        return _pixels(msg, np.uint8, 3, source)[..., ::-1].copy()
    if msg.encoding == "mono8":
        return np.repeat(_pixels(msg, np.uint8, 1, source)[..., None], 3, axis=2)
    raise FrameError(f"{source}: unknown colour encoding {msg.encoding!r}; expected one of {', '.join(RGB_ENCODINGS)}", "encoding")


def intrinsics_from_camera_info(msg: Any, source: str = "camera info") -> np.ndarray:
    """The 3x3 K of a CameraInfo, checked for usable focal lengths."""
    K = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
    if not (K[0, 0] > 0 and K[1, 1] > 0):
        raise FrameError(f"{source}: focal length fx={K[0, 0]:g}, fy={K[1, 1]:g}; an uncalibrated camera cannot be back-projected", "camera_info")
    return K


def pinhole_depth(depth_m: np.ndarray, info: Any, K: np.ndarray, source: str) -> np.ndarray:
    """The depth as the pinhole ``K`` sees it: undistorted where the CameraInfo has distortion, never silently
    back-projected through a model we do not apply."""
    distortion = np.asarray(info.d, dtype=np.float64)
    if not distortion.any():
        return depth_m
    if info.distortion_model not in UNDISTORTABLE_MODELS:
        raise FrameError(
            f"{source}: distortion model {info.distortion_model!r} with non-zero coefficients is not undistorted here "
            f"(only {', '.join(UNDISTORTABLE_MODELS)}); rectify the depth first, e.g. with image_proc",
            "camera_info",
        )
    return undistort_depth(depth_m, K, distortion)


def check_size(depth_m: np.ndarray, info: Any, source: str) -> None:
    h, w = depth_m.shape
    if (info.height, info.width) != (h, w):
        raise FrameError(f"{source}: depth image is {w}x{h} but its CameraInfo says {info.width}x{info.height}", "size_mismatch")


def check_has_depth(depth_m: np.ndarray, source: str) -> None:
    """A frame with no valid depth (all NaN, all zero) is a camera fault, not an empty bin."""
    if not np.isfinite(depth_m).any():
        raise FrameError(f"{source}: no valid depth in any of its {depth_m.size} pixels (all NaN, zero or infinite)", "no_depth")


def frame_from_messages(depth_msg: Any, info_msg: Any, source: str = "depth image") -> Frame:
    """A checked :class:`Frame` from a depth Image and the CameraInfo it was taken with."""
    depth_m = depth_from_image(depth_msg, source)
    check_size(depth_m, info_msg, source)
    K = intrinsics_from_camera_info(info_msg, f"{source}'s camera info")
    depth_m = pinhole_depth(depth_m, info_msg, K, f"{source}'s camera info")
    check_has_depth(depth_m, source)
    return Frame(depth_m, K, stamp_ns(depth_msg.header), depth_msg.header.frame_id)


def poses_from_pose_array(msg: Any) -> np.ndarray:
    """(N, 4, 4) transforms from a PoseArray."""
    return matrices_from_poses(msg.poses)


def matrices_from_poses(poses: Sequence[Any]) -> np.ndarray:
    """(N, 4, 4) transforms from geometry_msgs Poses."""
    if not poses:
        return np.zeros((0, 4, 4))
    position = np.array([[p.position.x, p.position.y, p.position.z] for p in poses])
    quaternion = np.array([[p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w] for p in poses])
    return pose_to_matrix(position, quaternion)


def image_msg(stamp: int, frame_id: str, pixels: np.ndarray, encoding: str) -> Any:
    pixels = np.ascontiguousarray(pixels)
    h, w = pixels.shape[:2]
    return _T["sensor_msgs/msg/Image"](
        header=_header(stamp, frame_id),
        height=h,
        width=w,
        encoding=encoding,
        is_bigendian=0,
        step=pixels.nbytes // h,
        data=pixels.view(np.uint8).reshape(-1),
    )


def camera_info_msg(stamp: int, frame_id: str, K: np.ndarray, width_px: int, height_px: int) -> Any:
    K = np.asarray(K, dtype=np.float64)
    P = np.zeros((3, 4))
    P[:, :3] = K
    return _T["sensor_msgs/msg/CameraInfo"](
        header=_header(stamp, frame_id),
        height=height_px,
        width=width_px,
        distortion_model="plumb_bob",
        d=np.zeros(5),
        k=K.reshape(-1),
        r=np.eye(3).reshape(-1),
        p=P.reshape(-1),
        binning_x=0,
        binning_y=0,
        roi=_T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False),
    )


def pose_array_msg(stamp: int, frame_id: str, poses: np.ndarray) -> Any:
    Point, Quaternion, Pose = _T["geometry_msgs/msg/Point"], _T["geometry_msgs/msg/Quaternion"], _T["geometry_msgs/msg/Pose"]
    quaternions = matrix_to_quaternion(poses[:, :3, :3]) if len(poses) else np.zeros((0, 4))
    return _T["geometry_msgs/msg/PoseArray"](
        header=_header(stamp, frame_id),
        poses=[
            Pose(position=Point(x=float(t[0]), y=float(t[1]), z=float(t[2])), orientation=Quaternion(x=q[0], y=q[1], z=q[2], w=q[3]))
            for t, q in zip(poses[:, :3, 3], quaternions.tolist())
        ],
    )
