"""Argument validation shared by the ops: every problem is a ValueError naming the argument.

Data-dependent checks (NaN/Inf, value ranges, id ranges) read the tensor, so they are skipped
while ``torch.compile`` traces (they would break the graph). The scan of a float tensor runs
in chunks of ``SCAN_CHUNK_BYTES`` (64 MiB: bounded extra memory, streaming speed) and yields its
(min, max), which the search ops use to reject inputs whose scores could overflow float32.

Range cache: the (min, max) of a large tensor (``CACHE_MIN_NUMEL`` elements or more, e.g. a
reused item matrix) is kept, keyed by the tensor's identity, version counter, shape, strides,
dtype and data pointer, so it is scanned once, not on every call. The promise: every write
that goes through torch (in-place ops, indexing assignment, ``out=``, ``copy_``) bumps the
version counter and forces a rescan. Writes that bypass it -- through ``.numpy()``,
``.data``, ``torch.from_numpy``/DLPack aliases or raw pointers -- are NOT seen: after such a
write call ``pyl2d.clear_input_cache()`` (or pass the tensor to drop only its entry). Inference
tensors have no version counter and are scanned on every call. The cache is thread-safe.
"""
from __future__ import annotations

import math
import numbers
import sys
import threading
import weakref
from typing import Iterable, Iterator, Sequence

import torch

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
INDEX_DTYPES = (torch.int32, torch.int64)
# Largest magnitude a float32 score, norm or sum may reach; half the float32 maximum leaves
# room for rounding in the accumulation.
FLOAT32_LIMIT = torch.finfo(torch.float32).max / 2
SCAN_CHUNK_BYTES = 64 << 20  # large enough that per-reduction overhead (thread wake-up) is noise
LOCATE_CHUNK_BYTES = 1 << 20
CACHE_MIN_NUMEL = 1 << 16
CACHE_SIZE = 64


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


def width(name: str, t: torch.Tensor) -> int:
    """The size of the last dimension (the vector width D), which must be >= 1."""
    if t.shape[-1] == 0:
        raise ValueError(f"{name} has zero width (shape {tuple(t.shape)}): its last dimension D must be >= 1")
    return t.shape[-1]


def vectors(name: str, value, what: str) -> torch.Tensor:
    """A [rows, D] float matrix of at least one row (one ``what``) of width D >= 1."""
    tensor(name, value, ndim=2, dtypes=FLOAT_DTYPES)
    if value.shape[0] == 0:
        raise ValueError(f"{name} is empty: it must hold at least one {what}")
    width(name, value)
    return value


def finite_number(name: str, value, *, positive: bool = False, nonnegative: bool = False) -> float:
    """A finite real number (a numpy scalar too; never a bool) as a float, else a ValueError
    naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    if nonnegative and value < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return float(value)


def flag(name: str, value) -> bool:
    """A boolean option: ``bool`` (or a numpy bool) only, so ``"no"`` or ``2`` is an error, not True."""
    if isinstance(value, bool):
        return value
    np = sys.modules.get("numpy")
    if np is not None and isinstance(value, np.bool_):
        return bool(value)
    raise ValueError(f"{name} must be a bool (True or False), got {type(value).__name__} {value!r}")


def same_device(named: Iterable[tuple[str, torch.Tensor | None]]) -> None:
    items = [(n, t) for n, t in named if t is not None]
    for name, t in items:
        tensor(name, t)
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


def positive_ints(config, names: Sequence[str]) -> None:
    """Each attribute of ``config`` in ``names`` is an int >= 1 (a bool is not); else a
    ValueError naming it (for config dataclasses' ``__post_init__``)."""
    for name in names:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")


def choice(name: str, value, options: Sequence) -> None:
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, options))}; got {value!r}")


def k_in_range(k, n: int, *, name: str = "k", what: str = "items") -> int:
    if isinstance(k, bool) or not isinstance(k, int):
        raise ValueError(f"{name} must be an int, got {type(k).__name__}")
    if k < 1 or k > n:
        raise ValueError(f"{name}={k} is out of range: it must be between 1 and the number of {what} ({n})")
    return k


def fits_float32(bound: float | None, name: str, what: str) -> None:
    """ValueError naming ``name`` when ``bound`` (an upper bound on |a float32 result|) is too large."""
    if bound is not None and not bound <= FLOAT32_LIMIT:
        raise ValueError(f"{name} has values too large: {what} can reach {bound:.3g}, beyond the float32 range "
                         f"({FLOAT32_LIMIT:.3g}), so the result would overflow; scale {name} down")


# --- value ranges, cached ------------------------------------------------------------

_cache_lock = threading.Lock()
_range_cache: dict[int, tuple[weakref.ref, tuple, tuple[float, float]]] = {}


def clear_input_cache(t: torch.Tensor | None = None) -> None:
    """Forget the cached scans (of ``t`` only, when given), so the next call rescans: needed
    after writing into a tensor behind torch's back (``.numpy()``, ``.data``, raw pointers)."""
    with _cache_lock:
        if t is None:
            _range_cache.clear()
        else:
            _range_cache.pop(id(t), None)


def value_range(name: str, t: torch.Tensor) -> tuple[float, float] | None:
    """(min, max) of a float tensor; ValueError naming ``name`` when it holds NaN or Inf.
    None while tracing, for non-float or meta tensors (nothing to check)."""
    if tracing() or not t.is_floating_point() or t.device.type == "meta":
        return None
    if t.is_inference() or t.numel() < CACHE_MIN_NUMEL:  # inference tensors have no version counter
        return _scan(name, t)
    key = id(t)
    stamp = (t._version, tuple(t.shape), t.stride(), t.dtype, t.data_ptr())
    with _cache_lock:
        hit = _range_cache.get(key)
    if hit is not None and hit[0]() is t and hit[1] == stamp:
        return hit[2]
    result = _scan(name, t)
    with _cache_lock:
        if len(_range_cache) >= CACHE_SIZE:
            for k, v in list(_range_cache.items()):  # snapshot: drop dead entries, then the oldest
                if v[0]() is None:
                    del _range_cache[k]
            while len(_range_cache) >= CACHE_SIZE:
                del _range_cache[next(iter(_range_cache))]
        _range_cache[key] = (weakref.ref(t), stamp, result)
    return result


def finite(name: str, t: torch.Tensor) -> float | None:
    """max |t| (None when not checked, see ``value_range``); ValueError on NaN/Inf."""
    r = value_range(name, t)
    return None if r is None else max(-r[0], r[1])


def _chunks(t: torch.Tensor, chunk_bytes: int | None = None, *, flat: bool | None = None
            ) -> Iterator[tuple[int, torch.Tensor]]:
    """(offset, view) pieces of about ``chunk_bytes`` (default SCAN_CHUNK_BYTES): flat element
    ranges of a contiguous tensor, else row ranges of dim 0. Views, never copies."""
    chunk_bytes = chunk_bytes or SCAN_CHUNK_BYTES
    if t.is_contiguous() if flat is None else flat:
        t, row_bytes = t.view(-1), t.element_size()
    else:
        row_bytes = max(1, t[0].numel() * t.element_size())
    step = max(1, chunk_bytes // row_bytes)
    for start in range(0, t.shape[0], step):
        yield start, t[start:start + step]


def _scan(name: str, t: torch.Tensor) -> tuple[float, float]:
    if t.numel() == 0:
        return (0.0, 0.0)
    t = t.detach()  # a view: the reductions record no autograd graph
    if t.numel() * t.element_size() <= SCAN_CHUNK_BYTES:  # one chunk: the common, small case
        lo, hi = torch.stack(torch.aminmax(t)).tolist()
    else:
        lows, highs = [], []
        for _, chunk in _chunks(t):  # aminmax reduces without numel-sized temporaries
            lo, hi = torch.aminmax(chunk)
            lows.append(lo)
            highs.append(hi)
        lo, hi = torch.stack([torch.stack(lows).min(), torch.stack(highs).max()]).tolist()  # one sync
    if not (math.isfinite(lo) and math.isfinite(hi)):  # NaN propagates through min and max
        _raise_first_bad(name, t)
    return lo, hi


def _raise_first_bad(name: str, t: torch.Tensor) -> None:
    """Find the first bad chunk with aminmax (no temporaries), then the first bad value in it
    with isfinite over pieces of LOCATE_CHUNK_BYTES, so failing costs little memory too."""
    flat = t.is_contiguous()
    for start, chunk in _chunks(t, flat=flat):
        if all(math.isfinite(v) for v in torch.stack(torch.aminmax(chunk)).tolist()):
            continue
        for sub, piece in _chunks(chunk, LOCATE_CHUNK_BYTES, flat=flat):
            bad = torch.isfinite(piece).logical_not_()
            if not bool(bad.any()):
                continue
            local = int(torch.argmax(bad.reshape(-1).view(torch.uint8)))  # the first True
            if flat:
                index = _unravel(start + sub + local, tuple(t.shape))
            else:
                index = _unravel(local, tuple(piece.shape))
                index = (index[0] + start + sub,) + index[1:]
            kind = "NaN" if math.isnan(float(t[index])) else "Inf"
            raise ValueError(f"{name} contains {kind} (first non-finite value at index {index})")
    raise ValueError(f"{name} contains NaN or Inf")  # written to while being scanned


def _unravel(flat: int, shape: tuple) -> tuple:
    index = []
    for size in reversed(shape):
        flat, i = divmod(flat, size)
        index.append(i)
    return tuple(reversed(index))


def ids_in_range(name: str, ids: torch.Tensor, n: int, *, allow_padding: bool = True) -> None:
    """Ids must lie in [0, n); -1 is padding where allowed."""
    if tracing() or ids.numel() == 0:
        return
    low = -1 if allow_padding else 0
    lo, hi = (int(v) for v in torch.aminmax(ids))
    if lo < low or hi >= n:
        bad = lo if lo < low else hi
        pad = " (-1 marks padding)" if allow_padding else ""
        raise ValueError(f"{name} holds id {bad}, out of range [0, {n}){pad}")
