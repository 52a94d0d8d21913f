"""The perspectives a PERM reward looks from (the Empathy Cycle) and the judge prompts they
render.

A perspective names who judges (supporter, seeker or bystander), which section of the
policy's completion it reads (the analysis or the response), its rubric and its integer
score range. ``DEFAULT_PERSPECTIVES`` is the set PERM uses; pass your own tuple to change it.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

from pyl2d._checks import finite_number
from pyl2d.perm import rubrics
from pyl2d.perm.scores import PICKS, ParsedScore, check_label, parse_score

ROLES = ("supporter", "seeker", "bystander")
SECTIONS = ("analysis", "response")


@dataclasses.dataclass(frozen=True)
class Perspective:
    """One judging perspective: ``name`` is "role/aspect", e.g. "seeker/reception"."""

    name: str
    role: str
    section: str
    rubric: str
    score_min: int = 1
    score_max: int = 5
    weight: float = 1.0
    pick: str = "last"         # which labelled score of a reply counts: "last" or "first"
    label: str | None = None   # read only "<label>: N" (e.g. "Total Score"); None: any score label

    def __post_init__(self):
        if self.role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}; got {self.role!r}")
        if self.section not in SECTIONS:
            raise ValueError(f"section must be one of {SECTIONS}; got {self.section!r}")
        if not (isinstance(self.score_min, int) and isinstance(self.score_max, int)) or self.score_min >= self.score_max:
            raise ValueError(f"score range must be integers with score_min < score_max; got "
                             f"{self.score_min}..{self.score_max}")
        finite_number(f"perspective {self.name!r}: weight", self.weight, nonnegative=True)
        if self.pick not in PICKS:
            raise ValueError(f"perspective {self.name!r}: pick must be one of {PICKS}; got {self.pick!r}")
        try:
            check_label(self.label)
        except ValueError as exc:
            raise ValueError(f"perspective {self.name!r}: {exc}") from None

    def parse(self, text: str | None) -> ParsedScore:
        """This perspective's score in a judge's reply text (``pyl2d.perm.scores.parse_score``)."""
        return parse_score(text, self.score_min, self.score_max, pick=self.pick, label=self.label)

    @property
    def logprob_scorable(self) -> bool:
        """Whether logprob scoring can read this range: it reads unsigned digit tokens, so a
        negative score ("-2", a sign token then a digit) has no expectation it could take."""
        return self.score_min >= 0

    @property
    def is_bystander(self) -> bool:
        return self.role == "bystander"

    def messages(self, *, persona: str, scenario: str, query: str, text: str, score_only: bool = False) -> list[dict]:
        """The chat messages asking a judge to score ``text`` (the section this perspective
        reads): a short judgement then "Score: N", or (``score_only``, for scoring from
        logprobs) the number alone."""
        if score_only and not self.logprob_scorable:
            raise ValueError(f"perspective {self.name!r} scores from {self.score_min}: logprob scoring reads "
                             "unsigned digit tokens only; use scoring='text' or a range from 0")
        what = "analysis" if self.section == "analysis" else "response"
        system = (f"You are an expert evaluator of empathetic support conversations, judging from the "
                  f"{self.role}'s perspective ({self.name}). Follow the rubric exactly.")
        user = (
            f"{self.rubric}\n"
            f"## The seeker\nPersona: {persona or '(not given)'}\nScenario: {scenario or '(not given)'}\n\n"
            f"## What the seeker said\n{query or '(not given)'}\n\n"
            f"## The supporter's {what}\n{text if text.strip() else '(empty)'}\n\n"
            + self.instruction(score_only)
        )
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]

    def instruction(self, score_only: bool) -> str:
        """The judge prompt's closing instruction: the number alone, or a judgement ending in
        "Score: N". It closes the prompt, so prompts of one perspective share everything
        before the judged text (a server's prefix cache)."""
        if score_only:
            return f"Reply with the score only: one integer from {self.score_min} to {self.score_max}, nothing else."
        verdict = f"{self.label}: N / {self.score_max}" if self.label else "Score: N"
        return (f"Explain your judgement in a few sentences, then end with a final line of the form\n"
                f"{verdict}\nwhere N is an integer from {self.score_min} to {self.score_max}.")

    def text_messages(self, messages: Sequence[Mapping[str, str]]) -> list[dict] | None:
        """``messages`` (a score-only prompt of this perspective) asking for a judgement
        ending in "Score: N" instead: what a logprobs judge re-asks a server that sent no
        logprobs. None when the last message does not end with the score-only instruction."""
        *head, last = [dict(m) for m in messages] or [{}]
        content, tail = str(last.get("content", "")), self.instruction(True)
        if not content.endswith(tail):
            return None
        return [*head, {**last, "content": content[:-len(tail)] + self.instruction(False)}]


RESONATION = Perspective("supporter/resonation", "supporter", "analysis", rubrics.RESONATION)
EXPRESSION = Perspective("supporter/expression", "supporter", "response", rubrics.EXPRESSION)
RECEPTION = Perspective("seeker/reception", "seeker", "response", rubrics.RECEPTION)
QUALITY = Perspective("bystander/quality", "bystander", "response", rubrics.QUALITY, score_min=0, score_max=100)

DEFAULT_PERSPECTIVES: tuple[Perspective, ...] = (RESONATION, EXPRESSION, RECEPTION, QUALITY)
# The perm-paper preset's (pyl2d.perm.presets): the first score of a reply counts, and the
# bystander gives five sub-scores and then its "Total Score: X / 100", the only score read.
PAPER_PERSPECTIVES: tuple[Perspective, ...] = (
    dataclasses.replace(RESONATION, pick="first"), dataclasses.replace(EXPRESSION, pick="first"),
    dataclasses.replace(RECEPTION, pick="first"),
    dataclasses.replace(QUALITY, rubric=rubrics.QUALITY_TOTAL, pick="first", label="Total Score"))


def check_perspectives(perspectives: Sequence[Perspective]) -> tuple[Perspective, ...]:
    """Validate a perspective set: non-empty, unique names, at most one bystander, and at
    least one non-bystander perspective (the aggregate is their weighted mean)."""
    ps = tuple(perspectives)
    if not ps or not all(isinstance(p, Perspective) for p in ps):
        raise ValueError("perspectives must be a non-empty sequence of Perspective")
    names = [p.name for p in ps]
    if len(set(names)) != len(names):
        raise ValueError(f"perspectives have duplicate names: {names}")
    if sum(p.is_bystander for p in ps) > 1:
        raise ValueError("perspectives may hold at most one bystander perspective")
    if all(p.is_bystander for p in ps):
        raise ValueError("perspectives need at least one supporter or seeker perspective")
    if all(p.weight == 0 for p in ps if not p.is_bystander):
        raise ValueError("every supporter/seeker perspective has weight 0: every reward would be NaN")
    bystander = next((p for p in ps if p.is_bystander), None)
    if bystander is not None and bystander.weight != 1.0:
        raise ValueError(f"perspective {bystander.name!r}: a bystander's weight is the reward's bystander_coef, "
                         f"not its own weight ({bystander.weight}); leave it at 1")
    return ps
