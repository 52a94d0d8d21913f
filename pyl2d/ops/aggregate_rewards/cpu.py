"""C++ CPU backend for ``aggregate_rewards`` (one pass over the rows, OpenMP for large B)."""
from __future__ import annotations

import torch

from pyl2d.ops._rewards.cpu import aggregate_into


def aggregate_rewards(scores, weights, mode, score_max, bystander, bystander_coef, lengths, length_limit,
                      length_coef):
    out = torch.empty(scores.shape[0], dtype=torch.float32)
    aggregate_into(out, scores, weights, mode, score_max, bystander, bystander_coef, lengths, length_limit,
                   length_coef)
    return out
