"""cpu backend for ``score_topk``: the fused C++ kernel (csrc/score_topk_cpu.cpp), which
never materialises the queries x items score matrix."""
from __future__ import annotations

import torch

from pyl2d import _codes, _ext


def call_kernel(queries: torch.Tensor, items: torch.Tensor, k: int, metric: str,
                exclude: torch.Tensor | None, item_norms: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the C++ kernel on validated CPU tensors; outputs are allocated here."""
    lib = _ext.require()
    queries = _ext.ensure_inner_contiguous(queries)
    items = _ext.ensure_inner_contiguous(items)
    b = queries.shape[0]
    scores = torch.empty((b, k), dtype=torch.float32)
    ids = torch.empty((b, k), dtype=torch.int64)
    if exclude is not None and exclude.shape[1] > 0:
        exclude = _ext.ensure_inner_contiguous(exclude)
        ex_args = _ext.matrix(exclude)
    else:
        ex_args = (0, 0, 0, 0, _ext.DTYPE_CODES[torch.int64])
    if item_norms is not None:
        item_norms = item_norms.contiguous()
        norm_args = (item_norms.data_ptr(), item_norms.shape[0])
    else:
        norm_args = (0, 0)
    lib.score_topk_cpu(*_ext.matrix(queries), *_ext.matrix(items), k, _codes.METRIC_CODES[metric], *ex_args, *norm_args,
                       scores.data_ptr(), ids.data_ptr(), torch.get_num_threads())
    return scores, ids


def score_topk(queries, items, k, metric="ip", exclude=None, item_norms=None):
    return call_kernel(queries, items, k, metric, exclude, item_norms)
