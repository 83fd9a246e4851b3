"""Fashion-MNIST (Xiao, Rasul & Vollgraf, 2017) from the files of Debian's ``dataset-fashion-mnist`` package."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import torch

FASHION_MNIST_DIR = Path(os.environ.get("FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))
_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def load_fashion_mnist(split: str, root: str | os.PathLike = FASHION_MNIST_DIR) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 1, 28, 28) uint8 and labels (N,) int64 of ``split``, "train" (60,000) or "test" (10,000)."""
    if split not in _FILES:
        raise ValueError(f"split must be one of {', '.join(_FILES)}, got {split!r}")
    images_name, labels_name = _FILES[split]
    images = _read_idx(Path(root) / images_name, magic=0x803)
    labels = _read_idx(Path(root) / labels_name, magic=0x801)
    if len(images) != len(labels):
        raise ValueError(f"{root}: {len(images)} images but {len(labels)} labels in the {split} split")
    return torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))


def _read_idx(path: Path, magic: int) -> np.ndarray:
    """An IDX file (big-endian header: magic, then one uint32 per dimension; uint8 data), gzipped."""
    if not path.is_file():
        raise FileNotFoundError(
            f"Fashion-MNIST file {path} is missing: install Debian's dataset-fashion-mnist package "
            f"(`make setup` does), or point FASHION_MNIST_DIR at a folder holding {path.name}"
        )
    with gzip.open(path, "rb") as stream:
        raw = stream.read()
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise ValueError(f"{path}: not an IDX file of the expected kind (magic {found:#x}, expected {magic:#x})")
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(magic & 0xFF)]
    data = np.frombuffer(bytearray(raw), dtype=np.uint8, offset=4 + 4 * len(dims))
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: {data.size} bytes of data for dimensions {dims}")
    return data.reshape(dims)
