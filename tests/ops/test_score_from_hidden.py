"""score_from_hidden on every backend against a float64 oracle computed from the full
vocabulary: softmax over the score tokens' logits, expectation of their values."""
import pytest
import torch
from hypothesis import given, settings, strategies as st

from pyl2d.ops.score_from_hidden import score_from_hidden
from helpers import DTYPES, backends, randn

BACKENDS = backends("cpu", op="score_from_hidden")
TOL = {torch.float32: 1e-4, torch.float16: 2e-3, torch.bfloat16: 2e-3}
# (B, V, D, S): awkward sizes, B=1, S=1, D not a multiple of any tile.
SHAPES = [(1, 50, 7, 1), (3, 97, 33, 5), (17, 300, 130, 5), (5, 64, 257, 11), (2, 1000, 64, 101)]


def oracle(hidden, weight, ids, values):
    logits = hidden.double() @ weight.double().T  # the full-vocabulary path
    p = torch.softmax(logits[:, ids.long()], dim=1)
    return p @ values.double()


@pytest.mark.parametrize("backend", ["torch"] + BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "B{}_V{}_D{}_S{}".format(*s))
def test_matches_full_vocabulary_oracle(backend, dtype, shape):
    b, v, d, s = shape
    g = torch.Generator().manual_seed(b * v + d)
    hidden = randn(b, d, dtype=dtype, generator=g)
    weight = randn(v, d, dtype=dtype, generator=g, scale=0.3)
    ids = torch.randperm(v, generator=g)[:s]
    values = torch.arange(1, s + 1, dtype=torch.float32)
    got = score_from_hidden(hidden, weight, ids, values, backend=backend)
    assert got.shape == (b,) and got.dtype == torch.float32
    torch.testing.assert_close(got.double(), oracle(hidden, weight, ids, values), rtol=TOL[dtype], atol=TOL[dtype] * s)


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_contiguous_and_int32_ids_and_duplicates(backend):
    g = torch.Generator().manual_seed(3)
    big = randn(9, 80, generator=g)
    hidden = big[::2, 5:69]  # row stride 80, 64 columns
    weight = randn(120, 64, generator=g)
    ids = torch.tensor([7, 3, 7, 119, 0], dtype=torch.int32)
    values = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    torch.testing.assert_close(score_from_hidden(hidden, weight, ids, values, backend=backend).double(),
                               oracle(hidden, weight, ids, values), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("backend", ["torch"] + BACKENDS)
def test_large_logits_do_not_overflow(backend):
    hidden = torch.full((2, 16), 30.0)
    weight = torch.zeros(10, 16)
    weight[4] = 10.0  # logit 4800 for token 4
    out = score_from_hidden(hidden, weight, torch.tensor([1, 4, 6]), torch.tensor([1.0, 2.0, 3.0]), backend=backend)
    torch.testing.assert_close(out, torch.tensor([2.0, 2.0]))


@settings(max_examples=20, deadline=None)
@given(b=st.integers(1, 6), d=st.integers(1, 70), s=st.integers(1, 9), seed=st.integers(0, 10_000))
def test_property_expectation_within_value_range(b, d, s, seed):
    g = torch.Generator().manual_seed(seed)
    hidden, weight = randn(b, d, generator=g), randn(40, d, generator=g)
    ids = torch.randint(0, 40, (s,), generator=g)
    values = torch.randn(s, generator=g) * 10
    want = score_from_hidden(hidden, weight, ids, values, backend="torch")
    assert bool((want >= values.min() - 1e-4).all() and (want <= values.max() + 1e-4).all())
    for backend in BACKENDS:
        torch.testing.assert_close(score_from_hidden(hidden, weight, ids, values, backend=backend), want,
                                   rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("args,match", [
    ((torch.ones(3), torch.ones(5, 3), torch.tensor([0]), torch.ones(1)), "hidden"),
    ((torch.ones(0, 3), torch.ones(5, 3), torch.tensor([0]), torch.ones(1)), "hidden"),
    ((torch.ones(2, 3), torch.ones(5, 4), torch.tensor([0]), torch.ones(1)), "lm_head_weight"),
    ((torch.ones(2, 3), torch.ones(5, 3, dtype=torch.float16), torch.tensor([0]), torch.ones(1)), "lm_head_weight"),
    ((torch.ones(2, 3), torch.ones(5, 3), torch.tensor([5]), torch.ones(1)), "score_token_ids"),
    ((torch.ones(2, 3), torch.ones(5, 3), torch.tensor([-1]), torch.ones(1)), "score_token_ids"),
    ((torch.ones(2, 3), torch.ones(5, 3), torch.tensor([0.0]), torch.ones(1)), "score_token_ids"),
    ((torch.ones(2, 3), torch.ones(5, 3), torch.tensor([], dtype=torch.int64), torch.ones(0)), "score_token_ids"),
    ((torch.ones(2, 3), torch.ones(5, 3), torch.tensor([0, 1]), torch.ones(1)), "score_values"),
    ((torch.tensor([[1.0, float("nan"), 0]]), torch.ones(5, 3), torch.tensor([0]), torch.ones(1)), "hidden"),
])
def test_bad_input_names_the_argument(args, match):
    with pytest.raises(ValueError, match=match):
        score_from_hidden(*args)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("s", [1, 5, 37])
def test_gpu_backends_match_oracle(dtype, s):
    g = torch.Generator().manual_seed(s)
    hidden = randn(300, 1000, dtype=dtype, generator=g)
    weight = randn(32000, 1000, dtype=dtype, generator=g, scale=0.05)
    ids = torch.randperm(32000, generator=g)[:s]
    values = torch.arange(1, s + 1, dtype=torch.float32)
    want = oracle(hidden, weight, ids, values)
    for backend in backends("cuda", op="score_from_hidden"):
        got = score_from_hidden(hidden.cuda(), weight.cuda(), ids.cuda(), values.cuda(), backend=backend)
        torch.testing.assert_close(got.cpu().double(), want, rtol=TOL[dtype], atol=TOL[dtype] * s)


@pytest.mark.parametrize("backend", BACKENDS)
def test_many_score_tokens(backend):
    g = torch.Generator().manual_seed(8)
    hidden, weight = randn(2, 16, generator=g), randn(900, 16, generator=g, scale=0.3)
    ids = torch.randperm(900, generator=g)[:600]
    values = torch.linspace(0, 100, 600)
    torch.testing.assert_close(score_from_hidden(hidden, weight, ids, values, backend=backend).double(),
                               oracle(hidden, weight, ids, values), rtol=1e-4, atol=1e-3)
