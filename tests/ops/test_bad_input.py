"""Bad input to the retrieval ops: a ValueError that names the argument, on every backend."""
import re

import pytest
import torch

import pyl2d
from helpers import backends, randn

BACKENDS = backends("cpu", op="score_topk", include_torch=True)
G = torch.Generator().manual_seed(0)
Q, X = randn(3, 8, generator=G), randn(20, 8, generator=G)
H, M = randn(3, 5, 8, generator=G), torch.ones(3, 5, dtype=torch.long)


def nan_at(t, index, value=float("nan")):
    t = t.clone()
    t[index] = value
    return t


SCORE_CASES = {
    "queries rank": (dict(queries=Q[0]), "queries must have 2 dimensions"),
    "items rank": (dict(items=X[None]), "items must have 2 dimensions"),
    "queries not a tensor": (dict(queries=[[1.0] * 8]), "queries must be a torch.Tensor"),
    "int queries": (dict(queries=Q.long()), "queries must have dtype"),
    "float64 items": (dict(items=X.double()), "items must have dtype"),
    "mismatched D": (dict(items=randn(20, 9, generator=G)), "items has dimension 9 but the queries have 8"),
    "mixed dtypes": (dict(items=X.half()), "items has dtype float16 but queries has float32"),
    "mixed devices": (dict(items=X.to("meta")), "items is on meta but queries is on cpu"),
    "k zero": (dict(k=0), r"k=0 is out of range"),
    "k above N": (dict(k=21), r"k=21 is out of range: it must be between 1 and the number of items \(20\)"),
    "k float": (dict(k=2.0), "k must be an int"),
    "metric": (dict(metric="dot"), "metric must be one of"),
    "NaN queries": (dict(queries=nan_at(Q, (1, 2))), r"queries contains NaN \(first non-finite value at index \(1, 2\)\)"),
    "Inf items": (dict(items=nan_at(X, (4, 0), float("inf"))), "items contains Inf"),
    "exclude too large": (dict(exclude=torch.tensor([[20], [0], [1]])), r"exclude holds id 20, out of range \[0, 20\)"),
    "exclude below -1": (dict(exclude=torch.tensor([[-2], [0], [1]])), "exclude holds id -2"),
    "exclude rows": (dict(exclude=torch.zeros(2, 1, dtype=torch.long)), "exclude has 2 rows but there are 3 queries"),
    "exclude float": (dict(exclude=torch.zeros(3, 1)), "exclude must have dtype int32, int64"),
    "item_norms shape": (dict(item_norms=torch.ones(19)), "item_norms has 19 entries but items has 20 rows"),
    "item_norms negative": (dict(item_norms=-torch.ones(20)), "item_norms holds negative values"),
    "empty items": (dict(items=torch.empty(0, 8)), "items is empty"),
    "empty queries": (dict(queries=torch.empty(0, 8)), "queries is empty"),
    "unknown backend": (dict(backend="gpu"), "backend='gpu' is not a backend"),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", list(SCORE_CASES), ids=str)
def test_score_topk_rejects(case, backend):
    override, message = SCORE_CASES[case]
    args = dict(queries=Q, items=X, k=3, metric="ip", exclude=None, item_norms=None, backend=backend)
    args.update(override)
    with pytest.raises(ValueError, match=message):
        pyl2d.score_topk(**args)


POOL_CASES = {
    "hidden rank": (dict(hidden=H[0]), "hidden must have 3 dimensions"),
    "mask shape": (dict(attention_mask=M[:, :4]), re.escape("attention_mask has shape (3, 4) but hidden is (3, 5, 8)")),
    "all-zero mask row": (dict(attention_mask=nan_at(M, 1, 0)), r"attention_mask has rows with no real token \(all zero\): rows \[1\]"),
    "mask dtype": (dict(attention_mask=M.to(torch.complex64)), "attention_mask must have dtype"),
    "NaN hidden": (dict(hidden=nan_at(H, (0, 4, 1))), "hidden contains NaN"),
    "mode": (dict(mode="first"), "mode must be one of 'last', 'mean'"),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", list(POOL_CASES), ids=str)
def test_pool_hidden_and_pooled_reject(case, backend):
    override, message = POOL_CASES[case]
    args = dict(hidden=H, attention_mask=M, mode="last", normalize=False, backend=backend)
    args.update(override)
    with pytest.raises(ValueError, match=message):
        pyl2d.pool_hidden(**args)
    with pytest.raises(ValueError, match=message):
        pyl2d.pooled_score_topk(items=X, k=2, **args)


def test_env_backend_is_validated(monkeypatch):
    monkeypatch.setenv("PYL2D_BACKEND", "nope")
    with pytest.raises(ValueError, match="PYL2D_BACKEND='nope' is not a backend"):
        pyl2d.score_topk(Q, X, 2)


def test_env_backend_selects(monkeypatch):
    monkeypatch.setenv("PYL2D_BACKEND", "torch")
    scores, ids = pyl2d.score_topk(Q, X, 2)
    assert ids.shape == (3, 2)


def test_backend_that_cannot_run_here():
    with pytest.raises(ValueError, match="backend='cuda' cannot run here"):
        pyl2d.score_topk(Q, X, 2, backend="cuda")


def test_inference_mode_tensors_are_checked():
    with torch.inference_mode():
        q, x = randn(2, 8, generator=G), randn(70_000, 8, generator=G)
        scores, ids = pyl2d.score_topk(q, x, 3)
        assert ids.shape == (2, 3)
        x[1, 1] = float("nan")
        with pytest.raises(ValueError, match="items contains NaN"):
            pyl2d.score_topk(q, x, 3)
