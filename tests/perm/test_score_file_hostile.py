"""``pyl2d perm score`` input and output files made by someone else (issue 23): every size is
bounded, a row is strict JSON, ids and context fields have the types the output and the judge
need, and an output that is no regular file is refused instead of blocking forever."""
import json
import os
import threading

import pytest

from pyl2d.cli import main
from pyl2d.perm import score_io
from pyl2d.perm.score_io import done_ids, read_rows

GOOD = '{"id": "ok", "completion": "x"}\n'
CONTEXT = ("persona", "scenario", "query")


def _problems(tmp_path, text):
    path = tmp_path / "d.jsonl"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    rows, problems = read_rows(path, "id", "completion", CONTEXT)
    assert [i for i, _ in rows] == ["ok"], (rows, problems)  # the good row after the bad one is kept
    assert len(problems) == 1, problems
    return problems[0]


@pytest.mark.parametrize("line,message", [
    ('{"id": "a", "completion": "x", "completion": "y"}', "key 'completion' appears twice in one object"),
    ('{"id": "a", "completion": "x", "meta": {"k": 1, "k": 2}}', "key 'k' appears twice"),
    ('{"id": "a", "completion": "x", "persona": NaN}', "NaN is not JSON"),
    ('{"id": "a", "completion": "x", "w": -Infinity}', "-Infinity is not JSON"),
    ('{"id": {"a": 1}, "completion": "x"}', "field 'id' must be a string or an integer, got dict"),
    ('{"id": 1.5, "completion": "x"}', "field 'id' must be a string or an integer, got float"),
    ('{"id": true, "completion": "x"}', "field 'id' must be a string or an integer, got bool"),
    ('{"id": "' + "a" * 2000 + '", "completion": "x"}', "field 'id' is 2000 characters long, more than 1024"),
    ('{"id": "a", "completion": "x", "persona": {"name": "x"}}', "field 'persona' must be text or null, got dict"),
    ('{"id": "a", "completion": "x", "query": 5}', "field 'query' must be text or null, got int"),
    ('{"id": ' + "9" * 5000 + ', "completion": "x"}', "Exceeds the limit"),
    ('{"id": "a", "completion": "x", "z": ' + "[" * 100000 + "]" * 100000 + "}", "not valid JSON"),
])
def test_a_hostile_row_is_reported_by_file_and_line(tmp_path, line, message):
    problem = _problems(tmp_path, line + "\n" + GOOD)
    assert problem.startswith(f"{tmp_path / 'd.jsonl'}:1: ") and message in problem, problem


def test_a_null_context_field_and_an_integer_id_are_fine(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"id": 7, "completion": "x", "persona": null, "query": "q"}\n')
    rows, problems = read_rows(path, "id", "completion", CONTEXT)
    assert rows == [("7", {"id": 7, "completion": "x", "persona": None, "query": "q"})] and not problems


def test_an_over_long_line_is_skipped_without_being_held(tmp_path, monkeypatch):
    monkeypatch.setattr(score_io, "MAX_LINE_BYTES", 1000)
    monkeypatch.setattr(score_io, "_READ_CHUNK", 64)
    reads = []
    real = score_io.bounded_lines

    def spy(f, limit=None):
        for raw in real(f, 1000):
            reads.append(0 if raw is None else len(raw))
            yield raw
    monkeypatch.setattr(score_io, "bounded_lines", spy)
    long = '{"id": "a", "completion": "' + "x" * 50_000 + '"}\n'
    assert "line longer than" in _problems(tmp_path, long + GOOD)
    assert max(reads) <= 1001
    # the same bound protects the ids read back from an output
    out = tmp_path / "o.jsonl"
    out.write_text(long.replace('"a"', '"b"') + '{"id": "c"}\n')
    assert done_ids(out) == {"c"}


def test_an_output_that_is_a_fifo_is_refused_not_a_hang(tmp_path, capsys):
    data, fifo = tmp_path / "d.jsonl", tmp_path / "o.jsonl"
    data.write_text(GOOD)
    os.mkfifo(fifo)
    status = []
    args = ["perm", "score", "--judge-url", "http://127.0.0.1:9/v1", "--model", "m", "--data", str(data),
            "--output", str(fifo), "--no-progress"]
    worker = threading.Thread(target=lambda: status.append(main(args)), daemon=True)
    worker.start()
    worker.join(20)
    assert status == [2], "pyl2d perm score blocked on a FIFO --output"
    err = capsys.readouterr().err
    assert f"--output {fifo} is not a regular file" in err and "Traceback" not in err


def test_duplicate_keys_reach_the_cli_as_a_skipped_row(judge_server, tmp_path, capsys):
    data, out = tmp_path / "d.jsonl", tmp_path / "o.jsonl"
    row = {"id": "a", "completion": "# Analysis\nx\n# Response\ny"}
    data.write_text(json.dumps(row)[:-1] + ', "completion": "# Analysis\\nz\\n# Response\\nw"}\n'
                    + json.dumps(dict(row, id="b")) + "\n")
    assert main(["perm", "score", "--judge-url", judge_server.base_url, "--model", "m", "--data", str(data),
                 "--output", str(out), "--timeout", "2", "--max-retries", "0", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert f"{data}:1: not valid JSON (key 'completion' appears twice in one object)" in err
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["b"]
