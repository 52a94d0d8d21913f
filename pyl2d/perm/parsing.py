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
# Each optional piece starts with a literal and swallows the blanks after it, so no two
# blank runs compete: matching is linear even on a line of a million spaces (a policy can
# write one). The name must not run on into a word ("Responses"), but may touch "__" bold.
_HEADING = re.compile(
    r"^[ \t]*(?:(?P<hashes>#{1,6})[ \t]*)?(?:(?P<open>\*\*|__)[ \t]*)?(?P<name>analysis|response|reply)(?![A-Za-z0-9])"
    r"[ \t]*(?:(?P<colon1>:)[ \t]*)?(?:(?P<close>\*\*|__)[ \t]*)?(?P<colon2>:)?(?P<rest>.*)$",
    re.IGNORECASE | re.MULTILINE,
)
# Tags are found by one scan for <name> and </name> and paired per name, never by a regex
# that rescans the rest of the text for each opening tag (quadratic on a hostile completion).
_TAG = re.compile(r"<(/?)(analysis|response|reply)>", re.IGNORECASE)


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

    XML-style tags (``<analysis>``, ``<response>``/``<reply>``; an unclosed one only at a line
    start or after a closing tag) win for the sections they give; markdown/plain headings outside them find the rest. A section runs
    until the next recognised heading. Repeated headings or tags keep the first one."""
    if not isinstance(text, str):
        raise ValueError(f"completion must be a str, got {type(text).__name__}")
    tagged, spans = _tagged_sections(text)
    if len(tagged) == 2:
        return ParsedCompletion(tagged["analysis"], tagged["response"])
    # Headings outside the tagged parts find what the tags do not give (tags and headings mixed).
    untagged = text
    for begin, end in spans:
        untagged = untagged[:begin] + " " * (end - begin) + untagged[end:]
    heads = [h for h in (_heading(m) for m in _HEADING.finditer(untagged)) if h is not None]
    found: dict[str, str] = {}
    for i, (_, name, body_start) in enumerate(heads):
        end = heads[i + 1][0] if i + 1 < len(heads) else len(text)
        if name not in found:
            found[name] = untagged[body_start:end].strip()
    found.update(tagged)
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


def _tagged_sections(text: str) -> tuple[dict[str, str], list[tuple[int, int]]]:
    """({section: text}, spans they take): per section its first ``<name>...</name>`` pair,
    else an unclosed ``<name>`` that starts a line or follows a closing tag (a completion cut
    off before its closing tag) running to the end; a ``<response>`` mid-sentence is prose."""
    opens: dict[str, list[re.Match]] = {"analysis": [], "response": []}
    closes: dict[str, list[re.Match]] = {"analysis": [], "response": []}
    for m in _TAG.finditer(text):
        (closes if m.group(1) else opens)[_NAMES[m.group(2).lower()]].append(m)
    found, spans = {}, []
    for name in ("analysis", "response"):
        o, c = opens[name], closes[name]
        if o and c and c[-1].start() >= o[0].end():  # the first opening tag has a closing one after it
            close = next(m for m in c if m.start() >= o[0].end())
            found[name] = text[o[0].end():close.start()].strip()
            spans.append((o[0].start(), close.end()))
            continue
        start = next((m for m in o if _starts_section(text, m.start())), None)
        if start is not None:
            found[name] = text[start.end():].strip()
            spans.append((start.start(), len(text)))
    return found, spans


_CLOSING_TAG_BEFORE = re.compile(r"</(?:analysis|response|reply)>\Z", re.IGNORECASE)


def _starts_section(text: str, at: int) -> bool:
    """Whether position ``at`` starts a line (after blanks) or follows a closing tag."""
    i = at
    while i > 0 and text[i - 1] in " \t":
        i -= 1
    return i == 0 or text[i - 1] == "\n" or bool(_CLOSING_TAG_BEFORE.search(text[max(0, i - 11):i]))
