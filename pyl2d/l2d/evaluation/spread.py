"""How much a table's numbers would move: over test queries (bootstrap) and over seeds.

One trained model gives one number per method and metric, and a reader needs to know how
far apart two such numbers must be to mean anything. Two sources of variation are reported:

- :func:`bootstrap_intervals`: the 95% percentile interval of Recall/NDCG@K when the test
  queries are resampled with replacement (same resamples for every method, fixed seed, so
  the intervals are reproducible). This is the query-sampling noise of one model.
- :func:`combine_seeds`: N models trained with different seeds, evaluated on the same test
  queries: each metric's mean, sample standard deviation and per-seed values. This adds the
  training noise that one model's interval cannot show.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

from pyl2d.l2d.evaluation import metrics

BOOTSTRAP_SAMPLES = 1000
BOOTSTRAP_SEED = 0
# Record fields that are per-run facts, not metrics to average.
_NOT_AVERAGED = {"method", "ms_per_query", "batch_size", "ms_by_batch_size", "seconds", "interval", "std",
                 "per_seed"}


def bootstrap_intervals(ranks: torch.Tensor, list_length: int, ks: Sequence[int] = metrics.KS,
                        n_samples: int = BOOTSTRAP_SAMPLES, seed: int = BOOTSTRAP_SEED
                        ) -> dict[str, list[float] | None]:
    """``{"recall@K": [lo, hi], "ndcg@K": [lo, hi]}``: 95% percentile bootstrap intervals over
    the queries of ``ranks`` (0-based hit rank per query, -1 = miss); None where K exceeds
    ``list_length``, as in :func:`metrics.summarize`."""
    n = ranks.shape[0]
    out: dict[str, list[float] | None] = {}
    if n == 0:
        return {f"{name}@{k}": None for name in ("recall", "ndcg") for k in ks}
    gen = torch.Generator().manual_seed(seed)
    picks = torch.randint(0, n, (n_samples, n), generator=gen)
    sampled = ranks.to(torch.int64)[picks]  # [S, n]
    hit_any = sampled >= 0
    gains = torch.where(hit_any, 1.0 / torch.log2(sampled.clamp_min(0).double() + 2.0),
                        torch.zeros((), dtype=torch.float64))
    for name in ("recall", "ndcg"):
        for k in ks:
            if k > list_length:
                out[f"{name}@{k}"] = None
                continue
            hit = hit_any & (sampled < k)
            values = hit.double().mean(1) if name == "recall" else torch.where(hit, gains, 0.0).mean(1)
            lo, hi = torch.quantile(values, torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
            out[f"{name}@{k}"] = [lo, hi]
    return out


def mean_std(values: list[float | None]) -> tuple[float | None, float | None]:
    """(mean, sample standard deviation) of ``values``; None for both if any value is None or
    NaN, and None for the deviation of a single value."""
    present = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if len(present) != len(values) or not present:
        return None, None
    mean = sum(present) / len(present)
    if len(present) < 2:
        return mean, None
    var = sum((v - mean) ** 2 for v in present) / (len(present) - 1)
    return mean, math.sqrt(var)


def _combine(records: list[dict]) -> tuple[dict, dict]:
    """(means, stds) of every numeric field, recursing into nested metric dicts."""
    means, stds = {}, {}
    for key, first in records[0].items():
        if key in _NOT_AVERAGED:
            continue
        if isinstance(first, dict):
            means[key], stds[key] = _combine([r[key] for r in records])
        elif first is None or isinstance(first, (int, float)) and not isinstance(first, bool):
            means[key], stds[key] = mean_std([r.get(key) for r in records])
    return means, stds


def combine_seeds(results: Sequence[dict], seeds: Sequence[int]) -> dict:
    """One result from several seeds' :func:`pyl2d.l2d.evaluation.evaluate.evaluate` results (same test
    queries, same methods): each record holds the means, ``std`` the sample standard
    deviations (same keys), ``per_seed`` the seeds' own records, the latency fields the first
    seed's; ``info`` is the first seed's, with ``seeds``."""
    if not results:
        raise ValueError("combine_seeds needs at least one result")
    if len(results) != len(seeds):
        raise ValueError(f"{len(results)} results but {len(seeds)} seeds")
    methods = [r["method"] for r in results[0]["records"]]
    for result in results[1:]:
        if [r["method"] for r in result["records"]] != methods:
            raise ValueError("the seeds' results evaluate different methods")
    if len(results) == 1:
        return {"records": results[0]["records"], "info": {**results[0]["info"], "seeds": list(seeds)}}
    records = []
    for index, method in enumerate(methods):
        runs = [result["records"][index] for result in results]
        means, stds = _combine(runs)
        # Latency is the first seed's (later seeds may skip timing: it does not depend on the seed).
        records.append({"method": method, **means, "ms_per_query": runs[0]["ms_per_query"],
                        "batch_size": runs[0]["batch_size"],
                        "ms_by_batch_size": runs[0]["ms_by_batch_size"],
                        "seconds": sum(r["seconds"] for r in runs), "std": stds,
                        "per_seed": [{"seed": s, **r} for s, r in zip(seeds, runs)]})
    return {"records": records, "info": {**results[0]["info"], "seeds": list(seeds)}}


def walk(values: dict | None, path: Sequence[str]) -> dict:
    """``values[path[0]][path[1]]...``, {} where a level is missing."""
    for name in path:
        values = (values or {}).get(name)
    return values or {}


def spread_of(record: dict, key: str, *nested: str) -> float | None:
    """The ± to print next to ``record[nested...][key]``: the standard deviation over seeds
    when there are several, else half the width of the bootstrap interval (None if neither)."""
    if record.get("std") is not None:
        return walk(record["std"], nested).get(key)
    bounds = walk(record.get("interval"), nested).get(key)
    return None if bounds is None else (bounds[1] - bounds[0]) / 2.0


def spread_label(result: dict) -> str:
    """What the ± of a table means, for its caption."""
    seeds = result.get("info", {}).get("seeds") or []
    if len(seeds) > 1:
        return f"mean ± standard deviation over {len(seeds)} seeds ({', '.join(map(str, seeds))})"
    return "± half the 95% bootstrap interval over the test queries (one model)"
