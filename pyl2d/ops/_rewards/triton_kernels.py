"""Triton kernels shared by the reward ops: per-row aggregation, segment (group) advantages
that can read either rewards or the judge scores directly (the fused path), and the
expected score over a few LM-head rows.

Groups are segments of a permutation: group g owns positions order[offsets[g]:offsets[g+1]]
(no ``order`` for contiguous groups). One program per group makes three or four passes over
its members (count/sum, imputed count/sum, squared deviations, write), each a small loop.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from pyl2d import _codes, _platform
from pyl2d._fallbacks import batch_std, group_segments



@triton.jit
def row_rewards(scores_ptr, stride_b, rows, row_ok, P, score_max, weights_ptr, bystander_ptr, bystander_coef,
                lengths_ptr, length_limit, length_coef, HAS_W: tl.constexpr, HAS_BY: tl.constexpr,
                HAS_LEN: tl.constexpr, MODE: tl.constexpr, BLOCK_P: tl.constexpr):
    """Aggregated reward of ``rows`` ([BLOCK] int64); NaN for rows without a valid score."""
    cols = tl.arange(0, BLOCK_P)
    col_ok = cols < P
    m2 = row_ok[:, None] & col_ok[None, :]
    x = tl.load(scores_ptr + rows[:, None] * stride_b + cols[None, :], mask=m2, other=float("nan"))
    x = x.to(tl.float32) / score_max
    if HAS_W:
        w = tl.load(weights_ptr + cols, mask=col_ok, other=0.0)
    else:
        w = tl.where(col_ok, 1.0, 0.0)
    w2 = tl.broadcast_to(w[None, :], x.shape)
    used = (x == x) & (w2 > 0)
    wsum = tl.sum(tl.where(used, w2, 0.0), axis=1)
    if MODE == 0:
        r = tl.sum(tl.where(used, w2 * x, 0.0), axis=1) / wsum
    elif MODE == 1:
        r = wsum / tl.sum(tl.where(used, w2 / x, 0.0), axis=1)
    else:
        r = tl.exp(tl.sum(tl.where(used, w2 * tl.log(x), 0.0), axis=1) / wsum)
    r = tl.where(wsum > 0, r, float("nan"))
    if HAS_BY:
        by = tl.load(bystander_ptr + rows, mask=row_ok, other=0.0).to(tl.float32)
        r = r + bystander_coef * (by / 100.0 - 1.0)
    if HAS_LEN:
        ln = tl.load(lengths_ptr + rows, mask=row_ok, other=0.0).to(tl.float32)
        r = r - length_coef * tl.maximum(ln - length_limit, 0.0)
    return r


@triton.jit
def aggregate_kernel(scores_ptr, stride_b, B, P, score_max, weights_ptr, bystander_ptr, bystander_coef,
                     lengths_ptr, length_limit, length_coef, out_ptr, HAS_W: tl.constexpr, HAS_BY: tl.constexpr,
                     HAS_LEN: tl.constexpr, MODE: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_P: tl.constexpr):
    rows = (tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)).to(tl.int64)
    ok = rows < B
    r = row_rewards(scores_ptr, stride_b, rows, ok, P, score_max, weights_ptr, bystander_ptr, bystander_coef,
                    lengths_ptr, length_limit, length_coef, HAS_W, HAS_BY, HAS_LEN, MODE, BLOCK_P)
    tl.store(out_ptr + rows, r, mask=ok)


@triton.jit
def _member_values(src_ptr, stride_b, pos, ok, P, score_max, weights_ptr, bystander_ptr, bystander_coef, lengths_ptr,
                   length_limit, length_coef, HAS_W: tl.constexpr, HAS_BY: tl.constexpr, HAS_LEN: tl.constexpr,
                   MODE: tl.constexpr, FROM_SCORES: tl.constexpr, BLOCK_P: tl.constexpr):
    if FROM_SCORES:
        r = row_rewards(src_ptr, stride_b, pos, ok, P, score_max, weights_ptr, bystander_ptr, bystander_coef,
                        lengths_ptr, length_limit, length_coef, HAS_W, HAS_BY, HAS_LEN, MODE, BLOCK_P)
    else:
        r = tl.load(src_ptr + pos, mask=ok, other=float("nan")).to(tl.float32)
    return tl.where(ok, r, float("nan"))


@triton.jit
def advantages_kernel(src_ptr, stride_b, order_ptr, offsets_ptr, adv_ptr, rewards_out_ptr, eps, batch_std,
                      P, score_max, weights_ptr, bystander_ptr, bystander_coef, lengths_ptr, length_limit,
                      length_coef, HAS_ORDER: tl.constexpr, SCALE: tl.constexpr, IMPUTE: tl.constexpr,
                      FROM_SCORES: tl.constexpr, HAS_W: tl.constexpr, HAS_BY: tl.constexpr, HAS_LEN: tl.constexpr,
                      MODE: tl.constexpr, BLOCK: tl.constexpr, BLOCK_P: tl.constexpr):
    g = tl.program_id(0)
    start = tl.load(offsets_ptr + g)
    end = tl.load(offsets_ptr + g + 1)
    lanes = tl.arange(0, BLOCK)
    # Pass 1: count and sum of the valid rewards, and the number of members.
    cnt_v = tl.zeros([BLOCK], dtype=tl.float32)
    sum_v = tl.zeros([BLOCK], dtype=tl.float32)
    for base in range(start, end, BLOCK):
        idx = base + lanes
        ok = idx < end
        pos = tl.load(order_ptr + idx, mask=ok, other=0) if HAS_ORDER else idx.to(tl.int64)
        r = _member_values(src_ptr, stride_b, pos, ok, P, score_max, weights_ptr, bystander_ptr, bystander_coef,
                           lengths_ptr, length_limit, length_coef, HAS_W, HAS_BY, HAS_LEN, MODE, FROM_SCORES, BLOCK_P)
        valid = r == r
        cnt_v += tl.where(valid, 1.0, 0.0)
        sum_v += tl.where(valid, r, 0.0)
    count = tl.sum(cnt_v, axis=0)
    mean = tl.sum(sum_v, axis=0) / count
    if IMPUTE:  # a missing reward takes the group's mean: same mean and deviations, one more member
        count = tl.where(count > 0, (end - start).to(tl.float32), count)
    # Pass 2: squared deviations (only needed for the group scale).
    denom = 1.0
    if SCALE == 1:
        ssd_v = tl.zeros([BLOCK], dtype=tl.float32)
        for base in range(start, end, BLOCK):
            idx = base + lanes
            ok = idx < end
            pos = tl.load(order_ptr + idx, mask=ok, other=0) if HAS_ORDER else idx.to(tl.int64)
            r = _member_values(src_ptr, stride_b, pos, ok, P, score_max, weights_ptr, bystander_ptr,
                               bystander_coef, lengths_ptr, length_limit, length_coef, HAS_W, HAS_BY, HAS_LEN, MODE,
                               FROM_SCORES, BLOCK_P)
            d = tl.where(r == r, r - mean, 0.0)
            ssd_v += d * d
        denom = tl.sqrt(tl.sum(ssd_v, axis=0) / (count - 1.0)) + eps
    elif SCALE == 2:
        denom = batch_std + eps
    # Pass 3: write.
    for base in range(start, end, BLOCK):
        idx = base + lanes
        ok = idx < end
        pos = tl.load(order_ptr + idx, mask=ok, other=0) if HAS_ORDER else idx.to(tl.int64)
        r = _member_values(src_ptr, stride_b, pos, ok, P, score_max, weights_ptr, bystander_ptr, bystander_coef,
                           lengths_ptr, length_limit, length_coef, HAS_W, HAS_BY, HAS_LEN, MODE, FROM_SCORES, BLOCK_P)
        if FROM_SCORES:
            tl.store(rewards_out_ptr + pos, r, mask=ok)
        a = (r - mean) / denom  # NaN for a missing reward: 0 below, imputed or not
        tl.store(adv_ptr + pos, tl.where(a == a, a, 0.0), mask=ok)


@triton.jit
def score_from_hidden_kernel(h_ptr, stride_hb, w_ptr, stride_wv, ids_ptr, values_ptr, out_ptr, D, S,
                             BLOCK_S: tl.constexpr, BLOCK_D: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    s = tl.arange(0, BLOCK_S)
    s_ok = s < S
    ids = tl.load(ids_ptr + s, mask=s_ok, other=0)
    d_lanes = tl.arange(0, BLOCK_D)
    acc = tl.zeros([BLOCK_S, BLOCK_D], dtype=tl.float32)
    for d0 in range(0, D, BLOCK_D):
        d = d0 + d_lanes
        d_ok = d < D
        h = tl.load(h_ptr + row * stride_hb + d, mask=d_ok, other=0.0).to(tl.float32)
        w = tl.load(w_ptr + ids[:, None] * stride_wv + d[None, :], mask=s_ok[:, None] & d_ok[None, :], other=0.0)
        acc += w.to(tl.float32) * h[None, :]
    logits = tl.where(s_ok, tl.sum(acc, axis=1), float("-inf"))
    e = tl.exp(logits - tl.max(logits, axis=0))
    e = tl.where(s_ok, e, 0.0)
    vals = tl.load(values_ptr + s, mask=s_ok, other=0.0)
    tl.store(out_ptr + row, tl.sum(e * vals, axis=0) / tl.sum(e, axis=0))


def f32(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.to(torch.float32).contiguous()


def member_block(largest: int) -> int:
    cap = 64 if _platform.triton_interpreted() else 1024
    return max(16, min(cap, triton.next_power_of_2(largest)))


def launch_advantages(src, stride_b, adv, rewards_out, num_groups, group_ids, eps, scale, impute, *, from_scores,
                      agg=None) -> None:
    """Run ``advantages_kernel`` over every group. ``agg`` holds the aggregation arguments
    (P, score_max, weights, bystander, bystander_coef, lengths, length_limit, length_coef, mode)
    when reading scores directly."""
    batch = adv.shape[0]
    order, offsets, largest = group_segments(batch, num_groups, group_ids, adv.device)
    std = 0.0
    if scale == "batch":
        std = batch_std(src if not from_scores else rewards_out, num_groups, group_ids, impute)
    if agg is None:
        agg = dict(P=1, score_max=1.0, weights=None, bystander=None, bystander_coef=0.0, lengths=None,
                   length_limit=0.0, length_coef=0.0, mode="mean")
    dummy = adv
    advantages_kernel[(num_groups,)](
        src, stride_b, order if order is not None else offsets, offsets, adv,
        rewards_out if rewards_out is not None else dummy, float(eps), std, agg["P"], float(agg["score_max"]),
        agg["weights"] if agg["weights"] is not None else dummy,
        agg["bystander"] if agg["bystander"] is not None else dummy, float(agg["bystander_coef"]),
        agg["lengths"] if agg["lengths"] is not None else dummy, float(agg["length_limit"] or 0.0),
        float(agg["length_coef"]),
        HAS_ORDER=order is not None, SCALE=_codes.ADVANTAGE_SCALE_CODES[scale], IMPUTE=bool(impute), FROM_SCORES=from_scores,
        HAS_W=agg["weights"] is not None, HAS_BY=agg["bystander"] is not None, HAS_LEN=agg["lengths"] is not None,
        MODE=_codes.REWARD_MODE_CODES[agg["mode"]], BLOCK=member_block(largest), BLOCK_P=triton.next_power_of_2(agg["P"]),
        num_warps=1 if largest <= 64 else 4)
