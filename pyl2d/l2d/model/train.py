"""Train a tiny recommender LLM from scratch, so the whole pipeline runs on a laptop.

A byte-level BPE tokenizer is trained on the catalog's titles and the prompt template, then a
small ``LlamaConfig`` model learns, BIGRec/D3 style, to write the next item's title after the
prompt (supervised fine-tuning loss on the answer tokens only). The result is saved with
``save_pretrained`` so every later step loads it with ``from_pretrained``, the same path a
real checkpoint takes.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import random
import shutil
import time
from typing import Sequence

import torch

from pyl2d._checks import positive_ints
from pyl2d._io import read_json
from pyl2d.l2d._files import write_atomic
from pyl2d.l2d.data.prompts import DEFAULT_PROMPT, PromptTemplate, answer_token_ids, data_fingerprint, prompt_token_ids
from pyl2d.l2d.data.records import Catalog, Sample, prefix_augment, with_history
from pyl2d.l2d.model.hidden import _progress

TRAINING_INFO = "pyl2d_training.json"  # written next to a trained model: config, template, data
MAX_RECORD_BYTES = 64 << 20  # a record is a few kB; past this it is not one
SPECIAL_TOKENS = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}


@dataclasses.dataclass
class TrainConfig:
    """Model size and schedule. Training runs ``epochs`` (the learning rate a cosine over
    them), seeded by ``seed``: the same data and config give the same model on the same machine
    and thread count (another CPU rounds differently, and training amplifies that: see
    docs/l2d.md). ``max_minutes`` is an optional wall-clock cap on top (off by default:
    a cap makes a slower or busier machine train a worse model); when set, the schedule
    follows whichever budget is tighter."""
    vocab_size: int = 4000
    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 384
    epochs: float = 4.0
    max_minutes: float | None = None
    batch_size: int = 32
    learning_rate: float = 3e-3
    weight_decay: float = 0.01
    warmup_steps: int = 50
    prefix_augmentation: bool = True
    seed: int = 0
    max_length: int = 512

    def __post_init__(self):
        positive_ints(self, ("vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size",
                             "batch_size", "max_length"))
        if not self.learning_rate > 0 or self.warmup_steps < 0:
            raise ValueError(f"learning_rate must be positive and warmup_steps >= 0, got {self.learning_rate}, "
                             f"{self.warmup_steps}")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size ({self.hidden_size}) must be divisible by num_heads ({self.num_heads})")
        if not self.epochs > 0 or (self.max_minutes is not None and not self.max_minutes > 0):
            raise ValueError(f"epochs and max_minutes must be positive, got {self.epochs}, {self.max_minutes}")
        if self.epochs > 1e6:  # past this the step count overflows; no run trains that long
            raise ValueError(f"epochs must be at most 1e6, got {self.epochs}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2 ** 32:
            raise ValueError(f"seed must be an int from 0 to 2**32 - 1, got {self.seed!r}")


# The demo's model and schedule: 6 epochs take about 45 s per seed on 2 quiet cores.
DEMO_CONFIG = dict(vocab_size=1000, hidden_size=96, num_layers=2, num_heads=4, intermediate_size=256,
                   epochs=6.0, learning_rate=4e-3)


def train_tokenizer(texts: Sequence[str], vocab_size: int):
    """A byte-level BPE ``PreTrainedTokenizerFast`` trained on ``texts``, left-padding."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=SPECIAL_TOKENS["unk_token"]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, show_progress=False,
                                  special_tokens=list(SPECIAL_TOKENS.values()),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, padding_side="left", **SPECIAL_TOKENS)
    return fast


def tokenizer_corpus(catalog: Catalog, samples: Sequence[Sample], template: PromptTemplate) -> list[str]:
    """Texts the tokenizer learns from: the answers (titles) and a sample of prompts."""
    texts = [template.answer(t) for t in catalog.titles]
    rng = random.Random(0)
    for s in rng.sample(list(samples), min(len(samples), 2000)):
        if s.history_titles:
            texts.append(template.user_text(s.history_titles))
    return texts


def sft_examples(samples: Sequence[Sample], tokenizer, template: PromptTemplate,
                 max_length: int) -> list[tuple[list[int], int]]:
    """(token ids of prompt + answer + EOS, number of prompt tokens) per sample with a history."""
    usable = [s for s in samples if s.history_titles]
    if not usable:
        return []
    prompts = prompt_token_ids(tokenizer, [template.prompt(s.history_titles, tokenizer) for s in usable])
    answers = answer_token_ids(tokenizer, template, [s.target_title for s in usable])
    eos = tokenizer.eos_token_id
    out = []
    for p, a in zip(prompts, answers):
        a = a + [eos]
        p = p[-max(1, max_length - len(a)):]
        out.append((p + a, len(p)))
    return out


def _batches(examples, batch_size: int, rng: random.Random):
    """Length-bucketed batches in random order: sort within shuffled chunks, then shuffle batches."""
    order = list(range(len(examples)))
    rng.shuffle(order)
    chunk = batch_size * 50
    batches = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start:start + chunk], key=lambda i: len(examples[i][0]))
        batches += [part[i:i + batch_size] for i in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return batches


def _collate(examples, idx, pad_id: int):
    width = max(len(examples[i][0]) for i in idx)
    ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(idx), width), dtype=torch.long)
    labels = torch.full((len(idx), width), -100, dtype=torch.long)
    for row, i in enumerate(idx):
        seq, n_prompt = examples[i]
        ids[row, :len(seq)] = torch.tensor(seq)
        mask[row, :len(seq)] = 1
        labels[row, n_prompt:len(seq)] = torch.tensor(seq[n_prompt:])
    return ids, mask, labels


def _answer_loss(model, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy on the answer tokens, projecting to the vocabulary only at
    the positions that predict them (the prompt's logits would be thrown away)."""
    hidden = model.get_decoder()(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
    targets = labels[:, 1:]
    keep = targets != -100
    logits = model.get_output_embeddings()(hidden[:, :-1][keep])
    return torch.nn.functional.cross_entropy(logits.float(), targets[keep])


def read_record(path: pathlib.Path) -> dict | None:
    """The training record at ``path`` as a dict, or None where it is missing, unreadable, no
    regular file (a FIFO must not block), over 64 MiB or not strict JSON: a caller asking
    "was this model trained with ...?" then answers no, and training runs again."""
    try:
        info = read_json(path, MAX_RECORD_BYTES, "a pyl2d training record")
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def trained_with(output_dir: str | pathlib.Path, samples: Sequence[Sample], config: TrainConfig,
                 template: PromptTemplate) -> bool:
    """True when ``output_dir`` holds a model that :func:`train_model` finished with exactly
    these samples, config and template (so training again would give the same model)."""
    info_path = pathlib.Path(output_dir, TRAINING_INFO)
    if not info_path.is_file() or not pathlib.Path(output_dir, "config.json").is_file():
        return False
    info = read_record(info_path)
    if info is None:
        return False
    return (info.get("config") == dataclasses.asdict(config) and info.get("template") == dataclasses.asdict(template)
            and info.get("data_fingerprint") == data_fingerprint(samples, template)
            and info.get("steps") == info.get("total_steps"))


def train_model(catalog: Catalog, samples: Sequence[Sample], output_dir: str | pathlib.Path,
                config: TrainConfig | None = None, template: PromptTemplate = DEFAULT_PROMPT,
                progress: bool = True, log=print) -> pathlib.Path:
    """Train tokenizer + model on ``samples`` and save both to ``output_dir``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = config or TrainConfig()
    with_history(samples, "training")  # before the model there is touched
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    output_dir = pathlib.Path(output_dir)
    staging = _staging_folder(output_dir)  # made now: an unwritable output fails before training, not after
    data = prefix_augment(samples) if config.prefix_augmentation else list(samples)
    tokenizer = train_tokenizer(tokenizer_corpus(catalog, data, template), config.vocab_size)
    examples = sft_examples(data, tokenizer, template, config.max_length)
    model_config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=config.hidden_size, num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads, num_key_value_heads=config.num_heads,
        intermediate_size=config.intermediate_size, max_position_embeddings=config.max_length,
        tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, rms_norm_eps=1e-5)
    model = LlamaForCausalLM(model_config)
    n_params = sum(p.numel() for p in model.parameters())
    steps_per_epoch = math.ceil(len(examples) / config.batch_size)
    total_steps = max(1, int(steps_per_epoch * config.epochs))
    cap = f", capped at {config.max_minutes:g} min" if config.max_minutes else ""
    log(f"training a {n_params / 1e6:.1f}M-parameter Llama on {len(examples)} samples "
        f"(vocab {len(tokenizer)}; {config.epochs:g} epochs = {total_steps} steps, seed {config.seed}{cap})")
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=config.learning_rate,
                                  betas=(0.9, 0.98))
    budget = config.max_minutes * 60.0 if config.max_minutes else math.inf
    start = time.perf_counter()
    model.train()
    step, done, last_loss = 0, False, float("nan")
    bar = _progress(range(total_steps), "training", progress)
    bar_iter = iter(bar)
    while not done:
        for idx in _batches(examples, config.batch_size, rng):
            elapsed = time.perf_counter() - start
            frac = max(step / total_steps, elapsed / budget)
            if frac >= 1.0:
                done = True
                break
            warm = min(1.0, (step + 1) / max(1, config.warmup_steps))
            lr = config.learning_rate * warm * 0.5 * (1.0 + math.cos(math.pi * frac))
            for group in optimizer.param_groups:
                group["lr"] = lr
            ids, mask, labels = _collate(examples, idx, tokenizer.pad_token_id)
            loss = _answer_loss(model, ids, mask, labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            last_loss = float(loss.detach())
            step += 1
            next(bar_iter, None)
            if hasattr(bar, "set_postfix") and step % 10 == 0:
                bar.set_postfix(loss=f"{last_loss:.3f}")
    if hasattr(bar, "close"):
        bar.close()
    elapsed = time.perf_counter() - start
    if step < total_steps:
        log(f"the {config.max_minutes:g}-minute cap stopped training at step {step} of {total_steps}: "
            "the model depends on this machine's speed")
    log(f"trained {step} steps ({step / steps_per_epoch:.2f} epochs) in {elapsed:.0f} s, last loss {last_loss:.3f}")
    model.eval()
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    info = {"config": dataclasses.asdict(config), "template": dataclasses.asdict(template),
            "data_fingerprint": data_fingerprint(samples, template), "n_examples": len(examples), "steps": step,
            "total_steps": total_steps, "epochs_done": step / steps_per_epoch,
            "seconds": elapsed, "last_loss": last_loss, "parameters": n_params}
    _publish(staging, output_dir, json.dumps(info, indent=2).encode())
    return output_dir


def _staging_folder(output_dir: pathlib.Path) -> pathlib.Path:
    """A fresh folder beside ``output_dir`` to save into, so that the model already there
    stays whole (with its training record) until the new one is complete; staging folders
    of processes that are gone are removed."""
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    for old in output_dir.parent.glob(f".{output_dir.name}.partial-*"):
        pid = old.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    staging = output_dir.parent / f".{output_dir.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    return staging


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _publish(staging: pathlib.Path, output_dir: pathlib.Path, info: bytes) -> None:
    """Move the saved model from ``staging`` into ``output_dir``: the old training record
    goes first and the new one is written last, so a record always describes the files
    beside it (a crash in between leaves no record: not taken for a finished model)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / TRAINING_INFO).unlink(missing_ok=True)
    for path in staging.iterdir():
        os.replace(path, output_dir / path.name)
    write_atomic(output_dir / TRAINING_INFO, info)
    staging.rmdir()
