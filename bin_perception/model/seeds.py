"""Instance seeds without a model: depth-continuous regions of the workspace, brought to N.

Two parts that touch in 3-D are almost always separated in the depth image by
a jump larger than a surface's own slope between neighbouring pixels. The
seeds are the connected regions of workspace pixels whose 8-neighbours differ
in depth by less than ``jump_px`` pixel footprints (the size of a pixel at its
depth, depth / fx). Small regions join their nearest large one; while fewer
than N remain, the largest is split in two by K-means. The learned model then
refines the boundaries (see :mod:`bin_perception.model.perception`).
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree
from sklearn.cluster import KMeans

# Neighbour offsets (dv, du) that, with their mirror images, make 8-connectivity.
_OFFSETS = ((0, 1), (1, 0), (1, 1), (1, -1))


def depth_regions(depth_m: np.ndarray, inside: np.ndarray, fx_px: float, jump_px: float) -> np.ndarray:
    """A region index for every ``inside`` pixel (in row-major order): 8-connected, split at depth jumps."""
    h, w = depth_m.shape
    index = np.full((h, w), -1, dtype=np.int64)
    index[inside] = np.arange(int(inside.sum()))
    depth = np.where(inside, depth_m, np.nan)
    rows, cols = [], []
    for dv, du in _OFFSETS:
        a = (slice(0, h - dv), slice(max(0, -du), w - max(0, du)))
        b = (slice(dv, h), slice(max(0, du), w - max(0, -du)))
        limit_m = jump_px * np.fmin(depth[a], depth[b]) / fx_px
        joined = (index[a] >= 0) & (index[b] >= 0) & (np.abs(depth[a] - depth[b]) < limit_m)
        rows.append(index[a][joined])
        cols.append(index[b][joined])
    count = int(inside.sum())
    graph = coo_matrix((np.ones(sum(map(len, rows))), (np.concatenate(rows), np.concatenate(cols))), shape=(count, count))
    return connected_components(graph, directed=False)[1]


def seed_labels(points: np.ndarray, regions: np.ndarray, instances: int, seed: int = 0) -> np.ndarray:
    """Labels 1..N for the points (n, 3), from their regions: the N largest kept, the rest joined, splits to N."""
    if len(points) < instances:
        raise ValueError(f"{len(points)} points cannot hold {instances} instances")
    sizes = np.bincount(regions)
    largest = np.argsort(-sizes, kind="stable")[:instances]
    kept = np.isin(regions, largest)
    labels = np.zeros(len(points), dtype=np.int64)
    labels[kept] = np.searchsorted(np.sort(largest), regions[kept]) + 1
    if not kept.all():
        # A sliding-midpoint tree builds several times faster, and answers these far-off queries faster.
        _, nearest = cKDTree(points[kept], balanced_tree=False, compact_nodes=False).query(points[~kept])
        labels[~kept] = labels[kept][nearest]
    # Fewer regions than instances: touching parts merged; split the biggest.
    while labels.max() < instances:
        biggest = np.bincount(labels).argmax()
        members = np.flatnonzero(labels == biggest)
        halves = KMeans(n_clusters=2, n_init=3, random_state=seed).fit_predict(points[members])
        labels[members[halves == 1]] = labels.max() + 1
    return labels
