"""``rewards_and_advantages``: ``aggregate_rewards`` and ``group_advantages`` fused.

On GPU (triton, cuda) one kernel launch reads the judge scores of each group, forms the
rewards and writes rewards and advantages, so the [B] reward vector never round-trips
through memory between two ops (``scale="batch"`` needs a batch-wide statistic and takes
one extra reduction). On CPU the C++ backend runs both loops in one call."""
from __future__ import annotations

from typing import Optional

import torch

from pyl2d import _backend
from pyl2d.ops.aggregate_rewards import check_aggregate_args, resolve_missing_terms
from pyl2d.ops.group_advantages import TRL_EPS, check_advantage_args, resolve_groups


@torch.library.custom_op("pyl2d::rewards_and_advantages", mutates_args=())
def _rewards_and_advantages_op(scores: torch.Tensor, weights: Optional[torch.Tensor], mode: str, score_max: float,
                               bystander: Optional[torch.Tensor], bystander_coef: float,
                               lengths: Optional[torch.Tensor], length_limit: Optional[float], length_coef: float,
                               num_groups: int, group_ids: Optional[torch.Tensor], eps: float, scale: str,
                               impute: bool, backend: str) -> tuple[torch.Tensor, torch.Tensor]:
    rewards, adv = _backend.implementation("rewards_and_advantages", backend)(
        scores, weights, mode, score_max, bystander, bystander_coef, lengths, length_limit, length_coef,
        num_groups, group_ids, eps, scale, impute)
    return rewards, adv


@_rewards_and_advantages_op.register_fake
def _(scores, weights, mode, score_max, bystander, bystander_coef, lengths, length_limit, length_coef, num_groups,
      group_ids, eps, scale, impute, backend):
    b = scores.shape[0]
    return scores.new_empty((b,), dtype=torch.float32), scores.new_empty((b,), dtype=torch.float32)


def rewards_and_advantages(scores: torch.Tensor, group_size: int | None = None, *,
                           group_index: torch.Tensor | None = None, weights: torch.Tensor | None = None,
                           mode: str = "mean", score_max: float = 5.0, bystander: torch.Tensor | None = None,
                           bystander_coef: float = 0.0, lengths: torch.Tensor | None = None,
                           length_limit: float | None = None, length_coef: float = 0.0, eps: float = TRL_EPS,
                           scale: str = "group", impute: bool = False, missing_terms: str = "drop",
                           backend: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(rewards [B], advantages [B]), both float32, equal to ``aggregate_rewards`` followed by
    ``group_advantages`` with the same arguments (and the same checks)."""
    score_max, bystander_coef, length_limit, length_coef = check_aggregate_args(
        scores, weights, mode, score_max, bystander, bystander_coef, lengths, length_limit, length_coef)
    eps = check_advantage_args(eps, scale, impute)
    bystander, lengths = resolve_missing_terms(missing_terms, scores, bystander, lengths, length_limit)
    num_groups, ids = resolve_groups(scores.shape[0], scores.device, group_size, group_index)
    resolved = _backend.resolve(backend, scores.device, "rewards_and_advantages")
    return _rewards_and_advantages_op(scores, weights, mode, score_max, bystander, bystander_coef, lengths,
                                      length_limit, length_coef, num_groups, ids, eps, scale, bool(impute), resolved)
