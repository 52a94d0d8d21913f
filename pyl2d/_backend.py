"""Backend selection: torch (reference), cpu (C++), triton and cuda (GPU).

Chosen per call by ``backend=``, else by the environment variable ``PYL2D_BACKEND``, else
automatically from the input's device. Each backend keeps one module per op in a parallel
tree: ``pyl2d.reference.<op>``, ``pyl2d.cpu.<op>``, ``pyl2d.triton.<op>``, ``pyl2d.cuda.<op>``,
each exposing a function named like the op.
"""
from __future__ import annotations

import functools
import importlib
import importlib.util
import os
from typing import Callable

import torch

from pyl2d import _ext

BACKENDS = ("torch", "cpu", "triton", "cuda")
OPS = ("aggregate_rewards", "group_advantages", "local_topk", "pool_hidden", "pooled_score_topk",
       "rewards_and_advantages", "score_from_hidden", "score_topk", "segment_mean")
_PACKAGES = {"torch": "pyl2d.reference", "cpu": "pyl2d.cpu", "triton": "pyl2d.triton", "cuda": "pyl2d.cuda"}
ENV_VAR = "PYL2D_BACKEND"


@functools.lru_cache(maxsize=None)
def triton_available() -> bool:
    try:
        import triton  # noqa: F401
        import triton.language  # noqa: F401
    except Exception:
        return False
    return True


def triton_interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def unavailable_reason(backend: str, device: torch.device) -> str | None:
    """Why ``backend`` cannot run on ``device``; None when it can."""
    if backend == "torch":
        return None
    if backend == "cpu":
        if device.type != "cpu":
            return f"it runs on CPU tensors, got {device.type}"
        if _ext.load() is None:
            return "pyl2d._C was not built"
        return None
    if backend == "cuda":
        if device.type != "cuda":
            return f"it runs on CUDA tensors, got {device.type}"
        if not _ext.has_cuda_kernels():
            return "pyl2d._C was built without CUDA kernels (rebuild with PYL2D_CUDA=ON)"
        return None
    if backend == "triton":
        if not triton_available():
            return "triton is not installed"
        if device.type == "cuda" or (device.type == "cpu" and triton_interpreted()):
            return None
        return f"it runs on CUDA tensors (or CPU tensors under TRITON_INTERPRET=1), got {device.type}"
    return f"unknown backend; choose one of {', '.join(BACKENDS)}"


# Automatic choice, in order of preference, per device type.
_PREFERENCE = {"cuda": ("triton", "cuda", "torch"), "cpu": ("cpu", "torch")}


@functools.lru_cache(maxsize=None)
def has_implementation(op: str, backend: str) -> bool:
    return importlib.util.find_spec(f"{_PACKAGES[backend]}.{op}") is not None


def default_backend(device: torch.device, op: str) -> str:
    for backend in _PREFERENCE.get(device.type, ("torch",)):
        if unavailable_reason(backend, device) is None and has_implementation(op, backend):
            return backend
    return "torch"


# Traced as a constant by torch.compile: the choice is made once, at trace time.
@torch._dynamo.assume_constant_result
def resolve(requested: str | None, device: torch.device, op: str) -> str:
    """The backend a call will use; ValueError naming ``backend`` when it cannot run."""
    source = "backend"
    if requested is None:
        requested = os.environ.get(ENV_VAR) or None
        source = ENV_VAR
    if requested is None or requested == "auto":
        return default_backend(device, op)
    if not isinstance(requested, str) or requested not in BACKENDS:
        raise ValueError(f"{source}={requested!r} is not a backend; choose one of {', '.join(BACKENDS)} or 'auto'")
    reason = unavailable_reason(requested, device)
    if reason is not None:
        raise ValueError(f"{source}={requested!r} cannot run here: {reason}")
    if not has_implementation(op, requested):
        raise ValueError(f"{source}={requested!r}: op {op!r} has no {requested!r} backend")
    return requested


def as_device(device) -> torch.device:
    """``device`` as a torch.device: a torch.device, a string such as "cpu" or "cuda:0", or an
    int (a CUDA index), as torch accepts them; ValueError naming ``device`` otherwise."""
    if isinstance(device, torch.device):
        return device
    if isinstance(device, bool) or not isinstance(device, (str, int)):
        raise ValueError(f"device must be a torch.device, a device string or an int, got {type(device).__name__}")
    try:
        return torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"device={device!r} is not a device: {exc}") from None


def available(device="cpu", op: str | None = None) -> list[str]:
    """Backends that can run on ``device`` (a torch.device or a string like "cuda") and
    implement ``op`` (one of ``OPS``), when given."""
    device = as_device(device)
    if op is not None and (not isinstance(op, str) or op not in OPS):
        raise ValueError(f"op must be one of {', '.join(OPS)}; got {op!r}")
    return [b for b in BACKENDS if unavailable_reason(b, device) is None
            and (op is None or has_implementation(op, b))]


def implementation(op: str, backend: str) -> Callable:
    """The function implementing ``op`` on ``backend``."""
    try:
        module = importlib.import_module(f"{_PACKAGES[backend]}.{op}")
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.endswith(f".{op}"):
            raise ValueError(f"op {op!r} has no {backend!r} backend") from None
        raise
    return getattr(module, op)
