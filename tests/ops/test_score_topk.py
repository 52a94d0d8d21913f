"""score_topk on every available backend against the float64 oracle."""
import pytest
import torch
from hypothesis import given, settings, strategies as st

import pyl2d
from helpers import (DTYPES, REL_TOL, assert_topk_matches, backends, integer_tie_case, oracle_scores, oracle_topk,
                     randn)

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
