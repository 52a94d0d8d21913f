"""The stages shared by the cpu, triton and cuda ``local_topk`` backends.

:func:`nearest_memory` (each query's m nearest memory entries) and :func:`global_candidates`
(its C best admissible items by global score) run the backend's own ``score_topk`` (passed
in as ``search``), so no
queries x items matrix exists beyond its tiles. Each backend then aggregates and ranks these
small per-query sets in its own kernel (triton and cuda on the layout of :func:`group_layout`).

Why C = k + m + E global candidates suffice (E = exclude.shape[1]). Order items by
(score desc, id asc), a total order. Let A be the admissible items (those with a memory
entry), G the C best of A by global score, L the query's local items (|L| <= m, L within A)
and X its excluded items (|X| <= E). An item's final score is its local score if it is in L,
else its global score. Take i in A, outside G and L. If C = |A|, G = A and there is no such
i. Otherwise each of the k + m + E items of G is ahead of i by global score; at most m of
them are in L (their score may change) and at most E in X, so at least k items of G keep
their global score, are admissible, not excluded and ahead of i: i is not in the top k.
Hence the top k of (G u L) minus X, with local scores replacing global ones, is exact.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import torch

# A backend's own score_topk: (queries, items, k, metric, exclude, item_norms) -> (scores, ids).
Search = Callable[..., tuple[torch.Tensor, torch.Tensor]]


def nearest_memory(queries: torch.Tensor, memory: torch.Tensor, m: int, metric: str, search: Search
                   ) -> torch.Tensor:
    """[B, m] int64 indices of each query's m best memory entries (ties to the lower index)."""
    _, nearest = search(queries, memory, m, metric, None, None)
    return nearest


def global_candidates(queries: torch.Tensor, memory_item_ids: torch.Tensor, item_reps: torch.Tensor,
                      k: int, m: int, metric: str, exclude: torch.Tensor | None, search: Search
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """([B, C'] float32 scores, [B, C'] int64 item ids, -1 = not a candidate): each query's
    C = min(k + m + E, |A|) best admissible items by global score, best first (see the
    module docstring), possibly followed by empty slots.

    Items without memory (Z of them) are left out in one of two exact ways: when Z <= C,
    by asking for C + Z candidates and blanking the inadmissible ones (at most Z, so the C
    best admissible remain); otherwise by scoring only the admissible rows of ``item_reps``
    (a copy of them; their ids increase with the row, so ties still go to the lower id)."""
    n_items = item_reps.shape[0]
    seen = torch.bincount(memory_item_ids.to(torch.int64), minlength=n_items) > 0
    n_unseen = n_items - int(seen.sum())
    n_excluded = 0 if exclude is None else exclude.shape[1]
    count = min(k + m + n_excluded, n_items - n_unseen)
    admissible = None
    if n_unseen == 0 or n_unseen <= count:
        reps, count = item_reps, min(count + n_unseen, n_items)
    else:
        admissible = seen.nonzero().flatten()
        reps = item_reps.index_select(0, admissible)
    if reps.dtype != queries.dtype:  # score_topk needs one dtype; float32 holds both exactly
        queries, reps = queries.to(torch.float32), reps.to(torch.float32)
    scores, ids = search(queries, reps, count, metric, None, None)
    if admissible is not None:
        return scores, admissible[ids]
    if n_unseen:
        blank = ~seen[ids]
        scores, ids = scores.masked_fill(blank, float("-inf")), ids.masked_fill(blank, -1)
    return scores, ids


def group_layout(nearest: torch.Tensor, memory_item_ids: torch.Tensor, n_memory: int
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each query's nearest entries sorted by (item, entry): (memory index [B, m], item [B, m],
    group end [B, m] int64: one past the group for a position that starts one, else itself)."""
    b, m = nearest.shape
    keys = memory_item_ids.to(torch.int64)[nearest] * n_memory + nearest
    keys = torch.sort(keys, dim=1).values
    items, rows = keys // n_memory, keys % n_memory
    positions = torch.arange(m, device=nearest.device).expand(b, m)
    starts = torch.ones_like(items, dtype=torch.bool)
    starts[:, 1:] = items[:, 1:] != items[:, :-1]
    # next_start[j] = first group start after j (or m): a suffix minimum, shifted by one.
    start_pos = torch.where(starts, positions, torch.full_like(positions, m))
    after = torch.cat([start_pos[:, 1:], torch.full_like(start_pos[:, :1], m)], 1)
    next_start = torch.flip(torch.cummin(torch.flip(after, [1]), 1).values, [1])
    group_end = torch.where(starts, next_start, positions)
    return rows.contiguous(), items.contiguous(), group_end.contiguous()


class CandidateBuffers(NamedTuple):
    """Everything the GPU aggregation kernels need, from the two search stages:
    ``scores``/``ids`` [B, m + C], whose last C columns hold the global candidates and whose
    first m columns the kernels fill with the local groups' scores; the groups' layout
    (``rows``, ``items``, ``group_end``, see ``group_layout``)."""
    scores: torch.Tensor
    ids: torch.Tensor
    rows: torch.Tensor
    items: torch.Tensor
    group_end: torch.Tensor


def candidate_buffers(queries, memory, memory_item_ids, item_reps, k, m, metric, exclude, search: Search
                      ) -> CandidateBuffers:
    nearest = nearest_memory(queries, memory, m, metric, search).to(torch.int64)
    cand_scores, cand_ids = global_candidates(queries, memory_item_ids, item_reps, k, m, metric, exclude, search)
    rows, items, group_end = group_layout(nearest, memory_item_ids, memory.shape[0])
    batch, n_cand = queries.shape[0], cand_ids.shape[1]
    scores = torch.empty((batch, m + n_cand), dtype=torch.float32, device=queries.device)
    ids = torch.empty((batch, m + n_cand), dtype=torch.int64, device=queries.device)
    scores[:, m:] = cand_scores
    ids[:, m:] = cand_ids
    return CandidateBuffers(scores, ids, rows, items, group_end)
