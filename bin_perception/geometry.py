"""Geometry on numpy arrays: depth to points, workspace crops, planes, rigid transforms.

Points are (n, 3) float arrays in the camera's optical frame, in metres.
Quaternions are (x, y, z, w), the order of geometry_msgs/Quaternion.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

WORKSPACE_DOC = "xmin,ymin,zmin,xmax,ymax,zmax in the camera frame (or the bin's, with a bin pose), metres"
BIN_POSE_DOC = "x,y,z,qx,qy,qz,qw: the bin's frame (z up from its floor) in the camera frame, metres"


def backproject(depth_m: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Every pixel's 3D point, as an (H, W, 3) array; NaN where the depth is invalid.

    Depth is z along the optical axis (REP 118); zero and non-finite depths are invalid.
    """
    depth_m = np.asarray(depth_m, dtype=np.float32)
    if depth_m.ndim != 2:
        raise ValueError(f"depth image must be 2-D, got shape {depth_m.shape}")
    h, w = depth_m.shape
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    z = np.where(np.isfinite(depth_m) & (depth_m > 0), depth_m, np.nan).astype(np.float32)
    u = (np.arange(w, dtype=np.float32) - np.float32(cx)) / np.float32(fx)
    v = (np.arange(h, dtype=np.float32) - np.float32(cy)) / np.float32(fy)
    return np.stack([z * u[None, :], z * v[:, None], z], axis=-1)


def _parse_numbers(text: str | list | tuple | np.ndarray, count: int, name: str, doc: str) -> np.ndarray:
    """``count`` finite numbers from comma-separated text or a sequence; ValueError naming ``name`` otherwise."""
    values = text.split(",") if isinstance(text, str) else list(np.ravel(text))
    words = {6: "six", 7: "seven"}[count]
    try:
        numbers = np.array([float(v) for v in values], dtype=np.float64)
    except ValueError as error:
        raise ValueError(f"{name} {text!r}: {error}; expected {words} numbers, {doc}") from None
    if numbers.shape != (count,) or not np.all(np.isfinite(numbers)):
        raise ValueError(f"{name} {text!r}: expected {words} finite numbers, {doc}")
    return numbers


def parse_workspace(text: str | list | tuple | np.ndarray) -> np.ndarray:
    """A workspace box as a (2, 3) array of its min and max corners.

    Accepts ``"xmin,ymin,zmin,xmax,ymax,zmax"`` or six numbers.
    """
    box = _parse_numbers(text, 6, "workspace", WORKSPACE_DOC).reshape(2, 3)
    if np.any(box[1] <= box[0]):
        raise ValueError(f"workspace {text!r}: empty box, every max must exceed its min ({WORKSPACE_DOC})")
    return box


def parse_bin_pose(text: str | list | tuple | np.ndarray) -> np.ndarray:
    """The bin's frame in the camera frame as a (4, 4) transform ``camera_from_bin``.

    Accepts ``"x,y,z,qx,qy,qz,qw"`` or seven numbers, the order of geometry_msgs/Pose.
    """
    pose = _parse_numbers(text, 7, "bin pose", BIN_POSE_DOC)
    norm = np.linalg.norm(pose[3:])
    if abs(norm - 1.0) > 1e-3:
        raise ValueError(f"bin pose {text!r}: its quaternion has norm {norm:.4f}, not 1 ({BIN_POSE_DOC})")
    return pose_to_matrix(pose[:3], pose[3:] / norm)


def bin_pose_values(camera_from_bin: np.ndarray) -> np.ndarray:
    """``camera_from_bin`` as the seven numbers :func:`parse_bin_pose` reads: x, y, z, qx, qy, qz, qw."""
    return np.concatenate([camera_from_bin[:3, 3], matrix_to_quaternion(camera_from_bin[:3, :3])])


def format_bin_pose(camera_from_bin: np.ndarray) -> str:
    """``camera_from_bin`` as the text :func:`parse_bin_pose` reads."""
    return ",".join(f"{v:.6f}" for v in bin_pose_values(camera_from_bin))


def in_workspace(points: np.ndarray, workspace: np.ndarray, camera_from_bin: np.ndarray | None = None) -> np.ndarray:
    """A boolean mask of the points inside the (2, 3) workspace box; NaN points are outside.

    With ``camera_from_bin``, the box is in the bin's frame: a camera that looks at its bin at an angle
    still crops the bin's inside, which no box of the camera frame holds without a wall or the floor.
    """
    if camera_from_bin is not None:
        points = (points - camera_from_bin[:3, 3]) @ camera_from_bin[:3, :3]
    with np.errstate(invalid="ignore"):
        return np.all((points >= workspace[0]) & (points <= workspace[1]), axis=-1)


def floor_side_extended(workspace: np.ndarray, band_m: float, camera_from_bin: np.ndarray | None = None) -> np.ndarray:
    """The (2, 3) workspace box with its z face away from the camera (the bin's floor side) moved ``band_m``
    farther away; in the frame of the box (the bin's, with ``camera_from_bin``)."""
    box = np.array(workspace, dtype=np.float64).reshape(2, 3)
    camera_z = 0.0 if camera_from_bin is None else float(-(camera_from_bin[:3, :3].T @ camera_from_bin[:3, 3])[2])
    if camera_z >= box[:, 2].mean():
        box[0, 2] -= band_m
    else:
        box[1, 2] += band_m
    return box


def floor_plane(workspace: np.ndarray, camera_from_bin: np.ndarray | None = None) -> np.ndarray:
    """The workspace's floor face (its z face away from the camera) as a plane (4,) in the camera frame: a unit
    normal n that points away from the floor, into the box, and an offset d; n @ p + d is a point's height above
    the face, negative beyond it."""
    box = np.array(workspace, dtype=np.float64).reshape(2, 3)
    rotation = np.eye(3) if camera_from_bin is None else camera_from_bin[:3, :3]
    origin = np.zeros(3) if camera_from_bin is None else camera_from_bin[:3, 3]
    camera_z = float(-(rotation.T @ origin)[2])
    # The camera above the box's middle in z: the floor is its low face and up is +z; else its high face, up -z.
    sign, face_z = (1.0, box[0, 2]) if camera_z >= box[:, 2].mean() else (-1.0, box[1, 2])
    normal = sign * rotation[:, 2]
    return np.append(normal, -normal @ origin - sign * face_z)


def workspace_image_region(
    K: np.ndarray, shape: tuple[int, int], workspace: np.ndarray, camera_from_bin: np.ndarray | None = None
) -> tuple[slice, slice]:
    """The rows and columns of an image of ``shape`` that can see a point of the workspace box: the bounding
    rectangle of its corners' projections (a box's image is the hull of theirs), clipped to the image. The
    whole image where a corner lies behind the camera."""
    height, width = shape
    corners = np.array(np.meshgrid(*np.asarray(workspace, dtype=np.float64).T, indexing="ij")).reshape(3, -1).T
    if camera_from_bin is not None:
        corners = transform_points(camera_from_bin, corners)
    if np.any(corners[:, 2] <= 0):
        return slice(0, height), slice(0, width)
    u = K[0, 0] * corners[:, 0] / corners[:, 2] + K[0, 2]
    v = K[1, 1] * corners[:, 1] / corners[:, 2] + K[1, 2]
    # Pixel centres are whole numbers: a pixel within half a pixel of the hull may see the box.
    left, right = int(np.clip(np.floor(u.min() + 0.5), 0, width)), int(np.clip(np.ceil(u.max() + 0.5), 0, width))
    top, bottom = int(np.clip(np.floor(v.min() + 0.5), 0, height)), int(np.clip(np.ceil(v.max() + 0.5), 0, height))
    return slice(top, bottom), slice(left, right)


def fit_plane_ransac(
    points: np.ndarray,
    threshold_m: float,
    iterations: int = 200,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The dominant plane of a cloud: ``(normal, d)`` with ``normal . p + d = 0``, and its inlier mask.

    Plain RANSAC on three-point samples, refined by least squares on the inliers.
    """
    points = np.asarray(points, dtype=np.float64)
    if len(points) < 3:
        raise ValueError(f"a plane needs at least 3 points, got {len(points)}")
    rng = np.random.default_rng(0) if rng is None else rng
    samples = points[rng.integers(0, len(points), size=(iterations, 3))]
    normals = np.cross(samples[:, 1] - samples[:, 0], samples[:, 2] - samples[:, 0])
    norms = np.linalg.norm(normals, axis=1)
    valid = norms > 1e-12
    if not np.any(valid):
        raise ValueError("no plane: every sampled triple of points is collinear")
    normals = normals[valid] / norms[valid, None]
    offsets = -np.einsum("ij,ij->i", normals, samples[valid, 0])
    best_count, best_inliers = -1, None
    # Chunked to bound memory at iterations x n for large clouds.
    for start in range(0, len(normals), 32):
        distances = np.abs(points @ normals[start : start + 32].T + offsets[start : start + 32])
        counts = (distances < threshold_m).sum(axis=0)
        k = int(counts.argmax())
        if counts[k] > best_count:
            best_count, best_inliers = counts[k], distances[:, k] < threshold_m
    inliers = points[best_inliers]
    centroid = inliers.mean(axis=0)
    normal = np.linalg.svd(inliers - centroid, full_matrices=False)[2][-1]
    d = -normal @ centroid
    return np.append(normal, d), np.abs(points @ normal + d) < threshold_m


def quaternion_to_matrix(q_xyzw: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) from quaternions (..., 4) in (x, y, z, w) order."""
    q = np.asarray(q_xyzw, dtype=np.float64)
    return Rotation.from_quat(q.reshape(-1, 4)).as_matrix().reshape(q.shape[:-1] + (3, 3))


def matrix_to_quaternion(R: np.ndarray) -> np.ndarray:
    """Unit quaternions (..., 4) in (x, y, z, w) order, w >= 0, from rotation matrices (..., 3, 3)."""
    R = np.asarray(R, dtype=np.float64)
    q = Rotation.from_matrix(R.reshape(-1, 3, 3)).as_quat(canonical=True)
    return q.reshape(R.shape[:-2] + (4,))


def pose_to_matrix(position_m: np.ndarray, q_xyzw: np.ndarray) -> np.ndarray:
    """Homogeneous transforms (..., 4, 4) from positions (..., 3) and quaternions (..., 4)."""
    position_m = np.asarray(position_m, dtype=np.float64)
    T = np.zeros(position_m.shape[:-1] + (4, 4))
    T[..., :3, :3] = quaternion_to_matrix(q_xyzw)
    T[..., :3, 3] = position_m
    T[..., 3, 3] = 1.0
    return T


def project_to_pixels(points_m: np.ndarray, K: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The points (n, 3), camera frame, that fall on an image of ``shape`` (H, W): their indices into
    ``points_m``, and the rows and columns of their (nearest) pixels. Points behind the camera fall on none."""
    in_front = np.flatnonzero(points_m[:, 2] > 0)
    z = points_m[in_front, 2]
    u = np.round(K[0, 0] * points_m[in_front, 0] / z + K[0, 2]).astype(np.int64)
    v = np.round(K[1, 1] * points_m[in_front, 1] / z + K[1, 2]).astype(np.int64)
    inside = (u >= 0) & (u < shape[1]) & (v >= 0) & (v < shape[0])
    return in_front[inside], v[inside], u[inside]


def transform_points(T: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a homogeneous transform (4, 4) to points (n, 3)."""
    return points @ T[:3, :3].T + T[:3, 3]
