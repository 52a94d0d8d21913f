"""cuda backend of ``local_topk``: memory kNN and global candidates through ``score_topk``
(pyl2d/_local_stages.py, which proves C = k + m + E global candidates exact), local scores
of each item's mean over the nearest entries and candidate masking in CUDA
(kernels/l2d_aggregate.cu), then one ``topk`` over packed keys for the k best."""
from __future__ import annotations

import torch

from pyl2d import _codes, _ext, _local_stages, _topk
from pyl2d.cuda.score_topk import score_topk



def local_topk(queries, memory, memory_item_ids, item_reps, k, m, metric="l2", exclude=None):
    lib = _ext.require()
    queries = _ext.ensure_inner_contiguous(queries)
    memory = _ext.ensure_inner_contiguous(memory)
    stream = _ext.cuda_stream(queries.device)
    batch = queries.shape[0]
    scores, ids, rows, items, group_end = _local_stages.candidate_buffers(
        queries, memory, memory_item_ids, item_reps, k, m, metric, exclude, score_topk)
    n_cand = ids.shape[1] - m
    q_ptr, _, dim, q_stride, code = _ext.matrix(queries)
    m_ptr, _, _, m_stride, _ = _ext.matrix(memory)
    lib.local_scores_cuda(q_ptr, batch, dim, q_stride, m_ptr, m_stride, code, rows.data_ptr(), items.data_ptr(),
                          group_end.data_ptr(), m, _codes.METRIC_CODES[metric], scores.data_ptr(), ids.data_ptr(),
                          scores.stride(0), stream)
    if exclude is not None and exclude.shape[1] > 0:
        excl = torch.sort(exclude.to(torch.int64), dim=1).values.contiguous()
        excl_ptr, n_exclude = excl.data_ptr(), excl.shape[1]
    else:
        excl, excl_ptr, n_exclude = None, 0, 0
    lib.mask_candidates_cuda(scores.data_ptr(), ids.data_ptr(), batch, m, n_cand, items.data_ptr(), excl_ptr,
                             n_exclude, stream)
    return _topk.merge_candidates(scores, ids, k)
