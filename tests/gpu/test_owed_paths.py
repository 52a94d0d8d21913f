"""GPU checks owed by code paths that were written and compiled but never ran on a GPU
(docs/gpu_validation.md keeps the list; tools/gpu_check.sh runs this file first).

Every test also has a CPU case (the cpu backend, or gloo on CPU tensors), so that its own
logic is checked where no GPU is; the CUDA cases are marked ``gpu`` and skip there.
Exact ties are built from small integers (helpers.integer_tie_case), so ids are compared
exactly, and the tied items sit far apart in the catalog, in different item splits of the
CUDA kernel and different programs of the Triton one, so the cross-split merges decide.
"""
import pytest
import torch

import pyl2d
from pyl2d import _backend, _ext, _fallbacks
from helpers import REL_TOL, assert_topk_matches, integer_tie_case, oracle_scores, oracle_topk, randn

gpu = pytest.mark.gpu
# (device, backend) of the search ops: the CPU case checks the test, the others are owed.
SEARCH = [pytest.param("cpu", "cpu", id="cpu-cpu"),
          pytest.param("cuda", "triton", id="cuda-triton", marks=gpu),
          pytest.param("cuda", "cuda", id="cuda-cuda", marks=gpu)]
DTYPES = [torch.float32, torch.bfloat16, torch.float16]
N_FAR = 30_011  # items: enough tiles for several CUDA item splits


def _need(device, backend, op="score_topk"):
    if backend not in _backend.available(torch.device(device), op):
        pytest.skip(f"{backend} backend of {op} unavailable on {device}: "
                    f"{_backend.unavailable_reason(backend, torch.device(device))}")


def _far_items(n, d, seed):
    """n rows far from every query used below (all ties are planted among other rows)."""
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed)) * 0.5 + 40.0


def _spread(n, count):
    """``count`` ids spread over [0, n): the first, the last and evenly between."""
    return torch.linspace(0, n - 1, count).round().to(torch.int64)


# ---- sums-of-squares l2 (kernels/score_topk.cu, row_norms_cuda squared; Triton's norm terms)

@pytest.mark.parametrize("device,backend", SEARCH)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("b", [1, 130], ids=lambda b: f"B{b}")
def test_equal_l2_distances_of_different_items_tie_by_id(device, backend, dtype, b):
    """Two different items at distance sqrt(32) from the query, at the first and last id:
    |x|^2 as a sum of squares makes the two distances equal on every path (a rounded norm
    squared again put one first by an ulp). B=130: the kernel's several query blocks."""
    _need(device, backend)
    q = torch.tensor([[2.0, 1, 2, -2, 0, -1, -1, 2]]).repeat(b, 1)
    pair = torch.tensor([[-1.0, 2, 1, 0, 2, 2, 1, 2], [0.0, -1, 1, -1, 1, -2, 1, -2]])
    x = _far_items(N_FAR, 8, 0)
    first, last = 0, N_FAR - 1
    x[first], x[last] = pair[0], pair[1]
    scores, ids = pyl2d.score_topk(q.to(device, dtype), x.to(device, dtype), 2, "l2", backend=backend)
    assert ids.cpu().tolist() == [[first, last]] * b
    assert torch.all(scores.cpu() == -(32 ** 0.5))


@pytest.mark.parametrize("device,backend", SEARCH)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("metric", ["l2", "ip", "cosine"])
def test_exact_ties_across_the_catalog_go_to_the_lower_id(device, backend, dtype, metric):
    """Duplicated rows and different rows at equal scores, spread over 20k items: the
    float64 oracle orders ties by id, and so must every split merge."""
    _need(device, backend)
    g = torch.Generator().manual_seed(4)
    base, q = integer_tie_case(9, 40, 5, g, metric=metric)
    picks = torch.randint(0, 9, (20_000,), generator=g)
    picks[0], picks[-1] = 1, 0  # the planted different-rows tie, at both ends
    x = base[picks]
    full = oracle_scores(q, x, metric)
    for k in (1, 7, 150):
        scores, ids = pyl2d.score_topk(q.to(device, dtype), x.to(device, dtype), k, metric, backend=backend)
        want_scores, want_ids = oracle_topk(full, k)
        assert torch.equal(ids.cpu(), want_ids), f"{backend} {metric} k={k}: tie order differs"
        torch.testing.assert_close(scores.cpu().double(), want_scores, rtol=1e-6, atol=1e-5)


# ---- -0.0 orders as +0.0 (kernels/common.cuh orderable_bits; Triton's _pack_key)

@pytest.mark.parametrize("device,backend", SEARCH)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_zero_scores_of_either_sign_tie_by_id(device, backend, dtype):
    """l2: a query equal to five items spread over the catalog (distance 0: -sqrt(0) = -0.0
    on one path, +0.0 on another); ip: items of +0.0 and of -0.0 rows, whose dot products
    are zeros of either sign, all others scoring below 0. Either way the zeros tie by id."""
    _need(device, backend)
    g = torch.Generator().manual_seed(5)
    q = torch.randint(1, 3, (3, 16), generator=g).float() * torch.tensor([1.0, -1.0]).repeat(8)
    at = _spread(N_FAR, 5)
    x = _far_items(N_FAR, 16, 1)
    x[at] = q[0]
    scores, ids = pyl2d.score_topk(q[:1].to(device, dtype), x.to(device, dtype), 5, "l2", backend=backend)
    assert ids.cpu().tolist() == [at.tolist()] and torch.all(scores.cpu() == 0)
    x = -q[1].sign() * (1.0 + torch.rand(N_FAR, 16, generator=g))  # every dot product < 0
    x[at] = torch.tensor([0.0, -0.0]).repeat(3)[:5, None].expand(5, 16)
    scores, ids = pyl2d.score_topk(q[1:].to(device, dtype), x.to(device, dtype), 6, "ip", backend=backend)
    assert ids.cpu()[:, :5].tolist() == [at.tolist()] * 2, ids
    assert torch.all(scores.cpu()[:, :5] == 0) and torch.all(scores.cpu()[:, 5] < 0)


# ---- l2 norm terms in bounded chunks (pyl2d/_fallbacks.norm_terms: Triton's item terms,
# the cuda backend's query terms)

@pytest.mark.parametrize("device,backend", SEARCH)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_l2_norm_terms_in_many_chunks(monkeypatch, device, backend, dtype):
    """Chunks of 7 rows that divide neither the items nor the queries: the terms are the
    exact sums of squares, and the search equals the oracle with its ties by id."""
    _need(device, backend)
    d = 24
    monkeypatch.setattr(_fallbacks, "NORM_TERM_CHUNK_ELEMENTS", 7 * d + 5)
    g = torch.Generator().manual_seed(6)
    base, q = integer_tie_case(11, d, 40, g, metric="l2")
    x = base[torch.randint(0, 11, (3001,), generator=g)]
    x_dev = x.to(device, dtype)
    terms = _fallbacks.norm_terms(x_dev, "l2")
    assert torch.equal(terms.cpu(), (x.double() ** 2).sum(1).float())
    full = oracle_scores(q, x, "l2")
    for k in (1, 20, 300):
        scores, ids = pyl2d.score_topk(q.to(device, dtype), x_dev, k, "l2", backend=backend)
        want_scores, want_ids = oracle_topk(full, k)
        assert torch.equal(ids.cpu(), want_ids), f"{backend} k={k}"
        torch.testing.assert_close(scores.cpu().double(), want_scores, rtol=1e-6, atol=1e-5)
    q2, x2 = randn(9, 200, dtype=dtype, generator=g), randn(5000, 200, dtype=dtype, generator=g)
    scores, ids = pyl2d.score_topk(q2.to(device), x2.to(device), 10, "l2", backend=backend)
    assert_topk_matches(scores, ids, oracle_scores(q2, x2, "l2"), 10, rel_tol=REL_TOL[dtype], msg=backend)


# ---- the sharded local_topk's aggregation stage on GPU tensors (pyl2d.distributed._aggregate
# runs the torch version off the CPU) and the NCCL path

@pytest.mark.skipif(_ext.load() is None, reason="pyl2d._C was not built (the CPU kernel is the reference)")
@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=gpu)])
@pytest.mark.parametrize("metric", ["l2", "ip", "cosine"])
def test_aggregation_stage_with_empty_slots_on_the_device_equals_the_cpu_kernel(device, metric):
    from pyl2d import distributed as pd
    from pyl2d.ops.local_topk import _stages, cpu as local_cpu
    from pyl2d.ops.score_topk.cpu import score_topk as cpu_search

    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        b, n_mem, n, d, m, k = 7, 300, 41, 16, 24, 9
        q, memory = torch.randn(b, d, generator=g), torch.randn(n_mem, d, generator=g)
        item_of = torch.randint(0, n - 1, (n_mem,), generator=g)
        reps = pyl2d.segment_mean(memory, item_of, n)[0]
        exclude = torch.randint(-1, n, (b, 3), generator=g)
        nearest = _stages.nearest_memory(q, memory, m, metric, cpu_search)
        cs, ci = _stages.global_candidates(q, item_of, reps, k, m, metric, exclude, cpu_search)
        nearest = nearest.masked_fill(torch.rand(nearest.shape, generator=g) < 0.4, -1)
        want = local_cpu.aggregate(q, memory, item_of, n, nearest, cs, ci, k, metric, exclude)
        # On CPU, _aggregate would run the kernel itself: check the torch version it runs elsewhere.
        stage = pd._aggregate_torch if device == "cpu" else pd._aggregate
        on = [t.to(device) for t in (q, memory, item_of)]
        got = stage(*on, n, nearest.to(device), cs.to(device), ci.to(device), k, metric, exclude.to(device))
        assert got[1].device.type == device
        assert torch.equal(got[1].cpu(), want[1]), f"{metric} seed {seed}"
        torch.testing.assert_close(got[0].cpu(), want[0], rtol=1e-5, atol=1e-5)


@pytest.mark.distributed
@pytest.mark.skipif(_ext.load() is None, reason="pyl2d._C was not built")
@pytest.mark.parametrize("device,backend", [pytest.param("cpu", "gloo", id="cpu-gloo"),
                                            pytest.param("cuda", "gloo", id="cuda-gloo", marks=gpu),
                                            pytest.param("cuda", "nccl", id="cuda-nccl", marks=gpu)])
def test_sharded_ops_on_one_rank_equal_the_one_device_op(device, backend):
    """One rank holding every shard: on one GPU this runs the sharded ops' device paths and,
    with NCCL, its collectives (tests/distributed's two-GPU NCCL test needs two GPUs)."""
    import dist_cases
    from dist_spawn import run_ranks

    if backend == "nccl" and not torch.distributed.is_nccl_available():
        pytest.skip("torch was built without NCCL")
    assert run_ranks(1, dist_cases.nccl_cases, device, backend=backend, timeout=180) == [8]
