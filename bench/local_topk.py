"""Benchmark local_topk (L2D's local aggregation: kNN over the memory, per-item means of the
nearest entries, ranking of the items) on every available backend against plain torch.

Plain torch is what one writes without pyl2d: a full query x memory matmul and ``topk``, a
``scatter_add_`` of the m nearest entries into a dense [B, N, D] buffer of per-item sums, then
full query x item scores (items without a neighbour fall back to their global representation,
items owning no memory are excluded) and ``topk``. The torch backend (the op's reference.py,
a sparser brute force) is listed with the others. Metric l2; 10% of the items own no memory.
Each backend's ids are compared with plain torch's ("ids = plain": the fraction that agree).

    python bench/local_topk.py                    # CPU: B in {1, 16}, M = 20k, N = 2k, D = 128
    python bench/local_topk.py --device cuda      # GPU: B in {1, 64}, M = 200k, N = 20k, D = 1024
    python bench/local_topk.py --quick            # first size only (smoke run, writes no file)

Prints a table of median milliseconds and speed-ups over plain torch and writes it to
bench/results/local_topk_<cpu|gpu>_<date>.md. CPU: perf_counter medians; GPU: CUDA-event
medians from triton.testing.do_bench.
"""
from __future__ import annotations

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import pyl2d  # noqa: E402
from pyl2d import _backend  # noqa: E402
from pyl2d.ops.score_topk.reference import similarity  # noqa: E402

import _harness  # noqa: E402

# (B, M memory, N items, D, k, m)
SHAPES = {"cpu": [(1, 20_000, 2_000, 128, 20, 100), (16, 20_000, 2_000, 128, 20, 1000)],
          "cuda": [(1, 200_000, 20_000, 1024, 50, 1000), (64, 200_000, 20_000, 1024, 50, 1000)]}
DTYPES = {"cpu": [torch.float32, torch.bfloat16], "cuda": [torch.bfloat16, torch.float32]}
METRIC = "l2"


def plain_local_topk(q, memory, item_of, reps, k, m, metric):
    b, n = q.shape[0], reps.shape[0]
    nearest = similarity(q, memory, metric).topk(m, dim=1).indices                  # [B, m]
    owners = item_of[nearest]                                                       # [B, m]
    sums = torch.zeros((b, n, memory.shape[1]), dtype=torch.float32, device=q.device)
    sums.scatter_add_(1, owners[:, :, None].expand(-1, -1, memory.shape[1]), memory[nearest].float())
    counts = torch.zeros((b, n), dtype=torch.float32, device=q.device).scatter_add_(
        1, owners, torch.ones_like(owners, dtype=torch.float32))
    local = sums / counts.clamp_min(1)[:, :, None]
    qf = q.float()
    if metric == "ip":
        local_scores = torch.einsum("bd,bnd->bn", qf, local)
    elif metric == "cosine":
        local_scores = torch.einsum("bd,bnd->bn", qf, local) / (
            qf.norm(dim=1, keepdim=True).clamp_min(1e-12) * local.norm(dim=2).clamp_min(1e-12))
    else:
        local_scores = -(qf[:, None, :] - local).norm(dim=2)
    scores = torch.where(counts > 0, local_scores, similarity(q, reps, metric))
    scores[:, torch.bincount(item_of, minlength=n) == 0] = float("-inf")
    return scores.topk(k, dim=1)


def bench(device, quick, repeats, metric=METRIC):
    rows = []
    for b, mem, n, d, k, m in SHAPES[device][:1 if quick else None]:
        for dtype in DTYPES[device]:
            g = torch.Generator().manual_seed(1)
            memory = torch.randn(mem, d, generator=g).to(dtype).to(device)
            item_of = torch.randint(0, n - n // 10, (mem,), generator=g).to(device)  # 10% of items unseen
            q = (memory[torch.randint(0, mem, (b,), generator=g).to(device)].float()
                 + 0.5 * torch.randn(b, d, generator=g).to(device)).to(dtype)
            reps = pyl2d.segment_mean(memory, item_of, n)[0]
            want_scores, want_ids = plain_local_topk(q, memory, item_of, reps, k, m, metric)
            plain_ms, _ = _harness.measure(lambda: plain_local_topk(q, memory, item_of, reps, k, m, metric),
                                           device, repeats)
            for backend in _backend.available(torch.device(device), "local_topk"):
                scores, ids = pyl2d.local_topk(q, memory, item_of, reps, k, m, metric, backend=backend)
                agree = (ids == want_ids).float().mean().item()
                ms, _ = _harness.measure(
                    lambda: pyl2d.local_topk(q, memory, item_of, reps, k, m, metric, backend=backend), device, repeats)
                rows.append([b, f"{mem:,}", f"{n:,}", d, k, m, str(dtype).replace("torch.", ""), backend, ms,
                             plain_ms, _harness.ratio(plain_ms / ms, 2), f"{agree:.3f}"])
    return _harness.markdown_table(["B", "M", "N", "D", "k", "m", "dtype", "backend", "ms", "plain torch ms",
                                    "speed-up", "ids = plain"], rows)


def report(args) -> str:
    return "\n\n".join([
        f"# local_topk benchmark ({args.device}): metric {METRIC}; 10% of items own no memory",
        f"{_harness.machine_line(args.device)}. {_harness.timing_line(args.device)} of {args.repeats} runs; "
        "speed-up = plain torch / backend.",
        bench(args.device, args.quick, args.repeats),
    ]) + "\n"


if __name__ == "__main__":
    sys.exit(_harness.main("local_topk", __doc__, report, repeats=5))
