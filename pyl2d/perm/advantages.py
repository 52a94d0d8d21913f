"""GRPO advantage presets on top of the ``group_advantages`` op, and group-mean imputation of
missing judge scores.

``trl_advantages`` is TRL's GRPOTrainer formula as of TRL 1.6 (contiguous groups of
``num_generations``, eps 1e-4; older TRL zeroes NaN rewards before grouping); ``verl_advantages`` is verl's ``compute_grpo_outcome_advantage`` (an arbitrary
group index, eps 1e-6, and verl's rule for a group of one: mean 0, std 1, so its advantage is
r / (1 + eps), or r without std scaling). NaN rewards give advantage 0 in both.
"""
from __future__ import annotations

import torch

from pyl2d import _checks
from pyl2d.ops.group_advantages import TRL_EPS, VERL_EPS, group_advantages


def trl_advantages(rewards: torch.Tensor, num_generations: int, *, scale_rewards: str = "group",
                   impute: bool = False, backend: str | None = None) -> torch.Tensor:
    """TRL's advantages: per-prompt groups of ``num_generations`` adjacent completions."""
    return group_advantages(rewards, num_generations, eps=TRL_EPS, scale=scale_rewards, impute=impute,
                            backend=backend)


def verl_advantages(rewards: torch.Tensor, index: torch.Tensor, *, norm_adv_by_std: bool = True,
                    eps: float = VERL_EPS, backend: str | None = None) -> torch.Tensor:
    """verl's GRPO outcome advantages for rewards [B] grouped by ``index`` [B] (any int ids)."""
    _checks.tensor("index", index, ndim=1, dtypes=_checks.INDEX_DTYPES)  # named as verl and this signature name it
    adv = group_advantages(rewards, group_index=index, eps=eps, scale="group" if norm_adv_by_std else "none",
                           backend=backend)
    _, inverse, counts = torch.unique(index, return_inverse=True, return_counts=True)
    single = counts[inverse] == 1
    if bool(single.any()):
        r = rewards.to(torch.float32)
        alone = r / (1.0 + eps) if norm_adv_by_std else r
        adv = torch.where(single, torch.nan_to_num(alone, nan=0.0), adv)
    return adv


def impute_group_mean(scores: torch.Tensor, group_index: torch.Tensor) -> torch.Tensor:
    """Replace each NaN in ``scores`` [B, P] by the mean of the valid scores of the same column
    among the rows of its group (``group_index`` [B], e.g. one id per prompt), never by a
    batch-wide mean, which would mix prompts. Entries whose whole group is NaN stay NaN."""
    _checks.tensor("scores", scores, dtypes=(*_checks.FLOAT_DTYPES, torch.float64))  # NaN marks a missing score
    _checks.tensor("group_index", group_index, dtypes=_checks.INDEX_DTYPES)
    if scores.dim() != 2 or group_index.dim() != 1 or group_index.shape[0] != scores.shape[0]:
        raise ValueError(f"scores must be [B, P] and group_index [B]; got {tuple(scores.shape)} and "
                         f"{tuple(group_index.shape)}")
    _, ids = torch.unique(group_index, return_inverse=True)
    groups = int(ids.max()) + 1 if ids.numel() else 0
    valid = ~torch.isnan(scores)
    zeros = scores.new_zeros((groups, scores.shape[1]))
    count = zeros.index_add(0, ids, valid.to(scores.dtype))
    mean = zeros.index_add(0, ids, torch.where(valid, scores, 0.0)) / count
    return torch.where(valid, scores, mean[ids])
