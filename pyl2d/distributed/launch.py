"""Joining the process group a launcher describes in the environment (torchrun, accelerate,
DeepSpeed and SLURM wrappers all set WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR and
MASTER_PORT), so ``torchrun --nproc-per-node W -m pyl2d build-memory ...`` runs one rank
per process: NCCL with one GPU per rank (cuda:LOCAL_RANK) when the device is CUDA, else
gloo on CPU."""
from __future__ import annotations

import contextlib
import os


def launched_world_size() -> int:
    """WORLD_SIZE from the environment (1 when not launched by a distributed launcher)."""
    return _env_int("WORLD_SIZE", 1, 1)


def launched_rank() -> int:
    """RANK from the environment (0 when not launched by a distributed launcher): known before
    any process group exists, so rank 0 alone can log or prepare folders from the start."""
    return _env_int("RANK", 0, 0)


def _env_int(name: str, default: int, low: int) -> int:
    """Environment variable ``name`` as an int >= ``low`` (``default`` when unset), else a
    ValueError naming it: a launcher's bad value must not be read as one process."""
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number") from None
    if value < low:
        raise ValueError(f"{name}={raw!r} must be >= {low}")
    return value


@contextlib.contextmanager
def process_group(device: str | None):
    """Yields (rank, world size, this rank's device): the launcher's process group, joined
    for the duration (and left after) when WORLD_SIZE > 1; else (0, 1, device)."""
    import torch
    import torch.distributed as dist

    world = launched_world_size()
    if world == 1 or dist.is_initialized():
        yield (dist.get_rank(), dist.get_world_size(), device) if dist.is_initialized() else (0, 1, device)
        return
    cuda = (device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
    dist.init_process_group("nccl" if cuda else "gloo")
    try:
        yield dist.get_rank(), dist.get_world_size(), device or "cpu"
    finally:
        dist.destroy_process_group()
