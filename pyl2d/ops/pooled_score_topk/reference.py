"""Reference for ``pooled_score_topk``: exactly pooling then scoring."""
from __future__ import annotations

from pyl2d.ops.pool_hidden.reference import pool_hidden
from pyl2d.ops.score_topk.reference import score_topk


def pooled_score_topk(hidden, attention_mask, items, k, metric="ip", mode="last", normalize=False,
                      exclude=None, item_norms=None):
    queries = pool_hidden(hidden, attention_mask, mode, normalize)
    return score_topk(queries, items, k, metric, exclude, item_norms)
