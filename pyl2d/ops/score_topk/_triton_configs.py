"""Launch configurations for the Triton score/top-k kernel.

A small hand-picked table instead of ``triton.autotune``: autotuning would compile every
variant on first call and re-tune per shape key, while this table keeps the number of
compiled variants small and the choice deterministic. ``CONFIGS`` lists every config the
GPU benchmark may try; ``pick`` chooses one from (dtype, D, B, KP). Under the interpreter
(``TRITON_INTERPRET=1``) the smallest tile is used so CPU tests stay fast.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch

from pyl2d import _platform

# SMs of an H100/H200; the split count aims at a few programs per SM.
DEFAULT_SMS = 132
# Running top-KP state is BM x KP int64 in registers; keep it under this many entries.
MAX_STATE = 4096
# Largest KP (= next pow2 >= k + E) served by the fused kernel; beyond it, the chunked fallback.
MAX_KP = 256


@dataclass(frozen=True)
class ScoreConfig:
    block_m: int  # queries per program (tl.dot M, >= 16)
    block_n: int  # items per tile
    block_k: int  # D chunk per tl.dot
    num_warps: int
    num_stages: int
    programs_per_sm: int = 1  # resident programs per SM (occupancy) assumed by the split planner
    # 0: nested loops (tiles, D chunks); 1: one flat pipelined loop over (tile, D chunk);
    # 2: flat, and the previous tile's selection spread over the current tile's chunks.
    loop: int = 2

    def as_dict(self) -> dict:
        return asdict(self)


# Candidates for the H200 (sm_90): tensor-core tiles, BK 64, 3-4 stages.
CONFIGS: tuple[ScoreConfig, ...] = (
    ScoreConfig(128, 128, 64, 8, 3),
    ScoreConfig(128, 128, 64, 8, 4),
    ScoreConfig(128, 128, 64, 8, 3, loop=1),  # flat, selection not overlapped
    ScoreConfig(128, 128, 64, 8, 3, loop=0),  # nested loops: pipeline drains every tile
    ScoreConfig(64, 128, 64, 4, 3, programs_per_sm=2, loop=1),
    ScoreConfig(128, 256, 64, 8, 3, loop=1),  # loop=2 spills at 128x256
    ScoreConfig(64, 128, 64, 4, 4, programs_per_sm=2),
    ScoreConfig(64, 256, 64, 8, 3, loop=1),
    ScoreConfig(64, 64, 64, 4, 4, programs_per_sm=2),
    ScoreConfig(16, 128, 64, 4, 4, programs_per_sm=2),  # small batches: memory bound, do not waste M
    ScoreConfig(32, 128, 64, 4, 4, programs_per_sm=2),
    # float32 (IEEE FMA path, no tensor cores): smaller K chunk; nested loops use fewest registers
    ScoreConfig(64, 64, 32, 4, 3, programs_per_sm=2, loop=0),
    ScoreConfig(64, 64, 32, 4, 3, programs_per_sm=2),
    ScoreConfig(32, 64, 32, 4, 3, programs_per_sm=2, loop=0),
)

INTERPRETER_CONFIG = ScoreConfig(16, 16, 16, 1, 1, programs_per_sm=1)

_override: ScoreConfig | None = None


def set_override(config: ScoreConfig | dict | None) -> None:
    """Force one config for every launch (benchmark sweeps); None restores the table."""
    global _override
    _override = ScoreConfig(**config) if isinstance(config, dict) else config


def _next_pow2(x: int) -> int:
    return 1 << max(0, (int(x) - 1).bit_length())


def pick(dtype: torch.dtype, dim: int, batch: int, kp: int) -> ScoreConfig:
    """Config for a launch; block_m is shrunk so the BM x KP selection state fits registers."""
    if _override is not None:
        cfg = _override
    elif _platform.triton_interpreted():
        cfg = INTERPRETER_CONFIG
    elif dtype == torch.float32:
        cfg = ScoreConfig(64, 64, 32, 4, 3, programs_per_sm=2, loop=0)
    elif batch <= 16:
        cfg = ScoreConfig(16, 128, 64, 4, 4, programs_per_sm=2)
    elif batch <= 32:
        cfg = ScoreConfig(32, 128, 64, 4, 4, programs_per_sm=2)
    elif batch <= 64:
        cfg = ScoreConfig(64, 128, 64, 4, 4, programs_per_sm=2)
    else:
        cfg = ScoreConfig(128, 128, 64, 8, 3)
    block_m = cfg.block_m
    while block_m > 16 and block_m * kp > MAX_STATE:
        block_m //= 2
    block_k = min(cfg.block_k, max(16, _next_pow2(dim)))
    return replace(cfg, block_m=block_m, block_k=block_k)
