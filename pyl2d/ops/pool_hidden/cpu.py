"""cpu backend for ``pool_hidden``: the C++ kernel in csrc/pool_hidden_cpu.cpp."""
from __future__ import annotations

import torch

from pyl2d import _codes, _ext
from pyl2d._cpu_threads import cpu_threads


def pool_hidden(hidden, attention_mask, mode="last", normalize=False):
    lib = _ext.require()
    hidden = _ext.ensure_inner_contiguous(hidden)
    b, t, d = hidden.shape
    # Any mask dtype becomes a contiguous 0/1 byte mask, so the kernel reads one format.
    mask = (attention_mask != 0).to(torch.uint8).contiguous()
    out = torch.empty((b, d), dtype=hidden.dtype)
    _ext.call(lib.pool_hidden_cpu, lib.PoolHiddenParams, hidden=hidden, attention_mask=mask, out=out,
              mode=_codes.POOL_MODE_CODES[mode], normalize=bool(normalize), num_threads=cpu_threads())
    return out
