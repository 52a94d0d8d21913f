"""pyl2d: fast Light Latent-space Decoding (L2D) for LLM recommenders and Psychology-grounded
Empathetic Reward Modeling (PERM) for Hugging Face models.

The ops are importable from here; the two methods live in ``pyl2d.l2d`` and ``pyl2d.perm``, and
the ops sharded over a torch.distributed group in ``pyl2d.distributed`` (all imported on first
use, so ``import pyl2d`` stays light)."""
import importlib
import types

from pyl2d import ops
from pyl2d._backend import BACKENDS, available as available_backends
from pyl2d._checks import clear_input_cache
from pyl2d.ops import (aggregate_rewards, group_advantages, local_topk, pool_hidden, pooled_score_topk,
                       rewards_and_advantages, score_from_hidden, score_topk, segment_mean)

__version__ = "0.1.0"

__all__ = ["BACKENDS", "aggregate_rewards", "available_backends", "clear_input_cache", "distributed", "group_advantages",
           "l2d", "local_topk", "ops",
           "perm", "pool_hidden", "pooled_score_topk", "rewards_and_advantages", "score_from_hidden", "score_topk",
           "segment_mean", "__version__"]


def __getattr__(name: str) -> types.ModuleType:
    if name in ("distributed", "l2d", "perm"):
        return importlib.import_module(f"pyl2d.{name}")
    raise AttributeError(f"module 'pyl2d' has no attribute {name!r}")
