"""CUDA ``group_advantages``: one thread block per group, block reductions (kernels/group_advantages.cu)."""
from __future__ import annotations

import torch

from pyl2d.ops._rewards.cuda import advantages_into


def group_advantages(rewards, num_groups, group_ids, eps, scale, impute):
    adv = torch.empty(rewards.shape[0], dtype=torch.float32, device=rewards.device)
    advantages_into(adv, None, rewards, num_groups, group_ids, eps, scale, impute)
    return adv
