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
2. Where the part's extent is known, pieces of one part that another part
   lying across it cuts apart are rejoined: two regions that both lie behind
   the same region and do not touch merge, the pair of smallest union first,
   while more than N remain and the union fits in the part's extent. The
   extent needs no model: it is measured on frames whose regions number
   exactly N (:func:`whole_part_extents`), where each region is most likely
   one whole visible part.
3. The N largest regions are the seeds; the rest (islands) join the nearest.
4. While fewer than N remain (parts touching at the same depth, or a part
   almost hidden), the seed of the largest extent is split where the depth
   steps are sharpest: its two largest regions at ever smaller jumps when
   both are big; else the second largest of its regions (a sliver that the
   fragments' step had joined to it); K-means only when it is one region.

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
# The axes and the face and body diagonals: a cloud's widest projection on them is within 10 % of its diameter.
_DIRECTIONS = np.array(
    [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, -1, 0], [1, 0, 1], [1, 0, -1], [0, 1, 1], [0, 1, -1], [1, 1, 1], [1, 1, -1], [1, -1, 1], [-1, 1, 1]],
    dtype=np.float64,
)
_DIRECTIONS /= np.linalg.norm(_DIRECTIONS, axis=1, keepdims=True)
# The part's extent is this quantile of the whole-part extents, not their maximum: now and then a
# region that holds two parts, or a part and a fragment of another, counts as one.
_EXTENT_QUANTILE = 0.9
_MIN_WHOLE_PARTS = 8
# Rejoined pieces may span this much more than the measured extent.
_EXTENT_SLACK = 1.1


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


def _boundary(depth_m: np.ndarray, inside: np.ndarray, regions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every pair of neighbouring pixels in different regions: their regions (k, 2), smaller id first,
    and the depth step (k,) as depth(first's pixel) - depth(second's)."""
    image = np.full(depth_m.shape, -1, dtype=np.int64)
    image[inside] = regions
    pairs, steps = [], []
    for dv, du in _OFFSETS:
        a, b = _neighbour_pairs(depth_m.shape, dv, du)
        across = (image[a] >= 0) & (image[b] >= 0) & (image[a] != image[b])
        x, y = image[a][across], image[b][across]
        step_m = depth_m[a][across] - depth_m[b][across]
        pairs.append(np.stack([np.minimum(x, y), np.maximum(x, y)], axis=1))
        steps.append(np.where(x < y, step_m, -step_m))
    return np.concatenate(pairs), np.concatenate(steps)


def _region_steps(depth_m: np.ndarray, inside: np.ndarray, regions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of regions that touch in the image, (k, 2), and the smallest depth step between them, (k,)."""
    pairs, steps = _boundary(depth_m, inside, regions)
    steps = np.abs(steps)
    if len(pairs) == 0:
        return pairs, steps
    key = pairs[:, 0] * (regions.max() + 1) + pairs[:, 1]
    order = np.lexsort((steps, key))
    first = np.r_[True, key[order][1:] != key[order][:-1]]
    return pairs[order][first], steps[order][first]


def _root(parent: np.ndarray, r: int) -> int:
    """The representative of ``r`` in a union-find forest, halving the path on the way."""
    while parent[r] != r:
        parent[r] = parent[parent[r]]
        r = parent[r]
    return r


def _absorb_fragments(depth_m: np.ndarray, inside: np.ndarray, regions: np.ndarray, min_points: float) -> np.ndarray:
    """Regions relabelled so that every fragment smaller than ``min_points`` has joined a neighbour, where it has one."""
    pairs, steps = _region_steps(depth_m, inside, regions)
    parent = np.arange(regions.max() + 1)
    size = np.bincount(regions).astype(np.int64)
    # Smallest steps first, so a fragment joins the surface it continues best.
    for first, second in pairs[np.argsort(steps, kind="stable")]:
        x, y = _root(parent, first), _root(parent, second)
        if x != y and min(size[x], size[y]) < min_points:
            big, small = (x, y) if size[x] >= size[y] else (y, x)
            parent[small] = big
            size[big] += size[small]
    roots = np.array([_root(parent, r) for r in range(len(parent))])
    return np.unique(roots[regions], return_inverse=True)[1]


def _joined_regions(depth_m: np.ndarray, inside: np.ndarray, fx_px: float, jump_px: float, min_points: float) -> np.ndarray:
    """Step 1 of the module's recipe: the depth regions, fragments joined to a neighbour."""
    return _absorb_fragments(depth_m, inside, depth_regions(depth_m, inside, fx_px, jump_px), min_points)


def _projection_bounds(points: np.ndarray, regions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each region's lowest and highest projection on the extent directions, (R, 13) each."""
    count = regions.max() + 1
    projections = points.astype(np.float64) @ _DIRECTIONS.T
    low = np.full((count, len(_DIRECTIONS)), np.inf)
    high = np.full((count, len(_DIRECTIONS)), -np.inf)
    np.minimum.at(low, regions, projections)
    np.maximum.at(high, regions, projections)
    return low, high


def _occlusions(depth_m: np.ndarray, inside: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """Every pair of regions that touch in the image as (behind, in front), (k, 2): by the median depth step across their boundary."""
    pairs, step_m = _boundary(depth_m, inside, regions)
    if len(pairs) == 0:
        return np.empty((0, 2), dtype=np.int64)
    key = pairs[:, 0] * (regions.max() + 1) + pairs[:, 1]
    order = np.argsort(key, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(key[order]) != 0])
    median_m = np.array([np.median(group) for group in np.split(step_m[order], starts[1:])])
    first, second = pairs[order][starts].T
    deeper_first = median_m > 0
    return np.stack([np.where(deeper_first, first, second), np.where(deeper_first, second, first)], axis=1)


def _bridge_occluded(points: np.ndarray, regions: np.ndarray, occlusions: np.ndarray, instances: int, part_extent: float) -> np.ndarray:
    """Regions relabelled so that pieces of one part cut apart by an occluder are one (step 2 of the module's recipe)."""
    touching = {(min(x, y), max(x, y)) for x, y in occlusions.tolist()}
    pairs = set()
    for front in np.unique(occlusions[:, 1]):
        hidden = np.unique(occlusions[occlusions[:, 1] == front, 0]).tolist()
        pairs.update((x, y) for i, x in enumerate(hidden) for y in hidden[i + 1 :] if (x, y) not in touching)
    if not pairs:
        return regions
    low, high = _projection_bounds(points, regions)

    def union_extent(x: int, y: int) -> float:
        return float((np.maximum(high[x], high[y]) - np.minimum(low[x], low[y])).max())

    parent = np.arange(len(low))
    remaining = len(low)
    # The most compact unions first: the two ends of one occluded part before pieces of two parts.
    for x, y in sorted(pairs, key=lambda pair: union_extent(*pair)):
        if remaining <= instances:
            break
        x, y = _root(parent, x), _root(parent, y)
        if x == y or union_extent(x, y) > _EXTENT_SLACK * part_extent:
            continue
        parent[y] = x
        low[x], high[x] = np.minimum(low[x], low[y]), np.maximum(high[x], high[y])
        remaining -= 1
    roots = np.array([_root(parent, r) for r in range(len(parent))])
    return np.unique(roots[regions], return_inverse=True)[1]


def whole_part_extents(
    depth_m: np.ndarray,
    inside: np.ndarray,
    points: np.ndarray,
    fx_px: float,
    instances: int,
    jump_px: float = 1.5,
    fragment_fraction: float = 0.25,
) -> np.ndarray:
    """The extents (units of ``points``) of a frame's regions if, after fragments join, they number exactly
    ``instances``, each then most likely one whole visible part; otherwise none."""
    regions = _joined_regions(depth_m, inside, fx_px, jump_px, fragment_fraction * len(points) / instances)
    if regions.max() + 1 != instances:
        return np.empty(0)
    low, high = _projection_bounds(points, regions)
    return (high - low).max(axis=1)


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
    """0/1 halves of one seed: its two largest regions at the first smaller jump that gives two big enough;
    else its second largest region at ``jump_px``; else K-means."""
    member = np.zeros(depth_m.size, dtype=bool)
    member[pixels] = True
    member = member.reshape(depth_m.shape)
    for attempt in range(1, _SPLIT_TRIES + 1):
        regions = depth_regions(depth_m, member, fx_px, jump_px * _SPLIT_SHRINK**attempt)
        sizes = np.bincount(regions)
        if len(sizes) > 1 and np.sort(sizes)[-2] >= min_points:
            return _largest_to_labels(points, regions, 2) - 1
    # No two big regions: most likely one part and a sliver of another that it nearly hides. Halving
    # the part would cut a whole part in two; the sliver, if wrong, costs a few points.
    regions = depth_regions(depth_m, member, fx_px, jump_px)
    sizes = np.bincount(regions)
    if len(sizes) > 1:
        return (regions == np.argsort(-sizes, kind="stable")[1]).astype(np.int64)
    return KMeans(n_clusters=2, n_init=3, random_state=seed).fit_predict(points)


def part_extent(extents: np.ndarray) -> float | None:
    """The part's extent from :func:`whole_part_extents` of many frames; None from fewer than 8 whole parts."""
    extents = np.asarray(extents, dtype=np.float64)
    return float(np.quantile(extents, _EXTENT_QUANTILE)) if len(extents) >= _MIN_WHOLE_PARTS else None


def seed_labels(
    depth_m: np.ndarray,
    inside: np.ndarray,
    points: np.ndarray,
    fx_px: float,
    instances: int,
    jump_px: float = 1.5,
    fragment_fraction: float = 0.25,
    seed: int = 0,
    part_extent: float | None = None,
) -> np.ndarray:
    """Labels 1..N for the ``inside`` pixels' points (n, 3), in row-major pixel order.

    ``part_extent``, in the units of ``points``, lets occluded pieces rejoin (step 2); see
    :func:`whole_part_extents` for measuring it.
    """
    if len(points) < instances:
        raise ValueError(f"{len(points)} points cannot hold {instances} instances")
    min_points = fragment_fraction * len(points) / instances
    regions = _joined_regions(depth_m, inside, fx_px, jump_px, min_points)
    if part_extent is not None and regions.max() + 1 > instances:
        regions = _bridge_occluded(points, regions, _occlusions(depth_m, inside, regions), instances, part_extent)
    labels = _largest_to_labels(points, regions, instances)
    pixels = np.flatnonzero(inside)
    # Fewer regions than instances: touching parts merged; split the one that spans the most.
    while labels.max() < instances:
        spans = [np.ptp(points[labels == i], axis=0).max() for i in range(1, labels.max() + 1)]
        members = np.flatnonzero(labels == int(np.argmax(spans)) + 1)
        halves = _split_in_two(depth_m, pixels[members], points[members], fx_px, jump_px, min_points, seed)
        labels[members[halves == 1]] = labels.max() + 1
    return labels
