"""The shared NaN/Inf and range scan (pyl2d._checks): chunked, bounded in memory, cached
per tensor version with a documented promise, and safe under threads."""
import re
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
import torch

import pyl2d
from pyl2d import _checks
from helpers import backends, randn

BIG = _checks.CACHE_MIN_NUMEL  # smallest tensor the cache keeps


@pytest.fixture
def small_cache_floor(monkeypatch):
    """Cache tensors of 64+ elements, so op-level tests stay small (triton is interpreted)."""
    monkeypatch.setattr(_checks, "CACHE_MIN_NUMEL", 64)


@pytest.fixture(autouse=True)
def _fresh_cache():
    pyl2d.clear_input_cache()
    yield
    pyl2d.clear_input_cache()


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of 4 KiB, recording every chunk scanned."""
    monkeypatch.setattr(_checks, "SCAN_CHUNK_BYTES", 4096)
    monkeypatch.setattr(_checks, "LOCATE_CHUNK_BYTES", 512)
    seen = []
    chunks = _checks._chunks

    def recording(t, *args, **kwargs):
        for start, chunk in chunks(t, *args, **kwargs):
            seen.append(chunk)
            yield start, chunk

    monkeypatch.setattr(_checks, "_chunks", recording)
    return seen


@pytest.mark.parametrize("layout", ["contiguous", "transposed"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_scan_is_chunked_and_exact(small_chunks, layout, dtype):
    t = randn(300, 70, dtype=dtype, generator=torch.Generator().manual_seed(1))
    if layout == "transposed":
        t = t.t()  # [70, 300], not contiguous: chunked by rows of dim 0
    lo, hi = _checks.value_range("x", t)
    assert (lo, hi) == tuple(float(v) for v in torch.aminmax(t))
    assert len(small_chunks) > 1
    assert all(c.numel() * c.element_size() <= 4096 or c.shape[0] == 1 for c in small_chunks)
    assert all(c.data_ptr() >= t.data_ptr() and c.untyped_storage().data_ptr() == t.untyped_storage().data_ptr()
               for c in small_chunks), "chunks must be views, not copies"


@pytest.mark.parametrize("layout", ["contiguous", "transposed"])
def test_scan_reports_the_first_bad_index_in_a_late_chunk(small_chunks, layout):
    t = torch.ones(300, 70).t() if layout == "transposed" else torch.ones(70, 300)
    t[60, 250] = float("inf")
    t[65, 2] = float("nan")
    with pytest.raises(ValueError, match=r"x contains Inf \(first non-finite value at index \(60, 250\)\)"):
        _checks.finite("x", t)


LAYOUTS = {
    "contiguous": lambda: torch.zeros(40, 30),
    "transposed": lambda: torch.zeros(30, 40).t(),
    "column slice": lambda: torch.zeros(40, 50)[:, 5:35],
    "3-d permuted": lambda: torch.zeros(6, 40, 5).permute(1, 0, 2),
    "row step": lambda: torch.zeros(80, 30)[::2],
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_scan_finds_the_first_bad_value_in_row_major_order(small_chunks, layout):
    g = torch.Generator().manual_seed(3)
    for trial in range(20):
        t = LAYOUTS[layout]()
        flat = torch.randint(0, t.numel(), (3,), generator=g).tolist()
        for f, value in zip(flat, (float("nan"), float("inf"), float("-inf"))):
            t[_checks._unravel(f, tuple(t.shape))] = value
        first = _checks._unravel(min(flat), tuple(t.shape))
        kind = "NaN" if torch.isnan(t[first]) else "Inf"
        with pytest.raises(ValueError, match=re.escape(f"x contains {kind} (first non-finite value at index {first})")):
            _checks.finite("x", t)


def test_scan_extra_memory_is_bounded():
    """First scan of a 400 MB bf16 matrix, and the scan that finds its last element NaN:
    extra peak RSS a fraction of the matrix (the old full-tensor isfinite scan took ~2.4x)."""
    resource = pytest.importorskip("resource")
    if not sys.platform.startswith("linux"):
        pytest.skip("ru_maxrss is in KiB on Linux only")
    code = textwrap.dedent("""
        import resource, torch
        from pyl2d import _checks
        x = torch.empty(200 * 2**20 // 4096, 4096, dtype=torch.bfloat16).fill_(0.5)
        x[-1, -1] = -2.0
        peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        base = peak()
        assert _checks.value_range("items", x) == (-2.0, 0.5)
        ok = peak()
        x[-1, -1] = float("nan")
        try:
            _checks.value_range("items", x)
        except ValueError as exc:
            assert "items contains NaN (first non-finite value at index (51199, 4095))" in str(exc), exc
        print(ok - base, peak() - base)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    ok_mib, failed_mib = (int(v) / 1024 for v in out.stdout.split())
    assert ok_mib < 64, f"the scan of a 400 MB tensor allocated {ok_mib:.0f} MiB extra"
    assert failed_mib < 64, f"locating a NaN in a 400 MB tensor allocated {failed_mib:.0f} MiB extra"


def test_cache_hit_skips_the_scan(monkeypatch):
    x = torch.randn(BIG)
    _checks.finite("x", x)
    monkeypatch.setattr(_checks, "_scan", lambda name, t: pytest.fail("rescanned an unchanged tensor"))
    _checks.finite("x", x)


@pytest.mark.parametrize("backend", backends("cpu", op="score_topk", include_torch=True))
def test_cache_promise_torch_writes_are_seen(backend, small_cache_floor):
    q, x = torch.randn(2, 8), torch.randn(40, 8)
    pyl2d.score_topk(q, x, 3, backend=backend)
    x[5, 1] = float("nan")  # in-place torch write: bumps the version counter
    with pytest.raises(ValueError, match=r"items contains NaN \(first non-finite value at index \(5, 1\)\)"):
        pyl2d.score_topk(q, x, 3, backend=backend)
    x[5, 1] = 0.0
    x.mul_(float("inf"))
    with pytest.raises(ValueError, match="items contains"):
        pyl2d.score_topk(q, x, 3, backend=backend)


@pytest.mark.parametrize("how", ["numpy", "data"])
@pytest.mark.parametrize("backend", backends("cpu", op="score_topk", include_torch=True))
def test_cache_promise_untracked_writes_need_clear_input_cache(how, backend, small_cache_floor):
    """Writes behind torch's back (no version bump) are not seen until the cache is dropped."""
    q, x = torch.randn(2, 8), torch.randn(40, 8)
    pyl2d.score_topk(q, x, 3, backend=backend)
    version = x._version
    if how == "numpy":
        x.numpy()[7, 3] = np.nan
    else:
        x.data[7, 3] = float("nan")
    assert x._version == version  # why the cache cannot see it
    pyl2d.clear_input_cache(x)
    with pytest.raises(ValueError, match=r"items contains NaN \(first non-finite value at index \(7, 3\)\)"):
        pyl2d.score_topk(q, x, 3, backend=backend)
    x.data[7, 3] = 0.0
    pyl2d.clear_input_cache()
    pyl2d.score_topk(q, x, 3, backend=backend)


def test_cache_stays_bounded():
    keep = [torch.randn(BIG) for _ in range(3 * _checks.CACHE_SIZE)]
    for t in keep:
        _checks.finite("x", t)
    assert len(_checks._range_cache) <= _checks.CACHE_SIZE


def test_cache_is_thread_safe():
    """Threads scanning fresh tensors at once (so entries are added and pruned
    concurrently) never see 'dictionary changed size during iteration'."""
    errors = []
    barrier = threading.Barrier(8)

    def hammer(seed):
        base = torch.randn(BIG + 300, generator=torch.Generator().manual_seed(seed))
        alive = []  # live tensors (cheap views) keep the cache full, so every insertion prunes
        barrier.wait()
        try:
            for i in range(300):
                t = base[i:i + BIG]
                alive.append(t)
                _checks.finite("x", t)
                if i % 7 == 0:
                    pyl2d.clear_input_cache(t)
        except Exception as exc:  # noqa: BLE001 -- report any failure from the thread
            errors.append(exc)

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        threads = [threading.Thread(target=hammer, args=(s,)) for s in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old)
    assert not errors, errors[:3]
    assert len(_checks._range_cache) <= _checks.CACHE_SIZE
