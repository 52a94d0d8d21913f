"""Ranking metrics with one target per query, and latency measurement.

Recall@K (= HR@K with a single target) and NDCG@K (1 / log2(rank + 2) for a hit at 0-based
rank ``rank < K``, the ideal DCG being 1). Item-level by default; title-level ("D3 way": a
hit when the target's title appears) for comparing against methods that output titles,
because titles are not unique in real catalogs.
"""
from __future__ import annotations

import math
import time
from typing import Callable, Sequence

import torch

from pyl2d.l2d.data.records import Catalog, Sample

KS = (5, 10, 20, 50)
BATCH_SIZES = (1, 16, 64)


def hit_ranks(ranked: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """0-based position of each target in its ranked list [B, L] (-1 pads), -1 if absent."""
    if ranked.dim() != 2 or targets.shape != (ranked.shape[0],):
        raise ValueError(f"ranked must be [B, L] and targets [B]; got {tuple(ranked.shape)} and {tuple(targets.shape)}")
    match = (ranked == targets[:, None]) & (ranked >= 0)
    first = match.to(torch.int8).argmax(dim=1)
    return torch.where(match.any(dim=1), first, torch.full_like(first, -1))


def recall_at_k(ranks: torch.Tensor, k: int) -> float:
    if len(ranks) == 0:
        return float("nan")
    return float(((ranks >= 0) & (ranks < k)).double().mean())


def ndcg_at_k(ranks: torch.Tensor, k: int) -> float:
    if len(ranks) == 0:
        return float("nan")
    hit = (ranks >= 0) & (ranks < k)
    gains = torch.where(hit, 1.0 / torch.log2(ranks.double().clamp_min(0) + 2.0), torch.zeros((), dtype=torch.float64))
    return float(gains.mean())


def summarize(ranks: torch.Tensor, list_length: int, ks: Sequence[int] = KS) -> dict[str, float | None]:
    """``recall@K`` and ``ndcg@K``; None where K exceeds the list length the method produced."""
    out: dict[str, float | None] = {}
    for k in ks:
        out[f"recall@{k}"] = recall_at_k(ranks, k) if k <= list_length else None
    for k in ks:
        out[f"ndcg@{k}"] = ndcg_at_k(ranks, k) if k <= list_length else None
    return out


def drop_history(ranked: torch.Tensor, samples: Sequence[Sample]) -> torch.Tensor:
    """The lists with each user's history items removed (order kept, -1 padded at the end)."""
    out = torch.full_like(ranked, -1)
    for i, (row, s) in enumerate(zip(ranked.tolist(), samples)):
        seen = set(s.history_ids)
        kept = [x for x in row if x >= 0 and x not in seen]
        if kept:
            out[i, :len(kept)] = torch.tensor(kept, dtype=ranked.dtype)
    return out


def title_ranks(title_lists: Sequence[Sequence[str | None]], target_titles: Sequence[str]) -> torch.Tensor:
    """0-based position of each target's title in its list of titles, -1 if absent."""
    ranks = []
    for titles, target in zip(title_lists, target_titles):
        ranks.append(next((r for r, t in enumerate(titles) if t == target), -1))
    return torch.tensor(ranks, dtype=torch.int64)


def titles_of(ranked: torch.Tensor, catalog: Catalog) -> list[list[str | None]]:
    return [[catalog.title(i) if i >= 0 else None for i in row] for row in ranked.tolist()]


def unique_title_mask(samples: Sequence[Sample], catalog: Catalog) -> torch.Tensor:
    """[B] bool: the target's title names no other item of the catalog."""
    return torch.tensor([catalog.title_is_unique(s.target_id) for s in samples], dtype=torch.bool)


def ms_per_query(run: Callable[[Sequence[Sample]], object], samples: Sequence[Sample],
                 batch_sizes: Sequence[int] = BATCH_SIZES, n_queries: int = 64) -> tuple[float, int, dict[int, float]]:
    """Milliseconds per query of ``run`` over the first ``n_queries`` samples, at each batch
    size (after one warm-up batch). Returns (best ms, its batch size, all results)."""
    queries = list(samples[:n_queries])
    if not queries:
        raise ValueError("no sample to time")
    results: dict[int, float] = {}
    for bs in batch_sizes:
        bs = min(bs, len(queries))
        run(queries[:bs])  # warm-up: caches, allocator, lazy init
        start = time.perf_counter()
        for i in range(0, len(queries), bs):
            run(queries[i:i + bs])
        results[bs] = 1000.0 * (time.perf_counter() - start) / len(queries)
    best = min(results, key=results.get)
    return results[best], best, results


def fmt(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"
