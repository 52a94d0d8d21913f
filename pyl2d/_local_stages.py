"""The two search stages shared by the cpu, triton and cuda ``local_topk`` backends.

Each backend then runs its own aggregation + ranking kernel on small per-query inputs
(the triton and cuda kernels on the layout of :func:`group_layout`):
the m nearest memory entries (from :func:`nearest_memory`) and C global candidates (from
:func:`global_candidates`), so no queries x items matrix is ever materialised beyond the
tiles of ``score_topk``.

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

import torch

from pyl2d import _backend


def _score_topk_impl(backend: str):
    """``score_topk`` on ``backend`` when it has one (its kernels may land later), else torch."""
    chosen = backend if _backend.has_implementation("score_topk", backend) else "torch"
    return _backend.implementation("score_topk", chosen)


def nearest_memory(queries: torch.Tensor, memory: torch.Tensor, m: int, metric: str, backend: str
                   ) -> torch.Tensor:
    """[B, m] int64 indices of each query's m best memory entries (ties to the lower index)."""
    _, nearest = _score_topk_impl(backend)(queries, memory, m, metric, None, None)
    return nearest


def admissible_items(memory_item_ids: torch.Tensor, n_items: int) -> torch.Tensor | None:
    """Ids of the items with at least one memory entry, or None when that is all of them."""
    counts = torch.bincount(memory_item_ids.to(torch.int64), minlength=n_items)
    seen = counts > 0
    if bool(seen.all()):
        return None
    return seen.nonzero().flatten()


def global_candidates(queries: torch.Tensor, memory_item_ids: torch.Tensor, item_reps: torch.Tensor,
                      k: int, m: int, metric: str, exclude: torch.Tensor | None, backend: str
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """([B, C] float32 scores, [B, C] int64 item ids): each query's C = min(k + m + E, |A|)
    best admissible items by global score, best first (see the module docstring)."""
    admissible = admissible_items(memory_item_ids, item_reps.shape[0])
    reps = item_reps if admissible is None else item_reps.index_select(0, admissible)
    if reps.dtype != queries.dtype:  # score_topk needs one dtype; float32 holds both exactly
        queries, reps = queries.to(torch.float32), reps.to(torch.float32)
    n_excluded = 0 if exclude is None else exclude.shape[1]
    count = min(k + m + n_excluded, reps.shape[0])
    scores, ids = _score_topk_impl(backend)(queries, reps, count, metric, None, None)
    if admissible is not None:
        ids = admissible[ids]
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
