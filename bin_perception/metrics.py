"""Evaluation metrics: instance segmentation, 6D pose and learned-model fidelity.

Pure functions on numpy arrays; lengths in metres, angles in degrees.

- :func:`pairwise_scores`: the pairwise precision, recall and F1 of a labelling
  (Wu 2019, Sec. 4.2.5 and Table 4.1).
- :func:`pose_errors`: symmetry-aware rotation, translation, ADD and ADD-S errors
  of estimated instance poses against ground truth, and the BOP challenge's MSSD
  and MSPD; :func:`pose_recalls`: what fraction of the true instances got a pose
  correct enough to grasp by, ADD(-S) under 10 % of the diameter and BOP's AR.
- :func:`chamfer_distance` (Wu 2019, Eq. 4.1) and :func:`model_fidelity`: how
  close a learned point-cloud model is to the part's true surface.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import open3d as o3d
from scipy.optimize import linear_sum_assignment
from scipy.spatial import ConvexHull, QhullError, cKDTree
from scipy.spatial.transform import Rotation

from .extras import require
from .geometry import transform_points

if TYPE_CHECKING:
    import trimesh

# ---------------------------------------------------------------------------
# Instance segmentation


@dataclass(frozen=True)
class PairwiseScores:
    """Pair-counting scores of a predicted labelling against the true one.

    Counts are over unordered pairs of distinct points; a pair is positive in a
    labelling when both of its points carry the same label.
    """

    precision: float
    recall: float
    f1: float
    tp: int  # same instance in both labellings
    fp: int  # same predicted label, different true instances
    fn: int  # same true instance, different predicted labels
    tn: int  # different in both


def _same_label_pairs(counts: np.ndarray) -> int:
    """Unordered pairs within groups of the given sizes: sum of c * (c - 1) / 2."""
    counts = counts.astype(np.int64)
    return int((counts * (counts - 1)).sum() // 2)


def pairwise_scores(true_labels: np.ndarray, pred_labels: np.ndarray) -> PairwiseScores:
    """The pairwise precision, recall and F1 of ``pred_labels`` against ``true_labels``.

    Label values are arbitrary (any that ``np.unique`` sorts); only which points
    share a label matters, so the scores are invariant to renaming labels. The
    pair counts come from the sizes of the true instances, of the predicted
    ones and of the non-empty cells of their contingency table: three sorts of
    n labels, O(n log n) time and O(n) memory, whatever the number of labels;
    the n * (n - 1) / 2 pairs are never formed.

    Degenerate cases follow from reading each ratio as "the fraction of claims
    that hold": a prediction that puts no two points together makes no false
    claim (precision 1), and a truth with no two points together leaves nothing
    to miss (recall 1). F1 is then ``2 tp / (2 tp + fp + fn)``, which is 1 when
    both labellings agree on every pair, including the pairless single point.

    Raises:
        ValueError: if the labellings are not 1-D, differ in length, or are empty.
    """
    true_labels = np.asarray(true_labels)
    pred_labels = np.asarray(pred_labels)
    if true_labels.ndim != 1 or pred_labels.ndim != 1:
        raise ValueError(
            f"labels must be 1-D arrays, got true_labels {true_labels.shape} and pred_labels {pred_labels.shape}"
        )
    if len(true_labels) != len(pred_labels):
        raise ValueError(
            f"true_labels has {len(true_labels)} points but pred_labels has {len(pred_labels)}; "
            "they must label the same points"
        )
    n = len(true_labels)
    if n == 0:
        raise ValueError("true_labels and pred_labels are empty: there are no points to score")

    _, true_ids = np.unique(true_labels, return_inverse=True)
    pred_values, pred_ids = np.unique(pred_labels, return_inverse=True)
    # One id per (true, predicted) cell; only the occupied cells are counted, never a k1 x k2 table.
    _, cell_sizes = np.unique(true_ids.astype(np.int64) * len(pred_values) + pred_ids, return_counts=True)

    tp = _same_label_pairs(cell_sizes)
    same_true = _same_label_pairs(np.bincount(true_ids))
    same_pred = _same_label_pairs(np.bincount(pred_ids))
    fp, fn = same_pred - tp, same_true - tp
    tn = n * (n - 1) // 2 - tp - fp - fn

    precision = tp / same_pred if same_pred else 1.0
    recall = tp / same_true if same_true else 1.0
    disagreements = fp + fn
    f1 = 2 * tp / (2 * tp + disagreements) if tp or disagreements else 1.0
    return PairwiseScores(precision, recall, f1, tp, fp, fn, tn)


def label_image_scores(true_labels: np.ndarray, pred_labels: np.ndarray) -> PairwiseScores:
    """:func:`pairwise_scores` of two (H, W) label images, over the pixels both call a part (label > 0).

    A method labels the points it was given (a frame's workspace); the truth's background and the
    pixels no method saw are scored by neither, as the evaluation of a bag scores them.
    """
    true_labels, pred_labels = np.asarray(true_labels), np.asarray(pred_labels)
    if true_labels.shape != pred_labels.shape:
        raise ValueError(f"label images differ in size: true {true_labels.shape}, predicted {pred_labels.shape}")
    scored = (true_labels > 0) & (pred_labels > 0)
    return pairwise_scores(true_labels[scored], pred_labels[scored])


# A part that shows less than this share of the median instance's points counts for no count: nearly hidden,
# no gripper reaches it, and whether a method sees it is a matter of a few pixels.
COUNT_MIN_SHARE = 0.25


@dataclass(frozen=True)
class CountAccuracy:
    """How often a count of the parts per frame was right: exactly, and within one."""

    exact: float
    within_one: float
    min_share: float  # the share of the median instance's points that a true instance shows to count

    def to_dict(self) -> dict[str, float]:
        return {"count_exact": self.exact, "count_within_one": self.within_one, "count_min_share": self.min_share}


def count_accuracy(counted: np.ndarray, true_points: Sequence[np.ndarray], min_share: float = COUNT_MIN_SHARE) -> CountAccuracy:
    """The accuracy of ``counted`` (F,), one count per frame, against the true instances of each frame that show at
    least ``min_share`` of the median true instance's points over all the frames (``true_points``: per frame, the
    seen points of each true instance)."""
    counted = np.asarray(counted)
    if len(counted) != len(true_points) or len(counted) == 0:
        raise ValueError(f"count_accuracy: {len(counted)} counts for {len(true_points)} frames (need one per frame, at least one)")
    sizes = [np.asarray(points) for points in true_points]
    every = np.concatenate(sizes)
    least = min_share * float(np.median(every)) if len(every) else 0.0
    truth = np.array([int((points >= least).sum()) for points in sizes])
    return CountAccuracy(float(np.mean(counted == truth)), float(np.mean(np.abs(counted - truth) <= 1)), min_share)


# ---------------------------------------------------------------------------
# 6D pose

_SYMMETRY = re.compile(r"(none|Cinf|Dinf|[CD](\d+))")
_HALF_TURN_ABOUT_X = np.diag([1.0, -1.0, -1.0])


def _discrete_symmetry_group(symmetry: str) -> np.ndarray | None:
    """The rotations (G, 3, 3) of a finite symmetry group; None for "Cinf" and "Dinf".

    The naming is that of :class:`bin_perception.sim.parts.Part`: "none", "C<n>"
    (n-fold about z), "D<n>" (C<n> plus a half-turn about x), "Cinf", "Dinf".
    """
    match = _SYMMETRY.fullmatch(symmetry)
    if match is None or match.group(2) == "0":
        raise ValueError(
            f"unknown symmetry {symmetry!r}: expected 'none', 'C<n>' or 'D<n>' with n >= 1, 'Cinf' or 'Dinf'"
        )
    if symmetry in ("Cinf", "Dinf"):
        return None
    if symmetry == "none":
        return np.eye(3)[None]
    order = int(match.group(2))
    spins = Rotation.from_rotvec(np.outer(2 * np.pi * np.arange(order) / order, [0.0, 0.0, 1.0])).as_matrix()
    if symmetry.startswith("C"):
        return spins
    return np.concatenate([spins, spins @ _HALF_TURN_ABOUT_X])


def _check_rotations(R: np.ndarray, name: str) -> None:
    """Raise unless ``R`` is (..., 3, 3) proper rotations, within 1e-4: loose enough for poses kept in float32."""
    if R.shape[-2:] != (3, 3):
        raise ValueError(f"{name} must hold 3x3 rotation matrices, got shape {R.shape}")
    identity_error = np.abs(np.swapaxes(R, -1, -2) @ R - np.eye(3)).max(initial=0.0)
    if not np.isfinite(identity_error) or identity_error > 1e-4 or np.any(np.linalg.det(R) <= 0):
        raise ValueError(f"{name} must be proper rotations (orthonormal, determinant +1)")


def rotation_error_deg(true_rotations: np.ndarray, pred_rotations: np.ndarray, symmetry: str = "none") -> np.ndarray:
    """The angle of the smallest rotation taking each predicted rotation to its true one, modulo symmetry.

    A rotation ``R @ S`` renders the same part as ``R`` for every ``S`` of the
    part's symmetry group, so the error of a finite group is the least angle of
    ``true.T @ pred @ S`` over its elements. For the continuous groups the least
    angle over all spins about z is the angle between the two z axes ("Cinf");
    "Dinf" also turns the axis end for end, so it is that angle or its supplement,
    whichever is smaller.

    Args:
        true_rotations, pred_rotations: (..., 3, 3) rotation matrices, broadcastable.
        symmetry: the part's symmetry group, as named in :class:`bin_perception.sim.parts.Part`.

    Returns:
        The errors in degrees, in [0, 180], with the broadcast batch shape.
    """
    true_rotations = np.asarray(true_rotations, dtype=np.float64)
    pred_rotations = np.asarray(pred_rotations, dtype=np.float64)
    _check_rotations(true_rotations, "true_rotations")
    _check_rotations(pred_rotations, "pred_rotations")
    group = _discrete_symmetry_group(symmetry)
    if group is None:
        true_axes, pred_axes = true_rotations[..., :, 2], pred_rotations[..., :, 2]
        cosine = np.einsum("...i,...i->...", true_axes, pred_axes)
        sine = np.linalg.norm(np.cross(true_axes, pred_axes), axis=-1)
        # atan2 keeps small angles exact, where arccos of a cosine near 1 loses half the digits.
        return np.degrees(np.arctan2(sine, np.abs(cosine) if symmetry == "Dinf" else cosine))
    relative = np.swapaxes(true_rotations, -1, -2) @ pred_rotations
    candidates = relative[..., None, :, :] @ group
    angles = Rotation.from_matrix(candidates.reshape(-1, 3, 3)).magnitude().reshape(candidates.shape[:-2])
    return np.degrees(angles.min(axis=-1))


@dataclass(frozen=True, eq=False)
class PoseErrors:
    """Errors of the matched instances, one entry each, and the counts left unmatched.

    Matched pair ``i`` is ground-truth instance ``true_index[i]`` (a row of
    ``true_poses``) and prediction ``pred_index[i]``.
    """

    true_index: np.ndarray  # (K,) int
    pred_index: np.ndarray  # (K,) int
    rotation_error_deg: np.ndarray  # (K,) symmetry-aware
    translation_error_m: np.ndarray  # (K,)
    add_m: np.ndarray  # (K,) mean distance between corresponding model points
    adds_m: np.ndarray  # (K,) mean distance from each true model point to the nearest predicted one
    mssd_m: np.ndarray  # (K,) BOP's maximum symmetry-aware surface distance
    mspd_px: np.ndarray  # (K,) BOP's maximum symmetry-aware projection distance (NaN without K)
    unmatched_true: int  # ground-truth instances no prediction was matched to
    unmatched_pred: int  # predictions matched to no ground-truth instance
    # (K,) the angle between the true and predicted symmetry axes (z; either end for a D group), which leaves out
    # the turn about the axis: a hex's turn rests on corners that stand a millimetre proud of its flats, while
    # the axis is what a gripper comes down along. NaN for a part without one.
    axis_error_deg: np.ndarray


def _check_poses(poses: np.ndarray, name: str) -> np.ndarray:
    poses = np.asarray(poses, dtype=np.float64)
    if poses.ndim != 3 or poses.shape[1:] != (4, 4):
        raise ValueError(f"{name} must be (N, 4, 4) homogeneous transforms, got shape {poses.shape}")
    if not np.all(np.isfinite(poses)):
        raise ValueError(f"{name} holds non-finite values")
    _check_rotations(poses[:, :3, :3], f"{name}[:, :3, :3]")
    return poses


def symmetry_rotations(symmetry: str, model_points: np.ndarray) -> np.ndarray:
    """The rotations (G, 3, 3) of the part's symmetry group; a continuous group sampled finely enough that
    no model point moves more than 1 % of the part's diameter between samples, as the BOP toolkit does."""
    group = _discrete_symmetry_group(symmetry)
    if group is not None:
        return group
    radius_m = float(np.linalg.norm(np.asarray(model_points)[:, :2], axis=1).max())
    steps = max(int(np.ceil(2 * np.pi * radius_m / (0.01 * part_diameter(model_points)))), 1)
    spins = Rotation.from_rotvec(np.outer(2 * np.pi * np.arange(steps) / steps, [0.0, 0.0, 1.0])).as_matrix()
    return spins if symmetry == "Cinf" else np.concatenate([spins, spins @ _HALF_TURN_ABOUT_X])


def part_diameter(model_points: np.ndarray) -> float:
    """The largest distance between two points of the part (BOP's diameter), over their convex hull."""
    points = np.asarray(model_points, dtype=np.float64)
    try:
        points = points[ConvexHull(points).vertices]
    except QhullError:  # flat or degenerate: every point is a candidate
        pass
    return float(np.sqrt(((points[:, None] - points[None]) ** 2).sum(-1).max()))


def _projected_px(K: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points[..., :2] / points[..., 2:3] * np.diag(K)[:2] + K[:2, 2]


def pose_errors(
    true_poses: np.ndarray,
    pred_poses: np.ndarray,
    model_points: np.ndarray,
    symmetry: str = "none",
    K: np.ndarray | None = None,
) -> PoseErrors:
    """Match predicted instance poses to the true ones and measure each matched pair's errors.

    Instances are matched one to one by the Hungarian assignment on the distance
    between their positions. Each pose places the part's centre of mass, which
    every symmetry of the part leaves fixed and no two solid parts can share, so
    that distance names the physical part a prediction claims whatever its
    rotation; a cost that mixes in the rotation, such as ADD-S, could hand a
    prediction with the right place but a wrong rotation to a neighbouring part.
    When the counts differ, the surplus on either side is reported as unmatched.

    Args:
        true_poses: (N, 4, 4) camera_from_part ground truth.
        pred_poses: (M, 4, 4) camera_from_part estimates, in the same part frame.
        model_points: (k, 3) points on the part, in the part frame, metres
            (e.g. samples of its mesh surface), for ADD and ADD-S.
        symmetry: the part's symmetry group (:class:`bin_perception.sim.parts.Part`),
            for the rotation error, MSSD and MSPD. ADD ignores it; ADD-S needs none, as its nearest points absorb it.
        K: the camera's (3, 3) intrinsics, for MSPD; without them MSPD is NaN.

    Returns:
        A :class:`PoseErrors` with one entry per matched pair, ordered by ``true_index``.
    """
    true_poses = _check_poses(true_poses, "true_poses")
    pred_poses = _check_poses(pred_poses, "pred_poses")
    model_points = np.asarray(model_points, dtype=np.float64)
    if model_points.ndim != 2 or model_points.shape[1] != 3 or len(model_points) == 0:
        raise ValueError(f"model_points must be a non-empty (k, 3) array, got shape {model_points.shape}")
    _discrete_symmetry_group(symmetry)  # reject a bad name even when nothing is matched

    distances_m = np.linalg.norm(true_poses[:, None, :3, 3] - pred_poses[None, :, :3, 3], axis=-1)
    true_index, pred_index = linear_sum_assignment(distances_m)
    matched_true, matched_pred = true_poses[true_index], pred_poses[pred_index]

    add_m, adds_m = np.empty(len(true_index)), np.empty(len(true_index))
    mssd_m, mspd_px = np.empty(len(true_index)), np.full(len(true_index), np.nan)
    # ADD-S in the part frame: the rigid map preserves distances, so one tree serves every pair.
    model_tree = cKDTree(model_points)
    symmetries = symmetry_rotations(symmetry, model_points)
    # The model placed by each symmetry of the part: (G, k, 3), in the part frame.
    symmetric_points = np.einsum("gij,kj->gki", symmetries, model_points)
    for i, (true_pose, pred_pose) in enumerate(zip(matched_true, matched_pred)):
        true_in_pred = transform_points(np.linalg.inv(pred_pose) @ true_pose, model_points)
        add_m[i] = np.linalg.norm(true_in_pred - model_points, axis=1).mean()
        adds_m[i] = model_tree.query(true_in_pred)[0].mean()
        predicted = transform_points(pred_pose, model_points)
        # The truth under every symmetry that renders the same part; the best of them is the one to beat.
        true_candidates = symmetric_points @ true_pose[:3, :3].T + true_pose[:3, 3]
        mssd_m[i] = np.linalg.norm(true_candidates - predicted, axis=-1).max(axis=1).min()
        if K is not None:
            shift_px = np.linalg.norm(_projected_px(K, true_candidates) - _projected_px(K, predicted), axis=-1)
            mspd_px[i] = shift_px.max(axis=1).min()

    axis_error_deg = np.full(len(true_index), np.nan)
    if symmetry != "none":
        axis_group = "Dinf" if symmetry.startswith("D") else "Cinf"
        axis_error_deg = rotation_error_deg(matched_true[:, :3, :3], matched_pred[:, :3, :3], axis_group)
    return PoseErrors(
        true_index=true_index,
        pred_index=pred_index,
        rotation_error_deg=rotation_error_deg(matched_true[:, :3, :3], matched_pred[:, :3, :3], symmetry),
        translation_error_m=distances_m[true_index, pred_index],
        add_m=add_m,
        adds_m=adds_m,
        mssd_m=mssd_m,
        mspd_px=mspd_px,
        unmatched_true=len(true_poses) - len(true_index),
        unmatched_pred=len(pred_poses) - len(pred_index),
        axis_error_deg=axis_error_deg,
    )


# BOP's thresholds: MSSD from 5 % to 50 % of the diameter, MSPD from 5 to 50 px at 640 px of width.
_MSSD_FRACTIONS = np.arange(0.05, 0.501, 0.05)
_MSPD_PX_AT_640 = np.arange(5.0, 50.1, 5.0)
ADD_FRACTION = 0.1


@dataclass(frozen=True)
class PoseRecalls:
    """How many of the true instances got a usable pose, over a set of frames. A true instance that no
    prediction was matched to counts as wrong in every recall, and as 180 degrees off in the rotation's
    statistics."""

    instances: int
    add_recall: float  # ADD (ADD-S for a symmetric part) under 10 % of the diameter
    ar_mssd: float
    ar_mspd: float  # NaN without intrinsics
    ar: float  # the mean of ar_mssd and ar_mspd (ar_mssd alone without intrinsics)
    rotation_median_deg: float
    rotation_p90_deg: float
    rotation_under_5deg: float
    rotation_under_15deg: float
    # With the poses' confidences: the fraction of frames whose most confident pose is correct (ADD(-S)
    # under 10 % of the diameter), and the reliability table, one row (low, high, poses, fraction correct) per
    # confidence bin; None without them.
    top_pick: float | None = None
    reliability: list[tuple[float, float, int, float]] | None = None
    # For a part with a symmetry axis: the median angle between the true and predicted axes (a miss counts
    # 180), beside the rotation's, which also counts the turn about the axis. None for a part without one.
    axis_median_deg: float | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_RELIABILITY_BINS = np.linspace(0.0, 1.0, 6)


def _correct_predictions(errors: PoseErrors, count: int, diameter_m: float, symmetry: str) -> np.ndarray:
    """(count,) whether each prediction is a correct pose: matched to a true instance within ADD(-S) < 0.1 d."""
    distance_m = errors.add_m if symmetry == "none" else errors.adds_m
    correct = np.zeros(count, dtype=bool)
    correct[errors.pred_index] = distance_m < ADD_FRACTION * diameter_m
    return correct


def instance_rotation_errors_deg(errors: Sequence[PoseErrors]) -> np.ndarray:
    """One rotation error per true instance of every frame's :func:`pose_errors`: the matched ones', then 180
    degrees for each instance that no prediction was matched to."""
    misses = sum(e.unmatched_true for e in errors)
    return np.concatenate([*(e.rotation_error_deg for e in errors), np.full(misses, 180.0)])


def pose_recalls(
    errors: Sequence[PoseErrors],
    diameter_m: float,
    symmetry: str,
    image_width_px: float | None = None,
    confidences: Sequence[np.ndarray] | None = None,
) -> PoseRecalls:
    """ADD(-S)-0.1d recall, BOP's AR_MSSD, AR_MSPD and their mean AR, and the rotation error's spread, over the
    true instances of every frame's :func:`pose_errors`. ``image_width_px`` scales MSPD's thresholds (BOP's
    are for 640 px). With ``confidences``, one (M,) array per frame for its predictions, also the top pick's
    correctness and the reliability table."""
    if diameter_m <= 0:
        raise ValueError(f"diameter_m must be positive, got {diameter_m}")
    misses = sum(e.unmatched_true for e in errors)

    def joined(name: str) -> np.ndarray:
        """One error per true instance: the matched ones', then infinity for each miss."""
        return np.concatenate([*(getattr(e, name) for e in errors), np.full(misses, np.inf)])

    add_m = joined("add_m" if symmetry == "none" else "adds_m")
    if len(add_m) == 0:
        raise ValueError("no true instances to score")
    mssd_m, mspd_px, rotation_deg = joined("mssd_m"), joined("mspd_px"), instance_rotation_errors_deg(errors)
    top_pick = reliability = None
    if confidences is not None:
        if len(confidences) != len(errors):
            raise ValueError(f"{len(confidences)} frames of confidences for {len(errors)} frames of errors")
        correct = [_correct_predictions(e, len(c), diameter_m, symmetry) for e, c in zip(errors, confidences)]
        scored = [(c, ok) for c, ok in zip(confidences, correct) if len(c)]
        top_pick = float(np.mean([ok[np.argmax(c)] for c, ok in scored])) if scored else 0.0
        all_confidences = np.concatenate([np.asarray(c, dtype=np.float64) for c in confidences])
        all_correct = np.concatenate(correct)
        reliability = []
        for low, high in zip(_RELIABILITY_BINS[:-1], _RELIABILITY_BINS[1:]):
            in_bin = (all_confidences >= low) & ((all_confidences < high) | (high == 1.0))
            reliability.append((float(low), float(high), int(in_bin.sum()), float(all_correct[in_bin].mean()) if in_bin.any() else float("nan")))
    axis_median_deg = None
    if symmetry != "none":
        axis_deg = np.concatenate([*(e.axis_error_deg for e in errors), np.full(misses, 180.0)])
        axis_median_deg = float(np.median(axis_deg))
    ar_mssd = float(np.mean([(mssd_m < f * diameter_m).mean() for f in _MSSD_FRACTIONS]))
    ar_mspd = float("nan")
    if image_width_px is not None and not np.isnan(mspd_px).any():
        ar_mspd = float(np.mean([(mspd_px < t * image_width_px / 640).mean() for t in _MSPD_PX_AT_640]))
    return PoseRecalls(
        instances=len(add_m),
        add_recall=float((add_m < ADD_FRACTION * diameter_m).mean()),
        ar_mssd=ar_mssd,
        ar_mspd=ar_mspd,
        ar=ar_mssd if np.isnan(ar_mspd) else (ar_mssd + ar_mspd) / 2,
        rotation_median_deg=float(np.median(rotation_deg)),
        rotation_p90_deg=float(np.percentile(rotation_deg, 90)),
        rotation_under_5deg=float((rotation_deg < 5).mean()),
        rotation_under_15deg=float((rotation_deg < 15).mean()),
        top_pick=top_pick,
        reliability=reliability,
        axis_median_deg=axis_median_deg,
    )


# ---------------------------------------------------------------------------
# Learned-model fidelity


def _check_cloud(points: np.ndarray, name: str) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3 or len(points) == 0:
        raise ValueError(f"{name} must be a non-empty (n, 3) array, got shape {points.shape}")
    if not np.all(np.isfinite(points)):
        raise ValueError(f"{name} holds non-finite values")
    return points


def chamfer_distance(points_a: np.ndarray, points_b: np.ndarray) -> float:
    """Wu 2019, Eq. 4.1: the larger of the two directional mean nearest-neighbour distances.

    Each direction averages, over one cloud's points, the Euclidean distance to
    the nearest point of the other; taking the larger means both clouds must
    cover each other. Symmetric, in the clouds' units.
    """
    points_a = _check_cloud(points_a, "points_a")
    points_b = _check_cloud(points_b, "points_b")
    return _chamfer(cKDTree(points_a), cKDTree(points_b))


def _chamfer(tree_a: cKDTree, tree_b: cKDTree) -> float:
    return max(_directed_means(tree_a, tree_b))


def _directed_means(tree_a: cKDTree, tree_b: cKDTree) -> tuple[float, float]:
    """The mean distance from each point of a to its nearest of b, and from b's to a's."""
    return float(tree_b.query(tree_a.data)[0].mean()), float(tree_a.query(tree_b.data)[0].mean())


@dataclass(frozen=True, eq=False)
class ModelFidelity:
    """A learned model's distance to the true part after the best rigid alignment.

    ``part_from_model`` maps the learned model's frame onto the part's mesh
    frame; poses estimated for the model become part poses as
    ``camera_from_model @ np.linalg.inv(part_from_model)``.
    """

    chamfer_m: float  # Eq. 4.1 between the aligned model and the mesh surface samples: the larger of the two below
    aligned_points: np.ndarray  # (m, 3) the model's points in the part frame
    part_from_model: np.ndarray  # (4, 4) rigid, determinant +1
    model_to_surface_m: float  # the mean distance from a model point to the surface: how accurate the model is
    surface_to_model_m: float  # the mean distance from a surface sample to the model: how completely it covers the part


def _principal_frame(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The centroid and a right-handed frame of principal axes (columns, by decreasing spread)."""
    centroid = points.mean(axis=0)
    _, axes = np.linalg.eigh(np.cov(points - centroid, rowvar=False))
    axes = axes[:, ::-1]
    if np.linalg.det(axes) < 0:
        axes[:, 2] *= -1
    return centroid, axes


def _signed_permutations() -> np.ndarray:
    """The 24 rotations that permute and flip coordinate axes: every proper way to pair two sets of axes."""
    matrices = []
    for order in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            matrix = np.zeros((3, 3))
            matrix[order, range(3)] = signs
            if np.linalg.det(matrix) > 0:
                matrices.append(matrix)
    return np.array(matrices)


def model_alignments(
    model_points: np.ndarray,
    mesh: trimesh.Trimesh,
    surface_samples: int = 20000,
    seed: int = 0,
) -> list[ModelFidelity]:
    """A learned point-cloud model brought onto the part's mesh in each of the ways its shape allows, best first.

    The model lives in a frame of its own, so it is brought onto the mesh by a
    rigid transform (rotation and translation; no scaling, no reflection), and
    each way is scored by the chamfer distance (Eq. 4.1) between the aligned
    model and points sampled on the mesh surface. Principal axes give the
    starting rotations: the model's axes are paired with the mesh's in all 24
    proper ways, since an imperfect model may order or orient its axes
    differently, and axes of equal spread (a nut's, in its plane) are arbitrary.
    Point-to-point ICP refines every start. A model whose ends are alike (a
    lever's) can fit two of them almost equally.

    Args:
        model_points: (m, 3) the learned model, in its own frame and metres.
        mesh: the part's true mesh, in metres.
        surface_samples: points sampled on the mesh surface. Their spacing is a
            floor under the fidelity (about 0.2 mm on the nut at 20,000), as is
            the spacing of the model's own points.
        seed: seed of the surface sampling.

    Returns:
        The 24 refined alignments, by increasing chamfer distance.
    """
    model_points = _check_cloud(model_points, "model_points")
    if len(model_points) < 4:
        raise ValueError(f"model_points has {len(model_points)} points; aligning a model needs at least 4")
    if surface_samples < 4:
        raise ValueError(f"surface_samples must be at least 4, got {surface_samples}")
    trimesh = require("trimesh", "a model's fidelity to the part's mesh")
    surface = np.asarray(trimesh.sample.sample_surface(mesh, surface_samples, seed=seed)[0], dtype=np.float64)

    model_centroid, model_axes = _principal_frame(model_points)
    surface_centroid, surface_axes = _principal_frame(surface)

    source = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(model_points))
    target = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(surface))
    # Every correspondence counts (classic ICP): starts can be far off, and a
    # distance cap would let a misaligned model keep its nearest few points only.
    reach_m = 2.0 * float(np.linalg.norm(mesh.extents) + np.ptp(model_points, axis=0).max())
    criteria = o3d.pipelines.registration.ICPConvergenceCriteria(max_iteration=50)
    surface_tree = cKDTree(surface)

    def refined(pairing: np.ndarray) -> ModelFidelity:
        start = np.eye(4)
        start[:3, :3] = surface_axes @ pairing @ model_axes.T
        start[:3, 3] = surface_centroid - start[:3, :3] @ model_centroid
        part_from_model = o3d.pipelines.registration.registration_icp(
            source, target, reach_m, start, criteria=criteria
        ).transformation
        aligned = transform_points(part_from_model, model_points)
        to_surface_m, to_model_m = _directed_means(cKDTree(aligned), surface_tree)
        return ModelFidelity(max(to_surface_m, to_model_m), aligned, np.array(part_from_model), to_surface_m, to_model_m)

    return sorted(map(refined, _signed_permutations()), key=lambda fidelity: fidelity.chamfer_m)


def model_fidelity(
    model_points: np.ndarray,
    mesh: trimesh.Trimesh,
    surface_samples: int = 20000,
    seed: int = 0,
) -> ModelFidelity:
    """How far a learned point-cloud model is from the part's surface, once best aligned: the first of
    :func:`model_alignments`, whose arguments it takes."""
    return model_alignments(model_points, mesh, surface_samples, seed)[0]


def taught_alignment(
    true_poses: Sequence[np.ndarray],
    pred_poses: Sequence[np.ndarray],
    candidates: np.ndarray,
    model_points: np.ndarray,
    symmetry: str = "none",
    inlier_deg: float = 30.0,
) -> np.ndarray:
    """The ``part_from_model`` (4, 4) that held-out frames' poses teach: the one rigid map from the learned model's
    frame to the part's under which the predicted poses best agree with the true ones.

    A CAD-free model's frame is its own. A user relates it to the part once, by teaching a grasp on the learned
    model, and from then on needs each pose to put that grasp on the same place of every part: the poses'
    agreement with one another, which one fixed map measures. The shape alone fixes that map only as well as
    the model tells its alignments apart (:func:`model_alignments`), and a few tenths of a millimetre of chamfer
    can separate a lever from itself turned end for end.

    Each of ``candidates`` (the shape's plausible alignments, (C, 4, 4)) is tried: the poses are matched as
    :func:`pose_errors` matches them, and the candidate with the smallest median rotation error wins. Its
    rotation is then refined to the mean of the pairs' own maps within ``inlier_deg`` of it, each taken under
    the element of the part's ``symmetry`` group nearest it, and its translation to their mean.

    Args:
        true_poses, pred_poses: per frame, (N, 4, 4) camera_from_part and (M, 4, 4) camera_from_model.
        candidates: (C, 4, 4) part_from_model alignments to choose among, best guess first.
        model_points: (k, 3) points on the part in its frame, as :func:`pose_errors` takes them.
        symmetry: the part's symmetry group.
        inlier_deg: the largest rotation error of a pair that the refinement takes in.
    """
    candidates = np.asarray(candidates, dtype=np.float64)
    if candidates.ndim != 3 or candidates.shape[1:] != (4, 4) or len(candidates) == 0:
        raise ValueError(f"candidates must be a non-empty (C, 4, 4) array, got shape {candidates.shape}")
    if len(true_poses) != len(pred_poses):
        raise ValueError(f"true_poses has {len(true_poses)} frames and pred_poses {len(pred_poses)}; expected one of each per frame")

    def pairs(part_from_model: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The matched pairs' true poses, predicted poses (camera_from_model) and rotation errors."""
        truths, predictions, errors = [], [], []
        for true, pred in zip(true_poses, pred_poses):
            if len(true) == 0 or len(pred) == 0:
                continue
            matched = pose_errors(true, np.asarray(pred) @ np.linalg.inv(part_from_model), model_points, symmetry)
            truths.append(np.asarray(true)[matched.true_index])
            predictions.append(np.asarray(pred)[matched.pred_index])
            errors.append(matched.rotation_error_deg)
        if not truths:
            return np.empty((0, 4, 4)), np.empty((0, 4, 4)), np.empty(0)
        return np.concatenate(truths), np.concatenate(predictions), np.concatenate(errors)

    scored = [(float(np.median(errors)) if len(errors) else np.inf, index) for index, (_, _, errors) in enumerate(map(pairs, candidates))]
    best = candidates[min(scored)[1]].copy()
    truths, predictions, _ = pairs(best)
    if len(truths) == 0:
        return best
    group = symmetry_rotations(symmetry, model_points)
    # Each pair's own map, up to the part's symmetry: part_from_model = S^-1 @ part_from_camera @ camera_from_model.
    own = np.linalg.inv(truths) @ predictions
    for _ in range(3):
        # The symmetry element that brings each pair's map nearest the current one.
        turned = np.einsum("gji,njk->ngik", group, own[:, :3, :3])
        angles = Rotation.from_matrix((turned @ best[:3, :3].T).reshape(-1, 3, 3)).magnitude().reshape(turned.shape[:2])
        nearest = angles.argmin(axis=1)
        inliers = np.degrees(angles[np.arange(len(own)), nearest]) < inlier_deg
        if not inliers.any():
            break
        rotations = turned[np.arange(len(own)), nearest][inliers]
        u, _, vt = np.linalg.svd(rotations.sum(axis=0))
        best[:3, :3] = u @ np.diag([1.0, 1.0, np.linalg.det(u @ vt)]) @ vt
        translations = np.einsum("gji,nj->ngi", group, own[:, :3, 3])[np.arange(len(own)), nearest][inliers]
        best[:3, 3] = translations.mean(axis=0)
    return best


def model_fidelity_floor(mesh: trimesh.Trimesh, model_point_count: int, surface_samples: int = 20000, seed: int = 0) -> float:
    """The fidelity (:func:`model_fidelity`'s chamfer) of the best model that ``model_point_count`` points can
    make: points spread evenly over the mesh's own surface. Eq. 4.1 takes the larger of its two directions,
    and from the surface to a model of few points the distance is a fraction of their spacing however exact
    each point is: a perfect model of 512 points is 1.5 mm from a 58 mm housing's surface, 0.5 mm from a
    6 x 30 mm pin's.
    """
    if model_point_count < 1:
        raise ValueError(f"model_point_count must be at least 1, got {model_point_count}")
    trimesh = require("trimesh", "a model's fidelity to the part's mesh")
    surface = np.asarray(trimesh.sample.sample_surface(mesh, surface_samples, seed=seed)[0], dtype=np.float64)
    even = np.asarray(trimesh.sample.sample_surface_even(mesh, model_point_count, seed=seed + 1)[0], dtype=np.float64)
    return _chamfer(cKDTree(even), cKDTree(surface))
