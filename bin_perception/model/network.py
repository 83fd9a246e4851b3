"""The learned parts: the pose network (ResNet-18) and the point-cloud object model."""

from __future__ import annotations

import torch
import torchvision
from torch import nn

from .rotations import PARAMS_PER_ROTATION, about_optical_axis, params_to_matrix


class PoseNet(nn.Module):
    """A ResNet-18 (random init) that regresses one pose per instance from the depth image.

    Input (B, 1, S, S); output rotations (B, N, 3, 3) and translations (B, N, 3)
    in model units. The ``depth3`` stem replicates the depth to three channels,
    as the thesis does; ``depth1`` gives the first convolution one channel.
    """

    def __init__(self, instances: int, rotation: str = "quaternion", stem: str = "depth3") -> None:
        super().__init__()
        if instances < 1:
            raise ValueError(f"instances must be at least 1, got {instances}")
        self.instances, self.rotation, self.stem = instances, rotation, stem
        self.rotation_params = PARAMS_PER_ROTATION[rotation]
        outputs = instances * (self.rotation_params + 3)
        self.backbone = torchvision.models.resnet18(weights=None, num_classes=outputs)
        if stem == "depth1":
            self.backbone.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
        # Start from small outputs: near-identity rotations and translations near
        # the workspace centre, rather than wherever random weights point.
        nn.init.normal_(self.backbone.fc.weight, std=1e-3)
        with torch.no_grad():
            bias = self.backbone.fc.bias.view(instances, -1)
            bias.zero_()
            if rotation == "quaternion":
                bias[:, 3] = 1.0
            elif rotation == "ortho6d":
                bias[:, 0] = bias[:, 4] = 1.0

    def train(self, mode: bool = True) -> PoseNet:
        # On a CPU, oneDNN's channels-last convolutions take a fifth less time at inference over a pile's
        # crops, and none less in training: the weights take the layout that suits the mode, and forward
        # gives the image theirs.
        super().train(mode)
        return self.to(memory_format=torch.contiguous_format if mode else torch.channels_last)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.stem == "depth3":
            image = image.expand(-1, 3, -1, -1)
        if not self.training:
            image = image.contiguous(memory_format=torch.channels_last)
        out = self.backbone(image).view(image.shape[0], self.instances, self.rotation_params + 3)
        return params_to_matrix(out[..., : self.rotation_params], self.rotation), out[..., self.rotation_params :]


class ObjectModel(nn.Module):
    """X, the part as m learnable points, initialised uniformly in a cube of side ``init_cube`` at the origin."""

    def __init__(self, points: int = 1024, init_cube: float = 0.5) -> None:
        super().__init__()
        self.points = nn.Parameter((torch.rand(points, 3) - 0.5) * init_cube)

    def forward(self) -> torch.Tensor:
        return self.points


def seed_poses(net: PoseNet, crops: torch.Tensor, angles_rad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The per-seed network's poses of K crops (K, 1, S, S), each turned by -angle (K,) about the optical axis
    (:mod:`bin_perception.model.observation`), turned back: rotations (K, 3, 3) and offsets from the seeds'
    centroids (K, 3), model units."""
    rotations, offsets = net(crops)
    turn = about_optical_axis(angles_rad)
    return turn @ rotations[:, 0], (turn @ offsets[:, 0, :, None])[..., 0]
