"""Smoke test of the cuda backend: every op on small and awkward shapes, every dtype and
metric, against the float64 oracle, with poisoned output buffers so that an element a kernel
forgets to write shows up; plus one 1M x 1024 bfloat16 search. Needs a GPU and pyl2d._C
built with CUDA (PYL2D_CUDA=ON); the chunked fallback is also checked on CPU."""
import time

import pytest
import torch

import pyl2d
from pyl2d import _ext
from pyl2d.ops.score_topk import cuda as cuda_score_topk
from pyl2d.ops.pool_hidden.reference import pool_hidden as reference_pool
from pyl2d.ops.score_topk.reference import score_topk as reference_score_topk, similarity
from helpers import DTYPES, REL_TOL, assert_topk_matches, make_mask, oracle_scores, randn

METRICS = ["ip", "cosine", "l2"]
needs_cuda_kernels = pytest.mark.skipif(
    not (torch.cuda.is_available() and _ext.has_cuda_kernels()),
    reason="needs a CUDA device and pyl2d._C built with PYL2D_CUDA=ON")
pytestmark = [pytest.mark.gpu, needs_cuda_kernels]


@pytest.fixture
def poisoned(monkeypatch):
    """Kernel buffers start as NaN (floats) / -7 (ints); returns the list of buffers made."""
    made = []

    def new_buffer(shape, dtype, device):
        t = torch.full(shape, float("nan") if dtype.is_floating_point else -7, dtype=dtype, device=device)
        made.append(t)
        return t

    monkeypatch.setattr(cuda_score_topk, "new_buffer", new_buffer)
    return made


def assert_fully_written(buffers):
    assert buffers, "no kernel buffer was allocated"
    for t in buffers:
        torch.cuda.synchronize()
        if t.dtype.is_floating_point:
            assert not torch.isnan(t).any(), f"unwritten elements in a {tuple(t.shape)} {t.dtype} buffer"
        else:
            assert not (t == -7).any(), f"unwritten elements in a {tuple(t.shape)} {t.dtype} buffer"


# (B, N, D, k): tails in every tile dimension, odd D (scalar loads), k = 1, k = N, the 64- and
# 128-query block variants (k <= ~120 for 16-bit inputs), k at the kernel's limit (256) and
# above it (fallback), several query blocks.
SHAPES = [(1, 1009, 1000, 10), (7, 1009, 1000, 1), (65, 1009, 2049, 17), (3, 100, 64, 100),
          (130, 3001, 1024, 128), (129, 2000, 40, 256), (5, 257, 64, 257), (200, 131, 72, 33),
          (300, 5000, 256, 100)]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "B{}_N{}_D{}_k{}".format(*s))
@pytest.mark.parametrize("with_exclude", [False, True], ids=["plain", "exclude"])
def test_score_topk(poisoned, dtype, metric, shape, with_exclude):
    b, n, d, k = shape
    g = torch.Generator().manual_seed(hash((shape, metric, with_exclude)) % 2**31)
    q = randn(b, d, dtype=dtype, generator=g)
    x = randn(n, d, dtype=dtype, generator=g, scale=2.0)
    exclude = None
    if with_exclude:
        exclude = torch.randint(-1, n, (b, 9), generator=g)
        exclude[:, 0] = exclude[:, 1]  # duplicates
        exclude[0, :] = -1             # a row with nothing excluded
    scores, ids = pyl2d.score_topk(q.cuda(), x.cuda(), k, metric,
                                   exclude=None if exclude is None else exclude.cuda(), backend="cuda")
    if k <= _ext.require().cuda_score_topk_max_k:
        assert_fully_written(poisoned)
    assert_topk_matches(scores, ids, oracle_scores(q, x, metric), k, exclude=exclude, rel_tol=REL_TOL[dtype],
                        msg=f"cuda {dtype} {metric} {shape}")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("metric", METRICS)
def test_score_topk_strided_inputs_and_norms(poisoned, dtype, metric):
    g = torch.Generator().manual_seed(7)
    b, n, d, k = 70, 777, 203, 20
    q_big = randn(b, d + 5, dtype=dtype, generator=g).cuda()
    q = q_big[:, 3:3 + d]                       # row stride d + 5, misaligned start
    x = randn(d, n, dtype=dtype, generator=g).cuda().T  # column-major: copied by the backend
    norms = torch.linalg.vector_norm(x.float(), dim=1)
    exclude = torch.randint(0, n, (b, 4), generator=g, dtype=torch.int32).cuda()
    scores, ids = pyl2d.score_topk(q, x, k, metric, exclude=exclude, item_norms=norms, backend="cuda")
    assert_fully_written(poisoned)
    assert_topk_matches(scores, ids, oracle_scores(q.cpu(), x.cpu(), metric), k, exclude=exclude,
                        rel_tol=REL_TOL[dtype], msg="strided")


def test_all_items_excluded_gives_empty_slots(poisoned):
    g = torch.Generator().manual_seed(8)
    q, x = randn(3, 40, generator=g).cuda(), randn(12, 40, generator=g).cuda()
    exclude = torch.arange(12).repeat(3, 1)
    exclude[1, 5:] = -1
    scores, ids = pyl2d.score_topk(q, x, 10, "l2", exclude=exclude.cuda(), backend="cuda")
    assert_fully_written(poisoned)
    assert torch.all(ids[0] == -1) and torch.all(torch.isneginf(scores[0]))
    assert_topk_matches(scores, ids, oracle_scores(q.cpu(), x.cpu(), "l2"), 10, exclude=exclude)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("mode,normalize", [("last", False), ("last", True), ("mean", False), ("mean", True)])
@pytest.mark.parametrize("padding", ["left", "right", "gaps"])
@pytest.mark.parametrize("shape", [(1, 1, 8), (5, 17, 1000), (33, 64, 2049)], ids=str)
def test_pool_hidden(poisoned, dtype, mode, normalize, padding, shape):
    b, t, d = shape
    g = torch.Generator().manual_seed(hash((shape, padding)) % 2**31)
    hidden = randn(b, t, d + 1, dtype=dtype, generator=g)[:, :, :d]  # row strides not multiples of 16 bytes
    mask = make_mask(b, t, padding, g)
    hidden_gpu = torch.empty_strided(hidden.shape, hidden.stride(), dtype=dtype, device="cuda")
    hidden_gpu.copy_(hidden)
    got = pyl2d.pool_hidden(hidden_gpu, mask.cuda(), mode, normalize, backend="cuda")
    assert_fully_written(poisoned)
    want = reference_pool(hidden, mask, mode, normalize)
    assert got.dtype == dtype and got.shape == (b, d)
    if mode == "last" and not normalize:
        assert torch.equal(got.cpu(), want)
    else:  # float32 sums in another order: a few float32 ulps, or one ulp of a 16-bit dtype
        tol = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}[dtype]
        torch.testing.assert_close(got.cpu().float(), want.float(), rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("mode,normalize", [("last", False), ("last", True), ("mean", False)])
def test_pooled_score_topk(poisoned, dtype, metric, mode, normalize):
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


def test_launcher_rejects_bad_arguments():
    """The host checks run before any launch (each field: tests/gpu/test_cuda_params.py)."""
    lib = _ext.require()
    fields = dict(q_base=torch.randn(1, 8), q_offsets=torch.zeros(1, dtype=torch.int64), items=torch.randn(10, 8),
                  k=0, tiles_per_split=1, n_splits=1, ws_scores=torch.empty(1, 16),
                  ws_ids=torch.empty(1, 16, dtype=torch.int64))
    with pytest.raises(ValueError, match="k must be"):
        _ext.call(lib.score_topk_stage1_cuda, lib.ScoreTopkStage1Params, **fields)
    with pytest.raises(ValueError, match="dtype"):
        _ext.call(lib.score_topk_stage1_cuda, lib.ScoreTopkStage1Params,
                  **{**fields, "k": 5, "items": torch.zeros(10, 8, dtype=torch.int64)})


def test_one_million_items_bf16(poisoned):
    """B=256, N=1M, D=1024 bfloat16 with exclusions: checked against float32 torch scores on the GPU."""
    b, n, d, k, e = 256, 1 << 20, 1024, 100, 50
    g = torch.Generator(device="cuda").manual_seed(11)
    q = torch.randn(b, d, device="cuda", generator=g).to(torch.bfloat16)
    x = torch.randn(n, d, device="cuda", generator=g).to(torch.bfloat16)
    exclude = torch.randint(-1, n, (b, e), device="cuda", generator=g)
    for metric in ("ip", "l2"):
        poisoned.clear()
        torch.cuda.synchronize()
        start = time.perf_counter()
        scores, ids = pyl2d.score_topk(q, x, k, metric, exclude=exclude, backend="cuda")
        torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
        assert_fully_written(poisoned)
        full = torch.cat([similarity(q, part, metric)
                          for part in x.split(1 << 17)], 1)
        rows = torch.arange(b, device="cuda")[:, None].expand_as(exclude)
        keep = exclude >= 0
        full[rows[keep], exclude[keep]] = float("-inf")
        best = torch.topk(full, k, dim=1).values
        tol = REL_TOL[torch.bfloat16] * best.abs().max().item() + 1e-6
        assert (scores - best).abs().max().item() <= tol
        assert (full.gather(1, ids) - scores).abs().max().item() <= tol
        srt = ids.sort(dim=1).values
        assert torch.all(srt[:, 1:] != srt[:, :-1]) and torch.all(ids >= 0)
        print(f"\n1M x 1024 bf16 B={b} k={k} {metric}: {elapsed * 1e3:.1f} ms (first call, includes setup)")
        del full


def test_chunked_fallback_matches_reference_on_cpu(monkeypatch):
    """The fallback for k above the kernel's limit is plain torch: check it in small chunks."""
    monkeypatch.setattr(cuda_score_topk, "FALLBACK_CHUNK_BYTES", 20 * 6 * 150)  # 150 items per chunk
    g = torch.Generator().manual_seed(12)
    q, x = randn(6, 33, generator=g), randn(1000, 33, generator=g)
    exclude = torch.randint(-1, 1000, (6, 30), generator=g)
    exclude[2] = torch.arange(30)
    for metric in METRICS:
        for k in (1, 129, 400, 1000):
            scores, ids = cuda_score_topk.chunked_topk(q, x, k, metric, exclude, None)
            want_s, want_i = reference_score_topk(q, x, k, metric, exclude)
            torch.testing.assert_close(scores, want_s, rtol=1e-5, atol=1e-5)
            assert torch.equal(ids, want_i)
