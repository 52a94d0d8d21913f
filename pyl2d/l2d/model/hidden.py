"""Prompt hidden states from any Hugging Face causal LM, without the LM head.

The prompts are sorted by length and run in left-padded batches through the model's decoder
stack (``model.base_model``), never through the vocabulary projection, which for a real LLM
costs as much as several layers. Position ids are derived from the attention mask, exactly
as ``generate`` does, so a padded prompt gets the hidden state it would get alone. The
result is pooled per prompt with :func:`pyl2d.ops.pool_hidden`.
"""
from __future__ import annotations

import warnings
from typing import Sequence

import torch

from pyl2d.ops import pool_hidden
from pyl2d.ops.pool_hidden import MODES as POOLINGS  # what pool_hidden supports


def load_model(path: str, device: str | None = None, dtype: torch.dtype | None = None, precision: str = "auto"):
    """(model, tokenizer) from a saved checkpoint, in eval mode on ``device`` (default: CUDA
    when available) in ``dtype``, else in ``precision`` (:mod:`pyl2d.l2d.model.precision`;
    "auto": float32 on a CPU, bf16 or fp16 on a GPU), the tokenizer set to left padding.

    A LoRA adapter folder (``adapter_config.json``, as ``pyl2d finetune`` or peft's
    ``save_pretrained`` writes it) loads as a ``PeftModel`` over its base checkpoint (the
    local path in ``base_model_name_or_path``); its tokenizer is the adapter folder's when
    saved there, else the base's. A ``.gguf`` file (or a folder holding one) is converted once
    into a cached plain folder (:mod:`pyl2d.l2d.model.gguf`) and loaded from there."""
    import os

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pyl2d.l2d.model.gguf import resolve
    from pyl2d.l2d.model.precision import torch_dtype

    path = resolve(path)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"model folder {path} not found (give a directory made by save_pretrained)")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = dtype or torch_dtype(precision, device)
    adapter = os.path.isfile(os.path.join(path, "adapter_config.json")) and not os.path.isfile(
        os.path.join(path, "config.json"))
    base = _adapter_base(path) if adapter else path
    has_tokenizer = any(os.path.isfile(os.path.join(path, f)) for f in ("tokenizer.json", "tokenizer_config.json"))
    tokenizer = AutoTokenizer.from_pretrained(path if has_tokenizer else base, local_files_only=True)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype, local_files_only=True)
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, path, is_trainable=False)
    return model.to(device).eval(), tokenizer


def _adapter_base(path: str) -> str:
    """The base checkpoint folder of the LoRA adapter at ``path``; errors name the file."""
    import os

    from pyl2d._io import read_json

    config_path = os.path.join(path, "adapter_config.json")
    try:
        config = read_json(config_path, 16 << 20, "a peft adapter config")
    except OSError as exc:
        raise ValueError(f"{config_path} is not readable ({exc.strerror})") from None
    if not isinstance(config, dict):
        raise ValueError(f"{config_path} is a JSON {type(config).__name__}, not an object: not a peft adapter config")
    base = config.get("base_model_name_or_path")
    if not base:
        raise ValueError(f"{config_path} names no base_model_name_or_path")
    if not isinstance(base, str):
        raise ValueError(f"{config_path}: base_model_name_or_path must be a string (a local folder), got "
                         f"{type(base).__name__}")
    shown = base if len(base) <= 200 else base[:200] + "..."
    if not os.path.isabs(base):  # relative to the adapter folder, else to the working directory
        beside = os.path.join(path, base)
        base = beside if os.path.isdir(beside) else base
    if not os.path.isdir(base):
        raise FileNotFoundError(f"{config_path}: its base model {shown} is not a local folder (pyl2d loads local "
                                "checkpoints only; download it and point base_model_name_or_path at it)")
    return base


def unwrapped(model):
    """The transformers model under a peft wrapper (``PeftModel``: its LoRA layers live in
    that model's modules, so running it runs them), else ``model`` itself."""
    get_base_model = getattr(model, "get_base_model", None)
    return get_base_model() if callable(get_base_model) else model


def decoder_of(model) -> torch.nn.Module:
    """The decoder stack under a causal LM's head (``LlamaForCausalLM.model``, ...), a
    ``PeftModel``'s included (its LoRA layers are inside that stack).

    Raises ValueError for a model with no separable decoder: running it would compute the
    vocabulary projection, which L2D exists to avoid."""
    model = unwrapped(model)
    base = getattr(model, "base_model", None)
    if base is None or base is model:
        get_decoder = getattr(model, "get_decoder", None)
        base = get_decoder() if callable(get_decoder) else None
    if base is None or base is model:
        raise ValueError(f"{type(model).__name__} exposes no decoder stack separate from its LM head "
                         "(model.base_model / model.get_decoder()); L2D needs its hidden states")
    return base


def fingerprint_config(model) -> dict:
    """The facts about a model that an item memory must agree with."""
    config = model.config
    return {
        "model_type": getattr(config, "model_type", type(model).__name__),
        "hidden_size": int(hidden_size_of(model)),
        "num_hidden_layers": int(getattr(config, "num_hidden_layers", -1) or -1),
        "vocab_size": int(getattr(config, "vocab_size", -1) or -1),
    }


def hidden_size_of(model) -> int:
    config = model.config
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    size = getattr(text_config, "hidden_size", None)
    if size is None:
        raise ValueError(f"{type(model).__name__}'s config has no hidden_size; cannot use its hidden states")
    return int(size)


Layer = int | tuple[int, ...] | None


def layer_from_manifest(value) -> Layer:
    """The ``layer`` argument a memory manifest's "layer" entry stands for ("final", an int,
    or a list of ints: :meth:`HiddenStateExtractor.describe` wrote it)."""
    if value == "final":
        return None
    if isinstance(value, (list, tuple)):
        return tuple(int(v) for v in value)
    return int(value)


def _check_layer(layer, n_layers: int | None) -> Layer:
    """``layer`` validated (a list becomes a tuple); ValueError naming it."""
    if layer is None:
        return None
    many = isinstance(layer, (tuple, list))
    indices = tuple(layer) if many else (layer,)
    if many and not indices:
        raise ValueError("layer is an empty list; give None, an int or a non-empty list of ints")
    for i in indices:
        if isinstance(i, bool) or not isinstance(i, int):
            raise ValueError(f"layer must be None, an int or a list of ints, got {layer!r}")
        if n_layers is not None and not -(n_layers + 1) <= i <= n_layers:
            raise ValueError(f"layer={i} is out of range for a model with {n_layers} layers "
                             f"(hidden_states has {n_layers + 1} entries)")
    if many and n_layers is not None and len({i % (n_layers + 1) for i in indices}) < len(indices):
        raise ValueError(f"layer={list(indices)} names a hidden_states entry twice")
    return indices if many else layer


def layer_mean(states: Sequence[torch.Tensor], layers: Sequence[int]) -> torch.Tensor:
    """The mean of ``states[i]`` for i in ``layers`` (summed in float32, in their dtype)."""
    total = states[layers[0]].to(torch.float32)
    for i in layers[1:]:
        total = total + states[i].to(torch.float32)
    return (total / len(layers)).to(states[layers[0]].dtype)


class HiddenStateExtractor:
    """Pooled hidden states of prompts: ``layer=None`` is the final (normed) hidden state; an
    int picks ``hidden_states[layer]`` as Hugging Face numbers them (0 = embeddings); a tuple
    (or list) of ints takes the mean of those entries, e.g. ``(-3, -2, -1)`` the mean of the
    last three (averaged in float32, returned in the model's dtype)."""

    def __init__(self, model, tokenizer, *, layer: Layer | list[int] = None, pooling: str = "last",
                 batch_size: int = 32, max_length: int | None = None, progress: bool = True):
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}; got {pooling!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.decoder = decoder_of(model)
        self.tokenizer = tokenizer
        n_layers = getattr(model.config, "num_hidden_layers", None)
        self.layer = _check_layer(layer, n_layers)
        self.pooling = pooling
        self.batch_size = batch_size
        self.max_length = max_length
        self.progress = progress
        self.hidden_size = hidden_size_of(model)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad_id = 0 if pad is None else int(pad)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def describe(self) -> dict:
        """What the manifest records: layer "final", an int, or a list of ints (a mean)."""
        if self.layer is None:
            layer = "final"
        elif isinstance(self.layer, tuple):
            layer = [int(i) for i in self.layer]
        else:
            layer = int(self.layer)
        return {"layer": layer, "pooling": self.pooling}

    def _decode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, all_states: bool):
        """The decoder stack's output for a left-padded batch (position ids from the mask)."""
        position_ids = (attention_mask.cumsum(1) - 1).clamp_min(0)
        return self.decoder(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                            use_cache=False, output_hidden_states=all_states, return_dict=True)

    def _forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        want_all = self.layer is not None
        out = self._decode(input_ids, attention_mask, want_all)
        if want_all:
            states = getattr(out, "hidden_states", None)
            if states is None:
                raise ValueError(f"{type(self.model).__name__} returned no hidden_states; cannot take layer {self.layer}")
            return layer_mean(states, self.layer) if isinstance(self.layer, tuple) else states[self.layer]
        hidden = getattr(out, "last_hidden_state", None)
        if hidden is None:
            raise ValueError(f"{type(self.model).__name__}'s decoder returned no last_hidden_state")
        return hidden

    @torch.no_grad()  # not inference_mode: pyl2d._checks reads tensor version counters
    def encode_ids(self, sequences: Sequence[Sequence[int]], desc: str = "hidden states") -> torch.Tensor:
        """[len(sequences), hidden] pooled states, in the model's dtype, on CPU."""
        if len(sequences) == 0:
            return torch.empty((0, self.hidden_size), dtype=next(self.model.parameters()).dtype)
        if any(len(s) == 0 for s in sequences):
            raise ValueError("a prompt tokenized to zero tokens")
        seqs = [list(s) for s in sequences]
        if self.max_length is not None:
            seqs = [s[-self.max_length:] for s in seqs]
        limit = getattr(self.model.config, "max_position_embeddings", None)
        longest = max(len(s) for s in seqs)
        if limit is not None and longest > limit:
            warnings.warn(f"a prompt has {longest} tokens, more than the model's {limit} positions; "
                          "pass max_length to keep the most recent tokens", stacklevel=2)
        order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
        result: torch.Tensor | None = None
        device = self.device
        batches = range(0, len(order), self.batch_size)
        bar = _progress(batches, desc, self.progress and len(order) > self.batch_size)
        for start in bar:
            idx = order[start:start + self.batch_size]
            width = max(len(seqs[i]) for i in idx)
            ids = torch.full((len(idx), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):
                s = seqs[i]
                ids[row, width - len(s):] = torch.tensor(s, dtype=torch.long)
                mask[row, width - len(s):] = 1
            ids, mask = ids.to(device), mask.to(device)
            pooled = pool_hidden(self._forward(ids, mask), mask, self.pooling).cpu()
            if result is None:
                result = torch.empty((len(seqs), pooled.shape[1]), dtype=pooled.dtype)
            result[torch.tensor(idx)] = pooled
        assert result is not None
        return result

    def encode(self, prompts: Sequence[str], desc: str = "hidden states") -> torch.Tensor:
        """Pooled states of prompt strings (see :func:`pyl2d.l2d.data.prompts.prompt_token_ids`)."""
        from pyl2d.l2d.data.prompts import prompt_token_ids

        return self.encode_ids(prompt_token_ids(self.tokenizer, prompts), desc)


def _progress(iterable, desc: str, enabled: bool):
    if not enabled:
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is a dependency, but a bar is never worth a crash
        return iterable
    return tqdm(iterable, desc=desc, unit="batch", leave=False)
