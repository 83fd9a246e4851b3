"""Instance seeds without a model: depth-continuous regions of the workspace, brought to N.

Two parts that touch in 3-D are almost always separated in the depth image by
a jump larger than a surface's own slope between neighbouring pixels. The
seeds start from the connected regions of workspace pixels whose 8-neighbours
differ in depth by less than ``jump_px`` pixel footprints (the size of a pixel
at its depth, depth / fx), or whose step continues the slope on both sides (a
steep face seen at a grazing angle), unless the two lie in a valley of the
depth (two round parts side by side). Then:

1. Fragments, regions smaller than ``fragment_fraction`` of an N-th of the
   points (a bolt's head cut from its shank, the strips of a steep face), join
   the neighbour across their smallest depth step. Counting the parts, a
   sizeable fragment joins only across a step of at most 1.5 jumps: in a
   pile, a piece beyond a clear step is another part, seen only in part.
   Where the part's size is known, a sizeable fragment then moves to another
   region it touches if the two regions then fit the part's box better (a
   bracket's upright strip, which meets the next bracket's base without a
   jump, back to its own base). And a region that does not fit the part's
   box (two parts crossing where one slopes down onto the other without a
   jump) is split in two at ever smaller jumps, and its halves in turn,
   where the halves fit the box better; a region wider than 1.5 parts may
   fall instead into two compact halves (parts side by side at one depth).
2. Where the part's size is known, pieces of one part that another part
   lying across it cuts apart are rejoined: two regions that both lie behind
   the same region and do not touch merge, the pair of smallest union first,
   while more than N remain and the union fits in the part's extent (and,
   counting the parts, in its box: one part may hide pieces of many). The
   size needs no model: it is measured on frames whose regions number
   exactly N (:func:`whole_part_sizes`), where each region is most likely
   one whole visible part.
3. The N largest regions, short of fragments that touched nothing (a flying
   pixel), are the seeds. An island (any other region) that touches several
   seeds joins the one that, with it, fits the part's box clearly best; the
   rest join the nearest seed, point by point.
4. While fewer than N remain (parts touching at the same depth, or a part
   almost hidden), the seed of the largest extent is split where the depth
   steps are sharpest: its two largest regions at ever smaller jumps when
   both are big; else the largest of its regions beside its largest (a
   sliver that the fragments' step had joined to it); K-means only when no
   region lies beside it.

On simulated bins of the six shipped parts, each step adds to the pairwise F1
of the seeds alone (docs/METHOD.md). The learned model then
refines the boundaries (see :mod:`bin_perception.model.perception`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree
from sklearn.cluster import KMeans

# Neighbour offsets (dv, du) that, with their mirror images, make 8-connectivity.
_OFFSETS = ((0, 1), (1, 0), (1, 1), (1, -1))
# Neighbours part where the depth bends away from the camera across them by this many pixel footprints: a valley.
_VALLEY_PX = 1.5
# Each tighter split tries this fraction of the previous jump, five times (down to 0.17 of it).
_SPLIT_SHRINK = 0.7
_SPLIT_TRIES = 5
# The axes and the face and body diagonals: a cloud's widest projection on them is within 10 % of its diameter.
_DIRECTIONS = np.array(
    [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, -1, 0], [1, 0, 1], [1, 0, -1],
     [0, 1, 1], [0, 1, -1], [1, 1, 1], [1, 1, -1], [1, -1, 1], [-1, 1, 1]],
    dtype=np.float64,
)
_DIRECTIONS /= np.linalg.norm(_DIRECTIONS, axis=1, keepdims=True)
# The part's extent is this quantile of the whole-part extents, not their maximum: now and then a
# region that holds two parts, or a part and a fragment of another, counts as one.
_EXTENT_QUANTILE = 0.9
_MIN_WHOLE_PARTS = 8
# Rejoined pieces may span this much more than the measured extent.
_EXTENT_SLACK = 1.1
# A fragment or an island goes by the part's box only where one choice fits it better than the other by
# this fraction of the part's extent; closer calls keep the depth step's (or the nearest point's) choice.
_BOX_MARGIN = 0.04
# Fragments smaller than this fraction of the fragment size stay where the depth step put them: too few
# points for their shape to matter, and too many such slivers to weigh each.
_SIZEABLE_FRAGMENT = 0.05
# A region wider than this many part extents holds more than one part, whatever its depth steps say.
_SIDE_BY_SIDE_EXTENT = 1.5
# Counting the parts, a region is one when its seen area is at least this share of a whole part's (the
# product of the part's two longest principal spans): less is a sliver of a part nearly hidden, which no
# gripper reaches, or something that is no part.
_PART_AREA_SHARE = 0.15
# Counting the parts, a sizeable fragment joins a neighbour only across a step of at most this many jumps.
_PILE_STEP_JUMPS = 1.5
# Counting the parts, pieces of one part this close (a share of its extent) may be one part, where together they
# fit in the part's box grown by this factor.
_PIECE_GAP = 0.15
_PIECE_BOX_SLACK = 1.15


@dataclass(frozen=True)
class PartSize:
    """The part as the seeds know it without a model, in the units of the points: ``extent``, its widest
    projection, and ``box``, its spans along its principal axes, longest first (each the side of the
    uniform slab with the same second moment). Measured on whole visible parts (:func:`whole_part_sizes`,
    :func:`part_size`)."""

    extent: float
    box: tuple[float, float, float]

    def scaled(self, factor: float) -> PartSize:
        return PartSize(self.extent * factor, (self.box[0] * factor, self.box[1] * factor, self.box[2] * factor))


def describe_part_size(size_m: PartSize | None) -> str:
    """A part size in metres, for a log line."""
    if size_m is None:
        return "not measured (too few whole parts seen)"
    return f"extent {1000 * size_m.extent:.1f} mm, principal spans " + " x ".join(f"{1000 * s:.1f}" for s in size_m.box) + " mm"


def _neighbour_pairs(shape: tuple[int, int], dv: int, du: int) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """Slices a, b such that pixel b is pixel a moved by (dv, du)."""
    h, w = shape
    return (slice(0, h - dv), slice(max(0, -du), w - max(0, du))), (slice(dv, h), slice(max(0, du), w - max(0, -du)))


def _bounding_box(inside: np.ndarray) -> tuple[slice, slice]:
    """The rows and columns that hold every ``inside`` pixel. Cropping to them keeps the pixels' row-major
    order, and the work on a part's pixels then goes with their number, not the image's."""
    rows, cols = np.flatnonzero(inside.any(axis=1)), np.flatnonzero(inside.any(axis=0))
    if len(rows) == 0:
        return slice(0, 0), slice(0, 0)
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def _shifted(padded: np.ndarray, dv: int, du: int) -> np.ndarray:
    """out[p] = image[p + (dv, du)], of the ``image`` that ``padded`` holds with one NaN pixel around it."""
    h, w = padded.shape[0] - 2, padded.shape[1] - 2
    return padded[1 + dv : 1 + dv + h, 1 + du : 1 + du + w]


def depth_regions(depth_m: np.ndarray, inside: np.ndarray, fx_px: float, jump_px: float) -> np.ndarray:
    """A region index for every ``inside`` pixel (in row-major order): 8-connected, split at depth jumps and at
    valleys."""
    box = _bounding_box(inside)
    depth_m, inside = depth_m[box], inside[box]
    index = np.full(depth_m.shape, -1, dtype=np.int64)
    index[inside] = np.arange(int(inside.sum()))
    padded = np.pad(np.where(inside, depth_m, np.nan), 1, constant_values=np.nan)
    depth = padded[1:-1, 1:-1]
    rows, cols = [], []
    for dv, du in _OFFSETS:
        a, b = _neighbour_pairs(depth.shape, dv, du)
        limit_m = jump_px * np.fmin(depth[a], depth[b]) / fx_px
        smooth = np.abs(depth[a] - depth[b]) < limit_m
        # A step that each side's own slope predicts is a steep face, not a jump between parts.
        before_a, after_b = _shifted(padded, -dv, -du)[a], _shifted(padded, dv, du)[b]
        on_slope = (np.abs(depth[b] - (2 * depth[a] - before_a)) < limit_m) & (np.abs(depth[a] - (2 * depth[b] - after_b)) < limit_m)
        # Two round parts side by side at one depth (pins, bolts' shanks) meet in a valley, which the step across it
        # does not show: the depth bends away from the camera at a and at b. Where the pixel beyond one of them is
        # missing (the valley's end), the other's bend alone tells.
        bend_a, bend_b = before_a + depth[b] - 2 * depth[a], depth[a] + after_b - 2 * depth[b]
        bend_m = np.where(np.isnan(bend_a), 2 * bend_b, np.where(np.isnan(bend_b), 2 * bend_a, bend_a + bend_b))
        valley = bend_m < -_VALLEY_PX * np.fmin(depth[a], depth[b]) / fx_px
        joined = (index[a] >= 0) & (index[b] >= 0) & (smooth | on_slope) & ~valley
        rows.append(index[a][joined])
        cols.append(index[b][joined])
    count = int(inside.sum())
    graph = coo_matrix((np.ones(sum(map(len, rows))), (np.concatenate(rows), np.concatenate(cols))), shape=(count, count))
    return connected_components(graph, directed=False)[1]


def _boundary(depth_m: np.ndarray, inside: np.ndarray, regions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every pair of neighbouring pixels in different regions: their regions (k, 2), smaller id first,
    and the depth step (k,) as depth(first's pixel) - depth(second's)."""
    box = _bounding_box(inside)
    depth_m, inside = depth_m[box], inside[box]
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


def _absorb_fragments(
    depth_m: np.ndarray, inside: np.ndarray, regions: np.ndarray, min_points: float, max_step_m: float = np.inf
) -> np.ndarray:
    """Regions relabelled so that every fragment smaller than ``min_points`` has joined a neighbour, where it has one.
    A sizeable fragment (``_SIZEABLE_FRAGMENT`` of ``min_points`` or more) joins only across a step of at most
    ``max_step_m``; smaller ones across any."""
    pairs, steps = _region_steps(depth_m, inside, regions)
    parent = np.arange(regions.max() + 1)
    size = np.bincount(regions).astype(np.int64)
    order = np.argsort(steps, kind="stable")
    # Smallest steps first, so a fragment joins the surface it continues best.
    for (first, second), step_m in zip(pairs[order], steps[order]):
        x, y = _root(parent, first), _root(parent, second)
        smaller = min(size[x], size[y])
        if step_m > max_step_m and smaller >= _SIZEABLE_FRAGMENT * min_points:
            continue
        if x != y and smaller < min_points:
            big, small = (x, y) if size[x] >= size[y] else (y, x)
            parent[small] = big
            size[big] += size[small]
    roots = np.array([_root(parent, r) for r in range(len(parent))])
    return np.unique(roots[regions], return_inverse=True)[1]


def _joined_regions(depth_m: np.ndarray, inside: np.ndarray, fx_px: float, jump_px: float, min_points: float) -> np.ndarray:
    """Step 1 of the module's recipe: the depth regions, fragments joined to a neighbour."""
    return _absorb_fragments(depth_m, inside, depth_regions(depth_m, inside, fx_px, jump_px), min_points)


def widest_projection(points: np.ndarray) -> float:
    """The widest projection of ``points`` (n, 3) on the extent directions (within 10 % of their
    diameter): the extent of :class:`PartSize`, for one cloud."""
    return float(np.ptp(points.astype(np.float64) @ _DIRECTIONS.T, axis=0).max())


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


def _bridge_occluded(
    points: np.ndarray, regions: np.ndarray, occlusions: np.ndarray, instances: int, part_extent: float, box: np.ndarray | None = None
) -> np.ndarray:
    """Regions relabelled so that pieces of one part cut apart by an occluder are one (step 2 of the module's recipe).
    With the part's ``box``, a union must also fit in it, within ``_BOX_MARGIN`` of the extent."""
    touching = {(min(x, y), max(x, y)) for x, y in occlusions.tolist()}
    pairs = set()
    for front in np.unique(occlusions[:, 1]):
        hidden = np.unique(occlusions[occlusions[:, 1] == front, 0]).tolist()
        pairs.update((x, y) for i, x in enumerate(hidden) for y in hidden[i + 1 :] if (x, y) not in touching)
    if not pairs:
        return regions
    low, high = _projection_bounds(points, regions)
    members = [np.flatnonzero(regions == r) for r in range(len(low))] if box is not None else []

    def union_extent(x: int, y: int) -> float:
        return float((np.maximum(high[x], high[y]) - np.minimum(low[x], low[y])).max())

    def fits_box(x: int, y: int) -> bool:
        return box is None or _box_excess(points[np.concatenate([members[x], members[y]])], box) <= _BOX_MARGIN * part_extent

    parent = np.arange(len(low))
    remaining = len(low)
    # The most compact unions first: the two ends of one occluded part before pieces of two parts.
    for x, y in sorted(pairs, key=lambda pair: union_extent(*pair)):
        if remaining <= instances:
            break
        x, y = _root(parent, x), _root(parent, y)
        if x == y or union_extent(x, y) > _EXTENT_SLACK * part_extent or not fits_box(x, y):
            continue
        parent[y] = x
        low[x], high[x] = np.minimum(low[x], low[y]), np.maximum(high[x], high[y])
        if box is not None:
            members[x] = np.concatenate([members[x], members[y]])
        remaining -= 1
    roots = np.array([_root(parent, r) for r in range(len(parent))])
    return np.unique(roots[regions], return_inverse=True)[1]


def _moments(points: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
    """The count, sum and sum of outer products of ``points`` (n, 3) as one row (13,), or one row per label of
    ``labels`` (n,) (L, 13): a union's moments are the sum of its parts', and a part taken out subtracts."""
    points = points.astype(np.float64)
    columns = np.hstack([np.ones((len(points), 1)), points, (points[:, :, None] * points[:, None, :]).reshape(-1, 9)])
    if labels is None:
        return columns.sum(axis=0)
    return np.stack([np.bincount(labels, weights=column, minlength=labels.max() + 1) for column in columns.T], axis=1)


def _spans_of_moments(moments: np.ndarray) -> np.ndarray:
    """The spans along the principal axes, longest first, of the points whose :func:`_moments` are ``moments``
    (..., 13), as the side of the uniform slab with the same second moment: unlike the points' extremes, it does
    not swing with the axes of a nearly square part."""
    count = moments[..., :1]
    mean = moments[..., 1:4] / count
    scatter = moments[..., 4:].reshape(*moments.shape[:-1], 3, 3) / count[..., None] - mean[..., :, None] * mean[..., None, :]
    variances = np.clip(np.linalg.eigvalsh(scatter), 0.0, None)
    return np.sqrt(12.0 * variances[..., ::-1])


def _principal_spans(points: np.ndarray) -> np.ndarray:
    """The spans of ``points`` (n, 3) along their principal axes (:func:`_spans_of_moments`)."""
    return _spans_of_moments(_moments(points))


def _moments_excess(moments: np.ndarray, box: np.ndarray) -> np.ndarray:
    """:func:`_box_excess` of the points whose :func:`_moments` are ``moments`` (..., 13)."""
    return np.maximum(_spans_of_moments(moments) - box, 0.0).sum(axis=-1)


def _box_excess(points: np.ndarray, box: np.ndarray) -> float:
    """How far ``points`` stick out of the part's box, summed over the principal axes (0 when they fit)."""
    return float(_moments_excess(_moments(points), box))


def whole_part_sizes(
    depth_m: np.ndarray,
    inside: np.ndarray,
    points: np.ndarray,
    fx_px: float,
    instances: int,
    jump_px: float = 1.5,
    fragment_fraction: float = 0.25,
) -> np.ndarray:
    """The sizes (k, 4) of a frame's regions, as extent and the three principal spans (units of ``points``),
    if after fragments join they number exactly ``instances``, each then most likely one whole visible part;
    otherwise none."""
    regions = _joined_regions(depth_m, inside, fx_px, jump_px, fragment_fraction * len(points) / instances)
    if regions.max() + 1 != instances:
        return np.empty((0, 4))
    low, high = _projection_bounds(points, regions)
    spans = [_principal_spans(points[regions == r]) for r in range(instances)]
    return np.column_stack([(high - low).max(axis=1), np.stack(spans)])


def _largest_to_labels(points: np.ndarray, regions: np.ndarray, instances: int, min_points: float = 1.0) -> np.ndarray:
    """Labels 1..k (k <= N) from the N largest regions of at least ``min_points`` (the largest, if none is);
    every other point joins the nearest of them."""
    sizes = np.bincount(regions)
    largest = np.argsort(-sizes, kind="stable")[:instances]
    largest = largest[sizes[largest] >= min(min_points, sizes.max())]
    kept = np.isin(regions, largest)
    labels = np.zeros(len(points), dtype=np.int64)
    labels[kept] = np.searchsorted(np.sort(largest), regions[kept]) + 1
    if not kept.all():
        # A sliding-midpoint tree builds several times faster, and answers these far-off queries faster.
        _, nearest = cKDTree(points[kept], balanced_tree=False, compact_nodes=False).query(points[~kept])
        labels[~kept] = labels[kept][nearest]
    return labels


def _pixel_mask(shape: tuple[int, int], pixels: np.ndarray) -> np.ndarray:
    mask = np.zeros(shape[0] * shape[1], dtype=bool)
    mask[pixels] = True
    return mask.reshape(shape)


def _tighter_halves(
    depth_m: np.ndarray, member: np.ndarray, points: np.ndarray, fx_px: float, jump_px: float, min_points: float
) -> np.ndarray | None:
    """0/1 halves of the ``member`` pixels' points: their two largest regions at the first smaller jump that
    gives two of at least ``min_points``, the rest joining the nearest; None where no jump down to 0.17 of
    ``jump_px`` does."""
    for attempt in range(1, _SPLIT_TRIES + 1):
        regions = depth_regions(depth_m, member, fx_px, jump_px * _SPLIT_SHRINK**attempt)
        sizes = np.bincount(regions)
        if len(sizes) > 1 and np.sort(sizes)[-2] >= min_points:
            return _largest_to_labels(points, regions, 2) - 1
    return None


def _split_misfits(
    depth_m: np.ndarray, inside: np.ndarray, points: np.ndarray, regions: np.ndarray, fx_px: float, jump_px: float, min_points: float, size: PartSize
) -> np.ndarray:
    """``regions`` with every region that sticks out of the part's box split at tighter jumps, and its halves
    in turn, where the halves stick out less by the margin (step 1 of the module's recipe)."""
    box, margin = np.asarray(size.box), _BOX_MARGIN * size.extent
    pixels = np.flatnonzero(inside)
    regions = regions.copy()
    # Half a fragment's size: the piece of a crossing part beyond the other may be small, but not a sliver.
    smallest = 0.5 * min_points
    pending = list(range(regions.max() + 1))
    while pending:
        region = pending.pop()
        members = np.flatnonzero(regions == region)
        if len(members) < 2 * smallest:
            continue
        excess = _box_excess(points[members], box)
        if excess <= margin:
            continue
        candidates = [_tighter_halves(depth_m, _pixel_mask(depth_m.shape, pixels[members]), points[members], fx_px, jump_px, smallest)]
        # Parts that touch side by side at one depth (two nuts flat on the floor) show no jump to split at, and
        # a tighter jump cuts through one of them; their points fall apart into two compact halves.
        if widest_projection(points[members]) > _SIDE_BY_SIDE_EXTENT * size.extent:
            candidates.append(KMeans(n_clusters=2, n_init=3, random_state=0).fit_predict(points[members]))
        best, best_excess = None, excess - margin
        for halves in candidates:
            if halves is None:
                continue
            halves_excess = _box_excess(points[members[halves == 0]], box) + _box_excess(points[members[halves == 1]], box)
            if halves_excess < best_excess:
                best, best_excess = halves, halves_excess - margin
        if best is not None:
            regions[members[best == 1]] = regions.max() + 1
            pending += [region, regions.max()]
    return regions


def _split_in_two(
    depth_m: np.ndarray, pixels: np.ndarray, points: np.ndarray, fx_px: float, jump_px: float, min_points: float, seed: int
) -> np.ndarray:
    """0/1 halves of one seed: its two largest regions at the first smaller jump that gives two big enough;
    else the largest of its regions at ``jump_px`` beside its largest; else K-means."""
    member = _pixel_mask(depth_m.shape, pixels)
    halves = _tighter_halves(depth_m, member, points, fx_px, jump_px, min_points)
    if halves is not None:
        return halves
    # No two big regions: most likely one part and a sliver of another that it nearly hides. Halving
    # the part would cut a whole part in two; the sliver, if wrong, costs a few points.
    regions = depth_regions(depth_m, member, fx_px, jump_px)
    largest = int(np.argmax(np.bincount(regions)))
    # A sliver lies beside the part that hides it; a speck that touches nothing (the seed took it in as
    # its nearest point) is no part.
    beside = [y if x == largest else x for x, y in _region_steps(depth_m, member, regions)[0].tolist() if largest in (x, y)]
    if beside:
        sliver = max(beside, key=lambda r: int((regions == r).sum()))
        return (regions == sliver).astype(np.int64)
    return KMeans(n_clusters=2, n_init=3, random_state=seed).fit_predict(points)


def part_size(sizes: np.ndarray) -> PartSize | None:
    """The part's size from :func:`whole_part_sizes` of many frames; None from fewer than 8 whole parts."""
    sizes = np.asarray(sizes, dtype=np.float64).reshape(-1, 4)
    if len(sizes) < _MIN_WHOLE_PARTS:
        return None
    extent, *box = np.quantile(sizes, _EXTENT_QUANTILE, axis=0).tolist()
    return PartSize(extent, tuple(box))


def _touching(depth_m: np.ndarray, inside: np.ndarray, regions: np.ndarray) -> list[set[int]]:
    """For every region, the regions it touches in the image."""
    neighbours: list[set[int]] = [set() for _ in range(regions.max() + 1)]
    for x, y in _region_steps(depth_m, inside, regions)[0].tolist():
        neighbours[x].add(y)
        neighbours[y].add(x)
    return neighbours


def _reassign_fragments(
    depth_m: np.ndarray, inside: np.ndarray, points: np.ndarray, raw: np.ndarray, regions: np.ndarray, min_points: float, size: PartSize
) -> np.ndarray:
    """``regions`` (raw regions with fragments joined) with each sizeable fragment moved to another region it
    touches where both regions then fit the part's box better by the margin (step 1 of the module's recipe)."""
    sizes = np.bincount(raw)
    fragments = np.flatnonzero((sizes < min_points) & (sizes >= _SIZEABLE_FRAGMENT * min_points))
    if len(fragments) == 0:
        return regions
    box, margin = np.asarray(size.box), _BOX_MARGIN * size.extent
    owner = np.zeros(len(sizes), dtype=np.int64)
    owner[raw] = regions
    neighbours = _touching(depth_m, inside, raw)
    regions = regions.copy()
    region_moments, piece_moments = _moments(points, regions), _moments(points, raw)
    for fragment in fragments:
        own = owner[fragment]
        others = np.array(sorted({owner[n] for n in neighbours[fragment]} - {own}), dtype=np.int64)
        piece = piece_moments[fragment]
        if len(others) == 0 or region_moments[own, 0] == piece[0]:
            continue
        kept_excess, left_excess = _moments_excess(np.stack([region_moments[own], region_moments[own] - piece]), box)
        gain = (
            kept_excess + _moments_excess(region_moments[others], box) - left_excess - _moments_excess(region_moments[others] + piece, box)
        )
        best = int(np.argmax(gain))
        if gain[best] > margin:
            regions[raw == fragment] = owner[fragment] = others[best]
            region_moments[own] -= piece
            region_moments[others[best]] += piece
    return np.unique(regions, return_inverse=True)[1]


def _islands_by_shape(depth_m: np.ndarray, inside: np.ndarray, points: np.ndarray, regions: np.ndarray, instances: int, size: PartSize) -> np.ndarray:
    """``regions`` with each island that touches several of the N largest joined to the one it fits the part's
    box best with, where that is clearer than the margin (step 3 of the module's recipe)."""
    order = np.argsort(-np.bincount(regions), kind="stable")
    seeds = set(order[:instances].tolist())
    box, margin = np.asarray(size.box), _BOX_MARGIN * size.extent
    neighbours = _touching(depth_m, inside, regions)
    merged = regions.copy()
    # Islands that touch one seed are its own (its upright, its head) before any seed is weighed with another's.
    ambiguous = []
    for island in order[instances:]:
        touched = seeds & neighbours[island]
        if len(touched) == 1:
            merged[regions == island] = touched.pop()
        elif touched:
            ambiguous.append((island, sorted(touched)))
    for island, touched in ambiguous:
        piece = regions == island
        fits = sorted((_box_excess(points[(merged == r) | piece], box), r) for r in touched)
        if fits[1][0] - fits[0][0] > margin:
            merged[piece] = fits[0][1]
    return np.unique(merged, return_inverse=True)[1]


def _join_pieces(points: np.ndarray, regions: np.ndarray, size: PartSize) -> np.ndarray:
    """``regions`` with pieces of one part joined: two regions that come within ``_PIECE_GAP`` of the part's
    extent of each other and together fit its box, the pair that fits best first. A counted bin needs this
    where an occluder's shadow (a structured-light camera sees none of the floor beside a part's edge) or a
    step of the part's own cuts it apart without the depth step that :func:`_bridge_occluded` follows; two
    parts together never fit one part's box, nor a little more."""
    # The box is the 90th percentile of whole parts' spans: a tenth of whole parts stick out of it.
    box, margin, gap = _PIECE_BOX_SLACK * np.asarray(size.box), _BOX_MARGIN * size.extent, _PIECE_GAP * size.extent
    members = [np.flatnonzero(regions == r) for r in range(regions.max() + 1)]
    low = np.array([points[m].min(axis=0) for m in members])
    high = np.array([points[m].max(axis=0) for m in members])
    trees = [cKDTree(points[m]) for m in members]
    moments = _moments(points, regions)

    def near(x: int, y: int) -> bool:
        small, large = (x, y) if len(members[x]) <= len(members[y]) else (y, x)
        return bool(np.isfinite(trees[large].query(points[members[small]], distance_upper_bound=gap)[0]).any())

    def excess(pairs: list[tuple[int, int]]) -> dict[tuple[int, int], float]:
        if not pairs:
            return {}
        x, y = np.array(pairs).T
        return dict(zip(pairs, _moments_excess(moments[x] + moments[y], box).tolist()))

    # Nearness of a union is nearness to either piece: it is found once, and a merge only unites neighbours.
    # Only pieces whose boxes come within the gap can: every pair's boxes at once, then their points.
    boxes_near = np.all((low[:, None] - high[None] <= gap) & (low[None] - high[:, None] <= gap), axis=2)
    neighbours = [set() for _ in members]
    for x, y in zip(*(index.tolist() for index in np.nonzero(np.triu(boxes_near, 1)))):
        if near(x, y):
            neighbours[x].add(y)
            neighbours[y].add(x)
    fits = excess([(x, y) for x in range(len(members)) for y in sorted(neighbours[x]) if x < y])
    while fits:
        (x, y), best = min(fits.items(), key=lambda item: (item[1], item[0]))
        if best > margin:
            break
        members[x] = np.concatenate([members[x], members[y]])
        members[y] = members[y][:0]
        moments[x] += moments[y]
        neighbours[x] = (neighbours[x] | neighbours[y]) - {x, y}
        for z in neighbours[y] - {x}:
            neighbours[z] = (neighbours[z] - {y}) | {x}
        neighbours[y] = set()
        fits = {pair: fit for pair, fit in fits.items() if x not in pair and y not in pair}
        fits.update(excess([(min(x, z), max(x, z)) for z in sorted(neighbours[x])]))
    joined = np.zeros(len(points), dtype=np.int64)
    for r, m in enumerate(members):
        joined[m] = r
    return np.unique(joined, return_inverse=True)[1]


def _part_count(regions: np.ndarray, pixel_area: np.ndarray, size: PartSize) -> int:
    """How many of ``regions`` are parts: those whose seen area reaches ``_PART_AREA_SHARE`` of a whole part's."""
    area = np.bincount(regions, weights=pixel_area)
    return int((area >= _PART_AREA_SHARE * size.box[0] * size.box[1]).sum())


def seed_labels(
    depth_m: np.ndarray,
    inside: np.ndarray,
    points: np.ndarray,
    fx_px: float,
    instances: int | None,
    jump_px: float = 1.5,
    fragment_fraction: float = 0.25,
    seed: int = 0,
    part_size: PartSize | None = None,
    unit_m: float = 1.0,
) -> np.ndarray:
    """Labels 1..N for the ``inside`` pixels' points (n, 3), in row-major pixel order.

    ``part_size``, in the units of ``points`` (``unit_m`` metres each), lets fragments and islands go by the
    part's shape and occluded pieces rejoin; see :func:`whole_part_sizes` for measuring it. With
    ``instances`` None the parts are counted, which needs ``part_size``: a region is a part when its seen area
    is at least ``_PART_AREA_SHARE`` of a whole part's, and the points of a region that is none and touches
    none (a sliver of the bin's wall, debris) are labelled 0, no part.
    """
    counting = instances is None
    if counting:
        if part_size is None:
            raise ValueError("counting the parts (instances auto) needs the part's size, which training measures")
        # Each pixel's footprint where it lies: the seen area of a region, whatever its depth.
        pixel_area = (depth_m[inside].astype(np.float64) / fx_px / unit_m) ** 2
        min_points = fragment_fraction * part_size.box[0] * part_size.box[1] / float(np.median(pixel_area))
    elif len(points) < instances:
        raise ValueError(f"{len(points)} points cannot hold {instances} instances")
    else:
        min_points = fragment_fraction * len(points) / instances
    raw = depth_regions(depth_m, inside, fx_px, jump_px)
    # Counting, a sizeable fragment beyond a clear step is another part seen only in part, as most are in a pile.
    # Given N, the count decides what is a part, and fragments join across any step.
    max_step_m = _PILE_STEP_JUMPS * jump_px * float(np.median(depth_m[inside])) / fx_px if counting else np.inf
    regions = _absorb_fragments(depth_m, inside, raw, min_points, max_step_m)
    if part_size is not None:
        regions = _reassign_fragments(depth_m, inside, points, raw, regions, min_points, part_size)
        regions = _split_misfits(depth_m, inside, points, regions, fx_px, jump_px, min_points, part_size)
        if counting:
            # With no count to stop at, every pair of occluded pieces that fits in one part rejoins: fits its box, as
            # well as its extent, since in a pile one part hides pieces of many, and a long part's extent holds two.
            box = _PIECE_BOX_SLACK * np.asarray(part_size.box)
            regions = _bridge_occluded(points, regions, _occlusions(depth_m, inside, regions), 1, part_size.extent, box)
            regions = _join_pieces(points, regions, part_size)
            instances = _part_count(regions, pixel_area, part_size)
            if instances == 0:
                return np.zeros(len(points), dtype=np.int64)
        elif regions.max() + 1 > instances:
            regions = _bridge_occluded(points, regions, _occlusions(depth_m, inside, regions), instances, part_size.extent)
        if regions.max() + 1 > instances:
            regions = _islands_by_shape(depth_m, inside, points, regions, instances, part_size)
    # A fragment that touched nothing to join (a flying pixel, a speck of the floor's noise) is no part: it
    # joins the nearest seed, and a seed too few is split from the widest below; a counted bin's is labelled 0.
    labels = _largest_to_labels(points, regions, instances, 0.5 * min_points)
    if counting:
        parts = np.argsort(-np.bincount(regions), kind="stable")[:instances]
        neighbours = _touching(depth_m, inside, regions)
        alone = [r for r in range(regions.max() + 1) if r not in parts and not neighbours[r] & set(parts.tolist())]
        labels[np.isin(regions, alone)] = 0
        return labels
    pixels = np.flatnonzero(inside)
    # Fewer regions than instances: touching parts merged; split the one that spans the most.
    while labels.max() < instances:
        spans = [np.ptp(points[labels == i], axis=0).max() for i in range(1, labels.max() + 1)]
        members = np.flatnonzero(labels == int(np.argmax(spans)) + 1)
        halves = _split_in_two(depth_m, pixels[members], points[members], fx_px, jump_px, min_points, seed)
        labels[members[halves == 1]] = labels.max() + 1
    return labels
