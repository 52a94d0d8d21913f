"""The collectives the sharded ops use, on any torch.distributed backend (gloo on CPU, NCCL
on GPU): an agreement check that turns mismatched arguments into the same clear error on
every rank (instead of a hang or a wrong merge), and gathers of per-rank candidates."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.distributed as dist


_GATHER_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int64, torch.int32)


def require_group(group) -> tuple[int, int]:
    """(rank, world size) in ``group`` (None: the default group), or a clear error."""
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError("pyl2d.distributed needs an initialised process group: call "
                           "torch.distributed.init_process_group (torchrun sets up its environment)")
    return dist.get_rank(group), dist.get_world_size(group)


def comm_device(group, like: torch.device) -> torch.device:
    """Where tensors exchanged on ``group`` must live: CUDA for NCCL, else CPU."""
    backend = str(dist.get_backend(group)).lower()
    if "nccl" in backend:
        return like if like.type == "cuda" else torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_gather(t: torch.Tensor, group, device: torch.device) -> torch.Tensor:
    """[W, *t.shape]: every rank's ``t`` (same shape on all ranks), on ``t``'s device."""
    _, world = require_group(group)
    src = t.to(device).contiguous()
    out = [torch.empty_like(src) for _ in range(world)]
    dist.all_gather(out, src, group=group)
    return torch.stack(out).to(t.device)


def gather_ints(values: Sequence[int], group, device: torch.device) -> list[list[int]]:
    """Every rank's ``values`` (same length on all ranks), as [W][len] Python ints."""
    t = torch.tensor(list(values), dtype=torch.int64)
    return all_gather(t, group, device).cpu().tolist()


def agree(fields: dict[str, int], group, device: torch.device) -> list[dict[str, int]]:
    """Check that every rank passed the same ``fields`` (name -> int); raise the same
    ValueError on all ranks, naming the field and the ranks' values, when they differ.
    Returns every rank's fields (rank order)."""
    names = list(fields)
    rows = gather_ints([fields[n] for n in names], group, device)
    for j, name in enumerate(names):
        values = [row[j] for row in rows]
        if len(set(values)) > 1:
            listed = ", ".join(f"rank {r}: {v}" for r, v in enumerate(values))
            raise ValueError(f"the ranks disagree on {name} ({listed}); every rank must pass the same queries, "
                             "k, m, metric and exclude")
    return [dict(zip(names, row)) for row in rows]


# Above this many bitmap bytes per held id, disjoint() gathers the ids instead (a sparse id
# space, e.g. a few items with ids near 2**32, must not allocate a bitmap of the whole space).
_BITMAP_BYTES_PER_ID = 8


def disjoint(name: str, ids: torch.Tensor, group, device: torch.device) -> None:
    """Check that no id of ``ids`` (this rank's ascending, repeat-free ids, already checked
    on every rank) is also held by another rank; raise the same ValueError on every rank,
    naming the first shared id and the ranks holding it, when one is. Cost: one exchange of
    per-rank (count, min, max); when the ranks' [min, max] ranges overlap (ids dealt out
    modulo the world size do), an all-reduce of a byte per id of the id space, or an
    all-gather of the ids when that space is much sparser than the ids held."""
    rank, world = require_group(group)
    ids = ids.to(torch.int64).flatten()
    count = ids.numel()
    heads = gather_ints([count, int(ids[0]) if count else 0, int(ids[-1]) if count else -1], group, device)
    ranges = sorted((lo, hi) for n, lo, hi in heads if n)
    if all(ranges[j][1] < ranges[j + 1][0] for j in range(len(ranges) - 1)):
        return
    total = sum(h[0] for h in heads)
    space = max(h[2] for h in heads) + 1
    if space <= _BITMAP_BYTES_PER_ID * total:
        # sum of 0/1 per id over the ranks; uint8 holds it for up to 255 ranks
        hits = torch.zeros(space, dtype=torch.uint8 if world < 256 else torch.int32, device=device)
        hits[ids.to(device)] = 1
        dist.all_reduce(hits, group=group)
        shared = (hits > 1).nonzero().flatten()
        first = int(shared[0]) if shared.numel() else None
    else:
        width = max(h[0] for h in heads)
        padded = torch.full((width,), -1, dtype=torch.int64)
        padded[:count] = ids.cpu()
        every = all_gather(padded, group, device).flatten()
        every = every[every >= 0].sort().values
        dup = (every[1:] == every[:-1]).nonzero().flatten()
        first = int(every[dup[0]]) if dup.numel() else None
    if first is None:
        return
    held = gather_ints([int(bool((ids == first).any()))], group, device)
    holders = [r for r, (flag,) in enumerate(held) if flag]
    raise ValueError(f"{name}: id {first} is held by ranks {holders}; every id must be on one rank only (a "
                     "shared id would be returned twice)")


def check_together(check, group) -> None:
    """Run this rank's input ``check``; if it (or any other rank's) raised, every rank raises
    one ValueError naming the ranks and their messages. A rank raising alone would leave the
    others waiting in the next collective (any Exception counts: a numpy array where a
    tensor belongs fails with AttributeError)."""
    try:
        check()
        error = None
    except Exception as exc:  # noqa: BLE001 -- reported on every rank, never swallowed
        error = f"{type(exc).__name__}: {exc}"
    flags = gather_ints([error is not None], group, comm_device(group, torch.device("cpu")))
    failed = [r for r, (flag,) in enumerate(flags) if flag]
    if not failed:
        return
    messages = [None] * len(flags)
    dist.all_gather_object(messages, error, group=group)
    raise ValueError("pyl2d.distributed: " + "; ".join(f"rank {r}: {messages[r]}" for r in failed))


def gather_rows(local: torch.Tensor, group=None) -> tuple[torch.Tensor, list[int]]:
    """All ranks' rows of ``local`` [n_r, ...] concatenated in rank order (ranks may hold
    different counts, including none), and the counts: how data-parallel encoded queries
    become the batch every rank searches."""
    rank, world = require_group(group)

    def check():
        if not isinstance(local, torch.Tensor) or local.dim() < 1:
            raise ValueError(f"gather_rows needs a tensor of rows [n, ...], got "
                             f"{getattr(local, 'shape', type(local).__name__)}")
    check_together(check, group)
    device = comm_device(group, local.device)
    # Rank, dtype and count first (fixed length on every rank), then the row shape: gloo aborts
    # the process when the ranks' buffers differ in size.
    code = _GATHER_DTYPES.index(local.dtype) if local.dtype in _GATHER_DTYPES else -1
    heads = gather_ints([local.dim(), code, local.shape[0]], group, device)
    if len({(h[0], h[1]) for h in heads}) > 1 or any(h[1] < 0 for h in heads):
        raise ValueError(f"gather_rows: the ranks' tensors differ in dimensions or dtype, or have a dtype other "
                         f"than {', '.join(map(str, _GATHER_DTYPES))} (rank: [dims, dtype index, rows] = {heads})")
    counts = [h[2] for h in heads]
    tail = tuple(local.shape[1:])
    shapes = gather_ints(list(tail), group, device) if tail else [[]] * world
    if len({tuple(s) for s in shapes}) > 1:
        raise ValueError(f"gather_rows: the ranks' rows differ in shape ({shapes})")
    width = max(counts)
    padded = local.new_zeros((width, *tail))
    padded[:local.shape[0]] = local
    gathered = all_gather(padded, group, device)
    return torch.cat([gathered[r, :counts[r]] for r in range(world)]), counts
