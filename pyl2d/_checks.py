"""Argument validation shared by the ops: every problem is a ValueError naming the argument.

Data-dependent checks (NaN/Inf, id ranges) read the tensor, so they are skipped while
``torch.compile`` traces (they would break the graph) and cached per tensor version for
large, reused inputs such as an item matrix.
"""
from __future__ import annotations

import weakref
from typing import Iterable, Sequence

import torch

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
INDEX_DTYPES = (torch.int32, torch.int64)


def tracing() -> bool:
    return torch.compiler.is_compiling()


def tensor(name: str, value, *, ndim: int | None = None, dtypes: Sequence[torch.dtype] | None = None) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if ndim is not None and value.dim() != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(value.shape)}")
    if dtypes is not None and value.dtype not in dtypes:
        allowed = ", ".join(str(d).replace("torch.", "") for d in dtypes)
        raise ValueError(f"{name} must have dtype {allowed}; got {str(value.dtype).replace('torch.', '')}")
    return value


def same_device(named: Iterable[tuple[str, torch.Tensor | None]]) -> None:
    items = [(n, t) for n, t in named if t is not None]
    if not items:
        return
    first_name, first = items[0]
    for name, t in items[1:]:
        if t.device != first.device:
            raise ValueError(f"{name} is on {t.device} but {first_name} is on {first.device}; put them on one device")


def same_dtype(named: Iterable[tuple[str, torch.Tensor]]) -> None:
    items = list(named)
    first_name, first = items[0]
    for name, t in items[1:]:
        if t.dtype != first.dtype:
            raise ValueError(
                f"{name} has dtype {str(t.dtype).replace('torch.', '')} but {first_name} has "
                f"{str(first.dtype).replace('torch.', '')}; cast one of them"
            )


def choice(name: str, value, options: Sequence) -> None:
    if value not in options:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, options))}; got {value!r}")


def k_in_range(k, n: int, *, name: str = "k", what: str = "items") -> int:
    if isinstance(k, bool) or not isinstance(k, int):
        raise ValueError(f"{name} must be an int, got {type(k).__name__}")
    if k < 1 or k > n:
        raise ValueError(f"{name}={k} is out of range: it must be between 1 and the number of {what} ({n})")
    return k


# Tensors already found finite, keyed by id and checked against a weak reference and the
# tensor's version counter (bumped by every in-place write), so a reused item matrix is
# scanned once, not on every call.
_finite_cache: dict[int, tuple[weakref.ref, int, tuple, int]] = {}


def finite(name: str, t: torch.Tensor) -> None:
    if tracing() or not t.is_floating_point():
        return
    if t.is_inference():  # inference tensors have no version counter: check, do not cache
        _scan_finite(name, t)
        return
    key = id(t)
    stamp = (t._version, tuple(t.shape), t.data_ptr())
    hit = _finite_cache.get(key)
    if hit is not None and hit[0]() is t and hit[1:] == (stamp[0], stamp[1], stamp[2]):
        return
    _scan_finite(name, t)
    if t.numel() >= 1 << 16:
        if len(_finite_cache) > 64:
            for k in [k for k, v in _finite_cache.items() if v[0]() is None]:
                del _finite_cache[k]
        _finite_cache[key] = (weakref.ref(t), *stamp)


def _scan_finite(name: str, t: torch.Tensor) -> None:
    if not bool(torch.isfinite(t).all()):
        bad = (~torch.isfinite(t)).nonzero()[0].tolist()
        kind = "NaN" if bool(torch.isnan(t).any()) else "Inf"
        raise ValueError(f"{name} contains {kind} (first non-finite value at index {tuple(bad)})")


def ids_in_range(name: str, ids: torch.Tensor, n: int, *, allow_padding: bool = True) -> None:
    """Ids must lie in [0, n); -1 is padding where allowed."""
    if tracing() or ids.numel() == 0:
        return
    low = -1 if allow_padding else 0
    lo, hi = int(ids.min()), int(ids.max())
    if lo < low or hi >= n:
        bad = lo if lo < low else hi
        pad = " (-1 marks padding)" if allow_padding else ""
        raise ValueError(f"{name} holds id {bad}, out of range [0, {n}){pad}")
