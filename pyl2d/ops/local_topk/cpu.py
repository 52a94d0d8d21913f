"""cpu backend of ``local_topk``: memory kNN and global candidates through ``score_topk``
(pyl2d/ops/local_topk/_stages.py), then the C++ aggregation + ranking kernel
(csrc/local_topk_cpu.cpp)."""
from __future__ import annotations

import torch

from pyl2d import _codes, _ext
from pyl2d._cpu_threads import cpu_threads
from pyl2d.ops.local_topk import _stages as _local_stages
from pyl2d.ops.score_topk.cpu import score_topk



def local_topk(queries, memory, memory_item_ids, item_reps, k, m, metric="l2", exclude=None):
    queries = _ext.ensure_inner_contiguous(queries)
    memory = _ext.ensure_inner_contiguous(memory)
    nearest = _local_stages.nearest_memory(queries, memory, m, metric, score_topk).to(torch.int64).contiguous()
    cand_scores, cand_ids = _local_stages.global_candidates(queries, memory_item_ids, item_reps, k, m, metric,
                                                            exclude, score_topk)
    cand_scores = cand_scores.to(torch.float32).contiguous()
    cand_ids = cand_ids.to(torch.int64).contiguous()
    item_of = memory_item_ids.to(torch.int64).contiguous()
    excl = None if exclude is None or exclude.shape[1] == 0 else exclude.to(torch.int64).contiguous()
    b = queries.shape[0]
    scores = torch.empty((b, k), dtype=torch.float32)
    ids = torch.empty((b, k), dtype=torch.int64)
    lib = _ext.require()
    _ext.call(lib.local_topk_cpu, lib.LocalTopkParams, queries=queries, memory=memory, memory_item_ids=item_of,
              nearest=nearest, cand_scores=cand_scores, cand_ids=cand_ids, exclude=excl, out_scores=scores,
              out_ids=ids, n_items=item_reps.shape[0], k=k, metric=_codes.METRIC_CODES[metric],
              num_threads=cpu_threads())
    return scores, ids
