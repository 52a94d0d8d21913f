"""CUDA ``rewards_and_advantages``: the advantages kernel aggregates each member's scores itself
and writes rewards and advantages in one launch. ``scale="batch"`` aggregates first (the
batch std needs every reward), then runs the advantages kernel on the rewards."""
from __future__ import annotations

import torch

from pyl2d.ops._rewards.cuda import advantages_into, aggregate_into


def rewards_and_advantages(scores, weights, mode, score_max, bystander, bystander_coef, lengths, length_limit,
                           length_coef, num_groups, group_ids, eps, scale, impute):
    rewards = torch.empty(scores.shape[0], dtype=torch.float32, device=scores.device)
    adv = torch.empty_like(rewards)
    agg = (weights, mode, score_max, bystander, bystander_coef, lengths, length_limit, length_coef)
    if scale == "batch":
        aggregate_into(rewards, scores, *agg)
        advantages_into(adv, None, rewards, num_groups, group_ids, eps, scale, impute)
    else:
        advantages_into(adv, rewards, scores, num_groups, group_ids, eps, scale, impute, agg=agg)
    return rewards, adv
