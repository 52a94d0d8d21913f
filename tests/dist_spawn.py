"""Run a function on W freshly spawned processes joined in a gloo (or NCCL) process group (no
pre-started service: the rendezvous is a file in a temporary folder) and collect what each
rank returns; a rank that raises fails the test with its traceback, one that hangs is
killed after ``timeout`` seconds."""
from __future__ import annotations

import os
import pickle
import tempfile
import traceback

import torch.multiprocessing as mp


def _entry(rank, world, folder, fn, args, backend="gloo"):
    import torch
    import torch.distributed as dist
    torch.set_num_threads(1)
    if backend == "nccl":
        torch.cuda.set_device(rank)
    os.environ.setdefault("PYL2D_CPU_THREADS", "1")
    out = os.path.join(folder, f"rank{rank}.pkl")
    try:
        dist.init_process_group(backend, init_method=f"file://{os.path.join(folder, 'rendezvous')}",
                                rank=rank, world_size=world)
        result = ("ok", fn(rank, world, *args))
    except BaseException:  # noqa: BLE001 - reported to the parent
        result = ("error", traceback.format_exc())
    with open(out, "wb") as f:
        pickle.dump(result, f)
    if dist.is_initialized():
        dist.destroy_process_group()


def run_ranks(world: int, fn, *args, timeout: float = 240.0, allow_failure: bool = False,
              backend: str = "gloo") -> list:
    """[what fn(rank, world, *args) returned on each rank]. As torchrun does, when one rank
    dies the others are killed; with ``allow_failure`` that returns the exit codes
    ([None for a rank that was killed]) instead of failing."""
    import time

    with tempfile.TemporaryDirectory() as folder:
        ctx = mp.get_context("spawn")
        procs = [ctx.Process(target=_entry, args=(r, world, folder, fn, args, backend)) for r in range(world)]
        for p in procs:
            p.start()
        deadline = time.monotonic() + timeout
        while any(p.is_alive() for p in procs) and time.monotonic() < deadline:
            if any(p.exitcode not in (None, 0) for p in procs):
                break
            time.sleep(0.05)
        died = [r for r, p in enumerate(procs) if p.exitcode not in (None, 0)]
        hung = [r for r, p in enumerate(procs) if p.is_alive()]
        for p in procs:
            if p.is_alive():
                p.kill()
            p.join()
        if allow_failure and died:
            return [procs[r].exitcode if r in died else None for r in range(world)]
        if died:
            raise AssertionError(f"ranks {died} of {world} died (exit codes {[procs[r].exitcode for r in died]})")
        if hung:
            raise AssertionError(f"ranks {hung} of {world} did not finish within {timeout} s")
        results = []
        for r in range(world):
            with open(os.path.join(folder, f"rank{r}.pkl"), "rb") as f:
                status, value = pickle.load(f)
            if status != "ok":
                raise AssertionError(f"rank {r} of {world} failed:\n{value}")
            results.append(value)
        return results
