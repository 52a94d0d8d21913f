"""Seed and query variation (pyl2d.l2d.evaluation.spread), the validation split, and reproducible training."""
import math

import pytest
import torch

from pyl2d.l2d.data import Sample, latest_rows, prefix_augment, split_validation
from pyl2d.l2d.data.synthetic import make_synthetic
from pyl2d.l2d.evaluation import spread
from pyl2d.l2d.evaluation.evaluate import format_no_exclusion_table, format_table


def _record(method, r10, ms=1.0):
    return {"method": method, "recall@10": r10, "recall@50": None, "ms_per_query": ms, "batch_size": 16,
            "ms_by_batch_size": {"16": ms}, "seconds": 2.0, "interval": {"recall@10": [r10 - 0.1, r10 + 0.1]},
            "title_level": {"recall@10": r10 / 2}, "unique_title": {"recall@10": r10},
            "no_exclusion": {"recall@10": r10, "title_level": {"recall@10": r10}}}


def test_bootstrap_interval_brackets_the_value_and_is_reproducible():
    ranks = torch.tensor([0, 3, -1, 12, 1, -1, -1, 7] * 25)
    a = spread.bootstrap_intervals(ranks, 50)
    assert a == spread.bootstrap_intervals(ranks, 50)
    value = float(((ranks >= 0) & (ranks < 10)).double().mean())
    lo, hi = a["recall@10"]
    assert lo < value < hi and hi - lo < 0.2
    assert spread.bootstrap_intervals(ranks, 10)["recall@20"] is None  # beyond the list, as summarize
    # Every query a hit: no spread at all.
    assert spread.bootstrap_intervals(torch.zeros(30, dtype=torch.int64), 10)["ndcg@5"] == [1.0, 1.0]


def test_combine_seeds_means_stds_and_keeps_each_seed():
    results = [{"records": [_record("l2d-global", v)], "info": {"n_test": 3}} for v in (0.2, 0.4)]
    combined = spread.combine_seeds(results, [0, 1])
    rec = combined["records"][0]
    assert rec["recall@10"] == pytest.approx(0.3) and rec["std"]["recall@10"] == pytest.approx(math.sqrt(0.02))
    assert rec["recall@50"] is None and rec["std"]["recall@50"] is None
    assert rec["title_level"]["recall@10"] == pytest.approx(0.15)
    assert rec["std"]["no_exclusion"]["title_level"]["recall@10"] == pytest.approx(math.sqrt(0.02))
    assert [r["seed"] for r in rec["per_seed"]] == [0, 1] and combined["info"]["seeds"] == [0, 1]
    assert "interval" not in rec  # the seeds' spread replaces one model's interval
    assert spread.spread_of(rec, "recall@10") == pytest.approx(math.sqrt(0.02))
    assert "over 2 seeds" in spread.spread_label(combined)
    with pytest.raises(ValueError, match="different methods"):
        spread.combine_seeds([results[0], {"records": [_record("beam", 0.1)], "info": {}}], [0, 1])


def test_tables_print_the_spread():
    one = spread.combine_seeds([{"records": [_record("l2d-local", 0.3)], "info": {}}], [0])
    row = format_table(one).splitlines()[2]
    assert "0.3000 ± 0.1000" in row and "bootstrap" in spread.spread_label(one)
    several = spread.combine_seeds([{"records": [_record("l2d-local", v)], "info": {}} for v in (0.2, 0.4)], [0, 1])
    assert f"0.3000 ± {math.sqrt(0.02):.4f}" in format_no_exclusion_table(several)


def test_validation_rows_end_a_sequence_and_never_reach_training():
    data = make_synthetic(n_users=80, n_items=60)
    train, val = split_validation(data.train, 0.1, seed=3)
    assert len(val) == round(0.1 * len(data.train)) and len(train) + len(val) == len(data.train)
    assert (train, val) == split_validation(data.train, 0.1, seed=3)
    seen = {(s.history_ids, s.target_id) for s in prefix_augment(train)}
    assert not any((s.history_ids, s.target_id) in seen for s in val)
    # A user's rows (a) -> b, (a, b) -> c: only the second ends the sequence.
    rows = [Sample((1,), ("a",), 2, "b"), Sample((1, 2), ("a", "b"), 3, "c"), Sample((4,), ("d",), 5, "e")]
    assert latest_rows(rows) == [1, 2]
    with pytest.raises(ValueError, match="only 2 rows end"):
        split_validation(rows, 0.9)
    with pytest.raises(ValueError, match="fraction"):
        split_validation(rows, 1.5)
