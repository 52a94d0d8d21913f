"""bench/l2d_study.py end to end on a tiny synthetic folder: the study file, resuming, the report."""
import json

import pytest
from helpers import bench_module

from pyl2d.l2d.data.folders import write_folder
from pyl2d.l2d.data.synthetic import make_synthetic


@pytest.fixture(scope="module")
def study_module():
    return bench_module("l2d_study")


def test_study_writes_every_option_and_reports(tmp_path, study_module, capsys):
    folder = write_folder(make_synthetic(n_users=60, n_items=40, seed=2), tmp_path / "data")
    argv = ["--data", str(folder), "--work-dir", str(tmp_path / "w"), "--seeds", "2", "--epochs", "1",
            "--max-test", "20", "--time-queries", "2"]
    assert study_module.main(argv) == 0
    study = json.loads((tmp_path / "w" / "study.json").read_text())
    assert [r["seed"] for r in study["runs"]] == [0, 1]
    n_options = len(study_module.LAYERS) * len(study_module.REPRESENTATIONS) * len(study_module.AGGREGATIONS)
    assert all(len(r["grid"]) == n_options for r in study["runs"])
    first = study["runs"][0]["grid"][json.dumps(list(study_module.PAPER[1]))]
    assert set(first) == {"val", "test"} and "recall@10" in first["val"] and "interval" in first["test"]
    assert study["info"]["n_val"] > 0 and study["info"]["n_test"] == 20

    capsys.readouterr()
    assert study_module.main(argv) == 0  # rerun: every seed is already there
    assert capsys.readouterr().out.count("already in") == 2

    assert study_module.main(["--report", str(tmp_path / "w" / "study.json")]) == 0
    report = capsys.readouterr().out
    assert "| L2D-local, paper | final / raw / local m=1000 |" in report and "| beam |" in report
    assert "Chosen on both validation splits" in report


def test_study_skips_without_data(tmp_path, study_module, capsys):
    assert study_module.main(["--data", str(tmp_path / "absent"), "--work-dir", str(tmp_path / "w")]) == 0
    assert "not found" in capsys.readouterr().out
