"""``score_topk``: each query's k best items by inner product, cosine or L2, without
materialising the queries x items score matrix (on the cpu, triton and cuda backends)."""
from __future__ import annotations

import math
from typing import Optional

import torch

from pyl2d import _backend, _checks, _codes

METRICS = _codes.METRICS


@torch.library.custom_op("pyl2d::score_topk", mutates_args=())
def _score_topk_op(queries: torch.Tensor, items: torch.Tensor, k: int, metric: str,
                   exclude: Optional[torch.Tensor], item_norms: Optional[torch.Tensor],
                   backend: str) -> tuple[torch.Tensor, torch.Tensor]:
    scores, ids = _backend.implementation("score_topk", backend)(queries, items, k, metric, exclude, item_norms)
    return scores, ids


@_score_topk_op.register_fake
def _(queries, items, k, metric, exclude, item_norms, backend):
    b = queries.shape[0]
    return (queries.new_empty((b, k), dtype=torch.float32), queries.new_empty((b, k), dtype=torch.int64))


def check_items(items: torch.Tensor, item_norms: torch.Tensor | None, dim: int | None = None
                ) -> tuple[float | None, float | None]:
    """Validate an item matrix (and its optional norms) against a query dimension; returns
    (max |items|, max item_norms), None where not checked (while tracing)."""
    _checks.vectors("items", items, "item")
    if dim is not None and items.shape[1] != dim:
        raise ValueError(f"items has dimension {items.shape[1]} but the queries have {dim}")
    items_max = _checks.finite("items", items)
    norms_max = None
    if item_norms is not None:
        _checks.tensor("item_norms", item_norms, ndim=1, dtypes=(torch.float32,))
        if item_norms.shape[0] != items.shape[0]:
            raise ValueError(f"item_norms has {item_norms.shape[0]} entries but items has {items.shape[0]} rows")
        _checks.same_device([("items", items), ("item_norms", item_norms)])
        norms_range = _checks.value_range("item_norms", item_norms)
        if norms_range is not None:
            if norms_range[0] < 0:
                raise ValueError("item_norms holds negative values; it must be the items' L2 norms")
            norms_max = norms_range[1]
    return items_max, norms_max


def check_score_range(metric: str, dim: int, query_name: str, query_max: float | None, items_name: str,
                      items_max: float | None, norms_max: float | None = None) -> None:
    """ValueError naming the larger input when a float32 score (or norm) could overflow.

    Bounds, with |q| <= sqrt(D) max|q| and |x| <= max(sqrt(D) max|x|, max item_norms):
    ip |q.x| <= D max|q| max|x|; cosine needs |q|^2 and |x|^2; l2 needs (|q| + |x|)^2."""
    if query_max is None or items_max is None:
        return
    root = math.sqrt(dim)
    qn, xn = root * query_max, max(root * items_max, norms_max or 0.0)
    x_name = "item_norms" if norms_max is not None and norms_max > root * items_max else items_name
    big = query_name if qn >= xn else x_name
    if metric == "ip":
        big = query_name if query_max >= items_max else items_name
        _checks.fits_float32(dim * query_max * items_max, big,
                             f"the inner products (D * max|{query_name}| * max|{items_name}|)")
    elif metric == "cosine":
        _checks.fits_float32(max(qn, xn) ** 2, big, f"the squared norms of {big}")
    else:
        _checks.fits_float32((qn + xn) ** 2, big, f"the squared distances between {query_name} and {items_name}")


def check_exclude(exclude: torch.Tensor | None, batch: int, n_items: int) -> None:
    if exclude is None:
        return
    _checks.tensor("exclude", exclude, ndim=2, dtypes=_checks.INDEX_DTYPES)
    if exclude.shape[0] != batch:
        raise ValueError(f"exclude has {exclude.shape[0]} rows but there are {batch} queries")
    _checks.ids_in_range("exclude", exclude, n_items, allow_padding=True)


def check_search(query_name: str, query: torch.Tensor, batch: int, dim: int, items: torch.Tensor, k, metric,
                 exclude: torch.Tensor | None, item_norms: torch.Tensor | None, query_max: float | None) -> None:
    """Checks shared by the ops that search ``items`` for ``batch`` queries of size ``dim``
    taken from the tensor ``query`` (named ``query_name`` in errors), whose entries are at
    most ``query_max`` in magnitude (None: unchecked)."""
    _checks.tensor("items", items, ndim=2, dtypes=_checks.FLOAT_DTYPES)
    _checks.same_device([(query_name, query), ("items", items), ("exclude", exclude)])
    _checks.same_dtype([(query_name, query), ("items", items)])
    items_max, norms_max = check_items(items, item_norms, dim)
    _checks.choice("metric", metric, METRICS)
    _checks.k_in_range(k, items.shape[0])
    check_exclude(exclude, batch, items.shape[0])
    check_score_range(metric, dim, query_name, query_max, "items", items_max, norms_max)


def score_topk(queries: torch.Tensor, items: torch.Tensor, k: int, metric: str = "ip",
               exclude: torch.Tensor | None = None, item_norms: torch.Tensor | None = None,
               *, backend: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k items per query, best first.

    Args:
        queries: [B, D] float32/float16/bfloat16.
        items: [N, D], same dtype and device as ``queries``.
        k: 1 <= k <= N.
        metric: "ip" (inner product), "cosine", or "l2" (score = -Euclidean distance, so
            larger is always better).
        exclude: optional [B, E] int32/int64 item ids to skip per query (e.g. the user's
            history); -1 is padding, duplicates are fine.
        item_norms: optional [N] float32 L2 norms of ``items`` (used by cosine and l2; pass
            them when scoring the same items repeatedly).
        backend: "torch", "cpu", "triton", "cuda" or None (``PYL2D_BACKEND``, else by device).

    Returns:
        (scores [B, k] float32, ids [B, k] int64). Ties go to the lower id; when fewer than
        k items are admissible the tail is (-inf, -1).

    Raises ValueError (naming the argument) for bad shapes, dtypes or devices, D = 0, NaN/Inf
    in any input, and inputs so large that a float32 score could overflow (e.g. for ip
    ``D * max|queries| * max|items|`` beyond half the float32 maximum): every backend
    rejects them alike rather than return inf/NaN scores.
    """
    _checks.vectors("queries", queries, "query")
    query_max = _checks.finite("queries", queries)
    check_search("queries", queries, queries.shape[0], queries.shape[1], items, k, metric, exclude, item_norms,
                 query_max)
    resolved = _backend.resolve(backend, queries.device, "score_topk")
    return _backend.call("score_topk", _score_topk_op, resolved, queries, items, k, metric, exclude, item_norms)
