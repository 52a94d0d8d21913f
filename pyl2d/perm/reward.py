"""``PERMReward``: the multi-perspective empathetic reward as a TRL reward function.

Call it like any TRL reward function: ``reward(prompts=..., completions=..., completion_ids=...,
**dataset_columns)`` returns one float per completion (NaN where nothing could be scored; TRL
>= 1.6 then gives it advantage 0, older TRL reward 0, with a warning). Each completion is split into its analysis and response sections,
every perspective's judge prompt of the whole batch goes to the judge at once, and the scores
are aggregated by the ``aggregate_rewards`` op.
"""
from __future__ import annotations

import collections
import math
from typing import Mapping, Sequence

import torch

from pyl2d._backend import check_name as check_backend_name
from pyl2d._checks import finite_number
from pyl2d.ops.aggregate_rewards import MISSING_TERMS, MODES, aggregate_rewards
from pyl2d.perm.advantages import impute_group_mean
from pyl2d.perm.judges import Judge, JudgeRequest
from pyl2d.perm.parsing import MISSING_POLICIES, parse_completion
from pyl2d.perm.perspectives import DEFAULT_PERSPECTIVES, Perspective, check_perspectives
from pyl2d.perm.presets import PRESETS, reward_options  # noqa: F401  (PRESETS: re-exported)
from pyl2d.perm.scores import OK, ScoreCounter

DEFAULT_COLUMNS = {"persona": "persona", "scenario": "scenario", "query": "query"}
MISSING_SECTION = "missing_section"
# impute_missing: False (off), "group" (True: the same prompt's completions) or "batch" (every
# completion of the call, the PERM code's rule).
IMPUTE_SCOPES = ("group", "batch")


def _impute_scope(value) -> str | None:
    if value is False or value is None:
        return None
    if value is True:
        return "group"
    if isinstance(value, str) and value in IMPUTE_SCOPES:
        return value
    raise ValueError(f"impute_missing must be False, True (= 'group') or one of {IMPUTE_SCOPES}; got {value!r}")


TRL_UNSCORABLE = "1.6"  # the first TRL whose GRPOTrainer gives an all-NaN reward row advantage 0


def _warn_if_trl_collapses_nan() -> bool:
    """Warn (and return True) when the TRL that calls this reward predates TRL_UNSCORABLE:
    its GRPOTrainer nansums the reward functions, so an unscorable completion gets reward 0,
    a large penalty on PERM's positive scale, instead of advantage 0."""
    import sys
    import warnings

    trl = sys.modules.get("trl")
    version = getattr(trl, "__version__", None)
    if version is None:
        return False
    from packaging.version import Version

    if Version(version) >= Version(TRL_UNSCORABLE):
        return False
    warnings.warn(f"PERMReward returned NaN for completions it could not score, and TRL {version} turns NaN "
                  f"rewards into 0 (a penalty, not 'no signal'); TRL >= {TRL_UNSCORABLE} gives them advantage 0. "
                  "Upgrade TRL, or pass impute_missing=True to fill unreadable scores from the prompt's group.",
                  RuntimeWarning, stacklevel=3)
    return True


def message_text(content) -> str:
    """The text of a chat message's ``content``: a string, or a list of parts
    (``{"type": "text", "text": ...}``, as TRL writes multimodal messages) whose text parts
    are joined; an image or other part has no text."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        return "\n".join(part["text"] for part in content
                         if isinstance(part, Mapping) and isinstance(part.get("text"), str))
    raise ValueError(f"a message's content must be text or a list of parts, got {type(content).__name__}")


def completion_text(completion) -> str:
    """The text of a plain-text or conversational completion (list of message dicts)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Sequence) and all(isinstance(m, Mapping) for m in completion):
        return "\n".join(message_text(m.get("content")) for m in completion
                         if m.get("role", "assistant") == "assistant")
    raise ValueError(f"a completion must be a str or a list of chat messages, got {type(completion).__name__}")


def prompt_query(prompt) -> str:
    """The seeker's words from a prompt: the last user message of a conversation, or the text."""
    if prompt is None:
        return ""
    if isinstance(prompt, str):
        return prompt
    users = [message_text(m.get("content")) for m in prompt if isinstance(m, Mapping) and m.get("role") == "user"]
    return users[-1] if users else ""


def prompt_groups(prompts) -> torch.Tensor:
    """One id per distinct prompt: TRL repeats a prompt for each of its generations."""
    keys: dict[str, int] = {}
    return torch.tensor([keys.setdefault(repr(p), len(keys)) for p in prompts], dtype=torch.int64)


def check_lengths(prompts, completions, completion_ids) -> None:
    """ValueError unless prompts and completion_ids (when given) match completions one to one."""
    if isinstance(completions, (str, bytes, Mapping)) or not isinstance(completions, Sequence):
        raise ValueError(f"completions must be a list of completions, got {type(completions).__name__}")
    for name, values in (("prompts", prompts), ("completion_ids", completion_ids)):
        if values is not None and len(values) != len(completions):
            raise ValueError(f"{name} has {len(values)} entries but completions has {len(completions)}; "
                             "they must match one to one")
    for i, ids in enumerate(completion_ids or ()):
        if not hasattr(ids, "__len__"):  # a list or tensor of token ids
            raise ValueError(f"completion_ids[{i}] must be a sequence of token ids, got {type(ids).__name__}")


class PERMReward:
    """A TRL-compatible reward function scoring completions from several perspectives.

    Args:
        judge: an ``OpenAIJudge``, ``LocalJudge``, ``ScriptedJudge`` or any ``Judge``.
        perspectives: the perspectives (default: supporter/resonation, supporter/expression,
            seeker/reception, bystander/quality). Non-bystander scores are divided by their
            rubric maximum and averaged with the perspectives' weights in ``mode``.
        columns: dataset column names for "persona", "scenario" and "query" (missing columns
            are empty; a missing query falls back to the prompt's last user message).
        mode: "mean", "harmonic" or "geometric" (see ``aggregate_rewards``).
        bystander_coef: weight of the bystander term bystander_coef * (quality% / 100 - 1).
        length_limit, length_coef: optional penalty length_coef * max(0, tokens - length_limit),
            tokens from ``completion_ids`` (else whitespace-separated words).
        missing_section: "empty" (judge a missing section as empty text) or "invalid" (its
            perspectives score NaN without a judge call).
        missing_terms: "drop" (default: a missing bystander score or length drops its term out of
            the row, as in the PERM code, where each term is its own TRL reward function) or
            "void" (the row is NaN); see ``aggregate_rewards``.
        impute_missing: replace a missing (NaN) judge score by the mean of the same perspective's
            valid scores: ``True`` or "group", over the other completions of the same prompt in
            the batch (its GRPO group; needs ``prompts``); "batch", over every completion of the
            call, across prompts (the PERM code's rule, the "perm-paper" preset's). Off by
            default: a NaN score then simply drops out of its row's mean. A perspective with no
            valid score in the scope stays NaN.
        name: the function name TRL logs the reward under.
    """

    def __init__(self, judge: Judge, perspectives: Sequence[Perspective] = DEFAULT_PERSPECTIVES, *,
                 columns: Mapping[str, str] | None = None, mode: str = "mean", bystander_coef: float = 0.2,
                 length_limit: float | None = None, length_coef: float = 0.0, missing_section: str = "empty",
                 impute_missing: bool | str = False, missing_terms: str = "drop", name: str = "perm",
                 backend: str | None = None):
        if not hasattr(judge, "score"):
            raise ValueError(f"judge must be a Judge (with a score method), got {type(judge).__name__}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}; got {mode!r}")
        if missing_terms not in MISSING_TERMS:
            raise ValueError(f"missing_terms must be one of {MISSING_TERMS}; got {missing_terms!r}")
        if missing_section not in MISSING_POLICIES:
            raise ValueError(f"missing_section must be one of {MISSING_POLICIES}; got {missing_section!r}")
        unknown = set(columns or {}) - set(DEFAULT_COLUMNS)
        if unknown:
            raise ValueError(f"columns has unknown keys {sorted(unknown)}; use {sorted(DEFAULT_COLUMNS)}")
        check_backend_name(backend)
        self.judge = judge
        self.perspectives = check_perspectives(perspectives)
        if getattr(judge, "score_only", False):  # logprob scoring reads unsigned digit tokens
            signed = next((p for p in self.perspectives if not p.logprob_scorable), None)
            if signed is not None:
                raise ValueError(f"perspective {signed.name!r} scores from {signed.score_min}, but the judge scores "
                                 "from logprobs, which read unsigned digit tokens only; use scoring='text' or a "
                                 "range from 0")
        negative = next((p for p in self.perspectives if not p.is_bystander and p.score_min < 0), None)
        if mode != "mean" and negative is not None:
            raise ValueError(f"mode={mode!r} needs scores >= 0, but perspective {negative.name!r} scores from "
                             f"{negative.score_min}; use mode='mean' or a rubric from 0")
        self.columns = {**DEFAULT_COLUMNS, **dict(columns or {})}
        self.mode = mode
        # Checked now, not after a batch of judge calls.
        self.bystander_coef = finite_number("bystander_coef", bystander_coef)
        self.length_limit = None if length_limit is None else finite_number("length_limit", length_limit,
                                                                               nonnegative=True)
        self.length_coef = finite_number("length_coef", length_coef)
        if self.length_coef and self.length_limit is None:
            raise ValueError("length_coef needs length_limit (the length past which the penalty starts)")
        self.missing_section = missing_section
        self.impute_missing = _impute_scope(impute_missing)
        self.missing_terms = missing_terms
        self.backend = backend
        self.__name__ = name
        self.counter = ScoreCounter()  # cumulative score outcomes per perspective
        self.last_scores: torch.Tensor | None = None  # [B, P] raw scores of the last call
        self.last_statuses: list[list[str]] = []  # [B][P] score statuses of the last call
        self.last_metrics: dict[str, float] = {}
        self._batch_counts: dict[str, collections.Counter] = {}
        self._warned_nan = False

    @classmethod
    def from_preset(cls, preset: str, judge: Judge, **overrides) -> "PERMReward":
        """A reward with a named preset's settings (``pyl2d.perm.presets``; e.g. "perm-paper"),
        any of them overridden by keyword. The preset's judge settings (sampling) are
        ``presets.judge_options(preset)``: pass them to the ``OpenAIJudge``."""
        return cls(judge, **{**reward_options(preset), **overrides})

    def __repr__(self) -> str:
        names = ", ".join(p.name for p in self.perspectives)
        return f"PERMReward(judge={self.judge!r}, perspectives=[{names}], mode={self.mode!r})"

    def _column(self, kwargs, key: str, n: int) -> list[str]:
        values = kwargs.get(self.columns[key])
        if values is None:
            return [""] * n
        if len(values) != n:
            raise ValueError(f"column {self.columns[key]!r} has {len(values)} values for {n} completions")
        return ["" if v is None else str(v) for v in values]

    def _requests(self, prompts, completions, completion_ids, kwargs):
        """The judge requests of a batch, where each result goes ([B, P] slots), and the
        statuses of the slots that need no judge call."""
        check_lengths(prompts, completions, completion_ids)
        texts = []
        for i, c in enumerate(completions):
            try:
                texts.append(completion_text(c))
            except ValueError as exc:
                raise ValueError(f"completions[{i}]: {exc}") from None
        n = len(texts)
        persona = self._column(kwargs, "persona", n)
        scenario = self._column(kwargs, "scenario", n)
        query = self._column(kwargs, "query", n)
        if self.columns["query"] not in kwargs and prompts is not None:
            query = [prompt_query(p) for p in prompts]
        statuses = [[MISSING_SECTION] * len(self.perspectives) for _ in range(n)]
        requests, slots = [], []
        batch_counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        score_only = bool(getattr(self.judge, "score_only", False))  # a judge scoring from logprobs
        for i, text in enumerate(texts):
            parsed = parse_completion(text)
            for j, p in enumerate(self.perspectives):
                section = parsed.section(p.section)
                if section is None and self.missing_section == "invalid":
                    batch_counts[p.name][MISSING_SECTION] += 1
                    continue
                msgs = p.messages(persona=persona[i], scenario=scenario[i], query=query[i], text=section or "",
                                  score_only=score_only)
                requests.append(JudgeRequest(p, tuple(msgs)))
                slots.append((i, j))
        return requests, (n, slots, statuses, batch_counts)

    def _collect(self, layout, results) -> torch.Tensor:
        n, slots, statuses, batch_counts = layout
        scores = torch.full((n, len(self.perspectives)), math.nan, dtype=torch.float64)
        for (i, j), result in zip(slots, results):
            scores[i, j] = result.value
            statuses[i][j] = result.status
            batch_counts[self.perspectives[j].name][result.status] += 1
        for name, counts in batch_counts.items():
            for status, c in counts.items():
                self.counter.counts[name][status] += c
        self._batch_counts = batch_counts
        self.last_statuses = statuses
        return scores

    def score(self, prompts, completions, completion_ids=None, **kwargs) -> torch.Tensor:
        """Raw per-perspective scores [B, P] (float64, NaN where invalid)."""
        requests, layout = self._requests(prompts, completions, completion_ids, kwargs)
        return self._collect(layout, self.judge.score(requests))

    async def ascore(self, prompts, completions, completion_ids=None, **kwargs) -> torch.Tensor:
        """:meth:`score` without blocking the running event loop (the judge's async path)."""
        requests, layout = self._requests(prompts, completions, completion_ids, kwargs)
        return self._collect(layout, await self.judge.ascore(requests))

    def __call__(self, prompts=None, completions=None, completion_ids=None, **kwargs) -> list[float]:
        if completions is None:
            raise ValueError("completions is required")
        return self._rewards(self.score(prompts, completions, completion_ids, **kwargs), prompts, completions,
                             completion_ids, kwargs)

    async def acall(self, prompts=None, completions=None, completion_ids=None, **kwargs) -> list[float]:
        """The rewards, as :meth:`__call__`, awaiting the judge (for async trainers)."""
        if completions is None:
            raise ValueError("completions is required")
        return self._rewards(await self.ascore(prompts, completions, completion_ids, **kwargs), prompts,
                             completions, completion_ids, kwargs)

    def as_async(self):
        """This reward as a coroutine function (``async def``) under the same name: TRL's
        GRPOTrainer (0.27 or later; older ones do not await reward functions) runs such
        reward functions concurrently on its event loop, and the judge calls never block it."""
        async def reward(prompts=None, completions=None, completion_ids=None, **kwargs) -> list[float]:
            return await self.acall(prompts, completions, completion_ids, **kwargs)
        reward.__name__ = reward.__qualname__ = self.__name__
        reward.perm = self
        return reward

    def _rewards(self, scores: torch.Tensor, prompts, completions, completion_ids, kwargs) -> list[float]:
        n = scores.shape[0]
        if n == 0:  # nothing scored: no last batch to report
            self.last_scores, self.last_metrics = scores, {}
            return []
        self.last_scores = scores
        if self.impute_missing == "batch":
            scores = impute_group_mean(scores, torch.zeros(n, dtype=torch.int64))
        elif self.impute_missing == "group" and prompts is not None:
            scores = impute_group_mean(scores, prompt_groups(prompts))
        main = [j for j, p in enumerate(self.perspectives) if not p.is_bystander]
        maxima = torch.tensor([float(self.perspectives[j].score_max) for j in main], dtype=torch.float64)
        normalised = (scores[:, main] / maxima).to(torch.float32)
        weights = torch.tensor([self.perspectives[j].weight for j in main], dtype=torch.float32)
        bystander = None
        for j, p in enumerate(self.perspectives):
            if p.is_bystander:  # as a percentage of its range
                bystander = ((scores[:, j] - p.score_min) / (p.score_max - p.score_min) * 100).to(torch.float32)
        lengths = None
        if self.length_limit is not None:
            if completion_ids is not None:
                lengths = torch.tensor([len(c) for c in completion_ids], dtype=torch.float32)
            else:
                lengths = torch.tensor([len(completion_text(c).split()) for c in completions], dtype=torch.float32)
        rewards = aggregate_rewards(normalised, weights, self.mode, 1.0, bystander, self.bystander_coef, lengths,
                                    self.length_limit, self.length_coef, missing_terms=self.missing_terms,
                                    backend=self.backend)
        self.last_metrics = self._metrics(self.last_scores, rewards)
        self._report(kwargs, self.last_scores)
        if "trainer_state" in kwargs and not self._warned_nan and bool(torch.isnan(rewards).any()):
            self._warned_nan = _warn_if_trl_collapses_nan()
        return [float(r) for r in rewards.tolist()]

    def _report(self, kwargs, scores: torch.Tensor) -> None:
        """Hand per-perspective metrics and score columns to TRL's ``log_metric`` and
        ``log_extra`` callbacks when the trainer passes them (GRPOTrainer does from TRL 1.0)."""
        log_metric, log_extra = kwargs.get("log_metric"), kwargs.get("log_extra")
        if callable(log_metric):
            for key, value in self.last_metrics.items():
                if not math.isnan(value):
                    log_metric(f"{self.__name__}/{key}", value)
        if callable(log_extra):
            for j, p in enumerate(self.perspectives):
                log_extra(f"{self.__name__}/{p.name}", scores[:, j].tolist())

    def _metrics(self, scores: torch.Tensor, rewards: torch.Tensor) -> dict[str, float]:
        """Per-perspective mean score and invalid count of the last batch, for logging."""
        out = {}
        for j, p in enumerate(self.perspectives):
            col = scores[:, j]
            valid = ~torch.isnan(col)
            out[f"{p.name}/mean"] = float(col[valid].mean()) if bool(valid.any()) else math.nan
            counts = self._batch_counts.get(p.name, collections.Counter())
            out[f"{p.name}/invalid"] = float(sum(c for s, c in counts.items() if s != OK))
        valid = ~torch.isnan(rewards)
        out["reward/mean"] = float(rewards[valid].mean()) if bool(valid.any()) else math.nan
        out["reward/unscorable"] = float((~valid).sum())
        return out
