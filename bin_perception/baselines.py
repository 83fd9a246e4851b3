"""Clustering baselines for instance segmentation of an observed point cloud.

K-means and spectral clustering are the baselines of Wu 2019 (Sec. 4.3.4,
Table 4.2); DBSCAN adds one that needs no instance count. Each takes the same
(n, 3) cloud in metres that the learned model sees and labels every point with
an instance label in 1..C, so that it is scored like the model, by
:func:`bin_perception.metrics.pairwise_scores`.

``run_baseline(name, points, k, **params)`` runs one by its name in
:data:`BASELINE_NAMES`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import open3d as o3d
from scipy.spatial import cKDTree
from sklearn.cluster import KMeans, SpectralClustering
from threadpoolctl import threadpool_limits

from .frame import Frame
from .geometry import backproject
from .metrics import pairwise_scores

BASELINE_NAMES = ("kmeans", "spectral", "dbscan")


def _check_points(points: np.ndarray) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3 or len(points) == 0:
        raise ValueError(f"points must be a non-empty (n, 3) array, got shape {points.shape}")
    if not np.all(np.isfinite(points)):
        raise ValueError("points holds non-finite values; drop invalid depth before clustering")
    return points


def _check_k(k: int, points: np.ndarray) -> None:
    if not isinstance(k, (int, np.integer)) or not 1 <= k <= len(points):
        raise ValueError(f"k must be an integer from 1 to the number of points ({len(points)}), got {k}")


def kmeans_labels(points: np.ndarray, k: int, seed: int = 0, n_init: int = 10) -> np.ndarray:
    """K-means into ``k`` instances: (n,) labels in 1..k.

    ``n_init`` k-means++ restarts, the best kept: scikit-learn's default until
    1.4, when the thesis was written. On simulated bins it scores as well as or
    better than a single start, for tens of milliseconds on 12,000 points.
    """
    points = _check_points(points)
    _check_k(k, points)
    # One frame is too small a job for threads, and OpenMP's barriers collapse when
    # the cores are shared: 2 s instead of 25 ms per frame beside a training job on 2 cores.
    with threadpool_limits(limits=1, user_api="openmp"):
        labels = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit_predict(points)
    return labels.astype(np.int64) + 1


def spectral_labels(points: np.ndarray, k: int, seed: int = 0, n_neighbors: int = 20) -> np.ndarray:
    """Spectral clustering into ``k`` instances on a k-nearest-neighbour graph: (n,) labels in 1..k.

    The graph links each point to its ``n_neighbors`` nearest (fewer when the
    cloud has fewer points), so its cuts follow the gaps and depth steps between
    parts, and it stays sparse: a full RBF affinity would be dense in n and, at
    scikit-learn's default width of 1 m, blind to millimetre gaps. Measured on
    simulated 224 x 224 bins (8 each of nut N=2 and N=3, lever N=4, bolt N=3;
    3,000 to 13,000 points), the mean pairwise F1 was 0.89 with 10 neighbours
    (bolts fell to 0.85), 0.90 with 20 and 0.90 with 30, while the time grows
    with the neighbours (0.2, 0.4 and 0.9 s on 12,000 points of nuts): hence 20.
    Labels come from the embedding by ``cluster_qr``, which is deterministic,
    faster than k-means on the embedding, and scored as well or better there.
    """
    points = _check_points(points)
    _check_k(k, points)
    if n_neighbors < 1:
        raise ValueError(f"n_neighbors must be at least 1, got {n_neighbors}")
    if k == 1:  # nothing to split, and a one-point cloud has no neighbour graph
        return np.ones(len(points), dtype=np.int64)
    clustering = SpectralClustering(
        n_clusters=k,
        affinity="nearest_neighbors",
        n_neighbors=min(n_neighbors, len(points) - 1),
        assign_labels="cluster_qr",
        random_state=seed,
    )
    with warnings.catch_warnings():
        # Parts lying apart make the graph fall into pieces: the very answer sought, not a fault.
        warnings.filterwarnings("ignore", message="Graph is not fully connected")
        return clustering.fit_predict(points).astype(np.int64) + 1


def dbscan_labels(points: np.ndarray, eps_m: float, min_points: int = 10) -> np.ndarray:
    """DBSCAN (Open3D's ``cluster_dbscan``): (n,) labels in 1..C, C found from the cloud.

    DBSCAN leaves points in sparse regions as noise, but an instance
    segmentation labels every point: each noise point takes the label of its
    nearest clustered point. If DBSCAN finds no cluster at all, the whole cloud
    is one instance.

    Args:
        points: (n, 3) cloud, metres.
        eps_m: neighbourhood radius; choose it with :func:`choose_dbscan_eps`.
        min_points: neighbours within ``eps_m`` that make a point a core point.
    """
    points = _check_points(points)
    if not eps_m > 0:
        raise ValueError(f"eps_m must be a positive radius in metres, got {eps_m}")
    if min_points < 1:
        raise ValueError(f"min_points must be at least 1, got {min_points}")
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points))
    labels = np.asarray(cloud.cluster_dbscan(eps=eps_m, min_points=min_points), dtype=np.int64) + 1
    clustered = labels > 0
    if not clustered.any():
        return np.ones(len(points), dtype=np.int64)
    noise = ~clustered
    if noise.any():
        nearest = cKDTree(points[clustered]).query(points[noise])[1]
        labels[noise] = labels[clustered][nearest]
    return labels


def choose_dbscan_eps(
    clouds: Sequence[np.ndarray],
    true_labels: Sequence[np.ndarray],
    candidates_m: Sequence[float],
    min_points: int = 10,
) -> float:
    """The candidate eps (metres) with the best mean pairwise F1 of :func:`dbscan_labels`.

    Pass a tuning split disjoint from the frames evaluated: the choice sees
    their ground truth. Ties go to the smallest eps.

    Args:
        clouds: (n_i, 3) observed clouds, metres.
        true_labels: (n_i,) the true instance of each cloud's points.
        candidates_m: radii to try, metres.
        min_points: as in :func:`dbscan_labels`.
    """
    if len(clouds) != len(true_labels):
        raise ValueError(f"got {len(clouds)} clouds but {len(true_labels)} true_labels arrays; pair them one to one")
    if len(clouds) == 0:
        raise ValueError("clouds is empty: choosing eps needs at least one labelled cloud")
    candidates_m = np.sort(np.asarray(candidates_m, dtype=np.float64).ravel())
    if len(candidates_m) == 0:
        raise ValueError("candidates_m is empty: give at least one eps to try")
    labelled = list(zip(clouds, true_labels))
    mean_f1 = [
        np.mean([pairwise_scores(truth, dbscan_labels(cloud, eps_m, min_points)).f1 for cloud, truth in labelled])
        for eps_m in candidates_m
    ]
    return float(candidates_m[int(np.argmax(mean_f1))])


def run_baseline(name: str, points: np.ndarray, k: int, **params) -> np.ndarray:
    """Run the baseline ``name`` (one of :data:`BASELINE_NAMES`) on a cloud: (n,) labels from 1.

    ``k``, the number of instances, is what K-means and spectral clustering
    split into; DBSCAN finds its own count and needs ``eps_m`` in ``params``.
    Other ``params`` go to the baseline's function.
    """
    if name == "kmeans":
        return kmeans_labels(points, k, **params)
    if name == "spectral":
        return spectral_labels(points, k, **params)
    if name == "dbscan":
        if "eps_m" not in params:
            raise ValueError("baseline 'dbscan' needs eps_m (metres); choose it with choose_dbscan_eps")
        return dbscan_labels(points, **params)
    raise ValueError(f"unknown baseline {name!r}: expected one of {', '.join(BASELINE_NAMES)}")


def baseline_label_image(frame: Frame, inside: np.ndarray, name: str, k: int, **params) -> np.ndarray:
    """A (H, W) uint16 label image of ``frame`` by the baseline ``name`` on the points of the (H, W) mask
    ``inside``: to compare with a method's labels, the pixels that method labelled."""
    inside = np.asarray(inside, dtype=bool)
    if inside.shape != frame.depth_m.shape:
        raise ValueError(f"mask of shape {inside.shape} for a depth image of shape {frame.depth_m.shape}")
    pixels = np.flatnonzero(inside)
    points_m = backproject(frame.depth_m, frame.K).reshape(-1, 3)[pixels]
    labels = np.zeros(frame.depth_m.size, dtype=np.uint16)
    labels[pixels] = run_baseline(name, points_m, k, **params)
    return labels.reshape(frame.depth_m.shape)
