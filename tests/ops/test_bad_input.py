"""Bad input to the ops: a ValueError that names the argument, on every backend."""
import re

import numpy as np
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


# --- every op: zero width, non-tensor and non-bool arguments, overflow ------------------

def full(shape, value, dtype=torch.float32):
    return torch.full(shape, value, dtype=dtype)


SCORES6 = torch.rand(6, 3, generator=G) * 4 + 1
MEM, MEM_IDS = randn(30, 8, generator=G), torch.arange(30) % 20
# Valid arguments of every op, with every optional tensor given, so each can be replaced.
VALID = {
    "score_topk": dict(queries=Q, items=X, k=3, metric="l2", exclude=torch.tensor([[1], [2], [-1]]),
                       item_norms=X.norm(dim=1)),
    "pooled_score_topk": dict(hidden=H, attention_mask=M, items=X, k=2, exclude=torch.tensor([[1], [2], [-1]]),
                              item_norms=X.norm(dim=1), normalize=False),
    "pool_hidden": dict(hidden=H, attention_mask=M, normalize=False),
    "local_topk": dict(queries=Q, memory=MEM, memory_item_ids=MEM_IDS, item_reps=randn(20, 8, generator=G),
                       k=3, m=4, exclude=torch.tensor([[1], [2], [-1]])),
    "segment_mean": dict(values=MEM, segment_ids=MEM_IDS, num_segments=20),
    "aggregate_rewards": dict(scores=SCORES6, weights=torch.ones(3), bystander=torch.full((6,), 50.0),
                              lengths=torch.arange(6), length_limit=3.0),
    "group_advantages": dict(rewards=SCORES6[:, 0], group_index=torch.tensor([0, 0, 1, 1, 2, 2]), impute=False),
    "rewards_and_advantages": dict(scores=SCORES6, group_index=torch.tensor([0, 0, 1, 1, 2, 2]),
                                   weights=torch.ones(3), bystander=torch.full((6,), 50.0),
                                   lengths=torch.arange(6), length_limit=3.0, impute=False),
    "score_from_hidden": dict(hidden=Q, lm_head_weight=randn(50, 8, generator=G),
                              score_token_ids=torch.tensor([7, 8, 9]), score_values=torch.tensor([1.0, 2.0, 3.0])),
}
OP_BACKENDS = [(op, b) for op in VALID for b in backends("cpu", op=op, include_torch=True)]


def call(op, backend, **override):
    args = dict(VALID[op], backend=backend)
    args.update(override)
    return getattr(pyl2d, op)(**args)


@pytest.mark.parametrize("op,backend", OP_BACKENDS)
def test_valid_arguments_run(op, backend):
    call(op, backend)


TENSOR_ARGS = [(op, b, name) for op, b in OP_BACKENDS for name, v in VALID[op].items() if isinstance(v, torch.Tensor)]


@pytest.mark.parametrize("op,backend,name", TENSOR_ARGS)
def test_tensor_arguments_must_be_tensors(op, backend, name):
    """A nested list where a tensor belongs is a ValueError naming it, not an AttributeError."""
    with pytest.raises(ValueError, match=f"^{name} must be a torch.Tensor, got list"):
        call(op, backend, **{name: VALID[op][name].tolist()})


FLAG_ARGS = [(op, b, name) for op, b in OP_BACKENDS for name, v in VALID[op].items() if isinstance(v, bool)]


@pytest.mark.parametrize("bad", ["no", "False", 1, 0, None, 1.0, torch.tensor(True)], ids=repr)
@pytest.mark.parametrize("op,backend,name", FLAG_ARGS)
def test_flags_must_be_bools(op, backend, name, bad):
    """normalize="no" used to normalise and impute="no" to impute."""
    with pytest.raises(ValueError, match=f"^{name} must be a bool"):
        call(op, backend, **{name: bad})


@pytest.mark.parametrize("op,backend,name", FLAG_ARGS)
def test_flags_accept_bools(op, backend, name):
    for value in (True, False, np.bool_(True)):
        call(op, backend, **{name: value})


ZERO_WIDTH = {
    "score_topk": [dict(queries=torch.empty(3, 0), items=torch.empty(20, 0), item_norms=None, metric="ip"),
                   dict(items=torch.empty(20, 0), item_norms=None)],
    "pooled_score_topk": [dict(hidden=torch.empty(3, 5, 0), items=torch.empty(20, 0), item_norms=None),
                          dict(items=torch.empty(20, 0), item_norms=None)],
    "pool_hidden": [dict(hidden=torch.empty(3, 5, 0))],
    "local_topk": [dict(queries=torch.empty(3, 0), memory=torch.empty(30, 0), item_reps=torch.empty(20, 0)),
                   dict(memory=torch.empty(30, 0)), dict(item_reps=torch.empty(20, 0))],
    "segment_mean": [dict(values=torch.empty(30, 0))],
    "score_from_hidden": [dict(hidden=torch.empty(3, 0), lm_head_weight=torch.empty(50, 0))],
}
ZERO_CASES = [(op, b, i) for op, b in OP_BACKENDS for i in range(len(ZERO_WIDTH.get(op, [])))]


@pytest.mark.parametrize("op,backend,case", ZERO_CASES)
def test_zero_width_is_rejected(op, backend, case):
    """D = 0 used to pass (triton returned ids -1, torch ids 0, 1, cpu a pointer error)."""
    override = ZERO_WIDTH[op][case]
    name = next(n for n, v in override.items() if isinstance(v, torch.Tensor) and v.shape[-1] == 0)
    with pytest.raises(ValueError, match=rf"^{name} has zero width \(shape"):
        call(op, backend, **override)


E19, E20 = full((3, 8), 1e19), full((20, 8), 1e19)
OVERFLOW = {  # inputs whose float32 scores, norms or sums would overflow: (override, argument named)
    "score_topk": [(dict(queries=E19, items=E20, metric="ip", item_norms=None), "queries"),
                   (dict(queries=E19.bfloat16(), items=E20.bfloat16(), metric="ip", item_norms=None), "queries"),
                   (dict(queries=E19, metric="cosine", item_norms=None), "queries"),
                   (dict(items=full((20, 8), 7e18), metric="l2", item_norms=None), "items"),
                   (dict(item_norms=full((20,), 2e19), metric="l2"), "item_norms")],
    "pooled_score_topk": [(dict(hidden=full((3, 5, 8), 1e19), items=E20, item_norms=None, metric="ip"), "hidden")],
    "pool_hidden": [(dict(hidden=full((3, 5, 8), 1e38), mode="mean"), "hidden"),
                    (dict(hidden=full((3, 5, 8), 1e19), normalize=True), "hidden")],
    "local_topk": [(dict(memory=full((30, 8), 1e20)), "memory"), (dict(item_reps=full((20, 8), 1e20)), "item_reps"),
                   (dict(queries=E19, metric="cosine"), "queries"),
                   (dict(queries=Q * 0.1, memory=full((30, 8), 2e37), m=20, metric="ip"), "memory")],
    "segment_mean": [(dict(values=full((30, 8), 1e38)), "values")],
    "score_from_hidden": [(dict(hidden=E19, lm_head_weight=full((50, 8), 1e19)), "hidden"),
                          (dict(lm_head_weight=full((50, 8), 1e38)), "lm_head_weight")],
}
OVERFLOW_CASES = [(op, b, i) for op, b in OP_BACKENDS for i in range(len(OVERFLOW.get(op, [])))]


@pytest.mark.parametrize("op,backend,case", OVERFLOW_CASES)
def test_overflowing_inputs_are_rejected_alike(op, backend, case):
    """Used to give (-inf, -1) on cpu and NaN or inf scores on torch and triton."""
    override, name = OVERFLOW[op][case]
    with pytest.raises(ValueError, match=rf"^{name} has values too large: .* beyond the float32 range"):
        call(op, backend, **override)


@pytest.mark.parametrize("metric", ["ip", "cosine", "l2"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_large_inputs_within_the_bound_give_finite_scores(metric, backend):
    queries, items = full((3, 8), 1e18), full((20, 8), 1e18) * torch.linspace(0.5, 1, 20)[:, None]
    scores, ids = pyl2d.score_topk(queries, items, 3, metric, backend=backend)
    assert torch.isfinite(scores).all() and (ids >= 0).all()


@pytest.mark.parametrize("backend", backends("cpu", op="score_from_hidden", include_torch=True))
def test_score_from_hidden_checks_its_score_rows(backend):
    """NaN/Inf in a score token's row of lm_head_weight used to give a NaN score silently;
    rows that are never read are not scanned."""
    head = nan_at(VALID["score_from_hidden"]["lm_head_weight"], (8, 3))
    with pytest.raises(ValueError, match=r"^lm_head_weight contains NaN \(first non-finite value at index \(8, 3\)"):
        call("score_from_hidden", backend, lm_head_weight=head)
    with pytest.raises(ValueError, match=r"^lm_head_weight contains Inf"):
        call("score_from_hidden", backend, lm_head_weight=nan_at(head, (8, 3), float("inf")))
    with pytest.raises(ValueError, match=r"^hidden contains Inf"):
        call("score_from_hidden", backend, hidden=nan_at(Q, (0, 0), float("-inf")))
    with pytest.raises(ValueError, match=r"^score_values contains NaN"):
        call("score_from_hidden", backend, score_values=torch.tensor([1.0, float("nan"), 3.0]))
    unused_row = nan_at(VALID["score_from_hidden"]["lm_head_weight"], (40, 0))
    assert torch.isfinite(call("score_from_hidden", backend, lm_head_weight=unused_row)).all()


@pytest.mark.parametrize("bad", [2**62, 2**31, -1])
@pytest.mark.parametrize("backend", backends("cpu", op="segment_mean", include_torch=True))
def test_num_segments_is_bounded(backend, bad):
    with pytest.raises(ValueError, match=rf"^num_segments={bad} is out of range: it must be between 0 and 2147483647"):
        call("segment_mean", backend, num_segments=bad)


def test_available_backends_accepts_device_strings():
    expected = pyl2d.available_backends(torch.device("cpu"), "score_topk")
    assert "torch" in expected
    assert pyl2d.available_backends("cpu", "score_topk") == expected
    assert set(pyl2d.available_backends("cpu")) >= set(expected)
    assert pyl2d.available_backends("cuda:0", "score_topk") == pyl2d.available_backends(torch.device("cuda", 0),
                                                                                       "score_topk")
    with pytest.raises(ValueError, match="^device='nope' is not a device"):
        pyl2d.available_backends("nope", "score_topk")
    with pytest.raises(ValueError, match="^device must be a torch.device, a device string or an int, got float"):
        pyl2d.available_backends(1.5)
    with pytest.raises(ValueError, match="^op must be one of aggregate_rewards, .*; got 'nope'"):
        pyl2d.available_backends("cpu", "nope")
