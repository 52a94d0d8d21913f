"""The PERM scoring pipeline, callable from Python: what ``pyl2d perm score`` runs.

``score_jsonl(ScoreRun(...))`` scores the dialogues of a JSONL file with an OpenAI-compatible
judge server and appends one line per dialogue (id, every perspective's score, the reward) to
``output`` (stdout when None), flushed batch by batch. It resumes: ids already in ``output``
are skipped, and a dialogue is written only when every one of its judge calls got an answer,
so one whose call failed is retried by the next run. The API key is read from the
environment variable ``api_key_env`` at request time, never taken as an argument, stored or
logged. Arguments that cannot work raise ValueError / FileNotFoundError naming the CLI flag::

    from pyl2d.perm.pipeline import ScoreRun, score_jsonl
    result = score_jsonl(ScoreRun(judge_url="http://127.0.0.1:8000/v1", model="judge",
                                  data="dialogues.jsonl", output="scores.jsonl"))
    assert result.complete
"""
from __future__ import annotations

import dataclasses
import inspect
import json
import math
import pathlib
import sys
from typing import Callable

from pyl2d.perm.judges import MAX_RESPONSE_BYTES, OpenAIJudge
from pyl2d.perm.reward import DEFAULT_COLUMNS, PERMReward
from pyl2d.perm.score_io import check_output, done_ids, open_output, read_rows

SHOWN_PROBLEMS = 20  # malformed rows reported one by one; the rest are counted

__all__ = ["SHOWN_PROBLEMS", "ScoreResult", "ScoreRun", "check_config", "score_jsonl", "write_scores"]


def _default_of(func, name: str):
    """The default of parameter ``name`` of ``func``: reuse it instead of restating it."""
    return inspect.signature(func).parameters[name].default


@dataclasses.dataclass
class ScoreRun:
    """One ``pyl2d perm score`` run; each field is the flag of the same name (``_`` for ``-``).

    ``*_field``: the input's JSON fields; ``batch_size``: dialogues per judge batch (and per
    flush); ``timeout``: wall-clock seconds per request attempt, body included;
    ``max_response_bytes``: largest reply body, decompressed; ``scoring``: "text" or
    "logprobs" (see :class:`~pyl2d.perm.judges.OpenAIJudge`); ``constraint``: the judge server's
    grammar dialect for logprobs scoring (None: unconstrained); ``max_tokens``: longest judgement
    in text scoring; ``mode``, ``bystander_coef``,
    ``missing_section``: as :class:`~pyl2d.perm.reward.PERMReward`; ``progress``: a tqdm bar."""
    judge_url: str
    model: str
    data: pathlib.Path
    output: pathlib.Path | None = None
    api_key_env: str = _default_of(OpenAIJudge, "api_key_env")
    id_field: str = "id"
    completion_field: str = "completion"
    persona_field: str = DEFAULT_COLUMNS["persona"]
    scenario_field: str = DEFAULT_COLUMNS["scenario"]
    query_field: str = DEFAULT_COLUMNS["query"]
    batch_size: int = 32
    concurrency: int = _default_of(OpenAIJudge, "concurrency")
    timeout: float = _default_of(OpenAIJudge, "timeout")
    max_retries: int = _default_of(OpenAIJudge, "max_retries")
    max_response_bytes: int = MAX_RESPONSE_BYTES
    scoring: str = _default_of(OpenAIJudge, "scoring")
    constraint: str | None = _default_of(OpenAIJudge, "constraint")
    max_tokens: int = _default_of(OpenAIJudge, "max_tokens")
    mode: str = _default_of(PERMReward, "mode")
    bystander_coef: float = _default_of(PERMReward, "bystander_coef")
    missing_section: str = _default_of(PERMReward, "missing_section")
    progress: bool = True

    def __post_init__(self):
        self.data = pathlib.Path(self.data)
        if self.output is not None:
            self.output = pathlib.Path(self.output)


@dataclasses.dataclass
class ScoreResult:
    """What a run did: ``total`` dialogues were left to score (``resumed`` were already in the
    output), ``written`` of them were; ``failed`` were not (a judge call failed); ``fatal``
    says why the judge is unusable when that stopped the run; ``problems`` are the malformed
    input rows ("file:line: what is wrong"); ``invalid`` counts invalid scores per perspective."""
    total: int
    written: int
    failed: int
    fatal: str | None
    problems: list[str]
    resumed: int
    invalid: dict[str, int]

    @property
    def complete(self) -> bool:
        """Every input row is in the output."""
        return not (self.fatal or self.failed or self.problems)


def check_config(config) -> None:
    """ValueError / FileNotFoundError naming the flag, for settings that cannot work."""
    from pyl2d.perm._http import check_url

    check_url(config.judge_url, "--judge-url")
    if not config.api_key_env:
        raise ValueError("--api-key-env must name an environment variable")
    for flag, value, low in (("--batch-size", config.batch_size, 1), ("--concurrency", config.concurrency, 1),
                             ("--max-retries", config.max_retries, 0),
                             ("--max-response-bytes", config.max_response_bytes, 1),
                             ("--max-tokens", config.max_tokens, 1)):
        if value < low:
            raise ValueError(f"{flag} must be >= {low}, got {value}")
    if not 0 < config.timeout < math.inf:
        raise ValueError(f"--timeout must be a finite number of seconds > 0, got {config.timeout}")
    if config.constraint is not None and config.scoring != "logprobs":
        raise ValueError(f"--constraint {config.constraint} needs --scoring logprobs (a text judgement is free text)")
    if not math.isfinite(config.bystander_coef):
        raise ValueError(f"--bystander-coef must be a finite number, got {config.bystander_coef}")
    if not config.data.exists():
        raise FileNotFoundError(f"--data {config.data} does not exist")
    if not config.data.is_file():
        raise ValueError(f"--data {config.data} is not a file")
    if config.output is not None:
        if config.output.is_dir():
            raise ValueError(f"--output {config.output} is a directory; name a file")
        if config.output.exists() and config.output.resolve() == config.data.resolve():
            raise ValueError(f"--output {config.output} is the --data file; name another file")
        check_output(config.output)


def _number(x: float):
    return None if x is None or math.isnan(x) else x


def write_scores(reward, rows, config, out, bar) -> tuple[int, int, str | None]:
    """Score ``rows`` batch by batch and write the judged ones: (written, not written, why the
    judge is unusable or None). A row with a failed judge call is left for the next run; a
    fatal failure (refused key, no connection) stops after its batch."""
    from pyl2d.perm.judges import FAILED, FATAL

    names = [p.name for p in reward.perspectives]
    written, failed, fatal = 0, 0, None
    for start in range(0, len(rows), config.batch_size):
        batch = rows[start:start + config.batch_size]
        fields = (config.persona_field, config.scenario_field, config.query_field)
        cols = {f: [r.get(f, "") for _, r in batch] for f in fields}
        rewards = reward(prompts=None, completions=[r[config.completion_field] for _, r in batch], **cols)
        for (i, _), value, row_scores, statuses in zip(batch, rewards, reward.last_scores.tolist(),
                                                        reward.last_statuses):
            if FAILED.intersection(statuses):
                failed += 1
                if FATAL.intersection(statuses):
                    fatal = fatal or getattr(reward.judge, "fatal", None) or "the judge is unusable"
                continue
            record = {"id": i, "scores": {n: _number(s) for n, s in zip(names, row_scores)}, "reward": _number(value)}
            out.write(json.dumps(record) + "\n")
            written += 1
        out.flush()
        bar.update(len(batch))
        if fatal:
            break
    return written, failed, fatal


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def score_jsonl(config: ScoreRun, report: Callable[[str], None] = _stderr) -> ScoreResult:
    """Score ``config.data`` into ``config.output`` (resuming it); ``report`` gets a line per
    malformed row skipped (the first SHOWN_PROBLEMS, then a count), before scoring starts."""
    from tqdm import tqdm

    check_config(config)
    judge = OpenAIJudge(config.judge_url, config.model, api_key_env=config.api_key_env,
                        concurrency=config.concurrency, timeout=config.timeout, max_retries=config.max_retries,
                        max_response_bytes=config.max_response_bytes, scoring=config.scoring,
                        constraint=config.constraint, max_tokens=config.max_tokens)
    reward = PERMReward(judge, mode=config.mode, bystander_coef=config.bystander_coef,
                        missing_section=config.missing_section,
                        columns={"persona": config.persona_field, "scenario": config.scenario_field,
                                 "query": config.query_field})
    skip = done_ids(config.output)
    rows, problems = read_rows(config.data, config.id_field, config.completion_field,
                               (config.persona_field, config.scenario_field, config.query_field))
    if problems and not rows:
        raise ValueError(f"--data {config.data} holds no usable row ({len(problems)} malformed; first: "
                         f"{problems[0]})")
    if not rows:
        raise ValueError(f"--data {config.data} holds no row (it is empty or blank)")
    rows = [(i, r) for i, r in rows if i not in skip]
    for problem in problems[:SHOWN_PROBLEMS]:
        report(f"skipping {problem}")
    if len(problems) > SHOWN_PROBLEMS:
        report(f"... and {len(problems) - SHOWN_PROBLEMS} more malformed rows")
    out = open_output(config.output)
    bar = tqdm(total=len(rows), unit="dialogue", disable=not config.progress, file=sys.stderr)
    try:
        if skip:
            bar.write(f"resuming: {len(skip)} dialogues already in {config.output}")
        written, failed, fatal = write_scores(reward, rows, config, out, bar)
    finally:
        bar.close()
        if out is not sys.stdout:
            out.close()
    counts = reward.counter.as_dict()
    invalid = {n: sum(v for k, v in c.items() if k != "ok") for n, c in counts.items()}
    return ScoreResult(total=len(rows), written=written, failed=failed, fatal=fatal, problems=problems,
                       resumed=len(skip), invalid=invalid)
