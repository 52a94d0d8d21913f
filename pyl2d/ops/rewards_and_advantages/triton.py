"""Triton ``rewards_and_advantages``: the advantages kernel reads the judge scores itself
(aggregating each member's row on the fly) and writes rewards and advantages in one launch.
``scale="batch"`` needs the batch std of the rewards first: aggregate, one reduction, then
the advantages kernel on the rewards."""
from __future__ import annotations

import torch

from pyl2d.ops._rewards.triton_kernels import launch_advantages
from pyl2d.ops.aggregate_rewards.triton import launch_aggregate


def rewards_and_advantages(scores, weights, mode, score_max, bystander, bystander_coef, lengths, length_limit,
                           length_coef, num_groups, group_ids, eps, scale, impute):
    b = scores.shape[0]
    rewards = torch.empty(b, dtype=torch.float32, device=scores.device)
    adv = torch.empty_like(rewards)
    if scale == "batch":
        launch_aggregate(rewards, scores, weights, mode, score_max, bystander, bystander_coef, lengths,
                         length_limit, length_coef)
        launch_advantages(rewards, 1, adv, None, num_groups, group_ids, eps, scale, impute, from_scores=False)
        return rewards, adv
    if scores.shape[1] > 1 and scores.stride(1) != 1:
        scores = scores.contiguous()
    f32 = lambda t: None if t is None else t.to(torch.float32).contiguous()  # noqa: E731
    agg = dict(P=scores.shape[1], score_max=score_max, weights=f32(weights), bystander=f32(bystander),
               bystander_coef=bystander_coef,
               lengths=f32(lengths) if lengths is not None and length_limit is not None else None,
               length_limit=length_limit, length_coef=length_coef, mode=mode)
    launch_advantages(scores, scores.stride(0), adv, rewards, num_groups, group_ids, eps, scale, impute,
                      from_scores=True, agg=agg)
    return rewards, adv
