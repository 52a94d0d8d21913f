"""The pyl2d L2D subcommands, end to end on tiny settings."""
import json

import pytest

from pyl2d.cli import build_parser, main
from pyl2d.l2d.data.folders import load_folder, write_folder
from pyl2d.l2d.data.synthetic import make_synthetic
from pyl2d.l2d.evaluation import calc_convention

TINY_TRAIN = ["--epochs", "1", "--vocab-size", "300", "--hidden-size", "32", "--layers", "1",
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
    rc = main(["demo", "--output-dir", str(tmp_path), "--epochs", "1", "--seeds", "2", "--users", "30", "--items",
               "40", "--time-queries", "4", "--quiet", "--threads", "1"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "| l2d-global |" in out and "| beam |" in out and "ms/query" in out and "over 2 seeds (0, 1)" in out
    records = json.loads((tmp_path / "results.json").read_text())
    assert [r["method"] for r in records] == ["l2d-global", "l2d-local", "grounded", "beam", "popularity"]
    assert [r["seed"] for r in records[0]["per_seed"]] == [0, 1] and "recall@10" in records[0]["std"]
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
    out_json, calc_dir = tmp_path / "r.json", tmp_path / "calc"
    capsys.readouterr()
    assert main(["eval", "--data", str(folder), "--model", str(model), "--memory", str(mem), "--output",
                 str(out_json), "--methods", "l2d-global,l2d-local,popularity", "--m", "20",
                 "--time-queries", "2", "--work-dir", str(tmp_path / "work"), "--quiet", "--threads", "1",
                 "--calc-output", str(calc_dir)]) == 0
    assert "calc.py convention" in capsys.readouterr().out
    records = json.loads(out_json.read_text())
    assert [r["method"] for r in records] == ["l2d-global", "l2d-local", "popularity"]
    for r in records:
        assert set(f"recall@{k}" for k in (5, 10, 20, 50)) <= set(r) and r["ms_per_query"] > 0
        # 40 items: lists of 40, so K = 50 is left out as calc.py leaves out K past its beams.
        assert set(r["calc"]) == {f"{m}@{k}" for m in ("hr", "ndcg") for k in (1, 3, 5, 10, 20)}
        # calc.py's HR@K is the title-level recall without exclusion, on the same lists.
        assert r["calc"]["hr@10"] == pytest.approx(r["no_exclusion"]["title_level"]["recall@10"])
        predictions, targets = calc_convention.read_results(calc_dir / f"{r['method']}.json")
        assert calc_convention.scores(predictions, targets) == pytest.approx(r["calc"])
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


def test_data_that_cannot_train_or_test_is_refused_before_any_work(tmp_path, capsys):
    ds = make_synthetic(n_items=40, n_users=30, min_len=4, max_len=6, seed=5)
    folder = write_folder(ds, tmp_path / "data")
    header = (folder / "valid.csv").read_text().splitlines()[0]
    no_history = header + "\n\"[]\",Item,[],1\n"
    for split in ("valid.csv", "test.csv"):  # no training row, then no test row, with a history
        copy = write_folder(ds, tmp_path / split)
        (copy / split).write_text(no_history)
        for argv in (["eval", "--data", str(copy), "--work-dir", str(tmp_path / "w"), *TINY_TRAIN],
                     ["train", "--data", str(copy), "--output", str(tmp_path / "m"), *TINY_TRAIN]):
            if split == "test.csv" and argv[0] == "train":
                continue  # training reads no test row
            assert main(argv) == 2, argv
            err = capsys.readouterr().err
            assert f"no {'training' if split == 'valid.csv' else 'test'} sample has a non-empty history" in err
            assert "Traceback" not in err and not (tmp_path / "w").exists() and not (tmp_path / "m").exists()


def test_a_broken_training_record_names_its_file(tmp_path, capsys, tiny_model_dir):
    import shutil

    from pyl2d.l2d.model.train import TRAINING_INFO

    folder = write_folder(make_synthetic(n_items=40, n_users=30, min_len=4, max_len=6, seed=5), tmp_path / "data")
    for text in ("{not json", json.dumps({"no": "template"}), json.dumps({"template": {"template": "{history} {foo}"}}),
                 json.dumps({"template": {"bogus": 1}})):
        model = shutil.copytree(tiny_model_dir, tmp_path / "model", dirs_exist_ok=True)
        (model / TRAINING_INFO).write_text(text)
        assert main(["build-memory", "--data", str(folder), "--model", str(model), "--output",
                     str(tmp_path / "mem"), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert f"{model / TRAINING_INFO}: not a pyl2d training record" in err and "Traceback" not in err, err
        assert not (tmp_path / "mem").exists()


def test_calc_on_json_nested_too_deeply_is_an_error(tmp_path, capsys):
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    assert main(["calc", str(tmp_path / "deep.json")]) == 2
    assert "nested too deeply" in capsys.readouterr().err


def _parse_error(argv, capsys) -> str:
    """The argparse error for ``argv``: exit status 2, a message, no traceback."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize("flags,message", [
    (["--threads", "-3"], "argument --threads: must be a positive integer, got -3"),
    (["--threads", "two"], "argument --threads: 'two' is not an integer"),
    (["--max-test", "0"], "argument --max-test: must be a positive integer, got 0"),
    (["--max-test", "-3"], "argument --max-test: must be a positive integer, got -3"),
    (["--device", "tpu"], "argument --device: unknown device 'tpu'"),
    (["--epochs", "0"], "argument --epochs: must be a positive finite number"),
    (["--minutes", "nan"], "argument --minutes: must be a positive finite number"),
    (["--lr=-1e-3"], "argument --lr: must be a positive"),
    (["--heads", "0"], "argument --heads: must be a positive integer"),
    (["--batch-size", "0"], "argument --batch-size: must be a positive integer"),
    (["--train-batch-size", "-1"], "argument --train-batch-size: must be a positive integer"),
    (["--shard-size", "0"], "argument --shard-size: must be a positive integer"),
    (["--m", "0"], "argument --m: must be a positive integer"),
    (["--beams", "0"], "argument --beams: must be a positive integer"),
    (["--time-queries", "0"], "argument --time-queries: must be a positive integer"),
    (["--max-history", "0"], "argument --max-history: must be a positive integer"),
    (["--seed", "-1"], "argument --seed: must be >= 0"),
    (["--seeds", "0"], "argument --seeds: must be a positive integer"),
    (["--representation", "center,whiten"], "argument --representation: "),
    (["--local-weight", "1.5"], "argument --local-weight: must be a number between 0 and 1, got 1.5"),
])
def test_bad_eval_flags_name_the_flag(tmp_path, capsys, flags, message):
    assert message in _parse_error(["eval", "--data", str(tmp_path), *flags], capsys)


def test_bad_flags_of_the_other_commands(tmp_path, capsys, monkeypatch):
    import torch

    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    base = ["recommend", "--data", str(tmp_path), "--model", str(tmp_path), "--memory", str(tmp_path), "--history", "1"]
    assert "argument --k: must be a positive integer, got 0" in _parse_error([*base, "--k", "0"], capsys)
    assert "argument --m: must be a positive integer" in _parse_error([*base, "--m", "-5"], capsys)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert "argument --device: 'cuda' requested but CUDA is not available" in _parse_error([*base, "--device", "cuda"],
                                                                                             capsys)
    assert "argument --users: must be a positive integer" in _parse_error(["demo", "--users", "0"], capsys)
    assert "argument --output-dir: " in _parse_error(["demo", "--output-dir", str(a_file)], capsys)
    assert f"argument --output: {a_file} exists and is not a folder" in _parse_error(
        ["train", "--synthetic", "--output", str(a_file)], capsys)
    assert f"argument --output: {a_file} exists and is not a folder" in _parse_error(
        ["build-memory", "--synthetic", "--model", str(tmp_path), "--output", str(a_file)], capsys)
    assert f"argument --output: '{tmp_path}' is a folder; give a file name" in _parse_error(
        ["eval", "--data", str(tmp_path), "--output", str(tmp_path)], capsys)
    assert "is a file, not a folder" in _parse_error(
        ["eval", "--data", str(tmp_path), "--plot", str(a_file / "plot.png")], capsys)
    assert "argument --data: " in _parse_error(["eval", "--data", str(a_file)], capsys)


def test_build_into_a_folder_being_built_is_a_clear_error(tmp_path, capsys, tiny_model_dir, tiny_data):
    import os

    from pyl2d.l2d.memory.lock import BuildLock

    folder = write_folder(tiny_data, tmp_path / "data")
    with BuildLock(tmp_path / "mem"):
        rc = main(["build-memory", "--data", str(folder), "--model", str(tiny_model_dir), "--output",
                   str(tmp_path / "mem"), "--overwrite", "--pooling", "mean", "--quiet", "--device", "cpu"])
    assert rc == 2
    err = capsys.readouterr().err
    assert f"is being built by another process (pid {os.getpid()})" in err and "Traceback" not in err


def test_eval_resumes_an_interrupted_memory(tmp_path, capsys, tiny_model_dir, tiny_data):
    folder = write_folder(tiny_data, tmp_path / "data")
    mem = tmp_path / "mem"
    common = ["--data", str(folder), "--model", str(tiny_model_dir), "--quiet", "--threads", "1", "--device", "cpu"]
    assert main(["build-memory", *common, "--output", str(mem), "--shard-size", "16"]) == 0
    manifest = json.loads((mem / "manifest.json").read_text())
    dropped = manifest["shards"].pop()
    manifest.update(complete=False, count=manifest["count"] - dropped["count"])
    (mem / "manifest.json").write_text(json.dumps(manifest))
    capsys.readouterr()
    assert main(["eval", *common, "--memory", str(mem), "--shard-size", "16", "--methods", "popularity", "--time-queries", "1",
                 "--work-dir", str(tmp_path / "work")]) == 0
    n = manifest["n_shards"]
    assert f"resuming the memory build at {mem}: {n - 1} of {n} shards are done" in capsys.readouterr().out
    assert json.loads((mem / "manifest.json").read_text())["complete"]


def test_inference_precision_flag(tmp_path, capsys, tiny_model_dir, tiny_data, monkeypatch):
    """--precision on build-memory/eval/recommend: fp16 on a CPU and bf16 on a CPU without
    native bf16 are one-line errors before anything is written; bf16 loads the model in bf16."""
    import torch

    from pyl2d.l2d.model import hidden, precision

    folder = write_folder(tiny_data, tmp_path / "data")
    argv = ["build-memory", "--data", str(folder), "--model", str(tiny_model_dir), "--quiet", "--device", "cpu"]
    assert main(argv + ["--output", str(tmp_path / "m16"), "--precision", "fp16"]) == 2
    err = capsys.readouterr().err
    assert "precision fp16 needs a GPU" in err and "Traceback" not in err and not (tmp_path / "m16").exists()
    monkeypatch.setattr(precision, "cpu_bf16_support", lambda: None)
    assert main(argv + ["--output", str(tmp_path / "mbf"), "--precision", "bf16"]) == 2
    assert "neither AMX nor AVX512-BF16" in capsys.readouterr().err
    monkeypatch.setattr(precision, "cpu_bf16_support", lambda: "AVX512-BF16")
    model, _ = hidden.load_model(str(tiny_model_dir), device="cpu", precision="bf16")
    assert next(model.parameters()).dtype is torch.bfloat16
    with pytest.raises(SystemExit):
        build_parser().parse_args(["eval", "--data", str(folder), "--precision", "int8"])
