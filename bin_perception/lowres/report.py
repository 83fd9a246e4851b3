"""The experiment's outputs: metrics.json, report.md (Tables 5.1 and 5.2 in our numbers) and t-SNE PNGs (Fig. 5.3)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..io.atomic import write_text

TSNE_TITLES = {"hr": "HR features", "lr": "LR features", "transfer": "transferred LR features"}


def plot_tsne(embeddings: dict[str, np.ndarray], labels: np.ndarray, class_names: list[str], out_dir: Path) -> list[Path]:
    """One PNG per feature set, points coloured by class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    colours = plt.get_cmap("tab10")
    for name, points in embeddings.items():
        fig, ax = plt.subplots(figsize=(5.5, 5))
        for c, class_name in enumerate(class_names):
            mine = labels[: len(points)] == c
            ax.scatter(points[mine, 0], points[mine, 1], s=6, color=colours(c % 10), label=class_name)
        ax.set_title(f"t-SNE of {TSNE_TITLES[name]}")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(markerscale=2, fontsize=7, loc="best")
        fig.tight_layout()
        path = out_dir / f"tsne_{name}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def markdown(metrics: dict) -> str:
    """report.md: the set-up, per-class AP with spread (Table 5.2), the N1 x N2 grid (Table 5.1)."""
    info = metrics["experiment"]
    plan = info["plan"]
    methods = [name for name in metrics if "per_class_ap" in metrics[name]]
    classes = info["classes"]
    seeds = ", ".join(map(str, plan["seeds"]))
    lines = [
        f"# Low-resolution classification: {info['dataset']}",
        "",
        (
            f"{info['description']}. {info['train_images']} training and {info['test_images']} test images; "
            f"protocol HR {info['protocol']['size_px']} px, LR {info['protocol']['low_px']} px up to {info['protocol']['size_px']} px. "
            f"Backbone {info['backbone']}. Transfer net N1 = {plan['hidden_dim']}, N2 = k = {plan['k']}, "
            f"{plan['training']['iterations']} iterations of batch {plan['training']['batch_size']} "
            f"(lr {plan['training']['lr']}, divided by 10 every {plan['training']['lr_step_iterations']}), seeds {seeds}. "
            f"Wall time {info['seconds']:.0f} s."
        ),
        "",
        "## Average precision per class (%), mean over seeds (Table 5.2)",
        "",
        "| method | " + " | ".join(classes) + " | mAP (mean ± std) |",
        "|---|" + "---|" * (len(classes) + 1),
    ]
    for name in methods:
        m = metrics[name]
        cells = [f"{m['per_class_ap'][c]:.1f}" for c in classes]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {m['mAP']['mean']:.1f} ± {m['mAP']['std']:.1f} |")
    lines += ["", "Methods:", ""] + [f"- `{name}`: {metrics[name]['description']}." for name in methods]
    grid = metrics["grid"]
    lines += [
        "",
        f"## mAP (%) of the thesis's method over N1 (columns) and N2 = k (rows), seed {grid['seed']} (Table 5.1)",
        "",
        "| N2 \\ N1 | " + " | ".join(map(str, grid["N1"])) + " |",
        "|---|" + "---|" * len(grid["N1"]),
    ]
    for k, row in zip(grid["N2"], grid["mAP"]):
        lines.append(f"| {k} | " + " | ".join("n/a" if v is None else f"{v:.1f}" for v in row) + " |")
    lines += ["", "## Fits", ""]
    for name, per_seed in metrics["fit_summaries"].items():
        lines.append(f"- `{name}`: " + "; ".join(json.dumps(s) for s in per_seed))
    lines += ["", "t-SNE of the first seed's test features: `tsne_hr.png`, `tsne_lr.png`, `tsne_transfer.png` (Fig. 5.3).", ""]
    return "\n".join(lines)


def write_report(metrics: dict, embeddings: dict[str, np.ndarray], tsne_labels: np.ndarray, out_dir: str | os.PathLike) -> Path:
    """Write DIR/metrics.json, DIR/report.md and DIR/tsne_*.png; the report's path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_tsne(embeddings, tsne_labels, metrics["experiment"]["classes"], out_dir)
    write_text(out_dir / "metrics.json", json.dumps(metrics, indent=1))
    report = out_dir / "report.md"
    write_text(report, markdown(metrics))
    return report
