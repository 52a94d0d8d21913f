"""``pyl2d perm score``: score dialogues from a JSONL file with a PERM judge server.

Each input line is a JSON object with an id, the seeker's context (persona, scenario, query)
and the supporter's completion (analysis + response sections). Each output line holds the
id, every perspective's score (null when invalid) and the aggregated reward. Results are
appended and flushed batch by batch, so an interrupted run keeps what it finished; running
again with the same --output skips the ids already written.
"""
from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys
from typing import Iterator


def add_commands(subparsers) -> None:
    perm = subparsers.add_parser("perm", help="PERM empathetic rewards", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = perm.add_subparsers(dest="perm_command", metavar="SUBCOMMAND")
    score = sub.add_parser("score", help="score dialogues (JSONL) with an OpenAI-compatible judge server")
    score.add_argument("--judge-url", required=True, help="API root of the judge, e.g. http://127.0.0.1:8000/v1")
    score.add_argument("--model", required=True, help="model name the judge server expects")
    score.add_argument("--data", required=True, type=pathlib.Path, help="input JSONL, one dialogue per line")
    score.add_argument("--output", type=pathlib.Path, help="output JSONL (appended; resumable). Default: stdout")
    score.add_argument("--api-key-env", default="OPENAI_API_KEY",
                       help="environment variable holding the API key (default OPENAI_API_KEY)")
    score.add_argument("--id-field", default="id", help="id field (default id; line number when absent)")
    score.add_argument("--completion-field", default="completion", help="field with the completion text")
    score.add_argument("--persona-field", default="persona")
    score.add_argument("--scenario-field", default="scenario")
    score.add_argument("--query-field", default="query")
    score.add_argument("--batch-size", type=int, default=32, help="dialogues per judge batch (default 32)")
    score.add_argument("--concurrency", type=int, default=16, help="judge requests in flight (default 16)")
    score.add_argument("--timeout", type=float, default=60.0, help="seconds per judge request (default 60)")
    score.add_argument("--max-retries", type=int, default=4)
    score.add_argument("--mode", default="mean", choices=("mean", "harmonic", "geometric"))
    score.add_argument("--bystander-coef", type=float, default=0.2)
    score.add_argument("--missing-section", default="empty", choices=("empty", "invalid"))
    score.add_argument("--no-progress", action="store_true", help="no progress bar")
    score.set_defaults(func=run_score)
    perm.set_defaults(func=lambda args: perm.print_help() or 2)


def _rows(path: pathlib.Path, id_field: str) -> Iterator[tuple[str, dict]]:
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{lineno}: expected a JSON object")
            yield str(row.get(id_field, lineno)), row


def done_ids(path: pathlib.Path | None) -> set[str]:
    """Ids already in an output file; a torn last line (an interrupted write) is ignored."""
    if path is None or not path.exists():
        return set()
    ids = set()
    with path.open(encoding="utf-8") as f:
        for line in f:
            try:
                ids.add(str(json.loads(line)["id"]))
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
    return ids


def _number(x: float):
    return None if x is None or math.isnan(x) else x


def run_score(args) -> int:
    from tqdm import tqdm

    from pyl2d.perm.judges import OpenAIJudge
    from pyl2d.perm.reward import PERMReward

    if args.batch_size < 1:
        raise ValueError("--batch-size must be >= 1")
    if not args.data.is_file():
        raise FileNotFoundError(f"--data {args.data} does not exist")
    judge = OpenAIJudge(args.judge_url, args.model, api_key_env=args.api_key_env, concurrency=args.concurrency,
                        timeout=args.timeout, max_retries=args.max_retries)
    reward = PERMReward(judge, mode=args.mode, bystander_coef=args.bystander_coef,
                        missing_section=args.missing_section,
                        columns={"persona": args.persona_field, "scenario": args.scenario_field,
                                 "query": args.query_field})
    skip = done_ids(args.output)
    rows = [(i, r) for i, r in _rows(args.data, args.id_field) if i not in skip]
    for i, r in rows:
        if not isinstance(r.get(args.completion_field), str):
            raise ValueError(f"dialogue {i}: field {args.completion_field!r} is missing or not text")
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        if args.output.exists() and args.output.stat().st_size:
            with args.output.open("rb+") as f:  # a torn last line gets its newline back
                f.seek(-1, 2)
                if f.read(1) != b"\n":
                    f.write(b"\n")
    out = args.output.open("a", encoding="utf-8") if args.output is not None else sys.stdout
    names = [p.name for p in reward.perspectives]
    bar = tqdm(total=len(rows), unit="dialogue", disable=args.no_progress, file=sys.stderr)
    try:
        if skip:
            bar.write(f"resuming: {len(skip)} dialogues already in {args.output}")
        for start in range(0, len(rows), args.batch_size):
            batch = rows[start:start + args.batch_size]
            cols = {f: [r.get(f, "") for _, r in batch]
                    for f in (args.persona_field, args.scenario_field, args.query_field)}
            rewards = reward(prompts=None, completions=[r[args.completion_field] for _, r in batch], **cols)
            for (i, _), value, row_scores in zip(batch, rewards, reward.last_scores.tolist()):
                record = {"id": i, "scores": {n: _number(s) for n, s in zip(names, row_scores)},
                          "reward": _number(value)}
                out.write(json.dumps(record) + "\n")
            out.flush()
            bar.update(len(batch))
    finally:
        bar.close()
        if out is not sys.stdout:
            out.close()
    counts = reward.counter.as_dict()
    invalid = {n: sum(v for k, v in c.items() if k != "ok") for n, c in counts.items()}
    print(f"scored {len(rows)} dialogues; invalid scores per perspective: {invalid}", file=sys.stderr)
    return 0
