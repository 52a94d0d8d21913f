"""Hidden states: equal to the model's own output_hidden_states at the last prompt token,
padding-independent, and computed without ever running the LM head."""
import pytest
import torch

from pyl2d.l2d.hidden import HiddenStateExtractor, decoder_of
from pyl2d.l2d.prompts import DEFAULT_PROMPT, prompt_token_ids


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
