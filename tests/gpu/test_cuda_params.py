"""The CUDA entry points take one parameter struct of named fields (kernels/*.h), checked on
the host before any CUDA call. Runs without a GPU wherever pyl2d._C was built with CUDA:

* every cuda backend caller (pyl2d/ops/*/cuda.py) runs on CPU tensors with the CUDA-only steps stubbed out, so each
  field it sets must exist (``_ext.call``), and, without a GPU, the real entry point must
  accept the fields (its host checks pass and the first CUDA call fails: RuntimeError);
* a bad field (wrong dtype, shape, missing tensor) is a ValueError naming it.
"""
import contextlib
import types

import pytest
import torch

from pyl2d import _codes, _ext
from pyl2d.ops.score_topk import cuda as cuda_score_topk
from pyl2d.ops.aggregate_rewards.cuda import aggregate_rewards
from pyl2d.ops.group_advantages.cuda import group_advantages
from pyl2d.ops.local_topk.cuda import local_topk
from pyl2d.ops.pool_hidden.cuda import pool_hidden
from pyl2d.ops.pooled_score_topk.cuda import pooled_score_topk
from pyl2d.ops.rewards_and_advantages.cuda import rewards_and_advantages
from pyl2d.ops.score_from_hidden.cuda import score_from_hidden
from pyl2d.ops.segment_mean.cuda import segment_mean

lib = _ext.load()
pytestmark = pytest.mark.skipif(not _ext.has_cuda_kernels(), reason="pyl2d._C was built without CUDA")
# With a GPU, CPU pointers must not reach a kernel: the callers' fields are only set, not run.
NO_GPU = not torch.cuda.is_available()

ENTRIES = {
    "score_topk_stage1_cuda": "ScoreTopkStage1Params",
    "row_norms_cuda": "RowNormsParams",
    "pool_hidden_cuda": "PoolHiddenCudaParams",
    "segment_mean_cuda": "SegmentMeanCudaParams",
    "local_scores_cuda": "LocalScoresParams",
    "mask_candidates_cuda": "MaskCandidatesParams",
    "aggregate_rewards_cuda": "AggregateRewardsCudaParams",
    "group_advantages_cuda": "GroupAdvantagesCudaParams",
    "score_from_hidden_cuda": "ScoreFromHiddenCudaParams",
}


def _through_host_checks(entry, params):
    """Call a real entry point on CPU tensors: its host checks must pass, so that the first CUDA
    call is what fails (no GPU here)."""
    with pytest.raises(RuntimeError, match="CUDA error"):
        entry(params)


@pytest.fixture
def calls(monkeypatch):
    """Run the cuda backend callers on CPU: stream 0, no device context, a fixed item split,
    zeroed kernel buffers; every CUDA entry point records its params (and, without a GPU, runs
    its host checks). Returns {entry name: [params, ...]}."""
    made = {name: [] for name in ENTRIES}

    def recorder(name):
        real = getattr(lib, name)

        def entry(params):
            assert type(params).__name__ == ENTRIES[name]
            made[name].append(params)
            if NO_GPU:
                _through_host_checks(real, params)
        return entry

    for name in ENTRIES:
        monkeypatch.setattr(lib, name, recorder(name))
    monkeypatch.setattr(_ext, "cuda_stream", lambda device: 0)
    monkeypatch.setattr(torch.cuda, "device", lambda device: contextlib.nullcontext())
    monkeypatch.setattr(cuda_score_topk, "new_buffer", lambda shape, dtype, device: torch.zeros(shape, dtype=dtype))

    def item_splits(batch, n_items, k, dtype, device, lib):
        n_tiles = -(-n_items // lib.cuda_score_topk_tile_items)
        per = -(-n_tiles // min(n_tiles, 2))
        return per, -(-n_tiles // per)
    monkeypatch.setattr(cuda_score_topk, "item_splits", item_splits)
    return made


@pytest.mark.parametrize("metric", ["ip", "l2", "cosine"])
@pytest.mark.parametrize("exclude", [False, True])
def test_score_topk_callers(calls, metric, exclude):
    q, x = torch.randn(3, 8), torch.randn(300, 8)
    ex = torch.tensor([[5, -1], [0, 7], [-1, -1]]) if exclude else None
    cuda_score_topk.score_topk(q, x, 4, metric, ex, None)
    cuda_score_topk.score_topk(q, x, 4, metric, ex, x.norm(dim=1) if metric != "ip" else None)
    assert len(calls["score_topk_stage1_cuda"]) == 2
    assert len(calls["row_norms_cuda"]) == (1 if metric != "ip" else 0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("mode,normalize", [("last", False), ("last", True), ("mean", False)])
def test_pool_callers(calls, dtype, mode, normalize):
    hidden, items = torch.randn(2, 5, 8).to(dtype), torch.randn(50, 8).to(dtype)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    pool_hidden(hidden, mask, mode, normalize)
    pooled_score_topk(hidden, mask, items, 3, "l2", mode, normalize)
    assert len(calls["pool_hidden_cuda"]) == (1 if (mode == "last" and not normalize) else 2)
    assert len(calls["score_topk_stage1_cuda"]) == 1


def test_l2d_callers(calls):
    memory, ids = torch.randn(12, 8), torch.arange(12) % 5
    segment_mean(memory, ids, 5)
    queries, reps = torch.randn(3, 8), torch.randn(5, 8)
    local_topk(queries, memory, ids, reps, 2, 4, "l2", None)
    local_topk(queries, memory, ids, reps, 2, 4, "cosine", torch.tensor([[1, -1], [0, 2], [-1, -1]]))
    assert len(calls["segment_mean_cuda"]) == 1
    assert len(calls["local_scores_cuda"]) == len(calls["mask_candidates_cuda"]) == 2


@pytest.mark.parametrize("scale", _codes.ADVANTAGE_SCALES)
def test_reward_callers(calls, scale):
    scores = torch.rand(6, 3) * 5
    agg = (torch.ones(3), "harmonic", 5.0, torch.full((6,), 50.0), 0.1, torch.arange(6.0), 2.0, 0.01)
    aggregate_rewards(scores, *agg)
    aggregate_rewards(scores.half(), None, "mean", 5.0, None, 0.0, None, None, 0.0)
    group_ids = torch.tensor([0, 1, 0, 1, 1, 0])
    group_advantages(torch.randn(6), 2, None, 1e-4, scale, False)
    group_advantages(torch.randn(6), 2, group_ids, 1e-4, scale, True)
    rewards_and_advantages(scores, *agg, 2, group_ids, 1e-4, scale, False)
    score_from_hidden(torch.randn(4, 8), torch.randn(20, 8), torch.tensor([3, 4, 5]), torch.tensor([1.0, 2, 3]))
    fused = [p for p in calls["group_advantages_cuda"] if p.scores.defined]
    assert len(fused) == (0 if scale == "batch" else 1)
    assert all(p.rewards_out.defined and not p.rewards.defined for p in fused)
    assert len(calls["score_from_hidden_cuda"]) == 1


# Valid fields per entry point (CPU tensors: only the host checks run), then bad overrides.
def _stage1_fields():
    return dict(q_base=torch.randn(3, 8), q_offsets=torch.arange(3) * 8, q_vec=True, items=torch.randn(200, 8),
                x_vec=True, metric=_codes.METRIC_CODES["l2"], q_norms=torch.ones(3), x_norms=torch.ones(200),
                exclude=torch.tensor([[1, 2], [0, 5], [-1, -1]]), k=4, tiles_per_split=1, n_splits=2,
                ws_scores=torch.empty(3, 8), ws_ids=torch.empty(3, 8, dtype=torch.int64), stream=0)


def _fields(entry):
    f32, i64 = torch.float32, torch.int64
    return {
        "score_topk_stage1_cuda": _stage1_fields(),
        "row_norms_cuda": dict(x=torch.randn(5, 8), squared=True, out=torch.empty(5), stream=0),
        "pool_hidden_cuda": dict(hidden=torch.randn(2, 5, 8), mode=_codes.POOL_MODE_CODES["mean"], last_index=None,
                                 real=torch.ones(2, 5, dtype=torch.uint8), normalize=True,
                                 pooled=torch.empty(2, 8), out=torch.empty(2, 8), stream=0),
        "segment_mean_cuda": dict(values=torch.randn(6, 8), order=torch.arange(6), ends=torch.tensor([2, 6]),
                                  counts=torch.tensor([2, 4]), means=torch.empty(2, 8), stream=0),
        "local_scores_cuda": dict(queries=torch.randn(3, 8), memory=torch.randn(10, 8),
                                  rows=torch.zeros(3, 4, dtype=i64), items=torch.zeros(3, 4, dtype=i64),
                                  group_end=torch.ones(3, 4, dtype=i64), metric=0, out_scores=torch.empty(3, 9),
                                  out_ids=torch.empty(3, 9, dtype=i64), stream=0),
        "mask_candidates_cuda": dict(scores=torch.empty(3, 9), ids=torch.zeros(3, 9, dtype=i64),
                                     items=torch.zeros(3, 4, dtype=i64), exclude=torch.zeros(3, 2, dtype=i64),
                                     stream=0),
        "aggregate_rewards_cuda": dict(scores=torch.rand(6, 3), weights=torch.ones(3), mode=1, score_max=5.0,
                                       bystander=torch.ones(6), bystander_coef=0.1, lengths=torch.ones(6),
                                       length_limit=1.0, length_coef=0.1, out=torch.empty(6), stream=0),
        "group_advantages_cuda": dict(scores=torch.rand(6, 3), mode=0, score_max=5.0, order=torch.arange(6),
                                      offsets=torch.tensor([0, 3, 6]), largest_group=3, eps=1e-4,
                                      scale=_codes.ADVANTAGE_SCALE_CODES["group"], impute=False, batch_std=0.0,
                                      adv=torch.empty(6, dtype=f32), rewards_out=torch.empty(6), stream=0),
        "score_from_hidden_cuda": dict(hidden=torch.randn(4, 8), weight=torch.randn(20, 8),
                                       ids=torch.tensor([1, 2, 3]), values=torch.tensor([1.0, 2, 3]),
                                       out=torch.empty(4), stream=0),
    }[entry]


def _call(entry, **overrides):
    fields = _fields(entry)
    fields.update(overrides)
    return _ext.call(getattr(lib, entry), getattr(lib, ENTRIES[entry]), **fields)


@pytest.mark.skipif(not NO_GPU, reason="runs kernels on CPU pointers without a GPU only")
@pytest.mark.parametrize("entry", sorted(ENTRIES))
def test_valid_fields_pass_the_host_checks(entry):
    with pytest.raises(RuntimeError, match="CUDA error"):
        _call(entry)


BAD = [
    ("score_topk_stage1_cuda", {"q_offsets": None}, "q_offsets is required"),
    ("score_topk_stage1_cuda", {"ws_ids": torch.empty(3, 8)}, "ws_ids has an unexpected dtype float32"),
    ("score_topk_stage1_cuda", {"ws_scores": torch.empty(3, 7), "ws_ids": torch.empty(3, 7, dtype=torch.int64)},
     "workspace too small"),
    ("score_topk_stage1_cuda", {"ws_ids": torch.empty(3, 9, dtype=torch.int64)}, "ws_ids must have the sizes"),
    ("score_topk_stage1_cuda", {"items": torch.randn(200, 8).to(torch.int64)}, "items has an unexpected dtype int64"),
    ("score_topk_stage1_cuda", {"q_base": torch.randn(3, 8).half()}, "q_base has dtype float16"),
    ("score_topk_stage1_cuda", {"q_base": torch.randn(3, 6)}, "q_base rows have 6 elements"),
    ("score_topk_stage1_cuda", {"x_norms": None}, "cosine and l2 need q_norms and x_norms"),
    ("score_topk_stage1_cuda", {"q_norms": torch.ones(4)}, "q_norms has 4 entries, expected 3"),
    ("score_topk_stage1_cuda", {"exclude": torch.zeros(3, 2, dtype=torch.int32)}, "exclude has an unexpected dtype"),
    ("score_topk_stage1_cuda", {"exclude": torch.zeros(2, 3, dtype=torch.int64).t()}, "exclude must be contiguous"),
    ("score_topk_stage1_cuda", {"k": 0}, "k must be"),
    ("score_topk_stage1_cuda", {"metric": 7}, "metric code"),
    ("score_topk_stage1_cuda", {"n_splits": 1}, "do not cover every item"),
    ("row_norms_cuda", {"out": torch.empty(4)}, "out has 4 entries, expected 5"),
    ("row_norms_cuda", {"x": torch.randn(5, 8)[:, ::2]}, "x: inner stride must be 1"),
    ("pool_hidden_cuda", {"real": None}, "mode mean needs the real-token mask"),
    ("pool_hidden_cuda", {"out": torch.empty(2, 8).half()}, "out has an unexpected dtype float16"),
    ("pool_hidden_cuda", {"pooled": torch.empty(2, 9)}, r"pooled has shape \[2, 9\], expected \[2, 8\]"),
    ("pool_hidden_cuda", {"mode": 0}, "mode last needs last_index"),
    ("pool_hidden_cuda", {"mode": 0, "last_index": torch.zeros(2, dtype=torch.int32)}, "last_index has an unexpected"),
    ("segment_mean_cuda", {"counts": torch.tensor([2, 4, 0])}, "counts has 3 entries, expected 2"),
    ("segment_mean_cuda", {"order": torch.arange(6, dtype=torch.int32)}, "order has an unexpected dtype int32"),
    ("segment_mean_cuda", {"means": None}, "means is required"),
    ("local_scores_cuda", {"memory": torch.randn(10, 8).half()}, "memory has an unexpected dtype float16"),
    ("local_scores_cuda", {"memory": torch.randn(10, 6)}, "memory has dimension 6"),
    ("local_scores_cuda", {"group_end": torch.ones(3, 5, dtype=torch.int64)}, "group_end has shape"),
    ("local_scores_cuda", {"out_scores": torch.empty(3, 3), "out_ids": torch.empty(3, 3, dtype=torch.int64)},
     "at least m = 4 columns"),
    ("local_scores_cuda", {"out_ids": torch.empty(3, 9)}, "out_ids has an unexpected dtype float32"),
    ("mask_candidates_cuda", {"ids": torch.zeros(3, 8, dtype=torch.int64)}, "ids has shape"),
    ("mask_candidates_cuda", {"exclude": torch.zeros(2, 2, dtype=torch.int64)}, "exclude has shape"),
    ("mask_candidates_cuda", {"items": None}, "items is required"),
    ("aggregate_rewards_cuda", {"weights": torch.ones(4)}, "weights has 4 entries, expected 3"),
    ("aggregate_rewards_cuda", {"bystander": torch.ones(6, dtype=torch.int32)}, "bystander has an unexpected dtype"),
    ("aggregate_rewards_cuda", {"out": torch.empty(5)}, "scores has 6 rows, expected 5"),
    ("aggregate_rewards_cuda", {"mode": 3}, "unknown mode"),
    ("group_advantages_cuda", {"rewards_out": None}, "rewards_out is required"),
    ("group_advantages_cuda", {"rewards": torch.ones(6)}, "scores or rewards, not both"),
    ("group_advantages_cuda", {"scores": None}, "rewards is required"),
    ("group_advantages_cuda", {"offsets": torch.tensor([0, 3, 6], dtype=torch.int32)}, "offsets has an unexpected"),
    ("group_advantages_cuda", {"order": torch.arange(5)}, "order has 5 entries, expected 6"),
    ("group_advantages_cuda", {"scale": 3}, "unknown scale"),
    ("score_from_hidden_cuda", {"values": torch.tensor([1.0, 2])}, "values has 2 entries, expected 3"),
    ("score_from_hidden_cuda", {"ids": torch.tensor([1, 2, 3], dtype=torch.int32)}, "ids has an unexpected dtype"),
    ("score_from_hidden_cuda", {"weight": torch.randn(20, 8).half()}, "weight has an unexpected dtype float16"),
    ("score_from_hidden_cuda", {"out": torch.empty(4, dtype=torch.float16)}, "out has an unexpected dtype"),
]


@pytest.mark.parametrize("entry,overrides,message", BAD, ids=[f"{e}-{'-'.join(o)}" for e, o, _ in BAD])
def test_a_bad_field_is_named_before_any_cuda_call(entry, overrides, message):
    with pytest.raises(ValueError, match=message):
        _call(entry, **overrides)


def test_every_entry_point_has_its_params_class():
    for entry, cls in ENTRIES.items():
        assert isinstance(getattr(lib, entry), types.BuiltinFunctionType)
        getattr(lib, cls)()
    with pytest.raises(AttributeError, match="no field 'n_items'"):
        _ext.call(lib.score_topk_stage1_cuda, lib.ScoreTopkStage1Params, n_items=10)
