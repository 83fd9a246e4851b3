"""The low-resolution experiment of the thesis (Tables 5.1 and 5.2, Fig. 5.3) on one labelled image set,
with the references beyond the thesis: a supervised linear head and HR-to-LR feature distillation."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

import numpy as np
from sklearn.manifold import TSNE
from tqdm import tqdm

from .backbone import Backbone
from .datasets import LabelledImages
from .estimator import LowResClassifier
from .evaluation import per_class_ap, spread
from .features import extract_features
from .linear import fit_linear_svm, fit_softmax_head
from .transfer_net import TransferTraining, train_transfer_net, transfer

METHODS = {
    "hr": "SVM on HR features: the upper bound",
    "lr": "SVM on raw LR features: the lower bound",
    "transfer": "the thesis: SVM on transferred LR features (pseudo-label = nearest HR centroid), SGD",
    "transfer_bpgrad": "the thesis's method, the transfer net trained with BPGrad",
    "transfer_paired": "ours: as the thesis, but an LR image's pseudo-label is the HR cluster of the same image",
    "supervised_head": "supervised reference: a softmax linear head on LR features, trained on the class labels",
    "distill": "feature distillation without labels: the transfer net regresses HR features from LR ones (MSE), SVM on its output",
}


@dataclass(frozen=True)
class ExperimentPlan:
    """What one experiment runs. ``training`` defaults to the CPU schedule: the thesis's, scaled down."""

    seeds: tuple[int, ...] = (0, 1, 2)
    k: int = 100
    hidden_dim: int = 4096
    training: TransferTraining = field(default_factory=TransferTraining)
    svm_c: float = 1.0
    grid_hidden_dims: tuple[int, ...] = (256, 1024, 4096)
    grid_ks: tuple[int, ...] = (20, 100, 200)
    tsne_points: int = 600

    def __post_init__(self) -> None:
        if not self.seeds:
            raise ValueError("an experiment needs one seed or more")


@dataclass
class Features:
    """Backbone features of one split of a labelled set, at both resolutions."""

    hr_train: np.ndarray
    lr_train: np.ndarray
    hr_test: np.ndarray
    lr_test: np.ndarray


def dataset_features(backbone: Backbone, data: LabelledImages, progress: bool) -> Features:
    def features(images: np.ndarray, resolution: str) -> np.ndarray:
        return extract_features(backbone, images, data.protocol, resolution, progress=progress)

    return Features(
        features(data.train_images, "hr"), features(data.train_images, "lr"),
        features(data.test_images, "hr"), features(data.test_images, "lr"),
    )


def _transfer_classifier(
    data: LabelledImages, plan: ExperimentPlan, seed: int, backbone: Backbone, progress: bool, **overrides
) -> LowResClassifier:
    settings = {"k": plan.k, "hidden_dim": plan.hidden_dim, "training": plan.training, "svm_c": plan.svm_c, **overrides}
    return LowResClassifier(data.class_names, seed=seed, backbone_key=backbone.key, protocol=data.protocol, progress=progress, **settings)


def method_scores(
    data: LabelledImages, f: Features, plan: ExperimentPlan, seed: int, backbone: Backbone, progress: bool
) -> tuple[dict, dict, np.ndarray]:
    """Every method's test scores (N_test, C), the fit summaries, and the thesis's transferred test features."""
    n_classes = len(data.class_names)
    y = data.train_labels
    scores, summaries = {}, {}
    scores["hr"] = fit_linear_svm(f.hr_train, y, n_classes, plan.svm_c, seed).decision(f.hr_test)
    scores["lr"] = fit_linear_svm(f.lr_train, y, n_classes, plan.svm_c, seed).decision(f.lr_test)
    thesis = _transfer_classifier(data, plan, seed, backbone, progress).fit(f.lr_train, y, f.hr_train)
    scores["transfer"], summaries["transfer"] = thesis.decision_function(f.lr_test), thesis.fit_summary_
    bpgrad = _transfer_classifier(data, plan, seed, backbone, progress, training=replace(plan.training, optimizer="bpgrad"))
    bpgrad.fit(f.lr_train, y, f.hr_train)
    scores["transfer_bpgrad"], summaries["transfer_bpgrad"] = bpgrad.decision_function(f.lr_test), bpgrad.fit_summary_
    paired = _transfer_classifier(data, plan, seed, backbone, progress, assignment="paired").fit(f.lr_train, y, f.hr_train)
    scores["transfer_paired"], summaries["transfer_paired"] = paired.decision_function(f.lr_test), paired.fit_summary_
    scores["supervised_head"] = fit_softmax_head(f.lr_train, y, n_classes).decision(f.lr_test)
    distiller, losses = train_transfer_net(f.lr_train, f.hr_train, f.hr_train.shape[1], plan.hidden_dim, plan.training, seed, progress)
    svm = fit_linear_svm(transfer(distiller, f.lr_train), y, n_classes, plan.svm_c, seed)
    scores["distill"] = svm.decision(transfer(distiller, f.lr_test))
    summaries["distill"] = {"first_loss": float(losses[0]), "final_loss": float(losses[-10:].mean())}
    return scores, summaries, thesis.transform(f.lr_test)


def grid_map(
    data: LabelledImages, f: Features, plan: ExperimentPlan, seed: int, backbone: Backbone, known: dict, progress: bool
) -> list[list[float | None]]:
    """Table 5.1: test mAP of the thesis's method for each N2 = k (rows) and N1 (columns); None where k > N.

    ``known`` maps (k, N1) to an mAP already measured with the same seed, which is not fitted again.
    """
    cells = [(k, n1) for k in plan.grid_ks for n1 in plan.grid_hidden_dims]
    table: dict[tuple[int, int], float | None] = dict(known)
    for k, n1 in tqdm(cells, desc="N1 x N2 grid", disable=not progress):
        if (k, n1) in table:
            continue
        if k > len(f.hr_train):
            table[k, n1] = None
            continue
        model = _transfer_classifier(data, plan, seed, backbone, False, k=k, hidden_dim=n1).fit(f.lr_train, data.train_labels, f.hr_train)
        table[k, n1] = float(per_class_ap(model.decision_function(f.lr_test), data.test_labels, len(data.class_names)).mean())
    return [[table[k, n1] for n1 in plan.grid_hidden_dims] for k in plan.grid_ks]


def tsne_embeddings(features: dict[str, np.ndarray], points: int, seed: int) -> dict[str, np.ndarray]:
    """2-D t-SNE of the first ``points`` rows of each feature set (Fig. 5.3)."""
    return {
        name: TSNE(n_components=2, init="pca", perplexity=min(30.0, (min(points, len(x)) - 1) / 3), random_state=seed).fit_transform(x[:points])
        for name, x in features.items()
    }


def run_experiment(
    load_data: Callable[[int], LabelledImages], backbone: Backbone, plan: ExperimentPlan, progress: bool = True
) -> tuple[dict, dict[str, np.ndarray], np.ndarray]:
    """Metrics (JSON-ready), the t-SNE embeddings of the first seed's test set, and those points' labels.

    ``load_data(seed)`` gives the labelled set of a seed (the same set for every seed where the split is fixed).
    """
    start = time.perf_counter()
    aps: dict[str, list[np.ndarray]] = {name: [] for name in METHODS}
    summaries: dict[str, list[dict]] = {}
    for index, seed in enumerate(plan.seeds):
        data = load_data(seed)
        f = dataset_features(backbone, data, progress)
        if progress:
            print(f"seed {seed}: fitting {len(METHODS)} methods on {len(data.train_labels)} training images", flush=True)
        scores, fit_summaries, transferred_test = method_scores(data, f, plan, seed, backbone, progress)
        for name, method_scores_ in scores.items():
            aps[name].append(per_class_ap(method_scores_, data.test_labels, len(data.class_names)))
        for name, summary in fit_summaries.items():
            summaries.setdefault(name, []).append(summary)
        if index == 0:
            first, first_features, first_transferred = data, f, transferred_test
    known = {(plan.k, plan.hidden_dim): float(aps["transfer"][0].mean())}
    grid = grid_map(first, first_features, plan, plan.seeds[0], backbone, known, progress)
    embeddings = tsne_embeddings(
        {"hr": first_features.hr_test, "lr": first_features.lr_test, "transfer": first_transferred}, plan.tsne_points, plan.seeds[0]
    )
    metrics: dict = {}
    for name, per_seed in aps.items():
        per_seed = np.stack(per_seed)
        std = per_seed.std(axis=0, ddof=1) if len(per_seed) > 1 else np.zeros(per_seed.shape[1])
        metrics[name] = {
            "description": METHODS[name],
            "mAP": spread(per_seed.mean(axis=1)),
            "mAP_per_seed": per_seed.mean(axis=1).round(2).tolist(),
            "per_class_ap": {c: round(float(v), 2) for c, v in zip(first.class_names, per_seed.mean(axis=0))},
            "per_class_ap_std": {c: round(float(v), 2) for c, v in zip(first.class_names, std)},
        }
    metrics["grid"] = {"N1": list(plan.grid_hidden_dims), "N2": list(plan.grid_ks), "mAP": grid, "seed": plan.seeds[0]}
    metrics["fit_summaries"] = summaries
    metrics["experiment"] = {
        "dataset": first.name,
        "description": first.description,
        "classes": list(first.class_names),
        "train_images": len(first.train_labels),
        "test_images": len(first.test_labels),
        "protocol": asdict(first.protocol),
        "backbone": backbone.key,
        "plan": {**asdict(plan), "training": plan.training.to_dict()},
        "seconds": round(time.perf_counter() - start, 1),
    }
    return metrics, embeddings, first.test_labels[: plan.tsne_points]
