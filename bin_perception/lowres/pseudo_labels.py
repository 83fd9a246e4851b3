"""Pseudo-labels without class labels (thesis Sec. 5.2.2): k-means on HR features, nearest HR centroid for LR."""

from __future__ import annotations

import numpy as np
from sklearn.cluster import KMeans


def fit_centroids(hr_features: np.ndarray, k: int, seed: int) -> np.ndarray:
    """(k, D) k-means centroids of the HR features (N, D)."""
    hr_features = check_features(hr_features, "HR features")
    if not 2 <= k <= len(hr_features):
        raise ValueError(f"k={k} clusters: need 2 <= k <= the {len(hr_features)} HR features")
    kmeans = KMeans(n_clusters=k, n_init=3, random_state=seed).fit(hr_features)
    return kmeans.cluster_centers_.astype(np.float32)


def nearest_centroid(features: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """(N,) int64: the index of each feature's nearest centroid, in Euclidean distance."""
    features = check_features(features, "features")
    if centroids.ndim != 2 or centroids.shape[1] != features.shape[1]:
        raise ValueError(f"centroids of shape {centroids.shape} do not match features of dimension {features.shape[1]}")
    # |x - c|^2 = |x|^2 - 2 x.c + |c|^2; |x|^2 is the same for every centroid of a row.
    distances = (centroids**2).sum(axis=1)[None, :] - 2.0 * features @ centroids.T
    return distances.argmin(axis=1).astype(np.int64)


def check_features(features: np.ndarray, name: str) -> np.ndarray:
    """``features`` as a finite (N, D) float32 array with N >= 1, or a ValueError naming it."""
    features = np.asarray(features, dtype=np.float32)
    if features.ndim != 2 or 0 in features.shape:
        raise ValueError(f"{name}: expected a non-empty (N, D) array, got shape {features.shape}")
    if not np.isfinite(features).all():
        raise ValueError(f"{name}: holds NaN or infinite values")
    return features
