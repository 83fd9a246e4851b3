"""The high- and low-resolution views of an image (thesis Sec. 5.3.1), as pure functions on arrays.

HR: the image resized to ``size_px`` square, bicubic. LR: the image down-sampled to ``low_px`` square, then
up-sampled to ``size_px``, bicubic both ways, so that a backbone sees the same input size at both resolutions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

RESOLUTIONS = ("hr", "lr")


@dataclass(frozen=True)
class ResolutionProtocol:
    """The sizes of the two views: HR is ``size_px`` square; LR passes through ``low_px`` square first."""

    size_px: int = 224
    low_px: int = 32

    def __post_init__(self) -> None:
        if self.size_px < 8:
            raise ValueError(f"protocol size_px={self.size_px}: the backbone input must be 8 px or more")
        if not 1 <= self.low_px <= self.size_px:
            raise ValueError(f"protocol low_px={self.low_px}: must be in [1, size_px={self.size_px}]")

    def key(self, resolution: str) -> str:
        """A short name of one view, for cache keys and reports."""
        check_resolution(resolution)
        return f"hr{self.size_px}" if resolution == "hr" else f"lr{self.low_px}to{self.size_px}"

    def view(self, images: np.ndarray | torch.Tensor, resolution: str) -> torch.Tensor:
        """(N, 3, size_px, size_px) float32 in [0, 255]: the ``"hr"`` or ``"lr"`` view of RGB images."""
        check_resolution(resolution)
        batch = rgb_batch(images)
        if resolution == "lr":
            batch = resize_bicubic(batch, self.low_px)
        return resize_bicubic(batch, self.size_px)


def check_resolution(resolution: str) -> None:
    if resolution not in RESOLUTIONS:
        raise ValueError(f"resolution {resolution!r}: expected one of {', '.join(RESOLUTIONS)}")


def rgb_batch(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) float32 in [0, 255] from uint8 images (N, H, W, 3) RGB or (N, H, W) grey."""
    array = images.numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if array.dtype != np.uint8:
        raise ValueError(f"images: expected uint8 pixels, got {array.dtype}")
    if array.ndim == 3:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 4 or array.shape[-1] != 3:
        raise ValueError(f"images: expected (N, H, W, 3) RGB or (N, H, W) grey, got shape {array.shape}")
    if 0 in array.shape:
        raise ValueError(f"images: empty batch or image, shape {array.shape}")
    # astype copies, so a read-only input (a decoded message, a PIL image) is fine.
    return torch.from_numpy(array.astype(np.float32)).permute(0, 3, 1, 2)


def resize_bicubic(batch: torch.Tensor, size_px: int) -> torch.Tensor:
    """(N, C, size_px, size_px): bicubic, anti-aliased when shrinking (as MATLAB's imresize), clamped to [0, 255]."""
    if batch.shape[-2:] == (size_px, size_px):
        return batch
    shrinking = size_px < max(batch.shape[-2:])
    resized = F.interpolate(batch, size=(size_px, size_px), mode="bicubic", align_corners=False, antialias=shrinking)
    return resized.clamp_(0.0, 255.0)
