"""The feature transfer network (thesis Sec. 5.2.2, 5.3.2): two fully connected layers trained on LR features
to predict the HR pseudo-labels; its N2-dimensional output is the transferred feature."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..optim import BPGrad
from .choices import OPTIMIZERS


@dataclass(frozen=True)
class TransferTraining:
    """How the transfer net is trained. The defaults are the thesis's, except the schedule's length.

    The thesis ran 31,561 iterations of batch 1,000 on VOC2007's 5,011 images and divided the learning rate
    by 10 at 15,000; our default of 200 iterations, divided at 100, keeps that shape and fits a CPU and a
    few thousand images.
    ``lipschitz`` and ``rho`` are BPGrad's (used with ``optimizer="bpgrad"``, which takes no learning rate).
    """

    iterations: int = 200
    batch_size: int = 1000
    lr: float = 0.01
    lr_step_iterations: int = 100
    lr_gamma: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    optimizer: str = "sgd"
    lipschitz: float = 100.0
    rho: float = 0.1

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer {self.optimizer!r}: expected one of {', '.join(OPTIMIZERS)}")
        for name in ("iterations", "batch_size", "lr_step_iterations"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be 1 or more, got {getattr(self, name)}")
        for name in ("lr", "lipschitz"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")

    def to_dict(self) -> dict:
        return asdict(self)


class TransferNet(nn.Module):
    """features (N, in_dim) -> ReLU(FC N1) -> FC N2: the transferred features (N, N2)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, out_dim)
        for layer in (self.fc1, self.fc2):
            # MSRA (He et al. 2015): zero-mean Gaussian with variance 2 / fan_in.
            nn.init.kaiming_normal_(layer.weight, mode="fan_in", nonlinearity="relu")
            nn.init.zeros_(layer.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(features)))


def _optimizer(net: nn.Module, training: TransferTraining) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler | None]:
    if training.optimizer == "bpgrad":
        optimizer = BPGrad(net.parameters(), lipschitz=training.lipschitz, rho=training.rho,
                           momentum=training.momentum, weight_decay=training.weight_decay)
        return optimizer, None
    optimizer = torch.optim.SGD(net.parameters(), lr=training.lr, momentum=training.momentum, weight_decay=training.weight_decay)
    return optimizer, torch.optim.lr_scheduler.StepLR(optimizer, training.lr_step_iterations, training.lr_gamma)


def train_transfer_net(
    lr_features: np.ndarray,
    targets: np.ndarray,
    n_outputs: int,
    hidden_dim: int,
    training: TransferTraining,
    seed: int,
    progress: bool = True,
) -> tuple[TransferNet, np.ndarray]:
    """The trained net and its loss per iteration.

    ``targets`` (N,) int are pseudo-labels in [0, n_outputs), fitted with cross-entropy (the thesis); targets
    (N, n_outputs) float are feature vectors, regressed with the mean squared error (feature distillation).
    """
    if len(lr_features) != len(targets):
        raise ValueError(f"{len(lr_features)} LR features but {len(targets)} targets")
    regression = targets.ndim == 2
    if regression and targets.shape[1] != n_outputs:
        raise ValueError(f"regression targets of dimension {targets.shape[1]} for a net of {n_outputs} outputs")
    if not regression and (targets.min() < 0 or targets.max() >= n_outputs):
        raise ValueError(f"pseudo-labels must be in [0, {n_outputs}), got [{targets.min()}, {targets.max()}]")
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        # Seeding the global generator only inside the fork keeps the caller's stream untouched.
        torch.manual_seed(seed)
        net = TransferNet(lr_features.shape[1], hidden_dim, n_outputs)
        optimizer, scheduler = _optimizer(net, training)
    inputs = torch.from_numpy(np.asarray(lr_features, dtype=np.float32))
    targets = torch.from_numpy(np.asarray(targets, dtype=np.float32 if regression else np.int64))
    loss_fn = F.mse_loss if regression else F.cross_entropy
    batch_size = min(training.batch_size, len(inputs))
    losses = np.empty(training.iterations, dtype=np.float32)
    order, cursor = torch.randperm(len(inputs), generator=generator), 0
    net.train()
    for iteration in tqdm(range(training.iterations), desc=f"transfer net {hidden_dim}x{n_outputs}", unit="it", disable=not progress):
        if cursor + batch_size > len(inputs):
            order, cursor = torch.randperm(len(inputs), generator=generator), 0
        rows = order[cursor : cursor + batch_size]
        cursor += batch_size
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(net(inputs[rows]), targets[rows])
        loss.backward()
        if training.optimizer == "bpgrad":
            optimizer.step(loss=loss)
        else:
            optimizer.step()
            scheduler.step()
        losses[iteration] = loss.item()
    net.eval()
    return net, losses


@torch.no_grad()
def transfer(net: TransferNet, lr_features: np.ndarray) -> np.ndarray:
    """(N, N2) float32 transferred features."""
    return net(torch.from_numpy(np.asarray(lr_features, dtype=np.float32))).numpy()
