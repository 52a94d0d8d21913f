"""C++ CPU backend for ``score_from_hidden``: S dot products per row, online softmax."""
from __future__ import annotations

import torch

from pyl2d import _ext


def score_from_hidden(hidden, lm_head_weight, score_token_ids, score_values):
    hidden = _ext.ensure_inner_contiguous(hidden)
    weight = _ext.ensure_inner_contiguous(lm_head_weight)
    ids = score_token_ids.to(torch.int64).contiguous()
    values = score_values.to(torch.float32).contiguous()
    out = torch.empty(hidden.shape[0], dtype=torch.float32)
    lib = _ext.require()
    _ext.call(lib.score_from_hidden_cpu, lib.ScoreFromHiddenParams, hidden=hidden, lm_head_weight=weight,
              score_token_ids=ids, score_values=values, out=out)
    return out
