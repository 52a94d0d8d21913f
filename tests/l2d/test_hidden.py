"""Hidden states: equal to the model's own output_hidden_states at the last prompt token,
padding-independent, and computed without ever running the LM head."""
import pytest
import torch

from pyl2d.l2d.data.prompts import DEFAULT_PROMPT, prompt_token_ids
from pyl2d.l2d.model.hidden import HiddenStateExtractor, decoder_of


def _prompts(data, n=6):
    # Histories of different lengths, so the batch is really left-padded.
    return [DEFAULT_PROMPT.prompt(s.history_titles) for s in data.train[:n]]


def _no_lm_head(model):
    def boom(*_):
        raise AssertionError("the LM head ran")
    return model.lm_head.register_forward_hook(boom)


@pytest.mark.parametrize("layer", [None, 1, -1])
def test_matches_output_hidden_states_at_last_token(tiny_model, tiny_data, layer):
    model, tok = tiny_model
    prompts = _prompts(tiny_data)
    ex = HiddenStateExtractor(model, tok, layer=layer, batch_size=4, progress=False)
    handle = _no_lm_head(model)
    try:
        got = ex.encode(prompts)
    finally:
        handle.remove()
    ids = prompt_token_ids(tok, prompts)
    assert len({len(i) for i in ids}) > 1
    for row, seq in enumerate(ids):
        with torch.no_grad():
            out = model(input_ids=torch.tensor([seq]), output_hidden_states=True)
        want = out.hidden_states[-1 if layer is None else layer][0, -1]
        torch.testing.assert_close(got[row], want, rtol=1e-5, atol=1e-5)


def test_mean_pooling_and_order_preserved(tiny_model, tiny_data):
    model, tok = tiny_model
    prompts = _prompts(tiny_data, 5)
    got = HiddenStateExtractor(model, tok, pooling="mean", batch_size=2, progress=False).encode(prompts)
    for row, seq in enumerate(prompt_token_ids(tok, prompts)):
        with torch.no_grad():
            want = model.model(input_ids=torch.tensor([seq])).last_hidden_state[0].mean(0)
        torch.testing.assert_close(got[row], want, rtol=1e-5, atol=1e-5)


def test_bad_arguments(tiny_model):
    model, tok = tiny_model
    with pytest.raises(ValueError, match="pooling"):
        HiddenStateExtractor(model, tok, pooling="max")
    with pytest.raises(ValueError, match="layer"):
        HiddenStateExtractor(model, tok, layer=7)
    with pytest.raises(ValueError, match="zero tokens"):
        HiddenStateExtractor(model, tok, progress=False).encode_ids([[1, 2], []])


def test_model_without_decoder_is_a_clear_error():
    class Headless(torch.nn.Module):
        base_model = None

        def get_decoder(self):
            return self
    with pytest.raises(ValueError, match="no decoder stack"):
        decoder_of(Headless())


def _random_llama(n_layers=3):
    from types import SimpleNamespace

    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=n_layers,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64, pad_token_id=0)
    return LlamaForCausalLM(config).eval(), SimpleNamespace(pad_token_id=0, eos_token_id=0)


@pytest.mark.parametrize("layer", [(-3, -2, -1), [0, 2], (1,)])
def test_a_tuple_of_layers_is_the_mean_of_those_hidden_states(layer):
    model, tok = _random_llama()
    seqs = [[5, 6, 7], [8, 9], [10, 11, 12, 13, 14], [3]]
    ex = HiddenStateExtractor(model, tok, layer=layer, batch_size=3, progress=False)
    assert ex.layer == tuple(layer) and ex.describe()["layer"] == list(layer)
    got = ex.encode_ids(seqs)
    for row, seq in enumerate(seqs):
        with torch.no_grad():
            states = model(input_ids=torch.tensor([seq]), output_hidden_states=True).hidden_states
        want = torch.stack([states[i][0, -1] for i in layer]).mean(0)
        torch.testing.assert_close(got[row], want, rtol=1e-5, atol=1e-5)


def test_bad_layer_tuples_name_the_layer():
    model, tok = _random_llama()
    for layer, message in (([], "empty"), ((1, True), "list of ints"), ((-1, 3), "twice"), ((0, 5), "out of range"),
                           ("-1", "list of ints"), (1.0, "list of ints")):
        with pytest.raises(ValueError, match=message):
            HiddenStateExtractor(model, tok, layer=layer)


def test_layer_spec_parses_the_cli_forms():
    import argparse

    from pyl2d.l2d.pipeline.argtypes import layer_spec

    assert layer_spec("final") is None and layer_spec("-2") == -2 and layer_spec(" -3, -2,-1") == (-3, -2, -1)
    for bad in ("last", "-3,,-1", "1,1", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            layer_spec(bad)
    from pyl2d.cli import build_parser

    args = build_parser().parse_args(["build-memory", "--synthetic", "--model", "m", "--output", "o",
                                     "--layer=-3,-2,-1"])
    assert args.layer == (-3, -2, -1)


def test_a_mean_of_layers_is_stored_in_the_manifest_and_read_back(tmp_path, tiny_model, tiny_data):
    import warnings

    from pyl2d.l2d.memory import ItemMemory, build_memory
    from pyl2d.l2d.decode.recommender import L2DRecommender

    model, tok = tiny_model
    ex = HiddenStateExtractor(model, tok, layer=[-2, -1], progress=False)
    build_memory(ex, tiny_data.train[:40], len(tiny_data.catalog), tmp_path / "m", DEFAULT_PROMPT,
                 log=lambda *_: None)
    memory = ItemMemory.load(tmp_path / "m", model)
    assert memory.manifest["layer"] == [-2, -1]
    memory.check_model(model, layer=(-2, -1))
    with pytest.raises(ValueError, match="layer"):
        memory.check_model(model, layer=-1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # undecodable items
        rec = L2DRecommender(model, tok, memory, tiny_data.catalog)
    assert rec.extractor.layer == (-2, -1)
    samples = tiny_data.test[:3]
    torch.testing.assert_close(rec.encode(samples), ex.encode([DEFAULT_PROMPT.prompt(s.history_titles, tok)
                                                               for s in samples]))
