"""Triton ``aggregate_rewards``: BLOCK_B rows per program, the P scores of a row in one tile."""
from __future__ import annotations

import torch
import triton

from pyl2d import _platform
from pyl2d import _codes
from pyl2d.ops._rewards.triton_kernels import aggregate_kernel, f32


def launch_aggregate(out, scores, weights, mode, score_max, bystander, bystander_coef, lengths, length_limit,
                     length_coef) -> None:
    if scores.shape[1] > 1 and scores.stride(1) != 1:
        scores = scores.contiguous()
    weights, bystander = f32(weights), f32(bystander)
    lengths = f32(lengths) if lengths is not None and length_limit is not None else None
    b, p = scores.shape
    block_b = 16 if _platform.triton_interpreted() else 256
    aggregate_kernel[(triton.cdiv(b, block_b),)](
        scores, scores.stride(0), b, p, float(score_max), weights if weights is not None else out,
        bystander if bystander is not None else out, float(bystander_coef), lengths if lengths is not None else out,
        float(length_limit or 0.0), float(length_coef), out, HAS_W=weights is not None,
        HAS_BY=bystander is not None, HAS_LEN=lengths is not None, MODE=_codes.REWARD_MODE_CODES[mode], BLOCK_B=block_b,
        BLOCK_P=triton.next_power_of_2(p))


def aggregate_rewards(scores, weights, mode, score_max, bystander, bystander_coef, lengths, length_limit,
                      length_coef):
    out = torch.empty(scores.shape[0], dtype=torch.float32, device=scores.device)
    launch_aggregate(out, scores, weights, mode, score_max, bystander, bystander_coef, lengths, length_limit,
                     length_coef)
    return out
