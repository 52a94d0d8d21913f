"""Reference for ``rewards_and_advantages``: the two references composed."""
from __future__ import annotations

from pyl2d.ops.aggregate_rewards.reference import aggregate_rewards
from pyl2d.ops.group_advantages.reference import group_advantages


def rewards_and_advantages(scores, weights, mode, score_max, bystander, bystander_coef, lengths, length_limit,
                           length_coef, num_groups, group_ids, eps, scale, impute):
    rewards = aggregate_rewards(scores, weights, mode, score_max, bystander, bystander_coef, lengths, length_limit,
                                length_coef)
    return rewards, group_advantages(rewards, num_groups, group_ids, eps, scale, impute)
