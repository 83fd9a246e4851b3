"""Rendering the learned model at the estimated poses, hiding what the camera cannot see, and the loss.

For each instance i, X_i = s_i R_i X + t_i, where s_i = -1 selects the thesis's
second rotation channel (a reflection, which equals a rotation for parts with
a plane of symmetry). All instances are rendered together, so that HPR lets one
instance hide another.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

from .chamfer import chamfer_distance
from .hpr import visible_mask


def render(model: torch.Tensor, rotations: torch.Tensor, translations: torch.Tensor, signs: torch.Tensor | None = None) -> torch.Tensor:
    """The scene cloud (B, N * m, 3): model (m, 3) at rotations (B, N, 3, 3), translations (B, N, 3).

    Points of instance i occupy rows i * m to (i + 1) * m - 1.
    """
    placed = torch.einsum("bnij,mj->bnmi", rotations, model)
    if signs is not None:
        placed = placed * signs[:, :, None, None]
    placed = placed + translations[:, :, None, :]
    return placed.reshape(len(rotations), -1, 3)


def instance_ids(instances: int, model_points: int) -> np.ndarray:
    """The 1-based instance id of each row of a rendered scene."""
    return np.repeat(np.arange(1, instances + 1), model_points)


def visible_scene(scene: torch.Tensor, camera: np.ndarray, hpr_exponent: float | None) -> torch.Tensor:
    """HPR over a rendered batch: (B, N * m) booleans."""
    return torch.from_numpy(visible_mask(scene.detach().cpu().numpy(), camera, hpr_exponent)).to(scene.device)


def channel_signs(instances: int, device: torch.device | None = None) -> torch.Tensor:
    """All 2^N choices of rotation channel, as (2^N, N) signs of +1 and -1."""
    return torch.tensor(list(itertools.product((1.0, -1.0), repeat=instances)), device=device)


def scene_loss(
    observed: torch.Tensor,
    model: torch.Tensor,
    rotations: torch.Tensor,
    translations: torch.Tensor,
    camera: np.ndarray,
    hpr_exponent: float | None,
    rotation_channels: int = 1,
    gamma: float = 0.0,
    channel_loss: str = "softmin",
) -> torch.Tensor:
    """The training loss per batch element (B,): the chamfer distance (Eq. 4.1) or its two-channel form (Eq. 4.2)."""
    if rotation_channels == 1:
        scene = render(model, rotations, translations)
        return chamfer_distance(observed, scene, visible_scene(scene, camera, hpr_exponent))
    losses = _channel_losses(observed, model, rotations, translations, camera, hpr_exponent)  # (B, 2^N)
    if channel_loss == "min":
        return losses.min(dim=1).values
    # Softmin weights of Eq. 4.2, treated as constants: they select channels,
    # they are not themselves a quantity to descend.
    weights = torch.softmax(-gamma * losses.detach() / losses.detach().sum(dim=1, keepdim=True), dim=1)
    return (weights * losses).sum(dim=1)


def _channel_losses(
    observed: torch.Tensor,
    model: torch.Tensor,
    rotations: torch.Tensor,
    translations: torch.Tensor,
    camera: np.ndarray,
    hpr_exponent: float | None,
) -> torch.Tensor:
    """The chamfer loss (B, 2^N) of every combination of rotation channels."""
    losses = []
    for signs in channel_signs(rotations.shape[1], observed.device):
        scene = render(model, rotations, translations, signs.expand(len(rotations), -1))
        losses.append(chamfer_distance(observed, scene, visible_scene(scene, camera, hpr_exponent)))
    return torch.stack(losses, dim=1)


@torch.no_grad()
def best_channels(
    observed: torch.Tensor,
    model: torch.Tensor,
    rotations: torch.Tensor,
    translations: torch.Tensor,
    camera: np.ndarray,
    hpr_exponent: float | None,
) -> torch.Tensor:
    """For two-channel inference: the signs (B, N) of the channel combination with the lowest loss."""
    losses = _channel_losses(observed, model, rotations, translations, camera, hpr_exponent)
    return channel_signs(rotations.shape[1], observed.device)[losses.argmin(dim=1)]
