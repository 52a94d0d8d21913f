"""L2D aggregation benchmarks: ``segment_mean`` (global item representations) and
``local_topk`` (local aggregation: memory kNN + per-item means + ranking), every available
backend against plain torch.

Plain torch is what one writes without pyl2d: ``index_add_`` + ``bincount`` for the means; for
local_topk a full query x memory matmul, ``topk``, a ``scatter_add_`` of the nearest entries
into a dense [B, N, D] buffer of per-item sums, then full query x item scores and ``topk``.
The torch backend (each op's reference.py, a sparser brute force) is listed as well.

Usage: python bench/l2d_aggregation.py [--device cpu|cuda] [--quick]
Prints tables of median milliseconds and speed-ups over plain torch, and writes them to
bench/results/l2d_aggregation_<cpu|gpu>_<date>.md. CPU: perf_counter medians;
GPU: CUDA-event medians from triton.testing.do_bench.
"""
from __future__ import annotations

import argparse
import datetime
import pathlib
import sys

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import pyl2d  # noqa: E402
from pyl2d import _backend  # noqa: E402
from pyl2d.ops.score_topk.reference import similarity  # noqa: E402

import _harness  # noqa: E402

# (M rows, D, S segments)
SEGMENT_SHAPES = {"cpu": [(20_000, 256, 2_000), (100_000, 128, 10_000)],
                  "cuda": [(200_000, 1024, 20_000), (1_000_000, 256, 100_000)]}
# (B, M memory, N items, D, k, m)
LOCAL_SHAPES = {"cpu": [(1, 20_000, 2_000, 128, 20, 100), (16, 20_000, 2_000, 128, 20, 1000)],
                "cuda": [(1, 200_000, 20_000, 1024, 50, 1000), (64, 200_000, 20_000, 1024, 50, 1000)]}
DTYPES = {"cpu": [torch.float32, torch.bfloat16], "cuda": [torch.bfloat16, torch.float32]}


def plain_segment_mean(values, ids, s):
    sums = torch.zeros((s, values.shape[1]), dtype=torch.float32, device=values.device)
    sums.index_add_(0, ids, values.float())
    counts = torch.bincount(ids, minlength=s)
    return sums / counts.clamp_min(1)[:, None], counts


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


def bench_segment_mean(device, quick):
    rows = []
    for m, d, s in SEGMENT_SHAPES[device][:1 if quick else None]:
        for dtype in DTYPES[device]:
            g = torch.Generator().manual_seed(0)
            values = torch.randn(m, d, generator=g).to(dtype).to(device)
            ids = torch.randint(0, s, (m,), generator=g).to(device)
            want = plain_segment_mean(values, ids, s)[0]
            plain_ms, _ = _harness.measure(lambda: plain_segment_mean(values, ids, s), device)
            for backend in _backend.available(torch.device(device), "segment_mean"):
                got = pyl2d.segment_mean(values, ids, s, backend=backend)[0]
                err = (got - want).abs().max().item()
                ms, _ = _harness.measure(lambda: pyl2d.segment_mean(values, ids, s, backend=backend), device)
                rows.append([f"{m:,}", d, f"{s:,}", str(dtype).replace("torch.", ""), backend, ms, plain_ms,
                             f"{plain_ms / ms:.2f}x", f"{err:.1e}"])
    return _harness.markdown_table(["M", "D", "S", "dtype", "backend", "ms", "plain torch ms", "speed-up",
                                    "max |diff|"], rows)


def bench_local_topk(device, quick, metric="l2"):
    rows = []
    for b, mem, n, d, k, m in LOCAL_SHAPES[device][:1 if quick else None]:
        for dtype in DTYPES[device]:
            g = torch.Generator().manual_seed(1)
            memory = torch.randn(mem, d, generator=g).to(dtype).to(device)
            item_of = torch.randint(0, n - n // 10, (mem,), generator=g).to(device)  # 10% of items unseen
            q = (memory[torch.randint(0, mem, (b,), generator=g).to(device)].float()
                 + 0.5 * torch.randn(b, d, generator=g).to(device)).to(dtype)
            reps = pyl2d.segment_mean(memory, item_of, n)[0]
            want_scores, want_ids = plain_local_topk(q, memory, item_of, reps, k, m, metric)
            plain_ms, _ = _harness.measure(lambda: plain_local_topk(q, memory, item_of, reps, k, m, metric), device)
            for backend in _backend.available(torch.device(device), "local_topk"):
                scores, ids = pyl2d.local_topk(q, memory, item_of, reps, k, m, metric, backend=backend)
                agree = (ids == want_ids).float().mean().item()
                ms, _ = _harness.measure(
                    lambda: pyl2d.local_topk(q, memory, item_of, reps, k, m, metric, backend=backend), device)
                rows.append([b, f"{mem:,}", f"{n:,}", d, k, m, str(dtype).replace("torch.", ""), backend, ms,
                             plain_ms, f"{plain_ms / ms:.2f}x", f"{agree:.3f}"])
    return _harness.markdown_table(["B", "M", "N", "D", "k", "m", "dtype", "backend", "ms", "plain torch ms",
                                    "speed-up", "ids = plain"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--quick", action="store_true", help="first shape only")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda needs a CUDA device")
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = "\n\n".join([
        f"# L2D aggregation benchmarks ({args.device})",
        f"{now}; {_harness.machine_line(args.device)}. Median milliseconds; speed-up = plain torch / backend.",
        "## segment_mean (global item representations)",
        bench_segment_mean(args.device, args.quick),
        "## local_topk (metric l2; 10% of items own no memory)",
        bench_local_topk(args.device, args.quick),
    ]) + "\n"
    print(text)
    if not args.quick:
        path = _harness.results_path(f"l2d_aggregation_{'cpu' if args.device == 'cpu' else 'gpu'}")
        pathlib.Path(path).write_text(text)
        print(f"written to {path}")


if __name__ == "__main__":
    main()
