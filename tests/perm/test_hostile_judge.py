"""OpenAIJudge against hostile or broken judges (see conftest.py): a body dripped byte by byte,
a huge body, a gzip bomb, a refused key, nothing listening, a malformed key or URL. Each is
bounded in time and memory, and the API key never shows up anywhere but the header."""
import gc
import logging
import math
import time
import tracemalloc

import pytest

from pyl2d.perm import OpenAIJudge
from pyl2d.perm.judges import JudgeRequest
from pyl2d.perm.perspectives import EXPRESSION

SECRET = "sk-test-DO-NOT-LEAK-7d1e0b"
KEY_ENV = "PYL2D_TEST_HOSTILE_KEY"


def request(marker: str) -> JudgeRequest:
    return JudgeRequest(EXPRESSION, tuple(EXPRESSION.messages(persona="", scenario="", query="q",
                                                              text=f"[[judge:{marker}]]")))


def make_judge(url, **kw):
    opts = dict(api_key_env=KEY_ENV, timeout=1.0, max_retries=1, backoff=0.01, max_backoff=0.02)
    opts.update(kw)
    return OpenAIJudge(url, "judge-model", **opts)


@pytest.fixture(autouse=True)
def secret_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)


def test_slow_drip_body_hits_the_wall_clock_deadline(judge_server):
    judge_server.drip_seconds = 0.1  # headers at once, then a byte every 0.1 s (about 25 s in all)
    judge = make_judge(judge_server.base_url)
    start = time.monotonic()
    result = judge.score([request("drip")])[0]
    elapsed = time.monotonic() - start
    assert result.status == "timeout" and math.isnan(result.value)
    assert elapsed < 12.0, elapsed  # two attempts of 1 s each; the idle timeout took 25 s each (slack for busy CI)
    assert judge_server.total_requests() == 2


@pytest.mark.parametrize("marker", ["huge", "gzipbomb"])
def test_oversized_body_is_rejected_quickly_in_bounded_memory(judge_server, marker):
    judge = make_judge(judge_server.base_url, timeout=30.0, max_retries=2)
    judge.score([request(marker)])  # once untraced: the server builds its gzip bomb
    gc.collect()
    tracemalloc.start()
    start = time.monotonic()
    try:
        result = judge.score([request(marker)])[0]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    elapsed = time.monotonic() - start
    assert result.status == "error" and math.isnan(result.value)
    assert judge.stats["too_large"] == 2 and judge_server.total_requests() == 2  # not retried
    assert elapsed < 10.0, elapsed
    assert peak < 24 * 2 ** 20, peak  # the 4 MiB cap, not 64 MiB or 300 MiB


def test_compressed_reply_within_the_cap_is_read(judge_server):
    judge = make_judge(judge_server.base_url)
    assert judge.score([request("gzip")])[0].value == 4.0
    small = make_judge(judge_server.base_url, max_response_bytes=64)
    assert small.score([request("good")])[0].status == "error" and small.stats["too_large"] == 1
    with pytest.raises(ValueError, match="max_response_bytes"):
        make_judge(judge_server.base_url, max_response_bytes=0)


@pytest.mark.parametrize("marker,code", [("unauthorized", 401), ("forbidden", 403)])
def test_refused_key_is_fatal_and_not_retried(judge_server, marker, code, caplog):
    judge = make_judge(judge_server.base_url, max_retries=3)
    results = judge.score([request(marker), request(marker)])
    assert [r.status for r in results] == ["unauthorized"] * 2
    assert judge.fatal == f"judge at {judge.url} refused the API key (HTTP {code})"
    assert judge_server.total_requests() == 2
    assert SECRET not in caplog.text and SECRET not in judge.fatal


def test_connection_refused_is_fatal(refused_url):
    judge = make_judge(refused_url, max_retries=2)
    start = time.monotonic()
    assert judge.score([request("good")])[0].status == "unreachable"
    assert time.monotonic() - start < 10.0  # a bound against hanging, with slack for busy CI
    assert judge.fatal == f"could not connect to judge at {judge.url} (Connection refused)"
    assert judge.stats["unreachable"] == 3


@pytest.mark.parametrize("bad", [SECRET[:8] + "\r" + SECRET[8:], SECRET[:8] + " " + SECRET[8:], "sk-\n-x",
                                 "sk-\u00e9t\u00e9", "sk-\x1bx", "sk-\tx"])
def test_malformed_key_is_rejected_without_showing_it(judge_server, monkeypatch, caplog, capsys, bad):
    caplog.set_level(logging.DEBUG)  # httpx and httpcore included
    monkeypatch.setenv(KEY_ENV, bad)
    with pytest.raises(ValueError, match=KEY_ENV) as info:
        make_judge(judge_server.base_url)
    # A key that goes bad after construction is caught before any request.
    monkeypatch.setenv(KEY_ENV, SECRET)
    judge = make_judge(judge_server.base_url)
    monkeypatch.setenv(KEY_ENV, bad)
    with pytest.raises(ValueError, match=KEY_ENV) as info2:
        judge.score([request("good")])
    assert judge_server.total_requests() == 0
    out = capsys.readouterr()
    for text in (str(info.value), repr(info.value), str(info2.value), caplog.text, out.out, out.err,
                 *(r.getMessage() for r in caplog.records)):
        assert bad.strip() not in text and SECRET not in text


@pytest.mark.parametrize("marker", ["good", "unauthorized"])
def test_key_with_a_stray_cr_or_spaces_is_stripped(judge_server, monkeypatch, caplog, capsys, marker):
    caplog.set_level(logging.DEBUG)  # httpx and httpcore included
    monkeypatch.setenv(KEY_ENV, f"  {SECRET}\r\n")
    judge = make_judge(judge_server.base_url)
    result = judge.score([request(marker)])[0]
    assert result.status == ("ok" if marker == "good" else "unauthorized")
    assert judge_server.auth_headers == [f"Bearer {SECRET}"]
    out = capsys.readouterr()
    records = [r.getMessage() for r in caplog.records]
    for text in (caplog.text, out.out, out.err, str(judge.fatal), repr(judge), *records):
        assert SECRET not in text
    monkeypatch.setenv(KEY_ENV, " \r\n")  # blank is unset: no header
    make_judge(judge_server.base_url).score([request(marker)])
    assert judge_server.auth_headers[-1] is None


@pytest.mark.parametrize("url", ["http://admin:hunter@2secret@127.0.0.1:1/v1", "http://user:se/cret@127.0.0.1/v1",
                                 "http://user:pw?d@127.0.0.1:1/v1"])
def test_credentials_in_a_url_are_never_shown(url, caplog):
    try:
        judge = OpenAIJudge(url, "m", max_retries=0, timeout=1)
    except ValueError as exc:
        shown = [str(exc)]
    else:
        with caplog.at_level(logging.DEBUG, logger="pyl2d.perm"):
            judge.score([request("good")])
        shown = [repr(judge), str(judge.server_stats), str(judge.fatal), caplog.text]
    for text in shown:
        for secret in ("hunter", "2secret", "cret", "pw?d"):
            assert secret not in text, text


@pytest.mark.parametrize("url", ["http://[::1", "http://", "ftp://127.0.0.1/v1", "http://127.0.0.1:99999/v1",
                                 "http://127.0.0.1:port/v1", "127.0.0.1:8000", None])
def test_malformed_url_is_rejected(url):
    with pytest.raises(ValueError, match="base_url"):
        OpenAIJudge(url, "m")
