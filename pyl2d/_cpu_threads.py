"""How many threads the cpu kernels use: ``torch.get_num_threads()``, capped at the cores
that other processes leave free.

Why: with one of two cores taken by another job (a data loader, a second training run), two
workers time-share the remaining core and a 2-thread call measured slower than a 1-thread
call (issue 9, bench/notes_cpu.md). So the count follows what the machine has free, measured
from the kernel's own accounting rather than guessed:

    others = (busy CPU time of this process's allowed CPUs - this process's CPU time) / wall
    threads = clamp(round(allowed CPUs - others), 1, torch.get_num_threads())

over windows of at least ``WINDOW_S`` between calls (/proc/stat and the process clock are
read once per window, never per call). This process's own threads, including torch's
OpenMP workers spinning after an op, count as free. Where /proc/stat cannot be read
(not Linux) the count is ``torch.get_num_threads()``.

``PYL2D_CPU_THREADS=N`` fixes the count at N (no measuring); ``auto`` (the default) measures.
"""
from __future__ import annotations

import contextlib
import os
import time

import torch

ENV = "PYL2D_CPU_THREADS"
# Shortest window the free cores are averaged over; /proc/stat counts in 10 ms ticks, so a
# window of 100 ms measures the other processes' load to about 0.1 core.
WINDOW_S = 0.1
_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01

# (wall seconds, busy seconds on the allowed CPUs, this process's CPU seconds) at the start
# of the current window, and the cap decided at the end of the last one (None: not yet known).
_window: tuple[float, float, float] | None = None
_free_cores: int | None = None


def _allowed_cpus() -> set[int]:
    try:
        return os.sched_getaffinity(0)
    except (AttributeError, OSError):
        return set(range(os.cpu_count() or 1))


def _busy_seconds(cpus: set[int]) -> float | None:
    """Busy time (all but idle and iowait; steal counts as busy) summed over ``cpus``."""
    try:
        with open("/proc/stat", "rb") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    busy = 0
    for line in lines:
        if not line.startswith(b"cpu") or line[3:4] == b" ":
            continue
        name, *fields = line.split()
        try:
            cpu = int(name[3:])
            # user nice system idle iowait irq softirq steal (guest time is inside user/nice)
            ticks = [int(v) for v in fields[:8]]
        except ValueError:
            return None
        if cpu in cpus and len(ticks) >= 5:
            busy += sum(ticks) - ticks[3] - ticks[4]
    return busy * _TICK_S


def _sample(cpus: set[int]) -> tuple[float, float, float] | None:
    busy = _busy_seconds(cpus)
    return None if busy is None else (time.monotonic(), busy, time.process_time())


def free_cores() -> int | None:
    """Cores of this process's CPU set left free by other processes over the last window
    (None until a window has passed, or where it cannot be measured)."""
    global _window, _free_cores
    now = time.monotonic()
    if _window is not None and now - _window[0] < WINDOW_S:
        return _free_cores
    cpus = _allowed_cpus()
    sample = _sample(cpus)
    if sample is None:
        return None
    previous, _window = _window, sample
    if previous is not None:
        wall = sample[0] - previous[0]
        others = ((sample[1] - previous[1]) - (sample[2] - previous[2])) / wall
        _free_cores = max(1, round(len(cpus) - max(0.0, others)))
    return _free_cores


def cpu_threads() -> int:
    """Threads for one cpu kernel call (see the module docstring)."""
    fixed = os.environ.get(ENV, "auto").strip().lower() or "auto"
    if fixed != "auto":
        try:
            count = int(fixed)
        except ValueError:
            count = 0
        if count < 1:
            raise ValueError(f"{ENV}={fixed!r}: expected a positive thread count or 'auto'")
        return count
    requested = torch.get_num_threads()
    if requested <= 1:
        return 1
    free = free_cores()
    return requested if free is None else min(requested, free)


@contextlib.contextmanager
def torch_threads(count: int):
    """Run torch's own CPU ops (the vendor GEMM path's ``torch.mm``) on at most ``count``
    threads for the duration, so the cap above holds for them too. torch's thread count is
    process-wide: other Python threads' torch ops see the cap while this runs."""
    before = torch.get_num_threads()
    if count >= before:
        yield
        return
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
