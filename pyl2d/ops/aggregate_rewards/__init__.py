"""``aggregate_rewards``: one reward per completion from its per-perspective judge scores.

The weighted mean (arithmetic, harmonic or geometric) of ``scores / score_max`` over the
valid scores of each row (a NaN score drops out with its weight; a row without any valid,
positively weighted score is NaN), plus ``bystander_coef * (bystander / 100 - 1)`` and
``-length_coef * max(0, lengths - length_limit)``. Computed in float32.

A NaN bystander score or length (the judge or the tokenizer gave none) drops its term out of
the row by default (``missing_terms="drop"``: the empathy reward still counts; in the PERM code
each term is a TRL reward function of its own); ``missing_terms="void"`` makes such a row NaN
instead (unscorable: never silently unpenalised). How this differs from the PERM code's
imputation of unreadable scores: docs/perm.md."""
from __future__ import annotations

import math
from typing import Optional

import torch

from pyl2d import _backend, _checks, _codes

MODES = _codes.REWARD_MODES
MISSING_TERMS = ("drop", "void")
LENGTH_DTYPES = (torch.int32, torch.int64, torch.float32, torch.float16, torch.bfloat16)


@torch.library.custom_op("pyl2d::aggregate_rewards", mutates_args=())
def _aggregate_rewards_op(scores: torch.Tensor, weights: Optional[torch.Tensor], mode: str, score_max: float,
                          bystander: Optional[torch.Tensor], bystander_coef: float, lengths: Optional[torch.Tensor],
                          length_limit: Optional[float], length_coef: float, backend: str) -> torch.Tensor:
    return _backend.implementation("aggregate_rewards", backend)(
        scores, weights, mode, score_max, bystander, bystander_coef, lengths, length_limit, length_coef)


@_aggregate_rewards_op.register_fake
def _(scores, weights, mode, score_max, bystander, bystander_coef, lengths, length_limit, length_coef, backend):
    return scores.new_empty((scores.shape[0],), dtype=torch.float32)


def _no_inf(name: str, t: torch.Tensor) -> None:
    """NaN marks a missing value and is allowed; +-Inf is a bug upstream."""
    if not _checks.tracing() and t.is_floating_point() and bool(torch.isinf(t).any()):
        raise ValueError(f"{name} contains Inf (use NaN to mark a missing value)")


def check_aggregate_args(scores, weights, mode, score_max, bystander, bystander_coef, lengths, length_limit,
                         length_coef) -> tuple:
    """Validate and normalise the ``aggregate_rewards`` arguments; returns the scalars as floats."""
    _checks.tensor("scores", scores, ndim=2, dtypes=_checks.FLOAT_DTYPES)
    b, p = scores.shape
    if b == 0 or p == 0:
        raise ValueError(f"scores is empty (shape {(b, p)}): it must be [B, P] with B, P >= 1")
    _checks.choice("mode", mode, MODES)
    score_max = _checks.finite_number("score_max", score_max, positive=True)
    bystander_coef = _checks.finite_number("bystander_coef", bystander_coef)
    length_coef = _checks.finite_number("length_coef", length_coef)
    _no_inf("scores", scores)
    if mode != "mean" and not _checks.tracing() and bool((scores < 0).any()):
        raise ValueError(f"scores holds negative values; the {mode} mean needs scores >= 0")
    if weights is not None:
        _checks.tensor("weights", weights, ndim=1, dtypes=_checks.FLOAT_DTYPES)
        if weights.shape[0] != p:
            raise ValueError(f"weights has {weights.shape[0]} entries but scores has {p} perspectives")
        if not _checks.tracing():
            lo, hi = torch.aminmax(weights)  # one pass; NaN fails both comparisons
            if not (float(lo) >= 0 and float(hi) < math.inf):
                raise ValueError("weights must be finite and >= 0")
    if bystander is not None:
        _checks.tensor("bystander", bystander, ndim=1, dtypes=_checks.FLOAT_DTYPES)
        if bystander.shape[0] != b:
            raise ValueError(f"bystander has {bystander.shape[0]} entries but scores has {b} rows")
        _no_inf("bystander", bystander)
    if lengths is not None:
        _checks.tensor("lengths", lengths, ndim=1, dtypes=LENGTH_DTYPES)
        if lengths.shape[0] != b:
            raise ValueError(f"lengths has {lengths.shape[0]} entries but scores has {b} rows")
        if length_limit is None:
            raise ValueError("length_limit must be given with lengths")
        _no_inf("lengths", lengths)
    if length_limit is not None:
        length_limit = _checks.finite_number("length_limit", length_limit, nonnegative=True)
    _checks.same_device([("scores", scores), ("weights", weights), ("bystander", bystander), ("lengths", lengths)])
    return score_max, bystander_coef, length_limit, length_coef


def resolve_missing_terms(policy: str, scores: torch.Tensor, bystander: torch.Tensor | None,
                          lengths: torch.Tensor | None, length_limit: float | None
                          ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(bystander, lengths) without NaN for the kernels: a missing term becomes its neutral
    value ("drop": bystander 100, length length_limit), or ("void") a NaN bystander, which the
    kernels turn into a NaN row whatever bystander_coef is (0 * NaN is NaN)."""
    _checks.choice("missing_terms", policy, MISSING_TERMS)
    if lengths is not None and lengths.is_floating_point() and not _checks.tracing():
        missing_length = torch.isnan(lengths)
        if bool(missing_length.any()):
            lengths = lengths.masked_fill(missing_length, length_limit)
            if policy == "void":
                base = torch.full((scores.shape[0],), 100.0, device=scores.device) if bystander is None else bystander
                bystander = base.to(torch.float32).masked_fill(missing_length, math.nan)
    if policy == "drop" and bystander is not None and not _checks.tracing():
        bystander = torch.nan_to_num(bystander, nan=100.0)
    return bystander, lengths


def aggregate_rewards(scores: torch.Tensor, weights: torch.Tensor | None = None, mode: str = "mean",
                      score_max: float = 5.0, bystander: torch.Tensor | None = None, bystander_coef: float = 0.0,
                      lengths: torch.Tensor | None = None, length_limit: float | None = None,
                      length_coef: float = 0.0, *, missing_terms: str = "drop",
                      backend: str | None = None) -> torch.Tensor:
    """Aggregate judge scores [B, P] into rewards [B] (float32).

    Args:
        scores: [B, P] float scores, NaN where a judge gave no valid score.
        weights: optional [P] non-negative weights (default: all 1).
        mode: "mean" (arithmetic), "harmonic" or "geometric" weighted mean of scores / score_max.
        score_max: the scores' maximum (5 for a 1-5 rubric).
        bystander: optional [B] bystander scores on 0-100; adds bystander_coef * (bystander/100 - 1).
        lengths, length_limit, length_coef: optional [B] completion lengths; subtracts
            length_coef * max(0, lengths - length_limit).
        missing_terms: "drop" (a NaN bystander score or length drops its term out of the row,
            as the PERM code's separate TRL reward functions do) or "void" (the row is NaN).
        backend: "torch", "cpu", "triton", "cuda" or None (``PYL2D_BACKEND``, else by device).
    """
    score_max, bystander_coef, length_limit, length_coef = check_aggregate_args(
        scores, weights, mode, score_max, bystander, bystander_coef, lengths, length_limit, length_coef)
    bystander, lengths = resolve_missing_terms(missing_terms, scores, bystander, lengths, length_limit)
    resolved = _backend.resolve(backend, scores.device, "aggregate_rewards")
    return _aggregate_rewards_op(scores, weights, mode, score_max, bystander, bystander_coef, lengths,
                                 length_limit, length_coef, resolved)
