"""``bin-perception evaluate``: the learned model and the clustering baselines on the same observed clouds.

For every frame with ground truth it computes the pairwise precision, recall
and F1 of the thesis's Table 4.1 over the workspace points whose ground-truth
label is a part, for our model and each baseline; the chamfer distance of our
model's prediction; the learned model's fidelity to the true mesh; and the
pose errors of the matched instances. It writes REPORT_DIR/metrics.json,
report.md, overlay PNGs per method and the learned model beside the mesh.

"model" is the checkpoint as the node runs it, and so is its time per frame. A
per-seed checkpoint also reports its other segmentation, "model_seeds" (the seeds
alone) or "model_transfer" (the label transfer from the rendered model).

The first ``tune_frames`` frames choose DBSCAN's radius and are scored by no method, whichever
baselines run, so that every report of one bag scores the same frames. They also teach the map from the
learned model's frame to the part's under which the poses are scored
(:func:`~bin_perception.metrics.taught_alignment`), among the alignments that the model's shape cannot tell
apart; the report gives the poses under the shape's best alignment alone beside them.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import time
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import open3d as o3d

from ..baselines import choose_dbscan_eps, run_baseline
from ..config import AUTO, Config, ConfigError, TopicsConfig
from ..extras import require
from ..frame import Frame
from ..geometry import parse_bin_pose
from ..io.atomic import write_text
from ..io.bag import META_INSTANCES, META_SYMMETRY, BagReader
from ..io.errors import BagError
from ..metrics import (
    ModelFidelity,
    PoseErrors,
    chamfer_distance,
    count_accuracy,
    instance_rotation_errors_deg,
    model_alignments,
    model_fidelity,
    model_fidelity_floor,
    pairwise_scores,
    part_diameter,
    pose_errors,
    pose_recalls,
    rotation_error_deg,
    taught_alignment,
)
from ..model import BinPerception, CheckpointError, load_checkpoint
from ..model.observation import Normalization, TooFewPointsError, observe
from ..model.segment import transfer_labels
from ..viz import model_views, pose_error_figure, segmentation_overlays

if TYPE_CHECKING:
    import trimesh

# Points of a 224 px frame lie 0.2 to 1 mm apart, depending on the part's size.
DBSCAN_EPS_CANDIDATES_M = tuple(np.geomspace(0.0003, 0.008, 15))


def _check_fit(perception, instances: int | str | None, bag_instances: str | None, config: Config | None, checkpoint: Path) -> None:
    """Raise unless the checkpoint can perceive this bag; a per-seed model is set to the bag's N, or to count the parts."""
    if instances == AUTO:
        try:
            perception.set_instances(AUTO)
        except ValueError as error:
            raise CheckpointError(f"checkpoint {checkpoint}: {error}") from None
        instances = None
        bag_instances = None
    for source, count in (("--instances is", instances), ("the bag holds bins of", bag_instances)):
        # The per-seed method's network sees one part at a time, so it perceives any N.
        if count is not None and int(count) != perception.instances and not perception.per_seed:
            raise CheckpointError(f"checkpoint {checkpoint}: trained for N={perception.instances}, but {source} {count}")
    if instances is not None and bag_instances is not None and instances != int(bag_instances):
        raise CheckpointError(f"--instances is {instances}, but the bag holds bins of {bag_instances}")
    wanted = instances if instances is not None else bag_instances
    if wanted is not None and not perception.counts_parts:
        perception.set_instances(int(wanted))
    if config is not None and config.model.input_size_px != perception.config.input_size_px:
        raise CheckpointError(
            f"checkpoint {checkpoint}: input size {perception.config.input_size_px} px, "
            f"but the config says model.input_size_px {config.model.input_size_px}"
        )


def evaluate(
    bag: str,
    out: str | os.PathLike,
    checkpoint: str | None = None,
    instances: int | str | None = None,
    baselines: tuple[str, ...] = ("kmeans", "spectral", "dbscan"),
    config: Config | None = None,
    topics: TopicsConfig | None = None,
    workspace: np.ndarray | None = None,
    max_frames: int | None = None,
    tune_frames: int = 10,
    overlay_frames: int = 4,
    camera_from_bin: np.ndarray | None = None,
    refine: str | None = None,
) -> dict:
    """Evaluate on ``bag``; a ``config``, when given, must agree with the checkpoint. ``camera_from_bin`` is the
    frame of ``workspace`` (the bin's in the camera's; None: the camera's own). ``refine`` (none or icp)
    overrides the checkpoint's pose refinement, so that one model is scored both ways. With ``instances`` "auto"
    the model counts the parts in each frame, the baselines that need a count are given the frame's true one, and
    the report gives the count's accuracy (:func:`~bin_perception.metrics.count_accuracy`)."""
    config_given = config is not None
    config = config or Config()
    topics = topics or config.topics
    reader = BagReader(bag, topics, skip_bad_frames=True)
    if not reader.has_ground_truth:
        raise BagError(f"bag {reader.path}: no ground truth on {topics.gt_labels} and {topics.gt_poses}; nothing to evaluate against")
    perception = None
    if checkpoint is not None:
        perception, _, _ = load_checkpoint(checkpoint)
        _check_fit(perception, instances, reader.custom_data.get(META_INSTANCES), config if config_given else None, Path(checkpoint))
        perception.eval()
        instances = AUTO if perception.counts_parts else perception.instances
        if refine is not None:
            perception.config = dataclasses.replace(perception.config, refine=refine)
    elif instances is None or instances == AUTO:
        raise ConfigError("without --checkpoint, --instances N is required (counting the parts needs a trained model)")
    # A box and its frame come from one source: the flags, the config, the bag (which describes its own
    # bin) or the checkpoint (the bin it was trained on).
    if workspace is None and config.workspace:
        workspace = np.asarray(config.workspace).reshape(2, 3)
        camera_from_bin = None if config.bin_pose is None else parse_bin_pose(config.bin_pose)
    if workspace is None:
        workspace, camera_from_bin = reader.workspace(), reader.bin_pose()
    if workspace is None and perception:
        workspace, camera_from_bin = perception.workspace, perception.camera_from_bin
    if workspace is None:
        raise BagError(f"bag {reader.path}: records no workspace; give --workspace")
    if perception:
        perception.set_workspace(workspace, camera_from_bin)
    normalization = perception.normalization if perception else Normalization.from_workspace(workspace, camera_from_bin)
    input_size = perception.config.input_size_px if perception else config.model.input_size_px

    frames = reader if max_frames is None else itertools.islice(reader, max_frames + tune_frames)
    tuning, evaluation = [], []
    for frame in frames:
        # Held out whatever the baselines, so that every report of one bag scores the same frames.
        (tuning if len(tuning) < tune_frames else evaluation).append(frame)
    if not evaluation:
        raise BagError(f"bag {reader.path}: no frames left to evaluate after {len(tuning)} tuning frames")

    params: dict[str, dict] = defaultdict(dict)
    if "dbscan" in baselines:
        if not tuning:
            raise ConfigError("the DBSCAN baseline needs tuning frames to choose its radius: tune_frames must be at least 1")
        clouds, truths = [], []
        for frame in tuning:
            points_m, truth, _, _ = _parts_of(frame, (workspace, camera_from_bin), normalization, input_size, perception)
            clouds.append(points_m[truth > 0])
            truths.append(truth[truth > 0])
        params["dbscan"]["eps_m"] = choose_dbscan_eps(clouds, truths, DBSCAN_EPS_CANDIDATES_M)

    methods = (["model"] if perception else []) + ([_other_segmentation(perception)] if perception and perception.per_seed else []) + list(baselines)
    per_frame: dict[str, list[dict]] = {m: [] for m in methods}
    overlays: dict[str, list[np.ndarray]] = {m: [] for m in methods}
    shown: list[Frame] = []  # the frames the overlays are drawn over, as the model observed them
    mesh = reader.part_mesh()
    symmetry = reader.custom_data.get(META_SYMMETRY, "none")
    alignments = model_alignments(perception.model_points_m(), mesh) if (perception and mesh is not None) else None
    fidelity = alignments[0] if alignments else None
    fused_fidelity = (
        _fused_model_fidelity(Path(checkpoint).parent / "model_fused.ply", perception, mesh) if (perception and mesh is not None) else None
    )
    mesh_points = _surface_samples(mesh, 2000) if mesh is not None else None
    # The map from the model's frame to the part's, under which its poses are scored: the one that the tuning
    # frames' poses teach, among the alignments that the model's shape cannot tell apart.
    part_from_model = (
        _taught_part_from_model(perception, tuning, alignments, mesh_points, symmetry, (workspace, camera_from_bin), normalization, input_size)
        if alignments
        else None
    )
    model_from_part = np.linalg.inv(part_from_model) if part_from_model is not None else None
    frame_pose_errors: list[PoseErrors] = []  # the model's, one per frame scored
    frame_confidences: list[np.ndarray] = []  # its poses' confidences, likewise
    # A per-seed model's poses fitted to the true segments: whether a wrong pose is the segments' fault or the model's.
    true_segment_errors: list[PoseErrors] = []
    # The model's poses under the shape's own alignment, for the report beside the taught one's.
    shape_errors: list[PoseErrors] = []
    counting = perception is not None and perception.counts_parts
    # Per frame: the model's count and the true instances' seen points, for the count's accuracy.
    counted: list[int] = []
    true_points: list[np.ndarray] = []

    for frame in evaluation:
        observe_start = time.perf_counter()
        try:
            points_m, truth, obs, observed = _parts_of(frame, (workspace, camera_from_bin), normalization, input_size, perception)
        except TooFewPointsError:
            if fidelity is not None:  # no pose for any of its parts: each is a miss
                frame_pose_errors.append(pose_errors(frame.gt_poses, np.empty((0, 4, 4)), mesh_points, symmetry))
                frame_confidences.append(np.empty(0))
            continue
        if len(shown) < overlay_frames:
            shown.append(observed)
        # Back-projection is every method's; the seeds and crops are only ours.
        observe_ms = 1000 * (time.perf_counter() - observe_start)
        part = truth > 0
        rendered = None
        for method in methods:
            start = time.perf_counter()
            if method == "model":
                prediction = perception.predict(frame, obs)  # timed as the node runs it
                labels = prediction.point_labels
            elif method == "model_seeds":  # the per-seed method's seeds alone, before the model
                labels = obs.seeds
            elif method == "model_transfer":
                labels = transfer_labels(obs.points, rendered.visible_points, rendered.visible_ids)
            else:
                true_count = len(np.unique(truth[part])) if counting else instances
                labels = run_baseline(method, points_m, max(true_count, 1), **params[method])
            elapsed_ms = 1000 * (time.perf_counter() - start) + (observe_ms if method.startswith("model") else 0.0)
            if method == "model":
                counted.append(len(prediction.poses))
                true_points.append(np.unique(truth[part], return_counts=True)[1])
                # The chamfer (and the label transfer) need the rendered scene, which a seeds-segmenting node skips.
                rendered = prediction if prediction.visible_points is not None else perception.predict(frame, obs, render_scene=True)
            scores = pairwise_scores(truth[part], labels[part])
            row = {"precision": scores.precision, "recall": scores.recall, "f1": scores.f1, "ms": elapsed_ms}
            if method == "model":
                row["chamfer_m"] = chamfer_distance(points_m, normalization.to_metres(rendered.visible_points))
                if fidelity is not None:
                    errors = pose_errors(frame.gt_poses, prediction.poses @ model_from_part, mesh_points, symmetry, frame.K)
                    shape_posed = prediction.poses @ np.linalg.inv(fidelity.part_from_model)
                    shape_errors.append(pose_errors(frame.gt_poses, shape_posed, mesh_points, symmetry))
                    frame_pose_errors.append(errors)
                    frame_confidences.append(prediction.confidences)
                    if perception.per_seed and part.any():
                        seeded = perception.predict(frame, perception.observe(frame, _true_seeds(truth)))
                        true_segment_errors.append(
                            pose_errors(frame.gt_poses, seeded.poses @ model_from_part, mesh_points, symmetry, frame.K)
                        )
                    if len(errors.true_index):
                        row["rotation_error_deg"] = float(np.mean(errors.rotation_error_deg))
                        row["translation_error_m"] = float(np.mean(errors.translation_error_m))
                        row["adds_m"] = float(np.mean(errors.adds_m))
            per_frame[method].append(row)
            if len(overlays[method]) < overlay_frames:
                image = np.zeros(obs.shape[0] * obs.shape[1], dtype=np.uint16)
                image[obs.pixels] = labels
                overlays[method].append(image.reshape(obs.shape))

    summary = {}
    for method, rows in per_frame.items():
        if not rows:
            continue
        keys = sorted({k for r in rows for k in r} - {"ms"})
        summary[method] = {k: float(np.mean([r[k] for r in rows if k in r])) for k in keys}
        summary[method]["chamfer"] = summary[method].pop("chamfer_m", None)
        summary[method]["frames"] = len(rows)
        summary[method]["ms_per_frame"] = float(np.mean([r["ms"] for r in rows]))
        summary[method]["ms_p95"] = float(np.percentile([r["ms"] for r in rows], 95))
    if frame_pose_errors and "model" in summary:
        recalls = pose_recalls(
            frame_pose_errors, part_diameter(mesh.vertices), symmetry, evaluation[0].depth_m.shape[1], frame_confidences
        )
        summary["model"].update({("pose_instances" if k == "instances" else k): v for k, v in recalls.to_dict().items()})
        on_shape = pose_recalls(shape_errors, part_diameter(mesh.vertices), symmetry, evaluation[0].depth_m.shape[1])
        summary["model"].update(
            shape_alignment_add_recall=on_shape.add_recall, shape_alignment_rotation_median_deg=on_shape.rotation_median_deg,
            taught_alignment_deg=float(rotation_error_deg(fidelity.part_from_model[:3, :3], part_from_model[:3, :3])),
            taught_alignment_shift_m=float(np.linalg.norm(fidelity.part_from_model[:3, 3] - part_from_model[:3, 3])),
        )
        if true_segment_errors:
            on_truth = pose_recalls(true_segment_errors, part_diameter(mesh.vertices), symmetry, evaluation[0].depth_m.shape[1])
            summary["model"].update(
                true_segments_add_recall=on_truth.add_recall, true_segments_ar=on_truth.ar,
                true_segments_rotation_median_deg=on_truth.rotation_median_deg,
            )
    if counting and "model" in summary:
        summary["model"].update(count_accuracy(np.asarray(counted), true_points).to_dict())
    result = {
        "bag": str(reader.path),
        "part": reader.part_name,
        "instances": instances,
        "checkpoint": str(checkpoint) if checkpoint else None,
        "tuning_frames": len(tuning),
        "baseline_params": {k: {p: float(v) for p, v in d.items()} for k, d in params.items()},
        "model_fidelity_m": fidelity.chamfer_m if fidelity else None,
        "model_to_surface_m": fidelity.model_to_surface_m if fidelity else None,
        "surface_to_model_m": fidelity.surface_to_model_m if fidelity else None,
        "model_fidelity_floor_m": model_fidelity_floor(mesh, len(fidelity.aligned_points)) if fidelity else None,
        "fused_model_fidelity_m": fused_fidelity.chamfer_m if fused_fidelity else None,
        "methods": summary,
    }
    _write_report(Path(out), result, shown, overlays, perception, fidelity, mesh, fused_fidelity)
    if frame_pose_errors and "model" in summary:
        pose_error_figure(
            instance_rotation_errors_deg(frame_pose_errors), summary["model"].get("reliability"), Path(out) / "pose_errors.png",
            f"{reader.part_name}, N = {instances}: rotation errors and confidence",
        )
    return result


# Alignments whose chamfer is within this factor of the best one are ones that the model's shape does not tell
# apart: a lever's model fits the lever and the lever turned end for end 2 % apart.
ALIGNMENT_TIE_FACTOR = 1.1


def _taught_part_from_model(
    perception: BinPerception,
    tuning: list[Frame],
    alignments: list[ModelFidelity],
    mesh_points: np.ndarray,
    symmetry: str,
    workspace: tuple[np.ndarray, np.ndarray | None],
    normalization: Normalization,
    input_size: int,
) -> np.ndarray:
    """The model's frame mapped onto the part's by the tuning frames' poses (:func:`~bin_perception.metrics.taught_alignment`),
    among the alignments within :data:`ALIGNMENT_TIE_FACTOR` of the best; the shape's best without tuning frames."""
    best = alignments[0]
    tied = np.stack([a.part_from_model for a in alignments if a.chamfer_m <= ALIGNMENT_TIE_FACTOR * best.chamfer_m])
    true_poses, pred_poses = [], []
    for frame in tuning:
        if frame.gt_poses is None:
            continue
        try:
            _, _, obs, _ = _parts_of(frame, workspace, normalization, input_size, perception)
        except TooFewPointsError:
            continue
        true_poses.append(frame.gt_poses)
        pred_poses.append(perception.predict(frame, obs).poses)
    if not true_poses:
        return best.part_from_model
    return taught_alignment(true_poses, pred_poses, tied, mesh_points, symmetry)


def _other_segmentation(perception: BinPerception) -> str:
    """The per-seed method's segmentation that its config does not choose, reported beside it."""
    return "model_transfer" if perception.config.segmentation == "seeds" else "model_seeds"


def _parts_of(
    frame: Frame,
    workspace: tuple[np.ndarray, np.ndarray | None],
    normalization: Normalization,
    input_size: int,
    perception: BinPerception | None = None,
):
    """The frame's workspace cloud in metres, each point's ground-truth label, the observation (the model's own, if given)
    and the frame it observed.

    The model's observation may be of the frame decimated, and the baselines are given the same points.
    """
    observed = perception.observed_frame(frame) if perception else frame
    box, camera_from_bin = workspace
    obs = perception.observe(frame) if perception else observe(frame, box, normalization, input_size, camera_from_bin=camera_from_bin)
    truth = observed.gt_labels.ravel()[obs.pixels]
    return normalization.to_metres(obs.points), truth, obs, observed


def _true_seeds(truth: np.ndarray) -> np.ndarray:
    """The true instance of each workspace point as seeds 1..k (0 for none), the instances numbered in order."""
    seeds = np.zeros(len(truth), dtype=np.int64)
    part = truth > 0
    seeds[part] = np.unique(truth[part], return_inverse=True)[1] + 1
    return seeds


def _surface_samples(mesh: trimesh.Trimesh, count: int) -> np.ndarray:
    trimesh_module = require("trimesh", "sampling the part's mesh")
    return trimesh_module.sample.sample_surface(mesh, count, seed=0)[0]


def _fused_model_fidelity(path: Path, perception: BinPerception, mesh: trimesh.Trimesh) -> ModelFidelity | None:
    """The fidelity of the run's fused model (``model_fused.ply``, written by ``train``), if it has one: drawn
    down to the learned model's point count, so that the two compare point for point."""
    if not path.is_file():
        return None
    points_m = np.asarray(o3d.io.read_point_cloud(str(path)).points, dtype=np.float64)
    count = len(perception.model_points_m())
    if len(points_m) > count:
        points_m = points_m[np.random.default_rng(0).choice(len(points_m), count, replace=False)]
    return model_fidelity(points_m, mesh)


def _write_report(
    out: Path, result: dict, frames: list[Frame], overlays: dict, perception, fidelity, mesh, fused_fidelity
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "metrics.json", json.dumps(result, indent=1))
    lines = [
        f"# Evaluation: {result['part']} , N = {result['instances']}",
        "",
        f"Bag `{result['bag']}`; checkpoint `{result['checkpoint']}`.",
        "Pairwise precision (P), recall (R) and F1 over the workspace points that are parts (thesis Table 4.1).",
        "",
        "| method | P | R | F1 | chamfer (mm) | ms/frame | frames |",
        "|---|---|---|---|---|---|---|",
    ]
    for method, m in result["methods"].items():
        chamfer = f"{m['chamfer'] * 1000:.2f}" if m.get("chamfer") is not None else "-"
        lines.append(f"| {method} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {chamfer} | {m['ms_per_frame']:.1f} | {m['frames']} |")
    ours = result["methods"].get("model", {})
    if "count_exact" in ours:
        lines += [
            "",
            f"The model counted the parts (instances auto); the baselines were given each frame's true count. The count "
            f"was exact in {ours['count_exact']:.3f} of the frames and off by at most one in {ours['count_within_one']:.3f}, "
            f"counting as parts the true instances that show at least {ours['count_min_share']:.0%} of the median instance's points.",
        ]
    if result["model_fidelity_m"] is not None:
        lines += [
            "",
            f"Learned model to true mesh, chamfer after the best rigid alignment: {result['model_fidelity_m'] * 1000:.2f} mm: "
            f"{result['model_to_surface_m'] * 1000:.2f} mm from its points to the surface, {result['surface_to_model_m'] * 1000:.2f} mm "
            f"from the surface to its points. A perfect model of as many points: {result['model_fidelity_floor_m'] * 1000:.2f} mm.",
        ]
    if result["fused_model_fidelity_m"] is not None:
        lines += ["", f"Fused model (model_fused.ply, as many points) to true mesh, the same way: {result['fused_model_fidelity_m'] * 1000:.2f} mm."]
    if "rotation_error_deg" in ours:
        lines.append(
            f"Pose errors (Hungarian-matched, symmetry-aware): rotation {ours['rotation_error_deg']:.1f} deg, "
            f"translation {ours['translation_error_m'] * 1000:.1f} mm, ADD-S {ours['adds_m'] * 1000:.1f} mm."
        )
    if "ar" in ours:
        lines += [
            "",
            f"Poses good enough to grasp by, of {ours['pose_instances']} true instances (a part without a pose is a miss):",
            "",
            "| ADD(-S) < 0.1 d | AR_MSSD | AR_MSPD | AR | rotation median (deg) | p90 (deg) | under 5 deg | under 15 deg |",
            "|---|---|---|---|---|---|---|---|",
            f"| {ours['add_recall']:.3f} | {ours['ar_mssd']:.3f} | {ours['ar_mspd']:.3f} | {ours['ar']:.3f} | "
            f"{ours['rotation_median_deg']:.1f} | {ours['rotation_p90_deg']:.1f} | {ours['rotation_under_5deg']:.3f} | "
            f"{ours['rotation_under_15deg']:.3f} |",
            "",
            "![rotation errors and confidence](pose_errors.png)",
        ]
        lines += [
            "",
            f"The model's frame is its own. The poses are scored with it mapped onto the part's as the tuning frames' poses "
            f"teach it, as a user teaches a grasp once on the learned model: {ours['taught_alignment_deg']:.1f} deg and "
            f"{ours['taught_alignment_shift_m'] * 1000:.1f} mm from the shape's best alignment. Under the shape's alignment "
            f"alone, ADD(-S) < 0.1 d is {ours['shape_alignment_add_recall']:.3f} and the rotation median "
            f"{ours['shape_alignment_rotation_median_deg']:.1f} deg.",
        ]
        if ours.get("axis_median_deg") is not None:
            lines += [
                "",
                f"The part's symmetry axis alone (what a gripper comes down along, without the turn about it) is "
                f"{ours['axis_median_deg']:.1f} deg off at the median.",
            ]
    if "true_segments_ar" in ours:
        lines += [
            "",
            f"Fitted to the true segments instead of its own, the model's poses score ADD(-S) < 0.1 d "
            f"{ours['true_segments_add_recall']:.3f}, AR {ours['true_segments_ar']:.3f}, rotation median "
            f"{ours['true_segments_rotation_median_deg']:.1f} deg: what is left to gain from the segments.",
        ]
    if ours.get("reliability"):
        lines += [
            "",
            f"The most confident pose of a frame is correct in {ours['top_pick']:.3f} of the frames. Confidence against the "
            "fraction of poses correct (ADD(-S) < 0.1 d):",
            "",
            "| confidence | poses | correct |",
            "|---|---|---|",
            *(f"| {low:.1f} to {high:.1f} | {count} | {right:.3f} |" for low, high, count, right in ours["reliability"]),
        ]
    write_text(out / "report.md", "\n".join(lines) + "\n")
    for method, images in overlays.items():
        if images:
            segmentation_overlays(frames, images, out / f"segments_{method}.png", method)
    if perception is not None and fidelity is not None:
        reference = _surface_samples(mesh, 3000)
        model_views(fidelity.aligned_points, out / "model_vs_mesh.png", "learned model (colour) on the true mesh (grey)", reference)
        if fused_fidelity is not None:
            model_views(fused_fidelity.aligned_points, out / "fused_model_vs_mesh.png", "fused model (colour) on the true mesh (grey)", reference)
