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
