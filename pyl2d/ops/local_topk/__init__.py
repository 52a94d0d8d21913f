"""``local_topk``: L2D local aggregation. Per query, the m nearest memory entries are
averaged per item into local representations; items are ranked by the metric against
their local representation, or against their global one (``item_reps``) when none of
their entries is among the m; the k best are returned."""
from __future__ import annotations

from typing import Optional

import torch

from pyl2d import _backend, _checks
from pyl2d.ops.score_topk import METRICS, check_exclude, check_score_range


@torch.library.custom_op("pyl2d::local_topk", mutates_args=())
def _local_topk_op(queries: torch.Tensor, memory: torch.Tensor, memory_item_ids: torch.Tensor,
                   item_reps: torch.Tensor, k: int, m: int, metric: str, exclude: Optional[torch.Tensor],
                   backend: str) -> tuple[torch.Tensor, torch.Tensor]:
    scores, ids = _backend.implementation("local_topk", backend)(
        queries, memory, memory_item_ids, item_reps, k, m, metric, exclude)
    return scores, ids


@_local_topk_op.register_fake
def _(queries, memory, memory_item_ids, item_reps, k, m, metric, exclude, backend):
    b = queries.shape[0]
    return (queries.new_empty((b, k), dtype=torch.float32), queries.new_empty((b, k), dtype=torch.int64))


def check_local_shapes(queries, memory, memory_item_ids, item_reps, metric, *, prefix: str = "",
                       allow_empty: bool = False) -> None:
    """Shapes, dtypes, devices and the metric of :func:`local_topk`'s arguments, the memory
    ones named with ``prefix`` (``pyl2d.distributed`` checks a rank's ``local_`` shard,
    which may be empty: ``allow_empty``)."""
    mem, ids, reps = f"{prefix}memory", f"{prefix}memory_item_ids", f"{prefix}item_reps"
    _checks.vectors("queries", queries, "query")
    for name, t, what in ((mem, memory, "entry"), (reps, item_reps, "item")):
        if allow_empty:
            _checks.tensor(name, t, ndim=2, dtypes=_checks.FLOAT_DTYPES)
        else:
            _checks.vectors(name, t, what)
        if t.shape[1] != queries.shape[1]:
            raise ValueError(f"{name} has dimension {t.shape[1]} but the queries have {queries.shape[1]}")
    _checks.tensor(ids, memory_item_ids, ndim=1, dtypes=_checks.INDEX_DTYPES)
    if memory_item_ids.shape[0] != memory.shape[0]:
        raise ValueError(f"{ids} has {memory_item_ids.shape[0]} entries but {mem} has {memory.shape[0]} rows")
    _checks.same_device([("queries", queries), (mem, memory), (ids, memory_item_ids), (reps, item_reps)])
    _checks.same_dtype([("queries", queries), (mem, memory)])
    _checks.choice("metric", metric, METRICS)


def check_local_args(queries, memory, memory_item_ids, item_reps, k, m, metric, exclude, *,
                     prefix: str = "") -> None:
    check_local_shapes(queries, memory, memory_item_ids, item_reps, metric, prefix=prefix)
    _checks.same_device([("queries", queries), ("exclude", exclude)])
    _checks.k_in_range(k, item_reps.shape[0])
    _checks.k_in_range(m, memory.shape[0], name="m", what="memory entries")
    _checks.ids_in_range(f"{prefix}memory_item_ids", memory_item_ids, item_reps.shape[0], allow_padding=False)
    query_max = _checks.finite("queries", queries)
    memory_max = _checks.finite(f"{prefix}memory", memory)
    reps_max = _checks.finite(f"{prefix}item_reps", item_reps)
    check_exclude(exclude, queries.shape[0], item_reps.shape[0])
    # A local representation is a mean of memory rows, so bounded by max|memory|.
    d = queries.shape[1]
    check_score_range(metric, d, "queries", query_max, f"{prefix}memory", memory_max)
    check_score_range(metric, d, "queries", query_max, f"{prefix}item_reps", reps_max)
    if memory_max is not None:  # the float32 sums behind each local mean
        _checks.fits_float32(m * memory_max, f"{prefix}memory", "the sums of the m nearest entries (m * max|memory|)")


def local_topk(queries: torch.Tensor, memory: torch.Tensor, memory_item_ids: torch.Tensor,
               item_reps: torch.Tensor, k: int, m: int, metric: str = "l2",
               exclude: torch.Tensor | None = None, *, backend: str | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k items per query under L2D local aggregation, best first.

    For each query: its m best memory entries by ``metric`` (ties to the lower entry index);
    each item owning some of them is scored against the mean of those entries (its local
    representation); every other item against ``item_reps[item]`` (its global
    representation). Only items with at least one memory entry (derived from
    ``memory_item_ids``) can be returned: the rows of ``item_reps`` for the others are ignored.

    Args:
        queries: [B, D] float32/float16/bfloat16.
        memory: [M, D], same dtype and device as ``queries``.
        memory_item_ids: [M] int32/int64, the item of each memory entry, in [0, N).
        item_reps: [N, D] any float dtype (e.g. the float32 means of ``segment_mean``).
        k: 1 <= k <= N.
        m: 1 <= m <= M, how many nearest memory entries form the local representations.
        metric: "l2" (score = -Euclidean distance), "ip" or "cosine"; larger is better.
        exclude: optional [B, E] int32/int64 item ids to skip per query; -1 is padding,
            duplicates are fine.
        backend: "torch", "cpu", "triton", "cuda" or None (``PYL2D_BACKEND``, else by device).

    Returns:
        (scores [B, k] float32, ids [B, k] int64). Ties go to the lower id; when fewer than
        k items are admissible the tail is (-inf, -1).

    Raises ValueError (naming the argument) for bad shapes, dtypes, devices or ids, D = 0,
    NaN/Inf, and inputs so large that a float32 score could overflow (as ``score_topk``).
    """
    check_local_args(queries, memory, memory_item_ids, item_reps, k, m, metric, exclude)
    resolved = _backend.resolve(backend, queries.device, "local_topk")
    return _backend.call("local_topk", _local_topk_op, resolved, queries, memory, memory_item_ids, item_reps, k, m,
                         metric, exclude)
