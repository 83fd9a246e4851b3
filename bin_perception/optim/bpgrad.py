"""BPGrad, the branch-and-prune solver for deep learning (Wu, Zhang & Wang, CVPR 2018; Wu 2019, Alg. 2)."""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Callable

import torch
from torch import Tensor
from torch.optim.optimizer import Optimizer, ParamsT, _default_to_fused_or_foreach

__all__ = ["BPGrad"]

# These describe the objective, not a parameter group: one f(x_t), one min f, one pair of bounds.
_SHARED_OPTIONS = ("rho", "eta_outside_momentum", "epoch_mean_loss", "norm_before_decay")


class BPGrad(Optimizer):
    r"""BPGrad: a step whose length is the gap between f(x_t) and a lower bound of f*, over a Lipschitz constant.

    Alg. 2 of Wu (2019), with the global minimum f* of f bracketed by the estimates
    :math:`\rho \min_{i \le t} f(x_i) \le f^* \le \min_{i \le t} f(x_i)`:

    .. math::
        \eta_t = \frac{f(x_t) - \rho \min_{i \le t} f(x_i)}{L}, \qquad
        v_{t+1} = \mu v_t - \eta_t \frac{g_t}{\lVert g_t \rVert_2}, \qquad
        x_{t+1} = x_t + v_{t+1},

    where f(x_t) is the mini-batch loss given to :meth:`step`, :math:`g_t` its gradient plus
    ``weight_decay`` times the parameters (the decay enters the gradient, not f, as in torch.optim.SGD),
    and the norm is the one L2 norm over every parameter of every group. Where that norm is zero the
    direction is a random unit vector: a signed coordinate axis, uniform over all parameters, from a
    stream seeded with ``torch.initial_seed()`` at construction. It costs one element write, where an
    isotropic direction would cost a normal draw per parameter at every step.

    The step never reads a value back to the host: f(x_t), min f and the norm stay 0-dim tensors on
    the device, so a CUDA step queues its kernels without a synchronisation. :attr:`lower_bound` and
    :attr:`upper_bound` are those tensors too.

    State: each parameter's velocity is ``momentum_buffer * momentum_scale`` (see ``_update``: one pass
    over memory instead of two); min f and the running mean of the loss live in the first parameter's
    state, as torch.optim.LBFGS keeps its own, so that :meth:`state_dict` carries the bounds and a
    resumed run does not restart min f.

    The authors' MatConvNet code differs from the thesis in three ways; each is an option here, off by
    default (the thesis's form):

    - ``eta_outside_momentum``: :math:`v_{t+1} = \mu v_t - g_t / \lVert g_t \rVert_2`,
      :math:`x_{t+1} = x_t + \eta_t v_{t+1}`, so old directions are rescaled by today's step length.
    - ``epoch_mean_loss``: f(x_t) is the running mean of the losses since :meth:`start_epoch`, not the
      mini-batch loss. Call :meth:`start_epoch` at the top of every epoch.
    - ``norm_before_decay``: the norm is that of the loss gradient alone, taken before the weight decay
      term is added to it.

    Args:
        params: the parameters, or dicts defining parameter groups.
        lipschitz: L, the Lipschitz constant of f; larger is a shorter step (an inverse learning rate,
            per group, which a scheduler may change). See :func:`~bin_perception.optim.estimate_lipschitz`.
        rho: the lower bound estimate's fraction of min f, in [0, 1). Shared by all groups.
        momentum: mu, in [0, 1] (default: 0.9, with which Alg. 2 best approximates Alg. 1).
        weight_decay: L2 penalty coefficient added to the gradient (not to f).
        eta_outside_momentum, epoch_mean_loss, norm_before_decay: the official code's forms (above).
            Shared by all groups.
        foreach: use the ``torch._foreach_*`` implementation; by default, as torch.optim does, where
            every parameter is on a device with foreach kernels.

    Example:
        >>> optimizer = BPGrad(model.parameters(), lipschitz=15.0)
        >>> for inputs, targets in loader:
        ...     optimizer.zero_grad()
        ...     loss = loss_fn(model(inputs), targets)
        ...     loss.backward()
        ...     optimizer.step(loss=loss)
        >>> optimizer.lower_bound, optimizer.upper_bound  # 0-dim tensors, for logging
    """

    def __init__(
        self,
        params: ParamsT,
        lipschitz: float,
        rho: float = 0.1,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        *,
        eta_outside_momentum: bool = False,
        epoch_mean_loss: bool = False,
        norm_before_decay: bool = False,
        foreach: bool | None = None,
    ) -> None:
        if not lipschitz > 0.0:
            raise ValueError(f"Invalid Lipschitz constant: {lipschitz} (must be > 0)")
        if not 0.0 <= rho < 1.0:
            raise ValueError(f"Invalid rho: {rho} (must be in [0, 1))")
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"Invalid momentum value: {momentum} (must be in [0, 1])")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        defaults = {
            "lipschitz": lipschitz,
            "momentum": momentum,
            "weight_decay": weight_decay,
            "foreach": foreach,
            "rho": rho,
            "eta_outside_momentum": eta_outside_momentum,
            "epoch_mean_loss": epoch_mean_loss,
            "norm_before_decay": norm_before_decay,
        }
        super().__init__(params, defaults)
        # Zero-gradient axes come from the optimizer's own stream, seeded from torch's, so that drawing
        # them never shifts the global generator that shuffles the data or initialises the model.
        self._axis_rng = random.Random(torch.initial_seed())

    def __setstate__(self, state: dict) -> None:
        # Pickling keeps only defaults, state and groups; an unpickled copy restarts the axis stream.
        super().__setstate__(state)
        self.__dict__.setdefault("_axis_rng", random.Random(torch.initial_seed()))

    def add_param_group(self, param_group: dict) -> None:
        for name in _SHARED_OPTIONS:
            if name in param_group and param_group[name] != self.defaults[name]:
                raise ValueError(f"{name} is shared by all parameter groups (one objective, one pair of bounds)")
        super().add_param_group(param_group)

    @property
    def upper_bound(self) -> Tensor:
        """min f(x_i) over the steps so far: the upper bound estimate of the global minimum f*."""
        state = self._objective_state()
        if "min_loss" not in state:
            raise RuntimeError("BPGrad has no bounds before its first step")
        return state["min_loss"]

    @property
    def lower_bound(self) -> Tensor:
        """rho * min f(x_i): the lower bound estimate of f* (a true bound once Alg. 1 covers the space)."""
        return self.defaults["rho"] * self.upper_bound

    def start_epoch(self) -> None:
        """Restart the running mean of the loss that is f(x_t) under ``epoch_mean_loss``; else a no-op."""
        state = self._objective_state()
        state.pop("epoch_loss_mean", None)
        state["epoch_steps"] = 0

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None, *, loss: Tensor | float | None = None) -> Tensor:
        """Take one step from the gradients in ``.grad`` and f(x_t).

        Args:
            closure: re-evaluates the model, calls ``backward()`` and returns the loss.
            loss: f(x_t), the mini-batch objective whose gradients are in ``.grad``; instead of a closure.

        Returns:
            The loss.
        """
        if (closure is None) == (loss is None):
            raise ValueError("BPGrad.step needs f(x_t): pass either a closure that returns the loss, or loss=")
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        loss = torch.as_tensor(loss)
        # The step length (f - rho min f) / L is a distance only for f >= 0; a negative f would climb.
        # Checked on the loss's device, so that a GPU step does not wait for the host.
        torch._assert_async(
            loss.detach() >= 0, "BPGrad needs a loss that is never negative: shift it by a known lower bound (f - f_min >= 0)"
        )
        objective = self._record_objective(loss.detach())
        gap = objective - self.defaults["rho"] * self._objective_state()["min_loss"]

        groups = [self._init_group(group) for group in self.param_groups]
        all_params = [p for params, _, _ in groups for p in params]
        if not all_params:
            return loss
        device = all_params[0].device
        norm = _global_norm(
            [raw if self.defaults["norm_before_decay"] else decayed for _, raw, decayed in groups],
            [group["foreach"] for group in self.param_groups],
            device,
        )
        inverse_norm = torch.where(norm > 0, norm.reciprocal(), 0.0)
        axis_index, axis_position, axis_sign = self._draw_axis(all_params)
        axis_weight = (norm == 0).to(norm.dtype) * axis_sign

        offset = 0
        for group, (params, _, grads) in zip(self.param_groups, groups, strict=True):
            momentum = group["momentum"]
            eta = gap.to(device) / group["lipschitz"]
            # With eta outside, the velocity sums unit directions and eta scales the whole of it.
            eta_outside = self.defaults["eta_outside_momentum"] and momentum != 0
            direction_scale = 1.0 if eta_outside else eta
            axis = None
            if offset <= axis_index < offset + len(params):
                axis = (axis_index - offset, axis_position, -direction_scale * axis_weight)
            offset += len(params)
            if not params:
                continue
            states = [self.state[p] for p in params]
            new_scales = _update(
                params,
                grads,
                [state["momentum_buffer"] for state in states] if momentum != 0 else [],
                [state["momentum_scale"] for state in states] if momentum != 0 else [],
                momentum=momentum,
                direction_coef=direction_scale * inverse_norm,
                step_coef=eta if eta_outside else None,
                axis=axis,
                foreach=_use_foreach(group["foreach"], params),
            )
            if momentum != 0:
                for state, scale in zip(states, new_scales, strict=True):
                    state["momentum_scale"] = scale
        return loss

    def _objective_state(self) -> dict:
        # As torch.optim.LBFGS does, state shared by all parameters lives with the first one, so that
        # state_dict() and load_state_dict() carry it (and move it to that parameter's device).
        return self.state[self.param_groups[0]["params"][0]]

    def _record_objective(self, loss: Tensor) -> Tensor:
        """f(x_t) as this optimizer defines it; folds it into min f."""
        state = self._objective_state()
        objective = loss.to(_scalar_dtype(loss.dtype)).reshape(())
        if self.defaults["epoch_mean_loss"]:
            steps = state.get("epoch_steps", 0) + 1
            mean = state.get("epoch_loss_mean")
            objective = objective if mean is None else mean + (objective - mean) / steps
            state["epoch_loss_mean"], state["epoch_steps"] = objective, steps
        previous = state.get("min_loss")
        state["min_loss"] = objective if previous is None else torch.minimum(previous.to(objective), objective)
        return objective

    def _init_group(self, group: dict) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        """The group's parameters with a gradient, their gradients, and those plus weight decay."""
        params = [p for p in group["params"] if p.grad is not None]
        grads = [p.grad for p in params]
        if any(g.is_sparse for g in grads):
            raise RuntimeError("BPGrad does not support sparse gradients")
        if group["momentum"] != 0:
            for p in params:
                state = self.state[p]
                if "momentum_buffer" not in state:
                    # v_1 = 0; the scale is any negative number (see _update).
                    state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["momentum_scale"] = torch.full((), -1.0, dtype=_scalar_dtype(p.dtype), device=p.device)
        decayed = grads
        if group["weight_decay"] != 0:
            if _use_foreach(group["foreach"], params):
                decayed = list(torch._foreach_add(grads, params, alpha=group["weight_decay"]))
            else:
                decayed = [g.add(p, alpha=group["weight_decay"]) for g, p in zip(grads, params, strict=True)]
        return params, grads, decayed

    def _draw_axis(self, params: list[Tensor]) -> tuple[int, tuple[int, ...], float]:
        """A signed coordinate axis, uniform over all parameters: (tensor index, element index, sign)."""
        ends = list(itertools.accumulate(p.numel() for p in params))
        flat = self._axis_rng.randrange(ends[-1])
        index = bisect.bisect_right(ends, flat)
        within = flat - (ends[index - 1] if index else 0)
        position = []
        for size in reversed(params[index].shape):
            within, remainder = divmod(within, size)
            position.append(remainder)
        return index, tuple(reversed(position)), self._axis_rng.choice((-1.0, 1.0))


# Below this, a velocity's scale is folded into its buffer (see _update).
_VANISHING_SCALE = 1e-20


def _scalar_dtype(dtype: torch.dtype) -> torch.dtype:
    """The precision of the step's scalars (f, min f, the norm, the scales): float32 at least."""
    return torch.promote_types(dtype, torch.float32)


def _use_foreach(foreach: bool | None, params: list[Tensor]) -> bool:
    if foreach is None:
        _, foreach = _default_to_fused_or_foreach(params, differentiable=False, use_fused=False)
    return foreach


def _global_norm(
    grads_per_group: list[list[Tensor]], foreach_per_group: list[bool | None], device: torch.device
) -> Tensor:
    """The L2 norm of all the gradients of all the groups, as a 0-dim tensor on ``device``."""
    partial_norms: list[Tensor] = []
    for grads, foreach in zip(grads_per_group, foreach_per_group, strict=True):
        grouped = Optimizer._group_tensors_by_device_and_dtype([grads])
        for (grads_device, dtype), ((device_grads,), _) in grouped.items():
            accumulate = _scalar_dtype(dtype)
            if grads_device.type == "cpu":
                # On the CPU, _foreach_norm is a loop of vector_norm; a BLAS dot per tensor reads the
                # same memory in about two thirds of the time, vectorised and threaded.
                flat = [g.reshape(-1) if dtype == accumulate else g.reshape(-1).to(accumulate) for g in device_grads]
                squares = torch.stack([v.dot(v) for v in flat])
                partial_norms.append(squares.sum().sqrt())
                continue
            if _use_foreach(foreach, device_grads):
                norms = torch._foreach_norm(device_grads, 2, dtype=accumulate)
            else:
                norms = [torch.linalg.vector_norm(g, dtype=accumulate) for g in device_grads]
            partial_norms.append(torch.linalg.vector_norm(torch.stack(norms)))
    dtype = torch.float64 if any(n.dtype == torch.float64 for n in partial_norms) else torch.float32
    return torch.linalg.vector_norm(torch.stack([n.to(device=device, dtype=dtype) for n in partial_norms]))


def _update(
    params: list[Tensor],
    grads: list[Tensor],
    bufs: list[Tensor],
    scales: list[Tensor],
    *,
    momentum: float,
    direction_coef: Tensor,
    step_coef: Tensor | None,
    axis: tuple[int, tuple[int, ...], Tensor] | None,
    foreach: bool,
) -> list[Tensor]:
    """v <- mu v - direction_coef g + the axis term, then x <- x + step_coef v (None: 1); the new scales.

    The velocity is kept as v = scale * buf, a 0-dim scale per parameter and a buffer that is a convex
    combination of gradients: then v <- mu v - c g is the single pass buf <- lerp(buf, g, w) with
    scale <- mu scale - c and w = -c / scale, where an explicit v would need two (v *= mu; v -= c g).
    The scale starts at -1 and stays below -c, so w is in [0, 1].
    Without momentum there is no velocity: x <- x - direction_coef g + the axis term.
    ``axis`` is (parameter index, element index, value): the zero-gradient direction's term, which
    vanishes unless the norm is zero.
    """
    grouped = Optimizer._group_tensors_by_device_and_dtype([params, grads], with_indices=True)
    new_scales: list[Tensor] = [torch.empty(0)] * len(params)
    for (device, dtype), ((device_params, device_grads), indices) in grouped.items():
        coef = direction_coef.to(device)
        if momentum == 0:
            _addcmul_(device_params, device_grads, [-coef] * len(indices), foreach)
            continue
        previous = torch.stack([scales[i] for i in indices]).to(coef)
        # Steps of zero length (f = rho min f, as at a zero loss with rho = 0) only multiply the scale by mu,
        # down to 0, where v = scale * buf says nothing and the weights below would be 0 / 0. A scale that
        # small is folded into its buffer first: the same velocity, as -1 * (-scale * buf).
        vanishing = previous.abs() < _VANISHING_SCALE
        device_bufs = [bufs[i] for i in indices]
        _mul_(device_bufs, list(torch.where(vanishing, -previous, 1.0).to(dtype)), foreach)
        scale = momentum * torch.where(vanishing, -1.0, previous) - coef
        _lerp_(device_bufs, device_grads, list((-coef / scale).to(dtype)), foreach)
        for i, new_scale in zip(indices, scale.unbind(), strict=True):
            new_scales[i] = new_scale
    if axis is not None:
        index, position, value = axis
        target = params[index] if momentum == 0 else bufs[index]
        target[position].add_((value if momentum == 0 else value / new_scales[index]).to(target.device))
    if momentum == 0:
        return new_scales
    for (device, _), ((device_params, _), indices) in grouped.items():
        coefs = [new_scales[i] if step_coef is None else step_coef.to(device) * new_scales[i] for i in indices]
        _addcmul_(device_params, [bufs[i] for i in indices], coefs, foreach)
    return new_scales


def _addcmul_(targets: list[Tensor], tensors: list[Tensor], scalars: list[Tensor], foreach: bool) -> None:
    """targets[i] += scalars[i] * tensors[i], the scalars 0-dim tensors (never read on the host)."""
    if foreach:
        torch._foreach_addcmul_(targets, tensors, scalars)
    else:
        for target, tensor, scalar in zip(targets, tensors, scalars, strict=True):
            target.addcmul_(tensor, scalar)


def _mul_(targets: list[Tensor], scalars: list[Tensor], foreach: bool) -> None:
    """targets[i] *= scalars[i], the scalars 0-dim tensors."""
    if foreach:
        torch._foreach_mul_(targets, scalars)
    else:
        for target, scalar in zip(targets, scalars, strict=True):
            target.mul_(scalar)


def _lerp_(targets: list[Tensor], ends: list[Tensor], weights: list[Tensor], foreach: bool) -> None:
    """targets[i] += weights[i] * (ends[i] - targets[i]), the weights 0-dim tensors."""
    if foreach:
        torch._foreach_lerp_(targets, ends, weights)
    else:
        for target, end, weight in zip(targets, ends, weights, strict=True):
            target.lerp_(end, weight)
