"""The number format a model runs in: one name ("auto", "fp32", "bf16", "fp16") for training
(``pyl2d finetune --precision``) and inference (``build-memory``, ``eval`` and ``recommend``
``--precision``), resolved and checked against the device in one place.

bf16 on a CPU is allowed only where the CPU multiplies bf16 natively (AMX, AVX512-BF16, Arm
BF16): elsewhere torch emulates it and it is slower than float32. A prefill of SmolLM2-135M in
bf16 on 2 AVX512-BF16 cores (AMD EPYC, 2026-12-07: 16 prompts of 160 tokens a batch) took
0.070 s a prompt against 0.255 s in float32, 3.6x faster.
"""
from __future__ import annotations

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def cpu_bf16_support() -> str | None:
    """The CPU feature that runs bf16 matrix products natively ("AMX", "AVX512-BF16", or
    "BF16" on Arm), or None: there bf16 is emulated and slower than float32. From torch's
    CPU capabilities where this torch reports them, else the kernel's /proc/cpuinfo flags."""
    flags: set[str] = set()
    try:
        import torch

        caps = torch.cpu.get_capabilities()
        flags = {name for name, on in caps.items() if on is True}
    except (AttributeError, RuntimeError, ImportError):
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                for line in f:
                    key, _, value = line.partition(":")
                    if key.strip().lower() in ("flags", "features"):
                        flags |= set(value.split())
        except OSError:
            pass
    for flag, name in (("amx_bf16", "AMX"), ("avx512_bf16", "AVX512-BF16"), ("bf16", "BF16"), ("sve_bf16", "BF16")):
        if flag in flags:
            return name
    return None


def check_precision(precision: str) -> None:
    """ValueError unless ``precision`` is one of :data:`PRECISIONS` (a config's own check)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")


def resolve_precision(precision: str, device: str | None) -> str:
    """``precision`` resolved ("auto": bf16 on a GPU that supports it, else fp16 there; fp32 on
    a CPU) and checked against ``device`` ("cpu", "cuda", "cuda:N"; None: CUDA when available)."""
    import torch

    check_precision(precision)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu")).type
    if precision == "auto":
        if device == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "fp32"
    if device == "cpu" and precision == "fp16":
        raise ValueError("precision fp16 needs a GPU; on a CPU use fp32, or bf16 where the CPU has AMX or AVX512-BF16")
    if device == "cpu" and precision == "bf16" and cpu_bf16_support() is None:
        raise ValueError("precision bf16 on this CPU: it has neither AMX nor AVX512-BF16 (nor Arm BF16), so bf16 "
                         "would be emulated and slower than fp32; use --precision fp32")
    return precision


def torch_dtype(precision: str, device: str | None):
    """The torch dtype a model is loaded in for inference at ``precision`` on ``device``."""
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[resolve_precision(precision, device)]
