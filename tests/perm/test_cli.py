"""``pyl2d perm score`` end to end against the loopback judge server: JSONL out, resume."""
import json
import logging

import pytest

from pyl2d.cli import main

SECRET = "sk-cli-DO-NOT-LEAK-3b8f41"


def _write_data(path, n, bad=(), marked=None):
    with path.open("w") as f:
        for i in range(n):
            marker = "[[judge:garbage]]" if i in bad else ""
            if marked and i in marked:
                marker = f"[[judge:{marked[i]}]]"
            f.write(json.dumps({"id": f"d{i}", "persona": "a student", "scenario": "exams", "query": "I am scared",
                                "completion": f"# Analysis\nfear {marker}\n# Response\nThat is scary. {marker}"})
                    + "\n")


def _args(server, data, out):
    return ["perm", "score", "--judge-url", server.base_url, "--model", "m", "--data", str(data), "--output",
            str(out), "--batch-size", "2", "--timeout", "2", "--max-retries", "0", "--no-progress"]


def test_scores_to_jsonl(judge_server, tmp_path, capsys):
    data, out = tmp_path / "d.jsonl", tmp_path / "out" / "scores.jsonl"
    _write_data(data, 5, bad={3})
    assert main(_args(judge_server, data, out)) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in records] == ["d0", "d1", "d2", "d3", "d4"]
    assert records[0]["scores"] == {"supporter/resonation": 4.0, "supporter/expression": 4.0,
                                    "seeker/reception": 4.0, "bystander/quality": 70.0}
    assert abs(records[0]["reward"] - 0.74) < 1e-6
    assert records[3]["reward"] is None and records[3]["scores"]["seeker/reception"] is None
    assert "invalid scores per perspective" in capsys.readouterr().err


def test_resume_skips_written_ids_and_repairs_a_torn_line(judge_server, tmp_path):
    data, out = tmp_path / "d.jsonl", tmp_path / "scores.jsonl"
    _write_data(data, 4)
    out.write_text(json.dumps({"id": "d0", "scores": {}, "reward": 0.5}) + "\n" + '{"id": "d1", "sco')
    assert main(_args(judge_server, data, out)) == 0
    assert judge_server.total_requests() == 3 * 4  # d1 (torn), d2, d3
    ids = []
    for line in out.read_text().splitlines():
        try:
            ids.append(json.loads(line)["id"])
        except json.JSONDecodeError:
            pass
    assert ids == ["d0", "d1", "d2", "d3"]


def test_malformed_rows_are_skipped_and_reported(judge_server, tmp_path, capsys):
    data, out = tmp_path / "d.jsonl", tmp_path / "o.jsonl"
    data.write_text('{"id": 1, "completion": "x"}\nnot json\n[1]\n{"id": 4}\n{"id": 5, "completion": "y"}\n'
                    '{"id": 1, "completion": "z"}\n')
    assert main(_args(judge_server, data, out)) == 1
    err = capsys.readouterr().err
    assert f"{data}:2: not valid JSON" in err and f"{data}:3: expected a JSON object" in err
    assert f"{data}:4: field 'completion' is missing" in err and "skipped 4 malformed input rows" in err
    assert f"{data}:6: duplicate id '1' (first on line 1)" in err
    assert _ids(out) == ["1", "5"]
    assert main(_args(judge_server, tmp_path / "missing.jsonl", tmp_path / "o.jsonl")) == 2
    # No usable row at all (say, a wrong --completion-field) is an error, not an empty run.
    assert main(_args(judge_server, data, out) + ["--completion-field", "reply"]) == 2
    assert f"holds no usable row (6 malformed; first: {data}:1: field 'reply'" in capsys.readouterr().err


def test_non_utf8_row_is_skipped_with_file_and_line(judge_server, tmp_path, capsys):
    data, out = tmp_path / "d.jsonl", tmp_path / "o.jsonl"
    good = json.dumps({"id": "a", "completion": "# Analysis\nx\n# Response\ny"}).encode()
    data.write_bytes(good + b"\n" + b'{"id": "b", "completion": "caf\xe9 \xff"}\n' + good.replace(b'"a"', b'"c"'))
    assert main(_args(judge_server, data, out)) == 1
    err = capsys.readouterr().err
    assert f"{data}:2: not valid UTF-8 (byte 0xe9" in err and "Traceback" not in err
    assert _ids(out) == ["a", "c"]


def test_a_lone_surrogate_is_a_malformed_row_and_an_empty_file_an_error(judge_server, tmp_path, capsys):
    data, out = tmp_path / "d.jsonl", tmp_path / "o.jsonl"
    good = json.dumps({"id": "a", "completion": "# Analysis\nx\n# Response\ny"})
    data.write_text(good + "\n" + '{"id": "b", "completion": "x \\ud83d y"}\n')  # valid JSON, no text
    assert main(_args(judge_server, data, out)) == 1
    err = capsys.readouterr().err
    assert f"{data}:2: text holds an unpaired surrogate" in err and "judge request failed" not in err
    assert _ids(out) == ["a"]
    for text in ("", "\n  \n"):
        data.write_text(text)
        assert main(_args(judge_server, data, tmp_path / "o2.jsonl")) == 2
        assert "holds no row (it is empty or blank)" in capsys.readouterr().err


def _ids(path):
    ids = []
    for line in path.read_text().splitlines():
        try:
            ids.append(json.loads(line)["id"])
        except json.JSONDecodeError:
            pass
    return ids


def test_unreachable_judge_is_an_error_and_nothing_is_marked_done(judge_server, refused_url, tmp_path, capsys):
    data, out = tmp_path / "d.jsonl", tmp_path / "scores.jsonl"
    _write_data(data, 5)
    args = _args(judge_server, data, out)
    args[args.index("--judge-url") + 1] = refused_url
    assert main(args) == 1
    err = capsys.readouterr().err
    assert f"could not connect to judge at {refused_url}" in err and "Traceback" not in err
    assert _ids(out) == []
    # Once the judge is back, the rerun scores all of them: none was taken for done.
    assert main(_args(judge_server, data, out)) == 0
    assert "resuming" not in capsys.readouterr().err
    assert _ids(out) == ["d0", "d1", "d2", "d3", "d4"]


def test_refused_key_is_an_error_that_keeps_what_was_scored(judge_server, tmp_path, capsys, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("PYL2D_CLI_KEY", SECRET)
    data, out = tmp_path / "d.jsonl", tmp_path / "scores.jsonl"
    _write_data(data, 6, marked={3: "unauthorized"})
    args = _args(judge_server, data, out) + ["--api-key-env", "PYL2D_CLI_KEY"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert f"judge at {judge_server.base_url}/chat/completions refused the API key (HTTP 401)" in err
    assert _ids(out) == ["d0", "d1", "d2"]  # the run stops after the batch with d3; d4, d5 never sent
    for text in (err, caplog.text, out.read_text()):
        assert SECRET not in text


def test_failed_judge_calls_leave_the_row_for_the_next_run(judge_server, tmp_path, capsys):
    data, out = tmp_path / "d.jsonl", tmp_path / "scores.jsonl"
    _write_data(data, 4, marked={1: "flaky500"})  # fails once (no retries), then answers
    assert main(_args(judge_server, data, out)) == 1
    assert "1 dialogues not written because judge calls failed" in capsys.readouterr().err
    assert _ids(out) == ["d0", "d2", "d3"]
    first = judge_server.total_requests()
    assert main(_args(judge_server, data, out)) == 0
    assert judge_server.total_requests() == first + 4  # only d1 again
    assert sorted(_ids(out)) == ["d0", "d1", "d2", "d3"]


@pytest.mark.parametrize("key,code", [(f"{SECRET[:6]}\r{SECRET[6:]}", 2), (f"{SECRET}\r", 0), (f" {SECRET}\n", 0)])
def test_key_with_control_characters_never_leaks(judge_server, tmp_path, capsys, caplog, monkeypatch, key, code):
    caplog.set_level(logging.DEBUG)  # httpx and httpcore included
    monkeypatch.setenv("PYL2D_CLI_KEY", key)
    data, out = tmp_path / "d.jsonl", tmp_path / "scores.jsonl"
    _write_data(data, 2)
    assert main(_args(judge_server, data, out) + ["--api-key-env", "PYL2D_CLI_KEY"]) == code
    captured = capsys.readouterr()
    if code:
        assert "PYL2D_CLI_KEY" in captured.err and "not shown" in captured.err
    else:
        assert set(judge_server.auth_headers) == {f"Bearer {SECRET}"}
    for text in (captured.out, captured.err, caplog.text, *(r.getMessage() for r in caplog.records),
                 out.read_text() if out.exists() else ""):
        assert SECRET[6:] not in text


@pytest.mark.parametrize("flag,value,message", [
    ("--judge-url", "http://[::1", "--judge-url"), ("--judge-url", "ftp://h/v1", "--judge-url"),
    ("--judge-url", "localhost:8000", "--judge-url"), ("--concurrency", "0", "--concurrency"),
    ("--max-retries", "-1", "--max-retries"), ("--timeout", "0", "--timeout"), ("--timeout", "nan", "--timeout"),
    ("--batch-size", "0", "--batch-size"), ("--max-response-bytes", "0", "--max-response-bytes"),
    ("--output", "DIR", "is a directory"), ("--data", "DIR", "is not a file"), ("--output", "DATA", "--data file"),
    ("--api-key-env", "", "--api-key-env"),
])
def test_cli_misuse_is_a_clean_error(judge_server, tmp_path, capsys, flag, value, message):
    data, out = tmp_path / "d.jsonl", tmp_path / "o.jsonl"
    _write_data(data, 2)
    value = {"DIR": str(tmp_path), "DATA": str(data)}.get(value, value)
    args = _args(judge_server, data, out)
    if flag in args:
        args[args.index(flag) + 1] = value
    else:
        args += [flag, value]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.startswith("pyl2d perm: error:")
    assert judge_server.total_requests() == 0 and not out.exists()
