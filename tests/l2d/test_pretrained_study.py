"""bench/l2d_pretrained.py end to end on a tiny checkpoint: both stages, resuming, the report."""
import json

import pytest
from helpers import bench_module

from pyl2d.l2d.data.folders import write_folder

pytest.importorskip("trl")


@pytest.fixture(scope="module")
def study_module():
    return bench_module("l2d_pretrained")


def test_both_stages_resume_and_report(tmp_path, study_module, tiny_model_dir, tiny_data, capsys):
    folder = write_folder(tiny_data, tmp_path / "data")
    argv = ["--data", str(folder), "--work-dir", str(tmp_path / "w"), "--model", str(tiny_model_dir),
            "--max-test", "12", "--finetune-steps", "2", "--train-batch-size", "4", "--precision", "fp32",
            "--train-precision", "fp32", "--time-queries", "2", "--device", "cpu"]
    assert study_module.main(argv) == 0
    path = tmp_path / "w" / "study.json"
    study = json.loads(path.read_text())
    steps = study["steps"]
    assert list(steps) == ["zero-shot/build-memory", "zero-shot/eval-default", "zero-shot/eval-raw", "finetune",
                           "finetuned/build-memory", "finetuned/eval-default", "finetuned/eval-raw"]
    methods = [r["method"] for r in steps["finetuned/eval-default"]["records"]]
    assert methods == ["l2d-global", "l2d-local", "grounded", "beam", "popularity"]
    assert [r["method"] for r in steps["zero-shot/eval-raw"]["records"]] == ["l2d-global", "l2d-local"]
    assert all(r["ms_by_batch_size"].get("1") for r in steps["zero-shot/eval-default"]["records"])
    capsys.readouterr()
    assert study_module.main(argv) == 0  # every step done: all skipped
    assert capsys.readouterr().out.count("done before") == 7
    with pytest.raises(SystemExit, match="other settings"):
        study_module.main(argv + ["--max-test", "13"])
    assert study_module.main(["--report", str(path)]) == 0
    report = capsys.readouterr().out
    assert "| finetuned | beam |" in report and "l2d-local (raw, the paper's)" in report
