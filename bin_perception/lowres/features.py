"""Backbone features of the HR or LR view of images: batched, with progress, cached on disk per image.

A cached feature is keyed by the image's content hash, the backbone's key (network and weights) and the view
(protocol sizes), so a changed image, network or protocol is a cache miss, never a stale hit.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..cache import cache_dir
from .backbone import Backbone
from .images import ResolutionProtocol, check_resolution, rgb_batch


def image_digest(image: np.ndarray) -> str:
    """A content hash of one image: its shape, dtype and pixels."""
    image = np.ascontiguousarray(image)
    digest = hashlib.sha256(f"{image.shape}{image.dtype}".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()[:32]


def feature_cache_dir(backbone: Backbone, protocol: ResolutionProtocol, resolution: str) -> Path:
    """``$BIN_PERCEPTION_CACHE/lowres_features/<backbone key>/<view>`` (default cache: ~/.cache/bin_perception)."""
    return cache_dir() / "lowres_features" / backbone.key / protocol.key(resolution)


def extract_features(
    backbone: Backbone,
    images: np.ndarray,
    protocol: ResolutionProtocol,
    resolution: str,
    batch_size: int = 16,
    use_cache: bool = True,
    progress: bool = True,
) -> np.ndarray:
    """(N, feature_dim) float32 features of the ``resolution`` view of uint8 ``images`` (N, H, W[, 3])."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be 1 or more, got {batch_size}")
    images = np.asarray(images)
    rgb_batch(images[:1])  # a bad shape or dtype fails here, before any work
    check_resolution(resolution)
    features = np.empty((len(images), backbone.feature_dim), dtype=np.float32)
    folder = feature_cache_dir(backbone, protocol, resolution)
    paths = [folder / f"{image_digest(image)}.npy" for image in images] if use_cache else []
    missing = [i for i in range(len(images)) if not use_cache or not paths[i].is_file()]
    for i in set(range(len(images))) - set(missing):
        features[i] = np.load(paths[i])
    if use_cache and missing:
        folder.mkdir(parents=True, exist_ok=True)
    batches = [missing[start : start + batch_size] for start in range(0, len(missing), batch_size)]
    desc = f"{backbone.name} {protocol.key(resolution)} features"
    with tqdm(total=len(missing), desc=desc, unit="img", disable=not progress or not missing) as bar:
        for rows in batches:
            batch = backbone(protocol.view(images[rows], resolution)).numpy()
            features[rows] = batch
            if use_cache:
                for row, feature in zip(rows, batch):
                    tmp = paths[row].with_name(f".{paths[row].stem}.{os.getpid()}.tmp.npy")
                    np.save(tmp, feature)
                    os.replace(tmp, paths[row])
            bar.update(len(rows))
    return features

