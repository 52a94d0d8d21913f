"""Triton-specific paths of score_topk: the sampled score floor and every loop shape."""
import pytest
import torch

import pyl2d
from helpers import (DTYPES, REL_TOL, assert_topk_matches, backends, integer_tie_case, oracle_scores, oracle_topk,
                     randn)

pytestmark = pytest.mark.skipif("triton" not in backends("cpu", op="score_topk"),
                                reason="triton cannot run here")


@pytest.fixture
def floor_always(monkeypatch):
    from pyl2d.ops.score_topk import _triton_search as _search
    monkeypatch.setattr(_search, "FLOOR_MIN_ITEMS", 0)
    monkeypatch.setattr(_search, "FLOOR_SAMPLE_EVERY", 8)
    monkeypatch.setattr(_search, "FLOOR_SAMPLE_PER_CANDIDATE", 2)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("metric", ["ip", "cosine", "l2"])
def test_sampled_floor_keeps_results_exact(floor_always, dtype, metric):
    g = torch.Generator().manual_seed(31)
    q, x = randn(5, 24, dtype=dtype, generator=g), randn(203, 24, dtype=dtype, generator=g)
    exclude = torch.randint(-1, 203, (5, 3), generator=g)
    for k in (1, 6):
        scores, ids = pyl2d.score_topk(q, x, k, metric, exclude=exclude, backend="triton")
        assert_topk_matches(scores, ids, oracle_scores(q, x, metric), k, exclude=exclude,
                            rel_tol=REL_TOL[dtype], msg="triton+floor")


def test_sampled_floor_with_exact_ties(floor_always):
    """Ties exact on every code path (integer_tie_case) still go to the lower id when the
    sampled floor seeds the threshold."""
    g = torch.Generator().manual_seed(32)
    for metric in ("ip", "l2"):
        base, q = integer_tie_case(6, 32, 3, g, metric=metric)
        x = base[torch.cat([torch.tensor([0, 1]), torch.randint(0, 6, (178,), generator=g)])]
        scores, ids = pyl2d.score_topk(q, x, 9, metric, backend="triton")
        want_scores, want_ids = oracle_topk(oracle_scores(q, x, metric), 9)
        assert torch.equal(ids, want_ids)
        torch.testing.assert_close(scores.double(), want_scores)


@pytest.mark.parametrize("loop", [0, 1, 2])
def test_every_loop_shape(loop):
    from pyl2d.ops.score_topk import _triton_configs as _configs
    from pyl2d.ops.score_topk.triton import use_config
    cfg = _configs.INTERPRETER_CONFIG.as_dict() | {"loop": loop}
    g = torch.Generator().manual_seed(33)
    q, x = randn(3, 40, generator=g), randn(75, 40, generator=g)
    use_config(cfg)
    try:
        for metric in ("ip", "cosine", "l2"):
            scores, ids = pyl2d.score_topk(q, x, 7, metric, backend="triton")
            assert_topk_matches(scores, ids, oracle_scores(q, x, metric), 7, msg=f"loop={loop}")
    finally:
        use_config(None)
