"""local_topk (L2D local aggregation) on every available backend against a float64 oracle."""
import pytest
import torch
from hypothesis import assume, given, settings, strategies as st

import pyl2d
from helpers import (DTYPES, REL_TOL, assert_topk_matches, backends, integer_tie_case, oracle_scores, oracle_topk,
                     randn)

METRICS = ["l2", "ip", "cosine"]
CPU_BACKENDS = backends("cpu", op="local_topk", include_torch=True)
# (B, M memory entries, N items, D, k, m): B=1, k=1, m=1, k=N with m=M, D above one column
# block, sizes that are multiples of no tile.
SHAPES = [(1, 40, 12, 8, 1, 1), (3, 57, 31, 19, 31, 57), (3, 150, 40, 33, 7, 17), (6, 64, 64, 16, 5, 3),
          (2, 61, 9, 130, 4, 20)]


def _slow_for(backend, b, m):
    """Interpreted Triton runs one program per (query, nearest entry): keep those few."""
    return backend == "triton" and b * m > 60


def local_oracle(q, memory, item_of, reps, m, metric):
    """(float64 [B, N] final scores, -inf for items without memory; the smallest gap between
    the m-th and (m+1)-th best memory scores, which must be clear of rounding)."""
    mem_scores = oracle_scores(q, memory, metric)
    ordered = torch.sort(mem_scores, dim=1, descending=True, stable=True)
    nearest = ordered.indices[:, :m]
    gap = float("inf") if m == memory.shape[0] else (ordered.values[:, m - 1] - ordered.values[:, m]).min().item()
    full = oracle_scores(q, reps, metric)
    item_of = item_of.cpu().long()
    for b in range(q.shape[0]):
        owners = item_of[nearest[b]]
        items, slot = owners.unique(return_inverse=True)
        sums = torch.zeros((items.numel(), memory.shape[1]), dtype=torch.float64)
        sums.index_add_(0, slot, memory[nearest[b]].double())
        local = sums / torch.bincount(slot, minlength=items.numel()).double()[:, None]
        full[b, items] = oracle_scores(q[b:b + 1], local, metric)[0]
    full[:, torch.bincount(item_of, minlength=reps.shape[0]) == 0] = float("-inf")
    return full, gap


def separated(gap, memory, q, metric, dtype):
    """Memory scores are computed in float32 from the rounded inputs whatever their dtype,
    so a gap well above float32 rounding (but far below the dtype's tolerance) suffices."""
    scale = oracle_scores(q, memory, metric).abs().max().item()
    return gap > 1e-4 * scale + 1e-6


def make_case(b, mem, n, d, dtype, seed, *, exclude_cols=5):
    """Random queries and memory (some items own no memory), float32 item means, an exclude
    list with padding and duplicates."""
    g = torch.Generator().manual_seed(seed)
    q = randn(b, d, dtype=dtype, generator=g)
    memory = randn(mem, d, dtype=dtype, generator=g)
    seen = torch.randperm(n, generator=g)[:max(1, n - n // 5)]
    item_of = seen[torch.randint(0, seen.numel(), (mem,), generator=g)]
    reps = pyl2d.segment_mean(memory, item_of, n, backend="torch")[0]
    exclude = torch.randint(-1, n, (b, exclude_cols), generator=g) if exclude_cols else None
    if exclude is not None and exclude_cols >= 2:
        exclude[:, 1] = exclude[:, 0]  # duplicates
    return q, memory, item_of, reps, exclude


def planted_case(b, mem, n, d, dtype, m, metric, seed):
    """Large memories have no clear m-th neighbour by chance: plant m entries next to each
    query (disjoint rows), far closer than every other entry under every metric."""
    q, memory, item_of, reps, exclude = make_case(b, mem, n, d, dtype, seed)
    g = torch.Generator().manual_seed(seed + 1)
    rows = torch.randperm(mem, generator=g)[:b * m].view(b, m)
    planted = q.float()[:, None, :] + 0.05 * torch.randn(b, m, d, generator=g)
    memory[rows.flatten()] = planted.view(b * m, d).to(dtype)
    reps = pyl2d.segment_mean(memory, item_of, n, backend="torch")[0]
    full, gap = local_oracle(q, memory, item_of, reps, m, metric)
    assert separated(gap, memory, q, metric, dtype)
    return (q, memory, item_of, reps, exclude), full


def separated_case(b, mem, n, d, dtype, m, metric, seed, **kw):
    """The first seed from ``seed`` whose m-th nearest memory entry is unambiguous."""
    for attempt in range(50):
        case = make_case(b, mem, n, d, dtype, seed + attempt, **kw)
        full, gap = local_oracle(case[0], case[1], case[2], case[3], m, metric)
        if separated(gap, case[1], case[0], metric, dtype):
            return case, full
    raise AssertionError("no well-separated case found")


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "B{}_M{}_N{}_D{}_k{}_m{}".format(*s))
def test_matches_oracle(backend, dtype, metric, shape):
    b, mem, n, d, k, m = shape
    if _slow_for(backend, b, m) and (dtype != torch.float32 or metric != "l2"):
        pytest.skip("interpreted Triton: the largest shapes run once (float32, l2)")
    (q, memory, item_of, reps, exclude), full = separated_case(b, mem, n, d, dtype, m, metric, sum(shape))
    for ex in (None, exclude):
        scores, ids = pyl2d.local_topk(q, memory, item_of, reps, k, m, metric, ex, backend=backend)
        assert_topk_matches(scores, ids, full, k, exclude=ex, rel_tol=REL_TOL[dtype], msg=backend)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_item_reps_in_the_query_dtype(backend, dtype):
    """item_reps need not be segment means, nor float32."""
    (q, memory, item_of, _, exclude), _ = separated_case(3, 80, 25, 12, dtype, 9, "cosine", 11)
    reps = randn(25, 12, dtype=dtype, generator=torch.Generator().manual_seed(3))
    full, _ = local_oracle(q, memory, item_of, reps, 9, "cosine")
    scores, ids = pyl2d.local_topk(q, memory, item_of, reps, 6, 9, "cosine", exclude, backend=backend)
    assert_topk_matches(scores, ids, full, 6, exclude=exclude, rel_tol=REL_TOL[dtype], msg=backend)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_local_score_replaces_global_both_ways(backend):
    """Item 7 is globally the worst (outside the k + m + E global candidates) but owns the
    nearest memory entry: it must come first. Item 0 is globally the best but its local mean
    is farther: it must be ranked by the local score, below item 1."""
    q = torch.tensor([[1.0, 0, 0, 0]])
    reps = torch.zeros(8, 4)
    reps[0] = q[0]
    for i in range(1, 7):
        reps[i] = q[0] + torch.tensor([0, 0, 0.5 * i, 0])
    reps[7] = torch.tensor([0, 0, 0, 10.0])
    memory = torch.tensor([[1, 0.9, 0, 0], [-4, 0, 0, 0], [1, 0, 0, 0.1], [20, 0, 0, 0]]
                          + [[0, 0, 0, 5.0 + i] for i in range(1, 7)])
    item_of = torch.tensor([0, 0, 7, 7, 1, 2, 3, 4, 5, 6])
    scores, ids = pyl2d.local_topk(q, memory, item_of, reps, 3, 2, "l2", backend=backend)
    assert ids.tolist() == [[7, 1, 0]]
    torch.testing.assert_close(scores, torch.tensor([[-0.1, -0.5, -0.9]]), rtol=0, atol=1e-6)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_items_without_memory_are_never_returned(backend):
    g = torch.Generator().manual_seed(4)
    q, memory, reps = randn(3, 10, generator=g), randn(30, 10, generator=g), randn(12, 10, generator=g)
    item_of = torch.randint(0, 5, (30,), generator=g)  # items 5..11 own nothing
    item_of[:5] = torch.arange(5)
    exclude = torch.tensor([[0, 1, -1], [-1, -1, -1], [4, 4, 3]])
    scores, ids = pyl2d.local_topk(q, memory, item_of, reps, 12, 4, "l2", exclude, backend=backend)
    for row, n_ok in zip(range(3), (3, 5, 3)):
        assert sorted(ids[row, :n_ok].tolist()) == sorted(set(range(5)) - set(exclude[row].tolist()))
        assert (ids[row, n_ok:] == -1).all() and torch.isneginf(scores[row, n_ok:]).all()
        assert torch.isfinite(scores[row, :n_ok]).all()


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("k_m", [(1, 1), (5, 3)], ids=["copy_admissible", "more_candidates"])
def test_both_ways_of_leaving_out_items_without_memory(backend, k_m):
    """5 of 40 items own no memory: more than k + m global candidates (the admissible rows
    are scored alone), or not (k + m + 5 candidates are scored and the 5 blanked)."""
    k, m = k_m
    g = torch.Generator().manual_seed(12)
    q, memory, reps = randn(3, 12, generator=g), randn(90, 12, generator=g), randn(40, 12, generator=g)
    item_of = torch.randperm(40, generator=g)[:35][torch.randint(0, 35, (90,), generator=g)]
    unseen = torch.ones(40, dtype=torch.bool)
    unseen[item_of] = False
    reps[unseen] = q[0] * 3  # would be the best global matches if they were admissible
    full, gap = local_oracle(q, memory, item_of, reps, m, "ip")
    assert separated(gap, memory, q, "ip", torch.float32)
    scores, ids = pyl2d.local_topk(q, memory, item_of, reps, k, m, "ip", backend=backend)
    assert_topk_matches(scores, ids, full, k, msg=backend)
    assert not unseen[ids[ids >= 0]].any()


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("metric", METRICS)
def test_all_memory_gives_the_global_ranking(backend, metric):
    """With m = M every local representation is the item's mean: the global ranking."""
    g = torch.Generator().manual_seed(5)
    q, memory = randn(4, 16, generator=g), randn(70, 16, generator=g)
    item_of = torch.randint(0, 20, (70,), generator=g)
    reps, counts = pyl2d.segment_mean(memory, item_of, 20, backend="torch")
    full = oracle_scores(q, reps, metric)
    full[:, counts == 0] = float("-inf")
    scores, ids = pyl2d.local_topk(q, memory, item_of, reps, 10, 70, metric, backend=backend)
    assert_topk_matches(scores, ids, full, 10, msg=backend)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("metric", METRICS)
def test_ties_go_to_lower_id(backend, dtype, metric):
    """Small-integer vectors (m = 1, so local representations are memory rows) whose ties
    are exact on every code path (integer_tie_case): duplicated rows, and different rows at
    the same ip/l2 score, local against global scores too. A cosine local score and a
    global one come from different formulas on some backends (triton divides by |x|, then
    by |q|), so for cosine memory and item rows come from two groups kept clearly apart."""
    g = torch.Generator().manual_seed(6)
    base, q = integer_tie_case(6, 24, 5, g, metric=metric, groups=[(0, 1, 2), (3, 4, 5)])
    mem_rows, rep_rows = (torch.arange(3), torch.arange(3, 6)) if metric == "cosine" else (torch.arange(6),) * 2
    memory = base[mem_rows[torch.randint(0, len(mem_rows), (60,), generator=g)]]
    reps = base[rep_rows[torch.randint(0, len(rep_rows), (30,), generator=g)]]
    item_of = torch.randint(0, 30, (60,), generator=g)
    full, _ = local_oracle(q, memory, item_of, reps, 1, metric)
    for k in (1, 7, 30):
        scores, ids = pyl2d.local_topk(q.to(dtype), memory.to(dtype), item_of, reps.to(dtype), k, 1, metric,
                                       backend=backend)
        want_scores, want_ids = oracle_topk(full, k)
        assert torch.equal(ids, want_ids), f"{backend} k={k}: tie order differs"
        torch.testing.assert_close(scores.double(), want_scores, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_non_contiguous_inputs(backend):
    g = torch.Generator().manual_seed(7)
    q = randn(8, 60, generator=g)[::2, 5:45]           # row stride 120, offset
    memory = randn(180, 50, generator=g)[::2, :40]      # row stride 100
    item_of = torch.randint(0, 17, (180,), generator=g)[::2]
    reps = randn(40, 17, generator=g).T                 # inner stride != 1
    exclude = torch.randint(-1, 17, (4, 6), generator=g)[:, ::2]
    full, gap = local_oracle(q, memory, item_of, reps, 11, "l2")
    assert separated(gap, memory, q, "l2", torch.float32)
    scores, ids = pyl2d.local_topk(q, memory, item_of, reps, 5, 11, "l2", exclude, backend=backend)
    assert_topk_matches(scores, ids, full, 5, exclude=exclude, msg=backend)


def test_bad_input_names_the_argument():
    g = torch.Generator().manual_seed(8)
    q, memory, reps = randn(2, 6, generator=g), randn(10, 6, generator=g), randn(4, 6, generator=g)
    item_of = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 0, 1])

    def call(**kw):
        args = dict(queries=q, memory=memory, memory_item_ids=item_of, item_reps=reps, k=2, m=3)
        args.update(kw)
        return pyl2d.local_topk(**args)

    cases = [
        (dict(queries=q[0]), "queries must have 2 dimensions"),
        (dict(queries=q[:0]), "queries is empty"),
        (dict(memory=memory[:, :5]), "memory has dimension 5 but the queries have 6"),
        (dict(memory=memory[:0], memory_item_ids=item_of[:0]), "memory is empty"),
        (dict(memory=memory.half()), "memory has dtype float16 but queries has float32"),
        (dict(memory_item_ids=item_of.float()), "memory_item_ids must have dtype"),
        (dict(memory_item_ids=item_of[:9]), "memory_item_ids has 9 entries but memory has 10 rows"),
        (dict(memory_item_ids=item_of + 1), r"memory_item_ids holds id 4, out of range \[0, 4\)"),
        (dict(memory_item_ids=item_of - 1), r"memory_item_ids holds id -1"),
        (dict(item_reps=reps[:, :3]), "item_reps has dimension 3"),
        (dict(item_reps=reps[:0]), "item_reps is empty"),
        (dict(item_reps=reps.double()), "item_reps must have dtype"),
        (dict(k=0), "k=0 is out of range"),
        (dict(k=5), "k=5 is out of range"),
        (dict(k=2.0), "k must be an int"),
        (dict(m=0), "m=0 is out of range: it must be between 1 and the number of memory entries"),
        (dict(m=11), "m=11 is out of range"),
        (dict(metric="dot"), "metric must be one of"),
        (dict(exclude=torch.zeros(3, 2, dtype=torch.int64)), "exclude has 3 rows but there are 2 queries"),
        (dict(exclude=torch.tensor([[0, 4], [1, 1]])), r"exclude holds id 4, out of range \[0, 4\)"),
        (dict(exclude=torch.zeros(2, 2)), "exclude must have dtype"),
        (dict(backend="nope"), "backend='nope'"),
    ]
    for kw, message in cases:
        with pytest.raises(ValueError, match=message):
            call(**kw)
    bad = memory.clone()
    bad[3, 2] = float("nan")
    with pytest.raises(ValueError, match="memory contains NaN"):
        call(memory=bad)
    bad = reps.clone()
    bad[1, 1] = float("inf")
    with pytest.raises(ValueError, match="item_reps contains Inf"):
        call(item_reps=bad)


@settings(max_examples=25, deadline=None)
@given(b=st.integers(1, 4), mem=st.integers(1, 50), n=st.integers(1, 25), d=st.integers(2, 24), data=st.data(),
       metric=st.sampled_from(METRICS), dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**31 - 1))
def test_property_random_shapes(b, mem, n, d, data, metric, dtype, seed):
    k = data.draw(st.integers(1, n))
    m = data.draw(st.integers(1, mem))
    e = data.draw(st.integers(0, 4))
    q, memory, item_of, reps, exclude = make_case(b, mem, n, d, dtype, seed, exclude_cols=e)
    full, gap = local_oracle(q, memory, item_of, reps, m, metric)
    assume(separated(gap, memory, q, metric, dtype))
    for backend in CPU_BACKENDS:
        scores, ids = pyl2d.local_topk(q, memory, item_of, reps, k, m, metric, exclude, backend=backend)
        assert_topk_matches(scores, ids, full, k, exclude=exclude, rel_tol=REL_TOL[dtype], msg=backend)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_torch_compile_fullgraph(backend):
    (q, memory, item_of, reps, exclude), full = separated_case(3, 40, 15, 16, torch.float32, 6, "cosine", 9)
    fn = torch.compile(lambda a, ex: pyl2d.local_topk(a, memory, item_of, reps, 4, 6, "cosine", ex, backend=backend),
                       fullgraph=True)
    scores, ids = fn(q, exclude)
    assert_topk_matches(scores, ids, full, 4, exclude=exclude, msg=backend)


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["torch", "triton", "cuda"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("shape", SHAPES + [(64, 20_011, 3001, 256, 50, 200), (1, 5003, 997, 1024, 20, 1)],
                         ids=lambda s: "B{}_M{}_N{}_D{}_k{}_m{}".format(*s))
def test_gpu_matches_oracle(backend, dtype, metric, shape):
    if backend not in backends("cuda", op="local_topk", include_torch=True):
        pytest.skip(f"{backend} unavailable on cuda")
    b, mem, n, d, k, m = shape
    make = planted_case if mem > 1000 else separated_case
    (q, memory, item_of, reps, exclude), full = make(b, mem, n, d, dtype, m, metric, sum(shape))
    scores, ids = pyl2d.local_topk(q.cuda(), memory.cuda(), item_of.cuda(), reps.cuda(), k, m, metric,
                                   exclude.cuda(), backend=backend)
    assert scores.is_cuda and ids.is_cuda
    assert_topk_matches(scores, ids, full, k, exclude=exclude, rel_tol=REL_TOL[dtype], msg=backend)
