"""Local aggregation blended with the global one: each item with entries among the query's m
nearest memory vectors scores ``w * local + (1 - w) * global``; every other item its global
score (``w = 1`` is L2D's local aggregation, the ``local_topk`` op; ``w = 0`` is the global
ranking).

Exact, from two fused searches (``score_topk``) and a small aggregation over B x (m + C)
candidates, C = min(k + m, |A|): the query's m nearest memory entries (its local items L),
and its C best admissible items by global score with the excluded ones left out by the
search itself (G; A = the items with a memory entry, X = the excluded ones). Why that
suffices (the argument of ``pyl2d/ops/local_topk/_stages.py``, with X removed up front):
order items by (score desc, id asc). Take an item i in A \\ X outside G and L; it keeps its
global score. If |G| < C, G is all of A \\ X and there is no such i. Otherwise each of the
k + m items of G is ahead of i by global score, at most m of them are in L (their score
may change), so at least k items keep a global score ahead of i's: i is not in the top k.
Hence the top k of (G u L) \\ X, with blended scores for L, is exact.
"""
from __future__ import annotations

import math

import torch

from pyl2d._topk import merge_candidates
from pyl2d.ops import score_topk
from pyl2d.ops.local_topk.reference import paired_similarity

__all__ = ["interpolated_topk", "check_local_weight"]


def check_local_weight(weight) -> float:
    """``weight`` as a float in [0, 1]; ValueError naming local_weight otherwise."""
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) \
            or not 0.0 <= weight <= 1.0:
        raise ValueError(f"local_weight must be a number between 0 and 1, got {weight!r}")
    return float(weight)


def interpolated_topk(queries: torch.Tensor, memory: torch.Tensor, memory_item_ids: torch.Tensor,
                      item_reps: torch.Tensor, k: int, m: int, metric: str, weight: float,
                      exclude: torch.Tensor | None = None, *, decodable_ids: torch.Tensor | None = None,
                      decodable_reps: torch.Tensor | None = None, decodable_norms: torch.Tensor | None = None,
                      backend: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(scores [B, k] float32, ids [B, k] int64), best first, ties to the lower id, (-inf, -1)
    where fewer than k items are admissible.

    Arguments as for ``local_topk`` (``queries`` [B, D] and ``memory`` [M, D] in one dtype,
    ``memory_item_ids`` [M], ``item_reps`` [N, D] the global representations, 1 <= k <= N,
    1 <= m <= M, ``exclude`` [B, E] item ids with -1 padding), plus ``weight`` in [0, 1].
    ``decodable_ids`` (ascending ids of the items with a memory entry), ``decodable_reps``
    (their rows of ``item_reps``, in the queries' dtype) and ``decodable_norms`` (their
    float32 norms) may be passed precomputed; ``backend`` goes to ``score_topk``."""
    weight = check_local_weight(weight)
    n_items = item_reps.shape[0]
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n_items:
        raise ValueError(f"k must be an int between 1 and the number of items {n_items}, got {k!r}")
    if isinstance(m, bool) or not isinstance(m, int) or not 1 <= m <= memory.shape[0]:
        raise ValueError(f"m must be an int between 1 and the memory size {memory.shape[0]}, got {m!r}")
    device, batch = queries.device, queries.shape[0]
    item_of_entry = memory_item_ids.to(torch.int64)
    if decodable_ids is None:
        decodable_ids = (torch.bincount(item_of_entry, minlength=n_items) > 0).nonzero().flatten()
    if decodable_reps is None:
        decodable_reps = item_reps.index_select(0, decodable_ids)
    search_queries = queries
    if decodable_reps.dtype != queries.dtype:  # score_topk needs one dtype; float32 holds both exactly
        search_queries, decodable_reps = queries.to(torch.float32), decodable_reps.to(torch.float32)

    # The two fused searches: the m nearest memory entries, the C best non-excluded items.
    _, nearest = score_topk(queries, memory, m, metric, backend=backend)
    sub_exclude = None
    if exclude is not None:
        position = torch.full((n_items,), -1, dtype=torch.int64, device=device)
        position[decodable_ids] = torch.arange(decodable_ids.numel(), device=device)
        exclude = exclude.to(torch.int64)
        sub_exclude = torch.where(exclude >= 0, position[exclude.clamp_min(0)], -1)
    n_cand = min(k + m, decodable_ids.numel())
    glob_scores, glob_sub = score_topk(search_queries, decodable_reps, n_cand, metric, sub_exclude,
                                       decodable_norms if metric != "ip" else None, backend=backend)
    glob_ids = torch.where(glob_sub >= 0, decodable_ids[glob_sub.clamp_min(0)], -1)

    # Local means of the (query, item) pairs among the nearest entries, and their blended scores.
    nearest = nearest.to(torch.int64)
    rows = torch.arange(batch, device=device).unsqueeze(1).expand_as(nearest)
    pair_keys, slot = torch.unique((rows * n_items + item_of_entry[nearest]).reshape(-1), return_inverse=True)
    sums = torch.zeros((pair_keys.shape[0], memory.shape[1]), dtype=torch.float32, device=device)
    sums.index_add_(0, slot, memory.index_select(0, nearest.reshape(-1)).to(torch.float32))
    counts = torch.bincount(slot, minlength=pair_keys.shape[0]).to(torch.float32)
    pair_rows, pair_items = pair_keys // n_items, pair_keys % n_items
    pair_queries = queries.index_select(0, pair_rows)
    local = paired_similarity(pair_queries, sums / counts.unsqueeze(1), metric)
    pair_scores = local if weight == 1.0 else \
        weight * local + (1.0 - weight) * paired_similarity(pair_queries, item_reps.index_select(0, pair_items), metric)
    if exclude is not None:
        excluded_keys = (torch.arange(batch, device=device).unsqueeze(1) * n_items + exclude)[exclude >= 0]
        hit = torch.isin(pair_keys, excluded_keys)
        pair_scores = pair_scores.masked_fill(hit, float("-inf"))
        pair_items = pair_items.masked_fill(hit, -1)

    # Candidates [B, m + C]: the pairs (sorted by row, so each row's are consecutive), then
    # the global candidates that are not local items.
    per_row = torch.bincount(pair_rows, minlength=batch)
    column = torch.arange(pair_keys.shape[0], device=device) - (torch.cumsum(per_row, 0) - per_row)[pair_rows]
    local_scores = torch.full((batch, m), float("-inf"), dtype=torch.float32, device=device)
    local_ids = torch.full((batch, m), -1, dtype=torch.int64, device=device)
    local_scores[pair_rows, column] = pair_scores
    local_ids[pair_rows, column] = pair_items
    cand_rows = torch.arange(batch, device=device).unsqueeze(1)
    is_local = torch.isin(cand_rows * n_items + glob_ids, pair_keys) & (glob_ids >= 0)
    glob_scores = glob_scores.masked_fill(is_local, float("-inf"))
    glob_ids = glob_ids.masked_fill(is_local, -1)
    return merge_candidates(torch.cat([local_scores, glob_scores], 1), torch.cat([local_ids, glob_ids], 1), k)
