"""segment_mean on every available backend against a float64 oracle."""
import pytest
import torch
from hypothesis import given, settings, strategies as st

import pyl2d
from helpers import DTYPES, REL_TOL, backends, randn

CPU_BACKENDS = backends("cpu", op="segment_mean", include_torch=True)
# (M rows, D, S segments): sizes that are multiples of no tile, one row, one segment,
# more segments than rows (many empty), D above one Triton/CUDA column block.
SHAPES = [(1, 1, 1), (37, 19, 5), (53, 7, 200), (300, 130, 97), (129, 257, 3)]


def oracle(values, ids, s):
    v = values.double()
    sums = torch.zeros((s, v.shape[1]), dtype=torch.float64).index_add_(0, ids.long(), v)
    counts = torch.bincount(ids.long(), minlength=s)
    return sums / counts.clamp_min(1)[:, None], counts


def assert_means_match(means, counts, values, ids, s, dtype, msg=""):
    want_means, want_counts = oracle(values.cpu(), ids.cpu(), s)
    assert means.dtype == torch.float32 and counts.dtype == torch.int64, msg
    assert means.shape == (s, values.shape[1]) and counts.shape == (s,), msg
    assert torch.equal(counts.cpu(), want_counts), f"{msg}: counts differ"
    scale = values.abs().max().item() if values.numel() else 1.0
    err = (means.cpu().double() - want_means).abs().max().item() if means.numel() else 0.0
    assert err <= REL_TOL[dtype] * scale + 1e-7, f"{msg}: means differ by {err:.3g}"
    empty = want_counts == 0
    assert torch.all(means.cpu()[empty] == 0), f"{msg}: empty segments must be zero rows"


def make_ids(m, s, g, index_dtype=torch.int64):
    return torch.randint(0, s, (m,), generator=g).to(index_dtype)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "M{}_D{}_S{}".format(*s))
def test_matches_oracle(backend, dtype, shape):
    m, d, s = shape
    g = torch.Generator().manual_seed(m * 1000 + d * 10 + s)
    values = randn(m, d, dtype=dtype, generator=g)
    for index_dtype in (torch.int32, torch.int64):
        ids = make_ids(m, s, g, index_dtype)
        means, counts = pyl2d.segment_mean(values, ids, s, backend=backend)
        assert_means_match(means, counts, values, ids, s, dtype, msg=f"{backend} {index_dtype}")


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_no_rows_gives_zero_means(backend):
    values = torch.empty((0, 6))
    ids = torch.empty((0,), dtype=torch.int64)
    means, counts = pyl2d.segment_mean(values, ids, 4, backend=backend)
    assert torch.equal(means, torch.zeros(4, 6)) and torch.equal(counts, torch.zeros(4, dtype=torch.int64))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_non_contiguous_inputs(backend):
    g = torch.Generator().manual_seed(5)
    big = randn(80, 50, generator=g)
    ids_big = make_ids(160, 9, g)
    cases = [
        (big[::2, 5:30], ids_big[::4]),       # row stride 100, offset; strided ids
        (randn(25, 40, generator=g).T, ids_big[:40]),  # inner stride != 1
    ]
    for values, ids in cases:
        means, counts = pyl2d.segment_mean(values, ids, 9, backend=backend)
        assert_means_match(means, counts, values, ids, 9, torch.float32, msg=backend)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_deterministic(backend):
    g = torch.Generator().manual_seed(6)
    values, ids = randn(400, 33, generator=g), make_ids(400, 7, g)
    first = pyl2d.segment_mean(values, ids, 7, backend=backend)[0]
    assert torch.equal(first, pyl2d.segment_mean(values, ids, 7, backend=backend)[0])


def test_bad_input_names_the_argument():
    values, ids = torch.randn(5, 3), torch.tensor([0, 1, 1, 2, 0])
    with pytest.raises(ValueError, match="values must have 2 dimensions"):
        pyl2d.segment_mean(values[0], ids, 3)
    with pytest.raises(ValueError, match="values must have dtype"):
        pyl2d.segment_mean(values.double(), ids, 3)
    with pytest.raises(ValueError, match="segment_ids must have dtype"):
        pyl2d.segment_mean(values, ids.float(), 3)
    with pytest.raises(ValueError, match="segment_ids has 4 entries but values has 5 rows"):
        pyl2d.segment_mean(values, ids[:4], 3)
    with pytest.raises(ValueError, match=r"segment_ids holds id 2, out of range \[0, 2\)"):
        pyl2d.segment_mean(values, ids, 2)
    with pytest.raises(ValueError, match=r"segment_ids holds id -1"):
        pyl2d.segment_mean(values, torch.tensor([0, -1, 1, 2, 0]), 3)
    with pytest.raises(ValueError, match="num_segments must be an int"):
        pyl2d.segment_mean(values, ids, 3.0)
    with pytest.raises(ValueError, match="num_segments=-1"):
        pyl2d.segment_mean(values, ids, -1)
    bad = values.clone()
    bad[2, 1] = float("inf")
    with pytest.raises(ValueError, match="values contains Inf"):
        pyl2d.segment_mean(bad, ids, 3)
    with pytest.raises(ValueError, match="backend='nope'"):
        pyl2d.segment_mean(values, ids, 3, backend="nope")


@settings(max_examples=30, deadline=None)
@given(m=st.integers(0, 80), d=st.integers(1, 40), s=st.integers(1, 30), dtype=st.sampled_from(DTYPES),
       seed=st.integers(0, 2**31 - 1))
def test_property_random_shapes(m, d, s, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    values, ids = randn(m, d, dtype=dtype, generator=g), make_ids(m, s, g)
    for backend in CPU_BACKENDS:
        means, counts = pyl2d.segment_mean(values, ids, s, backend=backend)
        assert_means_match(means, counts, values, ids, s, dtype, msg=backend)
        assert int(counts.sum()) == m


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_torch_compile_fullgraph(backend):
    g = torch.Generator().manual_seed(7)
    values, ids = randn(30, 12, generator=g), make_ids(30, 6, g)
    fn = torch.compile(lambda v, i: pyl2d.segment_mean(v, i, 6, backend=backend), fullgraph=True)
    means, counts = fn(values, ids)
    assert_means_match(means, counts, values, ids, 6, torch.float32, msg=backend)


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["torch", "triton", "cuda"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES + [(200_003, 1024, 30_011), (5000, 4096, 7)],
                         ids=lambda s: "M{}_D{}_S{}".format(*s))
def test_gpu_matches_oracle(backend, dtype, shape):
    if backend not in backends("cuda", op="segment_mean", include_torch=True):
        pytest.skip(f"{backend} unavailable on cuda")
    m, d, s = shape
    g = torch.Generator().manual_seed(m + d + s)
    values, ids = randn(m, d, dtype=dtype, generator=g), make_ids(m, s, g)
    means, counts = pyl2d.segment_mean(values.cuda(), ids.cuda(), s, backend=backend)
    assert means.is_cuda and counts.is_cuda
    assert_means_match(means, counts, values, ids, s, dtype, msg=backend)
