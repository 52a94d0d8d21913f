"""What the benchmark scripts ``bench/<op>.py`` share: timing, peak memory, the command line,
the header line, markdown tables, ratios and the results file.

CPU times are wall-clock medians (perf_counter) after a warm-up; GPU times are medians from
``triton.testing.do_bench`` (CUDA events). Peak memory is the extra memory a call needs:
the process's peak RSS above its level before the call on CPU (Linux: VmHWM reset through
/proc/self/clear_refs), ``torch.cuda.max_memory_allocated`` above the baseline on GPU.

A script defines ``report(args) -> str`` (its markdown) and ends with
``sys.exit(_harness.main("<op>", __doc__, report))``: ``main`` parses ``--device cpu|cuda``,
``--quick``, ``--repeats`` and ``--out`` (plus the script's own flags), prints the report and,
unless ``--quick``, writes it to ``bench/results/<op>_<cpu|gpu>_<date>.md`` (or ``--out``).
"""
from __future__ import annotations

import argparse
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


def peak_extra_mib(fn: Callable[[], object]) -> float | None:
    """Calls ``fn()`` once on CPU and returns the process's peak RSS growth during the call in
    MiB (None where /proc cannot reset the peak)."""
    gc.collect()
    _trim_heap()
    if not _reset_peak_rss():
        fn()
        return None
    before = _status_kb("VmRSS")
    fn()
    after = _status_kb("VmHWM")
    return None if before is None or after is None else max(after - before, 0) / 1024


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
    peak = peak_extra_mib(fn)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), peak


def median_ms(fn: Callable[[], object], device: str, repeats: int) -> float:
    """Median milliseconds of ``fn()``, time only: one warm-up call and ``repeats`` timed calls
    on CPU; ``do_bench`` with a shorter warm-up than ``measure`` on GPU."""
    if device == "cuda":
        import triton.testing
        return float(triton.testing.do_bench(fn, warmup=10, rep=max(50, repeats * 10), return_mode="median"))
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def machine_line(device: str) -> str:
    """When and where: UTC date and time, the GPU or the CPU model with its cores, torch's
    threads and the load average (on a shared machine every column runs under that load)."""
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
        name = f"{name}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads{load}"
    now = _dt.datetime.now(_dt.timezone.utc)
    return f"{now:%Y-%m-%d %H:%M} UTC; {name}; torch {torch.__version__}"


def timing_line(device: str) -> str:
    return "Median milliseconds ({})".format(
        "CUDA events, triton.testing.do_bench" if device == "cuda" else "perf_counter")


def ratio(x: float, places: int | None = None) -> str:
    """A speed-up as text: ``places`` decimals, else one below 10x and none above."""
    if places is not None:
        return f"{x:.{places}f}x"
    return f"{x:.1f}x" if x < 10 else f"{x:.0f}x"


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


def device_tag(device: str) -> str:
    """The results files' name for a device: cpu or gpu."""
    return "gpu" if device == "cuda" else "cpu"


def main(name: str, doc: str, report: Callable[[argparse.Namespace], str], argv: list[str] | None = None,
         repeats: int | dict[str, int] | None = None, add_args: Callable[[argparse.ArgumentParser], None] | None = None,
         pin_mmap: bool = False) -> int:
    """Parse the shared flags (and the script's, through ``add_args``), print ``report(args)``
    and, for a full run or with ``--out``, write it to its results file. ``repeats`` is the
    default of ``--repeats``, one number or one per device (``{"cpu": 3, "cuda": 20}``).
    ``pin_mmap``: re-exec with ``fixed_mmap_threshold`` first, for scripts that report CPU peak
    memory."""
    if pin_mmap:
        fixed_mmap_threshold()
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--quick", action="store_true",
                        help="small sizes only (smoke test); prints, writes no file unless --out")
    per_device = repeats if isinstance(repeats, dict) else {"cpu": repeats, "cuda": repeats}
    default = (f"{per_device['cpu']}" if per_device["cpu"] == per_device["cuda"]
               else f"{per_device['cpu']} on cpu, {per_device['cuda']} on cuda")
    parser.add_argument("--repeats", type=int, default=None, help=f"timed calls per median (default {default})")
    parser.add_argument("--out", default=None,
                        help=f"markdown file to write (default bench/results/{name}_<cpu|gpu>_<date>.md)")
    if add_args is not None:
        add_args(parser)
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda needs a CUDA device")
    if args.repeats is None:
        args.repeats = per_device[args.device]
    # What the imports made lives to the end: keep it out of the gc.collect() before each
    # measurement (a full collection over torch's objects took 0.6 s on a busy CPU).
    gc.freeze()
    try:
        text = report(args)
    finally:
        gc.unfreeze()  # the exit's cleanup frees them (else nanobind reports them as leaks)
    print(text, flush=True)
    if args.out or not args.quick:
        path = args.out or results_path(f"{name}_{device_tag(args.device)}")
        with open(path, "w") as f:
            f.write(text)
        print(f"wrote {path}", file=sys.stderr)
    return 0
