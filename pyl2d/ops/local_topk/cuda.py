"""cuda backend of ``local_topk``: memory kNN and global candidates through ``score_topk``
(pyl2d/ops/local_topk/_stages.py, which proves C = k + m + E global candidates exact), local scores
of each item's mean over the nearest entries and candidate masking in CUDA
(kernels/local_topk.cu), then one ``topk`` over packed keys for the k best."""
from __future__ import annotations

import torch

from pyl2d import _codes, _ext, _topk
from pyl2d.ops.local_topk import _stages as _local_stages
from pyl2d.ops.score_topk.cuda import score_topk


def local_topk(queries, memory, memory_item_ids, item_reps, k, m, metric="l2", exclude=None):
    lib = _ext.require()
    queries = _ext.ensure_inner_contiguous(queries)
    memory = _ext.ensure_inner_contiguous(memory)
    stream = _ext.cuda_stream(queries.device)
    scores, ids, rows, items, group_end = _local_stages.candidate_buffers(
        queries, memory, memory_item_ids, item_reps, k, m, metric, exclude, score_topk)
    _ext.call(lib.local_scores_cuda, lib.LocalScoresParams, queries=queries, memory=memory, rows=rows,
              items=items, group_end=group_end, metric=_codes.METRIC_CODES[metric], out_scores=scores,
              out_ids=ids, stream=stream)
    excl = None
    if exclude is not None and exclude.shape[1] > 0:
        excl = torch.sort(exclude.to(torch.int64), dim=1).values.contiguous()
    _ext.call(lib.mask_candidates_cuda, lib.MaskCandidatesParams, scores=scores, ids=ids, items=items,
              exclude=excl, stream=stream)
    return _topk.merge_candidates(scores, ids, k)
