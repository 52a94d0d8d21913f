"""``group_advantages``: GRPO advantages from rewards, exactly TRL's formula, NaN-aware.

Per group: mean and unbiased standard deviation over the valid (non-NaN) rewards, then
``(r - mean) / (std + eps)``; every NaN result (a NaN reward, a group with fewer than two
valid rewards under ``scale="group"``) becomes 0, so a failed judgement never moves the
policy. ``scale="batch"`` divides by the whole batch's std (TRL's ``scale_rewards="batch"``),
``"none"`` only centres. ``impute=True`` first replaces each NaN reward by its own group's
mean (never the batch's, which would mix prompts) and counts it as a member."""
from __future__ import annotations

import math
from typing import Optional

import torch

from pyl2d import _backend, _checks, _codes

SCALES = _codes.ADVANTAGE_SCALES
TRL_EPS = 1e-4
VERL_EPS = 1e-6


@torch.library.custom_op("pyl2d::group_advantages", mutates_args=())
def _group_advantages_op(rewards: torch.Tensor, num_groups: int, group_ids: Optional[torch.Tensor], eps: float,
                         scale: str, impute: bool, backend: str) -> torch.Tensor:
    return _backend.implementation("group_advantages", backend)(rewards, num_groups, group_ids, eps, scale, impute)


@_group_advantages_op.register_fake
def _(rewards, num_groups, group_ids, eps, scale, impute, backend):
    return rewards.new_empty((rewards.shape[0],), dtype=torch.float32)


def resolve_groups(batch: int, device: torch.device, group_size, group_index) -> tuple[int, torch.Tensor | None]:
    """(number of groups, dense int64 group ids or None for contiguous equal groups)."""
    if (group_size is None) == (group_index is None):
        raise ValueError("give exactly one of group_size (contiguous groups) and group_index (a group id per element)")
    if group_size is not None:
        if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
            raise ValueError(f"group_size must be a positive int, got {group_size!r}")
        if batch % group_size:
            raise ValueError(f"group_size={group_size} does not divide the batch size {batch}")
        return batch // group_size, None
    _checks.tensor("group_index", group_index, ndim=1, dtypes=_checks.INDEX_DTYPES)
    if group_index.shape[0] != batch:
        raise ValueError(f"group_index has {group_index.shape[0]} entries but there are {batch} rewards")
    if group_index.device != device:
        raise ValueError(f"group_index is on {group_index.device} but the rewards are on {device}")
    uniq, dense = torch.unique(group_index, return_inverse=True)
    return int(uniq.shape[0]), dense.to(torch.int64)


def check_advantage_args(eps, scale, impute) -> float:
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps) or eps < 0:
        raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
    _checks.choice("scale", scale, SCALES)
    _checks.flag("impute", impute)
    return float(eps)


def group_advantages(rewards: torch.Tensor, group_size: int | None = None, *, group_index: torch.Tensor | None = None,
                     eps: float = TRL_EPS, scale: str = "group", impute: bool = False,
                     backend: str | None = None) -> torch.Tensor:
    """GRPO advantages [B] (float32) from rewards [B] (NaN = unscorable).

    Groups are either contiguous runs of ``group_size`` (TRL's layout: the generations of
    one prompt are adjacent) or given by ``group_index`` (any integer id per element,
    verl's layout). See ``verl_advantages`` in ``pyl2d.perm`` for verl's preset. ``impute``
    must be a bool (a string such as "no" is an error, not True)."""
    _checks.tensor("rewards", rewards, ndim=1, dtypes=_checks.FLOAT_DTYPES)
    if rewards.shape[0] == 0:
        raise ValueError("rewards is empty")
    if not _checks.tracing() and bool(torch.isinf(rewards).any()):
        raise ValueError("rewards contains Inf (use NaN to mark a missing reward)")
    eps = check_advantage_args(eps, scale, impute)
    num_groups, ids = resolve_groups(rewards.shape[0], rewards.device, group_size, group_index)
    resolved = _backend.resolve(backend, rewards.device, "group_advantages")
    return _group_advantages_op(rewards, num_groups, ids, eps, scale, bool(impute), resolved)
