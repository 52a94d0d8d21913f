"""Benchmark segment_mean (L2D's global item representations: the mean of each item's
memory rows) on every available backend against plain torch.

Plain torch is what one writes without pyl2d: ``index_add_`` of the rows into float32 sums,
``bincount`` for the counts, then sums / counts. The torch backend (the op's reference.py) is
listed with the others. Each backend's result is checked against plain torch (max |diff|).

    python bench/segment_mean.py                  # CPU: M x D rows into S segments, fp32 and bf16
    python bench/segment_mean.py --device cuda    # GPU sizes, bf16 and fp32
    python bench/segment_mean.py --quick          # first size only (smoke run, writes no file)

Prints a table of median milliseconds and speed-ups over plain torch and writes it to
bench/results/segment_mean_<cpu|gpu>_<date>.md. CPU: perf_counter medians; GPU: CUDA-event
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

import _harness  # noqa: E402

# (M rows, D, S segments)
SHAPES = {"cpu": [(20_000, 256, 2_000), (100_000, 128, 10_000)],
          "cuda": [(200_000, 1024, 20_000), (1_000_000, 256, 100_000)]}
DTYPES = {"cpu": [torch.float32, torch.bfloat16], "cuda": [torch.bfloat16, torch.float32]}


def plain_segment_mean(values, ids, s):
    sums = torch.zeros((s, values.shape[1]), dtype=torch.float32, device=values.device)
    sums.index_add_(0, ids, values.float())
    counts = torch.bincount(ids, minlength=s)
    return sums / counts.clamp_min(1)[:, None], counts


def bench(device, quick, repeats):
    rows = []
    for m, d, s in SHAPES[device][:1 if quick else None]:
        for dtype in DTYPES[device]:
            g = torch.Generator().manual_seed(0)
            values = torch.randn(m, d, generator=g).to(dtype).to(device)
            ids = torch.randint(0, s, (m,), generator=g).to(device)
            want = plain_segment_mean(values, ids, s)[0]
            plain_ms, _ = _harness.measure(lambda: plain_segment_mean(values, ids, s), device, repeats)
            for backend in _backend.available(torch.device(device), "segment_mean"):
                got = pyl2d.segment_mean(values, ids, s, backend=backend)[0]
                err = (got - want).abs().max().item()
                ms, _ = _harness.measure(lambda: pyl2d.segment_mean(values, ids, s, backend=backend), device, repeats)
                rows.append([f"{m:,}", d, f"{s:,}", str(dtype).replace("torch.", ""), backend, ms, plain_ms,
                             _harness.ratio(plain_ms / ms, 2), f"{err:.1e}"])
    return _harness.markdown_table(["M", "D", "S", "dtype", "backend", "ms", "plain torch ms", "speed-up",
                                    "max |diff|"], rows)


def report(args) -> str:
    return "\n\n".join([
        f"# segment_mean benchmark ({args.device}): global item representations",
        f"{_harness.machine_line(args.device)}. {_harness.timing_line(args.device)} of {args.repeats} runs; "
        "speed-up = plain torch / backend.",
        bench(args.device, args.quick, args.repeats),
    ]) + "\n"


if __name__ == "__main__":
    sys.exit(_harness.main("segment_mean", __doc__, report, repeats=5))
