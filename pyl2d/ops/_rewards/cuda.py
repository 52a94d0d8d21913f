"""Argument marshalling for the CUDA reward launchers (pyl2d._C *_cuda, kernels/<op>.h)."""
from __future__ import annotations

import torch

from pyl2d import _codes, _ext
from pyl2d._fallbacks import batch_std, group_segments


def _f32(t):
    return None if t is None else t.to(torch.float32).contiguous()


def reward_fields(scores, weights, mode, score_max, bystander, bystander_coef, lengths, length_limit, length_coef):
    """The aggregation fields by name (kernels/reward_fields.h: RewardFields)."""
    return dict(scores=_ext.ensure_inner_contiguous(scores), weights=_f32(weights), mode=_codes.REWARD_MODE_CODES[mode],
                score_max=float(score_max), bystander=_f32(bystander), bystander_coef=float(bystander_coef),
                lengths=_f32(lengths) if lengths is not None and length_limit is not None else None,
                length_limit=float(length_limit or 0.0), length_coef=float(length_coef))


def aggregate_into(out, scores, weights, mode, score_max, bystander, bystander_coef, lengths, length_limit,
                   length_coef) -> None:
    lib = _ext.require()
    _ext.call(lib.aggregate_rewards_cuda, lib.AggregateRewardsCudaParams, out=out, stream=_ext.cuda_stream(out.device),
              **reward_fields(scores, weights, mode, score_max, bystander, bystander_coef, lengths, length_limit,
                              length_coef))


def advantages_into(adv, rewards_out, source, num_groups, group_ids, eps, scale, impute, agg=None) -> None:
    """From rewards (``agg`` None, ``source`` = rewards) or from scores (``agg`` = the aggregation
    arguments, ``source`` = scores; rewards are written to ``rewards_out``)."""
    order, offsets, largest = group_segments(adv.shape[0], num_groups, group_ids, adv.device)
    std = batch_std(source, num_groups, group_ids, impute) if scale == "batch" else 0.0
    inputs = dict(rewards=_f32(source)) if agg is None else reward_fields(source, *agg)
    lib = _ext.require()
    _ext.call(lib.group_advantages_cuda, lib.GroupAdvantagesCudaParams, order=order, offsets=offsets,
              largest_group=largest, eps=float(eps), scale=_codes.ADVANTAGE_SCALE_CODES[scale], impute=bool(impute),
              batch_std=float(std), adv=adv, rewards_out=rewards_out, stream=_ext.cuda_stream(adv.device), **inputs)
