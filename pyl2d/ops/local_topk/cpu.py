"""cpu backend of ``local_topk``: memory kNN and global candidates through ``score_topk``
(pyl2d/ops/local_topk/_stages.py), then the C++ aggregation + ranking kernel
(csrc/local_topk_cpu.cpp), which :func:`aggregate` exposes on its own for
``pyl2d.distributed.local_topk``."""
from __future__ import annotations

import torch

from pyl2d import _codes, _ext
from pyl2d._cpu_threads import cpu_threads
from pyl2d.ops.local_topk import _stages as _local_stages
from pyl2d.ops.score_topk.cpu import score_topk


def aggregate(queries, memory, memory_item_ids, n_items, nearest, cand_scores, cand_ids, k, metric, exclude=None):
    """The k best items per query from its nearest memory rows ``nearest`` [B, m] (-1 =
    empty slot) averaged per item, and global candidates [B, C] (ids -1 = empty); excluded
    items dropped. (scores [B, k] float32, ids [B, k] int64), tail (-inf, -1)."""
    excl = None if exclude is None or exclude.shape[1] == 0 else exclude.to(torch.int64).contiguous()
    b = queries.shape[0]
    scores = torch.empty((b, k), dtype=torch.float32)
    ids = torch.empty((b, k), dtype=torch.int64)
    lib = _ext.require()
    _ext.call(lib.local_topk_cpu, lib.LocalTopkParams, queries=_ext.ensure_inner_contiguous(queries),
              memory=_ext.ensure_inner_contiguous(memory), memory_item_ids=memory_item_ids.to(torch.int64).contiguous(),
              nearest=nearest.to(torch.int64).contiguous(), cand_scores=cand_scores.to(torch.float32).contiguous(),
              cand_ids=cand_ids.to(torch.int64).contiguous(), exclude=excl, out_scores=scores, out_ids=ids,
              n_items=n_items, k=k, metric=_codes.METRIC_CODES[metric], num_threads=cpu_threads())
    return scores, ids


def local_topk(queries, memory, memory_item_ids, item_reps, k, m, metric="l2", exclude=None):
    queries = _ext.ensure_inner_contiguous(queries)
    memory = _ext.ensure_inner_contiguous(memory)
    nearest = _local_stages.nearest_memory(queries, memory, m, metric, score_topk)
    cand_scores, cand_ids = _local_stages.global_candidates(queries, memory_item_ids, item_reps, k, m, metric,
                                                            exclude, score_topk)
    return aggregate(queries, memory, memory_item_ids, item_reps.shape[0], nearest, cand_scores, cand_ids, k, metric,
                     exclude)
