"""Triton ``score_topk``: fused similarity + top-k that never materialises queries x items.

See ``pyl2d.ops.score_topk._triton_kernel`` for the kernel and ``bench/notes_triton.md`` for the design
and the configs to try on a GPU (``configs()``)."""
from __future__ import annotations

import torch

from pyl2d._topk import candidates_needed, drop_excluded
from pyl2d.ops.score_topk import _triton_configs as _configs
from pyl2d.ops.score_topk import _triton_search as _search


def configs() -> list[dict]:
    """Launch configs a GPU benchmark may sweep (pass one to ``use_config``)."""
    return [cfg.as_dict() for cfg in _configs.CONFIGS]


def use_config(config: dict | None) -> None:
    """Force one of ``configs()`` for every score kernel launch (benchmark sweeps); None
    restores the built-in table."""
    _configs.set_override(config)


def score_topk(queries, items, k, metric="ip", exclude=None, item_norms=None):
    batch = queries.shape[0]
    c = candidates_needed(k, exclude, items.shape[0])
    if _search.fused_supported(c, items.shape[0]):
        rows = torch.arange(batch, device=queries.device, dtype=torch.int64) * queries.stride(0)
        scores, ids = _search.best_candidates(queries, rows, queries.stride(1), batch, items, c, metric, item_norms,
                                                     (queries.stride(0),))
    else:
        scores, ids = _search.chunked_candidates(queries, items, c, metric, item_norms)
    return drop_excluded(scores, ids, exclude, k)
