"""Instance seeds without a model: depth-continuous regions of the workspace, brought to N.

Two parts that touch in 3-D are almost always separated in the depth image by
a jump larger than a surface's own slope between neighbouring pixels. The
seeds start from the connected regions of workspace pixels whose 8-neighbours
differ in depth by less than ``jump_px`` pixel footprints (the size of a pixel
at its depth, depth / fx), or whose step continues the slope on both sides (a
steep face seen at a grazing angle). Then:

1. Fragments, regions smaller than ``fragment_fraction`` of an N-th of the
   points (a bolt's head cut from its shank, the strips of a steep face), join
   the neighbour across their smallest depth step.
2. The N largest regions are the seeds; the rest (islands) join the nearest.
3. While fewer than N remain (parts touching at the same depth), the seed of
   the largest extent is split where the depth steps are sharpest: its
   regions at ever smaller jumps, K-means when none splits it.

On simulated bins of the six shipped parts, each step adds to the pairwise F1
of the seeds alone (README, "Perception model"). The learned model then
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
# Each tighter split tries this fraction of the previous jump, five times (down to 0.17 of it).
_SPLIT_SHRINK = 0.7
_SPLIT_TRIES = 5


def _neighbour_pairs(shape: tuple[int, int], dv: int, du: int) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """Slices a, b such that pixel b is pixel a moved by (dv, du)."""
    h, w = shape
    return (slice(0, h - dv), slice(max(0, -du), w - max(0, du))), (slice(dv, h), slice(max(0, du), w - max(0, -du)))


def _shifted(image: np.ndarray, dv: int, du: int) -> np.ndarray:
    """``image`` moved by (-dv, -du): out[p] = image[p + (dv, du)], NaN beyond the border."""
    h, w = image.shape
    padded = np.pad(image, ((abs(dv), abs(dv)), (abs(du), abs(du))), constant_values=np.nan)
    return padded[abs(dv) + dv : abs(dv) + dv + h, abs(du) + du : abs(du) + du + w]


def depth_regions(depth_m: np.ndarray, inside: np.ndarray, fx_px: float, jump_px: float) -> np.ndarray:
    """A region index for every ``inside`` pixel (in row-major order): 8-connected, split at depth jumps."""
    index = np.full(depth_m.shape, -1, dtype=np.int64)
    index[inside] = np.arange(int(inside.sum()))
    depth = np.where(inside, depth_m, np.nan)
    rows, cols = [], []
    for dv, du in _OFFSETS:
        a, b = _neighbour_pairs(depth.shape, dv, du)
        limit_m = jump_px * np.fmin(depth[a], depth[b]) / fx_px
        smooth = np.abs(depth[a] - depth[b]) < limit_m
        # A step that each side's own slope predicts is a steep face, not a jump between parts.
        before_a, after_b = _shifted(depth, -dv, -du)[a], _shifted(depth, dv, du)[b]
        on_slope = (np.abs(depth[b] - (2 * depth[a] - before_a)) < limit_m) & (np.abs(depth[a] - (2 * depth[b] - after_b)) < limit_m)
        joined = (index[a] >= 0) & (index[b] >= 0) & (smooth | on_slope)
        rows.append(index[a][joined])
        cols.append(index[b][joined])
    count = int(inside.sum())
    graph = coo_matrix((np.ones(sum(map(len, rows))), (np.concatenate(rows), np.concatenate(cols))), shape=(count, count))
    return connected_components(graph, directed=False)[1]


def _region_steps(depth_m: np.ndarray, inside: np.ndarray, regions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of regions that touch in the image, (k, 2), and the smallest depth step between them, (k,)."""
    image = np.full(depth_m.shape, -1, dtype=np.int64)
    image[inside] = regions
    pairs, steps = [], []
    for dv, du in _OFFSETS:
        a, b = _neighbour_pairs(depth_m.shape, dv, du)
        across = (image[a] >= 0) & (image[b] >= 0) & (image[a] != image[b])
        pairs.append(np.sort(np.stack([image[a][across], image[b][across]], axis=1), axis=1))
        steps.append(np.abs(depth_m[a][across] - depth_m[b][across]))
    pairs, steps = np.concatenate(pairs), np.concatenate(steps)
    if len(pairs) == 0:
        return pairs, steps
    key = pairs[:, 0] * (regions.max() + 1) + pairs[:, 1]
    order = np.lexsort((steps, key))
    first = np.r_[True, key[order][1:] != key[order][:-1]]
    return pairs[order][first], steps[order][first]


def _absorb_fragments(depth_m: np.ndarray, inside: np.ndarray, regions: np.ndarray, min_points: float) -> np.ndarray:
    """Regions relabelled so that every fragment smaller than ``min_points`` has joined a neighbour, where it has one."""
    pairs, steps = _region_steps(depth_m, inside, regions)
    parent = np.arange(regions.max() + 1)
    size = np.bincount(regions).astype(np.int64)

    def root(r: int) -> int:
        while parent[r] != r:
            parent[r] = parent[parent[r]]
            r = parent[r]
        return r

    # Smallest steps first, so a fragment joins the surface it continues best.
    for first, second in pairs[np.argsort(steps, kind="stable")]:
        x, y = root(first), root(second)
        if x != y and min(size[x], size[y]) < min_points:
            big, small = (x, y) if size[x] >= size[y] else (y, x)
            parent[small] = big
            size[big] += size[small]
    roots = np.array([root(r) for r in range(len(parent))])
    return np.unique(roots[regions], return_inverse=True)[1]


def _largest_to_labels(points: np.ndarray, regions: np.ndarray, instances: int) -> np.ndarray:
    """Labels 1..k (k <= N) from the N largest regions; every other point joins the nearest of them."""
    largest = np.argsort(-np.bincount(regions), kind="stable")[:instances]
    kept = np.isin(regions, largest)
    labels = np.zeros(len(points), dtype=np.int64)
    labels[kept] = np.searchsorted(np.sort(largest), regions[kept]) + 1
    if not kept.all():
        # A sliding-midpoint tree builds several times faster, and answers these far-off queries faster.
        _, nearest = cKDTree(points[kept], balanced_tree=False, compact_nodes=False).query(points[~kept])
        labels[~kept] = labels[kept][nearest]
    return labels


def _split_in_two(
    depth_m: np.ndarray, pixels: np.ndarray, points: np.ndarray, fx_px: float, jump_px: float, min_points: float, seed: int
) -> np.ndarray:
    """0/1 halves of one seed: its two largest regions at the first smaller jump that gives two big enough, else K-means."""
    member = np.zeros(depth_m.size, dtype=bool)
    member[pixels] = True
    member = member.reshape(depth_m.shape)
    for attempt in range(1, _SPLIT_TRIES + 1):
        regions = depth_regions(depth_m, member, fx_px, jump_px * _SPLIT_SHRINK**attempt)
        sizes = np.bincount(regions)
        if len(sizes) > 1 and np.sort(sizes)[-2] >= min_points:
            return _largest_to_labels(points, regions, 2) - 1
    return KMeans(n_clusters=2, n_init=3, random_state=seed).fit_predict(points)


def seed_labels(
    depth_m: np.ndarray,
    inside: np.ndarray,
    points: np.ndarray,
    fx_px: float,
    instances: int,
    jump_px: float = 1.5,
    fragment_fraction: float = 0.25,
    seed: int = 0,
) -> np.ndarray:
    """Labels 1..N for the ``inside`` pixels' points (n, 3), in row-major pixel order."""
    if len(points) < instances:
        raise ValueError(f"{len(points)} points cannot hold {instances} instances")
    min_points = fragment_fraction * len(points) / instances
    regions = _absorb_fragments(depth_m, inside, depth_regions(depth_m, inside, fx_px, jump_px), min_points)
    labels = _largest_to_labels(points, regions, instances)
    pixels = np.flatnonzero(inside)
    # Fewer regions than instances: touching parts merged; split the one that spans the most.
    while labels.max() < instances:
        spans = [np.ptp(points[labels == i], axis=0).max() for i in range(1, labels.max() + 1)]
        members = np.flatnonzero(labels == int(np.argmax(spans)) + 1)
        halves = _split_in_two(depth_m, pixels[members], points[members], fx_px, jump_px, min_points, seed)
        labels[members[halves == 1]] = labels.max() + 1
    return labels
