"""pool_hidden on every available backend against the reference."""
import pytest
import torch
from hypothesis import given, settings, strategies as st

import pyl2d
from pyl2d.ops.pool_hidden.reference import pool_hidden as reference_pool
from helpers import DTYPES, assert_fully_written, backends, make_mask, needs_cuda_kernels, randn

BACKENDS = backends("cpu", op="pool_hidden", include_torch=True)
# Output is rounded to the hidden dtype; backends may sum in another order, so allow ~1 ulp.
POOL_TOL = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.float16: dict(rtol=2e-3, atol=2e-3),
            torch.bfloat16: dict(rtol=1.6e-2, atol=1.6e-2)}




@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("mode", ["last", "mean"])
@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("padding", ["left", "right", "gaps"])
@pytest.mark.parametrize("shape", [(1, 1, 7), (5, 13, 100), (3, 37, 1000)], ids=lambda s: "B{}_T{}_D{}".format(*s))
def test_matches_reference(backend, dtype, mode, normalize, padding, shape):
    b, t, d = shape
    g = torch.Generator().manual_seed(hash((shape, padding, mode)) % 2**31)
    hidden = randn(b, t, d, dtype=dtype, generator=g)
    mask = make_mask(b, t, padding, g)
    out = pyl2d.pool_hidden(hidden, mask, mode, normalize, backend=backend)
    ref = reference_pool(hidden, mask, mode, normalize)
    assert out.dtype == dtype and out.shape == (b, d)
    torch.testing.assert_close(out.float(), ref.float(), **POOL_TOL[dtype])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mask_dtype", [torch.bool, torch.int32, torch.int64, torch.uint8, torch.float32], ids=str)
def test_mask_dtypes_and_last_is_exact(backend, mask_dtype):
    g = torch.Generator().manual_seed(11)
    hidden = randn(4, 9, 33, generator=g)
    mask = make_mask(4, 9, "left", g).to(mask_dtype)
    out = pyl2d.pool_hidden(hidden, mask, "last", backend=backend)
    idx = [int((mask[i] != 0).nonzero().max()) for i in range(4)]
    assert torch.equal(out, torch.stack([hidden[i, j] for i, j in enumerate(idx)]))


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_contiguous_hidden(backend):
    g = torch.Generator().manual_seed(12)
    big = randn(6, 20, 50, generator=g)
    hidden = big[::2, 1:15, 5:45]
    mask = make_mask(3, 14, "right", g)
    for mode in ("last", "mean"):
        out = pyl2d.pool_hidden(hidden, mask, mode, backend=backend)
        torch.testing.assert_close(out, reference_pool(hidden, mask, mode), rtol=1e-5, atol=1e-5)
    transposed = randn(3, 40, 14, generator=g).transpose(1, 2)
    out = pyl2d.pool_hidden(transposed, mask, "mean", backend=backend)
    torch.testing.assert_close(out, reference_pool(transposed, mask, "mean"), rtol=1e-5, atol=1e-5)


@settings(max_examples=30, deadline=None)
@given(b=st.integers(1, 5), t=st.integers(1, 20), d=st.integers(1, 70), mode=st.sampled_from(["last", "mean"]),
       normalize=st.booleans(), dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**31 - 1),
       padding=st.sampled_from(["left", "right", "gaps"]))
def test_property(b, t, d, mode, normalize, dtype, seed, padding):
    g = torch.Generator().manual_seed(seed)
    hidden = randn(b, t, d, dtype=dtype, generator=g)
    mask = make_mask(b, t, padding, g)
    ref = reference_pool(hidden, mask, mode, normalize)
    for backend in BACKENDS:
        out = pyl2d.pool_hidden(hidden, mask, mode, normalize, backend=backend)
        torch.testing.assert_close(out.float(), ref.float(), **POOL_TOL[dtype])


@pytest.mark.parametrize("backend", BACKENDS)
def test_torch_compile_fullgraph(backend):
    g = torch.Generator().manual_seed(13)
    hidden, mask = randn(3, 5, 8, generator=g), make_mask(3, 5, "left", g)
    fn = torch.compile(lambda h, m: pyl2d.pool_hidden(h, m, "mean", True, backend=backend), fullgraph=True)
    torch.testing.assert_close(fn(hidden, mask), reference_pool(hidden, mask, "mean", True), rtol=1e-5, atol=1e-5)


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["triton", "cuda"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("mode", ["last", "mean"])
def test_gpu_matches_reference(backend, dtype, mode):
    if backend not in backends("cuda", op="pool_hidden"):
        pytest.skip(f"{backend} unavailable on cuda")
    g = torch.Generator().manual_seed(14)
    for b, t, d in [(1, 1, 7), (33, 129, 1000), (64, 512, 2049)]:
        hidden = randn(b, t, d, dtype=dtype, generator=g)
        mask = make_mask(b, t, "gaps", g)
        for normalize in (False, True):
            out = pyl2d.pool_hidden(hidden.cuda(), mask.cuda(), mode, normalize, backend=backend)
            ref = reference_pool(hidden, mask, mode, normalize)
            torch.testing.assert_close(out.cpu().float(), ref.float(), **POOL_TOL[dtype])


# ---- cuda backend smoke tests: poisoned kernel buffers (an element a kernel forgets to write
# shows up), awkward shapes, every dtype and metric; need a GPU and PYL2D_CUDA=ON.

@pytest.mark.gpu
@needs_cuda_kernels
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("mode,normalize", [("last", False), ("last", True), ("mean", False), ("mean", True)])
@pytest.mark.parametrize("padding", ["left", "right", "gaps"])
@pytest.mark.parametrize("shape", [(1, 1, 8), (5, 17, 1000), (33, 64, 2049)], ids=str)
def test_cuda_smoke(poisoned, dtype, mode, normalize, padding, shape):
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
