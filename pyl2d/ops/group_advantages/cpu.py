"""C++ CPU backend for ``group_advantages`` (float64 group statistics)."""
from __future__ import annotations

import torch

from pyl2d.ops._rewards.cpu import advantages_into


def group_advantages(rewards, num_groups, group_ids, eps, scale, impute):
    out = torch.empty(rewards.shape[0], dtype=torch.float32)
    advantages_into(out, rewards, num_groups, group_ids, eps, scale, impute)
    return out
