"""The part's model fused from what the camera saw: each seed's points, brought into the model's frame by
the inverse of its estimated pose, kept where several views agree.

The learned point set of Eq. 4.1 settles where every view's visible surface is explained, which a plate
of the largest face does for most top-down views; the fused model keeps every face that several views,
under the network's own poses, put in the same place (docs/METHOD.md). It needs no ground
truth: the poses are the network's.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def views_in_model_frame(points_m: np.ndarray, point_labels: np.ndarray, poses: np.ndarray) -> list[np.ndarray]:
    """Each instance's points (labels 1..N) brought into the model's frame by the inverse of its pose
    (``poses`` (N, 4, 4), camera_from_model, metres); instances without points give none."""
    views = []
    for instance, pose in enumerate(poses, start=1):
        own = points_m[point_labels == instance]
        if len(own):
            views.append((own - pose[:3, 3]) @ pose[:3, :3])
    return views


def fuse_views(views_m: Sequence[np.ndarray], voxel_m: float = 0.0015, min_views: int = 3) -> np.ndarray:
    """The centres (k, 3) of the voxels of side ``voxel_m`` that points of at least ``min_views`` of the
    views (each (n_i, 3), all in one frame) fall in: a point of one view alone is as likely a wrong pose's."""
    if not views_m:
        return np.empty((0, 3))
    points = np.concatenate(views_m)
    view_ids = np.repeat(np.arange(len(views_m)), [len(v) for v in views_m])
    _, voxel = np.unique(np.floor(points / voxel_m).astype(np.int64), axis=0, return_inverse=True)
    voxel = voxel.ravel()
    counts = np.bincount(voxel)
    centres = np.stack([np.bincount(voxel, points[:, axis]) / counts for axis in range(3)], axis=1)
    views_per_voxel = np.bincount(np.unique(np.stack([voxel, view_ids], axis=1), axis=0)[:, 0], minlength=len(counts))
    return centres[views_per_voxel >= min_views]
