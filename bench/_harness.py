"""Timing, peak-memory and table helpers shared by the benchmark scripts.

CPU times are wall-clock medians (perf_counter) after a warm-up; GPU times are medians from
``triton.testing.do_bench`` (CUDA events). Peak memory is the extra memory a call needs:
the process's peak RSS above its level before the call on CPU (Linux: VmHWM reset through
/proc/self/clear_refs), ``torch.cuda.max_memory_allocated`` above the baseline on GPU.
"""
from __future__ import annotations

import datetime as _dt
import gc
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Callable

import torch


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def fixed_mmap_threshold() -> None:
    """Re-exec with glibc's mmap threshold pinned, so large temporaries are mapped and
    unmapped per call and peak RSS reflects each call's own extra memory."""
    if os.name == "posix" and "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
        os.execve(sys.executable, [sys.executable] + sys.argv, env)


def _trim_heap() -> None:
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def measure(fn: Callable[[], object], device: str, repeats: int = 5, warmup: int = 1) -> tuple[float, float | None]:
    """(median milliseconds, peak extra memory in MiB or None) of ``fn()``."""
    gc.collect()
    if device == "cuda":
        import triton.testing
        fn()
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
        ms = triton.testing.do_bench(fn, warmup=25, rep=max(100, repeats * 20), return_mode="median")
        return float(ms), peak
    for _ in range(warmup):
        fn()
    gc.collect()
    _trim_heap()
    peak = None
    if _reset_peak_rss():
        before = _status_kb("VmRSS")
        fn()
        after = _status_kb("VmHWM")
        if before is not None and after is not None:
            peak = max(after - before, 0) / 1024
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), peak


def machine_line(device: str) -> str:
    if device == "cuda":
        name = torch.cuda.get_device_name()
    else:
        name = platform.processor() or platform.machine()
        try:
            out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=5).stdout
            name = next((l.split(":", 1)[1].strip() for l in out.splitlines() if l.startswith("Model name")), name)
        except Exception:
            pass
        load = ", load average {:.1f}".format(os.getloadavg()[0]) if hasattr(os, "getloadavg") else ""
        name = f"{name}, {torch.get_num_threads()} threads{load}"
    return f"{_dt.date.today().isoformat()}, {name}, torch {torch.__version__}"


def markdown_table(header: list[str], rows: list[list[object]]) -> str:
    def fmt(v):
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
        return str(v)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def results_path(name: str) -> str:
    here = os.path.dirname(os.path.abspath(__file__))
    os.makedirs(os.path.join(here, "results"), exist_ok=True)
    return os.path.join(here, "results", f"{name}_{_dt.date.today().isoformat()}.md")
