"""CUDA ``pooled_score_topk``. For ``mode="last"`` without normalisation the scoring kernel
reads each sequence's last real token straight out of ``hidden`` through per-query row
offsets (one kernel, no pooled tensor); otherwise it pools with the CUDA ``pool_hidden``
kernel, then scores."""
from __future__ import annotations

import torch

from pyl2d import _ext
from pyl2d.ops.pool_hidden.cuda import pool_hidden
from pyl2d.ops.score_topk.cuda import score_topk, topk_from_rows, vector_aligned
from pyl2d._fallbacks import last_token_index


def pooled_score_topk(hidden, attention_mask, items, k, metric="ip", mode="last", normalize=False,
                      exclude=None, item_norms=None):
    if mode != "last" or normalize:
        return score_topk(pool_hidden(hidden, attention_mask, mode, normalize), items, k, metric, exclude,
                          item_norms)
    h = _ext.ensure_inner_contiguous(hidden)
    b, t, _ = h.shape
    last = last_token_index(attention_mask).to(torch.int64)
    batch_index = torch.arange(b, device=h.device, dtype=torch.int64)
    offsets = batch_index * h.stride(0) + last * h.stride(1)
    aligned = vector_aligned(h, h.stride(0) if b > 1 else 0, h.stride(1) if t > 1 else 0)
    return topk_from_rows(h, offsets, b, aligned, lambda: h[batch_index, last], items, k, metric, exclude,
                          item_norms)
