"""Triton ``local_topk``: memory kNN and global candidates through ``score_topk``
(pyl2d/ops/local_topk/_stages.py, which proves C = k + m + E global candidates exact), then two
kernels on the small per-query sets:

1. ``local_scores_kernel``, one program per (query, position among its m nearest entries
   sorted by item): a position that starts an item's group averages the group's memory
   vectors in float32 and scores the query against that local representation; other
   positions write (-inf, -1).
2. ``mask_candidates_kernel``: over [local groups | global candidates] per query, drops a
   global candidate whose item has a local score (the local one replaces it) and every
   excluded item, writing (-inf, -1) in its place.

The k best of the survivors by (score desc, id asc) are then picked with one ``topk`` over
packed keys (``_topk.merge_candidates``).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from pyl2d import _codes, _topk
from pyl2d.ops.local_topk import _stages as _local_stages
from pyl2d.ops.score_topk.triton import score_topk

_BLOCK_R = 16
_BLOCK_C = 64
_BLOCK_X = 32


@triton.jit
def local_scores_kernel(q_ptr, stride_q, mem_ptr, stride_mem, sorted_mem_ptr, sorted_item_ptr, group_end_ptr,
                        out_score_ptr, out_id_ptr, stride_out, m, D, METRIC: tl.constexpr, EPS: tl.constexpr,
                        BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)  # one flat grid axis: no 65535 limit on B or m
    b = pid // m
    j = pid % m
    start = b * m + j
    end = b * m + tl.load(group_end_ptr + start)  # == start unless j starts a group
    item = tl.load(sorted_item_ptr + start)
    offs_r = tl.arange(0, BLOCK_R)
    dot = tl.zeros([BLOCK_D], dtype=tl.float32)
    q_sq = tl.zeros([BLOCK_D], dtype=tl.float32)
    sum_sq = tl.zeros([BLOCK_D], dtype=tl.float32)
    d_end = tl.where(end > start, D, 0)  # positions inside a group skip the work
    for d0 in range(0, d_end, BLOCK_D):
        d = d0 + tl.arange(0, BLOCK_D)
        d_ok = d < D
        q = tl.load(q_ptr + b * stride_q + d, mask=d_ok, other=0.0).to(tl.float32)
        acc = tl.zeros([BLOCK_D], dtype=tl.float32)
        for r0 in range(start, end, BLOCK_R):
            r = r0 + offs_r
            r_ok = r < end
            rows = tl.load(sorted_mem_ptr + r, mask=r_ok, other=0)
            tile = tl.load(mem_ptr + rows[:, None] * stride_mem + d[None, :], mask=r_ok[:, None] & d_ok[None, :],
                           other=0.0)
            acc += tl.sum(tile.to(tl.float32), axis=0)
        dot += q * acc
        q_sq += q * q
        sum_sq += acc * acc
    count = (end - start).to(tl.float32)
    inv = 1.0 / tl.maximum(count, 1.0)
    dot_s = tl.sum(dot, axis=0) * inv
    x_sq = tl.sum(sum_sq, axis=0) * inv * inv
    qq = tl.sum(q_sq, axis=0)
    if METRIC == 0:
        score = dot_s
    elif METRIC == 1:
        score = dot_s / (tl.maximum(tl.sqrt_rn(qq), EPS) * tl.maximum(tl.sqrt_rn(x_sq), EPS))
    else:
        score = -tl.sqrt_rn(tl.maximum(qq - 2.0 * dot_s + x_sq, 0.0))
    is_start = end > start
    tl.store(out_score_ptr + b * stride_out + j, tl.where(is_start, score, float("-inf")))
    tl.store(out_id_ptr + b * stride_out + j, tl.where(is_start, item, -1))


@triton.jit
def mask_candidates_kernel(score_ptr, id_ptr, sorted_item_ptr, exclude_ptr, m, C, E,
                           BLOCK_C: tl.constexpr, BLOCK_X: tl.constexpr):
    """In place on [B, m + C] (local groups first): -inf/-1 for excluded items and for
    global candidates that have a local score."""
    width = m + C
    per_row = tl.cdiv(width, BLOCK_C)
    pid = tl.program_id(0).to(tl.int64)
    b = pid // per_row
    s = (pid % per_row) * BLOCK_C + tl.arange(0, BLOCK_C)
    s_ok = s < width
    ids = tl.load(id_ptr + b * width + s, mask=s_ok, other=-1)
    is_global = s >= m
    drop = ids < 0
    offs_x = tl.arange(0, BLOCK_X)
    for x0 in range(0, m, BLOCK_X):
        x = x0 + offs_x
        local = tl.load(sorted_item_ptr + b * m + x, mask=x < m, other=-1)
        hit = tl.sum(((ids[:, None] == local[None, :]) & (local[None, :] >= 0)).to(tl.int32), axis=1) > 0
        drop = drop | (hit & is_global)
    for x0 in range(0, E, BLOCK_X):
        x = x0 + offs_x
        ex = tl.load(exclude_ptr + b * E + x, mask=x < E, other=-1)
        hit = tl.sum(((ids[:, None] == ex[None, :]) & (ex[None, :] >= 0)).to(tl.int32), axis=1) > 0
        drop = drop | hit
    scores = tl.load(score_ptr + b * width + s, mask=s_ok, other=float("-inf"))
    tl.store(score_ptr + b * width + s, tl.where(drop, float("-inf"), scores), mask=s_ok)
    tl.store(id_ptr + b * width + s, tl.where(drop, -1, ids), mask=s_ok)


def local_topk(queries, memory, memory_item_ids, item_reps, k, m, metric="l2", exclude=None):
    if queries.shape[1] > 1 and queries.stride(1) != 1:
        queries = queries.contiguous()
    if memory.shape[1] > 1 and memory.stride(1) != 1:
        memory = memory.contiguous()
    batch, dim = queries.shape
    scores, ids, rows, items, group_end = _local_stages.candidate_buffers(
        queries, memory, memory_item_ids, item_reps, k, m, metric, exclude, score_topk)
    n_cand = ids.shape[1] - m
    block_d = min(128, triton.next_power_of_2(dim))
    # Writes the first m columns (the local groups) of scores and ids.
    local_scores_kernel[(batch * m,)](queries, queries.stride(0), memory, memory.stride(0), rows, items, group_end,
                                    scores, ids, scores.stride(0), m, dim, METRIC=_codes.METRIC_CODES[metric],
                                    EPS=_codes.NORM_EPS, BLOCK_R=_BLOCK_R, BLOCK_D=block_d)
    excl = (exclude.to(torch.int64).contiguous() if exclude is not None and exclude.shape[1] > 0
            else torch.full((batch, 1), -1, dtype=torch.int64, device=queries.device))
    width = m + n_cand
    mask_candidates_kernel[(batch * triton.cdiv(width, _BLOCK_C),)](
        scores, ids, items, excl, m, n_cand, excl.shape[1], BLOCK_C=_BLOCK_C, BLOCK_X=_BLOCK_X)
    return _topk.merge_candidates(scores, ids, k)
