"""The exact BPGrad algorithm (Wu 2019, Alg. 1): branch and prune a low-dimensional box."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["BPGradSearch", "SearchHistory", "SearchResult", "sample_bound"]


@dataclass(frozen=True)
class SearchHistory:
    """Every sample of a search, in the order drawn."""

    x: Tensor  # (T, d), float64
    f: Tensor  # (T,)
    grad: Tensor  # (T, d)


@dataclass(frozen=True)
class SearchResult:
    """The outcome of :meth:`BPGradSearch.run`."""

    x: Tensor  # (d,): the best sample, argmin f
    f: float  # f(x) = upper
    lower: float  # rho * min f: a lower bound of f* once the box is covered (Theorem 1)
    upper: float  # min f: an upper bound of f*
    radii: Tensor  # (T,): the final radius of each sample's removable ball
    covered: bool  # whether the removable balls cover the box (else the budget ended the search)
    history: SearchHistory

    @property
    def iterations(self) -> int:
        """T, the number of samples drawn (x_1 included)."""
        return len(self.history.f)

    @property
    def best_iteration(self) -> int:
        """The 1-based index of the best sample, as the thesis numbers them (x_12 in Fig. 3.3)."""
        return int(torch.argmin(self.history.f)) + 1


def sample_bound(lipschitz: float, rho: float, f_min: float, volume: float, dim: int) -> float:
    """Theorem 2's bound on the number of samples of Alg. 1: (2L / ((1 - rho) f_min))^d V / C_d.

    C_d is the volume of the unit d-ball. As in the thesis's proof, the T disjoint balls of radius
    (1 - rho) f_min / (2L) are counted inside the box's volume V, though those of samples near the
    boundary stick out of it by up to that radius.
    """
    unit_ball = math.pi ** (dim / 2) / math.gamma(dim / 2 + 1)
    return (2 * lipschitz / ((1 - rho) * f_min)) ** dim * volume / unit_ball


class BPGradSearch:
    r"""Alg. 1 of Wu (2019): sample outside the union of removable balls until they cover the box.

    Sample x_j removes the open ball of radius r_j = (f(x_j) - rho min_i f(x_i)) / L around it: under
    the Lipschitz condition no point there is below the lower bound estimate rho min f. Each new sample
    leaves x_t along the descent direction -grad f(x_t) and stops at the first point outside every
    ball (in 1D, the near end of the feasible set on the downhill side, as in Fig. 3.3). When that ray
    leaves the box first, it goes the other way; when that fails too, it takes the free point nearest
    to x_t. The search ends when the balls cover the box, when min f reaches 0 (then f* = 0, as f >= 0),
    or when the budget ends.

    Coverage is certified on a grid of cells refined level by level: a cell is covered when one ball
    contains it, free when its centre is in no ball, and refined otherwise, down to cells whose
    diagonal is ``resolution`` times the box's; finer gaps count as covered. The cost grows as
    resolution^-(d-1), so this is for boxes of a few dimensions.

    Args:
        f: maps a float64 tensor of shape (d,) to a scalar tensor, f >= 0 on the box (assumption F1;
            add a constant if need be). Its gradient comes from autograd.
        bounds: the box, one (low, high) pair per dimension.
        lipschitz: L, a Lipschitz constant of f on the box.
        rho: the lower bound estimate's fraction of min f, in [0, 1).
        x0: the first sample x_1; by default uniform in the box, from ``generator``.
        resolution: the coverage test's finest cell, relative to the box's diagonal.
        generator: for x_1 and for the direction where the gradient is zero.

    Example:
        >>> search = BPGradSearch(lambda x: x[0] * torch.sin(x[0]) + 15, bounds=[(0, 4 * math.pi)],
        ...                       lipschitz=4 * math.pi, rho=0.1, x0=[2.5])
        >>> result = search.run(max_iters=100)
        >>> result.x, result.lower, result.upper
    """

    def __init__(
        self,
        f: Callable[[Tensor], Tensor],
        bounds: Sequence[tuple[float, float]],
        lipschitz: float,
        rho: float = 0.1,
        x0: Sequence[float] | Tensor | None = None,
        *,
        resolution: float = 1e-4,
        generator: torch.Generator | None = None,
    ) -> None:
        box = torch.as_tensor(bounds, dtype=torch.float64)
        if box.ndim != 2 or box.shape[1] != 2 or not bool((box[:, 0] < box[:, 1]).all()):
            raise ValueError(f"bounds must be (low, high) pairs with low < high, got {bounds}")
        if not lipschitz > 0:
            raise ValueError(f"Invalid Lipschitz constant: {lipschitz} (must be > 0)")
        if not 0.0 <= rho < 1.0:
            raise ValueError(f"Invalid rho: {rho} (must be in [0, 1))")
        self.f = f
        self.low, self.high = box[:, 0], box[:, 1]
        self.lipschitz = lipschitz
        self.rho = rho
        self.resolution = resolution
        self.generator = generator
        if x0 is None:
            x0 = self.low + (self.high - self.low) * torch.rand(len(box), dtype=torch.float64, generator=generator)
        self.x0 = torch.as_tensor(x0, dtype=torch.float64).reshape(len(box))
        if not bool(((self.x0 >= self.low) & (self.x0 <= self.high)).all()):
            raise ValueError(f"x0 {self.x0.tolist()} is outside the box {bounds}")

    @property
    def dim(self) -> int:
        return len(self.low)

    @property
    def volume(self) -> float:
        return float(torch.prod(self.high - self.low))

    def run(self, max_iters: int = 1000) -> SearchResult:
        """Draw samples until the box is covered, min f is 0, or ``max_iters`` samples are drawn."""
        xs, fs, grads = [], [], []
        x = self.x0
        covered = False
        for _ in range(max_iters):
            value, grad = self._evaluate(x)
            xs.append(x)
            fs.append(value)
            grads.append(grad)
            samples, values = torch.stack(xs), torch.stack(fs)
            radii = self._radii(values)
            if float(values.min()) == 0.0:
                break
            free = self._free_points(samples, radii)
            if free is None:
                covered = True
                break
            x = self._next_sample(samples, radii, grad, free)
        samples, values = torch.stack(xs), torch.stack(fs)
        best = int(torch.argmin(values))
        upper = float(values[best])
        return SearchResult(
            x=samples[best],
            f=upper,
            lower=self.rho * upper,
            upper=upper,
            radii=self._radii(values),
            covered=covered,
            history=SearchHistory(x=samples, f=values, grad=torch.stack(grads)),
        )

    def _evaluate(self, x: Tensor) -> tuple[Tensor, Tensor]:
        point = x.clone().requires_grad_(True)
        with torch.enable_grad():
            value = self.f(point)
            if value.numel() != 1:
                raise ValueError(f"f must return a scalar, got shape {tuple(value.shape)}")
            (grad,) = torch.autograd.grad(value.reshape(()), point, materialize_grads=True)
        value = value.detach().reshape(()).to(torch.float64)
        if float(value) < 0:
            raise ValueError(f"f({x.tolist()}) = {float(value)} < 0: Alg. 1 needs f >= 0 on the box (add a constant)")
        return value, grad.to(torch.float64)

    def _radii(self, values: Tensor) -> Tensor:
        return (values - self.rho * values.min()) / self.lipschitz

    def _next_sample(self, samples: Tensor, radii: Tensor, grad: Tensor, free: Tensor) -> Tensor:
        current = samples[-1]
        norm = torch.linalg.vector_norm(grad)
        if norm > 0:
            direction = -grad / norm
        else:
            direction = torch.randn(self.dim, dtype=torch.float64, generator=self.generator)
            direction /= torch.linalg.vector_norm(direction)
        for way in (direction, -direction):
            candidate = current + _escape_distance(current, way, samples, radii) * way
            if self._inside(candidate):
                return torch.minimum(torch.maximum(candidate, self.low), self.high)
        # Both rays leave the box inside the balls: go to the free point nearest x_t, then slide back
        # towards x_t up to the edge of the balls, so that the new ball borders the removed region.
        nearest = free[torch.argmin(torch.linalg.vector_norm(free - current, dim=1))]
        toward = current - nearest
        length = float(torch.linalg.vector_norm(toward))
        if length == 0:
            return nearest
        unit = toward / length
        return nearest + min(_entry_distance(nearest, unit, samples, radii), length) * unit

    def _inside(self, point: Tensor) -> bool:
        slack = 1e-12 * (self.high - self.low)
        return bool(((point >= self.low - slack) & (point <= self.high + slack)).all())

    def _free_points(self, samples: Tensor, radii: Tensor) -> Tensor | None:
        """Free points: the cell centres in no ball, at the coarsest level that has any; None when the balls
        cover the box (down to ``resolution``)."""
        half = (self.high - self.low) / 2
        centres = ((self.low + self.high) / 2).unsqueeze(0)
        finest_half_diagonal = self.resolution * float(torch.linalg.vector_norm(half))
        # The offsets of a cell's 2^d children, in units of its width.
        halves = [torch.tensor([-0.5, 0.5], dtype=torch.float64)] * self.dim
        corners = torch.cartesian_prod(*halves).reshape(-1, self.dim)
        while len(centres):
            distance = torch.cdist(centres, samples, compute_mode="donot_use_mm_for_euclid_dist")
            free = (distance >= radii).all(dim=1)
            if bool(free.any()):
                return centres[free]
            half_diagonal = float(torch.linalg.vector_norm(half))
            if half_diagonal <= finest_half_diagonal:
                return None
            contained = (distance + half_diagonal < radii).any(dim=1)
            undecided = centres[~contained]
            half = half / 2
            centres = (undecided.unsqueeze(1) + corners * 2 * half).reshape(-1, self.dim)
        return None


def _ball_intervals(origin: Tensor, direction: Tensor, samples: Tensor, radii: Tensor) -> tuple[Tensor, Tensor]:
    """For the ray origin + s direction (unit), the open s-interval inside each ball (empty: lo >= hi)."""
    offset = origin - samples
    b = offset @ direction
    # r^2 minus the squared distance from the ball's centre to the line: not b^2 - (|offset|^2 - r^2),
    # which loses the digits of a small ball far along the ray.
    across = offset - b.unsqueeze(1) * direction
    disc = radii**2 - (across * across).sum(dim=1)
    half_width = torch.sqrt(torch.clamp(disc, min=0))
    hits = disc > 0
    lo = torch.where(hits, -b - half_width, math.inf)
    hi = torch.where(hits, -b + half_width, -math.inf)
    return lo, hi


def _escape_distance(origin: Tensor, direction: Tensor, samples: Tensor, radii: Tensor) -> float:
    """The smallest s >= 0 at which the ray is outside every ball."""
    lo, hi = _ball_intervals(origin, direction, samples, radii)
    order = torch.argsort(lo)
    reach = 0.0
    # Swept in order of entry, each interval that holds the reach point strictly pushes it to its exit.
    for start, end in zip(lo[order].tolist(), hi[order].tolist(), strict=True):
        if start >= reach:
            break
        reach = max(reach, end)
    return reach


def _entry_distance(origin: Tensor, direction: Tensor, samples: Tensor, radii: Tensor) -> float:
    """The largest s such that the segment from origin (a free point) to origin + s direction meets no ball."""
    lo, hi = _ball_intervals(origin, direction, samples, radii)
    ahead = (hi > 0) & (lo < hi)
    return float(lo[ahead].clamp(min=0).min()) if bool(ahead.any()) else math.inf
