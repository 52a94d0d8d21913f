"""Triton ``segment_mean``: rows grouped by segment with a stable sort (CSR), then one
program per (segment, D block) sums its rows in float32, BLOCK_R rows per step.
Deterministic (no atomics): each segment's rows are summed in index order by one program."""
from __future__ import annotations

import torch
import triton
import triton.language as tl

_BLOCK_R = 16


@triton.jit
def segment_mean_kernel(values_ptr, stride_v, order_ptr, ends_ptr, counts_ptr, means_ptr, D,
                        BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr):
    seg = tl.program_id(0).to(tl.int64)
    d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    d_ok = d < D
    count = tl.load(counts_ptr + seg)
    end = tl.load(ends_ptr + seg)
    acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    offs = tl.arange(0, BLOCK_R)
    for r0 in range(end - count, end, BLOCK_R):
        r = r0 + offs
        r_ok = r < end
        rows = tl.load(order_ptr + r, mask=r_ok, other=0)
        tile = tl.load(values_ptr + rows[:, None] * stride_v + d[None, :], mask=r_ok[:, None] & d_ok[None, :],
                       other=0.0)
        acc += tl.sum(tile.to(tl.float32), axis=0)
    mean = acc / tl.maximum(count, 1).to(tl.float32)
    tl.store(means_ptr + seg * D + d, mean, mask=d_ok)


def segment_mean(values, segment_ids, num_segments):
    if values.shape[1] > 1 and values.stride(1) != 1:
        values = values.contiguous()
    ids = segment_ids.to(torch.int64)
    counts = torch.bincount(ids, minlength=num_segments)
    order = torch.sort(ids, stable=True).indices
    ends = torch.cumsum(counts, 0)
    rows, cols = values.shape
    means = torch.empty((num_segments, cols), dtype=torch.float32, device=values.device)
    if num_segments == 0 or cols == 0:
        return means.zero_(), counts
    block_d = min(128, triton.next_power_of_2(cols))
    grid = (num_segments, triton.cdiv(cols, block_d))
    segment_mean_kernel[grid](values, values.stride(0), order, ends, counts, means, cols,
                              BLOCK_R=_BLOCK_R, BLOCK_D=block_d)
    return means, counts
