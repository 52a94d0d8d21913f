"""Triton ``pooled_score_topk``.

mode="last" without normalisation is one fused kernel: the score kernel reads each query
straight from ``hidden[b, last[b], :]`` through int64 row offsets (from a tiny torch op on the
mask), so no pooled tensor exists. Other modes pool with the Triton pooling kernels, then
score: the result is exactly ``score_topk(pool_hidden(...), ...)``."""
from __future__ import annotations

import torch

from pyl2d._topk import candidates_needed, drop_excluded
from pyl2d._fallbacks import last_token_index
from pyl2d.ops.score_topk import _triton_search as _search
from pyl2d.ops.pool_hidden.triton import pool_hidden
from pyl2d.ops.score_topk.triton import score_topk


def pooled_score_topk(hidden, attention_mask, items, k, metric="ip", mode="last", normalize=False,
                      exclude=None, item_norms=None):
    batch = hidden.shape[0]
    c = candidates_needed(k, exclude, items.shape[0])
    if mode != "last" or normalize or not _search.fused_supported(c, items.shape[0]):
        queries = pool_hidden(hidden, attention_mask, mode, normalize)
        return score_topk(queries, items, k, metric, exclude, item_norms)
    last = last_token_index(attention_mask).to(torch.int64)
    rows = torch.arange(batch, device=hidden.device, dtype=torch.int64) * hidden.stride(0) + last * hidden.stride(1)
    scores, ids = _search.best_candidates(hidden, rows, hidden.stride(2), batch, items, c, metric, item_norms,
                                                 (hidden.stride(0), hidden.stride(1)))
    return drop_excluded(scores, ids, exclude, k)
