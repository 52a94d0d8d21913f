"""Argument marshalling for the CUDA reward launchers (pyl2d._C *_cuda, kernels/rewards.h)."""
from __future__ import annotations

import torch

from pyl2d import _codes, _ext
from pyl2d._fallbacks import batch_std, group_segments



def _f32(t):
    return None if t is None else t.to(torch.float32).contiguous()


def _ptr(t) -> int:
    return 0 if t is None else t.data_ptr()


def reward_args(scores, weights, mode, score_max, bystander, bystander_coef, lengths, length_limit, length_coef):
    """The aggregation arguments as the launchers take them (tensors kept alive by the caller)."""
    scores = _ext.ensure_inner_contiguous(scores)
    keep = (scores, _f32(weights), _f32(bystander),
            _f32(lengths) if lengths is not None and length_limit is not None else None)
    args = (scores.data_ptr(), scores.shape[1], scores.stride(0), _ext.dtype_code(scores), _ptr(keep[1]),
            _codes.REWARD_MODE_CODES[mode], float(score_max), _ptr(keep[2]), float(bystander_coef), _ptr(keep[3]),
            float(length_limit or 0.0), float(length_coef))
    return args, keep


def aggregate_into(out, scores, weights, mode, score_max, bystander, bystander_coef, lengths, length_limit,
                   length_coef) -> None:
    (s_ptr, cols, stride, code, *rest), keep = reward_args(scores, weights, mode, score_max, bystander,
                                                           bystander_coef, lengths, length_limit, length_coef)
    _ext.require().aggregate_rewards_cuda(s_ptr, scores.shape[0], cols, stride, code, *rest, out.data_ptr(),
                                          _ext.cuda_stream(out.device))


def advantages_into(adv, rewards_out, source, num_groups, group_ids, eps, scale, impute, agg=None) -> None:
    """From rewards (``agg`` None, ``source`` = rewards) or from scores (``agg`` = the aggregation
    arguments, ``source`` = scores; rewards are written to ``rewards_out``)."""
    order, offsets, largest = group_segments(adv.shape[0], num_groups, group_ids, adv.device)
    std = batch_std(source, num_groups, group_ids, impute) if scale == "batch" else 0.0
    if agg is None:
        rewards = _f32(source)
        args, keep = (0, 1, 1, 0, 0, 0, 1.0, 0, 0.0, 0, 0.0, 0.0), ()
    else:
        rewards = None
        args, keep = reward_args(source, *agg)
    _ext.require().group_advantages_cuda(
        *args, agg is not None, _ptr(rewards), _ptr(order), offsets.data_ptr(), num_groups, largest, float(eps),
        _codes.ADVANTAGE_SCALE_CODES[scale], bool(impute), float(std), adv.data_ptr(), _ptr(rewards_out), _ext.cuda_stream(adv.device))
    del keep
