"""C++ CPU backend for ``rewards_and_advantages``: both kernels back to back, no torch op between."""
from __future__ import annotations

import torch

from pyl2d.ops._rewards.cpu import advantages_into, aggregate_into


def rewards_and_advantages(scores, weights, mode, score_max, bystander, bystander_coef, lengths, length_limit,
                           length_coef, num_groups, group_ids, eps, scale, impute):
    rewards = torch.empty(scores.shape[0], dtype=torch.float32)
    adv = torch.empty_like(rewards)
    aggregate_into(rewards, scores, weights, mode, score_max, bystander, bystander_coef, lengths, length_limit,
                   length_coef)
    advantages_into(adv, rewards, num_groups, group_ids, eps, scale, impute)
    return rewards, adv
