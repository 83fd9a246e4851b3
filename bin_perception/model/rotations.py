"""Rotation representations for regression, in torch: quaternion, ortho6D and axis-angle.

A network regresses unconstrained numbers; each representation maps them onto
SO(3). Quaternions are (x, y, z, w), as in geometry_msgs and
:mod:`bin_perception.geometry`. Ortho6D is the first two columns of the matrix,
made orthonormal by Gram-Schmidt (Zhou et al., CVPR 2019): continuous, unlike
the other two.
"""

from __future__ import annotations

import torch

PARAMS_PER_ROTATION = {"quaternion": 4, "ortho6d": 6, "axis_angle": 3}


def quaternion_to_matrix(q_xyzw: torch.Tensor) -> torch.Tensor:
    """(..., 4) quaternions, not necessarily unit, to (..., 3, 3) rotation matrices."""
    q = q_xyzw / q_xyzw.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    x, y, z, w = q.unbind(-1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
            2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
            2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    ).reshape(q.shape[:-1] + (3, 3))


def about_optical_axis(angles_rad: torch.Tensor) -> torch.Tensor:
    """(...,) angles to (..., 3, 3) rotations about the camera's z axis; +angle turns image u towards v."""
    cos, sin = angles_rad.cos(), angles_rad.sin()
    zero, one = torch.zeros_like(angles_rad), torch.ones_like(angles_rad)
    return torch.stack([cos, -sin, zero, sin, cos, zero, zero, zero, one], dim=-1).reshape(angles_rad.shape + (3, 3))


def ortho6d_to_matrix(x: torch.Tensor) -> torch.Tensor:
    """(..., 6) numbers, two 3-vectors, to (..., 3, 3) rotations whose first two columns span them."""
    a1, a2 = x[..., :3], x[..., 3:]
    b1 = torch.nn.functional.normalize(a1, dim=-1)
    b2 = torch.nn.functional.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1)
    b3 = torch.linalg.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], dim=-1)


def axis_angle_to_matrix(v: torch.Tensor) -> torch.Tensor:
    """(..., 3) rotation vectors (axis times angle in radians) to (..., 3, 3) matrices (Rodrigues)."""
    angle = v.norm(dim=-1, keepdim=True)
    # sin(a)/a and (1 - cos(a))/a^2 by their Taylor series near zero, where the
    # closed forms divide zero by zero.
    small = angle < 1e-4
    a = torch.where(small, torch.ones_like(angle), angle)
    sin_a = torch.where(small, 1 - angle**2 / 6, torch.sin(a) / a)
    cos_a = torch.where(small, 0.5 - angle**2 / 24, (1 - torch.cos(a)) / a**2)
    x, y, z = v.unbind(-1)
    zero = torch.zeros_like(x)
    K = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).reshape(v.shape[:-1] + (3, 3))
    eye = torch.eye(3, dtype=v.dtype, device=v.device).expand_as(K)
    return eye + sin_a[..., None] * K + cos_a[..., None] * (K @ K)


def params_to_matrix(params: torch.Tensor, representation: str) -> torch.Tensor:
    """(..., d) regressed numbers to (..., 3, 3) rotations, d = PARAMS_PER_ROTATION[representation]."""
    if representation == "quaternion":
        return quaternion_to_matrix(params)
    if representation == "ortho6d":
        return ortho6d_to_matrix(params)
    if representation == "axis_angle":
        return axis_angle_to_matrix(params)
    raise ValueError(f"rotation representation {representation!r}: expected one of {', '.join(PARAMS_PER_ROTATION)}")


def matrix_to_params(R: torch.Tensor, representation: str) -> torch.Tensor:
    """The inverse of :func:`params_to_matrix`: (..., 3, 3) rotations to (..., d) numbers."""
    if representation == "ortho6d":
        return torch.cat([R[..., :, 0], R[..., :, 1]], dim=-1)
    q = _matrix_to_quaternion(R)
    if representation == "quaternion":
        return q
    if representation == "axis_angle":
        # w >= 0, so the angle lies in [0, pi].
        sin_half = q[..., :3].norm(dim=-1, keepdim=True)
        angle = 2 * torch.atan2(sin_half, q[..., 3:])
        return q[..., :3] * torch.where(sin_half > 1e-8, angle / sin_half.clamp_min(1e-12), torch.full_like(angle, 2.0))
    raise ValueError(f"rotation representation {representation!r}: expected one of {', '.join(PARAMS_PER_ROTATION)}")


def _matrix_to_quaternion(R: torch.Tensor) -> torch.Tensor:
    # Each of 4w^2, 4x^2, 4y^2, 4z^2 is a sum of diagonal entries; the largest
    # gives the best-conditioned division for the other three.
    m = R.reshape(-1, 3, 3)
    r00, r11, r22 = m[:, 0, 0], m[:, 1, 1], m[:, 2, 2]
    four_sq = torch.stack([1 + r00 - r11 - r22, 1 - r00 + r11 - r22, 1 - r00 - r11 + r22, 1 + r00 + r11 + r22], -1)
    candidates = torch.stack(
        [
            torch.stack([four_sq[:, 0], m[:, 0, 1] + m[:, 1, 0], m[:, 0, 2] + m[:, 2, 0], m[:, 2, 1] - m[:, 1, 2]], -1),
            torch.stack([m[:, 0, 1] + m[:, 1, 0], four_sq[:, 1], m[:, 1, 2] + m[:, 2, 1], m[:, 0, 2] - m[:, 2, 0]], -1),
            torch.stack([m[:, 0, 2] + m[:, 2, 0], m[:, 1, 2] + m[:, 2, 1], four_sq[:, 2], m[:, 1, 0] - m[:, 0, 1]], -1),
            torch.stack([m[:, 2, 1] - m[:, 1, 2], m[:, 0, 2] - m[:, 2, 0], m[:, 1, 0] - m[:, 0, 1], four_sq[:, 3]], -1),
        ],
        1,
    )
    best = four_sq.argmax(-1)
    q = candidates[torch.arange(len(m)), best]
    q = q / q.norm(dim=-1, keepdim=True)
    q = torch.where(q[:, 3:] < 0, -q, q)
    return q.reshape(R.shape[:-2] + (4,))
