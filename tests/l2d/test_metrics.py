"""Metrics on hand-computed cases."""
import math

import pytest
import torch

from pyl2d.l2d.data import Catalog, Sample
from pyl2d.l2d.evaluation import metrics


def test_recall_and_ndcg_by_hand():
    ranked = torch.tensor([[5, 3, 9], [1, 2, 3], [7, -1, -1], [4, 4, 8]])
    targets = torch.tensor([3, 0, 7, 8])
    ranks = metrics.hit_ranks(ranked, targets)
    assert ranks.tolist() == [1, -1, 0, 2]
    assert metrics.recall_at_k(ranks, 1) == pytest.approx(1 / 4)
    assert metrics.recall_at_k(ranks, 2) == pytest.approx(2 / 4)
    assert metrics.recall_at_k(ranks, 3) == pytest.approx(3 / 4)
    assert metrics.ndcg_at_k(ranks, 3) == pytest.approx((1 / math.log2(3) + 1 + 1 / math.log2(4)) / 4)
    assert metrics.ndcg_at_k(ranks, 1) == pytest.approx(1 / 4)
    s = metrics.summarize(ranks, 3, ks=(1, 3, 5))
    assert s["recall@5"] is None and s["ndcg@5"] is None and s["recall@3"] == pytest.approx(0.75)
    assert metrics.hit_ranks(torch.tensor([[-1, -1]]), torch.tensor([-1])).tolist() == [-1]


def test_history_exclusion_and_title_level():
    samples = [Sample((3,), ("c",), 9, "x"), Sample((), (), 1, "b")]
    ranked = torch.tensor([[3, 5, 9], [1, 2, 3]])
    kept = metrics.drop_history(ranked, samples)
    assert kept.tolist() == [[5, 9, -1], [1, 2, 3]]
    cat = Catalog(["a", "b", "b", "c", "d", "e", "f", "g", "h", "x"])
    titles = metrics.titles_of(torch.tensor([[2, 0, -1]]), cat)
    assert titles == [["b", "a", None]]
    assert metrics.title_ranks(titles, ["b"]).tolist() == [0]  # item 1 is missed, its title is hit
    assert metrics.unique_title_mask([Sample((), (), 1, "b"), Sample((), (), 0, "a")], cat).tolist() == [False, True]


def test_ms_per_query_picks_the_best_batch():
    calls = []

    def run(batch):
        calls.append(len(batch))

    ms, bs, all_ = metrics.ms_per_query(run, list(range(20)), batch_sizes=(1, 16, 64), n_queries=20)
    assert set(all_) == {1, 16, 20} and bs in all_ and ms == min(all_.values())
    assert sum(calls) == 1 + 20 + 16 + 20 + 20 + 20  # warm-up batch + the timed queries, per batch size
