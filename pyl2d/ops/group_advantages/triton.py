"""Triton ``group_advantages``: one program per group (a segment of a stable sort by group id,
or a contiguous run), group statistics in registers."""
from __future__ import annotations

import torch

from pyl2d.ops._rewards.triton_kernels import launch_advantages


def group_advantages(rewards, num_groups, group_ids, eps, scale, impute):
    rewards = rewards.contiguous()
    adv = torch.empty(rewards.shape[0], dtype=torch.float32, device=rewards.device)
    launch_advantages(rewards, 1, adv, None, num_groups, group_ids, eps, scale, impute, from_scores=False)
    return adv
