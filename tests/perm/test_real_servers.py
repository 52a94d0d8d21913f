"""The real-server tier (issue 25): SmolLM2-135M-Instruct behind ``transformers serve`` (text
fallback, ``perm score`` end to end) and behind llama.cpp's server (real ``top_logprobs``,
failover when a server is killed mid-batch, a restart under ``perm score``, and LocalJudge on
the same weights). See tests/perm/_real_servers.py for what each needs; a missing server is a
skip whose reason names the install step (shown by ``-ra`` in the summary)."""
from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time

import pytest

from pyl2d.perm import OpenAIJudge, PERMReward
from pyl2d.perm import perspectives as P

from . import _real_servers as rs

pytestmark = pytest.mark.real_server
KEY_ENV = "PYL2D_TEST_NO_KEY"
NARROW = (P.RESONATION, P.EXPRESSION, P.RECEPTION)  # one-token 1-5 scores


def _batch(n):
    completions, persona, scenario, query = [], [], [], []
    for i in range(n):
        completions.append(f"## Analysis\nThe seeker feels exhausted and unseen ({i}).\n\n## Response\n"
                           + ["That sounds exhausting; it makes sense you feel worn down.", "Just quit then.",
                              "I hear you. Night after night of double shifts would wear anyone out; what "
                              "would help most this week?", "Everyone is tired, stop complaining."][i % 4])
        persona.append("a nurse on night shifts")
        scenario.append("weeks of double shifts")
        query.append("I have been feeling overwhelmed at work.")
    return dict(prompts=None, completions=completions, persona=persona, scenario=scenario, query=query)


def _perm_score(url, model, data, output, *extra, timeout=600):
    return subprocess.run([sys.executable, "-m", "pyl2d", "perm", "score", "--judge-url", url, "--model", model,
                           "--data", str(data), "--output", str(output), "--no-progress",
                           "--api-key-env", KEY_ENV, *extra], capture_output=True, text=True, timeout=timeout)


# ---- transformers serve (CI) -------------------------------------------------------------

@pytest.fixture(scope="module")
def tf_server(tmp_path_factory, smollm2):
    with rs.transformers_serve(tmp_path_factory.mktemp("tf"), smollm2) as server:
        yield server


def test_transformers_serve_text_fallback_warns_once(tf_server, caplog, monkeypatch):
    """It ignores logprobs: every prompt is re-asked in text, with one warning."""
    monkeypatch.delenv(KEY_ENV, raising=False)
    model = str(tf_server.argv[-1])
    judge = OpenAIJudge(tf_server.base_url, model, scoring="logprobs", api_key_env=KEY_ENV, timeout=300,
                        max_tokens=24, max_retries=1)
    reward = PERMReward(judge, perspectives=(P.EXPRESSION,), missing_section="invalid")
    with caplog.at_level(logging.WARNING, logger="pyl2d.perm"):
        reward.score(**_batch(2))
    warned = [r for r in caplog.records if "returned no logprobs" in r.getMessage()]
    assert len(warned) == 1
    assert judge.stats["text_fallback"] == 2 and judge.stats["no_logprobs"] == 2
    assert all(s[0] not in ("error", "timeout", "unreachable") for s in reward.last_statuses)


def test_perm_score_end_to_end_against_transformers_serve(tf_server, tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"id": "a", "query": "I feel overwhelmed.", "completion":
                                "## Analysis\nThe seeker is exhausted.\n\n## Response\nThat sounds hard."}) + "\n")
    out = tmp_path / "scores.jsonl"
    run = _perm_score(tf_server.base_url, str(tf_server.argv[-1]), data, out, "--max-tokens", "24",
                      "--missing-section", "invalid")
    assert "Traceback" not in run.stderr
    assert run.returncode == 0, run.stderr[-2000:]
    (line,) = out.read_text().splitlines()
    record = json.loads(line)
    assert record["id"] == "a" and set(record["scores"]) == {p.name for p in P.DEFAULT_PERSPECTIVES}
    assert "wrote 1 of 1" in run.stderr  # four judge calls answered (a 24-token judgement may hold no score)


# ---- llama.cpp's server (where built) ----------------------------------------------------

@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    server = rs.llama_server(tmp_path_factory.mktemp("llama")).start(wait=120)
    yield server
    server.stop()


def _logprob_judge(urls, **kw):
    return OpenAIJudge(urls, rs.MODEL, scoring="logprobs", api_key_env=KEY_ENV, timeout=120, **kw)


def test_logprob_scoring_against_real_top_logprobs(llama, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    judge = _logprob_judge(llama.base_url)
    reward = PERMReward(judge, perspectives=NARROW)
    scores = reward.score(**_batch(4))
    assert judge.stats["text_fallback"] == 0  # every narrow score read from the logprobs
    assert not scores.isnan().any() and ((scores >= 1) & (scores <= 5)).all()
    assert scores.std() > 0  # not a constant: the judge's distribution differs per prompt


def test_a_grammar_makes_every_score_a_number_in_one_to_three_tokens(llama, monkeypatch):
    """Unconstrained, SmolLM2 starts with a word, and the 0-100 bystander (split into digit
    tokens) was re-asked in text; under llama.cpp's grammar every perspective is read from
    its logprobs."""
    monkeypatch.delenv(KEY_ENV, raising=False)
    judge = _logprob_judge(llama.base_url, constraint="llama.cpp")
    reward = PERMReward(judge)
    scores = reward.score(**_batch(4))
    assert judge.stats["text_fallback"] == 0 and not scores.isnan().any()
    narrow, bystander = scores[:, :3], scores[:, 3]
    assert ((narrow >= 1) & (narrow <= 5)).all() and ((bystander >= 0) & (bystander <= 100)).all()


def test_two_servers_one_killed_mid_batch(tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    a, b = rs.llama_server(tmp_path, "a"), rs.llama_server(tmp_path, "b")
    try:
        a.start(wait=120), b.start(wait=120)
        judge = _logprob_judge([a.base_url, b.base_url], server_cooldown=30.0)
        reward = PERMReward(judge, perspectives=NARROW)
        killer = threading.Timer(1.5, b.kill)
        killer.start()
        scores = reward.score(**_batch(8))
        killer.join()
        assert b.proc.poll() is not None  # it was killed during the batch
        assert not scores.isnan().any()  # nothing lost
        stats = judge.server_stats
        answered = sum(c.get("ok", 0) for c in stats.values())
        assert answered == 8 * len(NARROW)  # nothing scored twice: one answer per prompt
    finally:
        a.stop(), b.stop()


def test_a_server_restarted_under_perm_score(tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    server = rs.llama_server(tmp_path, "r")
    data = rs.write_dialogues(tmp_path / "d.jsonl", 6)
    out = tmp_path / "scores.jsonl"
    try:
        server.start(wait=120)
        proc = subprocess.Popen([sys.executable, "-m", "pyl2d", "perm", "score", "--judge-url", server.base_url,
                                 "--model", rs.MODEL, "--data", str(data), "--output", str(out), "--no-progress",
                                 "--api-key-env", KEY_ENV, "--scoring", "logprobs", "--max-tokens", "32",
                                 "--batch-size", "2", "--max-retries", "8", "--timeout", "60"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(3)
        server.kill()
        time.sleep(2)
        server.start(wait=120)  # same port: the retries reach it again
        _, err = proc.communicate(timeout=600)
        ids = [json.loads(line)["id"] for line in out.read_text().splitlines()]
        if proc.returncode != 0:  # retries ran out while it was down: the rerun finishes the rest
            assert "Traceback" not in err
            rerun = _perm_score(server.base_url, rs.MODEL, data, out, "--scoring", "logprobs", "--max-tokens", "32")
            assert rerun.returncode == 0, rerun.stderr[-2000:]
            ids = [json.loads(line)["id"] for line in out.read_text().splitlines()]
        assert sorted(ids) == [f"d{i}" for i in range(6)]  # all there, none twice
    finally:
        server.stop()


# The same Q4_1 weights, dequantised to float32 in torch vs llama.cpp's quantised kernels;
# llama-cpp-python also puts its own BOS ("<|im_start|>") before the chat template, so the
# prompts differ by a token. Measured 2026-12-07 on 12 scores: max |diff| 0.56, mean 0.15
# (LocalJudge higher). The tolerances: per score, and on average.
LOCAL_TOLERANCE, LOCAL_MEAN_TOLERANCE = 0.75, 0.25


def test_local_judge_agrees_with_served_logprobs(llama, smollm2, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    transformers = pytest.importorskip("transformers")
    from pyl2d.perm import LocalJudge

    folder = smollm2
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype="float32").eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    served = PERMReward(_logprob_judge(llama.base_url), perspectives=NARROW).score(**_batch(4))
    # answer_prefix "": the first position after the generation prompt, as the server scores it
    local = PERMReward(LocalJudge(model, tokenizer, answer_prefix=""), perspectives=NARROW)
    local.judge.score_only = True  # the same score-only prompts
    got = local.score(**_batch(4))
    diff = (got - served).abs()
    assert diff.max().item() <= LOCAL_TOLERANCE and diff.mean().item() <= LOCAL_MEAN_TOLERANCE, (got, served)
