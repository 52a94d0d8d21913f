"""OpenAIJudge over several judge servers (loopback): requests spread over the healthy ones,
a dead server is failed over, a recovered one takes requests again, per-server counts."""
import time

import pytest

from pyl2d.perm import OpenAIJudge, PERMReward

from .test_openai_judge import KEY_ENV, completion

GOOD = pytest.approx(0.74, abs=1e-6)


def judge(urls, **kw):
    opts = dict(api_key_env=KEY_ENV, concurrency=8, timeout=2.0, max_retries=3, backoff=0.01, max_backoff=0.05,
                server_cooldown=0.05)
    return OpenAIJudge(urls, "judge-model", **{**opts, **kw})


def test_requests_spread_over_healthy_servers(judge_server, second_judge_server, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test")
    judge_server.delay = second_judge_server.delay = 0.02
    j = judge([judge_server.base_url, second_judge_server.base_url])
    out = PERMReward(j)(prompts=["q"] * 8, completions=[completion("good")] * 8)
    assert out == [GOOD] * 8
    a, b = judge_server.total_requests(), second_judge_server.total_requests()
    assert a + b == 32 and min(a, b) >= 8, (a, b)  # least-loaded: both share the batch
    assert sorted(s["ok"] for s in j.server_stats.values()) == sorted([a, b])


def test_a_dead_server_is_failed_over(judge_server, refused_url, monkeypatch, http_library):
    monkeypatch.setenv(KEY_ENV, "sk-test")
    # A cooldown longer than the test: once benched the dead server gets nothing more however
    # slow a loaded machine runs the batch (with 50 ms it came back between requests in CI).
    j = judge([refused_url, judge_server.base_url], server_cooldown=30.0)
    out = PERMReward(j)(prompts=["q"] * 5, completions=[completion("good")] * 5)
    assert out == [GOOD] * 5 and j.fatal is None
    dead = j.server_stats[refused_url + "/chat/completions"]
    # benched at its first failure: only the requests in flight by then (concurrency 8) reach it
    assert dead.get("ok", 0) == 0 and 1 <= dead["unreachable"] <= 8
    assert j.server_stats[judge_server.base_url + "/chat/completions"]["ok"] == 20


def test_a_server_answering_garbage_is_benched_and_its_prompts_retried_elsewhere(judge_server, second_judge_server,
                                                                                monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test")
    second_judge_server.default_mode = "badjson"  # fast, 200, and no chat completion in it
    j = judge([judge_server.base_url, second_judge_server.base_url], server_cooldown=30)
    out = PERMReward(j)(prompts=["q"] * 8, completions=["# Analysis\na\n# Response\nb"] * 8)
    assert out == [GOOD] * 8
    bad = j.server_stats[second_judge_server.base_url + "/chat/completions"]
    assert bad.get("ok", 0) == 0 and bad["error"] >= 1, bad


def test_a_recovered_server_takes_requests_again(judge_server, second_judge_server, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test")
    judge_server.default_mode = "always500"
    j = judge([judge_server.base_url, second_judge_server.base_url])
    reward = PERMReward(j)
    assert reward(prompts=["q"] * 2, completions=["# Analysis\na\n# Response\nb"] * 2) == [GOOD] * 2
    first = j.server_stats[judge_server.base_url + "/chat/completions"]
    assert first.get("ok", 0) == 0 and first["error"] >= 1
    judge_server.default_mode = "good"  # it recovers
    time.sleep(0.3)  # past its cooldown
    assert reward(prompts=["q"] * 4, completions=["# Analysis\na\n# Response\nb"] * 4) == [GOOD] * 4
    assert j.server_stats[judge_server.base_url + "/chat/completions"].get("ok", 0) > 0


def test_no_server_answers_is_fatal(refused_url, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test")
    j = judge([refused_url, refused_url.replace("/v1", "/w1")], max_retries=2)
    out = PERMReward(j)(prompts=["q"], completions=["# Analysis\na\n# Response\nb"])
    assert out != out or out[0] != out[0]  # NaN
    assert j.fatal is not None and "no judge server answers" in j.fatal


def test_bad_server_lists():
    with pytest.raises(ValueError, match="non-empty list"):
        OpenAIJudge([], "m")
    with pytest.raises(ValueError, match=r"base_url\[1\]"):
        OpenAIJudge(["http://127.0.0.1:8000/v1", "ftp://x"], "m")
    with pytest.raises(ValueError, match="server_cooldown"):
        OpenAIJudge("http://127.0.0.1:8000/v1", "m", server_cooldown=-1)
