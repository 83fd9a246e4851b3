"""Pictures for people: contact sheets of frames."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .frame import Frame  # noqa: E402
from .io.atomic import replacing  # noqa: E402


def instance_colours(ids: np.ndarray) -> np.ndarray:
    """(..., 3) RGB in [0, 1] for instance ids 1, 2, ...: tab10's colours, in the same order everywhere."""
    palette = plt.get_cmap("tab10")(np.arange(10))[:, :3]
    return palette[(np.asarray(ids, dtype=np.int64) - 1) % 10]


def label_colours(labels: np.ndarray) -> np.ndarray:
    """An RGB image of instance labels: black for 0, a distinct colour per instance."""
    # One row per label present, looked up by cv2's table: a camera-sized image in a millisecond or two.
    palette = np.zeros((256, 3), dtype=np.uint8)
    present = np.arange(1, int(labels.max(initial=0)) + 1)
    if present.size and present.max() > 255:
        rgb = (instance_colours(labels) * 255).astype(np.uint8)
        rgb[labels == 0] = 0
        return rgb
    palette[present] = (instance_colours(present) * 255).astype(np.uint8)
    index = labels.astype(np.uint8)
    return np.dstack([cv2.LUT(index, palette[:, channel]) for channel in range(3)])


def depth_range_m(depth_m: np.ndarray, percentiles: tuple[float, float] = (1.0, 99.0)) -> tuple[float, float]:
    """The near and far depth (metres) to scale a picture's colours by: percentiles of the valid pixels, so that
    a few flying pixels or far outliers do not squeeze the parts into one colour; (0, 1) with no valid pixel."""
    depth_m = np.asarray(depth_m)
    # A strided sample is as robust and a camera-sized frame's percentiles cost a sixteenth as much.
    stride = max(1, round((depth_m.size / 65536) ** 0.5))
    sample = depth_m[::stride, ::stride]
    valid = sample[np.isfinite(sample)]
    if valid.size == 0:
        return 0.0, 1.0
    near_m, far_m = np.percentile(valid, percentiles)
    return float(near_m), float(max(far_m, near_m + 1e-6))


def overlay_image(
    depth_m: np.ndarray, labels: np.ndarray, K: np.ndarray, poses: np.ndarray | None = None, axis_m: float = 0.01, alpha: float = 0.6
) -> np.ndarray:
    """An (H, W, 3) uint8 RGB picture of one frame: the depth in grey, each instance's pixels in its colour
    (``alpha`` over the grey), and, with ``poses`` ((N, 4, 4), camera frame), each instance's axes
    (x red, y green, z blue, ``axis_m`` long) and its id, projected through ``K``."""
    depth_m = np.asarray(depth_m, dtype=np.float32)
    valid = np.isfinite(depth_m)
    # Nearer is brighter, from 50 at the far end of the range to 255 at its near end; invalid pixels black.
    near_m, far_m = depth_range_m(depth_m)
    scale = np.float32(205 / (far_m - near_m))
    brightness = np.clip((np.float32(far_m) - depth_m) * scale + np.float32(50), 50, 255)
    brightness[~valid] = 0
    grey = brightness.astype(np.uint8)
    picture = cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB)
    labelled = labels > 0
    blended = cv2.addWeighted(picture, 1 - alpha, label_colours(labels), alpha, 0)
    picture[labelled] = blended[labelled]
    if poses is not None and len(poses):
        _draw_pose_axes(picture, np.asarray(poses, dtype=np.float64), np.asarray(K, dtype=np.float64), axis_m)
    return picture


def _draw_pose_axes(picture: np.ndarray, poses: np.ndarray, K: np.ndarray, axis_m: float) -> None:
    """Each pose's axes and id drawn into ``picture`` in place; a pose behind the camera is skipped."""
    ends = np.vstack([np.zeros(3), np.eye(3) * axis_m])  # origin, x, y, z tips in the part's frame
    thickness = max(1, round(picture.shape[1] / 400))
    for instance, pose in enumerate(poses, start=1):
        if (ends @ pose[:3, :3].T + pose[:3, 3])[:, 2].min() <= 0:
            continue
        rotation, _ = cv2.Rodrigues(pose[:3, :3])
        pixels, _ = cv2.projectPoints(ends, rotation, pose[:3, 3], K, None)
        origin, *tips = (tuple(int(round(v)) for v in p) for p in pixels[:, 0])
        for tip, colour in zip(tips, ((255, 0, 0), (0, 255, 0), (0, 0, 255))):
            cv2.line(picture, origin, tip, colour, thickness, cv2.LINE_AA)
        cv2.putText(picture, str(instance), origin, cv2.FONT_HERSHEY_SIMPLEX, 0.3 * thickness, (255, 255, 255), thickness, cv2.LINE_AA)


def contact_sheet(frames: Sequence[Frame], path: str | os.PathLike, title: str = "") -> Path:
    """A PNG with one row per frame: depth, ground-truth labels and RGB, where the frame has them."""
    if not frames:
        raise ValueError("a contact sheet needs at least one frame")
    columns = ["depth"] + (["labels"] if any(f.gt_labels is not None for f in frames) else [])
    columns += ["rgb"] if any(f.rgb is not None for f in frames) else []
    fig, axes = plt.subplots(len(frames), len(columns), figsize=(3.2 * len(columns), 3.0 * len(frames)), squeeze=False)
    for row, frame in zip(axes, frames):
        for ax, column in zip(row, columns):
            ax.set_xticks([])
            ax.set_yticks([])
            if column == "depth":
                near_m, far_m = depth_range_m(frame.depth_m)
                shown = ax.imshow(np.ma.masked_invalid(frame.depth_m), cmap="viridis", vmin=near_m, vmax=far_m)
                fig.colorbar(shown, ax=ax, fraction=0.046, label="m")
                ax.set_title(f"depth, t={frame.stamp_ns / 1e9:.3f} s", fontsize=8)
            elif column == "labels" and frame.gt_labels is not None:
                ax.imshow(label_colours(frame.gt_labels), interpolation="nearest")
                ax.set_title(f"labels: {len(np.unique(frame.gt_labels)) - 1} instances", fontsize=8)
            elif column == "rgb" and frame.rgb is not None:
                ax.imshow(frame.rgb)
                ax.set_title("rgb", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def pick_strip(pictures: Sequence[np.ndarray], titles: Sequence[str], path: str | os.PathLike, columns: int = 6) -> Path:
    """A PNG of pictures of the bin before each pick (RGB, the chosen grasp drawn in), titled with the outcome."""
    if not pictures or len(pictures) != len(titles):
        raise ValueError(f"a pick strip needs pictures, each with its title: {len(pictures)} pictures, {len(titles)} titles")
    rows = -(-len(pictures) // columns)
    fig, axes = plt.subplots(rows, min(columns, len(pictures)), figsize=(2.6 * min(columns, len(pictures)), 2.4 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for ax, picture, title in zip(axes.ravel(), pictures, titles):
        ax.imshow(picture)
        ax.set_title(title, fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)
    return path


def model_views(points_m: np.ndarray, path: str | os.PathLike, title: str = "", reference_m: np.ndarray | None = None) -> Path:
    """Three orthographic views (along the principal axes) of a point-cloud model, in millimetres."""
    centred = (points_m - points_m.mean(axis=0)) * 1000
    axes_pca = np.linalg.svd(centred, full_matrices=False)[2]
    projected = centred @ axes_pca.T
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.2))
    for ax, (i, j) in zip(axes, ((0, 1), (0, 2), (1, 2))):
        if reference_m is not None:
            ref = (reference_m - reference_m.mean(axis=0)) * 1000 @ axes_pca.T
            ax.scatter(ref[:, i], ref[:, j], s=1, c="0.8")
        ax.scatter(projected[:, i], projected[:, j], s=2, c=projected[:, 3 - i - j], cmap="viridis")
        ax.set_aspect("equal")
        ax.set_xlabel(f"axis {i + 1} (mm)")
        ax.set_ylabel(f"axis {j + 1} (mm)")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def loss_curve(history: Sequence[tuple[int, float]], path: str | os.PathLike) -> Path:
    """The training loss against the step."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    if history:
        steps, losses = zip(*history)
        ax.plot(steps, losses, lw=0.8)
    ax.set_xlabel("step")
    ax.set_ylabel("chamfer loss (model units)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def segmentation_overlays(
    frames: Sequence[Frame],
    label_images: Sequence[np.ndarray],
    path: str | os.PathLike,
    title: str = "",
    poses: Sequence[np.ndarray] | None = None,
    axis_m: float = 0.01,
) -> Path:
    """Instance labels over the depth image, one panel per frame; with ``poses`` ((N, 4, 4) a frame),
    each instance's axes too (x red, y green, z blue, ``axis_m`` long), projected through the frame's K."""
    fig, axes = plt.subplots(1, len(frames), figsize=(3.2 * len(frames), 3.2), squeeze=False)
    for index, (ax, frame, labels) in enumerate(zip(axes[0], frames, label_images)):
        ax.imshow(overlay_image(frame.depth_m, labels, frame.K, None if poses is None else poses[index], axis_m), interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"t={frame.stamp_ns / 1e9:.2f} s", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def curves(x: Sequence[float], series: dict[str, Sequence[float]], path: str | os.PathLike, xlabel: str, ylabel: str, title: str = "") -> Path:
    """Several named curves over one x axis, one PNG."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name, values in series.items():
        ax.plot(x, values, marker="o", markersize=3, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return _save(fig, path)


def pose_error_figure(
    rotation_error_deg: np.ndarray,
    reliability: Sequence[tuple[float, float, int, float]] | None,
    path: str | os.PathLike,
    title: str = "",
) -> Path:
    """The rotation error of every true instance (a miss at 180 degrees) as a histogram, and beside it, where
    the poses have confidences, the fraction correct in each confidence bin: one PNG."""
    panels = 2 if reliability else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 3.4), squeeze=False)
    ax = axes[0, 0]
    ax.hist(np.clip(rotation_error_deg, 0.0, 180.0), bins=np.arange(0.0, 185.0, 5.0), color="tab:blue")
    for limit_deg in (5.0, 15.0):
        ax.axvline(limit_deg, color="tab:green", linestyle="--", linewidth=1)
    ax.set_xlabel("rotation error (deg; a miss counts 180)")
    ax.set_ylabel("true instances")
    ax.set_xlim(0, 180)
    if reliability:
        ax = axes[0, 1]
        centres = [(low + high) / 2 for low, high, _, _ in reliability]
        fractions = [0.0 if np.isnan(right) else right for _, _, _, right in reliability]
        bars = ax.bar(centres, fractions, width=0.18, color="tab:orange")
        for bar, (_, _, count, _) in zip(bars, reliability):
            ax.annotate(str(count), (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom", fontsize=8)
        ax.plot([0, 1], [0, 1], color="grey", linewidth=1)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.1)
        ax.set_xlabel("confidence (poses in each bin above the bar)")
        ax.set_ylabel("fraction correct, ADD(-S) < 0.1 d")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)
