"""`pyl2d finetune` on a tiny checkpoint saved with save_pretrained: LoRA fine-tuning on TRL's
SFTTrainer lowers the loss on the titles, and the adapter folder then works everywhere a model
does (build-memory, eval with every method, recommend); an in-memory PeftModel gives the
merged model's hidden states without ever running the LM head."""
import json

import pytest
import torch

pytest.importorskip("trl")
pytest.importorskip("peft")

from pyl2d.cli import main  # noqa: E402
from pyl2d.l2d.data.folders import write_folder  # noqa: E402
from pyl2d.l2d.data.prompts import DEFAULT_PROMPT  # noqa: E402
from pyl2d.l2d.data.synthetic import make_synthetic  # noqa: E402
from pyl2d.l2d.model.hidden import HiddenStateExtractor, load_model  # noqa: E402
from pyl2d.l2d.model.train import TRAINING_INFO, tokenizer_corpus, train_tokenizer  # noqa: E402

QUIET = ["--quiet", "--threads", "1", "--device", "cpu"]


@pytest.fixture(scope="module")
def data():
    return make_synthetic(n_items=40, n_users=40, min_len=4, max_len=7, seed=3)


@pytest.fixture(scope="module")
def base_checkpoint(tmp_path_factory, data):
    """A 'pretrained' checkpoint as a user has one: a config-built Llama and a locally trained
    tokenizer, saved with save_pretrained (no pyl2d files beside them)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    out = tmp_path_factory.mktemp("base")
    tokenizer = train_tokenizer(tokenizer_corpus(data.catalog, data.train, DEFAULT_PROMPT), 300)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, intermediate_size=64, max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id))
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def lora_dir(tmp_path_factory, data, base_checkpoint):
    folder = write_folder(data, tmp_path_factory.mktemp("data"))
    out = tmp_path_factory.mktemp("lora") / "model"
    assert main(["finetune", "--data", str(folder), "--base", str(base_checkpoint), "--output", str(out),
                 "--epochs", "4", "--lr", "1e-2", "--train-batch-size", "16", *QUIET]) == 0
    return folder, out


def test_lora_finetune_lowers_the_loss_and_records_the_template(lora_dir):
    _, out = lora_dir
    info = json.loads((out / TRAINING_INFO).read_text())
    assert info["kind"] == "finetune" and info["config"]["lora"] is True
    assert info["last_loss"] < info["first_loss"]
    assert info["template"]["template"] == DEFAULT_PROMPT.template
    assert (out / "adapter_config.json").is_file() and not (out / "config.json").exists()


def test_a_rerun_reuses_the_finished_model(lora_dir, base_checkpoint, capsys):
    folder, out = lora_dir
    assert main(["finetune", "--data", str(folder), "--base", str(base_checkpoint), "--output", str(out),
                 "--epochs", "4", "--lr", "1e-2", "--train-batch-size", "16", *QUIET]) == 0
    assert "reusing the model" in capsys.readouterr().out


def test_the_adapter_folder_builds_a_memory_and_evaluates(lora_dir, tmp_path, capsys):
    folder, out = lora_dir
    mem = tmp_path / "mem"
    assert main(["build-memory", "--data", str(folder), "--model", str(out), "--output", str(mem), *QUIET]) == 0
    results = tmp_path / "r.json"
    assert main(["eval", "--data", str(folder), "--model", str(out), "--memory", str(mem), "--output", str(results),
                 "--methods", "l2d-global,l2d-local,grounded,beam", "--m", "20", "--beams", "5",
                 "--time-queries", "2", "--max-test", "12", "--work-dir", str(tmp_path / "w"), *QUIET]) == 0
    assert "calc.py convention" in capsys.readouterr().out
    assert [r["method"] for r in json.loads(results.read_text())] == ["l2d-global", "l2d-local", "grounded", "beam"]
    assert main(["recommend", "--data", str(folder), "--model", str(out), "--memory", str(mem), "--history", "1,2",
                 "--k", "3", *QUIET]) == 0


def test_an_in_memory_peft_model_matches_its_merged_weights_without_the_lm_head(lora_dir, data, base_checkpoint):
    _, out = lora_dir
    peft_model, tokenizer = load_model(str(out), device="cpu")
    from peft import PeftModel

    assert isinstance(peft_model, PeftModel)

    def no_head(*_args):
        raise AssertionError("the LM head ran during extraction")

    handle = peft_model.get_output_embeddings().register_forward_hook(no_head)
    prompts = [DEFAULT_PROMPT.prompt(s.history_titles, tokenizer) for s in data.test[:9]]
    with_adapter = HiddenStateExtractor(peft_model, tokenizer, batch_size=4, progress=False).encode(prompts)
    handle.remove()
    merged = peft_model.merge_and_unload()
    plain = HiddenStateExtractor(merged, tokenizer, batch_size=4, progress=False).encode(prompts)
    torch.testing.assert_close(with_adapter, plain, rtol=1e-5, atol=1e-5)
    base, _ = load_model(str(base_checkpoint), device="cpu")
    untuned = HiddenStateExtractor(base, tokenizer, batch_size=4, progress=False).encode(prompts)
    assert (untuned - plain).abs().max() > 1e-3  # the adapter changed the states: the match above means something


def test_a_run_interrupted_after_a_checkpoint_resumes_to_the_same_model(tmp_path, lora_dir, base_checkpoint, capsys):
    """A crash after checkpoint-5 of 10 steps leaves checkpoints but no model: the rerun
    resumes from checkpoint-5 (optimizer, scheduler, RNG and data position) and ends with the
    uninterrupted run's adapter. A changed request does not resume checkpoints of another."""
    import shutil

    from safetensors.torch import load_file

    folder, _ = lora_dir
    out = tmp_path / "model"
    args = ["finetune", "--data", str(folder), "--base", str(base_checkpoint), "--output", str(out),
            "--epochs", "2", "--lr", "1e-2", "--train-batch-size", "32", "--save-steps", "5", *QUIET]
    assert main(args) == 0
    whole = load_file(out / "adapter_model.safetensors")
    steps = json.loads((out / TRAINING_INFO).read_text())["steps"]
    checkpoints = sorted((p.name for p in (out / "checkpoints").glob("checkpoint-*")),
                         key=lambda name: int(name.split("-")[1]))
    assert steps > 5 and checkpoints[-1] == f"checkpoint-{steps}" and "checkpoint-5" in checkpoints
    for name in (TRAINING_INFO, "adapter_model.safetensors"):
        (out / name).unlink()
    for name in checkpoints:
        if name != "checkpoint-5":
            shutil.rmtree(out / "checkpoints" / name)
    capsys.readouterr()
    assert main(args) == 0
    assert "resuming from the last checkpoint" in capsys.readouterr().out
    resumed = load_file(out / "adapter_model.safetensors")
    assert resumed.keys() == whole.keys()
    for key in whole:
        torch.testing.assert_close(resumed[key], whole[key], rtol=1e-5, atol=1e-6)
    (out / TRAINING_INFO).unlink()
    assert main([*args[:-len(QUIET)], "--lr", "5e-3", *QUIET]) == 0
    assert "resuming" not in capsys.readouterr().out  # another request: its checkpoints were discarded


def test_an_unfinished_checkpoint_is_skipped_and_foreign_or_base_outputs_are_refused(tmp_path, lora_dir,
                                                                                      base_checkpoint, capsys):
    import shutil

    folder, _ = lora_dir
    out = tmp_path / "model"
    args = ["finetune", "--data", str(folder), "--base", str(base_checkpoint), "--output", str(out),
            "--epochs", "2", "--lr", "1e-2", "--train-batch-size", "32", "--save-steps", "5", *QUIET]
    assert main(args) == 0
    (out / TRAINING_INFO).unlink()
    for p in (out / "checkpoints").glob("checkpoint-*"):
        if p.name != "checkpoint-5":
            shutil.rmtree(p)
    (out / "checkpoints" / "checkpoint-7").mkdir()  # killed while the Trainer wrote it: no trainer_state.json
    capsys.readouterr()
    assert main(args[:-len(QUIET)] + ["--save-steps", "6", *QUIET]) == 0  # the save cadence changes no weight
    assert "resuming from the last checkpoint" in capsys.readouterr().out
    mine = tmp_path / "mine"
    (mine / "checkpoints" / "my-run").mkdir(parents=True)
    assert main(args[:6] + [str(mine)] + args[7:]) == 2
    assert "without pyl2d's" in capsys.readouterr().err and (mine / "checkpoints" / "my-run").is_dir()
    assert main(args[:6] + [str(base_checkpoint)] + args[7:]) == 2
    assert "would overwrite the base" in capsys.readouterr().err
    assert main(args + ["--seed", str(2 ** 33)]) == 2
    assert "seed must be an int from 0 to 2**32 - 1" in capsys.readouterr().err


def test_bad_bases_are_named(tmp_path, lora_dir, capsys):
    folder, out = lora_dir
    assert main(["finetune", "--data", str(folder), "--base", str(out), "--output", str(tmp_path / "x"), *QUIET]) == 2
    assert "LoRA adapter" in capsys.readouterr().err
    assert main(["finetune", "--data", str(folder), "--base", str(tmp_path / "none"), "--output",
                 str(tmp_path / "y"), *QUIET]) == 2
    assert "not found" in capsys.readouterr().err


def test_torchrun_finetunes_data_parallel_and_rank_0_alone_logs_and_saves(tmp_path, lora_dir, base_checkpoint):
    """Under torchrun (2 CPU processes, gloo) the Trainer trains data-parallel: each rank
    takes its share of every batch (half the steps of one process), rank 0 prepares the
    folder, logs once and saves; a rerun on 2 processes reuses the model, and the process
    count is part of what was asked for (the one-process model is not reused for it)."""
    import os
    import subprocess
    import sys

    folder, single = lora_dir
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    out = tmp_path / "model"

    def torchrun(output):
        run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                              "-m", "pyl2d", "finetune", "--data", str(folder), "--base", str(base_checkpoint),
                              "--output", str(output), "--epochs", "4", "--lr", "1e-2", "--train-batch-size", "16",
                              *QUIET], env=env, capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stderr[-3000:]
        return run.stdout

    said = torchrun(out)
    assert said.count("fine-tuning base") == 1 and "x 2 processes" in said
    assert said.count("training rows") == 1
    info = json.loads((out / TRAINING_INFO).read_text())
    one = json.loads((single / TRAINING_INFO).read_text())
    assert info["processes"] == 2 and one["processes"] == 1
    assert info["steps"] * 2 == one["steps"]
    assert info["last_loss"] < info["first_loss"] and (out / "adapter_model.safetensors").is_file()
    assert json.loads((out / "checkpoints" / "finetune_request.json").read_text())["processes"] == 2
    assert "reusing the model" in torchrun(out)


def test_the_lm_head_projects_only_title_positions(tmp_path, data, base_checkpoint):
    """TRL's fused head scores every position through the whole vocabulary off CUDA (4x a plain
    step on SmolLM2); pyl2d's projects the labelled ones alone, through the head module."""
    pytest.importorskip("trl.trainer.utils", reason="TRL").__dict__.get("FusedCausalLMOutput") or pytest.skip(
        "this TRL has no fused LM head (it calls the model's own forward): nothing to replace")
    from transformers import TrainerCallback

    from pyl2d.l2d.model.finetune import FinetuneConfig, finetune_model

    seen = {"rows": 0, "tokens": 0}

    class Count(TrainerCallback):
        def on_train_begin(self, _args, _state, _control, model=None, **_kw):
            base = model.get_base_model()
            base.get_output_embeddings().register_forward_hook(
                lambda _m, inputs, _out: seen.__setitem__("rows", seen["rows"] + inputs[0].shape[0]))
            base.get_input_embeddings().register_forward_hook(
                lambda _m, inputs, _out: seen.__setitem__("tokens", seen["tokens"] + inputs[0].numel()))

    finetune_model(base_checkpoint, data.catalog, data.train[:8], tmp_path / "m",
                   FinetuneConfig(batch_size=4, epochs=1, save_steps=1000), progress=False, log=lambda *_: None,
                   callbacks=[Count()])
    assert 0 < seen["rows"] < seen["tokens"] / 2  # title tokens + EOS only, not the prompts
