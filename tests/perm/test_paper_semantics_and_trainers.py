"""PERM's paper semantics (a missing bystander score drops out; the perm-paper preset), the
async reward for TRL's coroutine path, and the verl entry point (both of verl's forms)."""
import asyncio
import math
import time

import pytest

from pyl2d.perm import PERMReward, ScriptedJudge
from pyl2d.perm.reward import PRESETS
from pyl2d.perm.verl import make_compute_score

GOOD = "## Analysis:\nShe fears being a burden.\n\n## Response:\nIt sounds exhausting to carry this alone."
SCRIPT = {"supporter/resonation": "Score: 4", "supporter/expression": "**Score:** 5", "seeker/reception": "score = 3",
          "bystander/quality": "Total score: 90/100"}
NO_BYSTANDER = {**SCRIPT, "bystander/quality": "I would rather not give a number."}
MAIN = (0.8 + 1.0 + 0.6) / 3


def test_a_missing_bystander_score_drops_out_instead_of_voiding_the_reward():
    out = PERMReward(ScriptedJudge(NO_BYSTANDER), bystander_coef=0.5)(prompts=["p"], completions=[GOOD])
    assert out == pytest.approx([MAIN], abs=1e-6)  # the three empathy perspectives still count
    strict = PERMReward(ScriptedJudge(NO_BYSTANDER), bystander_coef=0.5, missing_terms="void")
    assert math.isnan(strict(prompts=["p"], completions=[GOOD])[0])
    with pytest.raises(ValueError, match="missing_terms"):
        PERMReward(ScriptedJudge(SCRIPT), missing_terms="zero")


def test_perm_paper_preset():
    reward = PERMReward.from_preset("perm-paper", ScriptedJudge(SCRIPT))
    assert (reward.mode, reward.bystander_coef, reward.length_limit, reward.length_coef) == ("harmonic", 0.5, 768,
                                                                                             0.001)
    ids = [[0] * 800]  # 32 tokens over the limit
    harmonic = 3 / (1 / 0.8 + 1 / 1.0 + 1 / 0.6)
    assert reward(prompts=["p"], completions=[GOOD], completion_ids=ids) == pytest.approx(
        [harmonic + 0.5 * (0.9 - 1) - 0.001 * 32], abs=1e-5)
    assert PERMReward.from_preset("perm-paper", ScriptedJudge(SCRIPT), mode="mean").mode == "mean"
    with pytest.raises(ValueError, match="preset must be one of"):
        PERMReward.from_preset("perm-2025", ScriptedJudge(SCRIPT))
    assert set(PRESETS) == {"perm-paper"}


def test_async_reward_is_a_coroutine_function_and_never_blocks_the_loop():
    """Two async rewards whose judge takes 0.5 s each finish together in about 0.5 s, with
    the same rewards as the sync call."""
    slow = [PERMReward(ScriptedJudge(SCRIPT, delay=0.5), name=f"perm{i}").as_async() for i in range(2)]
    assert all(asyncio.iscoroutinefunction(f) for f in slow) and slow[1].__name__ == "perm1"

    async def both():
        return await asyncio.gather(*(f(prompts=["p", "q"], completions=[GOOD, GOOD]) for f in slow))
    t0 = time.perf_counter()
    results = asyncio.run(both())
    took = time.perf_counter() - t0
    want = PERMReward(ScriptedJudge(SCRIPT))(prompts=["p", "q"], completions=[GOOD, GOOD])
    assert results == [want, want]
    assert took < 0.9, f"the two async rewards took {took:.2f} s: one blocked the loop"


def test_verl_compute_score_both_forms():
    judge = ScriptedJudge(SCRIPT)
    compute_score = make_compute_score(PERMReward(judge, bystander_coef=0.5))
    info = {"persona": "a nurse", "scenario": "night shifts", "query": "I am so tired"}
    one = compute_score("esconv", GOOD, None, info)
    assert one["score"] == pytest.approx(MAIN + 0.5 * (0.9 - 1), abs=1e-6) and not one["perm_unscorable"]
    assert all("a nurse" in c.messages[-1]["content"] for c in judge.calls)
    batch = compute_score(data_sources=["esconv"] * 3, solution_strs=[GOOD, GOOD, "no sections at all"],
                          ground_truths=[None] * 3, extra_infos=[info, None, info])
    assert [b["score"] for b in batch[:2]] == pytest.approx([one["score"]] * 2, abs=1e-6)
    unscorable = make_compute_score(PERMReward(ScriptedJudge("no score here")), nan_score=-1.0)("x", GOOD, None, None)
    assert unscorable == {"score": -1.0, "perm_unscorable": True}
    with pytest.raises(ValueError, match="extra_info must be a dict"):
        compute_score("esconv", GOOD, None, "persona: nurse")


def test_verl_module_entry_needs_a_judge():
    from pyl2d.perm import verl

    with pytest.raises(ValueError, match="judge_url and judge_model"):
        verl.compute_score("esconv", GOOD, None, {})



def test_verl_reward_kwargs_reach_the_judge_and_the_reward():
    from pyl2d.perm import verl

    config = dict(judge_url="http://127.0.0.1:1/v1", judge_model="m", scoring="logprobs", max_response_bytes=1024,
                  backoff=0.1, bystander_coef=0.5, mode="harmonic")
    reward = verl._scorer_from(config).reward
    assert reward.judge.scoring == "logprobs" and reward.judge.max_response_bytes == 1024
    assert reward.judge.backoff == 0.1 and reward.bystander_coef == 0.5 and reward.mode == "harmonic"
    verl._WARNED.discard("scorin")
    with pytest.warns(RuntimeWarning, match=r"ignores reward_kwargs \['scorin'\].*'scoring'"):
        assert verl._scorer_from({**config, "scorin": "text"}).reward is reward  # ignored: the same config
