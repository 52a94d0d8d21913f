"""Split a policy completion into its analysis and response sections.

The policy is asked to answer with an analysis section and then a response section. Models
write the headings in many ways (``# Analysis``, ``## Analysis:``, ``**Analysis**``,
``Analysis:`` with text on the same line, ``<analysis>...</analysis>``), so all of these are
accepted, case-insensitively. A missing section is reported, not guessed; what to do about
it is the caller's ``MissingPolicy``.
"""
from __future__ import annotations

import dataclasses
import re

# "empty": judge the missing section as empty text (the judge scores it low, which teaches
# the format); "invalid": do not judge it, its score is NaN.
MISSING_POLICIES = ("empty", "invalid")

_NAMES = {"analysis": "analysis", "response": "response", "reply": "response"}
_HEADING = re.compile(
    r"^[ \t]*(?P<hashes>#{1,6}[ \t]*)?(?P<open>\*\*|__)?[ \t]*(?P<name>analysis|response|reply)\b[ \t]*"
    r"(?P<colon1>:)?[ \t]*(?P<close>\*\*|__)?[ \t]*(?P<colon2>:)?(?P<rest>.*)$",
    re.IGNORECASE | re.MULTILINE,
)
_TAG = re.compile(r"<(analysis|response)>(.*?)(?:</\1>|$)", re.IGNORECASE | re.DOTALL)


@dataclasses.dataclass(frozen=True)
class ParsedCompletion:
    """The sections found; None marks a missing section (distinct from an empty one)."""

    analysis: str | None
    response: str | None

    @property
    def missing(self) -> tuple[str, ...]:
        return tuple(name for name in ("analysis", "response") if getattr(self, name) is None)

    def section(self, name: str) -> str | None:
        return getattr(self, name)


def parse_completion(text: str) -> ParsedCompletion:
    """Find the analysis and response sections of ``text``.

    XML-style tags win when present; otherwise markdown/plain headings split the text. A
    section runs until the next recognised heading. Repeated headings keep the first one."""
    if not isinstance(text, str):
        raise ValueError(f"completion must be a str, got {type(text).__name__}")
    tagged = {m.group(1).lower(): m.group(2).strip() for m in reversed(list(_TAG.finditer(text)))}
    if tagged:
        return ParsedCompletion(tagged.get("analysis"), tagged.get("response"))
    heads = [h for h in (_heading(m) for m in _HEADING.finditer(text)) if h is not None]
    found: dict[str, str] = {}
    for i, (_, name, body_start) in enumerate(heads):
        end = heads[i + 1][0] if i + 1 < len(heads) else len(text)
        if name not in found:
            found[name] = text[body_start:end].strip()
    return ParsedCompletion(found.get("analysis"), found.get("response"))


def _heading(m: re.Match) -> tuple[int, str, int] | None:
    """(line start, section name, body start) when the matched line really is a heading:
    it has hashes, bold markers around the name, or a colon, or holds the name alone."""
    bold = bool(m.group("open")) and bool(m.group("close"))
    colon = bool(m.group("colon1") or m.group("colon2"))
    rest = m.group("rest")
    name = _NAMES[m.group("name").lower()]
    if colon or bold:
        return m.start(), name, m.start("rest")
    if m.group("hashes"):
        return m.start(), name, m.end()  # "# Analysis of the seeker": the line is the title
    if not rest.strip() and not m.group("open") and not m.group("close"):
        return m.start(), name, m.end()
    return None
