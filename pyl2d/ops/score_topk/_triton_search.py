"""Launching the fused score/top-k kernel and merging its per-split candidates.

``best_candidates`` returns each query's unfiltered best ``c`` (score, id) pairs, best first;
the op modules post-filter excluded ids with ``pyl2d._topk.drop_excluded`` (exact, because
c >= k + E). Queries are given as a base tensor plus int64 element offsets of each row, so a
pooled query ``hidden[b, last[b]]`` is read in place.
"""
from __future__ import annotations

import functools

import torch
import triton

from pyl2d import _codes, _platform
from pyl2d._fallbacks import chunk_scores, norm_terms
from pyl2d._topk import merge_candidates, pack_keys
from pyl2d.ops.score_topk import _triton_configs as _configs
from pyl2d.ops.score_topk._triton_kernel import EMPTY_KEY, score_topk_kernel

# Above this many items the int32 item ids inside the kernel could overflow.
MAX_FUSED_ITEMS = 2**31 - 2**20
# Fallback: score at most this many (query, item) pairs at once.
FALLBACK_PAIRS = 1 << 24


def _next_pow2(x: int) -> int:
    return 1 << max(0, (int(x) - 1).bit_length())


def _pow2_divisor(values, cap: int = 16) -> int:
    """Largest power of two <= cap dividing every value (1 when none given)."""
    if not values:
        return 1
    out = cap
    for v in values:
        while out > 1 and v % out:
            out //= 2
    return out


def selection_width(c: int) -> int:
    """KP: the per-split list length the kernel keeps (power of two, >= c)."""
    return max(4, _next_pow2(c))


def fused_supported(c: int, n_items: int) -> bool:
    return selection_width(c) <= _configs.MAX_KP and n_items <= MAX_FUSED_ITEMS


def _sm_count(device: torch.device) -> int:
    if _platform.triton_interpreted() or device.type != "cuda":
        return 2  # a few splits, so the merge is exercised, without slowing the interpreter
    return _cuda_sm_count(device.index if device.index is not None else torch.cuda.current_device())


@functools.lru_cache(maxsize=None)
def _cuda_sm_count(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


# Per-program overhead (pipeline fill, first-tile selection), in tiles, for the split model.
_PROGRAM_OVERHEAD_TILES = 2


def _plan_splits(batch: int, n_items: int, cfg: _configs.ScoreConfig, device: torch.device) -> tuple[int, int]:
    return _plan_splits_for(batch, n_items, cfg, _sm_count(device))


@functools.lru_cache(maxsize=1024)
def _plan_splits_for(batch: int, n_items: int, cfg: _configs.ScoreConfig, sms: int) -> tuple[int, int]:
    """(splits, tiles per split). Chooses the split count minimising
    waves x (tiles per split + overhead), waves = ceil(programs / (SMs x programs_per_sm)):
    fills the GPU, avoids a mostly empty last wave, and keeps splits long (selection gets
    cheaper as a split's threshold rises). No split is empty."""
    q_blocks = triton.cdiv(batch, cfg.block_m)
    tiles = triton.cdiv(n_items, cfg.block_n)
    slots = sms * cfg.programs_per_sm
    best = None
    for splits in range(1, min(tiles, 4 * triton.cdiv(slots, q_blocks)) + 1):
        per_split = triton.cdiv(tiles, splits)
        cost = triton.cdiv(q_blocks * splits, slots) * (per_split + _PROGRAM_OVERHEAD_TILES)
        if best is None or cost < best[0]:
            best = (cost, per_split)
    per_split = best[1]
    return triton.cdiv(tiles, per_split), per_split


# The sampled floor (see ``sampled_floor``) pays off from this many items on.
FLOOR_MIN_ITEMS = 8192
# Sample one item in this many (at least FLOOR_SAMPLE_PER_CANDIDATE * c items).
FLOOR_SAMPLE_EVERY = 64
FLOOR_SAMPLE_PER_CANDIDATE = 16
# Slack below the sampled c-th best score, relative to the sample's score scale: the floor
# must stay at or below the true c-th best even if the two passes round differently.
FLOOR_SLACK = 2e-4


def sampled_floor(q_base, q_rows, q_stride_d, batch, items, c, metric, norms, q_row_strides):
    """Per-query lower bound on the c-th best score over all items, or None when not worth it.

    The c-th best score over a subset of the items can only be lower than over all of them,
    so seeding the kernel's per-row threshold with it (minus a rounding slack) changes no
    result while sparing the insertion rounds that a cold list pays on every split: with a
    1/64 sample about 64*c items per query pass the floor instead of every early candidate."""
    n_items = items.shape[0]
    if n_items < FLOOR_MIN_ITEMS:
        return None
    sample_n = max(FLOOR_SAMPLE_PER_CANDIDATE * c, n_items // FLOOR_SAMPLE_EVERY)
    step = n_items // sample_n
    if step < 2:
        return None
    sample = items[::step][:sample_n]
    sample_norms = None if norms is None else norms[::step][:sample_n].contiguous()
    s_scores, _ = best_candidates(q_base, q_rows, q_stride_d, batch, sample, c, metric, sample_norms,
                                  q_row_strides, use_floor=False)
    kth, best = s_scores[:, c - 1], s_scores[:, 0]
    slack = FLOOR_SLACK * torch.maximum(kth.abs(), best.abs()) + 1e-30
    return (kth - slack).contiguous()


def best_candidates(q_base: torch.Tensor, q_rows: torch.Tensor, q_stride_d: int, batch: int,
                    items: torch.Tensor, c: int, metric: str, item_norms: torch.Tensor | None,
                    q_row_strides: tuple[int, ...] = (), use_floor: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Best ``c`` (scores [B, c] float32, ids [B, c] int64) per query, best first.

    Query b is the D elements at ``q_base`` + ``q_rows[b]`` (int64 element offsets) with
    stride ``q_stride_d``; every offset is an integer combination of ``q_row_strides`` (used
    only as an alignment hint). The fused kernel handles ``c`` up to ``_configs.MAX_KP``."""
    n_items, dim = items.shape
    kp = selection_width(c)
    norms = norm_terms(items, metric, item_norms)
    cfg = _configs.pick(items.dtype, dim, batch, kp)
    splits, per_split = _plan_splits(batch, n_items, cfg, items.device)
    out_scores = torch.empty((batch, splits, kp), dtype=torch.float32, device=items.device)
    out_ids = torch.empty((batch, splits, kp), dtype=torch.int64, device=items.device)
    q_align = _pow2_divisor(q_row_strides)
    floor = sampled_floor(q_base, q_rows, q_stride_d, batch, items, c, metric, norms,
                          q_row_strides) if use_floor else None
    grid = (triton.cdiv(batch, cfg.block_m), splits)
    score_topk_kernel[grid](
        q_base, q_rows, q_stride_d,
        items, items.stride(0), items.stride(1),
        norms if norms is not None else out_scores,  # never read for ip
        floor if floor is not None else out_scores,  # never read without a floor
        out_scores, out_ids,
        batch, n_items, dim, per_split, splits,
        METRIC=_codes.METRIC_CODES[metric], EMPTY=EMPTY_KEY, EPS=_codes.NORM_EPS, HAS_FLOOR=floor is not None,
        KP=kp, BM=cfg.block_m, BN=cfg.block_n, BK=cfg.block_k,
        EVEN_D=dim % cfg.block_k == 0,
        UNIT_D=items.stride(1) == 1 and q_stride_d == 1,
        Q_ALIGN=q_align,
        PRECISION="ieee" if items.dtype == torch.float32 else None,
        UPCAST=_platform.triton_interpreted() and items.dtype == torch.bfloat16,
        LOOP=cfg.loop,
        num_warps=cfg.num_warps, num_stages=cfg.num_stages,
    )
    # Each split's list is unordered: the merge sorts (and is exact thanks to packed keys).
    return merge_candidates(out_scores.view(batch, -1), out_ids.view(batch, -1), c)


def chunked_candidates(queries: torch.Tensor, items: torch.Tensor, c: int, metric: str,
                       item_norms: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Fallback for large c (or huge N): score item chunks with torch in fp32, keep the best
    c per chunk and merge. Memory is bounded by the chunk, not by N."""
    batch = queries.shape[0]
    n_items = items.shape[0]
    chunk = max(c, FALLBACK_PAIRS // max(batch, 1))
    best_s = queries.new_full((batch, 0), float("-inf"), dtype=torch.float32)
    best_i = queries.new_full((batch, 0), -1, dtype=torch.int64)
    for start in range(0, n_items, chunk):
        stop = min(start + chunk, n_items)
        part = chunk_scores(queries, items[start:stop], metric, None if item_norms is None else item_norms[start:stop])
        ids = torch.arange(start, stop, device=items.device).expand(batch, -1)
        _, pos = torch.topk(pack_keys(part, ids), min(c, stop - start), dim=1, sorted=False)
        best_s = torch.cat([best_s, torch.gather(part, 1, pos)], 1)
        best_i = torch.cat([best_i, pos + start], 1)
        best_s, best_i = merge_candidates(best_s, best_i, min(c, best_s.shape[1]))
    return merge_candidates(best_s, best_i, c)
