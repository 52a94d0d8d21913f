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
    ptr, rows, cols, stride, code = _ext.matrix(scores)
    _ext.require().aggregate_rewards_cpu(
        ptr, rows, cols, stride, code, weights.data_ptr() if weights is not None else 0, _codes.REWARD_MODE_CODES[mode],
        float(score_max), bystander.data_ptr() if bystander is not None else 0, float(bystander_coef),
        lengths.data_ptr() if lengths is not None else 0, float(length_limit or 0.0), float(length_coef),
        out.data_ptr())


def advantages_into(out, rewards, num_groups, group_ids, eps, scale, impute) -> None:
    rewards = _f32(rewards)
    ids = None if group_ids is None else group_ids.to(torch.int64).contiguous()
    workspace = torch.empty(4 * num_groups, dtype=torch.float64)
    _ext.require().group_advantages_cpu(
        rewards.data_ptr(), rewards.shape[0], num_groups, ids.data_ptr() if ids is not None else 0, float(eps),
        _codes.ADVANTAGE_SCALE_CODES[scale], bool(impute), workspace.data_ptr(), out.data_ptr())
