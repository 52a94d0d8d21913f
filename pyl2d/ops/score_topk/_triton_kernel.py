"""The fused Triton kernel behind ``score_topk`` and ``pooled_score_topk``.

Grid = (query blocks of BM) x (item splits). Each program loops over its items in BN tiles,
computes the BM x BN score tile with ``tl.dot`` over D in BK chunks (fp32 accumulation),
turns it into a selection value (see below) and keeps a running per-query top-KP as packed
int64 keys in registers. The score matrix never exists in memory: each program writes only
its KP best (score, id) pairs per query to a workspace; ``_search.best_candidates`` merges
the splits. ``LOOP`` picks the loop shape: 0 nested (tiles, D chunks), 1 one flat pipelined
loop over (tile, chunk), 2 flat with the previous tile's selection spread over the current
tile's chunks so it overlaps the asynchronous tl.dot (see bench/notes_triton.md).

Selection keys: ``orderable_bits(score) << 32 | (0xFFFFFFFF - id)`` so "score desc, ties to
the lower id" is integer order (as in ``pyl2d._topk``); the empty key is (-inf, -1).

Per tile, a row's worst kept score is its threshold; a tile with no score above any row's
threshold costs one argmax-reduction. Otherwise the best remaining score of each row is moved
into the row's worst slot until no row has a score above its threshold (strictly above: tiles
arrive in increasing id order, so an equal later score has a higher id and loses the tie).

Queries are addressed through a vector of int64 row offsets, so the same kernel reads
``queries[b]`` or ``hidden[b, last[b]]`` (pooled_score_topk) with any strides.

Metric epilogue (selection value -> final score, both monotone within a row):
  ip:     dot                      -> dot
  cosine: dot / max(|x|, eps)      -> value / max(|q|, eps)
  l2:     -max(|q|^2 - 2dot + |x|^2, 0) -> -sqrt(-value)   (no sqrt per element)
The l2 squared norms are sums of squares (``xnorm_ptr`` holds |x|^2 for l2), never a rounded
norm squared again, so equal distances give equal scores and tie by id.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from pyl2d._topk import pack_keys

# pack(-inf, -1): below every real key.
EMPTY_KEY = int(pack_keys(torch.tensor([float("-inf")]), torch.tensor([-1]))[0])
# Id of the floor sentinels: the largest 32-bit id, whose key is the lowest of its score.
SENTINEL_ID = tl.constexpr(0xFFFFFFFF)


@triton.jit
def _pack_key(score, ids):
    """(float32 score, int64 id) -> int64 key ordered like (score desc, id asc)."""
    bits = score.to(tl.int32, bitcast=True)
    bits = tl.where((bits << 1) == 0, 0, bits)  # -0.0 (sign bit alone) reads as +0.0: equal scores tie by id
    bits = tl.where(bits < 0, bits ^ 0x7FFFFFFF, bits)
    # (bits << 32) | (2^32 - 1 - id), written without 32-bit-unsigned constants.
    return ((bits.to(tl.int64) + 1) << 32) - 1 - ids


@triton.jit
def _key_score(key):
    hi = (key >> 32).to(tl.int32)
    hi = tl.where(hi < 0, hi ^ 0x7FFFFFFF, hi)
    return hi.to(tl.float32, bitcast=True)


@triton.jit
def _key_id(key):
    hi = key >> 32
    return ((hi + 1) << 32) - 1 - key


@triton.jit
def _d_offset(dd, stride, UNIT: tl.constexpr):
    """Element offsets of positions ``dd`` along D: plain int32 when the stride is 1 (keeps
    the contiguity visible to the compiler), int64 otherwise (d * stride may exceed 2^31)."""
    if UNIT:
        return dd
    else:
        return dd.to(tl.int64) * stride


@triton.jit
def _dot_chunk(acc, q_ptr, q_off, stride_qd, x_ptr, stride_xn, stride_xd, n0, d0, N, D,
               BN: tl.constexpr, BK: tl.constexpr, EVEN_D: tl.constexpr, UNIT_D: tl.constexpr,
               PRECISION: tl.constexpr, UPCAST: tl.constexpr):
    """acc += q[:, d0:d0+BK] @ x[n0:n0+BN, d0:d0+BK].T (items past N re-read item N-1)."""
    rn_safe = tl.minimum(n0 + tl.arange(0, BN), N - 1).to(tl.int64)
    dd = d0 + tl.arange(0, BK)
    q_ptrs = q_ptr + q_off[:, None] + _d_offset(dd, stride_qd, UNIT_D)[None, :]
    x_ptrs = x_ptr + rn_safe[:, None] * stride_xn + _d_offset(dd, stride_xd, UNIT_D)[None, :]
    if EVEN_D:
        q = tl.load(q_ptrs)
        x = tl.load(x_ptrs)
    else:
        q = tl.load(q_ptrs, mask=(dd < D)[None, :], other=0.0)
        x = tl.load(x_ptrs, mask=(dd < D)[None, :], other=0.0)
    if UPCAST:  # the Triton 3.9 interpreter gets bfloat16 tl.dot wrong; fp32 is exact here
        q = q.to(tl.float32)
        x = x.to(tl.float32)
    return tl.dot(q, tl.trans(x), acc, input_precision=PRECISION)


@triton.jit
def _selection_values(acc, n0, N, xnorm_ptr, qsq, METRIC: tl.constexpr, EPS: tl.constexpr, BN: tl.constexpr):
    """Dot tile -> per-row monotone selection values; items past N get -inf."""
    rn = n0 + tl.arange(0, BN)
    if METRIC == 1:
        xn = tl.load(xnorm_ptr + tl.minimum(rn, N - 1))
        val = acc * (1.0 / tl.maximum(xn, EPS))[None, :]
    elif METRIC == 2:
        xn = tl.load(xnorm_ptr + tl.minimum(rn, N - 1))
        val = -tl.maximum(qsq[:, None] - 2.0 * acc + xn[None, :], 0.0)
    else:
        val = acc
    return tl.where((rn < N)[None, :], val, float("-inf"))


@triton.jit
def _tile_best(val, thr):
    """Each row's best remaining value and its column (ties -> lowest column = lowest id), and
    whether any row has a value above its threshold."""
    best, col = tl.max(val, axis=1, return_indices=True, return_indices_tie_break_left=True)
    hot = tl.max((best > thr).to(tl.int32), axis=0)
    return best, col, hot


@triton.jit
def _insert_round(val, n0, best, col, keys, slot, thr, KP: tl.constexpr, BN: tl.constexpr):
    """One insertion round: each row whose best remaining value beats its threshold moves it
    into its worst slot; returns the updated state and the next (best, col, hot)."""
    take = best > thr
    best = tl.where(best == 0.0, 0.0, best)  # -0.0 -> +0.0: one key per value
    new_key = _pack_key(best, (n0 + col).to(tl.int64))
    keys = tl.where(take[:, None] & (tl.arange(0, KP)[None, :] == slot[:, None]), new_key[:, None], keys)
    val = tl.where(take[:, None] & (tl.arange(0, BN)[None, :] == col[:, None]), float("-inf"), val)
    worst, slot = tl.min(keys, axis=1, return_indices=True, return_indices_tie_break_left=True)
    thr = _key_score(worst)
    best, col, hot = _tile_best(val, thr)
    return val, best, col, hot, keys, slot, thr


@triton.jit
def _select_tile(val, n0, keys, slot, thr, KP: tl.constexpr, BN: tl.constexpr):
    """Move every value of the tile that belongs to a row's running top-KP into it."""
    best, col, hot = _tile_best(val, thr)
    while hot > 0:
        val, best, col, hot, keys, slot, thr = _insert_round(val, n0, best, col, keys, slot, thr, KP, BN)
    return keys, slot, thr


@triton.jit
def score_topk_kernel(
    q_ptr, q_rows_ptr, stride_qd,            # queries: q_ptr + q_rows[b] + d * stride_qd
    x_ptr, stride_xn, stride_xd,             # items [N, D]
    xnorm_ptr,                               # float32 [N] |x| (cosine), |x|^2 (l2); unused for ip
    floor_ptr,                               # float32 [B] score floor (read when HAS_FLOOR)
    out_scores_ptr, out_ids_ptr,             # [B, SPLITS, KP] float32 / int64
    B, N, D, tiles_per_split, splits,
    METRIC: tl.constexpr, EMPTY: tl.constexpr, EPS: tl.constexpr, HAS_FLOOR: tl.constexpr,
    KP: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
    EVEN_D: tl.constexpr, UNIT_D: tl.constexpr, Q_ALIGN: tl.constexpr,
    PRECISION: tl.constexpr, UPCAST: tl.constexpr, LOOP: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_s = tl.program_id(1)

    rm = pid_m * BM + tl.arange(0, BM)
    # Rows past B re-read row B-1 (always in bounds); their results are never stored.
    q_off = tl.load(q_rows_ptr + tl.minimum(rm, B - 1))  # int64 element offsets
    if Q_ALIGN > 1:  # every offset is a multiple of Q_ALIGN: lets the loads vectorise
        q_off = tl.multiple_of(q_off, Q_ALIGN)
    rk = tl.arange(0, BK)  # used by the query-norm pass

    # Query norms (cosine, l2), fp32, one pass over the query block.
    qsq = tl.zeros([BM], dtype=tl.float32)
    if METRIC != 0:
        for d0 in range(0, D, BK):
            dd = d0 + rk
            q = tl.load(q_ptr + q_off[:, None] + _d_offset(dd, stride_qd, UNIT_D)[None, :],
                        mask=(dd < D)[None, :], other=0.0).to(tl.float32)
            qsq += tl.sum(q * q, axis=1)
    qnorm = tl.sqrt_rn(qsq)

    keys = tl.full([BM, KP], EMPTY, tl.int64)
    slot = tl.zeros([BM], dtype=tl.int32)          # position of each row's worst key
    thr = tl.full([BM], float("-inf"), tl.float32)  # selection value of that key
    if HAS_FLOOR:
        # A score known to be at most the row's c-th best (from a sample of the items): the
        # list starts full of sentinels at that value, so only better items cost a round.
        # Sentinels carry id 0xFFFFFFFF (the lowest key of their score) and come out empty.
        floor = tl.load(floor_ptr + tl.minimum(rm, B - 1))
        if METRIC == 1:
            floor = floor * tl.maximum(qnorm, EPS)
        elif METRIC == 2:
            floor = -(floor * floor)
        thr = floor
        keys = tl.zeros([BM, KP], dtype=tl.int64) + _pack_key(floor, tl.full([BM], SENTINEL_ID, tl.int64))[:, None]
    kcol = tl.arange(0, KP)

    n_begin = pid_s * tiles_per_split * BN
    n_end = tl.minimum(n_begin + tiles_per_split * BN, N)
    if LOOP == 2:
        # Flat loop, selection of the previous tile spread over this tile's D chunks: one
        # insertion round per chunk runs while the chunk's (async) tl.dot is in flight; the
        # rounds still pending when the tile ends are finished there.
        k_tiles = tl.cdiv(D, BK)
        total = tl.cdiv(n_end - n_begin, BN) * k_tiles
        acc = tl.zeros([BM, BN], dtype=tl.float32)
        prev = tl.full([BM, BN], float("-inf"), tl.float32)
        prev_n0 = n_begin
        best, col, hot = _tile_best(prev, thr)
        for it in range(0, total):
            # Tile and chunk from the induction variable alone, so the pipeliner can compute
            # the addresses of later iterations and prefetch them.
            tile = it // k_tiles
            kk = it - tile * k_tiles
            n0 = n_begin + tile * BN
            acc = _dot_chunk(acc, q_ptr, q_off, stride_qd, x_ptr, stride_xn, stride_xd, n0, kk * BK, N, D,
                             BN, BK, EVEN_D, UNIT_D, PRECISION, UPCAST)
            if hot > 0:
                prev, best, col, hot, keys, slot, thr = _insert_round(prev, prev_n0, best, col, keys, slot, thr,
                                                                      KP, BN)
            if kk == k_tiles - 1:
                while hot > 0:
                    prev, best, col, hot, keys, slot, thr = _insert_round(prev, prev_n0, best, col, keys, slot,
                                                                          thr, KP, BN)
                prev = _selection_values(acc, n0, N, xnorm_ptr, qsq, METRIC, EPS, BN)
                prev_n0 = n0
                best, col, hot = _tile_best(prev, thr)
                acc = tl.zeros([BM, BN], dtype=tl.float32)
        while hot > 0:
            prev, best, col, hot, keys, slot, thr = _insert_round(prev, prev_n0, best, col, keys, slot, thr, KP, BN)
    elif LOOP == 1:
        # One loop over (tile, D chunk): the software pipeline keeps loading the next tile's
        # chunks while the current tile's selection runs.
        k_tiles = tl.cdiv(D, BK)
        total = tl.cdiv(n_end - n_begin, BN) * k_tiles
        acc = tl.zeros([BM, BN], dtype=tl.float32)
        for it in range(0, total):
            tile = it // k_tiles
            kk = it - tile * k_tiles
            n0 = n_begin + tile * BN
            acc = _dot_chunk(acc, q_ptr, q_off, stride_qd, x_ptr, stride_xn, stride_xd, n0, kk * BK, N, D,
                             BN, BK, EVEN_D, UNIT_D, PRECISION, UPCAST)
            if kk == k_tiles - 1:
                val = _selection_values(acc, n0, N, xnorm_ptr, qsq, METRIC, EPS, BN)
                keys, slot, thr = _select_tile(val, n0, keys, slot, thr, KP, BN)
                acc = tl.zeros([BM, BN], dtype=tl.float32)
    else:
        for n0 in range(n_begin, n_end, BN):
            acc = tl.zeros([BM, BN], dtype=tl.float32)
            for d0 in range(0, D, BK):
                acc = _dot_chunk(acc, q_ptr, q_off, stride_qd, x_ptr, stride_xn, stride_xd, n0, d0, N, D,
                                 BN, BK, EVEN_D, UNIT_D, PRECISION, UPCAST)
            val = _selection_values(acc, n0, N, xnorm_ptr, qsq, METRIC, EPS, BN)
            keys, slot, thr = _select_tile(val, n0, keys, slot, thr, KP, BN)

    # Selection value -> final score; empty slots stay (-inf, -1).
    sel = _key_score(keys)
    raw_ids = _key_id(keys)
    empty = (sel == float("-inf")) | (raw_ids == SENTINEL_ID)
    ids = tl.where(empty, -1, raw_ids)
    if METRIC == 1:
        score = sel * (1.0 / tl.maximum(qnorm, EPS))[:, None]
    elif METRIC == 2:
        score = -tl.sqrt_rn(-sel)
    else:
        score = sel
    score = tl.where(empty, float("-inf"), score)

    out = (rm.to(tl.int64)[:, None] * splits + pid_s) * KP + kcol[None, :]
    row_ok = (rm < B)[:, None]
    tl.store(out_scores_ptr + out, score, mask=row_ok)
    tl.store(out_ids_ptr + out, ids, mask=row_ok)
