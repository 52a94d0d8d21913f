"""pyl2d's PERM reward against the PERM code's (ZhengWwwq/PERM: perm/grpo.py's TRL reward
functions and perm/utils.py, read 2026-12-01) on the same judge replies.

``perm_code_rewards`` below restates what that code computes, written from its behaviour
(not copied): a judge reply's score is the integer on the first line starting with
"Score:"; a reply without one is None, and every None is replaced by the mean of the valid
scores of that dimension in the whole reward call; the empathy term is the mean (optionally
weighted), harmonic or geometric mean of score / 5; the bystander term, its own reward
function, is coef * (N / 100 - 1) for the first "total score: N / M"; the length term, also
its own function, is -coef * max(0, completion tokens - limit); TRL adds the functions up.

Where every judge answers in range the two agree exactly (first test). The remaining
differences, documented in docs/perm.md, are measured by the other tests: pyl2d does not
impute from other prompts' completions, rejects out-of-range scores, and reads more score
formats.
"""
import math
import re

import pytest

from pyl2d.perm import PERMReward, ScriptedJudge
from pyl2d.perm.perspectives import DEFAULT_PERSPECTIVES

DIMENSIONS = ("resonation", "expression", "reception")
NAMES = {"supporter/resonation": "resonation", "supporter/expression": "expression", "seeker/reception": "reception",
         "bystander/quality": "bystander"}
_MARK = re.compile(r"\[c(\d+)\]")


def perm_code_score(reply: str) -> float | None:
    for line in reply.splitlines():
        if line.startswith("Score:"):
            value = line.split(":")[1].strip()
            return float(int(value)) if re.fullmatch(r"[+-]?\d+", value) else None
    return None


def perm_code_bystander(reply: str) -> float | None:
    for line in reply.splitlines():
        m = re.search(r"total score:\s*(\d+)\s*/\s*\d+", line.lower())
        if m:
            return float(m.group(1))
    return None


def _impute_batch_mean(values: list[float | None]) -> list[float]:
    valid = [v for v in values if v is not None]
    mean = sum(valid) / len(valid)
    return [mean if v is None else v for v in values]


def perm_code_rewards(replies: dict[str, list[str]], lengths: list[int], mode: str = "mean",
                      weights: dict[str, float] | None = None, standby_coef: float = 0.1,
                      length_limit: int = 300, length_coef: float = 0.001) -> list[float]:
    scores = {d: _impute_batch_mean([perm_code_score(r) for r in replies[d]]) for d in DIMENSIONS}
    n = len(lengths)
    empathy = []
    for i in range(n):
        x = [scores[d][i] / 5.0 for d in DIMENSIONS]
        if mode == "mean":
            w = [weights[d] for d in DIMENSIONS] if weights else [1.0] * 3
            empathy.append(sum(a * b for a, b in zip(x, w)) / sum(w))
        elif mode == "harmonic":
            pos = [v for v in x if v > 0]
            empathy.append(len(pos) / sum(1 / v for v in pos))
        else:
            pos = [v for v in x if v > 0]
            empathy.append(math.prod(pos) ** (1 / len(pos)))
    bystander = _impute_batch_mean([perm_code_bystander(r) for r in replies["bystander"]])
    return [e + standby_coef * (b / 100.0 - 1.0) - length_coef * max(0, t - length_limit)
            for e, b, t in zip(empathy, bystander, lengths)]


def completions(n: int) -> list[str]:
    return [f"# Analysis\nThe seeker feels alone [c{i}].\n# Response\nThat sounds hard [c{i}]." for i in range(n)]


def scripted(replies: dict[str, list[str]]) -> ScriptedJudge:
    def reply(request):
        text = "\n".join(m["content"] for m in request.messages)
        return replies[NAMES[request.perspective.name]][int(_MARK.search(text).group(1))]
    return ScriptedJudge(reply)


REPLIES = {  # one group of four completions; every reply valid for both parsers
    "resonation": ["Score: 4", "Score: 2", "Score: 5", "Score: 1"],
    "expression": ["Score: 3", "Score: 5", "Score: 4", "Score: 2"],
    "reception": ["Score: 5", "Score: 3", "Score: 1", "Score: 4"],
    "bystander": ["Total score: 80/100", "Total score: 35/100", "Total score: 60/100", "Total score: 90/100"],
}
LENGTHS = [120, 420, 300, 777]


def pyl2d_rewards(replies, lengths, **kwargs) -> list[float]:
    reward = PERMReward(scripted(replies), length_limit=kwargs.pop("length_limit", 300),
                        length_coef=kwargs.pop("length_coef", 0.001), bystander_coef=kwargs.pop("standby_coef", 0.1),
                        **kwargs)
    n = len(lengths)
    return reward(prompts=["I feel alone"] * n, completions=completions(n), completion_ids=[[7] * t for t in lengths])


@pytest.mark.parametrize("mode", ["mean", "harmonic", "geometric"])
def test_every_judge_answers_the_two_agree(mode):
    want = perm_code_rewards(REPLIES, LENGTHS, mode=mode)
    assert pyl2d_rewards(REPLIES, LENGTHS, mode=mode) == pytest.approx(want, abs=1e-6)


def test_weighted_mean_agrees():
    weights = {"resonation": 2.0, "expression": 1.0, "reception": 0.5}
    perspectives = [p if p.role == "bystander" else type(p)(**{**p.__dict__, "weight": weights[NAMES[p.name]]})
                    for p in DEFAULT_PERSPECTIVES]
    want = perm_code_rewards(REPLIES, LENGTHS, weights=weights)
    assert pyl2d_rewards(REPLIES, LENGTHS, perspectives=perspectives) == pytest.approx(want, abs=1e-6)


def test_an_unscorable_reply_is_imputed_from_the_batch_there_and_dropped_here():
    replies = {**REPLIES, "expression": ["Score: 3", "I cannot rate this.", "Score: 4", "Score: 2"]}
    code = perm_code_rewards(replies, LENGTHS)
    ours = pyl2d_rewards(replies, LENGTHS)
    # The PERM code gives completion 1 the batch mean of expression, (3 + 4 + 2) / 3 = 3;
    # pyl2d averages the perspectives that answered: (2 + 3) / 2 over 5.
    term = 0.1 * (0.35 - 1.0) - 0.001 * 120
    assert code[1] == pytest.approx((2 + 3 + 3) / 15 + term, abs=1e-6)
    assert ours[1] == pytest.approx((2 + 3) / 10 + term, abs=1e-6)
    assert ours[0] == pytest.approx(code[0], abs=1e-6) and ours[2:] == pytest.approx(code[2:], abs=1e-6)
    # impute_missing=True imputes from the same prompt's completions; with one prompt in the
    # call (a GRPO group) that is the PERM code's batch mean exactly.
    group = PERMReward(scripted(replies), length_limit=300, length_coef=0.001, bystander_coef=0.1,
                       impute_missing=True)
    same = group(prompts=["I feel alone"] * 4, completions=completions(4), completion_ids=[[7] * t for t in LENGTHS])
    assert same == pytest.approx(code, abs=1e-6)


def test_an_unscorable_bystander_is_imputed_there_and_drops_out_here():
    replies = {**REPLIES, "bystander": ["Total score: 80/100", "no number", "Total score: 60/100",
                                        "Total score: 90/100"]}
    code, ours = perm_code_rewards(replies, LENGTHS), pyl2d_rewards(replies, LENGTHS)
    empathy = (2 + 5 + 3) / 15
    assert code[1] == pytest.approx(empathy + 0.1 * ((80 + 60 + 90) / 300 - 1.0) - 0.12, abs=1e-6)
    assert ours[1] == pytest.approx(empathy - 0.12, abs=1e-6)


def test_out_of_range_and_other_formats():
    replies = {**REPLIES, "resonation": ["Score: 7", "Score: 4/5", "Score: 5", "Score: 1"]}
    code, ours = perm_code_rewards(replies, LENGTHS), pyl2d_rewards(replies, LENGTHS)
    # "Score: 7" on a 1-5 rubric: the PERM code uses 7 / 5 = 1.4; pyl2d rejects it (out of range).
    assert code[0] == pytest.approx((7 + 3 + 5) / 15 + 0.1 * (0.8 - 1.0), abs=1e-6)
    assert ours[0] == pytest.approx((3 + 5) / 10 + 0.1 * (0.8 - 1.0), abs=1e-6)
    # "Score: 4/5": the PERM code cannot read it (imputed: the batch mean of 7, 5, 1); pyl2d reads 4.
    assert code[1] == pytest.approx(((7 + 5 + 1) / 3 + 5 + 3) / 15 + 0.1 * (0.35 - 1.0) - 0.12, abs=1e-6)
    assert ours[1] == pytest.approx((4 + 5 + 3) / 15 + 0.1 * (0.35 - 1.0) - 0.12, abs=1e-6)
