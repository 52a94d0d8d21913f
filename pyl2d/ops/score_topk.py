"""``score_topk``: each query's k best items by inner product, cosine or L2, without
materialising the queries x items score matrix (on the cpu, triton and cuda backends)."""
from __future__ import annotations

from typing import Optional

import torch

from pyl2d import _backend, _checks

METRICS = ("ip", "cosine", "l2")


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


def check_items(items: torch.Tensor, item_norms: torch.Tensor | None, dim: int | None = None) -> None:
    """Validate an item matrix (and its optional norms) against a query dimension."""
    _checks.tensor("items", items, ndim=2, dtypes=_checks.FLOAT_DTYPES)
    if items.shape[0] == 0:
        raise ValueError("items is empty: it must hold at least one item")
    if dim is not None and items.shape[1] != dim:
        raise ValueError(f"items has dimension {items.shape[1]} but the queries have {dim}")
    _checks.finite("items", items)
    if item_norms is not None:
        _checks.tensor("item_norms", item_norms, ndim=1, dtypes=(torch.float32,))
        if item_norms.shape[0] != items.shape[0]:
            raise ValueError(f"item_norms has {item_norms.shape[0]} entries but items has {items.shape[0]} rows")
        _checks.same_device([("items", items), ("item_norms", item_norms)])
        _checks.finite("item_norms", item_norms)
        if not _checks.tracing() and bool((item_norms < 0).any()):
            raise ValueError("item_norms holds negative values; it must be the items' L2 norms")


def check_exclude(exclude: torch.Tensor | None, batch: int, n_items: int) -> None:
    if exclude is None:
        return
    _checks.tensor("exclude", exclude, ndim=2, dtypes=_checks.INDEX_DTYPES)
    if exclude.shape[0] != batch:
        raise ValueError(f"exclude has {exclude.shape[0]} rows but there are {batch} queries")
    _checks.ids_in_range("exclude", exclude, n_items, allow_padding=True)


def check_search(query_name: str, query: torch.Tensor, batch: int, dim: int, items: torch.Tensor, k, metric,
                 exclude: torch.Tensor | None, item_norms: torch.Tensor | None) -> None:
    """Checks shared by the ops that search ``items`` for ``batch`` queries of size ``dim``
    taken from the tensor ``query`` (named ``query_name`` in errors)."""
    _checks.tensor("items", items, ndim=2, dtypes=_checks.FLOAT_DTYPES)
    _checks.same_device([(query_name, query), ("items", items), ("exclude", exclude)])
    _checks.same_dtype([(query_name, query), ("items", items)])
    check_items(items, item_norms, dim)
    _checks.choice("metric", metric, METRICS)
    _checks.k_in_range(k, items.shape[0])
    check_exclude(exclude, batch, items.shape[0])


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
    """
    _checks.tensor("queries", queries, ndim=2, dtypes=_checks.FLOAT_DTYPES)
    if queries.shape[0] == 0:
        raise ValueError("queries is empty: it must hold at least one query")
    check_search("queries", queries, queries.shape[0], queries.shape[1], items, k, metric, exclude, item_norms)
    _checks.finite("queries", queries)
    resolved = _backend.resolve(backend, queries.device, "score_topk")
    return _score_topk_op(queries, items, k, metric, exclude, item_norms, resolved)
