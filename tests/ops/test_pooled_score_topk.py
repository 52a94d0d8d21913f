"""pooled_score_topk equals score_topk(pool_hidden(...)) on every available backend."""
import pytest
import torch

import pyl2d
from pyl2d.ops.pool_hidden.reference import pool_hidden as reference_pool
from helpers import (DTYPES, REL_TOL, assert_fully_written, assert_topk_matches, backends, make_mask, needs_cuda_kernels,
                     oracle_scores, randn)

BACKENDS = backends("cpu", op="pooled_score_topk", include_torch=True)
METRICS = ["ip", "cosine", "l2"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("metric", ["ip", "cosine", "l2"])
@pytest.mark.parametrize("mode,normalize", [("last", False), ("last", True), ("mean", False)])
@pytest.mark.parametrize("shape", [(1, 6, 300, 40, 7), (9, 17, 257, 65, 1), (4, 3, 50, 33, 50)],
                         ids=lambda s: "B{}_T{}_N{}_D{}_k{}".format(*s))
def test_matches_pool_then_score(backend, dtype, metric, mode, normalize, shape):
    b, t, n, d, k = shape
    g = torch.Generator().manual_seed(hash((shape, metric, mode)) % 2**31)
    hidden = randn(b, t, d, dtype=dtype, generator=g)
    mask = make_mask(b, t, "left", g)
    items = randn(n, d, dtype=dtype, generator=g)
    exclude = torch.randint(-1, n, (b, 4), generator=g)
    scores, ids = pyl2d.pooled_score_topk(hidden, mask, items, k, metric, mode, normalize, exclude=exclude,
                                          backend=backend)
    # The pooled query may differ by an ulp of the dtype between backends (mean, normalize):
    # compare against the oracle on the reference's pooled query, with that slack.
    pooled = reference_pool(hidden, mask, mode, normalize)
    slack = 0.0 if (mode == "last" and not normalize) else {torch.float32: 1e-5, torch.float16: 2e-3,
                                                             torch.bfloat16: 1.6e-2}[dtype]
    assert_topk_matches(scores, ids, oracle_scores(pooled, items, metric), k, exclude=exclude,
                        rel_tol=REL_TOL[dtype] + slack, msg=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_torch_compile_fullgraph(backend):
    g = torch.Generator().manual_seed(21)
    hidden, mask, items = randn(2, 5, 8, generator=g), make_mask(2, 5, "right", g), randn(30, 8, generator=g)
    fn = torch.compile(lambda h, m, x: pyl2d.pooled_score_topk(h, m, x, 3, "l2", backend=backend), fullgraph=True)
    scores, ids = fn(hidden, mask, items)
    assert_topk_matches(scores, ids, oracle_scores(reference_pool(hidden, mask), items, "l2"), 3, msg=backend)


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["triton", "cuda"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("metric", ["ip", "cosine", "l2"])
def test_gpu_matches_pool_then_score(backend, dtype, metric):
    if backend not in backends("cuda", op="pooled_score_topk"):
        pytest.skip(f"{backend} unavailable on cuda")
    g = torch.Generator().manual_seed(22)
    b, t, n, d, k = 257, 33, 50_003, 1024, 20
    hidden = randn(b, t, d, dtype=dtype, generator=g)
    mask = make_mask(b, t, "left", g)
    items = randn(n, d, dtype=dtype, generator=g)
    scores, ids = pyl2d.pooled_score_topk(hidden.cuda(), mask.cuda(), items.cuda(), k, metric, backend=backend)
    pooled = reference_pool(hidden, mask)
    full = oracle_scores(pooled.cuda().float(), items.cuda().float(), metric).cpu()
    assert_topk_matches(scores, ids, full, k, rel_tol=REL_TOL[dtype], msg=backend)


# ---- cuda backend smoke tests: poisoned kernel buffers (an element a kernel forgets to write
# shows up), awkward shapes, every dtype and metric; need a GPU and PYL2D_CUDA=ON.

@pytest.mark.gpu
@needs_cuda_kernels
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("mode,normalize", [("last", False), ("last", True), ("mean", False)])
def test_cuda_smoke(poisoned, dtype, metric, mode, normalize):
    g = torch.Generator().manual_seed(hash((metric, mode, normalize)) % 2**31)
    b, t, n, d, k = 70, 9, 1009, 1000, 10
    hidden = randn(b, t, d + 8, dtype=dtype, generator=g).cuda()[:, :, 4:4 + d]  # strided, misaligned
    mask = make_mask(b, t, "left" if metric == "ip" else "right", g)
    items = randn(n, d, dtype=dtype, generator=g)
    exclude = torch.randint(-1, n, (b, 5), generator=g)
    scores, ids = pyl2d.pooled_score_topk(hidden, mask.cuda(), items.cuda(), k, metric, mode, normalize,
                                          exclude=exclude.cuda(), backend="cuda")
    assert_fully_written(poisoned)
    pooled = reference_pool(hidden.cpu(), mask, mode, normalize)
    slack = 0.0 if (mode == "last" and not normalize) else {torch.float32: 1e-5, torch.float16: 2e-3,
                                                             torch.bfloat16: 1.6e-2}[dtype]
    assert_topk_matches(scores, ids, oracle_scores(pooled, items, metric), k, exclude=exclude,
                        rel_tol=REL_TOL[dtype] + slack, msg="pooled")
