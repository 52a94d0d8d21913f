"""pyl2d's "perm-paper" preset against the PERM authors' code, run on the same judge replies.

tests/perm/fixtures/perm_code_rewards.json holds, case by case, the judge replies of one batch
(two prompts x two completions), the rewards the PERM code gave (its perm/grpo.py reward
functions of the paper's run, called as TRL calls them, only its OpenAI client mocked:
tools/perm_code_fixtures.py, which names the PERM commit) and the rewards pyl2d gave. Here
pyl2d is run again on the same replies: it must still give its recorded rewards, equal the PERM
code's wherever the fixture says "same", and every difference must have its reason, which
docs/perm.md's table shows.
"""
import json
import math
import pathlib
import re

import pytest

from pyl2d.perm import PERMReward
from pyl2d.perm.judges import TextJudge
from pyl2d.perm.presets import judge_options
from pyl2d.perm.scores import ERROR, OK, TRUNCATED

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURE = json.loads((ROOT / "tests" / "perm" / "fixtures" / "perm_code_rewards.json").read_text())
DIMENSION = {"supporter/resonation": "resonation", "supporter/expression": "expression",
             "seeker/reception": "reception", "bystander/quality": "bystander"}
_MARK = re.compile(r"\[c(\d+)\]")


class Replay(TextJudge):
    """The case's replies: completion i's reply for the request's perspective."""

    def __init__(self, replies):
        self.replies = replies

    async def complete(self, request):
        text = "\n".join(m["content"] for m in request.messages)
        reply = self.replies[DIMENSION[request.perspective.name]][int(_MARK.search(text).group(1))]
        if isinstance(reply, dict):  # a failed call, or a reply cut off at max_tokens
            if reply.get("fail"):
                return None, ERROR
            return reply["text"], TRUNCATED if reply["finish_reason"] == "length" else OK
        return reply, OK


def completion(i: int) -> str:
    return f"# Analysis\nThe seeker feels alone [c{i}].\n# Response\nThat sounds hard [c{i}]."


def pyl2d_rewards(case) -> list:
    reward = PERMReward.from_preset("perm-paper", Replay(case["replies"]))
    n = len(case["lengths"])
    out = reward(prompts=[f"prompt {i // 2}" for i in range(n)], completions=[completion(i) for i in range(n)],
                 completion_ids=[[7] * t for t in case["lengths"]])
    return [None if math.isnan(r) else r for r in out]


def _near(a, b) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and abs(a - b) < 1e-6)


@pytest.mark.parametrize("case", FIXTURE["cases"], ids=[c["name"] for c in FIXTURE["cases"]])
def test_perm_paper_gives_the_recorded_reward_and_the_perm_codes_where_they_agree(case):
    ours = pyl2d_rewards(case)
    assert all(_near(a, b) for a, b in zip(ours, case["pyl2d"])), (ours, case["pyl2d"])
    if case["same"]:
        assert all(_near(a, b) for a, b in zip(ours, case["perm_code"]))
        assert case["why"] is None
    else:
        assert case["why"], "a difference without its reason"


def test_the_fixture_covers_the_issue_cases_and_names_the_perm_commit():
    source = FIXTURE["source"]
    assert source["repository"] == "https://github.com/ZhengWwwq/PERM" and re.fullmatch(r"[0-9a-f]{40}",
                                                                                        source["commit"])
    names = {c["name"] for c in FIXTURE["cases"]}
    assert {"two_scores", "echoed_example", "failed_call", "truncated", "out_of_range", "fullwidth_digit",
            "all_resonation_unreadable", "bystander_over_100", "bystander_wrong_denominator"} <= names
    assert sum(c["same"] for c in FIXTURE["cases"]) >= 16


def test_perm_paper_judge_settings_are_the_sampling_the_perm_code_sent():
    seen = FIXTURE["perm_code_sampling"]
    options = judge_options("perm-paper")
    assert (options["temperature"], options["extra_body"]["top_p"], options["max_tokens"], options["concurrency"]) \
        == (seen["temperature"], seen["top_p"], seen["max_tokens"], seen["max_in_flight"])


def _cell(values) -> str:
    if isinstance(values, dict):
        return "raises"
    return "NaN" if values[0] is None else f"{values[0]:.3f}"


def table() -> str:
    """docs/perm.md's table: completion 0's reward (the one whose reply each case changes)."""
    rows = ["| case | the judge's reply (completion 0) | PERM code | pyl2d `perm-paper` | why they differ |",
            "|---|---|---|---|---|"]
    for c in FIXTURE["cases"]:
        what = c["what"].replace("|", "\\|")
        rows.append(f"| `{c['name']}` | {what} | {_cell(c['perm_code'])} | {_cell(c['pyl2d'])} | "
                    f"{c['why'] or 'same rewards'} |")
    return "\n".join(rows) + "\n"


def test_docs_table_is_the_fixtures():
    assert table() in (ROOT / "docs" / "perm.md").read_text(), "regenerate: python -c 'from tests.perm." \
        "test_perm_code_fixtures import table; print(table())'"
