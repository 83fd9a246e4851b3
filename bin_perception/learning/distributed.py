"""Data-parallel training across processes and machines: torch's DistributedDataParallel, as torchrun launches it.

torchrun sets RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT in each
process; :func:`init_from_env` joins the group they describe (gloo on the CPU,
nccl on GPUs). Every rank holds the whole model; DDP averages the gradients of
the pose network and of the object model alike, because it wraps the
:class:`~bin_perception.model.BinPerception` that owns both. The network's batch
norms are synchronised too, so that N ranks of B / N frames compute what one
process of B frames does.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed import _functional_collectives as functional_collectives
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class Cluster:
    """This process's place among the training processes: one of ``world_size``, on ``device``."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0, the one that writes the run directory."""
        return self.rank == 0

    @classmethod
    def current(cls) -> Cluster:
        """The process group this process has joined, if any; else a cluster of one on the CPU."""
        if not (dist.is_available() and dist.is_initialized()):
            return cls()
        local_rank = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
        on_gpu = dist.get_backend() == "nccl"
        device = torch.device("cuda", local_rank) if on_gpu else torch.device("cpu")
        return cls(dist.get_rank(), local_rank, dist.get_world_size(), device)

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    @contextlib.contextmanager
    def local_leader_first(self) -> Iterator[None]:
        """Run the body on each machine's local rank 0 first, then on its other ranks (which then find its cache)."""
        if self.local_rank != 0:
            self.barrier()
        yield
        if self.local_rank == 0:
            self.barrier()

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` holds on any rank: a decision every rank takes alike (so none waits in a collective alone)."""
        if not self.distributed:
            return flag
        value = torch.tensor([int(flag)], device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())


def init_from_env() -> Cluster:
    """Join the process group torchrun describes in the environment; a cluster of one without torchrun."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Cluster()
    on_gpu = torch.cuda.is_available()
    if on_gpu:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group("nccl" if on_gpu else "gloo")
    return Cluster.current()


def shutdown(cluster: Cluster) -> None:
    if cluster.distributed:
        dist.destroy_process_group()


def mean_over_ranks(value: torch.Tensor) -> torch.Tensor:
    """The mean of ``value`` over the ranks (gloo has no AVG reduction, so a sum over the count)."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    total = value.detach().clone()
    dist.all_reduce(total)
    return total / dist.get_world_size()


class CpuSyncBatchNorm2d(nn.BatchNorm2d):
    """A BatchNorm2d whose training statistics are the whole batch's, over all the ranks, on the CPU.

    torch's SyncBatchNorm has no CPU kernels, and DDP refuses it in a CPU module. Here the batch's
    per-channel sum, sum of squares and count are summed over the ranks instead.
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not self.training or not (dist.is_available() and dist.is_initialized()):
            return super().forward(input)
        self._check_input_dim(input)
        channels = input.shape[1]
        dims = [0, *range(2, input.dim())]
        count = torch.full((1,), input.numel() // channels, dtype=torch.float64)
        # Sums in double: the variance is a difference of two of them.
        sums = torch.cat([input.sum(dims, dtype=torch.float64), (input * input).sum(dims, dtype=torch.float64), count])
        # The functional all-reduce is differentiable: its backward sums the gradients over the ranks.
        sums = functional_collectives.all_reduce(sums, "sum", dist.group.WORLD)
        total = sums[-1]
        mean = sums[:channels] / total
        variance = sums[channels : 2 * channels] / total - mean * mean
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.lerp_(mean.to(self.running_mean.dtype), factor)
                self.running_var.lerp_((variance * total / (total - 1)).to(self.running_var.dtype), factor)
        shape = (1, channels) + (1,) * (input.dim() - 2)
        scale = torch.rsqrt(variance + self.eps).to(input.dtype)
        output = (input - mean.to(input.dtype).view(shape)) * scale.view(shape)
        if self.affine:
            output = output * self.weight.view(shape) + self.bias.view(shape)
        return output


def data_parallel(module: nn.Module, cluster: Cluster) -> nn.Module:
    """What the training step runs forward on: ``module`` itself, or DistributedDataParallel over all of it.

    The batch norms are synchronised in place (torch's SyncBatchNorm on GPUs, :class:`CpuSyncBatchNorm2d`
    on the CPU): their parameters stay the same objects and their state dict keys the same names, so
    optimisers and checkpoints see no difference.
    """
    if not cluster.distributed:
        return module
    if cluster.device.type == "cpu":
        for submodule in module.modules():
            # The subclass adds behaviour, not state: retyping beats rebuilding each layer.
            if type(submodule) is nn.BatchNorm2d:
                submodule.__class__ = CpuSyncBatchNorm2d
    else:
        nn.SyncBatchNorm.convert_sync_batchnorm(module)
    # The inputs are observations (numpy), which the module moves to its device itself: no device_ids.
    # With synchronised batch norms every rank's running statistics are the same: no broadcast each step.
    return DistributedDataParallel(module, forward_sync_buffers=False)
