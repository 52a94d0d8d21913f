"""cpu backend for ``score_topk``: the fused C++ kernel (csrc/score_topk_cpu.cpp), which
never materialises the queries x items score matrix.

The dot products come from one of two places, chosen per machine, dtype and batch by
``gemm_path``: pyl2d's own SIMD/AMX kernels, or the vendor GEMM torch links (MKL on x86)
called on item tiles of a few MiB, with the norms, exclusion and selection still fused in
C++. ``PYL2D_CPU_GEMM=own|vendor`` forces one (``auto``, the default, applies the rule).
"""
from __future__ import annotations

import functools
import os

import torch

from pyl2d import _codes, _ext
from pyl2d import _cpu_threads

# Where the vendor GEMM wins on a machine where it is strong (measured on an Intel Xeon with
# AMX, 2 threads, fp32, k=10; bench/notes_cpu.md): from 128 queries at any D, from 64 at
# D <= 256. Below that the own kernels, which stream each item row once for the whole query
# block, were as fast or faster (own vs MKL: 21 vs 24 ms at 64x14239x2048, 4.5 vs 6.7 ms at
# 32x14239x512), while MKL won 1.9 vs 2.8 ms at 64x14239x128 and 13.3 vs 14.5 at 128x14239x512.
VENDOR_MIN_QUERIES = 128
VENDOR_MIN_QUERIES_SMALL_D = 64
VENDOR_SMALL_D = 256
# Bytes of the [B, tile] score block the vendor path fills per item tile.
VENDOR_TILE_BYTES = 16 << 20
GEMM_PATHS = ("auto", "own", "vendor")


@functools.lru_cache(maxsize=None)
def _cpu_vendor() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


@functools.lru_cache(maxsize=None)
def vendor_gemm_wins() -> bool:
    """Whether torch's float32 GEMM beats the own kernels on this machine: MKL on Intel CPUs
    (above the VENDOR_MIN_QUERIES* batches, bench/notes_cpu.md), but not on AMD, where the
    own AVX2 kernels measured 2-10x faster than torch matmul + topk (issue 9's table)."""
    return _cpu_vendor() == "GenuineIntel" and torch.backends.mkl.is_available()


def gemm_path(dtype: torch.dtype, batch: int, dim: int) -> str:
    """"own" or "vendor": where score_topk's dot products come from for this call. Only
    float32 has a vendor path: torch's CPU matmul rounds bf16/fp16 products to the input
    dtype (no float32 output), which would change the ranking."""
    forced = os.environ.get("PYL2D_CPU_GEMM", "auto").strip().lower() or "auto"
    if forced not in GEMM_PATHS:
        raise ValueError(f"PYL2D_CPU_GEMM={forced!r}: expected one of {', '.join(GEMM_PATHS)}")
    if dtype != torch.float32:
        return "own"
    if forced != "auto":
        return forced
    enough = batch >= VENDOR_MIN_QUERIES or (dim <= VENDOR_SMALL_D and batch >= VENDOR_MIN_QUERIES_SMALL_D)
    return "vendor" if enough and vendor_gemm_wins() else "own"


def score_topk(queries: torch.Tensor, items: torch.Tensor, k: int, metric: str = "ip",
               exclude: torch.Tensor | None = None, item_norms: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the C++ kernel on validated CPU tensors; outputs are allocated here."""
    lib = _ext.require()
    b = queries.shape[0]
    scores = torch.empty((b, k), dtype=torch.float32)
    ids = torch.empty((b, k), dtype=torch.int64)
    if exclude is not None:
        exclude = _ext.ensure_inner_contiguous(exclude) if exclude.shape[1] > 0 else None
    queries, items = _ext.ensure_inner_contiguous(queries), _ext.ensure_inner_contiguous(items)
    vendor = {}
    threads = _cpu_threads.cpu_threads()
    if gemm_path(items.dtype, b, items.shape[1]) == "vendor":
        width = max(256, min(items.shape[0], VENDOR_TILE_BYTES // (4 * b)))
        tile = torch.empty((b, width), dtype=torch.float32)

        def gemm(j0: int, nt: int) -> None:
            torch.mm(queries, items[j0:j0 + nt].T, out=tile[:, :nt])
        vendor = {"gemm": gemm, "tile_scores": tile}
    args = dict(queries=queries, items=items, exclude=exclude,
                item_norms=None if item_norms is None else item_norms.contiguous(), out_scores=scores, out_ids=ids,
                k=k, metric=_codes.METRIC_CODES[metric], num_threads=threads, **vendor)
    if vendor:  # torch.mm runs inside: cap torch's threads too
        with _cpu_threads.torch_threads(threads):
            _ext.call(lib.score_topk_cpu, lib.ScoreTopkParams, **args)
    else:
        _ext.call(lib.score_topk_cpu, lib.ScoreTopkParams, **args)
    return scores, ids
