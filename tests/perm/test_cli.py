"""``pyl2d perm score`` end to end against the loopback judge server: JSONL out, resume."""
import json

from pyl2d.cli import main


def _write_data(path, n, bad=()):
    with path.open("w") as f:
        for i in range(n):
            marker = "[[judge:garbage]]" if i in bad else ""
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


def test_bad_input_is_a_clean_error(judge_server, tmp_path, capsys):
    data = tmp_path / "d.jsonl"
    data.write_text('{"id": 1, "completion": "x"}\nnot json\n')
    assert main(_args(judge_server, data, tmp_path / "o.jsonl")) == 2
    assert "not valid JSON" in capsys.readouterr().err
    assert main(_args(judge_server, tmp_path / "missing.jsonl", tmp_path / "o.jsonl")) == 2
