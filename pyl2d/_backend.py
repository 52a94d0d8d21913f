"""Backend selection: torch (reference), cpu (C++), triton and cuda (GPU).

Chosen per call by ``backend=``, else by the environment variable ``PYL2D_BACKEND``, else
automatically from the input's device. ``IMPLEMENTATIONS`` is the dispatch table, written
out: op -> backend -> the function that implements it (imported on first use, since
triton's import is heavy and may be missing); ``unavailable_reason`` says why a backend
cannot run on a device. Backends never import this module (see docs/architecture.md).
"""
from __future__ import annotations

import functools
import importlib
import os
from typing import Callable

import torch

from pyl2d import _ext
from pyl2d._platform import triton_available, triton_interpreted

BACKENDS = ("torch", "cpu", "triton", "cuda")
OPS = ("aggregate_rewards", "group_advantages", "local_topk", "pool_hidden", "pooled_score_topk",
       "rewards_and_advantages", "score_from_hidden", "score_topk", "segment_mean")

# The dispatch table: op -> backend -> "module:function". A backend that lacks an op is not
# listed for it; tests/test_dispatch.py checks that every entry resolves.
IMPLEMENTATIONS: dict[str, dict[str, str]] = {
    "aggregate_rewards": {
        "torch": "pyl2d.ops.aggregate_rewards.reference:aggregate_rewards",
        "cpu": "pyl2d.ops.aggregate_rewards.cpu:aggregate_rewards",
        "triton": "pyl2d.ops.aggregate_rewards.triton:aggregate_rewards",
        "cuda": "pyl2d.ops.aggregate_rewards.cuda:aggregate_rewards",
    },
    "group_advantages": {
        "torch": "pyl2d.ops.group_advantages.reference:group_advantages",
        "cpu": "pyl2d.ops.group_advantages.cpu:group_advantages",
        "triton": "pyl2d.ops.group_advantages.triton:group_advantages",
        "cuda": "pyl2d.ops.group_advantages.cuda:group_advantages",
    },
    "local_topk": {
        "torch": "pyl2d.ops.local_topk.reference:local_topk",
        "cpu": "pyl2d.ops.local_topk.cpu:local_topk",
        "triton": "pyl2d.ops.local_topk.triton:local_topk",
        "cuda": "pyl2d.ops.local_topk.cuda:local_topk",
    },
    "pool_hidden": {
        "torch": "pyl2d.ops.pool_hidden.reference:pool_hidden",
        "cpu": "pyl2d.ops.pool_hidden.cpu:pool_hidden",
        "triton": "pyl2d.ops.pool_hidden.triton:pool_hidden",
        "cuda": "pyl2d.ops.pool_hidden.cuda:pool_hidden",
    },
    "pooled_score_topk": {
        "torch": "pyl2d.ops.pooled_score_topk.reference:pooled_score_topk",
        "cpu": "pyl2d.ops.pooled_score_topk.cpu:pooled_score_topk",
        "triton": "pyl2d.ops.pooled_score_topk.triton:pooled_score_topk",
        "cuda": "pyl2d.ops.pooled_score_topk.cuda:pooled_score_topk",
    },
    "rewards_and_advantages": {
        "torch": "pyl2d.ops.rewards_and_advantages.reference:rewards_and_advantages",
        "cpu": "pyl2d.ops.rewards_and_advantages.cpu:rewards_and_advantages",
        "triton": "pyl2d.ops.rewards_and_advantages.triton:rewards_and_advantages",
        "cuda": "pyl2d.ops.rewards_and_advantages.cuda:rewards_and_advantages",
    },
    "score_from_hidden": {
        "torch": "pyl2d.ops.score_from_hidden.reference:score_from_hidden",
        "cpu": "pyl2d.ops.score_from_hidden.cpu:score_from_hidden",
        "triton": "pyl2d.ops.score_from_hidden.triton:score_from_hidden",
        "cuda": "pyl2d.ops.score_from_hidden.cuda:score_from_hidden",
    },
    "score_topk": {
        "torch": "pyl2d.ops.score_topk.reference:score_topk",
        "cpu": "pyl2d.ops.score_topk.cpu:score_topk",
        "triton": "pyl2d.ops.score_topk.triton:score_topk",
        "cuda": "pyl2d.ops.score_topk.cuda:score_topk",
    },
    "segment_mean": {
        "torch": "pyl2d.ops.segment_mean.reference:segment_mean",
        "cpu": "pyl2d.ops.segment_mean.cpu:segment_mean",
        "triton": "pyl2d.ops.segment_mean.triton:segment_mean",
        "cuda": "pyl2d.ops.segment_mean.cuda:segment_mean",
    },
}
ENV_VAR = "PYL2D_BACKEND"


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


def has_implementation(op: str, backend: str) -> bool:
    return backend in IMPLEMENTATIONS.get(op, {})


def default_backend(device: torch.device, op: str) -> str:
    for backend in _PREFERENCE.get(device.type, ("torch",)):
        if unavailable_reason(backend, device) is None and has_implementation(op, backend):
            return backend
    return "torch"


def check_name(requested, source: str = "backend") -> None:
    """ValueError naming ``source`` unless ``requested`` is a backend's name (or "auto" or
    None): checkable before there is a device, when an option is set."""
    if requested is not None and requested != "auto" and (not isinstance(requested, str) or requested not in BACKENDS):
        raise ValueError(f"{source}={requested!r} is not a backend; choose one of {', '.join(BACKENDS)} or 'auto'")


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
    check_name(requested, source)
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


@functools.lru_cache(maxsize=None)
def implementation(op: str, backend: str) -> Callable:
    """The function implementing ``op`` on ``backend`` (from ``IMPLEMENTATIONS``)."""
    target = IMPLEMENTATIONS.get(op, {}).get(backend)
    if target is None:
        raise ValueError(f"op {op!r} has no {backend!r} backend")
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def runs_eagerly(*tensors: torch.Tensor | None) -> bool:
    """Whether an op may call its implementation directly instead of through its
    torch.library custom op: plain tensors on a real device, outside torch.compile, functorch
    transforms and dispatch modes (fake tensors, FlopCounterMode), where the custom op is
    what those machineries see. The direct call saves the custom op's dispatch (about 15-40
    us a call), which small CPU searches notice."""
    if torch.compiler.is_compiling() or torch._C._are_functorch_transforms_active():
        return False
    if torch.utils._python_dispatch._get_current_dispatch_mode() is not None:
        return False
    return all(t is None or (type(t) is torch.Tensor and t.device.type != "meta") for t in tensors)


def call(op: str, custom_op: Callable, backend: str, *args):
    """Run ``op`` on ``backend``: its implementation directly where ``runs_eagerly`` allows,
    else through its torch.library ``custom_op`` (which takes the backend last)."""
    tensors = [a for a in args if a is None or isinstance(a, torch.Tensor)]
    if runs_eagerly(*tensors):
        return implementation(op, backend)(*args)
    return custom_op(*args, backend)
