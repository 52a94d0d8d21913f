"""L2DRecommender on a tiny model: global ranking equals a brute-force computation, local
aggregation respects its contract, undecodable items are counted and never returned."""
import pytest
import torch

from pyl2d.l2d.hidden import HiddenStateExtractor
from pyl2d.l2d.memory import build_memory
from pyl2d.l2d.prompts import DEFAULT_PROMPT
from pyl2d.l2d.recommender import L2DRecommender
from helpers import assert_topk_matches


@pytest.fixture(scope="module")
def memory(tmp_path_factory, tiny_model, tiny_data):
    model, tok = tiny_model
    ex = HiddenStateExtractor(model, tok, batch_size=16, progress=False)
    return build_memory(ex, tiny_data.train, len(tiny_data.catalog), tmp_path_factory.mktemp("mem"),
                        DEFAULT_PROMPT, log=lambda *_: None)


def _recommender(tiny_model, memory, tiny_data, **kw):
    model, tok = tiny_model
    with pytest.warns(UserWarning, match="never occur as a training target") if (memory.item_counts() == 0).any() \
            else _nothing():
        return L2DRecommender(model, tok, memory, tiny_data.catalog, **kw)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def _brute_force_scores(rec, memory, tiny_data, samples, metric):
    """Float64 global scores [len(samples), N]: -inf for undecodable and history items."""
    q = rec.encode(samples).double()
    counts = memory.item_counts()
    reps = torch.zeros(len(tiny_data.catalog), q.shape[1], dtype=torch.float64)
    reps.index_add_(0, memory.item_ids, memory.vectors.double())
    reps /= counts.clamp_min(1)[:, None]
    if metric == "ip":
        s = q @ reps.T
    elif metric == "cosine":
        s = torch.nn.functional.normalize(q, dim=1) @ torch.nn.functional.normalize(reps, dim=1).T
    else:
        s = -torch.cdist(q, reps)
    s[:, counts == 0] = float("-inf")
    for row, sample in enumerate(samples):
        s[row, list(sample.history_ids)] = float("-inf")
    return s


@pytest.mark.parametrize("metric", ["l2", "ip", "cosine"])
def test_global_matches_brute_force(tiny_model, memory, tiny_data, metric):
    """The k best by a float64 brute force, up to float32 rounding: two items whose scores
    differ by less than that may come in either order on different CPUs."""
    rec = _recommender(tiny_model, memory, tiny_data, metric=metric)
    samples = tiny_data.test[:7]
    out = rec.recommend(samples, k=5)
    s = _brute_force_scores(rec, memory, tiny_data, samples, metric)
    assert_topk_matches(out.scores, out.ids, s, 5, rel_tol=1e-4)
    assert out.titles[0] == [tiny_data.catalog.title(i) for i in out.ids[0].tolist()]
    assert torch.all(out.scores[:, :-1] >= out.scores[:, 1:])


def test_local_contract(tiny_model, memory, tiny_data):
    rec = _recommender(tiny_model, memory, tiny_data, aggregation="local", m=10)
    samples = tiny_data.test[:6]
    out = rec.recommend(samples, k=8)
    decodable = set((memory.item_counts() > 0).nonzero().flatten().tolist())
    for row, sample in zip(out.ids.tolist(), samples):
        assert len(set(row)) == 8 and set(row) <= decodable and not set(row) & set(sample.history_ids)
    # m = whole memory: every item's local representation is its global mean, so local
    # gives global's ranking (up to rounding: the two means are summed in different orders)
    full = _recommender(tiny_model, memory, tiny_data, aggregation="local", m=len(memory))
    glob = _recommender(tiny_model, memory, tiny_data, aggregation="global")
    s = _brute_force_scores(glob, memory, tiny_data, samples, "l2")
    for rec_ in (full, glob):  # l2 through |q|^2 - 2 q.x + |x|^2 in float32 cancels: 1e-3
        out = rec_.recommend(samples, k=8)
        assert_topk_matches(out.scores, out.ids, s, 8, rel_tol=1e-3)


def test_inputs_and_errors(tiny_model, memory, tiny_data):
    rec = _recommender(tiny_model, memory, tiny_data)
    s = tiny_data.test[0]
    by_ids = rec.recommend([list(s.history_ids)], k=3)
    by_sample = rec.recommend([s], k=3)
    by_prompt = rec.recommend([DEFAULT_PROMPT.prompt(s.history_titles)], k=3, exclude_history=False)
    assert torch.equal(by_ids.ids, by_sample.ids)
    assert torch.equal(rec.recommend([s], k=3, exclude_history=False).ids, by_prompt.ids)
    with pytest.raises(ValueError, match="out of range"):
        rec.recommend([s], k=len(tiny_data.catalog) + 1)
    with pytest.raises(ValueError, match="empty"):
        rec.recommend([[]], k=3)
    with pytest.raises(ValueError, match="outside the catalog"):
        rec.recommend([[0, 10_000]], k=3)
    with pytest.raises(ValueError, match="metric"):
        L2DRecommender(tiny_model[0], tiny_model[1], memory, tiny_data.catalog, metric="dot")
    # k beyond the decodable items: the tail is padded with -1 / -inf
    n_ok = int((memory.item_counts() > 0).sum())
    out = rec.recommend([s], k=len(tiny_data.catalog), exclude_history=False)
    assert (out.ids[0] >= 0).sum() == n_ok and torch.isinf(out.scores[0, n_ok:]).all()


def test_undecodable_items_are_reported(tiny_model, tiny_data, tmp_path):
    model, tok = tiny_model
    ex = HiddenStateExtractor(model, tok, progress=False)
    few = [s for s in tiny_data.train if s.target_id % 2 == 0]
    mem = build_memory(ex, few, len(tiny_data.catalog), tmp_path / "m", DEFAULT_PROMPT, log=lambda *_: None)
    with pytest.warns(UserWarning, match=r"\d+ of 40 catalog items never occur"):
        rec = L2DRecommender(model, tok, mem, tiny_data.catalog)
    assert rec.n_undecodable >= 20
    for agg in ("global", "local"):
        rec.aggregation = agg
        ids = rec.recommend(tiny_data.test[:4], k=5).ids
        assert (ids % 2 == 0).all()


def test_queries_use_the_template_stored_with_the_memory(tiny_model, tiny_data, tmp_path):
    import dataclasses
    import warnings

    from pyl2d.l2d.memory import ItemMemory

    model, tok = tiny_model
    custom = dataclasses.replace(DEFAULT_PROMPT, max_history=3, instruction="Guess what this listener plays next.")
    ex = HiddenStateExtractor(model, tok, progress=False)
    build_memory(ex, tiny_data.train, len(tiny_data.catalog), tmp_path / "m", custom, log=lambda *_: None)
    memory = ItemMemory.load(tmp_path / "m")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # undecodable items
        rec = L2DRecommender(model, tok, memory, tiny_data.catalog)
    assert rec.template == custom
    samples = [s for s in tiny_data.test if len(s.history_ids) > 3][:4]
    want = ex.encode([custom.prompt(s.history_titles, tok) for s in samples])
    torch.testing.assert_close(rec.encode(samples), want)
    with pytest.warns(UserWarning, match=r"differs from the one the memory was built with \(in instruction, max_history\)"):
        explicit = L2DRecommender(model, tok, memory, tiny_data.catalog, template=DEFAULT_PROMPT)
    assert explicit.template == DEFAULT_PROMPT
