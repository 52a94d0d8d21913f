"""Reference for ``pool_hidden``."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from pyl2d._codes import NORM_EPS


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the last real token per row, under left or right padding."""
    real = attention_mask != 0
    t = real.shape[1]
    return (t - 1) - torch.flip(real, dims=[1]).to(torch.int8).argmax(dim=1)


def pool_hidden(hidden, attention_mask, mode="last", normalize=False):
    h = hidden.to(torch.float32)
    if mode == "last":
        idx = last_token_index(attention_mask)
        pooled = h[torch.arange(h.shape[0], device=h.device), idx]
    elif mode == "mean":
        w = (attention_mask != 0).to(torch.float32)
        pooled = (h * w[:, :, None]).sum(1) / w.sum(1, keepdim=True)
    else:
        raise ValueError(f"mode must be 'last' or 'mean'; got {mode!r}")
    if normalize:
        pooled = F.normalize(pooled, dim=-1, eps=NORM_EPS)
    return pooled.to(hidden.dtype)
