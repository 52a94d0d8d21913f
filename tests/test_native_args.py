"""Native entry points take one parameter struct of named fields (csrc/native_args.h):
a misspelt field fails at the call, and the native side checks each tensor it is given."""
import pytest
import torch

from pyl2d import _codes, _ext

lib = _ext.load()
pytestmark = pytest.mark.skipif(lib is None, reason="pyl2d._C was not built")


def _score_topk(**overrides):
    q, x = torch.randn(3, 8), torch.randn(20, 8)
    fields = dict(queries=q, items=x, exclude=None, item_norms=None, out_scores=torch.empty(3, 4),
                  out_ids=torch.empty(3, 4, dtype=torch.int64), k=4, metric=_codes.METRIC_CODES["l2"], num_threads=1)
    fields.update(overrides)
    return _ext.call(lib.score_topk_cpu, lib.ScoreTopkParams, **fields)


def test_a_misspelt_field_is_an_error():
    with pytest.raises(AttributeError, match="no field 'querys'"):
        _ext.call(lib.score_topk_cpu, lib.ScoreTopkParams, querys=torch.randn(2, 2))


@pytest.mark.parametrize("overrides,message", [
    ({"queries": None}, "queries is required"),
    ({"out_ids": torch.empty(3, 4)}, "out_ids has an unexpected dtype float32"),
    ({"out_scores": torch.empty(3, 5)}, r"contiguous \[B, k\]"),
    ({"item_norms": torch.ones(19)}, "item_norms has 19 entries, expected 20"),
    ({"metric": 7}, "unknown metric code"),
    ({"items": torch.randn(20, 8)[:, ::2]}, "items: inner stride must be 1"),
    ({"items": torch.randn(20, 6)}, "items has dimension 6"),
])
def test_the_native_side_checks_each_field(overrides, message):
    with pytest.raises(ValueError, match=message):
        _score_topk(**overrides)


def test_a_good_call_writes_the_outputs():
    out_s, out_i = torch.empty(3, 4), torch.empty(3, 4, dtype=torch.int64)
    _score_topk(out_scores=out_s, out_ids=out_i)
    assert torch.isfinite(out_s).all() and (out_i >= 0).all()
