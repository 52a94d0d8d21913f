"""Triton ``score_from_hidden``: one program per row; the S score rows of the LM head are read
as an [S, BLOCK_D] tile per D chunk (never the full vocabulary), then a masked softmax."""
from __future__ import annotations

import torch
import triton

from pyl2d import _platform
from pyl2d._fallbacks import expected_scores
from pyl2d.ops._rewards.triton_kernels import score_from_hidden_kernel

# The kernel keeps an [S, BLOCK_D] tile in registers; more score tokens than this (never the
# case for a rubric) go through torch: a gather and a small matmul.
MAX_SCORE_TOKENS = 512


def score_from_hidden(hidden, lm_head_weight, score_token_ids, score_values):
    if score_token_ids.shape[0] > MAX_SCORE_TOKENS:
        return expected_scores(hidden, lm_head_weight, score_token_ids, score_values)
    if hidden.stride(1) != 1:
        hidden = hidden.contiguous()
    weight = lm_head_weight if lm_head_weight.stride(1) == 1 else lm_head_weight.contiguous()
    ids = score_token_ids.to(torch.int64).contiguous()
    values = score_values.to(torch.float32).contiguous()
    b, d = hidden.shape
    s = ids.shape[0]
    out = torch.empty(b, dtype=torch.float32, device=hidden.device)
    block_s = max(2, triton.next_power_of_2(s))
    block_d = 32 if _platform.triton_interpreted() else max(16, min(256, 4096 // block_s))
    score_from_hidden_kernel[(b,)](hidden, hidden.stride(0), weight, weight.stride(0), ids, values, out, d, s,
                                   BLOCK_S=block_s, BLOCK_D=block_d)
    return out
