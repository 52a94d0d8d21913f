"""CUDA ``aggregate_rewards``: one thread per row (kernels/aggregate_rewards.cu)."""
from __future__ import annotations

import torch

from pyl2d.ops._rewards.cuda import aggregate_into


def aggregate_rewards(scores, weights, mode, score_max, bystander, bystander_coef, lengths, length_limit,
                      length_coef):
    out = torch.empty(scores.shape[0], dtype=torch.float32, device=scores.device)
    aggregate_into(out, scores, weights, mode, score_max, bystander, bystander_coef, lengths, length_limit,
                   length_coef)
    return out
