"""A tiny random Llama and a character-level tokenizer built in memory (no downloads)."""
from __future__ import annotations

import torch


def tiny_lm(seed: int = 0):
    import transformers
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers

    chars = [chr(c) for c in range(32, 127)] + ["\n"]
    vocab = {"<pad>": 0, "<unk>": 1, "<eos>": 2, **{c: i + 3 for i, c in enumerate(chars)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>",
                                                     eos_token="<eos>",
                                                     # as causal LMs' tokenizers: no token_type_ids (which
                                                     # transformers 4's generate() rejects for Llama)
                                                     model_input_names=["input_ids", "attention_mask"])
    tokenizer.chat_template = ("{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
                               "{% if add_generation_prompt %}[assistant] {% endif %}")
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64,
                                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                      max_position_embeddings=4096, pad_token_id=0, eos_token_id=2,
                                      bos_token_id=None)
    model = transformers.LlamaForCausalLM(config).eval()
    return model, tokenizer
