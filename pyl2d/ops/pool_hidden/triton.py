"""Triton ``pool_hidden``: last real token or masked mean over [B, T, D], fp32 accumulation.

Grid = (rows, D blocks). "last" finds the last position whose mask is nonzero (left or right
padding) inside the kernel; "mean" sums the masked rows in fp32 and divides by the count.
Without ``normalize`` the kernel writes the hidden dtype directly; with it, the pooled rows go
to an fp32 buffer and a second kernel (one program per row) divides by max(|row|, 1e-12), as
the reference normalises before rounding.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from pyl2d import _codes

_BLOCK_T = 16
_BLOCK_D = 128


@triton.jit
def _last_index(mask_row_ptr, stride_mt, T, BLOCK_T: tl.constexpr):
    offs = tl.arange(0, BLOCK_T)
    last = tl.full([BLOCK_T], -1, tl.int32)
    for t0 in range(0, T, BLOCK_T):
        t = t0 + offs
        m = tl.load(mask_row_ptr + t.to(tl.int64) * stride_mt, mask=t < T, other=0)
        last = tl.maximum(last, tl.where(m != 0, t, -1))
    return tl.max(last, axis=0)


@triton.jit
def pool_kernel(h_ptr, stride_hb, stride_ht, stride_hd, mask_ptr, stride_mb, stride_mt,
                out_ptr, stride_ob, T, D,
                MEAN: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    d_ok = d < D
    h_row = h_ptr + row * stride_hb + d.to(tl.int64) * stride_hd
    m_row = mask_ptr + row * stride_mb
    if MEAN:
        offs = tl.arange(0, BLOCK_T)
        acc = tl.zeros([BLOCK_D], dtype=tl.float32)
        count = tl.zeros([BLOCK_T], dtype=tl.float32)
        for t0 in range(0, T, BLOCK_T):
            t = t0 + offs
            real = tl.load(m_row + t.to(tl.int64) * stride_mt, mask=t < T, other=0) != 0
            h = tl.load(h_row[None, :] + t.to(tl.int64)[:, None] * stride_ht,
                        mask=real[:, None] & d_ok[None, :], other=0.0)
            acc += tl.sum(h.to(tl.float32), axis=0)
            count += real.to(tl.float32)
        pooled = acc / tl.sum(count, axis=0)
    else:
        last = _last_index(m_row, stride_mt, T, BLOCK_T)
        # An all-zero mask row is rejected by the op; clamp so a direct call cannot read out of bounds.
        last = tl.maximum(last, 0).to(tl.int64)
        pooled = tl.load(h_row + last * stride_ht, mask=d_ok, other=0.0).to(tl.float32)
    tl.store(out_ptr + row * stride_ob + d, pooled.to(out_ptr.dtype.element_ty), mask=d_ok)


@triton.jit
def normalize_kernel(x_ptr, out_ptr, D, EPS: tl.constexpr, BLOCK_D: tl.constexpr):
    """out[row] = x[row] / max(|x[row]|, EPS); x is contiguous fp32 [B, D]."""
    row = tl.program_id(0).to(tl.int64)
    offs = tl.arange(0, BLOCK_D)
    sq = tl.zeros([BLOCK_D], dtype=tl.float32)
    for d0 in range(0, D, BLOCK_D):
        d = d0 + offs
        x = tl.load(x_ptr + row * D + d, mask=d < D, other=0.0)
        sq += x * x
    norm = tl.maximum(tl.sqrt_rn(tl.sum(sq, axis=0)), EPS)
    for d0 in range(0, D, BLOCK_D):
        d = d0 + offs
        x = tl.load(x_ptr + row * D + d, mask=d < D, other=0.0)
        tl.store(out_ptr + row * D + d, (x / norm).to(out_ptr.dtype.element_ty), mask=d < D)


def _mask_view(attention_mask: torch.Tensor) -> torch.Tensor:
    # Triton cannot load torch.bool as such everywhere; a uint8 view has the same bytes.
    return attention_mask.view(torch.uint8) if attention_mask.dtype == torch.bool else attention_mask


def pool_hidden(hidden, attention_mask, mode="last", normalize=False):
    batch, t, dim = hidden.shape
    mask = _mask_view(attention_mask)
    pooled = torch.empty((batch, dim), dtype=torch.float32 if normalize else hidden.dtype, device=hidden.device)
    grid = (batch, triton.cdiv(dim, _BLOCK_D))
    pool_kernel[grid](hidden, hidden.stride(0), hidden.stride(1), hidden.stride(2),
                      mask, mask.stride(0), mask.stride(1), pooled, pooled.stride(0), t, dim,
                      MEAN=mode == "mean", BLOCK_T=_BLOCK_T, BLOCK_D=_BLOCK_D)
    if not normalize:
        return pooled
    out = torch.empty((batch, dim), dtype=hidden.dtype, device=hidden.device)
    normalize_kernel[(batch,)](pooled, out, dim, EPS=_codes.NORM_EPS, BLOCK_D=_BLOCK_D)
    return out
