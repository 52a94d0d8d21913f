"""evaluate(): each table's scores share its history exclusion, checked with a stub ranker."""
import dataclasses

import pytest
import torch

from pyl2d.l2d.data import Catalog, Sample
from pyl2d.l2d.data.prompts import DEFAULT_PROMPT
from pyl2d.l2d.decode.recommender import Recommendations
from pyl2d.l2d.evaluation import evaluate as ev
from pyl2d.l2d.memory import ItemMemory, model_fingerprint


class _FixedRanker:
    """Ranks item 0 (in every user's history), then 2, 3, ...: never the target, item 1."""

    def __init__(self, n_items):
        self.row = [0] + list(range(2, n_items))

    def recommend(self, samples, k, exclude_history=True):
        row = [i for i in self.row if not (exclude_history and i == 0)][:k]
        row += [-1] * (k - len(row))
        ids = torch.tensor([row] * len(samples))
        return Recommendations(ids, torch.zeros(ids.shape), [[None] * k for _ in samples])


def test_title_recall_in_the_excluded_table_excludes_the_history(tiny_model, monkeypatch):
    model, tok = tiny_model
    titles = ["Greatest Hits", "Greatest Hits"] + [f"Album {i}" for i in range(2, 40)]
    catalog = Catalog(titles)
    memory = ItemMemory(torch.randn(40, 32), torch.arange(40), 40,
                        {"model_fingerprint": model_fingerprint(model), "template": dataclasses.asdict(DEFAULT_PROMPT)})
    test = [Sample((0,), ("Greatest Hits",), 1, "Greatest Hits")] * 3
    train = [Sample((2,), ("Album 2",), 3, "Album 3")]
    monkeypatch.setattr(ev, "_build", lambda *a: _FixedRanker(40))
    config = ev.EvalConfig(methods=["popularity"], batch_sizes=(1,), time_queries=1)
    record = ev.evaluate(model, tok, memory, train, test, catalog, config=config, log=lambda *_: None)["records"][0]
    assert record["recall@10"] == 0.0
    # Item 0's title equals the target's, but item 0 is in the history: no hit once it is excluded.
    assert record["title_level"]["recall@10"] == 0.0
    assert record["no_exclusion"]["title_level"]["recall@10"] == 1.0
    head, _, row = ev.format_table({"records": [record]}).splitlines()
    cells = dict(zip(head.split(" | "), row.split(" | ")))
    assert cells["title R@10"] == "0.0000" and cells["R@10"] == "0.0000 ± 0.0000"
    assert ev.format_no_exclusion_table({"records": [record]}).splitlines()[2].endswith("| 1.0000 |")


def test_a_memory_for_another_catalog_size_is_refused_before_anything_is_sized_by_it(tiny_model):
    model, tok = tiny_model
    catalog = Catalog([f"Album {i}" for i in range(40)])
    test = [Sample((0,), ("Album 0",), 1, "Album 1")]
    for num_items in (41, 10 ** 13):  # off by one, or a hostile manifest (80 TB of counts)
        memory = ItemMemory(torch.randn(40, 32), torch.arange(40), num_items,
                            {"model_fingerprint": model_fingerprint(model),
                             "template": dataclasses.asdict(DEFAULT_PROMPT)})
        with pytest.raises(ValueError, match=f"built for {num_items} items but the catalog has 40"):
            ev.evaluate(model, tok, memory, test, test, catalog, log=lambda *_: None)


def test_bad_config_values_are_errors():
    for bad in (dict(max_test=0), dict(max_test=-3), dict(m=0), dict(time_queries=0), dict(batch_sizes=())):
        with pytest.raises(ValueError, match="must be (a )?positive"):
            ev.EvalConfig(**bad)


def test_the_l2d_methods_share_one_encoding_and_rank_as_recommend_does(tiny_model, tiny_data, tmp_path):
    """evaluate() encodes the test queries once for every L2D method (a real model's prefill
    is most of their time); the rankings are those of L2DRecommender.recommend."""
    from pyl2d.l2d.decode.recommender import L2DRecommender
    from pyl2d.l2d.memory import build_memory
    from pyl2d.l2d.model.hidden import HiddenStateExtractor

    model, tok = tiny_model
    memory = build_memory(HiddenStateExtractor(model, tok), tiny_data.train, len(tiny_data.catalog), tmp_path / "m",
                          DEFAULT_PROMPT, log=lambda *_: None)
    config = ev.EvalConfig(methods=["l2d-global", "l2d-local"], timing=False, max_test=20, batch_size=8, m=50)
    calls = []
    encode = L2DRecommender.encode

    def counting(self, queries):
        calls.append(len(queries))
        return encode(self, queries)
    try:
        L2DRecommender.encode = counting
        both = ev.evaluate(model, tok, memory, tiny_data.train, tiny_data.test, tiny_data.catalog, config=config,
                           log=lambda *_: None)["records"]
    finally:
        L2DRecommender.encode = encode
    assert calls == [8, 8, 4]  # one pass over the 20 queries, in eval batches
    for record in both:
        alone = ev.evaluate(model, tok, memory, tiny_data.train, tiny_data.test, tiny_data.catalog,
                            config=dataclasses.replace(config, methods=[record["method"]]), log=lambda *_: None)
        samples = ev._test_subset(tiny_data.test, 20, 0)
        rec = L2DRecommender(model, tok, memory, tiny_data.catalog, aggregation=record["method"][4:], m=50,
                             batch_size=8, check_model=False)
        length = min(len(tiny_data.catalog), max(config.ks) + max(len(s.history_ids) for s in samples))
        want = torch.cat([rec.recommend(samples[i:i + 8], length, exclude_history=False).ids for i in (0, 8, 16)])
        ranks = ev.metrics.hit_ranks(ev.metrics.drop_history(want, samples),
                                     torch.tensor([s.target_id for s in samples]))
        expected = ev.metrics.summarize(ranks, max(config.ks), config.ks)
        assert alone["records"][0]["recall@10"] == record["recall@10"]
        assert {k: record[k] for k in expected} == pytest.approx(expected)
