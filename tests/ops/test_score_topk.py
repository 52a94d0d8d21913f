"""score_topk on every available backend against the float64 oracle."""
import time

import pytest
import torch
from hypothesis import given, settings, strategies as st

import pyl2d
from pyl2d import _ext
from pyl2d.ops.score_topk import cuda as cuda_score_topk
from pyl2d.ops.score_topk.reference import score_topk as reference_score_topk, similarity
from helpers import (DTYPES, REL_TOL, assert_fully_written, assert_topk_matches, backends, integer_tie_case,
                     needs_cuda_kernels, oracle_scores, oracle_topk, randn)

METRICS = ["ip", "cosine", "l2"]
CPU_BACKENDS = backends("cpu", op="score_topk", include_torch=True)
# (B, N, D, k): sizes that are multiples of no tile, B=1, k=1, k=N.
SHAPES = [(1, 1009, 1000, 10), (7, 1009, 1000, 1), (5, 257, 64, 257), (33, 130, 96, 5), (2, 97, 2049, 17)]


def _slow_for(backend, n, d):
    return backend == "triton" and n * d > 600_000


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "B{}_N{}_D{}_k{}".format(*s))
def test_matches_oracle(backend, dtype, metric, shape):
    b, n, d, k = shape
    if _slow_for(backend, n, d) and (dtype != torch.float32 or metric != "l2"):
        pytest.skip("interpreted Triton: the largest shape runs once (float32, l2)")
    g = torch.Generator().manual_seed(hash((b, n, d, k, metric)) % 2**31)
    q = randn(b, d, dtype=dtype, generator=g)
    x = randn(n, d, dtype=dtype, generator=g)
    scores, ids = pyl2d.score_topk(q, x, k, metric, backend=backend)
    assert_topk_matches(scores, ids, oracle_scores(q, x, metric), k, rel_tol=REL_TOL[dtype], msg=backend)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("metric", METRICS)
def test_item_norms_given(backend, metric):
    g = torch.Generator().manual_seed(1)
    q, x = randn(4, 33, generator=g), randn(301, 33, generator=g, scale=3.0)
    norms = torch.linalg.vector_norm(x, dim=1)
    scores, ids = pyl2d.score_topk(q, x, 9, metric, item_norms=norms, backend=backend)
    assert_topk_matches(scores, ids, oracle_scores(q, x, metric), 9, msg=backend)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("index_dtype", [torch.int32, torch.int64], ids=str)
def test_exclude_with_padding_and_duplicates(backend, index_dtype):
    g = torch.Generator().manual_seed(2)
    b, n, d, k = 6, 40, 24, 8
    q, x = randn(b, d, generator=g), randn(n, d, generator=g)
    exclude = torch.randint(0, n, (b, 12), generator=g)
    exclude[:, 8:] = -1                    # padding
    exclude[1, 3] = exclude[1, 2]          # duplicate
    exclude[2] = -1                        # nothing excluded
    exclude[3, :] = torch.arange(12)       # excludes the first 12 ids
    for metric in METRICS:
        scores, ids = pyl2d.score_topk(q, x, k, metric, exclude=exclude.to(index_dtype), backend=backend)
        assert_topk_matches(scores, ids, oracle_scores(q, x, metric), k, exclude=exclude, msg=backend)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_fewer_admissible_than_k_gives_neg_inf_tail(backend):
    g = torch.Generator().manual_seed(3)
    n = 10
    q, x = randn(2, 16, generator=g), randn(n, 16, generator=g)
    exclude = torch.tensor([list(range(7)), [-1] * 7])  # row 0 keeps 3 items
    scores, ids = pyl2d.score_topk(q, x, n, "ip", exclude=exclude, backend=backend)
    assert torch.isfinite(scores[0, :3]).all() and torch.isneginf(scores[0, 3:]).all()
    assert (ids[0, 3:] == -1).all() and sorted(ids[0, :3].tolist()) == [7, 8, 9]
    assert (ids[1] >= 0).all()


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("metric", METRICS)
def test_ties_go_to_lower_id(backend, dtype, metric):
    """Duplicated items, and different items at the same score, tie exactly on every code
    path (integer_tie_case); the float64 oracle orders them by id."""
    g = torch.Generator().manual_seed(4)
    base, q = integer_tie_case(9, 40, 5, g, metric=metric)
    x = base[torch.cat([torch.tensor([0, 1]), torch.randint(0, 9, (148,), generator=g)])]
    full = oracle_scores(q, x, metric)
    for k in (1, 7, 37, 150):
        scores, ids = pyl2d.score_topk(q.to(dtype), x.to(dtype), k, metric, backend=backend)
        want_scores, want_ids = oracle_topk(full, k)
        assert torch.equal(ids, want_ids), f"{backend} k={k}: tie order differs"
        torch.testing.assert_close(scores.double(), want_scores, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_equal_l2_distances_of_different_items_tie_exactly(backend):
    """Two different items at distance sqrt(32) from the query. Squaring a rounded norm
    again (the reference's old formula) put item 1 first by one ulp; sums of squares make
    the two distances equal, so the tie goes to the lower id on every path."""
    q = torch.tensor([[2.0, 1, 2, -2, 0, -1, -1, 2]])
    x = torch.tensor([[-1.0, 2, 1, 0, 2, 2, 1, 2], [0.0, -1, 1, -1, 1, -2, 1, -2]])
    scores, ids = pyl2d.score_topk(q, x, 2, "l2", backend=backend)
    assert ids.tolist() == [[0, 1]] and scores[0, 0] == scores[0, 1] == -(32 ** 0.5)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_non_contiguous_inputs(backend):
    g = torch.Generator().manual_seed(5)
    big_q = randn(10, 70, generator=g)
    big_x = randn(300, 90, generator=g)
    q = big_q[::2, 3:53]                    # row stride 140, offset
    x = big_x[::3, :50]                     # row stride 270
    xt = randn(50, 100, generator=g).T      # inner stride != 1
    for items in (x, xt):
        scores, ids = pyl2d.score_topk(q, items, 6, "l2", backend=backend)
        assert_topk_matches(scores, ids, oracle_scores(q, items, "l2"), 6, msg=backend)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_reused_items_are_not_rescanned_wrongly(backend):
    """The finite-check cache must notice in-place edits of the item matrix."""
    g = torch.Generator().manual_seed(6)
    q, x = randn(2, 8, generator=g), randn(70_000, 1, generator=g).expand(70_000, 8).contiguous()
    pyl2d.score_topk(q, x, 3, backend=backend)
    x[5, 2] = float("nan")
    with pytest.raises(ValueError, match="items contains NaN"):
        pyl2d.score_topk(q, x, 3, backend=backend)


@settings(max_examples=30, deadline=None)
@given(b=st.integers(1, 6), n=st.integers(1, 90), d=st.integers(1, 40), data=st.data(),
       metric=st.sampled_from(METRICS), dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**31 - 1))
def test_property_random_shapes(b, n, d, data, metric, dtype, seed):
    k = data.draw(st.integers(1, n))
    e = data.draw(st.integers(0, 5))
    g = torch.Generator().manual_seed(seed)
    q, x = randn(b, d, dtype=dtype, generator=g), randn(n, d, dtype=dtype, generator=g)
    exclude = torch.randint(-1, n, (b, e), generator=g) if e else None
    full = oracle_scores(q, x, metric)
    for backend in CPU_BACKENDS:
        scores, ids = pyl2d.score_topk(q, x, k, metric, exclude=exclude, backend=backend)
        assert_topk_matches(scores, ids, full, k, exclude=exclude, rel_tol=REL_TOL[dtype], msg=backend)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_torch_compile_fullgraph(backend):
    g = torch.Generator().manual_seed(7)
    q, x = randn(3, 16, generator=g), randn(50, 16, generator=g)
    fn = torch.compile(lambda a, b: pyl2d.score_topk(a, b, 4, "cosine", backend=backend), fullgraph=True)
    scores, ids = fn(q, x)
    assert_topk_matches(scores, ids, oracle_scores(q, x, "cosine"), 4, msg=backend)


GPU_CASES = ([(s, dt, m) for s in SHAPES for dt in DTYPES for m in METRICS]
             + [(s, dt, m) for s in [(300, 20_011, 1024, 100), (1, 70_001, 2048, 1)]
                for dt in (torch.bfloat16, torch.float32) for m in ("ip", "l2")])


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["triton", "cuda"])
@pytest.mark.parametrize("shape,dtype,metric", GPU_CASES,
                         ids=lambda v: "B{}_N{}_D{}_k{}".format(*v) if isinstance(v, tuple) else str(v))
def test_gpu_matches_oracle(backend, shape, dtype, metric):
    if backend not in backends("cuda", op="score_topk"):
        pytest.skip(f"{backend} unavailable on cuda")
    b, n, d, k = shape
    g = torch.Generator().manual_seed(hash((b, n, d, k, metric)) % 2**31)
    q = randn(b, d, dtype=dtype, generator=g)
    x = randn(n, d, dtype=dtype, generator=g)
    exclude = torch.randint(-1, n, (b, 9), generator=g)
    scores, ids = pyl2d.score_topk(q.cuda(), x.cuda(), k, metric, exclude=exclude.cuda(), backend=backend)
    full = oracle_scores(q.cuda().float(), x.cuda().float(), metric) if n * b > 5e6 else oracle_scores(q, x, metric)
    assert_topk_matches(scores, ids, full.cpu(), k, exclude=exclude, rel_tol=REL_TOL[dtype], msg=backend)


# ---- cuda backend smoke tests: poisoned kernel buffers (an element a kernel forgets to write
# shows up), awkward shapes, every dtype and metric; need a GPU and PYL2D_CUDA=ON.
# (B, N, D, k): tails in every tile dimension, odd D (scalar loads), k = 1, k = N, the 64- and
# 128-query block variants (k <= ~120 for 16-bit inputs), k at the kernel's limit (256) and
# above it (fallback), several query blocks.
CUDA_SHAPES = [(1, 1009, 1000, 10), (7, 1009, 1000, 1), (65, 1009, 2049, 17), (3, 100, 64, 100),
          (130, 3001, 1024, 128), (129, 2000, 40, 256), (5, 257, 64, 257), (200, 131, 72, 33),
          (300, 5000, 256, 100)]


@pytest.mark.gpu
@needs_cuda_kernels
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("shape", CUDA_SHAPES, ids=lambda s: "B{}_N{}_D{}_k{}".format(*s))
@pytest.mark.parametrize("with_exclude", [False, True], ids=["plain", "exclude"])
def test_cuda_smoke(poisoned, dtype, metric, shape, with_exclude):
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


@pytest.mark.gpu
@needs_cuda_kernels
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("metric", METRICS)
def test_cuda_strided_inputs_and_norms(poisoned, dtype, metric):
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


@pytest.mark.gpu
@needs_cuda_kernels
def test_cuda_all_items_excluded_gives_empty_slots(poisoned):
    g = torch.Generator().manual_seed(8)
    q, x = randn(3, 40, generator=g).cuda(), randn(12, 40, generator=g).cuda()
    exclude = torch.arange(12).repeat(3, 1)
    exclude[1, 5:] = -1
    scores, ids = pyl2d.score_topk(q, x, 10, "l2", exclude=exclude.cuda(), backend="cuda")
    assert_fully_written(poisoned)
    assert torch.all(ids[0] == -1) and torch.all(torch.isneginf(scores[0]))
    assert_topk_matches(scores, ids, oracle_scores(q.cpu(), x.cpu(), "l2"), 10, exclude=exclude)


@pytest.mark.gpu
@needs_cuda_kernels
def test_cuda_launcher_rejects_bad_arguments():
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


@pytest.mark.gpu
@needs_cuda_kernels
def test_cuda_one_million_items_bf16(poisoned):
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


@pytest.mark.gpu
@needs_cuda_kernels
def test_cuda_chunked_fallback_matches_reference(monkeypatch):
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


def test_candidate_merges_tie_minus_zero_with_plus_zero_by_id():
    """An l2 distance of 0 comes out -0.0 on one path and +0.0 on another; merging their
    candidate lists (interpolation, sharded search) must still put the lower id first."""
    from pyl2d._topk import merge_candidates

    scores = torch.tensor([[-0.0, 0.0, -1.0], [0.0, -0.0, -1.0]])
    ids = torch.tensor([[5, 2, 0], [2, 5, 0]])
    _, merged = merge_candidates(scores, ids, 3)
    assert merged.tolist() == [[2, 5, 0], [2, 5, 0]]


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_a_query_at_distance_zero_from_two_items_ties_by_id(backend):
    q = torch.tensor([[1.0, -2.0, 0.5, 3.0]])
    x = torch.cat([torch.randn(3, 4, generator=torch.Generator().manual_seed(0)) + 9, q, q])  # ids 3 and 4 equal q
    scores, ids = pyl2d.score_topk(q, x.flip(0), 2, "l2", backend=backend)  # now ids 0 and 1 equal q
    assert ids.tolist() == [[0, 1]] and scores.abs().max() == 0
