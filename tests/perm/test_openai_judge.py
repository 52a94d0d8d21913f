"""OpenAIJudge and PERMReward against a real HTTP server on loopback (see conftest.py): good
answers, garbage, 429/500 (retried), rejections, broken bodies and timeouts. No crash, exact
invalid counts, bounded wall time, and the API key never leaves the Authorization header."""
import logging
import math
import time

import pytest

from pyl2d.perm import OpenAIJudge, PERMReward
from pyl2d.perm.judges import JudgeRequest
from pyl2d.perm.perspectives import DEFAULT_PERSPECTIVES, EXPRESSION

SECRET = "sk-test-DO-NOT-LEAK-5f2c9a"
KEY_ENV = "PYL2D_TEST_JUDGE_KEY"


def completion(marker: str) -> str:
    return f"# Analysis\nThe seeker feels alone. [[judge:{marker}]]\n# Response\nThat sounds lonely. [[judge:{marker}]]"


def make_judge(server, **kw):
    opts = dict(api_key_env=KEY_ENV, concurrency=8, timeout=0.5, max_retries=2, backoff=0.01, max_backoff=0.05)
    opts.update(kw)
    return OpenAIJudge(server.base_url, "judge-model", **opts)


@pytest.fixture
def secret_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)
    return SECRET


def test_scores_good_answers_and_sends_the_key(judge_server, secret_key):
    reward = PERMReward(make_judge(judge_server))
    out = reward(prompts=["I feel alone"] * 3, completions=[completion("good")] * 3, persona=["a student"] * 3)
    # Every perspective 4/5 -> 0.8; bystander 70 -> 0.2 * (0.7 - 1) = -0.06.
    assert out == pytest.approx([0.74] * 3, abs=1e-6)
    assert judge_server.total_requests() == 12
    assert set(judge_server.auth_headers) == {f"Bearer {SECRET}"}
    assert reward.last_metrics["seeker/reception/mean"] == 4.0
    assert reward.last_metrics["bystander/quality/mean"] == 70.0


def test_no_key_variable_means_no_authorization_header(judge_server, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    judge = make_judge(judge_server)
    scores = judge.score([JudgeRequest(EXPRESSION, tuple(EXPRESSION.messages(persona="", scenario="", query="q",
                                                                             text="t")))])
    assert scores[0].value == 4.0 and judge_server.auth_headers == [None]


def test_faults_give_nan_with_exact_counts_and_bounded_time(judge_server, secret_key, caplog, capsys, http_library):
    caplog.set_level(logging.DEBUG)  # every logger, httpx and httpcore included
    # Generous timeout against the slow reply so a loaded CI box never times out a good one.
    judge_server.slow_seconds = 4.0
    judge = make_judge(judge_server, timeout=1.5, max_retries=1)
    reward = PERMReward(judge)
    markers = ["good", "garbage", "flaky429", "flaky500", "always500", "always429", "slow", "reject", "badjson",
               "out_of_range"]
    start = time.monotonic()
    out = reward(prompts=["q"] * len(markers), completions=[completion(m) for m in markers])
    elapsed = time.monotonic() - start
    # Retried transient faults recover; everything else is NaN, never a crash or a clipped score.
    for m, r in zip(markers, out):
        if m in ("good", "flaky429", "flaky500"):
            assert r == pytest.approx(0.74, abs=1e-6), m
        else:
            assert math.isnan(r), m
    # 7 bad completions x 1 call each per perspective; every perspective sees them all.
    for p in DEFAULT_PERSPECTIVES:
        assert reward.last_metrics[f"{p.name}/invalid"] == 7.0, p.name
        counts = reward.counter.counts[p.name]
        assert counts["ok"] == 3 and counts["missing"] == 1 and counts["out_of_range"] == 1
        assert counts["error"] == 4 and counts["timeout"] == 1
    assert reward.last_metrics["reward/unscorable"] == 7.0
    # Bounded: one slow attempt + one retry at 1.5 s each, all prompts in flight together.
    assert elapsed < 8.0, elapsed
    # Retries are bounded: 2 attempts for flaky/always-failing and slow prompts, 1 for the rest.
    per_prompt = judge_server.attempts
    assert max(per_prompt.values()) <= 2
    assert judge.stats["retries"] > 0
    # The key went to the server and nowhere else.
    assert f"Bearer {SECRET}" in judge_server.auth_headers
    captured = capsys.readouterr()
    for text in (caplog.text, captured.out, captured.err, repr(judge), repr(reward), str(vars(judge))):
        assert SECRET not in text
    assert "failed after 2 attempts" in caplog.text


def test_all_perspectives_in_flight_together_and_concurrency_bounded(judge_server, secret_key):
    judge_server.delay = 0.2
    reward = PERMReward(make_judge(judge_server, concurrency=6))
    start = time.monotonic()
    out = reward(prompts=["q"] * 4, completions=[completion("good")] * 4)  # 16 requests
    elapsed = time.monotonic() - start
    assert len(out) == 4 and not any(math.isnan(r) for r in out)
    assert judge_server.max_in_flight == 6
    assert elapsed < 16 * 0.2 / 2, elapsed  # far below one-at-a-time


def test_rejected_request_is_not_retried(judge_server, secret_key):
    judge = make_judge(judge_server, max_retries=3)
    req = JudgeRequest(EXPRESSION, tuple(EXPRESSION.messages(persona="", scenario="", query="q",
                                                             text="[[judge:reject]]")))
    result = judge.score([req])[0]
    assert math.isnan(result.value) and result.status == "error"
    assert judge_server.total_requests() == 1


def test_unreachable_server_is_an_error_not_a_crash(secret_key, refused_url):
    judge = OpenAIJudge(refused_url, "m", api_key_env=KEY_ENV, timeout=0.3, max_retries=1, backoff=0.01)
    result = judge.score([JudgeRequest(EXPRESSION, tuple(EXPRESSION.messages(persona="", scenario="", query="q",
                                                                             text="t")))])[0]
    assert math.isnan(result.value) and result.status == "unreachable"
    assert judge.fatal.startswith(f"could not connect to judge at {refused_url}")


def test_judge_argument_errors():
    with pytest.raises(ValueError, match="base_url"):
        OpenAIJudge("127.0.0.1:8000", "m")
    with pytest.raises(ValueError, match="concurrency"):
        OpenAIJudge("http://127.0.0.1:1/v1", "m", concurrency=0)
    with pytest.raises(ValueError, match="timeout"):
        OpenAIJudge("http://127.0.0.1:1/v1", "m", timeout=0)
    with pytest.raises(ValueError, match="max_retries"):
        OpenAIJudge("http://127.0.0.1:1/v1", "m", max_retries=-1)
    for name in ("backoff", "max_backoff"):  # an infinite wait would let a Retry-After hang the caller
        for bad in (math.inf, -1.0, "1", True):
            with pytest.raises(ValueError, match=name):
                OpenAIJudge("http://127.0.0.1:1/v1", "m", **{name: bad})
    with pytest.raises(ValueError, match="extra_body"):
        OpenAIJudge("http://127.0.0.1:1/v1", "m", extra_body={"x": object()})


def test_a_reply_cut_off_at_its_token_limit_is_truncated_not_parsed(judge_server, secret_key):
    judge = make_judge(judge_server)
    reward = PERMReward(judge)
    assert math.isnan(reward(prompts=["q"], completions=[completion("truncated")])[0])
    assert {s for row in reward.last_statuses for s in row} == {"truncated"}
    assert judge.stats["truncated"] == judge_server.total_requests() == len(DEFAULT_PERSPECTIVES)  # not retried


def test_a_query_string_in_the_url_is_kept_after_the_endpoint(judge_server, secret_key):
    judge = OpenAIJudge(judge_server.base_url + "/?api-version=2024-02-01", "judge-model", api_key_env=KEY_ENV)
    assert judge.score([JudgeRequest(DEFAULT_PERSPECTIVES[0], ({"role": "user", "content": "x"},))])[0].valid
    assert judge_server.paths == ["/v1/chat/completions?api-version=2024-02-01"]


def test_unexpected_client_error_fails_one_prompt_only(judge_server, secret_key, monkeypatch, http_library):
    httpx = http_library
    judge = make_judge(judge_server)
    real_send = httpx.AsyncClient.send
    calls = {"n": 0}

    async def flaky_send(self, request, **kw):
        calls["n"] += 1
        if calls["n"] == 1:
            raise httpx.DecodingError("broken encoding")
        return await real_send(self, request, **kw)

    monkeypatch.setattr(httpx.AsyncClient, "send", flaky_send)
    requests = [JudgeRequest(EXPRESSION, tuple(EXPRESSION.messages(persona="", scenario="", query=f"q{i}",
                                                                   text="t"))) for i in range(3)]
    results = judge.score(requests)
    assert sum(math.isnan(r.value) for r in results) == 1
    assert sorted(r.status for r in results) == ["error", "ok", "ok"]
