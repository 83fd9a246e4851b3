"""Pictures for people: contact sheets of frames."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .frame import Frame  # noqa: E402


def label_colours(labels: np.ndarray) -> np.ndarray:
    """An RGB image of instance labels: black for 0, a distinct colour per instance."""
    palette = (plt.get_cmap("tab20")(np.arange(20))[:, :3] * 255).astype(np.uint8)
    rgb = palette[(labels.astype(np.int64) - 1) % 20]
    rgb[labels == 0] = 0
    return rgb


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
                shown = ax.imshow(np.ma.masked_invalid(frame.depth_m), cmap="viridis")
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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)
    os.replace(tmp, path)
    return path
