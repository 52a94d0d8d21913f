"""Score-reading rules: malformed numbers refused (issue 23.8), which score of a reply counts
(``pick``), label-only reading (``label``), batch imputation, and logprob scoring refused for
ranges with negative scores (issue 25.5)."""
import dataclasses
import math

import pytest

from pyl2d.perm import OpenAIJudge, PERMReward, Perspective, ScriptedJudge
from pyl2d.perm.perspectives import DEFAULT_PERSPECTIVES, PAPER_PERSPECTIVES, RESONATION
from pyl2d.perm.scores import MALFORMED, MISSING, OK, parse_score


@pytest.mark.parametrize("text", ["Score: 2 \u00bd", "Score: 1 000", "Score: 1\u202f000", "Score: 1\u00a0000",
                                  "Score: 1'000", "Rating: 3 4", "Total score: 70 / 100 0"])
def test_a_number_that_runs_on_is_malformed_not_its_first_digits(text):
    assert parse_score(text, 0, 1000).status == MALFORMED


@pytest.mark.parametrize("text, value", [("Score: 4 points", 4), ("Score: 4\n5. Next point", 4), ("Score: 4 / 5", 4),
                                         ("Score: 4 out of 5", 4), ("Score: 4 (good)", 4)])
def test_words_and_next_lines_after_a_score_are_not_part_of_it(text, value):
    assert parse_score(text, 0, 5) == parse_score(f"Score: {value}", 0, 5)


def test_pick_first_or_last():
    text = "Score: 2\nOn reflection the analysis is deeper.\nScore: 4\n\ne.g. Score: 3"
    assert parse_score(text, 1, 5).value == 3
    assert parse_score(text, 1, 5, pick="first").value == 2
    with pytest.raises(ValueError, match="pick must be one of"):
        parse_score(text, 1, 5, pick="middle")
    with pytest.raises(ValueError, match="pick must be one of"):
        Perspective("x/y", "supporter", "response", "rubric", pick="middle")


def test_a_label_reads_only_that_label():
    reply = "- Clarity: 15 / 20\n- Accuracy score: 12 / 20\n3. Total Score: 81 / 100"
    assert parse_score(reply, 0, 100, label="Total Score").value == 81
    assert parse_score(reply, 0, 100, pick="first", label="Total Score").value == 81
    assert parse_score("- Clarity: 15 / 20\n80/100", 0, 100, label="Total Score").status == MISSING
    assert parse_score("Subtotal score: 50 / 100", 0, 100, label="Total Score").status == MISSING
    assert parse_score("**Total Score:** 80 / 100", 0, 100, label="Total Score").value == 80
    for bad in ("Total.*", "", "Total  Score", 3):
        with pytest.raises(ValueError, match="label"):
            Perspective("x/y", "bystander", "response", "rubric", 0, 100, label=bad)
    assert "Total Score: N / 100" in PAPER_PERSPECTIVES[3].messages(persona="", scenario="", query="", text="t")[1][
        "content"]


GOOD = "# Analysis\nShe fears being a burden.\n# Response\nIt sounds exhausting."


def test_batch_imputation_crosses_prompts_and_group_imputation_does_not():
    replies = {"supporter/resonation": ["Score: 4", "no score", "Score: 2"], "supporter/expression": "Score: 5",
               "seeker/reception": "Score: 5", "bystander/quality": "Total score: 100/100"}
    prompts = ["p", "q", "q"]  # the unreadable reply's group has one valid score (2), the batch two (4, 2)

    def reward(impute):
        return PERMReward(ScriptedJudge(replies), impute_missing=impute)(prompts=prompts, completions=[GOOD] * 3)
    assert reward("batch")[1] == pytest.approx((3 / 5 + 1 + 1) / 3, abs=1e-6)
    assert reward("group")[1] == pytest.approx((2 / 5 + 1 + 1) / 3, abs=1e-6) == pytest.approx(reward(True)[1])
    assert reward(False)[1] == pytest.approx(1.0, abs=1e-6)
    for bad in ("yes", 1, "prompt"):
        with pytest.raises(ValueError, match="impute_missing must be"):
            PERMReward(ScriptedJudge(replies), impute_missing=bad)


def test_perm_paper_preset_reads_the_first_score_and_imputes_across_the_batch():
    replies = {"supporter/resonation": ["Score: 4\ne.g. Score: 3", "nothing", "Score: 2"],
               "supporter/expression": "Score: 5", "seeker/reception": "Score: 5",
               "bystander/quality": "- Clarity: 18 / 20\nTotal Score: 90 / 100"}
    reward = PERMReward.from_preset("perm-paper", ScriptedJudge(replies))
    out = reward(prompts=["p", "q", "q"], completions=[GOOD] * 3)
    assert reward.last_scores[0].tolist() == [4, 5, 5, 90]

    def harmonic(*xs):
        return len(xs) / sum(1 / x for x in xs)
    assert out[1] == pytest.approx(harmonic(3 / 5, 1, 1) + 0.5 * (0.9 - 1), abs=1e-6)
    with pytest.raises(ValueError, match=r"preset must be one of \['perm-paper'\]; got 'perm-2025'"):
        PERMReward.from_preset("perm-2025", ScriptedJudge(replies))
    with pytest.raises(ValueError, match="preset must be one of"):
        PERMReward.from_preset(["perm-paper"], ScriptedJudge(replies))


SIGNED = dataclasses.replace(RESONATION, name="supporter/valence", score_min=-2, score_max=2)


def test_logprob_scoring_of_a_negative_range_is_refused_when_the_reward_is_made():
    judge = OpenAIJudge("http://127.0.0.1:9/v1", "judge", scoring="logprobs", api_key_env="PYL2D_TEST_NO_KEY")
    with pytest.raises(ValueError, match="supporter/valence.* scores from -2.*logprobs"):
        PERMReward(judge, perspectives=[SIGNED, *DEFAULT_PERSPECTIVES[1:]])
    with pytest.raises(ValueError, match="logprob scoring reads unsigned digit tokens"):
        SIGNED.messages(persona="", scenario="", query="", text="t", score_only=True)
    # Text scoring reads signed scores.
    text = PERMReward(ScriptedJudge("Score: -1"), perspectives=[SIGNED])
    assert text(prompts=["p"], completions=[GOOD]) == pytest.approx([-0.5])
    assert text.last_statuses == [[OK]]
    assert not math.isnan(text.last_scores[0, 0])
