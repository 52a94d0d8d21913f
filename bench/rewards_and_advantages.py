"""Benchmark PERM's reward path: judge scores -> rewards -> GRPO advantages.

Judge scores [B, P=4] (20% NaN) are aggregated (weighted mean of the valid scores / 5) and
turned into group advantages (groups of G=8), at B in {64, 4096, 1M}, by:
- pyl2d's fused ``rewards_and_advantages`` on each available kernel backend of the device;
- the two separate ops, ``group_advantages(aggregate_rewards(...))`` (default backend);
- plain torch eager code (masked weighted mean, then TRL's nanmean/nanstd group formula);
- on CPU, a per-sample Python loop (what the reference PERM code does around its judge calls).
Target: CPU >= 20x the Python loop at B=4096.

    python bench/rewards_and_advantages.py                  # CPU
    python bench/rewards_and_advantages.py --device cuda    # GPU (no Python loop)
    python bench/rewards_and_advantages.py --quick          # B in {64, 4096} (smoke run, writes no file)

Prints a table of median milliseconds and speed-ups over the fastest fused backend and writes
it to bench/results/rewards_and_advantages_<cpu|gpu>_<date>.md. CPU: perf_counter medians;
GPU: CUDA-event medians from triton.testing.do_bench.
"""
from __future__ import annotations

import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pyl2d import _backend  # noqa: E402
from pyl2d.ops import aggregate_rewards, group_advantages, rewards_and_advantages  # noqa: E402

import _harness  # noqa: E402

P, G, NAN_FRAC = 4, 8, 0.2
WEIGHTS = [1.0, 1.0, 1.0, 0.5]
SIZES = [64, 4096, 1_000_000]
QUICK_SIZES = [64, 4096]


def torch_eager(scores, weights, group):
    """What one writes in plain torch: masked weighted mean / 5, then TRL's group formula."""
    x = scores.float() / 5.0
    valid = ~torch.isnan(x)
    w = torch.where(valid, weights, 0.0)
    rewards = torch.where(valid, x * weights, 0.0).sum(1) / w.sum(1)
    grouped = rewards.view(-1, group)
    mean = torch.nanmean(grouped, dim=1, keepdim=True)
    count = (~torch.isnan(grouped)).sum(1, keepdim=True)
    var = torch.nanmean((grouped - mean) ** 2, dim=1, keepdim=True) * count / (count - 1)
    adv = (grouped - mean) / (var.sqrt() + 1e-4)
    return rewards, torch.nan_to_num(adv, nan=0.0).view(-1)


def python_loop(rows, weights, group):
    """Per-sample Python: what the reference PERM code does around its judge calls."""
    rewards = []
    for row in rows:
        num = den = 0.0
        for s, w in zip(row, weights):
            if s == s:
                num += w * s / 5.0
                den += w
        rewards.append(num / den if den > 0 else math.nan)
    adv = []
    for g0 in range(0, len(rewards), group):
        vals = [r for r in rewards[g0:g0 + group] if r == r]
        mean = sum(vals) / len(vals) if vals else math.nan
        std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else math.nan
        for r in rewards[g0:g0 + group]:
            a = (r - mean) / (std + 1e-4)
            adv.append(0.0 if a != a else a)
    return rewards, adv


def bench(device: str, sizes, repeats: int) -> tuple[list[str], list[list[str]]]:
    """(header, rows): the fused op on each available backend of the device, the two separate
    ops (default backend), torch eager and, on CPU, the Python loop."""
    timed = _harness.median_ms
    ratio = _harness.ratio
    kernels = [b for b in _backend.available(torch.device(device), "rewards_and_advantages") if b != "torch"]
    header = (["B"] + [f"fused ({b})" for b in kernels] + ["2 ops", "torch eager", "Python loop", "eager / fused",
                                                           "loop / fused"])
    rows = []
    weights = torch.tensor(WEIGHTS, device=device)
    for b in sizes:
        g = torch.Generator().manual_seed(b)
        scores = (1 + 4 * torch.rand(b, P, generator=g))
        scores[torch.rand(b, P, generator=g) < NAN_FRAC] = float("nan")
        scores = scores.to(device)
        fused = [timed(lambda k=k: rewards_and_advantages(scores, G, weights=weights, backend=k), device, repeats)
                 for k in kernels]
        separate = timed(lambda: group_advantages(aggregate_rewards(scores, weights), G), device, repeats)
        eager = timed(lambda: torch_eager(scores, weights, G), device, repeats)
        loop = None
        if device == "cpu":
            as_lists = scores.tolist()
            loop = timed(lambda: python_loop(as_lists, WEIGHTS, G), device, 1 if b > 100_000 else repeats)
        best = min(fused)
        rows.append([f"{b:,}"] + [f"{t:.3f}" for t in fused] + [f"{separate:.3f}", f"{eager:.3f}",
                     f"{loop:.2f}" if loop is not None else "-", ratio(eager / best),
                     ratio(loop / best) if loop is not None else "-"])
    return header, rows


def report(args) -> str:
    backend = _backend.default_backend(torch.device(args.device), "rewards_and_advantages")
    return "\n".join([
        f"# rewards_and_advantages benchmark ({args.device}, default backend {backend})", "",
        f"{_harness.machine_line(args.device)}. {_harness.timing_line(args.device)}.", "",
        f"## Aggregation + GRPO advantages (P={P}, groups of {G}, {int(NAN_FRAC * 100)}% NaN scores)", "",
        _harness.markdown_table(*bench(args.device, QUICK_SIZES if args.quick else SIZES, args.repeats)), ""])


if __name__ == "__main__":
    sys.exit(_harness.main("rewards_and_advantages", __doc__, report, repeats=7))
