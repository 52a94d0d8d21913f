"""Read a numeric score out of a judge's free text, strictly.

Accepted forms include ``Score: 4``, ``**Score:** 4``, ``Score: **4**``, ``score = 4``,
``Rating: 4``, ``4/5``, ``Score: 4/5`` and ``Total score: 78/100``; the last labelled score
in the text wins (judges restate the rubric before concluding); a label is a whole word
(``Subscore: 2`` is not one). A value outside the rubric's
range, or a ``x/y`` whose denominator is not the rubric's maximum, is invalid, never clipped.
A score is a plain ASCII number (``4``, ``4.5``, ``-1``); anything that runs on into more of a
number or a range (``1e3``, ``3,5``, ``3-4``, ``3 to 4``, ``4th``) is "malformed", not read as
its first digits. Invalid or missing scores become NaN and are counted per perspective by
``ScoreCounter``.
"""
from __future__ import annotations

import collections
import dataclasses
import math
import re

OK, MISSING, OUT_OF_RANGE, MALFORMED, ERROR = "ok", "missing", "out_of_range", "malformed", "error"
# The judge stopped at its token limit (finish_reason "length"): a cut-off judgement may end
# on a sub-score or half a number ("Score: 8" of 85), so it is not parsed.
TRUNCATED = "truncated"

_NUM = r"([-+]?[0-9]+(?:\.[0-9]+)?)"
# Every optional piece starts with a literal, so no two whitespace runs compete: matching
# stays linear in the text (a hostile reply is up to max_response_bytes long).
_LABELLED = re.compile(  # a whole word: "Subscore: 2" is no verdict
    r"(?<![A-Za-z0-9_])(?:(?:total|final|overall)\s+)?(?:score|rating)\s*(?:(?:\*\*|__)\s*)?[:=]\s*(?:(?:\*\*|__)\s*)?(?:\[\s*)*"
    + _NUM + r"\s*(?:\]\s*)*(?:(?:\*\*|__)\s*)?(?:(?:/|out\s+of)\s*([0-9]+))?",
    re.IGNORECASE,
)
_FRACTION = re.compile(r"(?<![\w./,+\-])" + _NUM + r"\s*(?:/|out\s+of)\s*([0-9]+)(?!\w)(?![.,][0-9])",
                       re.IGNORECASE)
_BARE = re.compile(r"^\s*(?:\*\*\s*)?" + _NUM + r"\s*(?:\*\*\s*)?(?:\.\s*)?$")
# What may not follow a number: more of a number (1e3, 3,5, 4.0.1, 4th) or a range (3-4, 3 to 4).
_BAD_TAIL = re.compile(r"\w|[.,][0-9]|\s*(?:[-\u2013\u2014]|to\b|or\b)\s*[-+]?[0-9]", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class ParsedScore:
    value: float  # NaN unless status is "ok"
    status: str   # "ok", "missing", "out_of_range", "malformed", or why the judge call failed

    @property
    def valid(self) -> bool:
        return self.status == OK


def _check(value: float, denominator: str | None, low: float, high: float) -> ParsedScore:
    if denominator is not None and float(denominator) != float(high):
        return ParsedScore(math.nan, OUT_OF_RANGE)
    if not (low <= value <= high):
        return ParsedScore(math.nan, OUT_OF_RANGE)
    return ParsedScore(value, OK)


def _malformed(text: str, m: re.Match) -> bool:
    """Whether a matched number (or its denominator) runs on into more of a number or a range."""
    return any(m.group(g) is not None and _BAD_TAIL.match(text, m.end(g)) for g in (1, 2))


def parse_score(text: str | None, low: float, high: float) -> ParsedScore:
    """The score in ``text`` on the rubric range [low, high]; NaN with a reason when invalid."""
    if not text:
        return ParsedScore(math.nan, MISSING)
    for pattern in (_LABELLED, _FRACTION):
        found = list(pattern.finditer(text))
        if found:
            m = found[-1]
            if _malformed(text, m):
                return ParsedScore(math.nan, MALFORMED)
            return _check(float(m.group(1)), m.group(2), low, high)
    m = _BARE.match(text)
    if m:
        return _check(float(m.group(1)), None, low, high)
    return ParsedScore(math.nan, MISSING)


class ScoreCounter:
    """Per-perspective counts of score outcomes (ok / missing / out_of_range / malformed / error...)."""

    def __init__(self):
        self.counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)

    def add(self, perspective: str, status: str) -> None:
        self.counts[perspective][status] += 1

    def invalid(self, perspective: str) -> int:
        c = self.counts.get(perspective, collections.Counter())
        return sum(v for k, v in c.items() if k != OK)

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {p: dict(c) for p, c in self.counts.items()}
