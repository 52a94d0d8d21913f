"""The cpu backend's selection and parallel split (csrc/topk_select.h, csrc/parallel.h) and
its two GEMM paths (own kernels, vendor GEMM: pyl2d/ops/score_topk/cpu.py).

Rows are long enough that every buffer compacts several times, k reaches the dense
(branchless) regime and N, and the inputs are tie-heavy integers, so ids are compared
exactly with the float64 oracle on every path, thread count and exclusion pattern."""
import pytest
import torch

import pyl2d
from pyl2d import _ext
from pyl2d.ops.score_topk import cpu as score_topk_cpu
from helpers import integer_tie_case, oracle_scores, oracle_topk

pytestmark = pytest.mark.skipif(_ext.load() is None, reason="pyl2d._C was not built")

PATHS = ("own", "vendor")


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _tie_heavy(b, n, d, metric, seed):
    g = torch.Generator().manual_seed(seed)
    base, q = integer_tie_case(23, d, b, g, metric=metric)
    x = base[torch.cat([torch.tensor([0, 1]), torch.randint(0, base.shape[0], (n - 2,), generator=g)])]
    return q, x


def _exclusions(b, n, seed):
    g = torch.Generator().manual_seed(seed)
    ex = torch.randint(-1, n, (b, 40), generator=g)
    ex[0, :] = -1  # one query without exclusions next to ones with them
    return ex


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", (torch.float32, torch.bfloat16), ids=str)
@pytest.mark.parametrize("metric", ("ip", "l2"))
@pytest.mark.parametrize("b", (1, 40, 130))
@pytest.mark.parametrize("with_exclude", (False, True), ids=("no-exclude", "exclude"))
def test_exact_ids_at_large_k(path, dtype, metric, b, with_exclude, monkeypatch, threads):
    n, d = 3001, 24
    monkeypatch.setenv("PYL2D_CPU_GEMM", path)
    q, x = _tie_heavy(b, n, d, metric, seed=b)
    exclude = _exclusions(b, n, seed=7) if with_exclude else None
    full = oracle_scores(q, x, metric)
    if exclude is not None:
        for r in range(b):
            row = exclude[r][exclude[r] >= 0]
            full[r, row] = float("-inf")
    for nthreads in (1, 2):
        torch.set_num_threads(nthreads)
        monkeypatch.setenv("PYL2D_CPU_THREADS", str(nthreads))  # whatever else loads the machine
        for k in (1, 64, 100, 1000, n):
            scores, ids = pyl2d.score_topk(q.to(dtype), x.to(dtype), k, metric, exclude=exclude, backend="cpu")
            want_scores, want_ids = oracle_topk(full, k)
            assert torch.equal(ids, want_ids), f"{path} {nthreads} threads k={k}: ids differ"
            finite = torch.isfinite(want_scores)
            torch.testing.assert_close(scores.double()[finite], want_scores[finite], rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("path", PATHS)
def test_random_scores_agree_across_thread_counts(path, monkeypatch, threads):
    """Random (tie-free) inputs: the same result on 1 and 2 threads, and the oracle's set."""
    monkeypatch.setenv("PYL2D_CPU_GEMM", path)
    g = torch.Generator().manual_seed(3)
    q, x = torch.randn(200, 70, generator=g), torch.randn(5003, 70, generator=g)
    out = {}
    for nthreads in (1, 2):
        torch.set_num_threads(nthreads)
        monkeypatch.setenv("PYL2D_CPU_THREADS", str(nthreads))  # whatever else loads the machine
        out[nthreads] = pyl2d.score_topk(q, x, 700, "l2", backend="cpu")
    assert torch.equal(out[1][1], out[2][1])
    torch.testing.assert_close(out[1][0], out[2][0], rtol=1e-6, atol=1e-5)
    want = oracle_topk(oracle_scores(q, x, "l2"), 700)[0]
    torch.testing.assert_close(out[1][0].double(), want, rtol=1e-5, atol=1e-4)


def test_local_topk_follows_the_path(monkeypatch):
    """local_topk's two searches run on either GEMM path with the same result."""
    g = torch.Generator().manual_seed(5)
    memory, q = torch.randn(4000, 32, generator=g), torch.randn(130, 32, generator=g)
    item_of = torch.randint(0, 300, (4000,), generator=g)
    reps = pyl2d.segment_mean(memory, item_of, 300)[0]
    got = {}
    for path in PATHS:
        monkeypatch.setenv("PYL2D_CPU_GEMM", path)
        got[path] = pyl2d.local_topk(q, memory, item_of, reps, 20, 200, "l2", backend="cpu")
    want = pyl2d.local_topk(q, memory, item_of, reps, 20, 200, "l2", backend="torch")
    for path in PATHS:
        torch.testing.assert_close(got[path][0], want[0], rtol=1e-5, atol=1e-4)
        assert (got[path][1] == want[1]).float().mean() > 0.99, path


def test_gemm_path_rule(monkeypatch):
    monkeypatch.delenv("PYL2D_CPU_GEMM", raising=False)
    for dtype in (torch.bfloat16, torch.float16):  # torch's CPU matmul has no float32 output for them
        assert score_topk_cpu.gemm_path(dtype, 4096, 64) == "own"
    assert score_topk_cpu.gemm_path(torch.float32, 1, 2048) == "own"  # memory-bound: own kernels
    wins = score_topk_cpu.vendor_gemm_wins()
    assert score_topk_cpu.gemm_path(torch.float32, 1024, 2048) == ("vendor" if wins else "own")
    monkeypatch.setenv("PYL2D_CPU_GEMM", "vendor")
    assert score_topk_cpu.gemm_path(torch.float32, 1, 2048) == "vendor"
    assert score_topk_cpu.gemm_path(torch.bfloat16, 1024, 2048) == "own"
    monkeypatch.setenv("PYL2D_CPU_GEMM", "fastest")
    with pytest.raises(ValueError, match="PYL2D_CPU_GEMM"):
        score_topk_cpu.gemm_path(torch.float32, 1024, 2048)


def test_vendor_gemm_errors_propagate(monkeypatch):
    """An exception in the GEMM callback (here: an interrupt-like error) reaches the caller
    as itself, with nothing left running."""
    monkeypatch.setenv("PYL2D_CPU_GEMM", "vendor")
    q, x = torch.randn(200, 16), torch.randn(3000, 16)

    def broken(*args, **kwargs):
        raise KeyboardInterrupt("stop")
    monkeypatch.setattr(score_topk_cpu.torch, "mm", broken)
    with pytest.raises(KeyboardInterrupt, match="stop"):
        score_topk_cpu.score_topk(q, x, 5)
    monkeypatch.undo()
    s, i = pyl2d.score_topk(q, x, 5, backend="cpu")  # still usable afterwards
    assert i.shape == (200, 5)
