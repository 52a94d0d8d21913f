"""Read a numeric score out of a judge's free text, strictly.

Accepted forms include ``Score: 4``, ``**Score:** 4``, ``Score: **4**``, ``score = 4``,
``Rating: 4``, ``4/5``, ``Score: 4/5`` and ``Total score: 78/100``; the last labelled score
in the text wins (judges restate the rubric before concluding; ``pick="first"`` takes the first,
as the PERM code does, and ``label=`` reads only one label); a label is a whole word
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
import functools
import math
import re

OK, MISSING, OUT_OF_RANGE, MALFORMED, ERROR = "ok", "missing", "out_of_range", "malformed", "error"
# The judge stopped at its token limit (finish_reason "length"): a cut-off judgement may end
# on a sub-score or half a number ("Score: 8" of 85), so it is not parsed.
TRUNCATED = "truncated"

_NUM = r"([-+]?[0-9]+(?:\.[0-9]+)?)"
# Every optional piece starts with a literal, so no two whitespace runs compete: matching
# stays linear in the text (a hostile reply is up to max_response_bytes long).
# After a label: the separator, optional bold or brackets, the number and an optional "/ max".
_AFTER_LABEL = (r"\s*(?:(?:\*\*|__)\s*)?[:=]\s*(?:(?:\*\*|__)\s*)?(?:\[\s*)*" + _NUM
                + r"\s*(?:\]\s*)*(?:(?:\*\*|__)\s*)?(?:(?:/|out\s+of)\s*([0-9]+))?")
_LABELLED = re.compile(  # a whole word: "Subscore: 2" is no verdict
    r"(?<![A-Za-z0-9_])(?:(?:total|final|overall)\s+)?(?:score|rating)" + _AFTER_LABEL, re.IGNORECASE)
# Which labelled score of a reply counts: "last" (judges restate the rubric before concluding)
# or "first" (the PERM code's rule: its judges are asked for one verdict line).
PICKS = ("last", "first")
MAX_LABEL_CHARS = 64
_FRACTION = re.compile(r"(?<![\w./,+\-])" + _NUM + r"\s*(?:/|out\s+of)\s*([0-9]+)(?!\w)(?![.,][0-9])",
                       re.IGNORECASE)
_BARE = re.compile(r"^\s*(?:\*\*\s*)?" + _NUM + r"\s*(?:\*\*\s*)?(?:\.\s*)?$")
# What may not follow a number: more of a number (1e3, 3,5, 4.0.1, 4th, 1'000), a range (3-4,
# 3 to 4), or, after spaces on the same line, another digit or a vulgar fraction: "1 000" is a
# thousands separator and "2 ½" a mixed number, not the scores 1 and 2.
_BAD_TAIL = re.compile(r"\w|[.,'\u2019][0-9]|\s*(?:[-\u2013\u2014]|to\b|or\b)\s*[-+]?[0-9]"
                       r"|[^\S\r\n]+(?:\d|[\u00bc-\u00be\u2150-\u215e])", re.IGNORECASE)


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


def check_label(label: str | None) -> str | None:
    """A score label ("Total Score"): words of ASCII letters separated by single spaces."""
    if label is None:
        return None
    if not isinstance(label, str) or not re.fullmatch(r"[A-Za-z]+(?: [A-Za-z]+)*", label) \
            or len(label) > MAX_LABEL_CHARS:
        raise ValueError(f"score label must be words of ASCII letters separated by single spaces (at most "
                         f"{MAX_LABEL_CHARS} characters), e.g. 'Total Score'; got {label!r}")
    return label


@functools.lru_cache(maxsize=64)
def _label_pattern(label: str) -> re.Pattern:
    words = r"\s+".join(re.escape(w) for w in label.split(" "))
    return re.compile(r"(?<![A-Za-z0-9_])" + words + _AFTER_LABEL, re.IGNORECASE)


def parse_score(text: str | None, low: float, high: float, *, pick: str = "last",
                label: str | None = None) -> ParsedScore:
    """The score in ``text`` on the rubric range [low, high]; NaN with a reason when invalid.

    ``pick``: which labelled score counts when there are several ("last" or "first").
    ``label``: only ``<label>: N`` (``N / max``) counts, e.g. "Total Score" for a judge that
    writes sub-scores before its total; no unlabelled fraction or bare number is read."""
    if pick not in PICKS:
        raise ValueError(f"pick must be one of {PICKS}; got {pick!r}")
    if not text:
        return ParsedScore(math.nan, MISSING)
    patterns = (_label_pattern(check_label(label)),) if label is not None else (_LABELLED, _FRACTION)
    for pattern in patterns:
        m = None
        if pick == "first":
            m = pattern.search(text)
        else:
            for m in pattern.finditer(text):
                pass
        if m is not None:
            if _malformed(text, m):
                return ParsedScore(math.nan, MALFORMED)
            return _check(float(m.group(1)), m.group(2), low, high)
    if label is not None:
        return ParsedScore(math.nan, MISSING)
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
