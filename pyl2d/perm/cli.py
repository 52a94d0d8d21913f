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
import pathlib
import sys

# Re-exported: they were defined here before the pipeline moved to pyl2d.perm.pipeline.
from pyl2d.perm.pipeline import SHOWN_PROBLEMS, check_config as check_args, write_scores  # noqa: F401
from pyl2d.perm.score_io import done_ids, open_output, read_rows  # noqa: F401

PROG = "pyl2d perm score"


def add_commands(subparsers) -> None:
    from pyl2d.ops.aggregate_rewards import MODES
    from pyl2d.perm.judges import SCORINGS
    from pyl2d.perm.score_constraint import CONSTRAINTS
    from pyl2d.perm.parsing import MISSING_POLICIES
    from pyl2d.perm.pipeline import ScoreRun as d  # its fields' defaults are the flags' defaults

    perm = subparsers.add_parser("perm", help="PERM empathetic rewards", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = perm.add_subparsers(dest="perm_command", metavar="SUBCOMMAND")
    score = sub.add_parser("score", help="score dialogues (JSONL) with an OpenAI-compatible judge server")
    score.add_argument("--judge-url", required=True, help="API root of the judge, e.g. http://127.0.0.1:8000/v1")
    score.add_argument("--model", required=True, help="model name the judge server expects")
    score.add_argument("--data", required=True, type=pathlib.Path, help="input JSONL, one dialogue per line")
    score.add_argument("--output", type=pathlib.Path, default=d.output,
                       help="output JSONL (appended; resumable). Default: stdout")
    score.add_argument("--api-key-env", default=d.api_key_env,
                       help=f"environment variable holding the API key (default {d.api_key_env})")
    score.add_argument("--id-field", default=d.id_field,
                       help=f"id field (default {d.id_field}; line number when absent)")
    score.add_argument("--completion-field", default=d.completion_field, help="field with the completion text")
    score.add_argument("--persona-field", default=d.persona_field)
    score.add_argument("--scenario-field", default=d.scenario_field)
    score.add_argument("--query-field", default=d.query_field)
    score.add_argument("--batch-size", type=int, default=d.batch_size,
                       help=f"dialogues per judge batch (default {d.batch_size})")
    score.add_argument("--concurrency", type=int, default=d.concurrency,
                       help=f"judge requests in flight (default {d.concurrency})")
    score.add_argument("--timeout", type=float, default=d.timeout,
                       help=f"wall-clock seconds per judge request attempt, body included (default {d.timeout:g})")
    score.add_argument("--max-retries", type=int, default=d.max_retries,
                       help=f"retries of a failed judge request (default {d.max_retries})")
    score.add_argument("--max-response-bytes", type=int, default=d.max_response_bytes,
                       help=f"largest judge reply body, decompressed (default {d.max_response_bytes / 2 ** 20:g} MiB)")
    score.add_argument("--scoring", default=d.scoring, choices=SCORINGS,
                       help="text: a judgement ending in 'Score: N'; logprobs: the expected score from the "
                            f"score tokens' probabilities, re-asked in text where a server sends none (default {d.scoring})")
    score.add_argument("--constraint", default=d.constraint, choices=CONSTRAINTS,
                       help="logprobs scoring: the judge server's grammar dialect (llama.cpp: grammar, vllm: "
                            "structured_outputs regex, sglang: regex), so each reply is a number of the rubric's range "
                            "(default: none, as OpenAI's API has none)")
    score.add_argument("--max-tokens", type=int, default=d.max_tokens,
                       help=f"longest judgement in tokens, text scoring (default {d.max_tokens})")
    score.add_argument("--mode", default=d.mode, choices=MODES)
    score.add_argument("--bystander-coef", type=float, default=d.bystander_coef)
    score.add_argument("--missing-section", default=d.missing_section, choices=MISSING_POLICIES)
    score.add_argument("--no-progress", action="store_true", help="no progress bar")  # ScoreRun.progress, negated
    score.set_defaults(func=run_score)
    perm.set_defaults(func=lambda args: perm.print_help() or 2)


def _config(args):
    """The ScoreRun of the parsed flags (one field per flag)."""
    import dataclasses

    from pyl2d.perm.pipeline import ScoreRun

    values = {f.name: vars(args)[f.name] for f in dataclasses.fields(ScoreRun) if f.name != "progress"}
    return ScoreRun(**values, progress=not args.no_progress)


def run_score(args) -> int:
    """Run the pipeline on the parsed flags and print its summary: the exit status."""
    from pyl2d.perm.pipeline import score_jsonl

    result = score_jsonl(_config(args), report=lambda message: print(f"{PROG}: {message}", file=sys.stderr))
    print(f"wrote {result.written} of {result.total} dialogues; invalid scores per perspective: {result.invalid}",
          file=sys.stderr)
    left = result.total - result.written
    if result.fatal:
        print(f"{PROG}: error: {result.fatal}; stopped with {left} dialogues not scored (run the same command again "
              "once the judge works)", file=sys.stderr)
        return 1
    if result.failed:
        print(f"{PROG}: error: {result.failed} dialogues not written because judge calls failed (see the warnings "
              "above); run the same command again to retry them", file=sys.stderr)
        return 1
    if result.problems:
        print(f"{PROG}: error: skipped {len(result.problems)} malformed input rows in {args.data}", file=sys.stderr)
        return 1
    return 0
