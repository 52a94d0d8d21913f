"""Reference for ``local_topk`` (L2D local aggregation), by brute force on full score matrices.

Per query: the m memory entries with the best scores (ties to the lower memory index); for
each item owning some of them, the mean of those entries is its local representation and
its local score replaces its global score (query vs ``item_reps[item]``); items without any
memory entry at all are never returned; then excluded items are masked and the k best kept.
"""
from __future__ import annotations

import torch

from pyl2d._codes import NORM_EPS
from pyl2d.ops.score_topk.reference import mask_excluded, select_topk, similarity


def paired_similarity(a: torch.Tensor, b: torch.Tensor, metric: str) -> torch.Tensor:
    """Score of row i of ``a`` against row i of ``b`` ([P] float32), with the formulas of
    :func:`similarity` (l2 through the expansion with squared norms as sums of squares)."""
    a, b = a.to(torch.float32), b.to(torch.float32)
    dots = (a * b).sum(1)
    if metric == "ip":
        return dots
    if metric == "cosine":
        a_norm = torch.linalg.vector_norm(a, dim=1)
        b_norm = torch.linalg.vector_norm(b, dim=1)
        return dots / (a_norm.clamp_min(NORM_EPS) * b_norm.clamp_min(NORM_EPS))
    if metric == "l2":
        return -((a * a).sum(1) - 2.0 * dots + (b * b).sum(1)).clamp_min(0.0).sqrt()
    raise ValueError(f"metric must be 'ip', 'cosine' or 'l2'; got {metric!r}")


def nearest_memory(queries, memory, m, metric):
    """[B, m] int64 indices of each query's m best memory entries (ties to the lower index)."""
    scores = similarity(queries, memory, metric)
    return torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :m]


def local_item_scores(queries, memory, memory_item_ids, nearest, n_items, metric):
    """For every (query, item) pair with entries among the query's nearest memory:
    (query row [P], item id [P], local score [P]), the local representation being the mean
    of those entries."""
    b, m = nearest.shape
    item_of = memory_item_ids.to(torch.int64)[nearest]  # [B, m]
    rows = torch.arange(b, device=queries.device).unsqueeze(1).expand(b, m)
    pair_keys, slot = torch.unique((rows * n_items + item_of).reshape(-1), return_inverse=True)
    sums = torch.zeros((pair_keys.shape[0], memory.shape[1]), dtype=torch.float32, device=memory.device)
    sums.index_add_(0, slot, memory.to(torch.float32)[nearest.reshape(-1)])
    counts = torch.bincount(slot, minlength=pair_keys.shape[0]).to(torch.float32)
    local_reps = sums / counts.unsqueeze(1)
    pair_rows, pair_items = pair_keys // n_items, pair_keys % n_items
    return pair_rows, pair_items, paired_similarity(queries[pair_rows], local_reps, metric)


def local_topk(queries, memory, memory_item_ids, item_reps, k, m, metric="l2", exclude=None):
    n_items = item_reps.shape[0]
    scores = similarity(queries, item_reps, metric)  # global scores [B, N]
    nearest = nearest_memory(queries, memory, m, metric)
    pair_rows, pair_items, local_scores = local_item_scores(queries, memory, memory_item_ids, nearest,
                                                            n_items, metric)
    scores[pair_rows, pair_items] = local_scores
    never_seen = torch.bincount(memory_item_ids.to(torch.int64), minlength=n_items) == 0
    scores[:, never_seen] = float("-inf")
    return select_topk(mask_excluded(scores, exclude), k)
