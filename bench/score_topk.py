"""Benchmark score_topk against torch (matmul+topk, cdist+topk) and faiss.

    python bench/score_topk.py                       # CPU, the issue's sizes
    python bench/score_topk.py --device cuda         # GPU (adds the 1M-item sizes)
    python bench/score_topk.py --quick               # small sizes (smoke run, writes no file)
    python bench/score_topk.py --device cuda --quick # N=1M, B=1/256/4096 (tools/gpu_check.sh)

Prints a markdown table of medians, speed-ups against the anchors measured in the same run,
and peak extra memory (CPU: peak RSS growth; GPU: max_memory_allocated; GPU rows add the roofline floor of the
GPU in use: its memory bandwidth and its dense rate for the dtype, see FLOORS), and writes it to bench/results/score_topk_<cpu|gpu>_<date>.md
(or --out). CPU: perf_counter medians; GPU: CUDA-event medians from triton.testing.do_bench.
"""
from __future__ import annotations

import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import pyl2d  # noqa: E402
from pyl2d import _backend  # noqa: E402
import _harness  # noqa: E402
from _harness import machine_line, markdown_table, measure  # noqa: E402

CPU_SIZES = [(1, 100_000, 2048), (64, 100_000, 2048), (256, 14_239, 2048), (1024, 14_239, 2048)]
GPU_SIZES = CPU_SIZES + [(1024, 1_000_000, 1024), (4096, 1_000_000, 1024)]
QUICK_SIZES = [(1, 20_000, 256), (64, 20_000, 256), (256, 4_001, 512)]
# The GPU question in one table (issue 24): one catalog of 1M items, from one query
# (memory-bound) through 256 to 4096 (compute-bound).
GPU_QUICK_SIZES = [(1, 1_000_000, 1024), (256, 1_000_000, 1024), (4096, 1_000_000, 1024)]
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Roofline ceilings per GPU: HBM bytes/s, dense 16-bit tensor-core FLOP/s (measured here:
# about 790 TFLOP/s bf16 on both), float32 FMA FLOP/s (the kernels and torch's default fp32
# matmul use exact float32, no TF32). The H200 row serves any other GPU (the column says so).
FLOORS = {"H100": (3.35e12, 790e12, 67e12), "H200": (4.8e12, 790e12, 67e12)}


def floor_gpu(name: str) -> str:
    """The FLOORS row for a device name ("NVIDIA H100 80GB HBM3" -> "H100"); H200 otherwise."""
    return next((key for key in FLOORS if key in name.upper()), "H200")


def torch_matmul_topk(q, x, k, metric, xn):
    """torch's direct path in the input dtype: one matmul, the metric's cheap epilogue, topk."""
    s = q @ x.T
    if metric == "cosine":
        s = s / xn.to(s.dtype)
    elif metric == "l2":  # rank by 2 q.x - |x|^2 (|q|^2 is constant per row)
        s = 2 * s - (xn * xn).to(s.dtype)
    return torch.topk(s, k, dim=1)


def torch_cdist_topk(q, x, k):
    return torch.topk(torch.cdist(q, x), k, dim=1, largest=False)


def faiss_index(x, metric):
    import faiss
    index = faiss.IndexFlatL2(x.shape[1]) if metric == "l2" else faiss.IndexFlatIP(x.shape[1])
    index.add(x.float().numpy())
    return index


def floor_ms(b, n, d, itemsize, k, gpu="H200"):
    """Milliseconds at the roofline: read queries and items once, write k (score, id) pairs,
    at the GPU's bandwidth, or 2 B N D flops at its dense rate for the dtype, whichever is more."""
    bytes_per_s, flops16, flops32 = FLOORS[gpu]
    bytes_moved = (b * d + n * d) * itemsize + b * k * 12
    return 1e3 * max(bytes_moved / bytes_per_s, 2.0 * b * n * d / (flops32 if itemsize == 4 else flops16))


def run(device, sizes, dtypes, metrics, k, repeats, faiss_on):
    rows = []
    gpu = floor_gpu(torch.cuda.get_device_name()) if device == "cuda" else None
    backends = [b for b in _backend.available(torch.device(device), "score_topk") if b != "torch"]
    for (b, n, d) in sizes:
        g = torch.Generator(device=device).manual_seed(0)
        x32 = torch.randn(n, d, generator=g, device=device)
        q32 = torch.randn(b, d, generator=g, device=device)
        for dname in dtypes:
            dtype = DTYPES[dname]
            x = x32.to(device=device, dtype=dtype)
            q = q32.to(device=device, dtype=dtype)
            xn = torch.linalg.vector_norm(x.float(), dim=1)
            for metric in metrics:
                results = {}

                def add(name, fn):
                    try:
                        results[name] = measure(fn, device, repeats)
                    except (RuntimeError, ValueError, TypeError, NotImplementedError) as exc:
                        print(f"  {name} skipped: {str(exc).splitlines()[0][:100]}", file=sys.stderr)

                for backend in backends:
                    add(f"pyl2d[{backend}]", lambda: pyl2d.score_topk(q, x, k, metric, item_norms=xn, backend=backend))
                add("torch matmul+topk", lambda: torch_matmul_topk(q, x, k, metric, xn))
                if metric == "l2":
                    add("torch cdist+topk", lambda: torch_cdist_topk(q, x, k))
                if faiss_on and device == "cpu" and dtype == torch.float32 and metric in ("ip", "l2"):
                    try:
                        index = faiss_index(x, metric)
                        qn = q.cpu().numpy()
                        add("faiss flat", lambda: index.search(qn, k))
                    except ImportError:
                        pass
                anchor = results.get("torch matmul+topk", (None,))[0]
                cdist = results.get("torch cdist+topk", (None,))[0]
                faiss_ms = results.get("faiss flat", (None,))[0]
                torch_best = min(v for v in (anchor, cdist) if v is not None) if (anchor or cdist) else None
                for name, (ms, mem) in results.items():
                    row = [f"{b}x{n}x{d}", dname, metric, name, ms,
                           torch_best / ms if torch_best else None,
                           cdist / ms if cdist else None,
                           faiss_ms / ms if faiss_ms else None, mem]
                    if device == "cuda":
                        fl = floor_ms(b, n, d, x.element_size(), k, gpu)
                        row += [fl, ms / fl]
                    rows.append(row)
                    print(" | ".join(str(round(v, 3)) if isinstance(v, float) else str(v) for v in row), flush=True)
            del x, q
            if device == "cuda":
                torch.cuda.empty_cache()
    header = ["B x N x D", "dtype", "metric", "method", "median ms", "speed-up vs torch best",
              "vs cdist", "vs faiss", "peak extra MiB"]
    if device == "cuda":
        header += [f"{gpu} floor ms", "x floor"]
    return header, rows


def add_args(ap):
    ap.add_argument("--dtypes", default=None, help="comma list of float32,bfloat16,float16")
    ap.add_argument("--metrics", default="ip,l2")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--sizes", default=None, help="e.g. 1x100000x2048,64x100000x2048")
    ap.add_argument("--no-faiss", action="store_true")


def report(args):
    if args.sizes:
        sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    else:
        gpu = args.device == "cuda"
        sizes = (GPU_QUICK_SIZES if gpu else QUICK_SIZES) if args.quick else (GPU_SIZES if gpu else CPU_SIZES)
    dtypes = (args.dtypes or ("bfloat16,float16,float32" if args.device == "cuda" else "float32,bfloat16")).split(",")
    repeats = args.repeats
    t0 = time.time()
    header, rows = run(args.device, sizes, dtypes, args.metrics.split(","), args.k, repeats, not args.no_faiss)
    return (f"# score_topk benchmark ({args.device})\n\n{machine_line(args.device)}; k={args.k}; "
            f"medians of {repeats} runs; command: `python bench/score_topk.py {' '.join(sys.argv[1:])}`; "
            f"took {time.time() - t0:.0f} s.\n\nSpeed-ups are (anchor time / method time), anchors measured in the "
            f"same run; 'torch best' is the faster of torch matmul+topk and cdist+topk in the same dtype.\n\n"
            f"{markdown_table(header, rows)}\n")


if __name__ == "__main__":
    sys.exit(_harness.main("score_topk", __doc__, report, repeats={"cpu": 3, "cuda": 20},
                          add_args=add_args, pin_mmap=True))
