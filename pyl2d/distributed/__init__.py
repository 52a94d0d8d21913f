"""Exact search over items or memory entries partitioned across the ranks of a
torch.distributed process group (gloo on CPU, NCCL on GPU; launched by torchrun,
accelerate, DeepSpeed or SLURM alike).

Every rank passes the same queries (``gather_rows`` makes them from data-parallel encoded
ones), k, m, metric and exclude (global ids), and its own shard; every rank gets the same
result, equal to the single-device op's on the concatenated shards: same scores, same
order, ties to the lower *global* id. What crosses the network per query is a few
``W x (k or m)`` candidate lists (12 bytes per candidate), never ``B x N``.

Why the merges are exact:

* ``score_topk``: the global top-k is a subset of the union of the ranks' top-k (an item
  outside its rank's top-k has k better items on that rank alone), so the top-k of the
  gathered W x k candidates, under the same total order (score desc, global id asc), is the
  global top-k.
* ``local_topk``: the memory is partitioned **by item** (all entries of an item on one
  rank, as :func:`partition_by_item` does). Step 1 is ``score_topk`` over the memory
  entries with m: its m-th candidate (s_m, i_m) is the query's global m-th neighbour, and
  a rank's entries among the global m nearest are exactly its entries with
  (score, -index) >= (s_m, -i_m), all of which are in its own top-m. Because an item's
  entries live on one rank, that rank sees every one of the item's entries among the m
  nearest and forms the item's local mean exactly as the single-device op does; the items
  without such entries keep their global score. Each rank ranks its own items this way
  (the k + m + E candidate bound of pyl2d/ops/local_topk/_stages.py holds per rank, for
  the rank's items), and the global top-k is the merge of the ranks' top-k, as above.
"""
from __future__ import annotations

import torch

from pyl2d import _checks, _topk
from pyl2d.distributed import _comm
from pyl2d.distributed._comm import gather_rows
from pyl2d.ops import score_topk as _single_score_topk
from pyl2d.ops.local_topk import _stages as _local_stages
from pyl2d.ops.local_topk import check_local_args, check_local_shapes
from pyl2d.ops.score_topk import METRICS, check_exclude, check_search

__all__ = ["gather_rows", "local_topk", "partition_by_item", "score_topk", "shard_bounds"]


def shard_bounds(n: int, world: int, rank: int) -> tuple[int, int]:
    """[begin, end) of rank's contiguous share of n rows split as evenly as possible."""
    base, extra = divmod(n, world)
    begin = rank * base + min(rank, extra)
    return begin, begin + base + (1 if rank < extra else 0)


def partition_by_item(memory_item_ids: torch.Tensor, num_items: int, world: int, rank: int
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Which items and memory entries rank owns when the memory is sharded by item:
    (owned item ids, ascending; owned memory row indices, ascending). Items are dealt out
    by id modulo the world size, so every rank gets a similar share of any catalog, and all
    ``num_items`` are owned by some rank (those without memory entries too)."""
    ids = memory_item_ids.to(torch.int64)
    rows = ((ids % world) == rank).nonzero().flatten()
    return torch.arange(rank, num_items, world, device=ids.device), rows


def _merge(scores: torch.Tensor, ids: torch.Tensor, k: int, group, device) -> tuple[torch.Tensor, torch.Tensor]:
    """The best k of every rank's [B, k] candidates (global ids), identical on all ranks."""
    all_scores = _comm.all_gather(scores.to(torch.float32), group, device)  # [W, B, k]
    all_ids = _comm.all_gather(ids.to(torch.int64), group, device)
    b = scores.shape[0]
    flat_scores = all_scores.permute(1, 0, 2).reshape(b, -1)
    flat_ids = all_ids.permute(1, 0, 2).reshape(b, -1)
    return _topk.merge_candidates(flat_scores, flat_ids, k)


def _to_local_ids(exclude: torch.Tensor | None, lookup) -> torch.Tensor | None:
    if exclude is None or exclude.shape[1] == 0:
        return None
    return lookup(exclude.to(torch.int64))


def score_topk(queries: torch.Tensor, local_items: torch.Tensor, k: int, metric: str = "ip",
               exclude: torch.Tensor | None = None, local_item_norms: torch.Tensor | None = None, *,
               local_ids: torch.Tensor | None = None, num_ids: int | None = None, group=None,
               backend: str | None = None, check_disjoint: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k over an item matrix split by rows across ``group``. This rank's rows are the
    items ``local_ids`` (ascending global ids, no id on two ranks: checked, a shared id is one
    ValueError on every rank; ``check_disjoint=False``, given on every rank, skips the check,
    an all-reduce of a byte per id, for ids the caller partitioned itself), or by default the next
    contiguous block: global rows [offset, offset + len(local_items)) with offset the row
    counts of the lower ranks. Ranks may hold different counts, or none (a [0, D] tensor).
    ``num_ids``: the size of the id space ``exclude`` ids are checked against, when the
    ranks' ``local_ids`` hold only some of it (a catalog's items that have vectors); by
    default the highest id held, or the row count, whichever is larger.
    Returns (scores [B, k], global ids [B, k]) on every rank, as :func:`pyl2d.score_topk`
    on the whole matrix. k may be up to the total item count."""
    rank, world = _comm.require_group(group)
    device = _comm.comm_device(group, queries.device)
    n_local = local_items.shape[0] if isinstance(local_items, torch.Tensor) else 0

    def check():
        _checks.vectors("queries", queries, "query")
        _checks.tensor("local_items", local_items, ndim=2, dtypes=_checks.FLOAT_DTYPES)
        if local_items.shape[1] != queries.shape[1]:
            raise ValueError(f"local_items has dimension {local_items.shape[1]} but the queries have "
                             f"{queries.shape[1]}")
        if local_ids is not None:
            _check_ascending_ids("local_ids", local_ids, n_local)
        _checks.choice("metric", metric, METRICS)
        _check_int("k", k)
        if num_ids is not None:
            _check_int("num_ids", num_ids)
        _check_exclude_shape(exclude)
        if n_local:
            check_search("queries", queries, queries.shape[0], queries.shape[1], local_items, 1, metric,
                                   None, local_item_norms, _checks.finite("queries", queries))
    _comm.check_together(check, group)
    _comm.agree({"queries rows": queries.shape[0], "queries dimension": queries.shape[1], "k": _as_int(k),
                 "metric": METRICS.index(metric), "exclude width": -1 if exclude is None else exclude.shape[1],
                 "local_ids given": local_ids is not None, "num_ids": -1 if num_ids is None else _as_int(num_ids),
                 "check_disjoint": int(bool(check_disjoint))}, group, device)
    if local_ids is not None and check_disjoint:
        _comm.disjoint("local_ids", local_ids, group, device)
    last_id = int(local_ids.max()) + 1 if local_ids is not None and n_local else 0
    sizes = _comm.gather_ints([n_local, last_id], group, device)
    total = sum(r[0] for r in sizes)
    n_ids = max(total, max(r[1] for r in sizes))

    def check_global():
        if num_ids is not None:
            if _as_int(num_ids) < n_ids:
                raise ValueError(f"num_ids must be an int >= {n_ids} (the ids the ranks hold), got {num_ids!r}")
        _checks.k_in_range(k, total, what="items on all ranks")
        check_exclude(exclude, queries.shape[0], n_ids if num_ids is None else num_ids)
    _comm.check_together(check_global, group)
    b = queries.shape[0]
    scores, ids = _topk.empty_candidates(b, k, queries.device)
    if n_local:
        if local_ids is None:
            start = sum(r[0] for r in sizes[:rank])
            ids_of = torch.arange(start, start + n_local, device=queries.device)
        else:
            ids_of = local_ids.to(queries.device, torch.int64)
        local_exclude = _to_local_ids(exclude, lambda e: _lookup(ids_of, e))
        s, i = _single_score_topk(queries, local_items, min(k, n_local), metric, local_exclude, local_item_norms,
                                    backend=backend)
        scores, ids = _topk.pad_candidates(s, torch.where(i >= 0, ids_of[i.clamp_min(0)], -1), k)
    return _merge(scores, ids, k, group, device)


def _as_int(value) -> int:
    """An int argument as exchanged in the agreement check (checked to be an int on every
    rank by _check_int before it, so the values compared are the ones passed)."""
    return int(value)


def _check_int(name: str, value) -> None:
    """Run inside check_together, before the agreement: a non-int (3.0, True, "3") on one
    rank is reported as what it is, not as a disagreement with a placeholder value."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an int, got {value!r} ({type(value).__name__})")


def _check_exclude_shape(exclude) -> None:
    """exclude's kind and rank, checked on every rank before its width is exchanged (its ids
    are checked against the global id count after the exchange)."""
    if exclude is not None:
        _checks.tensor("exclude", exclude, ndim=2, dtypes=_checks.INDEX_DTYPES)


def _check_ascending_ids(name: str, t, n: int) -> None:
    _checks.tensor(name, t, ndim=1, dtypes=_checks.INDEX_DTYPES)
    if t.shape[0] != n:
        raise ValueError(f"{name} has {t.shape[0]} entries but should have {n} (one per row)")
    _checks.ids_in_range(name, t, 1 << 32, allow_padding=False)
    if t.numel() > 1 and not bool((t[1:] > t[:-1]).all()):
        raise ValueError(f"{name} must be ascending without repeats")


def local_topk(queries: torch.Tensor, local_memory: torch.Tensor, local_memory_item_ids: torch.Tensor,
               local_memory_index: torch.Tensor, local_item_ids: torch.Tensor, local_item_reps: torch.Tensor,
               k: int, m: int, metric: str = "l2", exclude: torch.Tensor | None = None, *, group=None,
               backend: str | None = None, check_disjoint: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`pyl2d.local_topk` over a memory sharded by item across ``group``.

    This rank holds ``local_memory`` [M_r, D] with its entries' global item ids
    ``local_memory_item_ids`` [M_r] and global entry indices ``local_memory_index`` [M_r]
    (ascending; ties between entries go to the lower one), and the global representations
    ``local_item_reps`` [N_r, D] of the items it owns, ``local_item_ids`` [N_r] (ascending
    global ids; every item of its memory entries among them, and no item or entry index on two
    ranks: checked, as for :func:`score_topk`; ``check_disjoint=False`` skips that check, which
    costs an all-reduce of a byte per id: for a caller that partitioned the ids itself, with
    :func:`partition_by_item`, and searches many times).
    Returns (scores [B, k], global item ids [B, k]) on every rank, as the single-device op on
    the whole memory (see the module docstring for why that is exact)."""
    rank, world = _comm.require_group(group)
    device = _comm.comm_device(group, queries.device if isinstance(queries, torch.Tensor) else torch.device("cpu"))

    local_item_of = []  # each memory entry's position in local_item_ids, found by check()

    def check():  # this rank's shard, which may be empty; k, m and exclude against all ranks below
        check_local_shapes(queries, local_memory, local_memory_item_ids, local_item_reps, metric, prefix="local_",
                           allow_empty=True)
        _check_ascending_ids("local_memory_index", local_memory_index, local_memory.shape[0])
        _check_ascending_ids("local_item_ids", local_item_ids, local_item_reps.shape[0])
        if local_memory.shape[0]:
            local_item_of.append(_lookup(local_item_ids.to(torch.int64), local_memory_item_ids.to(torch.int64)))
            if (local_item_of[0] < 0).any():
                raise ValueError("local_memory_item_ids holds an item that is not in local_item_ids: the memory "
                                 "must be sharded by item (pyl2d.distributed.partition_by_item)")
            check_local_args(queries, local_memory, local_item_of[0], local_item_reps, 1, 1, metric, None,
                             prefix="local_")
        _check_int("k", k)
        _check_int("m", m)
        _check_exclude_shape(exclude)
    _comm.check_together(check, group)
    item_ids = local_item_ids.to(torch.int64)
    _comm.agree({"queries rows": queries.shape[0], "queries dimension": queries.shape[1],
                 "k": _as_int(k), "m": _as_int(m),
                 "metric": METRICS.index(metric),
                 "exclude width": -1 if exclude is None else exclude.shape[1],
                 "check_disjoint": int(bool(check_disjoint))}, group, device)
    if check_disjoint:
        _comm.disjoint("local_item_ids", item_ids, group, device)
        _comm.disjoint("local_memory_index", local_memory_index, group, device)
    sizes = _comm.gather_ints([local_memory.shape[0], item_ids.numel(),
                               int(item_ids.max()) + 1 if item_ids.numel() else 0], group, device)
    n_memory = sum(s[0] for s in sizes)
    n_items = max(sum(s[1] for s in sizes), max(s[2] for s in sizes))
    owned = item_ids.numel() and local_memory.shape[0]

    def check_global():
        _checks.k_in_range(m, n_memory, name="m", what="memory entries on all ranks")
        _checks.k_in_range(k, n_items, what="items on all ranks")
        check_exclude(exclude, queries.shape[0], n_items)
    _comm.check_together(check_global, group)
    b = queries.shape[0]

    # 1. the global m nearest: each rank's own m best, merged; its m-th is the threshold.
    near_scores, near_global = _topk.empty_candidates(b, m, queries.device)
    near_local = None
    if local_memory.shape[0]:
        s, li = _single_score_topk(queries, local_memory, min(m, local_memory.shape[0]), metric, backend=backend)
        gi = torch.where(li >= 0, local_memory_index.to(torch.int64)[li.clamp_min(0)], -1)
        near_local, (near_scores, near_global) = li, _topk.pad_candidates(s, gi, m)
    top_scores, top_ids = _merge(near_scores, near_global, m, group, device)
    if not owned:
        return _merge(*_topk.empty_candidates(b, k, queries.device), k, group, device)
    threshold = _topk.pack_keys(top_scores[:, -1:], top_ids[:, -1:])
    width = near_local.shape[1]
    mine = _topk.pack_keys(near_scores[:, :width], near_global[:, :width]) >= threshold
    nearest = torch.where(mine & (near_local >= 0), near_local, -1)

    # 2. the rank's own items: local means where they have entries among the m, else global.
    local_item_of = local_item_of[0]
    local_exclude = _to_local_ids(exclude, lambda e: _lookup(item_ids, e))
    search = _search(backend)
    cand_scores, cand_ids = _local_stages.global_candidates(queries, local_item_of, local_item_reps, k, m, metric,
                                                            local_exclude, search)
    k_local = min(k, item_ids.numel())
    s, i = _aggregate(queries, local_memory, local_item_of, item_ids.numel(), nearest, cand_scores, cand_ids,
                      k_local, metric, local_exclude)
    s, i = _topk.pad_candidates(s, torch.where(i >= 0, item_ids[i.clamp_min(0)], -1), k)
    return _merge(s, i, k, group, device)


def _lookup(sorted_ids: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Positions of ``ids`` in ``sorted_ids``, -1 where absent (or ``ids`` is -1)."""
    if sorted_ids.numel() == 0:
        return torch.full_like(ids, -1)
    pos = torch.searchsorted(sorted_ids, ids.clamp_min(0)).clamp_max(sorted_ids.numel() - 1)
    return torch.where((ids >= 0) & (sorted_ids[pos] == ids), pos, -1)


def _search(backend):
    def search(queries, items, k, metric, exclude, item_norms):
        return _single_score_topk(queries, items, k, metric, exclude, item_norms, backend=backend)
    return search


def _aggregate(queries, memory, memory_item_ids, n_items, nearest, cand_scores, cand_ids, k, metric, exclude):
    """The local aggregation + ranking stage with empty (-1) slots in ``nearest``: the C++
    kernel on CPU; elsewhere the same arithmetic in torch (fp32 means, then the metric)."""
    if queries.device.type == "cpu":
        from pyl2d.ops.local_topk import cpu
        return cpu.aggregate(queries, memory, memory_item_ids, n_items, nearest, cand_scores, cand_ids, k, metric,
                             exclude)
    return _aggregate_torch(queries, memory, memory_item_ids, n_items, nearest, cand_scores, cand_ids, k, metric,
                            exclude)


def _aggregate_torch(queries, memory, memory_item_ids, n_items, nearest, cand_scores, cand_ids, k, metric, exclude):
    b, m = nearest.shape
    valid = nearest >= 0
    rows = torch.arange(b, device=queries.device).unsqueeze(1).expand(b, m)[valid]
    entries = nearest[valid]
    items = memory_item_ids.to(torch.int64)[entries]
    keys, slot = torch.unique(rows * n_items + items, return_inverse=True)
    sums = torch.zeros((keys.shape[0], memory.shape[1]), dtype=torch.float32, device=memory.device)
    sums.index_add_(0, slot, memory[entries].to(torch.float32))
    means = sums / torch.bincount(slot, minlength=keys.shape[0]).to(torch.float32).unsqueeze(1)
    pair_rows, pair_items = keys // n_items, keys % n_items
    q = queries.to(torch.float32)[pair_rows]
    dots = (q * means).sum(1)
    if metric == "ip":
        local = dots
    elif metric == "cosine":
        from pyl2d._codes import NORM_EPS
        local = dots / (q.norm(dim=1).clamp_min(NORM_EPS) * means.norm(dim=1).clamp_min(NORM_EPS))
    else:
        local = -((q * q).sum(1) - 2.0 * dots + (means * means).sum(1)).clamp_min(0.0).sqrt()
    # a global candidate with a local score gives way to it (keys are sorted by torch.unique)
    cand_keys = torch.arange(b, device=queries.device).unsqueeze(1) * n_items + cand_ids.clamp_min(0)
    if keys.numel():
        shadowed = keys[torch.searchsorted(keys, cand_keys).clamp_max(keys.numel() - 1)] == cand_keys
    else:
        shadowed = torch.zeros_like(cand_ids, dtype=torch.bool)
    keep = (cand_ids >= 0) & ~shadowed
    # the local scores go into m more columns, one per (query, item) group
    scores, ids = _topk.pad_candidates(cand_scores.masked_fill(~keep, float("-inf")), cand_ids.masked_fill(~keep, -1),
                                       cand_ids.shape[1] + m)
    order = torch.arange(keys.shape[0], device=queries.device)
    first = torch.zeros(b, dtype=torch.int64, device=queries.device)
    first.scatter_reduce_(0, pair_rows, order, reduce="amin", include_self=False)
    col = cand_scores.shape[1] + (order - first[pair_rows])
    scores[pair_rows, col] = local
    ids[pair_rows, col] = pair_items
    if exclude is not None:
        hit = (ids.unsqueeze(2) == exclude.unsqueeze(1)).any(2) & (ids >= 0)
        scores, ids = scores.masked_fill(hit, float("-inf")), ids.masked_fill(hit, -1)
    return _topk.merge_candidates(scores, ids, k)
