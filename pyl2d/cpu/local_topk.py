"""cpu backend of ``local_topk``: memory kNN and global candidates through ``score_topk``
(pyl2d/_local_stages.py), then the C++ aggregation + ranking kernel
(csrc/local_topk_cpu.cpp)."""
from __future__ import annotations

import torch

from pyl2d import _codes, _ext, _local_stages



def local_topk(queries, memory, memory_item_ids, item_reps, k, m, metric="l2", exclude=None):
    queries = _ext.ensure_inner_contiguous(queries)
    memory = _ext.ensure_inner_contiguous(memory)
    nearest = _local_stages.nearest_memory(queries, memory, m, metric, "cpu").to(torch.int64).contiguous()
    cand_scores, cand_ids = _local_stages.global_candidates(queries, memory_item_ids, item_reps, k, m, metric,
                                                            exclude, "cpu")
    cand_scores = cand_scores.to(torch.float32).contiguous()
    cand_ids = cand_ids.to(torch.int64).contiguous()
    item_of = memory_item_ids.to(torch.int64).contiguous()
    excl = None if exclude is None or exclude.shape[1] == 0 else exclude.to(torch.int64).contiguous()
    b = queries.shape[0]
    scores = torch.empty((b, k), dtype=torch.float32)
    ids = torch.empty((b, k), dtype=torch.int64)
    q_ptr, _, cols, q_stride, q_code = _ext.matrix(queries)
    m_ptr, mem_rows, _, m_stride, m_code = _ext.matrix(memory)
    _ext.require().local_rank_cpu(
        q_ptr, b, cols, q_stride, q_code, m_ptr, mem_rows, m_stride, m_code, item_of.data_ptr(), item_reps.shape[0],
        nearest.data_ptr(), m, cand_scores.data_ptr(), cand_ids.data_ptr(), cand_ids.shape[1],
        0 if excl is None else excl.data_ptr(), 0 if excl is None else excl.shape[1], k, _codes.METRIC_CODES[metric],
        scores.data_ptr(), ids.data_ptr())
    return scores, ids
