"""The one frame type that passes from a bag or a camera to the perception model."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Frame:
    """A depth image with its intrinsics and, where known, its ground truth.

    ``gt_poses`` holds each instance's 4x4 pose in the camera frame; instance i
    (1-based in ``gt_labels``) is row i - 1. Ground truth is for evaluation only.
    """

    depth_m: np.ndarray  # (H, W) float32, NaN where invalid
    K: np.ndarray  # (3, 3) float64
    stamp_ns: int
    frame_id: str
    rgb: np.ndarray | None = None  # (H, W, 3) uint8
    gt_labels: np.ndarray | None = None  # (H, W) uint16, 0 = not a part
    gt_poses: np.ndarray | None = None  # (N, 4, 4)

    @property
    def shape(self) -> tuple[int, int]:
        return self.depth_m.shape
