"""Average precision per class (one class against the rest, as VOC2007's classification task) and its spread."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score


def per_class_ap(scores: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """(C,) average precision in percent of each class's score column against that class's membership."""
    if scores.shape != (len(labels), n_classes):
        raise ValueError(f"scores of shape {scores.shape} for {len(labels)} labels and {n_classes} classes")
    missing = sorted(set(range(n_classes)) - set(np.unique(labels).tolist()))
    if missing:
        raise ValueError(f"the test set has no example of class(es) {missing}; their AP is undefined")
    return np.array([100.0 * average_precision_score(labels == c, scores[:, c]) for c in range(n_classes)])


def spread(values: list[float] | np.ndarray) -> dict:
    """Mean and sample standard deviation (0 for one value), over seeds."""
    values = np.asarray(values, dtype=np.float64)
    return {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0}
