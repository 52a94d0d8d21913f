"""Reference for ``score_topk``: full score matrix, then a stable sort."""
from __future__ import annotations

import torch

from pyl2d._codes import NORM_EPS


def similarity(queries: torch.Tensor, items: torch.Tensor, metric: str,
               item_norms: torch.Tensor | None = None) -> torch.Tensor:
    """[B, N] float32 scores, larger is better (l2: negative Euclidean distance)."""
    q = queries.to(torch.float32)
    x = items.to(torch.float32)
    dots = q @ x.T
    if metric == "ip":
        return dots
    if metric == "cosine":
        x_norm = item_norms.to(torch.float32) if item_norms is not None else torch.linalg.vector_norm(x, dim=1)
        q_norm = torch.linalg.vector_norm(q, dim=1)
        return dots / (q_norm.clamp_min(NORM_EPS)[:, None] * x_norm.clamp_min(NORM_EPS)[None, :])
    if metric == "l2":
        # Squared norms as sums of squares, never sqrt-then-square: on integer inputs every
        # term is exact, so equal distances tie exactly (as in the kernels), not by rounding.
        x_sq = item_norms.to(torch.float32).square() if item_norms is not None else (x * x).sum(1)
        d2 = (q * q).sum(1)[:, None] - 2.0 * dots + x_sq[None, :]
        return -d2.clamp_min(0.0).sqrt()
    raise ValueError(f"metric must be 'ip', 'cosine' or 'l2'; got {metric!r}")


def mask_excluded(scores: torch.Tensor, exclude: torch.Tensor | None) -> torch.Tensor:
    """Set excluded (query, item) pairs to -inf; -1 in ``exclude`` is padding."""
    if exclude is None or exclude.numel() == 0:
        return scores
    ex = exclude.to(torch.int64)
    valid = ex >= 0
    rows = torch.arange(scores.shape[0], device=scores.device)[:, None].expand_as(ex)
    scores = scores.clone()
    scores[rows[valid], ex[valid]] = float("-inf")
    return scores


def select_topk(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Best k per row, ties to the lower column; -inf slots get id -1."""
    vals, ids = torch.sort(scores, dim=1, descending=True, stable=True)
    vals, ids = vals[:, :k].contiguous(), ids[:, :k].contiguous()
    return vals, ids.masked_fill(vals == float("-inf"), -1)


def score_topk(queries, items, k, metric="ip", exclude=None, item_norms=None):
    scores = mask_excluded(similarity(queries, items, metric, item_norms), exclude)
    return select_topk(scores, k)
