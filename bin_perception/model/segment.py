"""Instance segmentation by label transfer (thesis Sec. 4.2.5)."""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree


def transfer_labels(observed: np.ndarray, predicted: np.ndarray, predicted_ids: np.ndarray) -> np.ndarray:
    """Each observed point (n, 3) takes the instance id of its nearest predicted point (k, 3)."""
    if len(predicted) == 0:
        raise ValueError("label transfer: the predicted cloud is empty")
    _, nearest = cKDTree(predicted).query(observed, workers=-1)
    return np.asarray(predicted_ids)[nearest]


def label_image(shape: tuple[int, int], pixels: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """A (H, W) uint16 image holding ``labels`` at the flat ``pixels``, 0 elsewhere."""
    image = np.zeros(shape[0] * shape[1], dtype=np.uint16)
    image[pixels] = labels
    return image.reshape(shape)
