"""A judge's score as an expectation over its score tokens (G-Eval), from the ``logprobs``
an OpenAI-compatible server (vLLM, SGLang, OpenAI) returns, instead of from generated text.

The judge is asked for the score only (a few tokens at most). For each position of the
reply's leading number, the server's ``top_logprobs`` give a distribution over the tokens
that could stand there; the expectation is taken over those that are digit strings of the
same width as the sampled one, renormalised over the ones seen:

- a one-token score (the 1-5 rubrics, or "78" in a tokenizer with multi-digit tokens such as
  Llama 3's): the usual sum p(s) * s over the in-range candidates;
- digits split over several tokens ("7", "8" in Qwen's tokenizer, or "1", "0", "0"): the
  expectation digit by digit along the sampled path, each position weighted by its place
  value (sum_i 10^(digits after i) * E[digit_i]), clamped to the rubric's range. The later
  positions' distributions are conditioned on the sampled earlier digits, so this is the
  expectation given the sampled number's length and leading digits: an approximation, and
  the reason 1-5 rubrics (one token) are the exact case.

A small judge often samples a word first ("The", "This") although score digits stand among
that position's ``top_logprobs`` (SmolLM2-135M under llama.cpp's server did so for every
prompt, issue 25). So the score is read at the first position where a digit appears, sampled
or not: when the sampled token there is not a number, the expectation is over that position's
digit candidates read as whole numbers, which is what a local judge computes from the logits
(softmax over the score tokens, renormalised). That reading needs each score to be one token:
a range up to 9, or a tokenizer whose candidates there include multi-digit tokens. For a wide
range split into single digits ("7", "8") an unsampled first digit says nothing about the
number's length, so that case is "missing" (``OpenAIJudge`` re-asks it in text).

No digit at any position, sampled or among the candidates, is "missing"; a sampled number
outside the range with no in-range candidate is "out_of_range" (the same accounting as text
scoring).
"""
from __future__ import annotations

import math
from typing import Sequence

from pyl2d.perm.scores import MISSING, OK, OUT_OF_RANGE, ParsedScore


# A longer number is no score: beyond this many digits, values would overflow a float.
MAX_DIGITS = 15


def _digits(token) -> str | None:
    text = str(token).strip() if token is not None else ""
    return text if text.isascii() and text.isdigit() else None


def _distribution(position: dict, width: int) -> dict[int, float]:
    """{value: probability} of the digit-string candidates of ``width`` characters, relative
    to the likeliest of them (so a reply whose logprobs all underflow exp() still has one)."""
    logprobs: dict[int, list[float]] = {}
    candidates = position.get("top_logprobs") or [position]
    for cand in candidates:
        digits = _digits(cand.get("token"))
        logprob = cand.get("logprob")
        if (digits is None or len(digits) != width or isinstance(logprob, bool)
                or not isinstance(logprob, (int, float)) or not -math.inf < logprob < math.inf):
            continue
        logprobs.setdefault(int(digits), []).append(min(0.0, float(logprob)))
    if not logprobs:
        return {}
    top = max(max(lps) for lps in logprobs.values())
    return {value: sum(math.exp(lp - top) for lp in lps) for value, lps in logprobs.items()}


def _digit_candidates(position: dict) -> dict[str, float]:
    """{digit string: logprob} of the candidates at ``position`` with a usable logprob (the
    likeliest where a string repeats)."""
    out: dict[str, float] = {}
    for cand in position.get("top_logprobs") or []:
        digits, logprob = _digits(cand.get("token")), cand.get("logprob")
        if (digits is None or isinstance(logprob, bool) or not isinstance(logprob, (int, float))
                or not -math.inf < logprob < math.inf):
            continue
        out[digits] = max(out.get(digits, -math.inf), min(0.0, float(logprob)))
    return out


def _unsampled_score(candidates: dict[str, float], low: int, high: int) -> ParsedScore:
    """The score at a position whose sampled token is not a number but whose candidates hold
    digits: the expectation over the in-range candidates read as whole numbers (see above)."""
    if high > 9 and max(len(d) for d in candidates) < 2:  # single digits of a wide range: length unknown
        return ParsedScore(math.nan, MISSING)
    if len(max(candidates, key=len)) > MAX_DIGITS:
        candidates = {d: lp for d, lp in candidates.items() if len(d) <= MAX_DIGITS}
    in_range: dict[int, list[float]] = {}
    for digits, logprob in candidates.items():
        if low <= int(digits) <= high:
            in_range.setdefault(int(digits), []).append(logprob)
    if not in_range:
        return ParsedScore(math.nan, OUT_OF_RANGE)
    top = max(max(lps) for lps in in_range.values())  # relative to the likeliest: no underflow to 0
    probs = {v: sum(math.exp(lp - top) for lp in lps) for v, lps in in_range.items()}
    return ParsedScore(sum(v * p for v, p in probs.items()) / sum(probs.values()), OK)


def expected_score(content: Sequence[dict], low: int, high: int) -> ParsedScore:
    """The expected score from a chat-completions ``choices[0].logprobs.content`` list."""
    positions = []
    for position in content:
        digits = _digits(position.get("token"))
        if digits is None:
            if positions:
                break
            candidates = _digit_candidates(position)
            if candidates:
                return _unsampled_score(candidates, low, high)
            continue  # a word or whitespace with no digit among its candidates
        positions.append((position, len(digits)))
    if not positions:
        return ParsedScore(math.nan, MISSING)
    if sum(width for _, width in positions) > MAX_DIGITS:
        return ParsedScore(math.nan, OUT_OF_RANGE)
    if len(positions) == 1:
        position, width = positions[0]
        probs = {v: p for v, p in _distribution(position, width).items() if low <= v <= high}
        if not probs:
            return ParsedScore(math.nan, OUT_OF_RANGE if _distribution(position, width) else MISSING)
        total = sum(probs.values())
        return ParsedScore(sum(v * p for v, p in probs.items()) / total, OK)
    value, place = 0.0, 0
    for position, width in reversed(positions):
        probs = _distribution(position, width)
        if not probs:
            return ParsedScore(math.nan, MISSING)
        total = sum(probs.values())
        value += 10 ** place * sum(v * p for v, p in probs.items()) / total
        place += width
    sampled = int("".join(_digits(p.get("token")) for p, _ in positions))
    if not low <= sampled <= high and not low <= value <= high:
        return ParsedScore(math.nan, OUT_OF_RANGE)
    return ParsedScore(min(max(value, float(low)), float(high)), OK)
