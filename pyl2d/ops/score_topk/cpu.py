"""cpu backend for ``score_topk``: the fused C++ kernel (csrc/score_topk_cpu.cpp), which
never materialises the queries x items score matrix."""
from __future__ import annotations

import torch

from pyl2d import _codes, _ext


def score_topk(queries: torch.Tensor, items: torch.Tensor, k: int, metric: str = "ip",
               exclude: torch.Tensor | None = None, item_norms: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the C++ kernel on validated CPU tensors; outputs are allocated here."""
    lib = _ext.require()
    b = queries.shape[0]
    scores = torch.empty((b, k), dtype=torch.float32)
    ids = torch.empty((b, k), dtype=torch.int64)
    if exclude is not None:
        exclude = _ext.ensure_inner_contiguous(exclude) if exclude.shape[1] > 0 else None
    _ext.call(lib.score_topk_cpu, lib.ScoreTopkParams,
              queries=_ext.ensure_inner_contiguous(queries), items=_ext.ensure_inner_contiguous(items),
              exclude=exclude, item_norms=None if item_norms is None else item_norms.contiguous(),
              out_scores=scores, out_ids=ids, k=k, metric=_codes.METRIC_CODES[metric],
              num_threads=torch.get_num_threads())
    return scores, ids

