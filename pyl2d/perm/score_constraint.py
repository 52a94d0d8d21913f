"""Constrained decoding that makes a score-only reply an integer of the rubric's range.

Logprob scoring reads the score where a digit stands in the reply's first positions. A small
judge often samples a word first ("The", "This"); for a 1-5 rubric the digits among that
position's candidates still give the score, but a 0-100 total split into single-digit tokens
cannot be read that way (``pyl2d.perm.logprob_scores``), and was re-asked in text. Servers
that decode under a grammar can be told to write nothing but the number, so the first token
is a digit and the reply is one to three tokens long.

One name per server dialect, the request fields it takes:

- ``"llama.cpp"``: ``grammar`` (GBNF), llama.cpp's ``llama-server`` and llama-cpp-python's;
- ``"vllm"``: ``structured_outputs: {"regex": ...}`` (vLLM 0.12 and later);
- ``"sglang"``: ``regex``.

OpenAI's own API has none of these: leave the constraint off there.
"""
from __future__ import annotations

import functools

CONSTRAINTS = ("llama.cpp", "vllm", "sglang")
MAX_VALUES = 10_001  # an alternation of every allowed number; a wider range is no rubric


def _numbers(low: int, high: int) -> list[str]:
    """The allowed replies, longest first (so no regex engine stops at a shorter prefix)."""
    if isinstance(low, bool) or isinstance(high, bool) or not isinstance(low, int) or not isinstance(high, int):
        raise ValueError(f"a constrained score range needs integer bounds, got {low!r}..{high!r}")
    if not low <= high or high - low + 1 > MAX_VALUES:
        raise ValueError(f"a constrained score range must hold 1 to {MAX_VALUES} integers, got {low}..{high}")
    return sorted((str(v) for v in range(low, high + 1)), key=lambda s: (-len(s), s))


@functools.lru_cache(maxsize=64)
def constraint_fields(constraint: str, low: int, high: int) -> dict:
    """The request fields that restrict a reply to one integer of ``low..high`` on a server
    of ``constraint``'s dialect (:data:`CONSTRAINTS`)."""
    numbers = _numbers(low, high)
    if constraint == "llama.cpp":
        return {"grammar": "root ::= " + " | ".join(f'"{n}"' for n in numbers)}
    regex = "(" + "|".join(n.replace("-", "\\-") for n in numbers) + ")"
    if constraint == "vllm":
        return {"structured_outputs": {"regex": regex}}
    if constraint == "sglang":
        return {"regex": regex}
    raise ValueError(f"constraint must be one of {', '.join(CONSTRAINTS)} or None, got {constraint!r}")
