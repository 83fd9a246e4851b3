"""The chamfer distance of the thesis (Eq. 4.1), without a B x n x m tensor.

L(S, S~) = max(mean over x in S of min |x - x~|, mean over x~ in S~ of min |x~ - x|),
with Euclidean (not squared) distances. Nearest neighbours are found without
gradient: with KD-trees on the CPU, and on a GPU by brute force a chunk of
rows at a time, keeping running minima for both directions. The distances are
then recomputed from the matched pairs, which is where the gradient flows.
Extra memory is O(n + m) per batch element (one (B, chunk, m) block on a GPU),
and the backward pass touches only n + m pairs.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial import cKDTree

CHUNK_ROWS = 512


@torch.no_grad()
def nearest_neighbours(
    a: torch.Tensor, b: torch.Tensor, b_mask: torch.Tensor | None = None, chunk_rows: int = CHUNK_ROWS
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of each a-point's nearest b-point (B, n) and each b-point's nearest a-point (B, m).

    ``b_mask`` (B, m) marks the b-points that exist (clouds padded to m); the
    others are never anyone's neighbour, and their own indices are meaningless.
    """
    if a.device.type == "cpu":
        return _nearest_kdtree(a, b, b_mask)
    return _nearest_chunked(a, b, b_mask, chunk_rows)


def _nearest_kdtree(a: torch.Tensor, b: torch.Tensor, b_mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    a_np, b_np = a.detach().numpy(), b.detach().numpy()
    mask_np = None if b_mask is None else b_mask.numpy()
    a_to_b = np.zeros(a.shape[:2], dtype=np.int64)
    b_to_a = np.zeros(b.shape[:2], dtype=np.int64)
    for i in range(len(a_np)):
        present = np.arange(b.shape[1]) if mask_np is None else np.flatnonzero(mask_np[i])
        a_to_b[i] = present[cKDTree(b_np[i, present]).query(a_np[i], workers=-1)[1]]
        b_to_a[i, present] = cKDTree(a_np[i]).query(b_np[i, present], workers=-1)[1]
    return torch.from_numpy(a_to_b), torch.from_numpy(b_to_a)


def _nearest_chunked(
    a: torch.Tensor, b: torch.Tensor, b_mask: torch.Tensor | None, chunk_rows: int
) -> tuple[torch.Tensor, torch.Tensor]:
    B, n, _ = a.shape
    m = b.shape[1]
    b = b.detach()
    if b_mask is not None:
        # Absent points sit infinitely far away.
        b = b.masked_fill(~b_mask[..., None], float("inf"))
    a_to_b = torch.empty(B, n, dtype=torch.long, device=a.device)
    b_best = torch.full((B, m), float("inf"), device=a.device, dtype=a.dtype)
    b_to_a = torch.zeros(B, m, dtype=torch.long, device=a.device)
    b_sq = (b * b).sum(-1)
    for start in range(0, n, chunk_rows):
        rows = a[:, start : start + chunk_rows].detach()
        # |x - y|^2 = |x|^2 + |y|^2 - 2 x.y: one matrix product per chunk.
        d2 = torch.baddbmm((rows * rows).sum(-1, keepdim=True) + b_sq[:, None, :], rows, b.transpose(1, 2), alpha=-2.0)
        d2 = torch.nan_to_num(d2, nan=float("inf"))
        a_to_b[:, start : start + rows.shape[1]] = d2.argmin(dim=2)
        chunk_best, chunk_arg = d2.min(dim=1)
        better = chunk_best < b_best
        b_best = torch.where(better, chunk_best, b_best)
        b_to_a = torch.where(better, chunk_arg + start, b_to_a)
    return a_to_b, b_to_a


def _gather(points: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return torch.gather(points, 1, index[..., None].expand(-1, -1, 3))


def chamfer_distance(
    observed: torch.Tensor,
    predicted: torch.Tensor,
    predicted_mask: torch.Tensor | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> torch.Tensor:
    """Eq. 4.1 per batch element: observed (B, n, 3), predicted (B, m, 3) -> (B,).

    ``predicted_mask`` (B, m) marks the predicted points that count (e.g. the
    visible ones after hidden point removal); each element needs at least one.
    """
    if observed.ndim != 3 or predicted.ndim != 3 or observed.shape[-1] != 3 or predicted.shape[-1] != 3:
        raise ValueError(f"chamfer: expected (B, n, 3) and (B, m, 3), got {tuple(observed.shape)} and {tuple(predicted.shape)}")
    if predicted_mask is not None and not bool(predicted_mask.any(dim=1).all()):
        raise ValueError("chamfer: a batch element has no predicted points")
    obs_to_pred, pred_to_obs = nearest_neighbours(observed, predicted, predicted_mask, chunk_rows)
    d_obs = (observed - _gather(predicted, obs_to_pred)).norm(dim=-1)
    d_pred = (predicted - _gather(observed, pred_to_obs)).norm(dim=-1)
    if predicted_mask is None:
        pred_mean = d_pred.mean(dim=1)
    else:
        weights = predicted_mask.to(d_pred.dtype)
        pred_mean = (d_pred * weights).sum(dim=1) / weights.sum(dim=1)
    return torch.maximum(d_obs.mean(dim=1), pred_mean)
