"""The codes and constants that Python and the native code share, defined once.

Each table's position is its code: ``METRICS[2] == "l2"`` is metric code 2 everywhere.
``csrc/codes.h`` mirrors this module for the C++ and CUDA code, and ``pyl2d._C.codes()``
reports the compiled values, which ``tests/test_codes.py`` checks against this module. To
add a metric (or a mode), append it here and in ``csrc/codes.h``; the test keeps the two in
step.
"""
from __future__ import annotations

# Similarity metrics of the search ops (score_topk, pooled_score_topk, local_topk).
METRICS = ("ip", "cosine", "l2")
# Pooling of hidden states over the tokens of a sequence (pool_hidden).
POOL_MODES = ("last", "mean")
# Aggregation of the perspectives' scores into one reward (aggregate_rewards).
REWARD_MODES = ("mean", "harmonic", "geometric")
# Scaling of group-relative advantages (group_advantages).
ADVANTAGE_SCALES = ("none", "group", "batch")
# Element types of tensors handed to the native code (csrc/tensor_arg.h: DType).
DTYPES = ("float32", "float16", "bfloat16", "int32", "int64", "bool", "uint8", "float64")

# Floor of a vector norm before dividing by it (cosine, normalisation), as
# torch.nn.functional.normalize's default.
NORM_EPS = 1e-12

TABLES = {"metric": METRICS, "pool_mode": POOL_MODES, "reward_mode": REWARD_MODES,
          "advantage_scale": ADVANTAGE_SCALES, "dtype": DTYPES}


def code(table: tuple[str, ...], name: str) -> int:
    """The code of ``name`` in ``table`` (callers validate names first)."""
    return table.index(name)


METRIC_CODES = {name: i for i, name in enumerate(METRICS)}
POOL_MODE_CODES = {name: i for i, name in enumerate(POOL_MODES)}
REWARD_MODE_CODES = {name: i for i, name in enumerate(REWARD_MODES)}
ADVANTAGE_SCALE_CODES = {name: i for i, name in enumerate(ADVANTAGE_SCALES)}
