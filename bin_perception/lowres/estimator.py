"""The unsupervised deep feature transfer classifier (thesis ch. 5) as a scikit-learn-style estimator.

It works on backbone features: ``fit(lr_features, labels, hr_features=...)`` clusters the HR features into
k pseudo-classes, labels every LR feature with its nearest HR centroid, trains the transfer net on those
pseudo-labels, and only then uses the class labels, to train one-vs-rest linear SVMs on the transferred
features. ``transform``, ``decision_function`` and ``predict`` take LR features alone.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from ..io.atomic import replacing, write_text
from .choices import ASSIGNMENTS
from .images import ResolutionProtocol
from .linear import LinearScorer, fit_linear_svm
from .pseudo_labels import check_features, fit_centroids, nearest_centroid
from .transfer_net import TransferNet, TransferTraining, train_transfer_net, transfer

FORMAT = "bin_perception.lowres/1"


class ModelFileError(ValueError):
    """A saved low-resolution classifier that cannot be read: the message names the file and the problem."""


class LowResClassifier:
    """LR features -> transferred features (N2 = k) -> one-vs-rest linear SVM scores per class.

    Args:
        class_names: the classes, in label order.
        k: the k-means clusters on HR features, which is also N2, the transferred feature's dimension.
        hidden_dim: N1, the transfer net's first layer.
        training: how the transfer net is trained (default: ``TransferTraining()``, SGD; or BPGrad).
        svm_c: the SVMs' C.
        assignment: ``"nearest"`` (the thesis): an LR feature's pseudo-label is its nearest HR centroid.
            ``"paired"``: it is the cluster of the HR view of the same image, where HR and LR features are paired.
        seed: k-means, the net's initialisation and batch order, the SVM.
        backbone_key, protocol: the features this model expects (default protocol: 224 px, LR 32 px),
            recorded in its sidecar for serving.
    """

    def __init__(
        self,
        class_names: list[str] | tuple[str, ...],
        k: int = 100,
        hidden_dim: int = 4096,
        training: TransferTraining | None = None,
        svm_c: float = 1.0,
        assignment: str = "nearest",
        seed: int = 0,
        backbone_key: str = "",
        protocol: ResolutionProtocol | None = None,
        progress: bool = True,
    ) -> None:
        if len(class_names) < 2:
            raise ValueError(f"class_names: a classifier needs 2 or more classes, got {list(class_names)}")
        if assignment not in ASSIGNMENTS:
            raise ValueError(f"assignment {assignment!r}: expected one of {', '.join(ASSIGNMENTS)}")
        if hidden_dim < 1:
            raise ValueError(f"hidden_dim (N1) must be 1 or more, got {hidden_dim}")
        self.class_names = tuple(class_names)
        self.k, self.hidden_dim, self.training, self.svm_c = k, hidden_dim, training or TransferTraining(), svm_c
        self.assignment, self.seed = assignment, seed
        self.backbone_key, self.protocol, self.progress = backbone_key, protocol or ResolutionProtocol(), progress
        self.net_: TransferNet | None = None
        self.centroids_: np.ndarray | None = None
        self.svm_: LinearScorer | None = None
        self.fit_summary_: dict = {}

    def fit(self, lr_features: np.ndarray, labels: np.ndarray, hr_features: np.ndarray) -> LowResClassifier:
        lr_features = check_features(lr_features, "LR features")
        hr_features = check_features(hr_features, "HR features")
        if hr_features.shape[1] != lr_features.shape[1]:
            raise ValueError(f"HR features of dimension {hr_features.shape[1]} but LR of {lr_features.shape[1]}")
        self.centroids_ = fit_centroids(hr_features, self.k, self.seed)
        if self.assignment == "paired":
            if len(hr_features) != len(lr_features):
                raise ValueError(f"paired assignment needs one HR feature per LR feature: {len(hr_features)} HR, {len(lr_features)} LR")
            pseudo_labels = nearest_centroid(hr_features, self.centroids_)
        else:
            pseudo_labels = nearest_centroid(lr_features, self.centroids_)
        self.net_, losses = train_transfer_net(
            lr_features, pseudo_labels, self.k, self.hidden_dim, self.training, self.seed, self.progress
        )
        self.svm_ = fit_linear_svm(transfer(self.net_, lr_features), labels, len(self.class_names), self.svm_c, self.seed)
        self.fit_summary_ = {
            "train_images": len(lr_features),
            # Few used clusters means the LR features fell near few HR centroids: a weak teacher signal.
            "pseudo_classes_used": len(np.unique(pseudo_labels)),
            "final_loss": float(losses[-10:].mean()),
            "first_loss": float(losses[0]),
        }
        return self

    def _check_fitted(self) -> None:
        if self.net_ is None or self.svm_ is None:
            raise RuntimeError("this LowResClassifier is not fitted: call fit() or load_classifier() first")

    def transform(self, lr_features: np.ndarray) -> np.ndarray:
        """(N, k) transferred features."""
        self._check_fitted()
        return transfer(self.net_, check_features(lr_features, "LR features"))

    def decision_function(self, lr_features: np.ndarray) -> np.ndarray:
        """(N, classes) SVM margins: positive where the class's SVM says yes."""
        transferred = self.transform(lr_features)
        return self.svm_.decision(transferred)

    def predict(self, lr_features: np.ndarray) -> np.ndarray:
        """(N,) int64 class indices (into ``class_names``)."""
        return self.decision_function(lr_features).argmax(axis=1)

    def metadata(self) -> dict:
        return {
            "format": FORMAT,
            "class_names": list(self.class_names),
            "k": self.k,
            "hidden_dim": self.hidden_dim,
            "in_dim": int(self.net_.fc1.in_features) if self.net_ is not None else None,
            "training": self.training.to_dict(),
            "svm_c": self.svm_c,
            "assignment": self.assignment,
            "seed": self.seed,
            "backbone_key": self.backbone_key,
            "protocol": {"size_px": self.protocol.size_px, "low_px": self.protocol.low_px},
            "fit_summary": self.fit_summary_,
        }


def sidecar_path(path: str | os.PathLike) -> Path:
    return Path(path).with_suffix(".json")


def save_classifier(path: str | os.PathLike, model: LowResClassifier) -> None:
    """Write ``path`` (tensors only) and ``path.json`` (everything else) beside it, each atomically."""
    model._check_fitted()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "net": model.net_.state_dict(),
        "centroids": torch.from_numpy(model.centroids_),
        **{f"svm_{name}": torch.from_numpy(np.asarray(array)) for name, array in model.svm_.arrays().items()},
    }
    with replacing(path) as tmp:
        torch.save(state, tmp)
    write_text(sidecar_path(path), json.dumps(model.metadata(), indent=1))


def load_classifier(path: str | os.PathLike) -> LowResClassifier:
    """A fitted classifier from ``path`` and its sidecar; ``torch.load(weights_only=True)`` reads no code."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"low-resolution classifier {path}: no such file")
    sidecar = sidecar_path(path)
    if not sidecar.is_file():
        raise ModelFileError(f"low-resolution classifier {path}: its sidecar {sidecar.name} is missing")
    try:
        metadata = json.loads(sidecar.read_text())
        if metadata.get("format") != FORMAT:
            raise ValueError(f"format {metadata.get('format')!r} is not {FORMAT!r}")
        model = LowResClassifier(
            metadata["class_names"],
            k=metadata["k"],
            hidden_dim=metadata["hidden_dim"],
            training=TransferTraining(**metadata["training"]),
            svm_c=metadata["svm_c"],
            assignment=metadata["assignment"],
            seed=metadata["seed"],
            backbone_key=metadata["backbone_key"],
            protocol=ResolutionProtocol(**metadata["protocol"]),
            progress=False,
        )
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.net_ = TransferNet(metadata["in_dim"], model.hidden_dim, model.k)
        model.net_.load_state_dict(state["net"])
        model.net_.eval()
        model.centroids_ = state["centroids"].numpy()
        model.svm_ = LinearScorer(*(state[f"svm_{name}"].numpy() for name in ("mean", "scale", "coef", "intercept")))
        if model.svm_.coef.shape[0] != len(model.class_names):
            raise ValueError(f"{model.svm_.coef.shape[0]} SVMs for {len(model.class_names)} class names")
        model.fit_summary_ = metadata.get("fit_summary", {})
    except (KeyError, TypeError, ValueError, RuntimeError, json.JSONDecodeError) as error:
        raise ModelFileError(f"low-resolution classifier {path}: {error}") from None
    return model
