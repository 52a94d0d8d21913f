"""The pyl2d L2D subcommands, end to end on tiny settings."""
import json

import pytest

from pyl2d.cli import build_parser, main
from pyl2d.l2d.data import load_folder, write_folder
from pyl2d.l2d.synthetic import make_synthetic

TINY_TRAIN = ["--minutes", "0.1", "--epochs", "1", "--vocab-size", "300", "--hidden-size", "32", "--layers", "1",
              "--heads", "2", "--intermediate-size", "64", "--quiet", "--threads", "1"]


def test_help_lists_the_commands(capsys):
    parser = build_parser()
    help_text = parser.format_help()
    for command in ("demo", "train", "build-memory", "eval", "recommend"):
        assert command in help_text
    with pytest.raises(SystemExit):
        parser.parse_args(["eval", "--help"])
    assert "--max-test" in capsys.readouterr().out


def test_demo_smoke(tmp_path, capsys):
    rc = main(["demo", "--output-dir", str(tmp_path), "--minutes", "0.1", "--users", "30", "--items", "40",
               "--time-queries", "4", "--quiet", "--threads", "1"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "| l2d-global |" in out and "| beam |" in out and "ms/query" in out
    records = json.loads((tmp_path / "results.json").read_text())
    assert [r["method"] for r in records] == ["l2d-global", "l2d-local", "grounded", "beam", "popularity"]
    pytest.importorskip("matplotlib")
    assert (tmp_path / "accuracy_vs_latency.png").stat().st_size > 0


def test_folder_round_trip_train_build_eval_recommend(tmp_path, capsys):
    ds = make_synthetic(n_items=40, n_users=30, min_len=4, max_len=6, seed=5)
    folder = write_folder(ds, tmp_path / "data")
    again = load_folder(folder)
    assert again.train == ds.train and again.catalog.titles == ds.catalog.titles
    model, mem = tmp_path / "model", tmp_path / "mem"
    assert main(["train", "--data", str(folder), "--output", str(model), *TINY_TRAIN]) == 0
    assert main(["build-memory", "--data", str(folder), "--model", str(model), "--output", str(mem),
                 "--shard-size", "32", "--quiet", "--threads", "1"]) == 0
    out_json = tmp_path / "r.json"
    assert main(["eval", "--data", str(folder), "--model", str(model), "--memory", str(mem), "--output",
                 str(out_json), "--methods", "l2d-global,l2d-local,popularity", "--m", "20",
                 "--time-queries", "2", "--work-dir", str(tmp_path / "work"), "--quiet", "--threads", "1"]) == 0
    records = json.loads(out_json.read_text())
    assert [r["method"] for r in records] == ["l2d-global", "l2d-local", "popularity"]
    for r in records:
        assert set(f"recall@{k}" for k in (5, 10, 20, 50)) <= set(r) and r["ms_per_query"] > 0
    capsys.readouterr()
    assert main(["recommend", "--data", str(folder), "--model", str(model), "--memory", str(mem),
                 "--history", "1,2,3", "--k", "3", "--threads", "1"]) == 0
    assert capsys.readouterr().out.count("(score") == 3


def test_errors_are_reported_not_raised(tmp_path, capsys):
    assert main(["eval", "--data", str(tmp_path / "missing")]) == 2
    assert "not found" in capsys.readouterr().err
    ds = make_synthetic(n_items=40, n_users=30, min_len=4, max_len=6, seed=5)
    folder = write_folder(ds, tmp_path / "data")
    assert main(["train", "--data", str(folder), "--output", str(tmp_path / "m"), *TINY_TRAIN]) == 0
    assert main(["recommend", "--data", str(folder), "--model", str(tmp_path / "m"), "--memory",
                 str(tmp_path / "nomem"), "--history", "1"]) == 2
    assert main(["recommend", "--data", str(folder), "--model", str(tmp_path / "m"), "--memory",
                 str(tmp_path / "nomem"), "--history", "1,x"]) == 2
