"""Scale-out (issue 10): sharded exact search on W processes against the one-process op on the
same data, and what loading a many-shard memory costs in RAM.

    python bench/sharded.py            # W = 2 on CPU (gloo), the sizes below
    python bench/sharded.py --quick    # small sizes (smoke run)

Search rows: ``pyl2d.distributed.score_topk`` (items split evenly by rows) and
``pyl2d.distributed.local_topk`` (memory sharded by item) with W gloo processes of
T = cores / W threads each, against ``pyl2d.score_topk`` / ``pyl2d.local_topk`` in one
process with all cores, on the same inputs. Per row: ms per batch and per query (median of
``--repeats`` calls after a warm-up; the slowest rank's time), bytes each rank receives per
query (counted from the collectives' sizes), peak RSS per rank (ru_maxrss; each rank only ever
holds its shard: the data are drawn in chunks) and whether the
result is identical to the one-process op's. Load row: a 1 GiB memory of 16 shards written
in format 3, then ``ItemMemory.load``: RSS growth of the load (verify=False and True).
"""
from __future__ import annotations

import os
import resource
import statistics
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))

import _harness  # noqa: E402

SCORE = [(64, 200_000, 512, 10), (64, 200_000, 512, 100), (1, 200_000, 512, 10)]
LOCAL = [(64, 150_000, 14_239, 512, 20, 1000)]
QUICK_SCORE = [(16, 20_000, 128, 10)]
QUICK_LOCAL = [(16, 20_000, 2_000, 128, 20, 200)]


def _inputs(seed, *shape):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


_CHUNK = 8192


def _rows(seed, n, d, keep=None):
    """Rows of a seeded [n, d] matrix drawn in chunks, keeping only ``keep(global row ids)``'s
    rows, so a rank never holds more than its shard (and the one process draws the same)."""
    g = torch.Generator().manual_seed(seed)
    parts = []
    for start in range(0, n, _CHUNK):
        chunk = torch.randn(min(_CHUNK, n - start), d, generator=g)
        if keep is not None:
            chunk = chunk[keep(torch.arange(start, start + chunk.shape[0]))]
        parts.append(chunk)
    return torch.cat(parts)


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _timed(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), out


def rank_main(rank, world, score_sizes, local_sizes, repeats, threads):
    """One rank: its shard of every row's data, timed; returns [(row, ms, result)]."""
    import pyl2d
    import pyl2d.distributed as pd

    torch.set_num_threads(threads)
    os.environ["PYL2D_CPU_THREADS"] = str(threads)
    out = []
    for (b, n, d, k) in score_sizes:
        lo, hi = pd.shard_bounds(n, world, rank)
        q, local = _inputs(1, b, d), _rows(2, n, d, lambda r: (r >= lo) & (r < hi))
        ms, (s, i) = _timed(lambda: pd.score_topk(q, local, k, "l2"), repeats)
        out.append((("score_topk", b, n, d, k), ms, i))
    for (b, mem, n, d, k, m) in local_sizes:
        item_of = torch.randint(0, n, (mem,), generator=torch.Generator().manual_seed(5))
        items, rows = pd.partition_by_item(item_of, n, world, rank)
        q, memory = _inputs(3, b, d), _rows(4, mem, d, lambda r: item_of[r] % world == rank)
        local_of = item_of[rows] // world
        reps = pyl2d.segment_mean(memory, local_of, items.numel())[0]  # the owned items' means
        mine = (memory, item_of[rows], rows, items, reps)
        ms, (s, i) = _timed(lambda: pd.local_topk(q, *mine, k, m, "l2"), repeats)
        out.append((("local_topk", b, mem, n, d, k, m), ms, i))
    return out, _rss_mib()


def single(score_sizes, local_sizes, repeats, threads):
    import pyl2d

    torch.set_num_threads(threads)
    out = {}
    for (b, n, d, k) in score_sizes:
        q, x = _inputs(1, b, d), _rows(2, n, d)
        ms, (s, i) = _timed(lambda: pyl2d.score_topk(q, x, k, "l2"), repeats)
        out[("score_topk", b, n, d, k)] = (ms, i)
    for (b, mem, n, d, k, m) in local_sizes:
        item_of = torch.randint(0, n, (mem,), generator=torch.Generator().manual_seed(5))
        q, memory = _inputs(3, b, d), _rows(4, mem, d)
        reps = pyl2d.segment_mean(memory, item_of, n)[0]
        ms, (s, i) = _timed(lambda: pyl2d.local_topk(q, memory, item_of, reps, k, m, "l2"), repeats)
        out[("local_topk", b, mem, n, d, k, m)] = (ms, i)
    return out


def received_bytes(row, world) -> int:
    """Bytes one rank receives per query from the collectives of one call (candidates are a
    float32 score and an int64 id; the agreement checks add a few ints per call, not per query)."""
    if row[0] == "score_topk":
        return world * row[4] * 12
    k, m = row[5], row[6]
    return world * (m + k) * 12


def load_row(gib: float, shards: int) -> list:
    from helpers import write_synthetic_memory
    from pyl2d.l2d.memory import ItemMemory

    dim = 1024
    rows = int(gib * 2**30) // (dim * 2 + 8)
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as tmp:
        import pathlib
        path = write_synthetic_memory(pathlib.Path(tmp) / "m", rows=rows, dim=dim, dtype="float16",
                                      shard_size=-(-rows // shards))

        def statm_bytes():
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * 4096

        kept, grown, took = [], {}, {}
        for verify in (False, True):  # both stay loaded, so neither growth hides the other's
            before, t0 = statm_bytes(), time.perf_counter()
            kept.append(ItemMemory.load(path, verify=verify))
            took[verify] = (time.perf_counter() - t0) * 1e3
            grown[verify] = (statm_bytes() - before) / 2**20
        del kept
    return [f"{gib:g} GiB, {shards} shards ({rows} x {dim} float16)", f"{grown[False]:.1f}", f"{took[False]:.0f}",
            f"{grown[True]:.1f}", f"{took[True]:.0f}"]


def report(args) -> str:
    from dist_spawn import run_ranks

    cores = os.cpu_count() or 1
    world = args.world
    threads = max(1, cores // world)
    score_sizes = QUICK_SCORE if args.quick else SCORE
    local_sizes = QUICK_LOCAL if args.quick else LOCAL
    ranks = run_ranks(world, rank_main, score_sizes, local_sizes, args.repeats, threads, timeout=3000)
    base = single(score_sizes, local_sizes, args.repeats, cores)
    rows = []
    for j, (row, _, ids) in enumerate(ranks[0][0]):
        ms = max(r[0][j][1] for r in ranks)  # the slowest rank
        one_ms, one_ids = base[row]
        b = row[1]
        same = all(torch.equal(r[0][j][2], one_ids) for r in ranks)
        name = f"{row[0]} " + ("x".join(map(str, row[1:4])) + f" k={row[4]}" if row[0] == "score_topk" else
                                f"{row[1]}x{row[2]}x{row[4]} ({row[3]} items) k={row[5]} m={row[6]}")
        rows.append([name, f"{one_ms:.1f}", f"{ms:.1f}", f"{ms / b:.2f}", _harness.ratio(one_ms / ms, 2),
                     received_bytes(row, world), " / ".join(f"{r[1]:.0f}" for r in ranks), "yes" if same else "NO"])
    load = [load_row(0.0625 if args.quick else 1.0, 16)]
    return (f"# Sharded exact search (issue 10)\n\n{_harness.machine_line('cpu')}; W = {world} gloo processes x "
            f"{threads} thread(s) against one process x {cores} threads; medians of {args.repeats} calls; "
            f"command: `python bench/sharded.py {' '.join(sys.argv[1:])}`.\n\n"
            + _harness.markdown_table(["op, B x N x D", "1 process ms", f"{world} ranks ms", "ms / query",
                                       "speed-up", "bytes received / query / rank", "peak RSS MiB per rank",
                                       "same result"], rows)
            + "\n\nLoading a format-3 memory (one mapped file) of many shards: RSS growth of `ItemMemory.load`.\n\n"
            + _harness.markdown_table(["memory", "RSS growth MiB (verify=False)", "ms", "RSS growth MiB (verify=True)",
                                       "ms"], load) + "\n")


def add_args(ap):
    ap.add_argument("--world", type=int, default=2, help="processes (default 2)")


if __name__ == "__main__":
    sys.exit(_harness.main("sharded", __doc__, report, repeats=5, add_args=add_args))
