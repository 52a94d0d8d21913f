"""``score_jsonl`` (pyl2d.perm.pipeline) from Python against the loopback judge server, and the
``perm score`` flags taking their defaults from ``ScoreRun``."""
import dataclasses
import json
import logging
import pathlib

import pytest

from pyl2d.cli import build_parser
from pyl2d.perm import cli
from pyl2d.perm.pipeline import ScoreRun, score_jsonl

from .test_cli import _ids, _write_data

SECRET = "sk-pipeline-DO-NOT-LEAK-7c2e90"


def _run(server, data, out, **kw):
    return ScoreRun(judge_url=server.base_url, model="m", data=data, output=out, batch_size=2, timeout=2,
                    max_retries=0, progress=False, **kw)


def test_flag_defaults_are_the_config_defaults():
    args = build_parser().parse_args(["perm", "score", "--judge-url", "http://h/v1", "--model", "m", "--data", "d"])
    assert cli._config(args) == ScoreRun(judge_url="http://h/v1", model="m", data="d")
    assert ScoreRun(judge_url="u", model="m", data="d").data == pathlib.Path("d")  # paths as the flags give them


def test_flags_reach_the_config():
    args = build_parser().parse_args(["perm", "score", "--judge-url", "u", "--model", "m", "--data", "d",
                                      "--output", "o", "--batch-size", "3", "--timeout", "1.5", "--mode", "harmonic",
                                      "--missing-section", "invalid", "--no-progress", "--query-field", "q"])
    config = cli._config(args)
    assert (config.batch_size, config.timeout, config.mode, config.missing_section, config.progress,
            config.query_field, str(config.output)) == (3, 1.5, "harmonic", "invalid", False, "q", "o")


def test_scores_and_resumes_from_python(judge_server, tmp_path):
    data, out = tmp_path / "d.jsonl", tmp_path / "out" / "scores.jsonl"
    _write_data(data, 5, bad={3})
    result = score_jsonl(_run(judge_server, data, out))
    assert result.complete and (result.total, result.written, result.resumed) == (5, 5, 0)
    assert result.invalid["seeker/reception"] == 1
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in records] == ["d0", "d1", "d2", "d3", "d4"]
    assert abs(records[0]["reward"] - 0.74) < 1e-6 and records[3]["reward"] is None
    requests = judge_server.total_requests()
    again = score_jsonl(_run(judge_server, data, str(out)))  # a str path works too
    assert again.complete and (again.total, again.written, again.resumed) == (0, 0, 5)
    assert judge_server.total_requests() == requests


def test_failed_calls_are_not_marked_done(judge_server, tmp_path):
    data, out = tmp_path / "d.jsonl", tmp_path / "scores.jsonl"
    _write_data(data, 4, marked={1: "flaky500"})
    result = score_jsonl(_run(judge_server, data, out))
    assert not result.complete and (result.written, result.failed, result.fatal) == (3, 1, None)
    assert _ids(out) == ["d0", "d2", "d3"]
    assert score_jsonl(_run(judge_server, data, out)).complete
    assert sorted(_ids(out)) == ["d0", "d1", "d2", "d3"]


def test_unreachable_judge_is_fatal(judge_server, refused_url, tmp_path):
    data, out = tmp_path / "d.jsonl", tmp_path / "scores.jsonl"
    _write_data(data, 3)
    result = score_jsonl(dataclasses.replace(_run(judge_server, data, out), judge_url=refused_url))
    assert f"could not connect to judge at {refused_url}" in result.fatal and result.written == 0
    assert _ids(out) == []


def test_malformed_rows_are_reported(judge_server, tmp_path):
    data, out = tmp_path / "d.jsonl", tmp_path / "o.jsonl"
    data.write_text('{"id": 1, "completion": "x"}\nnot json\n{"id": 3, "completion": "y"}\n')
    reported = []
    result = score_jsonl(_run(judge_server, data, out), report=reported.append)
    assert reported == [f"skipping {data}:2: not valid JSON (Expecting value)"]
    assert result.problems == [f"{data}:2: not valid JSON (Expecting value)"] and not result.complete
    assert _ids(out) == ["1", "3"]


@pytest.mark.parametrize("field,value,message", [
    ("judge_url", "localhost:8000", "--judge-url"), ("batch_size", 0, "--batch-size must be >= 1"),
    ("timeout", float("nan"), "--timeout"), ("api_key_env", "", "--api-key-env"),
])
def test_bad_settings_raise_before_any_request(judge_server, tmp_path, field, value, message):
    data, out = tmp_path / "d.jsonl", tmp_path / "o.jsonl"
    _write_data(data, 2)
    with pytest.raises(ValueError, match=message):
        score_jsonl(dataclasses.replace(_run(judge_server, data, out), **{field: value}))
    assert judge_server.total_requests() == 0 and not out.exists()


def test_the_key_comes_from_the_environment_and_never_leaks(judge_server, tmp_path, capsys, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("PYL2D_PIPELINE_KEY", SECRET)
    data, out = tmp_path / "d.jsonl", tmp_path / "o.jsonl"
    _write_data(data, 2)
    config = _run(judge_server, data, out, api_key_env="PYL2D_PIPELINE_KEY")
    # No field can hold the key itself: only the name of the variable that does.
    assert [f.name for f in dataclasses.fields(ScoreRun) if "key" in f.name] == ["api_key_env"]
    result = score_jsonl(config)
    assert result.complete and set(judge_server.auth_headers) == {f"Bearer {SECRET}"}
    captured = capsys.readouterr()
    for text in (captured.out, captured.err, caplog.text, out.read_text(), repr(config), repr(result)):
        assert SECRET not in text
