"""Scores from logprobs (G-Eval over the score tokens) instead of generated text: the
expectation rule on its own, and OpenAIJudge(scoring="logprobs") against the loopback server,
including a server that returns no logprobs (text fallback, one warning)."""
import logging
import math

import pytest

from pyl2d.perm import OpenAIJudge, PERMReward
from pyl2d.perm.logprob_scores import expected_score

from .test_openai_judge import KEY_ENV, completion


def pos(token, alternatives):
    return {"token": token, "logprob": math.log(alternatives[token]),
            "top_logprobs": [{"token": t, "logprob": math.log(p)} for t, p in alternatives.items()]}


def test_one_token_score_is_the_expectation_over_in_range_tokens():
    got = expected_score([pos("4", {"4": 0.6, "5": 0.2, "9": 0.1, "Score": 0.1})], 1, 5)
    assert got.status == "ok" and got.value == pytest.approx((0.6 * 4 + 0.2 * 5) / 0.8)  # renormalised


def test_multi_digit_token_and_split_digits():
    llama = expected_score([pos("78", {"78": 0.5, "80": 0.5, "8": 0.2})], 0, 100)  # widths differ: "8" is ignored
    assert llama.value == pytest.approx(79.0)
    qwen = expected_score([pos("7", {"7": 1.0}), pos("8", {"8": 0.5, "6": 0.5})], 0, 100)
    assert qwen.value == pytest.approx(77.0)
    full = expected_score([pos("1", {"1": 0.9, "9": 0.1}), pos("0", {"0": 1.0}), pos("0", {"0": 1.0})], 0, 100)
    assert full.status == "ok" and full.value == 100.0  # clamped to the range
    spaced = expected_score([pos(" ", {" ": 1.0}), pos("3", {"3": 1.0}), pos("\n", {"\n": 1.0})], 1, 5)
    assert spaced.value == 3.0


def test_no_number_is_missing_and_out_of_range_is_counted():
    assert expected_score([pos("I", {"I": 0.9, "The": 0.1})], 1, 5).status == "missing"
    assert expected_score([], 1, 5).status == "missing"
    assert expected_score([pos("9", {"9": 0.8, "8": 0.2})], 1, 5).status == "out_of_range"


def lp(token, logprob, alternatives=()):
    return {"token": token, "logprob": logprob,
            "top_logprobs": [{"token": t, "logprob": v} for t, v in ((token, logprob), *alternatives)]}


def test_hostile_logprobs_are_a_status_not_an_exception():
    # Every logprob underflowing exp(): the relative probabilities still give the expectation.
    tiny = expected_score([lp("4", -1e6, [("2", -1e6)])], 1, 5)
    assert tiny.status == "ok" and tiny.value == pytest.approx(3.0)
    assert expected_score([lp("4", -math.inf)], 1, 5).status == "missing"  # probability 0: nothing seen
    assert expected_score([lp("4", math.nan)], 1, 5).status == "missing"
    assert expected_score([lp("4", True)], 1, 5).status == "missing"  # a bool is no logprob
    # Numbers far too long for a float are out of range, in one token or over many.
    assert expected_score([lp("9" * 320, -0.1)] * 2, 0, 100).status == "out_of_range"
    assert expected_score([lp("7", -0.1)] * 400, 0, 100).status == "out_of_range"


def test_openai_judge_scores_from_logprobs(judge_server, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test")
    judge = OpenAIJudge(judge_server.base_url, "judge-model", api_key_env=KEY_ENV, scoring="logprobs", timeout=5)
    reward = PERMReward(judge)
    out = reward(prompts=["q"] * 2, completions=[completion("good")] * 2)
    assert out == pytest.approx([4.1 / 5 + 0.2 * (0.705 - 1)] * 2, abs=1e-6)
    assert reward.last_metrics["bystander/quality/mean"] == pytest.approx(70.5)
    for body in judge_server.bodies:
        assert body["logprobs"] is True and body["top_logprobs"] == 20 and body["max_tokens"] == 4
        assert "Reply with the score only" in body["messages"][-1]["content"]


def test_server_without_logprobs_falls_back_to_text_with_one_warning(judge_server, monkeypatch, caplog):
    monkeypatch.setenv(KEY_ENV, "sk-test")
    judge_server.default_mode = "nologprobs"
    judge = OpenAIJudge(judge_server.base_url, "judge-model", api_key_env=KEY_ENV, scoring="logprobs", timeout=5)
    with caplog.at_level(logging.WARNING, logger="pyl2d.perm"):
        out = PERMReward(judge)(prompts=["q"] * 3, completions=["# Analysis\na\n# Response\nb"] * 3)
    assert out == pytest.approx([0.8 + 0.2 * (0.7 - 1)] * 3, abs=1e-6)  # the bare "4" / "70" replies
    warnings = [r for r in caplog.records if "returned no logprobs" in r.getMessage()]
    assert len(warnings) == 1 and judge.stats["no_logprobs"] == 12


def test_bad_scoring_arguments():
    with pytest.raises(ValueError, match="scoring must be one of"):
        OpenAIJudge("http://127.0.0.1:1/v1", "m", scoring="probs")
    with pytest.raises(ValueError, match="top_logprobs"):
        OpenAIJudge("http://127.0.0.1:1/v1", "m", scoring="logprobs", top_logprobs=50)


def test_a_word_sampled_first_is_read_from_the_digit_candidates():
    """Issue 25: SmolLM2 under llama.cpp sampled "The" with score digits among its top_logprobs;
    that was "missing" for every prompt. Now the expectation over the in-range candidates."""
    got = expected_score([pos("The", {"The": 0.5, "4": 0.3, "2": 0.1, "9": 0.1}), pos(" score", {" score": 1.0})], 1, 5)
    assert got.status == "ok" and got.value == pytest.approx((4 * 0.3 + 2 * 0.1) / 0.4)
    later = expected_score([pos("I", {"I": 1.0}), pos("3", {"3": 0.5, "4": 0.5})], 1, 5)  # first digit later
    assert later.status == "ok" and later.value == pytest.approx(3.5)
    # single digits of a 0-100 range: the number's length is unknown, so no score (re-asked in text)
    assert expected_score([pos("The", {"The": 0.6, "7": 0.4})], 0, 100).status == "missing"
    assert expected_score([pos("The", {"The": 0.6, "78": 0.3, "7": 0.1})], 0, 100).value == pytest.approx(60.25)
    assert expected_score([pos("The", {"The": 0.6, "9": 0.4})], 1, 5).status == "out_of_range"


def test_constraint_fields_allow_exactly_the_rubric_integers():
    import re

    from pyl2d.perm.score_constraint import constraint_fields

    for low, high in ((1, 5), (0, 100), (-2, 2)):
        allowed = {str(v) for v in range(low, high + 1)}
        regex = constraint_fields("vllm", low, high)["structured_outputs"]["regex"]
        assert constraint_fields("sglang", low, high)["regex"] == regex
        assert all(re.fullmatch(regex, s) for s in allowed)
        for bad in (str(low - 1), str(high + 1), "", "4.5", "The", " 4", "04" if low <= 4 <= high else "x"):
            assert not re.fullmatch(regex, bad), bad
        grammar = constraint_fields("llama.cpp", low, high)["grammar"]
        assert grammar.startswith("root ::= ") and set(re.findall(r'"([^"]*)"', grammar)) == allowed
    with pytest.raises(ValueError, match="constraint must be one of"):
        constraint_fields("openai", 1, 5)
    with pytest.raises(ValueError, match="1 to 10001 integers"):
        constraint_fields("vllm", 0, 10 ** 6)


def test_a_constrained_judge_sends_each_perspectives_grammar_and_never_in_text(judge_server, monkeypatch):
    """Issue 25: a 0-100 total split into digit tokens was re-asked in text whenever the judge
    sampled a word first; with a grammar the server can only write the number."""
    monkeypatch.setenv(KEY_ENV, "sk-test")
    judge = OpenAIJudge(judge_server.base_url, "judge-model", api_key_env=KEY_ENV, scoring="logprobs", timeout=5,
                        constraint="llama.cpp")
    out = PERMReward(judge)(prompts=["q"] * 2, completions=[completion("good")] * 2)
    assert out == pytest.approx([4.1 / 5 + 0.2 * (0.705 - 1)] * 2, abs=1e-6)
    grammars = {b["grammar"] for b in judge_server.bodies}
    assert grammars == {'root ::= "1" | "2" | "3" | "4" | "5"',
                        "root ::= " + " | ".join(f'"{n}"' for n in ["100"] + [str(v) for v in range(10, 100)]
                                                 + [str(v) for v in range(10)])}
    assert judge.stats["text_fallback"] == 0
    with pytest.raises(ValueError, match="applies to scoring='logprobs'"):
        OpenAIJudge(judge_server.base_url, "m", constraint="vllm")
    with pytest.raises(ValueError, match="constraint must be one of"):
        OpenAIJudge(judge_server.base_url, "m", scoring="logprobs", constraint="grammar")


def test_only_unreadable_scores_are_re_asked_in_text_once(judge_server, monkeypatch):
    """A word sampled first: the 1-5 scores are read from its digit candidates; the 0-100
    bystander (single digits: its length unknown) is asked once more, in text, and only it."""
    monkeypatch.setenv(KEY_ENV, "sk-test")
    judge = OpenAIJudge(judge_server.base_url, "judge-model", api_key_env=KEY_ENV, scoring="logprobs", timeout=5)
    reward = PERMReward(judge)
    scores = reward.score(prompts=["q"] * 2, completions=[completion("wordfirst")] * 2)
    assert scores[:, :3].flatten().tolist() == [4.0] * 6  # "4" is the one in-range candidate ("7" is not)
    assert scores[:, 3].tolist() == [70.0, 70.0]  # the text judgement's "Total score: 70/100"
    assert judge.stats["text_fallback"] == 2
    text_bodies = [b for b in judge_server.bodies if not b.get("logprobs")]
    assert len(text_bodies) == 2 and all("from 0 to 100" in b["messages"][-1]["content"] for b in text_bodies)
    assert len(judge_server.bodies) == 2 * 4 + 2


def test_requests_are_sent_in_message_order_so_neighbours_share_a_prefix(judge_server, monkeypatch):
    """The server's prefix cache keeps the previous prompt: requests go out sorted by their
    messages (one perspective's rubric together, then one seeker's context), whatever the
    order of the batch."""
    monkeypatch.setenv(KEY_ENV, "sk-test")
    judge = OpenAIJudge(judge_server.base_url, "judge-model", api_key_env=KEY_ENV, scoring="logprobs", timeout=5,
                        concurrency=1)
    texts = [completion("good") + f" variant {v}" for v in (3, 1, 2, 0)]
    PERMReward(judge)(prompts=["q1", "q0", "q1", "q0"], completions=texts)
    keys = [tuple((m["role"], m["content"]) for m in b["messages"]) for b in judge_server.bodies]
    assert len(keys) == 16 and keys == sorted(keys)
    systems = [k[0] for k in keys]  # each perspective's requests are one run
    assert sum(1 for a, b in zip(systems, systems[1:]) if a != b) == len(set(systems)) - 1
