"""``pyl2d perm score``: score dialogues from a JSONL file with a PERM judge server.

Each input line is a JSON object with an id, the seeker's context (persona, scenario, query)
and the supporter's completion (analysis + response sections). Each output line holds the
id, every perspective's score (null when the judge's answer held no valid score) and the
aggregated reward. Results are appended and flushed batch by batch, so an interrupted run
keeps what it finished; running again with the same --output skips the ids already written.

A dialogue is written only when every one of its judge calls got an answer: one whose call
failed (timeout, 5xx, bad body) is left out and retried by the next run. Malformed input rows
are skipped and reported by file and line (a file with no usable row is an error). Exit
status: 0 when every input row is in the output, 1 when some are not (malformed rows, failed
judge calls, a judge that refuses the key or cannot be reached: that stops the run), 2 for
bad arguments.
"""
from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys

PROG = "pyl2d perm score"
SHOWN_PROBLEMS = 20  # malformed rows reported one by one; the rest are counted


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
    score.add_argument("--timeout", type=float, default=60.0,
                       help="wall-clock seconds per judge request attempt, body included (default 60)")
    score.add_argument("--max-retries", type=int, default=4, help="retries of a failed judge request (default 4)")
    score.add_argument("--max-response-bytes", type=int, default=4 * 2 ** 20,
                       help="largest judge reply body, decompressed (default 4 MiB)")
    score.add_argument("--mode", default="mean", choices=("mean", "harmonic", "geometric"))
    score.add_argument("--bystander-coef", type=float, default=0.2)
    score.add_argument("--missing-section", default="empty", choices=("empty", "invalid"))
    score.add_argument("--no-progress", action="store_true", help="no progress bar")
    score.set_defaults(func=run_score)
    perm.set_defaults(func=lambda args: perm.print_help() or 2)


def read_rows(path: pathlib.Path, id_field: str, completion_field: str) -> tuple[list[tuple[str, dict]], list[str]]:
    """(id, row) of each well-formed input line, and a "file:line: what is wrong" for each other
    (a repeated id is wrong too: the output, and resuming, go by id)."""
    rows, problems, first_line = [], [], {}
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            where = f"{path}:{lineno}"
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                problems.append(f"{where}: not valid UTF-8 (byte {exc.object[exc.start]:#04x} at column "
                                f"{exc.start + 1})")
                continue
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except (ValueError, RecursionError) as exc:
                problems.append(f"{where}: not valid JSON ({getattr(exc, 'msg', type(exc).__name__)})")
                continue
            if not isinstance(row, dict):
                problems.append(f"{where}: expected a JSON object")
            elif not isinstance(row.get(completion_field), str):
                problems.append(f"{where}: field {completion_field!r} is missing or not text")
            else:
                key = str(row.get(id_field, lineno))
                if key in first_line:
                    problems.append(f"{where}: duplicate id {key[:80]!r} (first on line {first_line[key]})")
                    continue
                first_line[key] = lineno
                rows.append((key, row))
    return rows, problems


def done_ids(path: pathlib.Path | None) -> set[str]:
    """Ids already in an output file; a torn last line (an interrupted write) is ignored."""
    if path is None or not path.exists():
        return set()
    ids = set()
    with path.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                ids.add(str(json.loads(line)["id"]))
            except (ValueError, KeyError, TypeError):
                continue
    return ids


def check_args(args) -> None:
    """ValueError / FileNotFoundError naming the flag, for arguments that cannot work."""
    from pyl2d.perm._http import check_url

    check_url(args.judge_url, "--judge-url")
    if not args.api_key_env:
        raise ValueError("--api-key-env must name an environment variable")
    for flag, value, low in (("--batch-size", args.batch_size, 1), ("--concurrency", args.concurrency, 1),
                             ("--max-retries", args.max_retries, 0),
                             ("--max-response-bytes", args.max_response_bytes, 1)):
        if value < low:
            raise ValueError(f"{flag} must be >= {low}, got {value}")
    if not 0 < args.timeout < math.inf:
        raise ValueError(f"--timeout must be a finite number of seconds > 0, got {args.timeout}")
    if not math.isfinite(args.bystander_coef):
        raise ValueError(f"--bystander-coef must be a finite number, got {args.bystander_coef}")
    if not args.data.exists():
        raise FileNotFoundError(f"--data {args.data} does not exist")
    if not args.data.is_file():
        raise ValueError(f"--data {args.data} is not a file")
    if args.output is not None:
        if args.output.is_dir():
            raise ValueError(f"--output {args.output} is a directory; name a file")
        if args.output.exists() and args.output.resolve() == args.data.resolve():
            raise ValueError(f"--output {args.output} is the --data file; name another file")


def open_output(path: pathlib.Path | None):
    """The output stream: stdout, or ``path`` for appending with a torn last line repaired."""
    if path is None:
        return sys.stdout
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() and path.stat().st_size:
            with path.open("rb+") as f:  # a torn last line gets its newline back
                f.seek(-1, 2)
                if f.read(1) != b"\n":
                    f.write(b"\n")
        return path.open("a", encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"--output {path}: cannot write ({exc.strerror or type(exc).__name__})") from None


def _number(x: float):
    return None if x is None or math.isnan(x) else x


def write_scores(reward, rows, args, out, bar) -> tuple[int, int, str | None]:
    """Score ``rows`` batch by batch and write the judged ones: (written, not written, why the
    judge is unusable or None). A row with a failed judge call is left for the next run; a
    fatal failure (refused key, no connection) stops after its batch."""
    from pyl2d.perm.judges import FAILED, FATAL

    names = [p.name for p in reward.perspectives]
    written, failed, fatal = 0, 0, None
    for start in range(0, len(rows), args.batch_size):
        batch = rows[start:start + args.batch_size]
        fields = (args.persona_field, args.scenario_field, args.query_field)
        cols = {f: [r.get(f, "") for _, r in batch] for f in fields}
        rewards = reward(prompts=None, completions=[r[args.completion_field] for _, r in batch], **cols)
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


def run_score(args) -> int:
    from tqdm import tqdm

    from pyl2d.perm.judges import OpenAIJudge
    from pyl2d.perm.reward import PERMReward

    check_args(args)
    judge = OpenAIJudge(args.judge_url, args.model, api_key_env=args.api_key_env, concurrency=args.concurrency,
                        timeout=args.timeout, max_retries=args.max_retries,
                        max_response_bytes=args.max_response_bytes)
    reward = PERMReward(judge, mode=args.mode, bystander_coef=args.bystander_coef,
                        missing_section=args.missing_section,
                        columns={"persona": args.persona_field, "scenario": args.scenario_field,
                                 "query": args.query_field})
    skip = done_ids(args.output)
    rows, problems = read_rows(args.data, args.id_field, args.completion_field)
    if problems and not rows:
        raise ValueError(f"--data {args.data} holds no usable row ({len(problems)} malformed; first: "
                         f"{problems[0]})")
    rows = [(i, r) for i, r in rows if i not in skip]
    for problem in problems[:SHOWN_PROBLEMS]:
        print(f"{PROG}: skipping {problem}", file=sys.stderr)
    if len(problems) > SHOWN_PROBLEMS:
        print(f"{PROG}: ... and {len(problems) - SHOWN_PROBLEMS} more malformed rows", file=sys.stderr)
    out = open_output(args.output)
    bar = tqdm(total=len(rows), unit="dialogue", disable=args.no_progress, file=sys.stderr)
    try:
        if skip:
            bar.write(f"resuming: {len(skip)} dialogues already in {args.output}")
        written, failed, fatal = write_scores(reward, rows, args, out, bar)
    finally:
        bar.close()
        if out is not sys.stdout:
            out.close()
    counts = reward.counter.as_dict()
    invalid = {n: sum(v for k, v in c.items() if k != "ok") for n, c in counts.items()}
    print(f"wrote {written} of {len(rows)} dialogues; invalid scores per perspective: {invalid}", file=sys.stderr)
    left = len(rows) - written
    if fatal:
        print(f"{PROG}: error: {fatal}; stopped with {left} dialogues not scored (run the same command again "
              "once the judge works)", file=sys.stderr)
        return 1
    if failed:
        print(f"{PROG}: error: {failed} dialogues not written because judge calls failed (see the warnings "
              "above); run the same command again to retry them", file=sys.stderr)
        return 1
    if problems:
        print(f"{PROG}: error: skipped {len(problems)} malformed input rows in {args.data}", file=sys.stderr)
        return 1
    return 0
