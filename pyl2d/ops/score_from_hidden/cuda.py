"""CUDA ``score_from_hidden``: one block per row, a warp per score token (kernels/score_from_hidden.cu)."""
from __future__ import annotations

import torch

from pyl2d import _ext


def score_from_hidden(hidden, lm_head_weight, score_token_ids, score_values):
    hidden = _ext.ensure_inner_contiguous(hidden)
    weight = _ext.ensure_inner_contiguous(lm_head_weight)
    ids = score_token_ids.to(torch.int64).contiguous()
    values = score_values.to(torch.float32).contiguous()
    out = torch.empty(hidden.shape[0], dtype=torch.float32, device=hidden.device)
    lib = _ext.require()
    _ext.call(lib.score_from_hidden_cuda, lib.ScoreFromHiddenCudaParams, hidden=hidden, weight=weight, ids=ids,
              values=values, out=out, stream=_ext.cuda_stream(hidden.device))
    return out
