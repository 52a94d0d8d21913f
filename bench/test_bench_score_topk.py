"""pytest-benchmark view of score_topk on CPU:

    pytest bench/test_bench_score_topk.py --benchmark-enable [--benchmark-json out.json]

Sizes are scaled down unless PYL2D_BENCH_FULL=1 (then the issue's sizes). The table with
ratios and peak memory comes from bench/score_topk.py; this file keeps the same methods
under pytest-benchmark's statistics and comparison tooling."""
import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pyl2d  # noqa: E402
from score_topk import CPU_SIZES, QUICK_SIZES, torch_cdist_topk, torch_matmul_topk  # noqa: E402

SIZES = CPU_SIZES if os.environ.get("PYL2D_BENCH_FULL") == "1" else QUICK_SIZES
K = 10


@pytest.fixture(scope="module", params=SIZES, ids=lambda s: "B{}_N{}_D{}".format(*s))
def data(request):
    b, n, d = request.param
    g = torch.Generator().manual_seed(0)
    x, q = torch.randn(n, d, generator=g), torch.randn(b, d, generator=g)
    return q, x, torch.linalg.vector_norm(x, dim=1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("metric", ["ip", "l2"])
@pytest.mark.parametrize("method", ["pyl2d-cpu", "torch-matmul-topk", "torch-cdist-topk"])
def test_score_topk(benchmark, data, dtype, metric, method):
    q, x, xn = data
    q, x = q.to(dtype), x.to(dtype)
    benchmark.group = f"{tuple(q.shape)}x{tuple(x.shape)} {dtype} {metric}"
    if method == "pyl2d-cpu":
        if "cpu" not in pyl2d.available_backends(torch.device("cpu"), "score_topk"):
            pytest.skip("the cpu backend of score_topk is not available")
        benchmark(pyl2d.score_topk, q, x, K, metric, item_norms=xn, backend="cpu")
    elif method == "torch-matmul-topk":
        benchmark(torch_matmul_topk, q, x, K, metric, xn)
    else:
        if metric != "l2":
            pytest.skip("cdist is an l2 anchor")
        benchmark(torch_cdist_topk, q, x, K)
