"""Shared argument marshalling for the C++ reward kernels (pyl2d._C *_cpu functions)."""
from __future__ import annotations

import torch

from pyl2d import _codes, _ext



def _f32(t: torch.Tensor | None) -> torch.Tensor | None:
    """float32, contiguous (a no-op when it already is)."""
    return None if t is None else t.to(torch.float32).contiguous()


def aggregate_into(out, scores, weights, mode, score_max, bystander, bystander_coef, lengths, length_limit,
                   length_coef) -> None:
    scores = _ext.ensure_inner_contiguous(scores)
    weights, bystander = _f32(weights), _f32(bystander)
    lengths = _f32(lengths) if lengths is not None and length_limit is not None else None
    lib = _ext.require()
    _ext.call(lib.aggregate_rewards_cpu, lib.AggregateRewardsParams, scores=scores, weights=weights,
              bystander=bystander, lengths=lengths, out=out, mode=_codes.REWARD_MODE_CODES[mode],
              score_max=float(score_max), bystander_coef=float(bystander_coef),
              length_limit=float(length_limit or 0.0), length_coef=float(length_coef))


def advantages_into(out, rewards, num_groups, group_ids, eps, scale, impute) -> None:
    rewards = _f32(rewards)
    ids = None if group_ids is None else group_ids.to(torch.int64).contiguous()
    workspace = torch.empty(4 * num_groups, dtype=torch.float64)
    lib = _ext.require()
    _ext.call(lib.group_advantages_cpu, lib.GroupAdvantagesParams, rewards=rewards, group_ids=ids,
              workspace=workspace, out=out, num_groups=num_groups, eps=float(eps),
              scale=_codes.ADVANTAGE_SCALE_CODES[scale], impute=bool(impute))
