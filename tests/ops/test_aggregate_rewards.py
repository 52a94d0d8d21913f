"""aggregate_rewards on every backend against the torch reference and a float64 per-row oracle."""
import math

import pytest
import torch
from hypothesis import given, settings, strategies as st

from pyl2d.ops.aggregate_rewards import aggregate_rewards
from helpers import DTYPES, backends

# NaN is data here: the Triton interpreter (numpy) warns on NaN arithmetic.
pytestmark = [pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning"),
              pytest.mark.filterwarnings("ignore:divide by zero encountered:RuntimeWarning")]
BACKENDS = backends("cpu", op="aggregate_rewards")
MODES = ["mean", "harmonic", "geometric"]
SHAPES = [(1, 1), (1, 4), (7, 3), (33, 4), (130, 5)]


def random_scores(b, p, *, dtype=torch.float32, nan_frac=0.2, seed=0, low=1.0, high=5.0):
    g = torch.Generator().manual_seed(seed)
    s = low + (high - low) * torch.rand(b, p, generator=g)
    s[torch.rand(b, p, generator=g) < nan_frac] = float("nan")
    if b > 2:
        s[1] = float("nan")  # a row with no valid score
    return s.to(dtype)


def oracle(scores, weights=None, mode="mean", score_max=5.0, bystander=None, bystander_coef=0.0, lengths=None,
           length_limit=None, length_coef=0.0):
    """One row at a time in float64, straight from the definition."""
    out = []
    for i, row in enumerate(scores.double().tolist()):
        pairs = [(s / score_max, 1.0 if weights is None else float(weights[j])) for j, s in enumerate(row)]
        pairs = [(x, w) for x, w in pairs if not math.isnan(x) and w > 0]
        wsum = sum(w for _, w in pairs)
        if not pairs:
            r = math.nan
        elif mode == "mean":
            r = sum(w * x for x, w in pairs) / wsum
        elif mode == "harmonic":
            r = 0.0 if any(x == 0 for x, _ in pairs) else wsum / sum(w / x for x, w in pairs)
        else:
            r = 0.0 if any(x == 0 for x, _ in pairs) else math.exp(sum(w * math.log(x) for x, w in pairs) / wsum)
        if bystander is not None:
            r += bystander_coef * (float(bystander[i]) / 100 - 1)
        if lengths is not None:
            r -= length_coef * max(0.0, float(lengths[i]) - length_limit)
        out.append(r)
    return torch.tensor(out, dtype=torch.float64)


def assert_close(got, want, tol=2e-6):
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), want.double(), rtol=tol, atol=tol, equal_nan=True)


@pytest.mark.parametrize("backend", ["torch"] + BACKENDS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "B{}_P{}".format(*s))
def test_matches_oracle(backend, mode, shape):
    b, p = shape
    s = random_scores(b, p, seed=b * 10 + p)
    w = torch.rand(p, generator=torch.Generator().manual_seed(p)) + 0.1
    assert_close(aggregate_rewards(s, w, mode, backend=backend), oracle(s, w, mode))
    assert_close(aggregate_rewards(s, mode=mode, backend=backend), oracle(s, mode=mode))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("mode", MODES)
def test_backends_match_reference_every_dtype(backend, dtype, mode):
    s = random_scores(37, 4, dtype=dtype, seed=3)
    g = torch.Generator().manual_seed(4)
    by = (torch.rand(37, generator=g) * 100).to(dtype)
    by[5] = float("nan")
    lengths = torch.randint(0, 300, (37,), generator=g)
    args = (torch.tensor([1.0, 2.0, 0.0, 0.5], dtype=dtype), mode, 5.0, by, 0.3, lengths, 200.0, 0.01)
    for policy in ("drop", "void"):
        want = aggregate_rewards(s, *args, missing_terms=policy, backend="torch")
        assert_close(aggregate_rewards(s, *args, missing_terms=policy, backend=backend), want)
        assert math.isnan(want[1]) and math.isnan(want[5]) == (policy == "void")


@pytest.mark.parametrize("backend", ["torch"] + BACKENDS)
def test_a_missing_bystander_or_length_drops_out_of_its_row(backend):
    """The PERM code's semantics (each term its own TRL reward function, summed with nansum):
    a NaN bystander score or length removes only its own term; "void" keeps the strict form."""
    nan = float("nan")
    s = torch.tensor([[0.8, 0.6, nan], [0.8, 0.6, 0.4]])
    alone = aggregate_rewards(s, score_max=1.0, backend=backend)
    got = aggregate_rewards(s, score_max=1.0, bystander=torch.tensor([nan, 50.0]), bystander_coef=0.5,
                            lengths=torch.tensor([nan, 30.0]), length_limit=20, length_coef=0.01, backend=backend)
    assert got[0].item() == pytest.approx(alone[0].item())
    assert got[1].item() == pytest.approx(alone[1].item() - 0.25 - 0.1)
    strict = aggregate_rewards(s, score_max=1.0, bystander=torch.tensor([nan, 50.0]), bystander_coef=0.5,
                               missing_terms="void", backend=backend)
    assert math.isnan(strict[0].item()) and strict[1].item() == pytest.approx(got[1].item() + 0.1)
    no_length = aggregate_rewards(s, score_max=1.0, lengths=torch.tensor([nan, 10.0]), length_limit=20,
                                  length_coef=0.01, missing_terms="void", backend=backend)
    assert math.isnan(no_length[0].item()) and no_length[1].item() == pytest.approx(alone[1].item())
    with pytest.raises(ValueError, match="missing_terms"):
        aggregate_rewards(s, missing_terms="ignore", backend=backend)


@pytest.mark.parametrize("backend", ["torch"] + BACKENDS)
def test_terms_and_nan_semantics(backend):
    s = torch.tensor([[5.0, 5.0, float("nan")], [float("nan")] * 3, [1.0, 0.0, 4.0]])
    out = aggregate_rewards(s, bystander=torch.tensor([50.0, 100.0, 100.0]), bystander_coef=0.2,
                            lengths=torch.tensor([10, 10, 30]), length_limit=20, length_coef=0.01, backend=backend)
    assert out[0].item() == pytest.approx(1.0 - 0.1)
    assert math.isnan(out[1].item())
    assert out[2].item() == pytest.approx(1.0 / 3 - 0.1)
    # Zero scores: harmonic and geometric means are 0, not NaN.
    assert aggregate_rewards(s[2:], mode="harmonic", backend=backend).item() == 0.0
    assert aggregate_rewards(s[2:], mode="geometric", backend=backend).item() == 0.0
    # A perspective with weight 0 does not count, so a row whose only valid score has weight 0 is NaN.
    only = torch.tensor([[float("nan"), 3.0]])
    assert math.isnan(aggregate_rewards(only, torch.tensor([1.0, 0.0]), backend=backend).item())


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_contiguous(backend):
    big = random_scores(40, 9, seed=7)
    s = big[::3, 1:5]
    assert not s.is_contiguous()
    assert_close(aggregate_rewards(s, backend=backend), oracle(s))
    t = random_scores(6, 20, seed=8).T  # column stride != 1
    assert_close(aggregate_rewards(t, mode="geometric", backend=backend), oracle(t, mode="geometric"))


@settings(max_examples=25, deadline=None)
@given(b=st.integers(1, 24), p=st.integers(1, 6), mode=st.sampled_from(MODES), seed=st.integers(0, 10_000),
       nan_frac=st.sampled_from([0.0, 0.3, 0.9]))
def test_property_backends_agree_and_bounded(b, p, mode, seed, nan_frac):
    s = random_scores(b, p, seed=seed, nan_frac=nan_frac)
    want = aggregate_rewards(s, mode=mode, backend="torch")
    # A mean of scores / 5 with scores in [1, 5] lies in [0.2, 1]; NaN exactly where a row has no score.
    valid = ~torch.isnan(want)
    assert torch.equal(valid, (~torch.isnan(s)).any(dim=1))
    assert bool(((want[valid] >= 0.2 - 1e-6) & (want[valid] <= 1 + 1e-6)).all())
    for backend in BACKENDS:
        assert_close(aggregate_rewards(s, mode=mode, backend=backend), want)


@pytest.mark.parametrize("kwargs,match", [
    (dict(scores=torch.ones(3)), "scores"),
    (dict(scores=torch.ones(0, 3)), "scores"),
    (dict(scores=torch.ones(3, 2, dtype=torch.int64)), "scores"),
    (dict(scores=torch.tensor([[1.0, float("inf")]])), "scores"),
    (dict(scores=torch.tensor([[-1.0, 2.0]]), mode="harmonic"), "scores"),
    (dict(scores=torch.ones(3, 2), mode="median"), "mode"),
    (dict(scores=torch.ones(3, 2), score_max=0.0), "score_max"),
    (dict(scores=torch.ones(3, 2), weights=torch.ones(3)), "weights"),
    (dict(scores=torch.ones(3, 2), weights=torch.tensor([1.0, -1.0])), "weights"),
    (dict(scores=torch.ones(3, 2), bystander=torch.ones(2)), "bystander"),
    (dict(scores=torch.ones(3, 2), lengths=torch.ones(3)), "length_limit"),
    (dict(scores=torch.ones(3, 2), lengths=torch.ones(2), length_limit=3), "lengths"),
    (dict(scores=torch.ones(3, 2), bystander_coef=float("nan")), "bystander_coef"),
])
def test_bad_input_names_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        aggregate_rewards(**kwargs)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("mode", MODES)
def test_gpu_backends_match_reference(dtype, mode):
    s = random_scores(1000, 5, dtype=dtype, seed=21)
    by = torch.rand(1000, generator=torch.Generator().manual_seed(2)) * 100
    args = (torch.tensor([1.0, 0.5, 2.0, 0.0, 1.0]), mode, 5.0, by, 0.3, torch.arange(1000), 500.0, 1e-3)
    want = aggregate_rewards(s, *args, backend="torch")
    for backend in backends("cuda", op="aggregate_rewards"):
        got = aggregate_rewards(s.cuda(), *[a.cuda() if isinstance(a, torch.Tensor) else a for a in args],
                                backend=backend)
        assert_close(got.cpu(), want)
