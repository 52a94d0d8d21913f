"""CUDA ``score_topk``: the fused kernel in kernels/score_topk.cu (design: bench/notes_cuda.md).

Stage 1 (one kernel) scores tiles of queries x items in shared memory and keeps, for every
query and every split of the items, the k best admissible items of that split; excluded ids
are skipped inside the kernel, so no extra candidates are needed. Stage 2 merges the
[B, splits * k] candidates here with ``merge_candidates`` (small tensors). The B x N score
matrix never exists. k above the kernel's limit (256) uses a chunked torch fallback whose
extra memory is bounded by ``FALLBACK_CHUNK_BYTES``.
"""
from __future__ import annotations

from typing import Callable

import torch

from pyl2d import _codes, _ext
from pyl2d._fallbacks import chunk_scores, norm_terms
from pyl2d._topk import merge_candidates

# Extra memory per step of the fallback and of the item-norm computation.
FALLBACK_CHUNK_BYTES = 256 << 20
# Aim for this many thread blocks per SM (one or two resident per SM: two to four waves).
BLOCKS_PER_SM = 4


def new_buffer(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Uninitialised output/workspace memory for a kernel (tests swap in poisoned buffers to
    catch elements a kernel forgets to write)."""
    return torch.empty(shape, dtype=dtype, device=device)


def vector_aligned(t: torch.Tensor, *strides: int) -> bool:
    """Whether rows at offsets made of ``strides`` are 16-byte aligned (vector loads allowed)."""
    vec = 16 // t.element_size()
    return t.data_ptr() % 16 == 0 and all(s % vec == 0 for s in strides)


def item_splits(batch: int, n_items: int, k: int, dtype: torch.dtype, device: torch.device, lib
                ) -> tuple[int, int]:
    """(tiles_per_split, n_splits): enough (query block, item split) pairs to fill the GPU,
    every split non-empty. Call with ``device`` current."""
    n_tiles = -(-n_items // lib.cuda_score_topk_tile_items)
    q_blocks = -(-batch // lib.score_topk_block_queries_cuda(_ext.DTYPE_CODES[dtype], k, batch))
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    wanted = max(1, -(-BLOCKS_PER_SM * sms // q_blocks))
    n_splits = max(1, min(n_tiles, wanted, 65535))
    tiles_per_split = -(-n_tiles // n_splits)
    return tiles_per_split, -(-n_tiles // tiles_per_split)


def sorted_exclude(exclude: torch.Tensor | None) -> torch.Tensor | None:
    """Each row ascending as int64 (the kernel binary-searches it); None when empty."""
    if exclude is None or exclude.shape[1] == 0:
        return None
    return torch.sort(exclude.to(torch.int64), dim=1).values.contiguous()


def chunked_topk(queries: torch.Tensor, items: torch.Tensor, k: int, metric: str,
                 exclude: torch.Tensor | None, item_norms: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Fallback for k above the kernel's limit: float32 torch scores for one chunk of items at
    a time (at most FALLBACK_CHUNK_BYTES of scores, ids and keys), merged exactly by key."""
    b, n = queries.shape[0], items.shape[0]
    chunk = max(k, FALLBACK_CHUNK_BYTES // (20 * b))
    ex = None if exclude is None or exclude.shape[1] == 0 else exclude.to(torch.int64)
    rows = torch.arange(b, device=queries.device)[:, None]
    best_s = queries.new_full((b, 0), float("-inf"), dtype=torch.float32)
    best_i = queries.new_full((b, 0), -1, dtype=torch.int64)
    for start in range(0, n, chunk):
        part = items[start:start + chunk]
        norms = None if item_norms is None else item_norms[start:start + part.shape[0]]
        s = chunk_scores(queries, part, metric, norms)
        if ex is not None:
            local = ex - start
            hit = (ex >= 0) & (local >= 0) & (local < part.shape[0])
            s[rows.expand_as(ex)[hit], local[hit]] = float("-inf")
        ids = torch.arange(start, start + part.shape[0], device=queries.device).expand(b, -1)
        ids = ids.masked_fill(torch.isneginf(s), -1)
        cs, ci = merge_candidates(s, ids, min(k, part.shape[0]))
        best_s, best_i = merge_candidates(torch.cat([best_s, cs], 1), torch.cat([best_i, ci], 1),
                                          min(k, best_s.shape[1] + cs.shape[1]))
    return merge_candidates(best_s, best_i, k)


def topk_from_rows(base: torch.Tensor, row_offsets: torch.Tensor, batch: int, rows_aligned: bool,
                   query_rows: Callable[[], torch.Tensor], items: torch.Tensor, k: int, metric: str,
                   exclude: torch.Tensor | None, item_norms: torch.Tensor | None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """score_topk for queries that are rows of ``base`` at element offsets ``row_offsets``
    ([batch] int64, on the device). ``query_rows()`` returns those rows as a [batch, D] tensor;
    it is only called when query norms (cosine, l2) or the fallback need it."""
    lib = _ext.require()
    items = _ext.ensure_inner_contiguous(items)
    n = items.shape[0]
    if k > lib.cuda_score_topk_max_k or n >= 2**31:
        return chunked_topk(query_rows(), items, k, metric, exclude, item_norms)
    device = items.device
    q_norms = x_norms = None
    if metric != "ip":
        q_norms = norm_terms(query_rows(), metric)
    ex = sorted_exclude(exclude)
    row_offsets = row_offsets.to(torch.int64).contiguous()
    with torch.cuda.device(device):
        if metric != "ip":
            if item_norms is not None:
                x_norms = norm_terms(items, metric, item_norms)
            else:  # one pass over the items in a CUDA kernel, no float32 copy
                x_norms = new_buffer((n,), torch.float32, device)
                _ext.call(lib.row_norms_cuda, lib.RowNormsParams, x=items, squared=metric == "l2", out=x_norms,
                          stream=_ext.cuda_stream(device))
        tiles_per_split, n_splits = item_splits(batch, n, k, items.dtype, device, lib)
        ws_scores = new_buffer((batch, n_splits * k), torch.float32, device)
        ws_ids = new_buffer((batch, n_splits * k), torch.int64, device)
        _ext.call(lib.score_topk_stage1_cuda, lib.ScoreTopkStage1Params,
                  q_base=base, q_offsets=row_offsets, q_vec=rows_aligned,
                  items=items, x_vec=vector_aligned(items, items.stride(0)), metric=_codes.METRIC_CODES[metric],
                  q_norms=q_norms, x_norms=x_norms, exclude=ex, k=k, tiles_per_split=tiles_per_split,
                  n_splits=n_splits, ws_scores=ws_scores, ws_ids=ws_ids, stream=_ext.cuda_stream(device))
    return merge_candidates(ws_scores, ws_ids, k)


def score_topk(queries, items, k, metric="ip", exclude=None, item_norms=None):
    queries = _ext.ensure_inner_contiguous(queries)
    b = queries.shape[0]
    offsets = torch.arange(b, device=queries.device, dtype=torch.int64) * queries.stride(0)
    aligned = vector_aligned(queries, queries.stride(0) if b > 1 else 0)
    return topk_from_rows(queries, offsets, b, aligned, lambda: queries, items, k, metric, exclude, item_norms)
