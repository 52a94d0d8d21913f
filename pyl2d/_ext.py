"""Access to the compiled extension ``pyl2d._C`` and the tensor-passing convention.

The extension does not link libtorch: tensors cross as raw pointers plus sizes, element
strides and a dtype code, and outputs are always allocated by torch on the Python side.
That keeps one built wheel compatible with every torch >= 2.4.
"""
from __future__ import annotations

import functools
from types import ModuleType

import torch

from pyl2d import _codes

# torch dtype -> code (pyl2d._codes.DTYPES, mirrored by csrc/tensor_arg.h::DType).
DTYPE_CODES = {getattr(torch, name): code for code, name in enumerate(_codes.DTYPES)}


@functools.lru_cache(maxsize=None)
def load() -> ModuleType | None:
    """The compiled module, or None when pyl2d was not built with it (pure-torch install)."""
    try:
        from pyl2d import _C  # type: ignore[attr-defined]
    except ImportError:
        return None
    return _C


def require() -> ModuleType:
    """The compiled module; a clear error when it is missing."""
    mod = load()
    if mod is None:
        raise RuntimeError(
            "pyl2d's compiled extension (pyl2d._C) is not available: reinstall with "
            "`pip install .` from a source checkout, or use backend='torch'"
        )
    return mod


def has_cuda_kernels() -> bool:
    mod = load()
    return bool(mod is not None and getattr(mod, "with_cuda", False))


def dtype_code(t: torch.Tensor) -> int:
    try:
        return DTYPE_CODES[t.dtype]
    except KeyError:
        raise TypeError(f"pyl2d._C does not handle dtype {t.dtype}") from None


def arg(t: torch.Tensor | None):
    """``t`` described once for the native code (``_C.TensorArg``: pointer, dtype code, sizes,
    element strides); None is an absent optional tensor."""
    lib = require()
    if t is None:
        return lib.TensorArg()
    return lib.TensorArg(t.data_ptr(), dtype_code(t), list(t.shape), list(t.stride()))


def call(entry, cls, **fields):
    """Call the native ``entry`` point with its parameter struct ``cls`` (e.g.
    ``_C.score_topk_cpu`` with ``_C.ScoreTopkParams``) filled from named ``fields``;
    tensors (and None) become TensorArgs. The tensors stay referenced here until the call
    returns (a TensorArg holds only a pointer). A misspelt field is an AttributeError."""
    p = cls()
    for name, value in fields.items():
        if not hasattr(p, name):
            raise AttributeError(f"{cls.__name__} has no field {name!r}")
        setattr(p, name, arg(value) if value is None or isinstance(value, torch.Tensor) else value)
    return entry(p)


def ensure_inner_contiguous(t: torch.Tensor) -> torch.Tensor:
    """Row strides are handled by every kernel; only a strided last dimension forces a copy."""
    if t.dim() >= 1 and t.shape[-1] > 1 and t.stride(-1) != 1:
        return t.contiguous()
    return t


def cuda_stream(device: torch.device) -> int:
    """The caller's current CUDA stream handle, so kernels run in its order."""
    return torch.cuda.current_stream(device).cuda_stream
