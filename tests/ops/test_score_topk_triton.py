"""Triton-specific paths of score_topk: the sampled score floor and every loop shape."""
import pytest
import torch

import pyl2d
from helpers import DTYPES, REL_TOL, assert_topk_matches, backends, oracle_scores, randn

pytestmark = pytest.mark.skipif("triton" not in backends("cpu", op="score_topk"),
                                reason="triton cannot run here")


@pytest.fixture
def floor_always(monkeypatch):
    from pyl2d.triton import _search
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
    g = torch.Generator().manual_seed(32)
    base = torch.randint(-2, 3, (6, 32), generator=g).float()
    base[base.abs().sum(1) == 0, 0] = 1.0
    x = base[torch.randint(0, 6, (180,), generator=g)]
    q = torch.randint(-2, 3, (3, 32), generator=g).float()
    from pyl2d.reference.score_topk import score_topk as reference
    for metric in ("ip", "l2"):
        scores, ids = pyl2d.score_topk(q, x, 9, metric, backend="triton")
        ref_scores, ref_ids = reference(q, x, 9, metric)
        assert torch.equal(ids, ref_ids)
        torch.testing.assert_close(scores, ref_scores)


@pytest.mark.parametrize("loop", [0, 1, 2])
def test_every_loop_shape(loop):
    from pyl2d.triton import _configs
    from pyl2d.triton.score_topk import use_config
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
