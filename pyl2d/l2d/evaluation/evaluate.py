"""Evaluate L2D against the language-space baselines on one model and one test set.

Every method ranks each test query once, without history exclusion and long enough that
excluding the history afterwards still leaves max(K) items (beam search: its ``beams``
titles). From those lists, with the history items excluded (the headline numbers): item-level
Recall/NDCG@K, title-level scores (D3 way, on the titles of the items left) and item-level
scores on the targets whose title is unique; without exclusion (``no_exclusion``): item- and
title-level scores; and HR/NDCG@1..50 in the calc.py convention of BIGRec/D3/MiniOneRec
(``calc``: :mod:`pyl2d.l2d.evaluation.calc_convention`), whose result files ``calc_output`` writes. Latency is measured separately, on ``recommend(batch,
k=10, exclude_history=True)`` at each batch size, and the best batch size is reported.
"""
from __future__ import annotations

import dataclasses
import pathlib
import random
import time
from typing import Sequence

import torch

from pyl2d._checks import positive_ints
from pyl2d.l2d.data.prompts import PromptTemplate
from pyl2d.l2d.data.records import Catalog, Sample, with_history
from pyl2d.l2d.decode.recommender import DEFAULT_METRIC, DEFAULT_REPRESENTATION, L2DRecommender, resolve_template
from pyl2d.l2d.decode.representation import Representation
from pyl2d.l2d.evaluation import calc_convention, metrics, spread
from pyl2d.l2d.evaluation.baselines import BeamSearchDecoder, GroundedDecoder, PopularityRecommender
from pyl2d.l2d.memory import ItemMemory
from pyl2d.l2d.model.hidden import _progress

METHODS = ("l2d-global", "l2d-local", "grounded", "beam", "popularity")
TIMING_K = 10


@dataclasses.dataclass
class EvalConfig:
    methods: Sequence[str] = METHODS
    ks: Sequence[int] = metrics.KS
    metric: str = DEFAULT_METRIC
    m: int = 1000
    representation: Representation = DEFAULT_REPRESENTATION  # L2D's pre-transform ("raw": the paper's)
    local_weight: float = 1.0  # L2D-local: w * local + (1 - w) * global (1: the paper)
    beams: int = 10
    batch_size: int = 64
    batch_sizes: Sequence[int] = metrics.BATCH_SIZES
    time_queries: int = 64
    max_test: int | None = None
    seed: int = 0
    timing: bool = True  # False: no latency measurement (ms fields None), e.g. for a run's later seeds
    calc_output: str | None = None  # a folder: write <method>.json calc.py result files there

    def __post_init__(self):
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ValueError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}")
        if not self.ks or min(self.ks) < 1:
            raise ValueError(f"ks must be positive, got {list(self.ks)}")
        positive_ints(self, ("m", "beams", "batch_size", "time_queries") + (("max_test",) if self.max_test is not None
                                                                             else ()))
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise ValueError(f"batch_sizes must be positive, got {list(self.batch_sizes)}")


def _test_subset(test: Sequence[Sample], max_test: int | None, seed: int) -> list[Sample]:
    usable = with_history(test, "test")
    if max_test is not None and max_test < len(usable):
        keep = sorted(random.Random(seed).sample(range(len(usable)), max_test))
        usable = [usable[i] for i in keep]
    return usable


def _build(method: str, model, tokenizer, memory, train, catalog, template, config, popularity, shared: dict):
    """The runner of ``method``; ``shared`` carries what the L2D methods can share (the
    representation fitted on the memory once)."""
    if method.startswith("l2d-"):
        aggregation = method[4:]
        rec = L2DRecommender(model, tokenizer, memory, catalog, metric=config.metric,
                             aggregation=aggregation, m=config.m, template=template,
                             batch_size=config.batch_size, check_model=False, representation=config.representation,
                             local_weight=config.local_weight if aggregation == "local" else 1.0,
                             transform=shared.get("transform"))
        shared["transform"] = rec.transform
        return rec
    if method == "grounded":
        return GroundedDecoder(model, tokenizer, catalog, template, batch_size=config.batch_size)
    if method == "beam":
        return BeamSearchDecoder(model, tokenizer, catalog, template, num_beams=config.beams,
                                 item_popularity=popularity.counts)
    return popularity


def evaluate(model, tokenizer, memory: ItemMemory, train: Sequence[Sample], test: Sequence[Sample],
             catalog: Catalog, template: PromptTemplate | None = None, config: EvalConfig | None = None,
             log=print, progress: bool = False) -> dict:
    """{"records": one dict per method, "info": what was evaluated}. Every method prompts with
    ``template``, by default the one stored with the memory. ``progress``: a bar per method
    over its test batches (beam and grounded decoding take minutes on a real model)."""
    import warnings

    config = config or EvalConfig()
    memory.check_catalog(catalog)
    memory.check_model(model)
    template = resolve_template(memory, template)
    samples = _test_subset(test, config.max_test, config.seed)
    targets = torch.tensor([s.target_id for s in samples])
    unique = metrics.unique_title_mask(samples, catalog)
    counts = memory.item_counts()
    max_k = max(config.ks)
    max_hist = max(len(s.history_ids) for s in samples)
    popularity = PopularityRecommender(train, len(catalog))
    info = {
        "n_test": len(samples), "n_catalog": len(catalog), "memory_entries": len(memory),
        "items_without_memory": int((counts == 0).sum()),
        "test_targets_without_memory": float((counts[targets] == 0).double().mean()),
        "test_targets_with_unique_title": float(unique.double().mean()),
        "metric": config.metric, "m": config.m, "representation": config.representation.describe(),
        "local_weight": config.local_weight, "beams": config.beams, "timing_k": TIMING_K,
        "timing_queries": config.time_queries, "batch_sizes": list(config.batch_sizes),
    }
    log(f"evaluating on {len(samples)} test queries; {info['test_targets_without_memory']:.1%} of their "
        f"targets never occur as a training target, {info['items_without_memory']} catalog items have no memory")
    records = []
    shared: dict = {}
    for method in config.methods:
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the undecodable count is reported once, above
            runner = _build(method, model, tokenizer, memory, train, catalog, template, config, popularity, shared)
        if method == "beam":
            length = config.beams
        else:
            length = min(len(catalog), max_k + max_hist)
        ids, titles = [], []
        # The L2D methods rank the same query states: encoded once, by the first, batch by batch
        # as recommend() would (so the states, and the rankings, are the same as its).
        states = shared.setdefault("states", []) if method.startswith("l2d-") else None
        for n, i in enumerate(_progress(range(0, len(samples), config.batch_size), f"eval {method}", progress)):
            batch = samples[i:i + config.batch_size]
            if states is not None:
                if n == len(states):
                    states.append(runner.encode(batch).cpu())  # host memory: a large test set fits
                ids.append(runner.rank(states[n], length)[1][:, :length])
                continue
            out = runner.recommend(batch, length, exclude_history=False)
            ids.append(out.ids[:, :length])
            if method == "beam":
                titles += out.titles
        ranked = torch.cat(ids)
        if method != "beam":
            titles = metrics.titles_of(ranked, catalog)
        kept = metrics.drop_history(ranked, samples)
        ranks = metrics.hit_ranks(kept, targets)
        excl_length = length if method == "beam" else max_k
        record = {"method": method, **metrics.summarize(ranks, excl_length, config.ks),
                  "interval": spread.bootstrap_intervals(ranks, excl_length, config.ks)}
        k_timing = min(TIMING_K, config.beams) if method == "beam" else TIMING_K
        ms, best_bs, by_bs = None, None, {}
        if config.timing:
            ms, best_bs, by_bs = metrics.ms_per_query(
                lambda batch: runner.recommend(batch, k_timing, exclude_history=True), samples,
                config.batch_sizes, config.time_queries)
        record.update(ms_per_query=ms, batch_size=best_bs, ms_by_batch_size={str(k): v for k, v in by_bs.items()})
        target_titles = [s.target_title for s in samples]
        record["no_exclusion"] = {
            **metrics.summarize(metrics.hit_ranks(ranked, targets), length, config.ks),
            "title_level": metrics.summarize(metrics.title_ranks(titles, target_titles), length, config.ks)}
        # Same exclusion as the item-level headline: the titles of the list without the history items.
        record["title_level"] = metrics.summarize(
            metrics.title_ranks(metrics.titles_of(kept, catalog), target_titles), excl_length, config.ks)
        record["unique_title"] = metrics.summarize(ranks[unique], excl_length, config.ks)
        _add_calc(record, method, titles, samples, template, config.calc_output)
        record["seconds"] = time.perf_counter() - start
        records.append(record)
        timing = f"{ms:.2f} ms/query (batch {best_bs})  " if ms is not None else ""
        log(f"  {method:<11} R@10 {metrics.fmt(record.get('recall@10'))}  {timing}[{record['seconds']:.0f} s]")
    if config.calc_output is not None:
        folder = pathlib.Path(config.calc_output)
        log(f"calc.py result files written to {folder}/<method>.json ({', '.join(config.methods)}); score them, "
            f"or compare with another project's, with: pyl2d calc {folder / (config.methods[0] + '.json')} ...")
    return {"records": records, "info": info}


def _add_calc(record: dict, method: str, titles: list, samples: Sequence[Sample], template: PromptTemplate,
              folder: str | None) -> None:
    """``record["calc"]``: the calc.py-convention scores of the ranked titles (first 50, no
    exclusion) with their bootstrap intervals; their result file in ``folder`` if given."""
    lists = [["" if t is None else t for t in row[:max(calc_convention.KS)]] for row in titles]
    targets = [s.target_title for s in samples]
    ranks = torch.tensor(calc_convention.first_hits(lists, targets), dtype=torch.int64)
    length = min(len(row) for row in lists)
    record["calc"] = calc_convention.scores_of_ranks(ranks, length)
    bounds = spread.bootstrap_intervals(ranks, length, calc_convention.KS)
    record["interval"]["calc"] = {key.replace("recall@", "hr@"): v for key, v in bounds.items() if v is not None}
    if folder is not None:
        inputs = [template.user_text(s.history_titles) for s in samples]
        calc_convention.write_results(pathlib.Path(folder, f"{method}.json"), lists, targets, inputs)


def _cell(record: dict, key: str, *nested: str) -> str:
    """``record[nested...][key]`` formatted, with its ± (:func:`spread.spread_of`) if known."""
    value = spread.walk(record, nested).get(key)
    text = metrics.fmt(value)
    plus = spread.spread_of(record, key, *nested) if value is not None else None
    return f"{text} ± {plus:.4f}" if plus is not None else text


def format_table(result: dict, ks: Sequence[int] = metrics.KS) -> str:
    """A Markdown table, history excluded throughout: item-level Recall/NDCG, title-level and
    unique-title Recall@10, and ms per query at the best batch size; each score with its ±
    (:func:`spread.spread_label` says which) where known."""
    head = ["method"] + [f"R@{k}" for k in ks] + [f"N@{k}" for k in ks] + ["title R@10", "uniq R@10", "ms/query (batch)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in result["records"]:
        cells = [r["method"]] + [_cell(r, f"recall@{k}") for k in ks] + [_cell(r, f"ndcg@{k}") for k in ks]
        cells += [_cell(r, "recall@10", "title_level"), _cell(r, "recall@10", "unique_title"),
                  "-" if r["ms_per_query"] is None else f"{r['ms_per_query']:.2f} ({r['batch_size']})"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_no_exclusion_table(result: dict, ks: Sequence[int] = metrics.KS) -> str:
    """A Markdown table, history not excluded: item-level Recall/NDCG and title-level Recall@10."""
    head = ["method"] + [f"R@{k}" for k in ks] + [f"N@{k}" for k in ks] + ["title R@10"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in result["records"]:
        cells = [r["method"]] + [_cell(r, f"recall@{k}", "no_exclusion") for k in ks]
        cells += [_cell(r, f"ndcg@{k}", "no_exclusion") for k in ks]
        cells.append(_cell(r, "recall@10", "no_exclusion", "title_level"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_calc_table(result: dict) -> str:
    """A Markdown table of HR/NDCG@1,3,5,10,20,50 in the calc.py convention (title match,
    history not excluded), each with its ± where known; "-" where K exceeds the list."""
    ks = calc_convention.KS
    head = ["method"] + [f"HR@{k}" for k in ks] + [f"NDCG@{k}" for k in ks]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in result["records"]:
        cells = [r["method"]] + [_cell(r, f"{name}@{k}", "calc") for name in ("hr", "ndcg") for k in ks]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def save_plot(result: dict, path: str, k: int = 10, title: str = "") -> bool:
    """Accuracy (item-level Recall@k, with its ± as an error bar) against ms per query, log x
    axis. False (and nothing written) when matplotlib is not installed."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in result["records"]:
        y = r.get(f"recall@{k}")
        if y is None or r["ms_per_query"] is None:
            continue
        err = spread.spread_of(r, f"recall@{k}")
        ax.errorbar(r["ms_per_query"], y, yerr=err, fmt="o", markersize=6, capsize=4)
        ax.annotate(r["method"], (r["ms_per_query"], y), textcoords="offset points", xytext=(5, 5))
    ax.set_xscale("log")
    ax.set_xlabel("milliseconds per query (best batch size, log scale)")
    ax.set_ylabel(f"Recall@{k} (item level, history excluded)")
    ax.set_title(title or "accuracy vs latency", fontsize=10)
    fig.text(0.01, 0.01, "error bars: " + spread.spread_label(result), fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True
