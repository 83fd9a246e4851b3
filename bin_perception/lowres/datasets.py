"""The labelled image sets of the low-resolution experiments, each with its HR/LR protocol.

- ``sim-parts``: renders of the six library parts (``bin_perception.sim.renders``), 224 px; HR = 224,
  LR = 32 then 224, the thesis's protocol. The train/test split is stratified and drawn by seed.
- ``fashion-mnist``: Debian's Fashion-MNIST, 28 px grey; HR = 28 up to 224, LR = 28 down to 8 then up to
  224 (a 3.5x reduction of an already small image). The first ``n_train`` / ``n_test`` images of the
  official splits, so every seed sees the same images.
- An ``.npz`` of the user's own: ``images`` (N, H, W[, 3]) uint8, ``labels`` (N,) int, ``class_names`` (C,).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from .images import ResolutionProtocol


@dataclass(frozen=True)
class LabelledImages:
    """A train and a test split of uint8 images with class indices, and the protocol to view them at."""

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    class_names: tuple[str, ...]
    protocol: ResolutionProtocol
    description: str


def split_by_seed(images: np.ndarray, labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, ...]:
    """A stratified split: (train images, train labels, test images, test labels)."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test fraction {test_fraction}: must be in (0, 1)")
    train_rows, test_rows = train_test_split(np.arange(len(labels)), test_size=test_fraction, stratify=labels, random_state=seed)
    return images[train_rows], labels[train_rows], images[test_rows], labels[test_rows]


def sim_parts(per_part: int, seed: int, test_fraction: float = 0.3, low_px: int = 32, progress: bool = True) -> LabelledImages:
    """``per_part`` renders of each library part (render stream 0), split by ``seed``."""
    from ..sim.renders import render_parts

    renders = render_parts(per_part, seed=0, progress=progress)
    split = split_by_seed(renders.images, renders.labels, test_fraction, seed)
    return LabelledImages(
        "sim-parts", *split, renders.class_names, ResolutionProtocol(224, low_px),
        f"{per_part} renders per part of {len(renders.class_names)} parts (one part per image, in a bin or on a tray, "
        f"random pose, lighting, colours, camera distance and tilt), 224 px; {round(100 * test_fraction)}% test, "
        f"stratified, drawn by seed {seed}",
    )


def fashion_mnist(n_train: int, n_test: int, low_px: int = 8) -> LabelledImages:
    """The first ``n_train`` training and ``n_test`` test images of Fashion-MNIST."""
    from .fashion_mnist import CLASSES, load_fashion_mnist

    if n_train < 1 or n_test < 1:
        raise ValueError(f"Fashion-MNIST subset sizes must be 1 or more, got train {n_train}, test {n_test}")
    train_images, train_labels = load_fashion_mnist("train")
    test_images, test_labels = load_fashion_mnist("test")
    return LabelledImages(
        "fashion-mnist",
        train_images[:n_train, 0].numpy(), train_labels[:n_train].numpy(),
        test_images[:n_test, 0].numpy(), test_labels[:n_test].numpy(),
        CLASSES, ResolutionProtocol(224, low_px),
        f"Fashion-MNIST, the first {n_train} training and {n_test} test images, 28 px grey: "
        f"HR = 28 up to 224, LR = 28 down to {low_px} then up to 224, bicubic",
    )


def npz_images(path: str | os.PathLike, seed: int, test_fraction: float = 0.3, low_px: int = 32) -> LabelledImages:
    """A user's images from an ``.npz`` holding ``images``, ``labels`` and ``class_names``, split by ``seed``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image set {path}: no such file")
    with np.load(path, allow_pickle=False) as stored:
        missing = {"images", "labels", "class_names"} - set(stored.files)
        if missing:
            raise ValueError(f"image set {path}: lacks the array(s) {', '.join(sorted(missing))}")
        images, labels, class_names = stored["images"], stored["labels"].astype(np.int64), tuple(map(str, stored["class_names"]))
    if images.dtype != np.uint8 or images.ndim not in (3, 4) or len(images) != len(labels):
        raise ValueError(f"image set {path}: expected uint8 images (N, H, W[, 3]) and N labels, got {images.dtype} {images.shape} and {labels.shape}")
    if labels.min() < 0 or labels.max() >= len(class_names):
        raise ValueError(f"image set {path}: labels span [{labels.min()}, {labels.max()}] but there are {len(class_names)} class names")
    split = split_by_seed(images, labels, test_fraction, seed)
    return LabelledImages(path.stem, *split, class_names, ResolutionProtocol(224, low_px), f"{len(images)} images from {path}")
