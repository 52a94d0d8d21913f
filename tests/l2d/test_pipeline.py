"""The L2D pipelines from Python (pyl2d.l2d.pipeline), and the CLI's flags taking their
defaults from the configs, on the tiny fixtures of conftest.py."""
import dataclasses
import json

import pytest

from pyl2d.cli import build_parser
from pyl2d.l2d.data.folders import DataSource, write_folder
from pyl2d.l2d.evaluation.evaluate import EvalConfig
from pyl2d.l2d.pipeline import cli
from pyl2d.l2d.pipeline import (BuildMemoryRun, DemoRun, EvalRun, MemoryConfig, RecommendRun, RuntimeConfig, TrainRun,
                                run_build_memory, run_demo, run_eval, run_recommend, run_train)
from pyl2d.l2d.decode.representation import Representation
from pyl2d.l2d.model.train import TrainConfig

CPU = RuntimeConfig(device="cpu", threads=1, progress=False)


def _parse(argv):
    return build_parser().parse_args(argv)


# -- every flag's default is its config field's default -------------------------------------
def test_demo_flag_defaults_are_the_config_defaults():
    assert cli._demo_run(_parse(["demo"])) == DemoRun()


def test_train_and_build_memory_flag_defaults_are_the_config_defaults():
    assert cli._train_run(_parse(["train", "--synthetic", "--output", "m"])) == TrainRun(output="m")
    assert (cli._build_memory_run(_parse(["build-memory", "--synthetic", "--model", "m", "--output", "mem"]))
            == BuildMemoryRun(model="m", output="mem"))


def test_eval_flag_defaults_are_the_config_defaults():
    # Without --model the training flags are used, and default to TrainConfig()'s.
    assert cli._eval_run(_parse(["eval", "--data", "d"])) == EvalRun(data=DataSource("d"), training=TrainConfig())
    # With one, they are not (a model is not trained).
    assert cli._eval_run(_parse(["eval", "--data", "d", "--model", "m"])) == EvalRun(data=DataSource("d"), model="m")
    assert cli._eval_run(_parse(["eval", "--data", "d", "--train-split", "train+valid", "--category", "Office"])).data \
        == DataSource("d", "train+valid", "Office")
    assert EvalRun(data="d").evaluation == EvalConfig() and EvalRun(data="d").build == MemoryConfig()


def test_recommend_flag_defaults_are_the_config_defaults():
    args = _parse(["recommend", "--synthetic", "--model", "m", "--memory", "mem", "--history", "1, 2,3",
                   "--history", "4"])
    assert cli._recommend_run(args) == RecommendRun(model="m", memory="mem", histories=[[1, 2, 3], [4]])


def test_flags_reach_the_config():
    args = _parse(["eval", "--data", "d", "--methods", "beam, popularity", "--metric", "ip", "--m", "7",
                   "--batch-size", "3", "--no-prefix-memory", "--pooling", "mean", "--heads", "8", "--lr", "0.5",
                   "--no-prefix-augmentation", "--quiet", "--threads", "2", "--max-test", "5",
                   "--representation", "center,pca:4,norm", "--local-weight", "0.25", "--seeds", "3"])
    run = cli._eval_run(args)
    assert run.evaluation == EvalConfig(methods=("beam", "popularity"), metric="ip", m=7, batch_size=3, max_test=5,
                                        representation=Representation(center=True, whiten="pca", whiten_dims=4,
                                                                      normalize=True), local_weight=0.25)
    assert run.seeds == 3
    assert run.build == MemoryConfig(pooling="mean", batch_size=3, prefix_memory=False)
    assert run.training == TrainConfig(num_heads=8, learning_rate=0.5, prefix_augmentation=False)
    assert run.runtime == RuntimeConfig(threads=2, progress=False)


# -- the pipelines from Python --------------------------------------------------------------
def test_build_eval_recommend_from_python(tmp_path, tiny_model_dir, tiny_data):
    folder = write_folder(tiny_data, tmp_path / "data")
    lines = []
    memory = run_build_memory(BuildMemoryRun(model=tiny_model_dir, output=tmp_path / "mem", data=folder,
                                             memory=MemoryConfig(shard_size=16), runtime=CPU), log=lines.append)
    assert len(memory) > 0 and (tmp_path / "mem" / "manifest.json").is_file()
    assert any(line.startswith("memory: ") for line in lines)

    out = tmp_path / "new" / "r.json"  # a folder not there yet is made, not a failure after the whole run
    result = run_eval(EvalRun(data=folder, model=tiny_model_dir, memory=tmp_path / "mem", work_dir=tmp_path / "w",
                              output=out, plot=tmp_path / "plots" / "p.png", evaluation=EvalConfig(methods=("l2d-local", "popularity"), m=20,
                                                                time_queries=1), runtime=CPU), log=lines.append)
    assert [r["method"] for r in result["records"]] == ["l2d-local", "popularity"]
    assert json.loads(out.read_text()) == result["records"]
    assert json.loads(out.with_suffix(".info.json").read_text())["memory"] == str(tmp_path / "mem")
    assert any("| l2d-local |" in line for line in lines)

    lines.clear()
    recs = run_recommend(RecommendRun(model=tiny_model_dir, memory=tmp_path / "mem", histories=[[1, 2, 3], [4]],
                                      data=folder, k=3, runtime=CPU), log=lines.append)
    assert tuple(recs.ids.shape) == (2, 3)
    assert sum(line.startswith("history: ") for line in lines) == 2
    assert sum("(score" in line for line in lines) == 6


def test_eval_from_python_resumes_an_interrupted_memory(tmp_path, tiny_model_dir, tiny_data):
    folder = write_folder(tiny_data, tmp_path / "data")
    mem = tmp_path / "mem"
    build = MemoryConfig(shard_size=16)
    run_build_memory(BuildMemoryRun(model=tiny_model_dir, output=mem, data=folder, memory=build, runtime=CPU),
                     log=lambda _: None)
    manifest = json.loads((mem / "manifest.json").read_text())
    dropped = manifest["shards"].pop()
    manifest.update(complete=False, count=manifest["count"] - dropped["count"])
    (mem / "manifest.json").write_text(json.dumps(manifest))
    lines = []
    run_eval(EvalRun(data=folder, model=tiny_model_dir, memory=mem, work_dir=tmp_path / "w", build=build,
                     evaluation=EvalConfig(methods=("popularity",), time_queries=1), runtime=CPU), log=lines.append)
    assert any(f"resuming the memory build at {mem}" in line for line in lines)
    assert json.loads((mem / "manifest.json").read_text())["complete"]


def test_eval_from_python_errors(tmp_path, tiny_data):
    folder = write_folder(tiny_data, tmp_path / "data")
    with pytest.raises(ValueError, match="--memory needs --model"):
        run_eval(EvalRun(data=folder, memory=tmp_path / "mem", work_dir=tmp_path / "w", runtime=CPU),
                 log=lambda _: None)
    assert not (tmp_path / "w").exists()  # a refused run leaves no work folder behind
    with pytest.raises(FileNotFoundError):
        run_eval(EvalRun(data=tmp_path / "missing", runtime=CPU), log=lambda _: None)


def test_train_and_demo_from_python(tmp_path):
    tiny = TrainConfig(vocab_size=300, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, epochs=1.0,
                       batch_size=16, warmup_steps=5)
    lines = []
    model = run_train(TrainRun(output=tmp_path / "model", training=tiny, runtime=CPU), log=lines.append)
    assert (model / "pyl2d_training.json").is_file() and lines[-1].startswith(f"model saved to {tmp_path / 'model'}; next: pyl2d build-memory --model ")

    lines.clear()
    result = run_demo(dataclasses.replace(DemoRun(), output_dir=tmp_path / "demo", epochs=0.5, seeds=1, users=30,
                                          items=40, time_queries=2, runtime=CPU), log=lines.append)
    assert [r["method"] for r in result["records"]] == ["l2d-global", "l2d-local", "grounded", "beam", "popularity"]
    assert json.loads((tmp_path / "demo" / "results.json").read_text()) == result["records"]
    assert result["info"]["m"] == 200 and lines[-1].startswith("demo finished in ")


def test_the_cli_restates_no_default():
    import inspect

    assert "getattr(args" not in inspect.getsource(cli)


def test_training_is_reproducible_and_reused(tmp_path, tiny_data):
    """Same data, config and seed: the same weights, so a rerun reuses the model instead of
    training it again; another seed trains anew."""
    from safetensors.torch import load_file

    folder = write_folder(tiny_data, tmp_path / "data")
    tiny = TrainConfig(vocab_size=300, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, epochs=1.0,
                       batch_size=16, warmup_steps=5)
    a = run_train(TrainRun(output=tmp_path / "a", data=folder, training=tiny, runtime=CPU), log=lambda _: None)
    b = run_train(TrainRun(output=tmp_path / "b", data=folder, training=tiny, runtime=CPU), log=lambda _: None)
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert all(wa[k].equal(wb[k]) for k in wa)

    evaluation = EvalConfig(methods=("l2d-global", "popularity"), time_queries=1)
    lines = []
    first = run_eval(EvalRun(data=folder, work_dir=tmp_path / "w", training=tiny, seeds=2, evaluation=evaluation,
                             runtime=CPU), log=lines.append)
    assert not any(line.startswith("reusing the model") for line in lines)
    lines.clear()
    again = run_eval(EvalRun(data=folder, work_dir=tmp_path / "w", training=tiny, seeds=2, evaluation=evaluation,
                             runtime=CPU), log=lines.append)
    assert sum(line.startswith("reusing the model") for line in lines) == 2
    strip = lambda r: {k: v for k, v in r.items() if k not in ("ms_per_query", "ms_by_batch_size", "seconds",
                                                                "per_seed", "batch_size", "std")}
    assert [strip(r) for r in first["records"]] == [strip(r) for r in again["records"]]
    assert first["info"]["seeds"] == [0, 1] and (tmp_path / "w" / "seed-1" / "model").is_dir()
    with pytest.raises(ValueError, match="--seeds 2 needs models to train"):
        run_eval(EvalRun(data=folder, model=a, work_dir=tmp_path / "w2", seeds=2, runtime=CPU), log=lambda _: None)
    assert not (tmp_path / "w2").exists()


def test_a_failed_retraining_leaves_the_model_there_whole(tmp_path, tiny_data, monkeypatch):
    """Training saves beside the output and moves the model in only when it is complete: a
    run that fails midway leaves the previous model with its training record."""
    from pyl2d.l2d.model import train as train_module
    from pyl2d.l2d.data.prompts import DEFAULT_PROMPT
    from pyl2d.l2d.model.train import TRAINING_INFO, train_model, trained_with

    tiny = TrainConfig(vocab_size=300, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, epochs=1.0,
                       batch_size=16, warmup_steps=5)
    out = tmp_path / "model"
    train_model(tiny_data.catalog, tiny_data.train, out, tiny, progress=False, log=lambda *_: None)
    record = (out / TRAINING_INFO).read_text()

    def boom(*args, **kwargs):
        raise RuntimeError("killed mid-training")
    monkeypatch.setattr(train_module, "sft_examples", boom)
    with pytest.raises(RuntimeError):
        train_model(tiny_data.catalog, tiny_data.train, out, dataclasses.replace(tiny, seed=1), progress=False,
                    log=lambda *_: None)
    assert (out / TRAINING_INFO).read_text() == record
    assert trained_with(out, tiny_data.train, tiny, DEFAULT_PROMPT)
    monkeypatch.undo()
    train_model(tiny_data.catalog, tiny_data.train, out, dataclasses.replace(tiny, seed=1), progress=False,
                log=lambda *_: None)
    assert json.loads((out / TRAINING_INFO).read_text())["config"]["seed"] == 1
    assert not list(tmp_path.glob(".model.partial-*"))  # the failed run's staging folder is gone too
