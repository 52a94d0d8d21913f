"""PERM reward benchmarks: aggregation + GRPO advantages, and the local judge's score head.

1. Judge scores [B, P=4] (20% NaN) -> rewards -> advantages (groups of G=8), at B in
   {64, 4096, 1M}: pyl2d's fused ``rewards_and_advantages`` and the two separate ops, against
   plain torch eager code (masked weighted mean, then TRL's nanmean/nanstd group formula) and a
   per-sample Python loop. Target: CPU >= 20x the Python loop at B=4096.
2. ``score_from_hidden`` (S=5 score tokens) against the full-vocabulary path (hidden @ W.T over
   a 32k vocabulary, softmax, pick the score tokens). Target: >= 10x.

Usage: python bench/perm_rewards.py [--device cpu|cuda] [--quick]
Prints a table (median milliseconds, speed-up ratios) and writes it to
bench/results/perm_<cpu|gpu>_<date>.md. CPU times: perf_counter medians; GPU: CUDA-event
medians from triton.testing.do_bench.
"""
from __future__ import annotations

import argparse
import datetime
import math
import os
import pathlib
import platform
import statistics
import sys
import time

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from pyl2d.ops import aggregate_rewards, group_advantages, rewards_and_advantages, score_from_hidden  # noqa: E402

P, G, NAN_FRAC = 4, 8, 0.2
WEIGHTS = [1.0, 1.0, 1.0, 0.5]


def timed(fn, device: str, repeats: int) -> float:
    """Median milliseconds of fn()."""
    if device == "cuda":
        import triton.testing
        return float(triton.testing.do_bench(fn, warmup=10, rep=max(50, repeats * 10), return_mode="median"))
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


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


def bench_rewards(device: str, sizes, repeats: int) -> tuple[list[str], list[list[str]]]:
    """(header, rows): the fused op on each available backend of the device, the two separate
    ops (default backend), torch eager and, on CPU, the Python loop."""
    from pyl2d import _backend
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


def bench_head(device: str, batches, repeats: int, vocab=32_000, dim=2048, s=5) -> tuple[list[str], list[list[str]]]:
    from pyl2d import _backend
    kernels = [b for b in _backend.available(torch.device(device), "score_from_hidden") if b != "torch"]
    header = ["B"] + [f"score_from_hidden ({k})" for k in kernels] + ["torch gather+matmul", "full vocabulary",
                                                                       "full / ours"]
    rows = []
    g = torch.Generator().manual_seed(0)
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    weight = (torch.randn(vocab, dim, generator=g) * 0.02).to(dtype).to(device)
    ids = torch.randperm(vocab, generator=g)[:s].to(device)
    values = torch.arange(1, s + 1, dtype=torch.float32, device=device)

    def full_vocab(h):
        probs = torch.softmax((h @ weight.T).float(), dim=-1)[:, ids]
        return (probs / probs.sum(1, keepdim=True)) @ values

    def gather_eager(h):
        return torch.softmax((h @ weight[ids].T).float(), dim=-1) @ values

    for b in batches:
        h = torch.randn(b, dim, generator=g).to(dtype).to(device)
        ours = [timed(lambda k=k: score_from_hidden(h, weight, ids, values, backend=k), device, repeats)
                for k in kernels]
        full = timed(lambda: full_vocab(h), device, repeats)
        gather = timed(lambda: gather_eager(h), device, repeats)
        rows.append([f"{b}"] + [f"{t:.3f}" for t in ours] + [f"{gather:.3f}", f"{full:.2f}", ratio(full / min(ours))])
    return header, rows


def ratio(x: float) -> str:
    return f"{x:.1f}x" if x < 10 else f"{x:.0f}x"


def table(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--quick", action="store_true", help="small sizes only (smoke test)")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: no CUDA device", file=sys.stderr)
        return 2
    sizes = [64, 4096] if args.quick else [64, 4096, 1_000_000]
    batches = [16] if args.quick else [16, 256]
    from pyl2d import _backend
    dev = torch.device(args.device)
    backend = _backend.default_backend(dev, "rewards_and_advantages")
    if args.device == "cuda":
        hw = torch.cuda.get_device_name()
    else:  # the load matters on a shared machine: every column runs under the same load
        load = ", load average {:.1f}".format(os.getloadavg()[0]) if hasattr(os, "getloadavg") else ""
        hw = f"{platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads{load}"
    out = [f"# PERM reward benchmarks ({args.device}, backend {backend})", "",
           f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; {hw}; torch {torch.__version__}. "
           f"Median milliseconds ({'CUDA events, triton do_bench' if args.device == 'cuda' else 'perf_counter'}).", "",
           f"## Aggregation + GRPO advantages (P={P}, groups of {G}, {int(NAN_FRAC * 100)}% NaN scores)", "",
           table(*bench_rewards(args.device, sizes, args.repeats)), "",
           "## Local judge head: score_from_hidden vs full-vocabulary LM head + softmax (V=32,000, D=2048, S=5)", "",
           table(*bench_head(args.device, batches, args.repeats)), ""]
    text = "\n".join(out)
    print(text)
    if not args.quick:
        name = "perm_gpu" if args.device == "cuda" else "perm_cpu"
        path = pathlib.Path(__file__).resolve().parent / "results" / f"{name}_{datetime.date.today():%Y-%m-%d}.md"
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
