"""Reference for ``group_advantages``: TRL's GRPO formula, NaN-aware, with index_add."""
from __future__ import annotations

import torch


def dense_groups(batch: int, num_groups: int, group_ids, device) -> torch.Tensor:
    """Group id of every element; contiguous equal groups when ``group_ids`` is None."""
    if group_ids is not None:
        return group_ids.to(torch.int64)
    return torch.arange(batch, device=device) // (batch // num_groups)


def group_stats(values: torch.Tensor, ids: torch.Tensor, num_groups: int):
    """(count of non-NaN values, their mean, sum of squared deviations) per group."""
    valid = ~torch.isnan(values)
    zeros = torch.zeros(num_groups, dtype=torch.float32, device=values.device)
    count = zeros.index_add(0, ids, valid.to(torch.float32))
    mean = zeros.index_add(0, ids, torch.where(valid, values, 0.0)) / count
    dev = torch.where(valid, values - mean[ids], 0.0)
    ssd = zeros.index_add(0, ids, dev * dev)
    return count, mean, ssd


def group_advantages(rewards, num_groups, group_ids, eps, scale, impute):
    r = rewards.to(torch.float32)
    ids = dense_groups(r.shape[0], num_groups, group_ids, r.device)
    count, mean, ssd = group_stats(r, ids, num_groups)
    if impute:
        # A missing reward takes its own group's mean and counts as a member: the mean and the
        # squared deviations are unchanged, only the count grows (exactly, no re-summing).
        members = torch.zeros_like(count).index_add(0, ids, torch.ones_like(r))
        count = torch.where(count > 0, members, count)
        r = torch.where(torch.isnan(r), mean[ids], r)
    adv = r - mean[ids]
    if scale == "group":
        adv = adv / ((ssd / (count - 1)).sqrt()[ids] + eps)
    elif scale == "batch":
        valid = ~torch.isnan(r)
        n = valid.sum().to(torch.float32)
        mb = torch.where(valid, r, 0.0).sum() / n
        std = (torch.where(valid, r - mb, 0.0).square().sum() / (n - 1)).sqrt()
        adv = adv / (std + eps)
    return torch.nan_to_num(adv, nan=0.0)


# Helpers for the kernel backends (segment layout, batch statistic), kept here: pure torch.
def segments(batch: int, num_groups: int, group_ids, device) -> tuple[torch.Tensor | None, torch.Tensor, int]:
    """(order or None, offsets [G+1] int64, largest group size) describing the groups."""
    if group_ids is None:
        size = batch // num_groups
        return None, torch.arange(num_groups + 1, device=device, dtype=torch.int64) * size, size
    counts = torch.bincount(group_ids, minlength=num_groups)
    offsets = torch.zeros(num_groups + 1, dtype=torch.int64, device=device)
    offsets[1:] = torch.cumsum(counts, 0)
    order = torch.argsort(group_ids, stable=True)
    return order, offsets, int(counts.max())


def batch_std(rewards: torch.Tensor, num_groups: int, group_ids, impute: bool) -> float:
    """The batch-wide std of (imputed) rewards for ``scale="batch"``: one reduction, in torch."""
    r = rewards.to(torch.float32)
    if impute:
        ids = dense_groups(r.shape[0], num_groups, group_ids, r.device)
        _, mean, _ = group_stats(r, ids, num_groups)
        r = torch.where(torch.isnan(r), mean[ids], r)
    valid = ~torch.isnan(r)
    n = valid.sum().to(torch.float32)
    mb = torch.where(valid, r, 0.0).sum() / n
    return float((torch.where(valid, r - mb, 0.0).square().sum() / (n - 1)).sqrt())
