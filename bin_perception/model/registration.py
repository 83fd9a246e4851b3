"""The part's model from the seeds' views alone: every view brought into one frame without the network.

The network's poses put whichever face is up on the model's top (docs/METHOD.md), so a model
fused under them is a plate of one face. The depth crops, though, tell the faces apart: crops of the same
face up look alike once turned to the seed's long axis (:mod:`.observation`), up to a half turn. So:

1. **Faces.** The crops' nearest neighbours, under a distance that ignores a half turn of the crop, make a
   graph; spectral clustering cuts it into ``faces`` clusters, one per face the parts come to rest on, and
   a cluster too small to be a face joins its nearest. The crops are compared by their heights and by
   their outlines, which alone tell a flat part's faces apart. In each cluster the half turns are
   synchronised: the sign of each neighbour pair's better match, and the leading eigenvector of the
   signed graph.
2. **Face models.** In each cluster every view, turned by its crop's angle (and half turn) and centred, is
   refined by trimmed ICP against the cluster's fusion, a few rounds; the views the fusion explains worst
   (strays from other faces) are left out of the face's model, which is then sharp but one-sided.
3. **Assembly.** Each face model, seen along its own viewing axis, declares empty the space in front of its
   surface and outside its outline (a height map). Another face model, placed at one of the 24 axis-aligned
   turns of its frame (where asked, also after turns about its long axis) and any shift, must put no point
   there, and must leave none of this one's there
   either, while touching it. All shifts are scored at once by FFT correlation of voxel grids. The best few
   placements of each face against a reference face are combined, and the combination whose faces violate
   each other's empty space least, over all pairs and references, wins: the best few by the fusion's voxel,
   judged again at a finer cell.
4. **Closing.** All views, posed through their face's placement, are refined by ICP against the closed
   model's fusion, a few rounds, the later ones fusing only the views that fit best. (Trying every view
   at the model's 24 turns as well moved none that mattered: 68 against 70 % in one frame on the
   housing, at 2.5 times the time.)

Nothing here reads ground truth; the views' poses are found up to one rigid motion of the whole, which is
all a model needs.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import fft, ndimage
from scipy.sparse import csr_matrix
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation
from sklearn.cluster import SpectralClustering
from tqdm import tqdm

from .fusion import fuse_views

# The 24 rotations that map the coordinate axes onto themselves (signed): where a part rests on its faces.
_AXIS_TURNS = Rotation.create_group("O").as_matrix()


def placement_turns(long_axis_step_deg: float | None = None) -> np.ndarray:
    """The turns a face model is placed at: the 24 axis-aligned ones, and with ``long_axis_step_deg`` also those
    of them that keep its long axis (x) on the reference's long axis after turns about it in those steps. A
    part's rests keep its longest side level, but two rests may differ by any turn about it (a bracket's
    tent on the edges of its legs meets its base-down rest at about 40 degrees)."""
    if long_axis_step_deg is None:
        return _AXIS_TURNS
    if not 0 < long_axis_step_deg < 90:
        raise ValueError(f"long_axis_step_deg {long_axis_step_deg}: expected 0 to 90 degrees")
    along = _AXIS_TURNS[np.abs(_AXIS_TURNS[:, 0, 0]) > 0.5]
    angles = np.arange(long_axis_step_deg, 90 - 1e-9, long_axis_step_deg)[:, None]
    about_long_axis = Rotation.from_euler("x", angles, degrees=True).as_matrix()
    return np.concatenate([_AXIS_TURNS, (along[:, None] @ about_long_axis[None]).reshape(-1, 3, 3)])


# ICP keeps the nearest 80 % of a view's matches: the rest are its seed's stray pixels or faces the model
# does not have yet. Fits are scored on the same share.
_TRIM = 0.8
# A face's model keeps its cluster's best-explained views only: the clusters are about three-quarters pure.
_FACE_KEEP = 0.7
# The closed model is fused from the views that fit it best: the rest are as likely a wrong turn's.
_MODEL_KEEP = 0.65
# A face cluster holds at least this share of an even split of the views among the faces.
_MIN_FACE_SHARE = 0.5
# A placement must bring at least this share of its points within two voxels of the reference face's.
_MIN_CONTACT = 0.05
# Rounds of ICP of every view against the closed model; the later half fuse only the best-fitting views.
_CLOSING_ROUNDS = 4
# Each face keeps this many of its best placements against a reference face for the joint choice.
_PLACEMENTS_KEPT = 4
# The best assemblies by the empty space at the fusion's voxel are judged again at this finer cell, and the
# best of them by that wins. A flat part's two faces are each other's mirror image: placed on each other end
# for end, a lever's differ only where its boss stands 1.5 mm wider than its arm, which the voxel's margin
# hides. A cell much finer than this judges the faces' own noise instead (a bolt's).
_FINE_CELL_M = 0.00125
_REJUDGED = 12
# Grid voxels per radius of the largest face model: fine enough for its features, small enough for FFTs.
_VOXELS_PER_RADIUS = 22


@dataclass(frozen=True)
class Registration:
    """Every view's pose in one model frame and the model they fuse to.

    ``poses`` (V, 4, 4) camera_from_model in metres; ``fit_m`` (V,) each view's trimmed mean distance to
    ``model_m`` (k, 3), the voxel centres that the best-fitting views agree on; ``faces`` (V,) each view's
    face cluster."""

    poses: np.ndarray
    fit_m: np.ndarray
    model_m: np.ndarray
    faces: np.ndarray


def _pose(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    pose = np.eye(4)
    pose[:3, :3], pose[:3, 3] = R, t
    return pose


def _in_model(points: np.ndarray, pose: np.ndarray) -> np.ndarray:
    return (points - pose[:3, 3]) @ pose[:3, :3]


def _turn_about_z(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def icp(points: np.ndarray, pose: np.ndarray, model_tree: cKDTree, model: np.ndarray, iterations: int = 8) -> tuple[np.ndarray, float]:
    """``pose`` (camera_from_model) of ``points`` (camera frame) refined by trimmed point-to-point ICP
    against ``model``, and the trimmed mean distance there."""
    R, t = pose[:3, :3], pose[:3, 3]
    for _ in range(iterations):
        distance, nearest = model_tree.query((points - t) @ R)
        kept = distance <= np.quantile(distance, _TRIM)
        a, b = model[nearest[kept]], points[kept]
        a_mean, b_mean = a.mean(0), b.mean(0)
        U, _, Vt = np.linalg.svd((a - a_mean).T @ (b - b_mean))
        R = Vt.T @ np.diag([1.0, 1.0, np.sign(np.linalg.det(Vt.T @ U.T))]) @ U.T
        t = b_mean - R @ a_mean
    distance = np.sort(model_tree.query((points - t) @ R)[0])
    return _pose(R, t), float(distance[: max(1, int(_TRIM * len(distance)))].mean())


def face_clusters(crops: np.ndarray, faces: int, neighbours: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Each crop's face cluster (V,), at most ``faces`` of them, and whether it is half-turned (V,) against
    its cluster.

    ``crops`` (V, S, S) are the seeds' height crops turned to their long axes, zero off the seed."""
    count = len(crops)
    # A flat part lying flat has heights near zero, as the space around it has: its crops differ by their
    # outline alone (a lever's two faces are each other's mirror image), which the heights do not show.
    # The outline is compared too, weighted as a typical height of the crops.
    crops = np.asarray(crops, dtype=np.float64)
    seen = crops != 0
    typical_height = float(np.quantile(np.abs(crops[seen]), 0.9)) if seen.any() else 0.0
    features = np.stack([crops, typical_height * seen], axis=1)
    flat = features.reshape(count, -1)
    turned = np.rot90(features, 2, axes=(2, 3)).reshape(count, -1)
    norms = (flat**2).sum(1)
    straight = norms[:, None] + norms[None] - 2 * flat @ flat.T
    half_turned = norms[:, None] + norms[None] - 2 * flat @ turned.T
    distance = np.minimum(straight, half_turned)
    np.fill_diagonal(distance, np.inf)
    nearest = np.argsort(distance, axis=1)[:, :neighbours]
    rows = np.repeat(np.arange(count), neighbours)
    graph = csr_matrix((np.ones(count * neighbours), (rows, nearest.ravel())), shape=(count, count))
    graph = ((graph + graph.T) > 0).astype(np.float64)
    # A dense similarity mixes faces (their crops differ by less than a part's pose spread); the
    # neighbour graph does not, and 'discretize' is steadier than k-means on its embedding.
    with warnings.catch_warnings():
        # Faces that share no neighbours leave the graph in pieces: that is what the clustering finds.
        warnings.filterwarnings("ignore", message="Graph is not fully connected")
        labels = SpectralClustering(faces, affinity="precomputed", random_state=seed, assign_labels="discretize").fit_predict(graph)
    # A cluster of less than half a face's share is no face of its own but a few views of another, set
    # apart by their poses' spread: a face model made of so few places every other face wrongly (a lever's
    # two faces, stood on end). Its views join the cluster of their nearest view elsewhere.
    sizes = np.bincount(labels, minlength=faces)
    kept = sizes >= _MIN_FACE_SHARE * count / faces
    if kept.any() and not kept.all():
        strays = np.flatnonzero(~kept[labels])
        others = np.flatnonzero(kept[labels])
        labels[strays] = labels[others[np.argmin(distance[np.ix_(strays, others)], axis=1)]]
        labels = np.unique(labels, return_inverse=True)[1]
    signs = np.zeros((count, count))
    for i, j in zip(rows, nearest.ravel()):
        if labels[i] == labels[j]:
            signs[i, j] = signs[j, i] = 1.0 if straight[i, j] <= half_turned[i, j] else -1.0
    flipped = np.zeros(count, bool)
    for face in range(labels.max() + 1):
        members = np.flatnonzero(labels == face)
        if len(members) > 1:
            leading = np.linalg.eigh(signs[np.ix_(members, members)])[1][:, -1]
            flipped[members] = leading < 0
    return labels, flipped


@dataclass(frozen=True)
class _FaceModel:
    members: np.ndarray  # indices of the cluster's views
    poses: np.ndarray  # (len(members), 4, 4) camera_from_face
    points: np.ndarray  # (k, 3) the face's model, viewing axis +z, long axis x, centred


def _face_model(views: Sequence[np.ndarray], angles: np.ndarray, members: np.ndarray, voxel_m: float, rounds: int) -> _FaceModel:
    poses = np.stack([_pose(_turn_about_z(angles[i]), views[i].mean(0)) for i in members])
    for _ in range(rounds):
        model = fuse_views([_in_model(views[i], p) for i, p in zip(members, poses)], voxel_m, 3)
        if len(model) < 4:
            raise ValueError(f"register_views: the {len(members)} views of one face agree on too little to register")
        tree = cKDTree(model)
        poses = np.stack([icp(views[i], p, tree, model)[0] for i, p in zip(members, poses)])
    fits = np.array([icp(views[i], p, tree, model, iterations=0)[1] for i, p in zip(members, poses)])
    kept = fits <= np.quantile(fits, _FACE_KEEP)
    points = fuse_views([_in_model(views[i], p) for i, p, k in zip(members, poses, kept) if k], voxel_m, 4)
    if len(points) < 4:
        raise ValueError(f"register_views: the best {int(kept.sum())} views of one face agree on too little to make its model")
    # The face's own frame: its centroid, its outline's long axis on x (about the viewing axis, z).
    centre = points.mean(0)
    long_axis = np.linalg.eigh(np.cov((points[:, :2] - centre[:2]).T))[1][:, -1]
    canonical = _pose(_turn_about_z(np.arctan2(long_axis[1], long_axis[0])), centre)  # face_from_canonical
    return _FaceModel(members, poses @ canonical, _in_model(points, canonical))


class _EmptySpace:
    """What one face model, seen along its viewing axis (+z), says is empty: the space in front of its
    surface (by more than ``margin_m``) and outside its outline."""

    def __init__(self, points: np.ndarray, cell_m: float, margin_m: float):
        self.cell_m, self.margin_m = cell_m, margin_m
        self.origin = points[:, :2].min(0) - 5 * cell_m
        cells = np.floor((points[:, :2] - self.origin) / cell_m).astype(int)
        shape = cells.max(0) + 6
        surface = np.full(shape, np.inf)
        np.minimum.at(surface, (cells[:, 0], cells[:, 1]), points[:, 2])
        seen = np.isfinite(surface)
        outline = ndimage.binary_fill_holes(ndimage.binary_closing(seen, iterations=2))
        # Cells inside the outline that no point fell in take their neighbours' nearest surface.
        for _ in range(4):
            surface = np.where(np.isfinite(surface), surface, ndimage.minimum_filter(surface, 3))
        self.outline = ndimage.binary_dilation(outline, iterations=1)
        self.surface = np.where(self.outline & np.isfinite(surface), surface, -np.inf)

    def __call__(self, points: np.ndarray) -> np.ndarray:
        """Whether each of ``points`` (n, 3), in the face's frame, lies in its empty space."""
        cells = np.floor((points[:, :2] - self.origin) / self.cell_m).astype(int)
        inside = np.flatnonzero((cells >= 0).all(1) & (cells < self.outline.shape).all(1))
        empty = np.ones(len(points), bool)
        row, col = cells[inside, 0], cells[inside, 1]
        empty[inside] = ~self.outline[row, col] | (points[inside, 2] < self.surface[row, col] - self.margin_m)
        return empty


class _Grid:
    """A cube of voxels centred at the origin, and FFT correlation over all shifts within ``reach``."""

    def __init__(self, voxel_m: float, half_voxels: int, reach_voxels: int):
        self.voxel_m, self.half, self.reach = voxel_m, half_voxels, reach_voxels
        self.size = 2 * half_voxels
        axis = (np.arange(self.size) - half_voxels + 0.5) * voxel_m
        self.centres = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
        # Shifts within reach never wrap a grid this long onto itself: no need to double it.
        self.padded = (fft.next_fast_len(self.size + reach_voxels, real=True),) * 3

    def occupancy(self, points: np.ndarray) -> np.ndarray:
        index = np.floor(points / self.voxel_m).astype(int) + self.half
        inside = ((index >= 0) & (index < self.size)).all(1)
        grid = np.zeros((self.size,) * 3)
        np.add.at(grid, tuple(index[inside].T), 1.0)
        return grid

    def spectrum(self, grid: np.ndarray) -> np.ndarray:
        return fft.rfftn(grid, self.padded, axes=(0, 1, 2), workers=-1)

    def correlation(self, cross_spectrum: np.ndarray) -> np.ndarray:
        """c[t] = sum_p a[p] b[p + t], for shifts t within ``reach`` voxels (index ``reach`` = no shift), from
        conj(A) B: a sum of such products gives the sum of the correlations in one inverse transform."""
        c = fft.irfftn(cross_spectrum, self.padded, axes=(0, 1, 2), workers=-1)
        c = np.roll(c, self.reach, axis=(0, 1, 2))
        span = 2 * self.reach + 1
        return c[:span, :span, :span]


@dataclass(frozen=True)
class _Reference:
    """A reference face's grids, as spectra: its empty space, its points, and the voxels near them."""

    empty: np.ndarray
    points: np.ndarray
    near: np.ndarray
    count: int

    @classmethod
    def of(cls, face: _FaceModel, empty: _EmptySpace, grid: _Grid) -> _Reference:
        occupied = grid.occupancy(face.points)
        near = ndimage.binary_dilation(occupied > 0, iterations=2).astype(np.float64)
        empty_space = empty(grid.centres).reshape((grid.size,) * 3).astype(np.float64)
        return cls(grid.spectrum(empty_space), grid.spectrum(occupied), grid.spectrum(near), len(face.points))


def _placements(
    references: dict[int, _Reference], other: _FaceModel, other_empty_space: _EmptySpace, grid: _Grid, turns: np.ndarray
) -> dict[int, list[tuple[float, np.ndarray]]]:
    """The best placements (score, reference_from_other) of ``other``'s face model at ``turns`` against each reference face."""
    found: dict[int, list[tuple[float, np.ndarray]]] = {ref: [] for ref in references}
    for turn in turns:
        occupied = np.conj(grid.spectrum(grid.occupancy(other.points @ turn.T))) / len(other.points)
        # Other's empty space at grid point g of the reference frame, before the shift: empty(turn^T g).
        other_empty = np.conj(grid.spectrum(other_empty_space(grid.centres @ turn).reshape((grid.size,) * 3).astype(np.float64)))
        for ref, reference in references.items():
            violation = grid.correlation(occupied * reference.empty + other_empty * reference.points / reference.count)
            contact = grid.correlation(occupied * reference.near)
            score = np.where(contact >= _MIN_CONTACT, violation, np.inf)
            best = np.unravel_index(np.argmin(score), score.shape)
            if np.isfinite(score[best]):
                found[ref].append((float(score[best]), _pose(turn, (np.array(best) - grid.reach) * grid.voxel_m)))
    return {ref: sorted(placements, key=lambda placement: placement[0])[:_PLACEMENTS_KEPT] for ref, placements in found.items()}


def _mutual_violation(faces: list[_FaceModel], empty: list[_EmptySpace], placement: dict[int, np.ndarray]) -> float:
    total = 0.0
    for a, b in itertools.combinations(placement, 2):
        b_from_a = np.linalg.inv(placement[b]) @ placement[a]
        a_from_b = np.linalg.inv(b_from_a)
        total += empty[b](faces[a].points @ b_from_a[:3, :3].T + b_from_a[:3, 3]).mean()
        total += empty[a](faces[b].points @ a_from_b[:3, :3].T + a_from_b[:3, 3]).mean()
    return total


def assemble(faces: list[_FaceModel], voxel_m: float, bar: tqdm | None = None, turns: np.ndarray = _AXIS_TURNS) -> list[np.ndarray]:
    """Each face model's placement (4, 4) in one frame (model_from_face) among ``turns`` (:func:`placement_turns`),
    chosen as the module describes; ``bar`` advances by one per face."""
    radius = max(float(np.linalg.norm(f.points, axis=1).max()) for f in faces)
    grid_voxel = radius / _VOXELS_PER_RADIUS
    grid = _Grid(grid_voxel, int(np.ceil(2.05 * _VOXELS_PER_RADIUS)), _VOXELS_PER_RADIUS)
    empty = [_EmptySpace(f.points, voxel_m, 1.3 * voxel_m) for f in faces]
    references = {ref: _Reference.of(face, empty[ref], grid) for ref, face in enumerate(faces)}
    # Each face's turns are transformed once, against every other face as the reference.
    options: dict[int, dict[int, list[tuple[float, np.ndarray]]]] = {ref: {} for ref in references}
    for other, face in enumerate(faces):
        placed = _placements({ref: r for ref, r in references.items() if ref != other}, face, empty[other], grid, turns)
        for ref, placements in placed.items():
            options[ref][other] = placements
        if bar is not None:
            bar.update()
    scored = []
    for ref in range(len(faces)):
        others = [o for o in range(len(faces)) if o != ref]
        for choice in itertools.product(*(options[ref][o] for o in others)):
            placement = {ref: np.eye(4)} | {o: pose for o, (_, pose) in zip(others, choice)}
            scored.append((_mutual_violation(faces, empty, placement), placement))
    if not scored:
        raise ValueError("no placement of the face models touches another: too few views per face")
    scored.sort(key=lambda option: option[0])
    fine = [_EmptySpace(f.points, _FINE_CELL_M, 1.3 * _FINE_CELL_M) for f in faces]
    best = min((placement for _, placement in scored[:_REJUDGED]), key=lambda placement: _mutual_violation(faces, fine, placement))
    return [best[face] for face in range(len(faces))]


def register_views(
    views_m: Sequence[np.ndarray],
    crops: np.ndarray,
    angles: np.ndarray,
    faces: int = 4,
    voxel_m: float = 0.0015,
    rounds: int = 6,
    progress: bool = True,
    long_axis_step_deg: float | None = None,
) -> Registration:
    """Every view's pose in one model frame, without the network (see the module's steps).

    ``views_m``: each seed's points (n_i, 3) in the camera frame, metres; ``crops`` (V, S, S) and
    ``angles`` (V,) radians: its height crop turned to its long axis, and that turn. ``long_axis_step_deg``
    also tries the faces at turns about their long axes (:func:`placement_turns`), at about 2.7 times the
    assembly's cost. ``progress`` shows a bar over the faces, the assembly's faces and the closing rounds."""
    if len(views_m) != len(crops) or len(crops) != len(angles):
        raise ValueError(f"register_views: {len(views_m)} views, {len(crops)} crops and {len(angles)} angles must agree")
    if rounds < 1:
        raise ValueError(f"register_views: rounds {rounds}: each face needs at least one round of ICP")
    if len(views_m) < 8 * faces:
        raise ValueError(f"register_views: {len(views_m)} views are too few for {faces} faces (need {8 * faces})")
    labels, flipped = face_clusters(crops, faces)
    found = int(labels.max()) + 1
    bar = tqdm(total=2 * found + _CLOSING_ROUNDS, desc="register the views", unit="step", leave=False, disable=not progress)
    angles = np.asarray(angles, np.float64) + np.pi * flipped
    face_models = []
    for face in range(found):
        face_models.append(_face_model(views_m, angles, np.flatnonzero(labels == face), voxel_m, rounds))
        bar.update()
    placements = assemble(face_models, voxel_m, bar, placement_turns(long_axis_step_deg))
    poses: list[np.ndarray | None] = [None] * len(views_m)
    for face, placement in zip(face_models, placements):
        for i, pose in zip(face.members, face.poses):
            poses[i] = pose @ np.linalg.inv(placement)
    kept = np.ones(len(views_m), bool)
    for closing in range(_CLOSING_ROUNDS):
        model = fuse_views([_in_model(v, p) for v, p, k in zip(views_m, poses, kept) if k], voxel_m, 3)
        tree = cKDTree(model)
        refined = [icp(v, p, tree, model) for v, p in zip(views_m, poses)]
        poses, fits = [pose for pose, _ in refined], np.array([fit for _, fit in refined])
        if closing >= _CLOSING_ROUNDS // 2:
            kept = fits <= np.quantile(fits, _MODEL_KEEP)
        bar.update()
    bar.close()
    model = fuse_views([_in_model(v, p) for v, p, k in zip(views_m, poses, kept) if k], voxel_m, 3)
    return Registration(np.stack(poses), fits, model, labels)
