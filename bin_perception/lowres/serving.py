"""Images in, class scores out: the backbone a saved classifier was trained with, then the classifier.

This is the one classify path that the node, ``bin-perception lowres predict`` and the benchmark share.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np

from .backbone import Backbone, load_backbone
from .estimator import LowResClassifier, ModelFileError, load_classifier
from .features import extract_features


@dataclass(frozen=True)
class Timing:
    """Seconds spent in each stage of one ``scores`` call."""

    backbone_s: float
    head_s: float  # transfer net and SVMs


class ImageClassifier:
    """A fitted ``LowResClassifier`` with its backbone; every input image gets the LR view of its protocol."""

    def __init__(self, model: LowResClassifier, backbone: Backbone) -> None:
        if model.backbone_key and model.backbone_key != backbone.key:
            raise ModelFileError(
                f"the classifier was trained on {model.backbone_key} features, but the backbone is {backbone.key}"
            )
        self.model, self.backbone = model, backbone
        self.class_names = model.class_names
        self.last_timing = Timing(0.0, 0.0)

    @classmethod
    def load(cls, path: str | os.PathLike, backbone_weights: str | os.PathLike | None = None) -> ImageClassifier:
        model = load_classifier(path)
        name = model.backbone_key.rsplit("-", 1)[0] if model.backbone_key else "efficientnet-lite0"
        return cls(model, load_backbone(name, backbone_weights))

    def scores(self, images: np.ndarray) -> np.ndarray:
        """(N, classes) SVM margins for uint8 images (N, H, W, 3) RGB or (N, H, W) grey, of any size."""
        start = time.perf_counter()
        features = extract_features(self.backbone, images, self.model.protocol, "lr", use_cache=False, progress=False)
        middle = time.perf_counter()
        scores = self.model.decision_function(features)
        self.last_timing = Timing(middle - start, time.perf_counter() - middle)
        return scores
