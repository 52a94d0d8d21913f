"""``pool_hidden``: one vector per sequence from a batch of hidden states, the last real
token (left or right padding) or the masked mean, optionally L2-normalised."""
from __future__ import annotations

import torch

from pyl2d import _backend, _checks, _codes

MODES = _codes.POOL_MODES
MASK_DTYPES = (torch.bool, torch.int32, torch.int64, torch.uint8, torch.float32, torch.float16, torch.bfloat16)


@torch.library.custom_op("pyl2d::pool_hidden", mutates_args=())
def _pool_hidden_op(hidden: torch.Tensor, attention_mask: torch.Tensor, mode: str, normalize: bool,
                    backend: str) -> torch.Tensor:
    return _backend.implementation("pool_hidden", backend)(hidden, attention_mask, mode, normalize)


@_pool_hidden_op.register_fake
def _(hidden, attention_mask, mode, normalize, backend):
    return hidden.new_empty((hidden.shape[0], hidden.shape[2]))


def check_pool_args(hidden: torch.Tensor, attention_mask: torch.Tensor, mode: str, normalize) -> float | None:
    """Validate the pooling arguments; returns an upper bound on |pooled entry| (None while tracing)."""
    _checks.flag("normalize", normalize)
    _checks.tensor("hidden", hidden, ndim=3, dtypes=_checks.FLOAT_DTYPES)
    _checks.tensor("attention_mask", attention_mask, ndim=2, dtypes=MASK_DTYPES)
    if tuple(attention_mask.shape) != tuple(hidden.shape[:2]):
        raise ValueError(
            f"attention_mask has shape {tuple(attention_mask.shape)} but hidden is "
            f"{tuple(hidden.shape)}: it must be [B, T] = {tuple(hidden.shape[:2])}")
    if hidden.shape[0] == 0 or hidden.shape[1] == 0:
        raise ValueError(f"hidden is empty (shape {tuple(hidden.shape)})")
    _checks.width("hidden", hidden)
    _checks.same_device([("hidden", hidden), ("attention_mask", attention_mask)])
    _checks.choice("mode", mode, MODES)
    if not _checks.tracing():
        empty = ~(attention_mask != 0).any(dim=1)
        if bool(empty.any()):
            rows = empty.nonzero().flatten()[:5].tolist()
            raise ValueError(f"attention_mask has rows with no real token (all zero): rows {rows}")
    hidden_max = _checks.finite("hidden", hidden)
    if hidden_max is None:
        return None
    b, t, d = hidden.shape
    if mode == "mean":  # float32 sum over the tokens
        _checks.fits_float32(t * hidden_max, "hidden", "the sum over the tokens (T * max|hidden|)")
    if normalize:  # float32 squared norm of the pooled row
        _checks.fits_float32(d * hidden_max ** 2, "hidden", "the squared norms (D * max|hidden|^2)")
        return 1.0
    return hidden_max


def pool_hidden(hidden: torch.Tensor, attention_mask: torch.Tensor, mode: str = "last",
                normalize: bool = False, *, backend: str | None = None) -> torch.Tensor:
    """Pool hidden states [B, T, D] under an attention mask [B, T] into [B, D].

    ``mode="last"`` takes the last token whose mask is nonzero, so it works for left and
    right padding alike; ``"mean"`` averages the real tokens. Accumulates in float32 and
    returns the hidden dtype. ``normalize=True`` (a bool) L2-normalises each row. Rejects
    D = 0, NaN/Inf in ``hidden`` and values whose float32 sums or norms would overflow."""
    check_pool_args(hidden, attention_mask, mode, normalize)
    resolved = _backend.resolve(backend, hidden.device, "pool_hidden")
    return _pool_hidden_op(hidden, attention_mask, mode, bool(normalize), resolved)
