"""CUDA ``pool_hidden`` (kernels/pool_hidden.cu): float32 gather or masked mean into a torch
workspace, then optional L2 normalisation and rounding to the hidden dtype."""
from __future__ import annotations

import torch

from pyl2d import _codes, _ext
from pyl2d.ops.score_topk import cuda as _score_topk
from pyl2d._fallbacks import last_token_index



def pool_hidden(hidden, attention_mask, mode="last", normalize=False):
    lib = _ext.require()
    h = _ext.ensure_inner_contiguous(hidden)
    b, _, d = h.shape
    pooled = _score_topk.new_buffer((b, d), torch.float32, h.device)
    out = _score_topk.new_buffer((b, d), h.dtype, h.device)
    last = real = None
    if mode == "last":
        last = last_token_index(attention_mask).to(torch.int64).contiguous()
    else:
        real = (attention_mask != 0).to(torch.uint8).contiguous()
    with torch.cuda.device(h.device):
        _ext.call(lib.pool_hidden_cuda, lib.PoolHiddenCudaParams, hidden=h, mode=_codes.POOL_MODE_CODES[mode],
                  last_index=last, real=real, normalize=bool(normalize), pooled=pooled, out=out,
                  stream=_ext.cuda_stream(h.device))
    return out
