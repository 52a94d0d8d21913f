"""``score_from_hidden``: a local judge's expected score from its final hidden state.

G-Eval-style scoring: the judge's next-token distribution restricted to the score tokens
("1".."5"), softmaxed, and the expectation sum p(s) * value(s). Only the S score rows of
the LM head are multiplied (S dot products per row instead of a [V, D] matmul), which is
what makes it cheap next to a full-vocabulary head."""
from __future__ import annotations

import torch

from pyl2d import _backend, _checks


@torch.library.custom_op("pyl2d::score_from_hidden", mutates_args=())
def _score_from_hidden_op(hidden: torch.Tensor, lm_head_weight: torch.Tensor, score_token_ids: torch.Tensor,
                          score_values: torch.Tensor, backend: str) -> torch.Tensor:
    return _backend.implementation("score_from_hidden", backend)(hidden, lm_head_weight, score_token_ids, score_values)


@_score_from_hidden_op.register_fake
def _(hidden, lm_head_weight, score_token_ids, score_values, backend):
    return hidden.new_empty((hidden.shape[0],), dtype=torch.float32)


def _score_rows_max(lm_head_weight: torch.Tensor, score_token_ids: torch.Tensor) -> float | None:
    """max |lm_head_weight[score_token_ids]|; ValueError with the index in the full matrix on NaN/Inf."""
    if _checks.tracing():
        return None
    rows = lm_head_weight.index_select(0, score_token_ids)
    try:
        return _checks.finite("lm_head_weight", rows)
    except ValueError:
        bad = (~torch.isfinite(rows)).nonzero()[0].tolist()
        index = (int(score_token_ids[bad[0]]), bad[1])
        kind = "NaN" if bool(torch.isnan(lm_head_weight[index])) else "Inf"
        raise ValueError(f"lm_head_weight contains {kind} (first non-finite value at index {index}, "
                         "a score token's row)") from None


def score_from_hidden(hidden: torch.Tensor, lm_head_weight: torch.Tensor, score_token_ids: torch.Tensor,
                      score_values: torch.Tensor, *, backend: str | None = None) -> torch.Tensor:
    """Expected score [B] (float32) under softmax(hidden @ lm_head_weight[score_token_ids].T).

    Args:
        hidden: [B, D] final hidden states (after the model's final norm) at the position
            that predicts the score token.
        lm_head_weight: [V, D] the LM head (output embedding) matrix, same dtype as hidden.
        score_token_ids: [S] int32/int64 vocabulary ids of the score tokens, in [0, V).
        score_values: [S] float value of each score token (e.g. 1..5).

    Raises ValueError (naming the argument) for bad shapes, dtypes, devices or ids, D = 0,
    NaN/Inf in ``hidden``, ``score_values`` or the score rows of ``lm_head_weight`` (the only
    rows read), and inputs whose float32 logits ``D * max|hidden| * max|row|`` could overflow.
    """
    _checks.vectors("hidden", hidden, "row")
    _checks.tensor("lm_head_weight", lm_head_weight, ndim=2, dtypes=_checks.FLOAT_DTYPES)
    _checks.tensor("score_token_ids", score_token_ids, ndim=1, dtypes=_checks.INDEX_DTYPES)
    _checks.tensor("score_values", score_values, ndim=1, dtypes=_checks.FLOAT_DTYPES)
    if lm_head_weight.shape[1] != hidden.shape[1]:
        raise ValueError(f"lm_head_weight has dimension {lm_head_weight.shape[1]} but hidden has {hidden.shape[1]}")
    if score_token_ids.shape[0] == 0:
        raise ValueError("score_token_ids is empty: give at least one score token")
    if score_values.shape[0] != score_token_ids.shape[0]:
        raise ValueError(f"score_values has {score_values.shape[0]} entries but score_token_ids has "
                         f"{score_token_ids.shape[0]}")
    _checks.same_device([("hidden", hidden), ("lm_head_weight", lm_head_weight),
                         ("score_token_ids", score_token_ids), ("score_values", score_values)])
    _checks.same_dtype([("hidden", hidden), ("lm_head_weight", lm_head_weight)])
    _checks.ids_in_range("score_token_ids", score_token_ids, lm_head_weight.shape[0], allow_padding=False)
    hidden_max = _checks.finite("hidden", hidden)
    _checks.finite("score_values", score_values)
    head_max = _score_rows_max(lm_head_weight, score_token_ids)
    if hidden_max is not None and head_max is not None:
        big = "hidden" if hidden_max >= head_max else "lm_head_weight"
        _checks.fits_float32(hidden.shape[1] * hidden_max * head_max, big,
                             "the logits (D * max|hidden| * max|lm_head_weight[score_token_ids]|)")
    resolved = _backend.resolve(backend, hidden.device, "score_from_hidden")
    return _score_from_hidden_op(hidden, lm_head_weight, score_token_ids, score_values, resolved)
