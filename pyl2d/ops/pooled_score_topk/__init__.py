"""``pooled_score_topk``: pooling, optional normalisation, scoring and top-k in one call
(one kernel on GPU for ``mode="last"``)."""
from __future__ import annotations

from typing import Optional

import torch

from pyl2d import _backend
from pyl2d.ops.pool_hidden import check_pool_args
from pyl2d.ops.score_topk import check_search


@torch.library.custom_op("pyl2d::pooled_score_topk", mutates_args=())
def _pooled_score_topk_op(hidden: torch.Tensor, attention_mask: torch.Tensor, items: torch.Tensor, k: int,
                          metric: str, mode: str, normalize: bool, exclude: Optional[torch.Tensor],
                          item_norms: Optional[torch.Tensor], backend: str) -> tuple[torch.Tensor, torch.Tensor]:
    scores, ids = _backend.implementation("pooled_score_topk", backend)(
        hidden, attention_mask, items, k, metric, mode, normalize, exclude, item_norms)
    return scores, ids


@_pooled_score_topk_op.register_fake
def _(hidden, attention_mask, items, k, metric, mode, normalize, exclude, item_norms, backend):
    b = hidden.shape[0]
    return (hidden.new_empty((b, k), dtype=torch.float32), hidden.new_empty((b, k), dtype=torch.int64))


def pooled_score_topk(hidden: torch.Tensor, attention_mask: torch.Tensor, items: torch.Tensor, k: int,
                      metric: str = "ip", mode: str = "last", normalize: bool = False,
                      exclude: torch.Tensor | None = None, item_norms: torch.Tensor | None = None,
                      *, backend: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Exactly ``score_topk(pool_hidden(hidden, attention_mask, mode, normalize), items, ...)``
    (the pooled query is rounded to the hidden dtype), in one call, with the checks of both
    (including the float32 overflow bounds, the pooled query bounded by max|hidden|)."""
    query_max = check_pool_args(hidden, attention_mask, mode, normalize)
    check_search("hidden", hidden, hidden.shape[0], hidden.shape[2], items, k, metric, exclude, item_norms,
                 query_max)
    resolved = _backend.resolve(backend, hidden.device, "pooled_score_topk")
    return _backend.call("pooled_score_topk", _pooled_score_topk_op, resolved, hidden, attention_mask, items, k,
                         metric, mode, bool(normalize), exclude, item_norms)
