"""Fine-tune a user's pretrained causal LM to write the next item's title, BIGRec/D3 style:
the prompt from the history, the loss on the target title (and its end-of-sequence) only;
full fine-tuning or LoRA, on TRL's ``SFTTrainer`` and ``peft`` (no training loop of our own).

The examples are tokenized here, exactly as memory building and querying tokenize prompts
(:func:`pyl2d.l2d.data.prompts.prompt_token_ids`), and handed to ``SFTTrainer`` pre-tokenized with
a completion mask: the prompt a model is trained on is, token for token, the one L2D later
reads its hidden state from. The template goes into ``pyl2d_training.json`` beside the model,
so ``build-memory``, ``eval`` and ``recommend`` reuse it.

A LoRA run saves the adapter (``adapter_config.json`` + weights, pointing at the base
checkpoint by absolute path) and the tokenizer; ``merge=True`` saves the merged weights as a
plain checkpoint instead. Checkpoints go to ``<output>/checkpoints`` every ``save_steps``, and a
rerun with the same base, data and config resumes from the last one.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import pathlib
import shutil
import sys
from typing import Sequence

from pyl2d._checks import positive_ints
from pyl2d._io import read_json
from pyl2d.l2d._files import write_atomic
from pyl2d.l2d.data.prompts import DEFAULT_PROMPT, PromptTemplate, data_fingerprint
from pyl2d.l2d.data.records import Catalog, Sample, prefix_augment, with_history
from pyl2d.l2d.model.finetune_trainer import use_compact_head
from pyl2d.l2d.model.precision import check_precision, resolve_precision
from pyl2d.l2d.model.train import TRAINING_INFO, read_record, sft_examples

MAX_LENGTH_CAP = 2048  # the default --max-length: the longest row's tokens, at most this
MAX_EPOCHS = 1e6  # past this a step count overflows; no run trains that long
_REQUEST = "finetune_request.json"  # in <output>/checkpoints: what the checkpoints there were trained for


@dataclasses.dataclass
class FinetuneConfig:
    """How to fine-tune. ``lora``: train LoRA adapters of rank ``lora_r`` on
    ``target_modules`` ("all-linear": every linear layer but the LM head), else every weight.
    ``learning_rate`` None: 2e-4 for LoRA, 2e-5 for full fine-tuning (the usual choices).
    ``precision`` "auto": bf16 on a GPU that supports it, fp32 on CPU; "bf16" on a CPU needs
    AMX or AVX512-BF16 (autocast over float32 weights). ``max_length`` (tokens of prompt +
    title + EOS) None: the longest row's, at most MAX_LENGTH_CAP; longer rows are left out
    (never cut: the model is trained on the prompts memory building and queries use).
    ``gradient_checkpointing`` None: on for a GPU, off on a CPU (it recomputes each layer's
    forward for memory a CPU host has). ``merge``: save a LoRA model merged into plain weights.
    ``prefix_augmentation``: also train on every shorter prefix of each history (off: the rows
    as given, as BIGRec/D3 train)."""
    lora: bool = True
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: str | tuple[str, ...] = "all-linear"
    epochs: float = 1.0
    learning_rate: float | None = None
    batch_size: int = 8
    gradient_accumulation: int = 1
    warmup_ratio: float = 0.03
    max_length: int | None = None
    prefix_augmentation: bool = False
    precision: str = "auto"
    merge: bool = False
    gradient_checkpointing: bool | None = None
    seed: int = 0
    logging_steps: int = 10
    save_steps: int = 500

    def __post_init__(self):
        positive_ints(self, ("lora_r", "lora_alpha", "batch_size", "gradient_accumulation", "logging_steps",
                             "save_steps") + (("max_length",) if self.max_length is not None else ()))
        if not (isinstance(self.epochs, (int, float)) and math.isfinite(self.epochs) and self.epochs > 0):
            raise ValueError(f"epochs must be a positive number, got {self.epochs!r}")
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate!r}")
        if not 0.0 <= self.lora_dropout < 1.0 or not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"lora_dropout and warmup_ratio must be in [0, 1), got {self.lora_dropout}, "
                             f"{self.warmup_ratio}")
        check_precision(self.precision)
        if self.merge and not self.lora:
            raise ValueError("merge applies to LoRA fine-tuning only (full fine-tuning saves plain weights)")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2 ** 32:
            raise ValueError(f"seed must be an int from 0 to 2**32 - 1, got {self.seed!r}")
        if self.epochs > MAX_EPOCHS:
            raise ValueError(f"epochs must be at most {MAX_EPOCHS:g}, got {self.epochs!r}")

    @property
    def lr(self) -> float:
        return self.learning_rate if self.learning_rate is not None else (2e-4 if self.lora else 2e-5)


def _dataset(samples: Sequence[Sample], tokenizer, template: PromptTemplate, max_length: int | None, log):
    """A ``datasets.Dataset`` of pre-tokenized prompt + answer + EOS with its completion mask,
    and the max length used. Rows longer than ``max_length`` (None: the longest row's, at
    most MAX_LENGTH_CAP) are counted, warned about and left out; none fitting is an error."""
    from datasets import Dataset

    examples = sft_examples(samples, tokenizer, template, sys.maxsize)  # whole rows: nothing cut
    if not examples:
        raise ValueError("no training sample has a non-empty history")
    lengths = [len(ids) for ids, _ in examples]
    limit = max_length if max_length is not None else min(max(lengths), MAX_LENGTH_CAP)
    kept = [e for e, n in zip(examples, lengths) if n <= limit]
    flag = f"--max-length {limit}" if max_length is not None else f"the default max length ({MAX_LENGTH_CAP})"
    if not kept:
        shortest = min(range(len(examples)), key=lambda i: lengths[i])
        raise ValueError(f"{flag} is below every training row: the shortest is {lengths[shortest]} tokens "
                         f"(a {examples[shortest][1]}-token prompt + its title and end token); raise --max-length, or "
                         "shorten the prompt (--max-history, --template)")
    if len(kept) < len(examples):
        log(f"warning: {len(examples) - len(kept)} of {len(examples)} training rows "
            f"({100 * (len(examples) - len(kept)) / len(examples):.1f}%) are longer than {flag} tokens (prompt + title; "
            f"the longest is {max(lengths)}) and are left out; raise --max-length to train on them")
    return Dataset.from_dict({"input_ids": [ids for ids, _ in kept],
                              "completion_mask": [[0] * n + [1] * (len(ids) - n) for ids, n in kept]}), limit


def _resume_point(checkpoints: pathlib.Path, request: dict, prepare: bool = True) -> pathlib.Path | None:
    """The newest complete checkpoint (one the Trainer finished writing: it has
    ``trainer_state.json``) of this very request in ``checkpoints``, to resume from; else None.
    ``prepare`` (one process only): remove checkpoints of another request (they would resume
    the wrong run), never a folder without pyl2d's marker, and mark the folder with this one."""
    marker = checkpoints / _REQUEST
    try:
        same = marker.is_file() and read_json(marker, 1 << 20, "a pyl2d checkpoints marker") == request
    except (OSError, ValueError):  # a torn or foreign marker: not this request's
        same = False
    if prepare:
        if not same and checkpoints.exists():
            if not marker.is_file() and any(checkpoints.iterdir()):  # not a folder pyl2d made: not ours to delete
                raise ValueError(f"{checkpoints} exists and holds files without pyl2d's {_REQUEST}; move it, or "
                                 "choose another --output")
            shutil.rmtree(checkpoints)
        checkpoints.mkdir(parents=True, exist_ok=True)
        write_atomic(marker, json.dumps(request, indent=2, sort_keys=True).encode())
    if not same:
        return None
    done = [p for p in checkpoints.glob("checkpoint-*") if (p / "trainer_state.json").is_file()
            and p.name.split("-")[-1].isdigit()]
    return max(done, key=lambda p: int(p.name.split("-")[-1]), default=None)


def _checkpointing_kwargs(config_class, on: bool) -> dict:
    """Activation checkpointing ``on`` or off, non-reentrant: the reentrant kind that
    transformers 4 picks fails under DDP ("marked a variable ready multiple times").
    transformers 5 renamed the options; pass them by the names this version has."""
    fields = getattr(config_class, "__dataclass_fields__", {})
    name = "activation_checkpointing" if "activation_checkpointing_kwargs" in fields else "gradient_checkpointing"
    return {name: on, f"{name}_kwargs": {"use_reentrant": False}}


def _length_grouping_kwargs(config_class) -> dict:
    """Rows of like length batched together (a batch is padded to its longest row, and
    pyl2d's rows range from ~70 to ~570 tokens on Amazon data), by the option's name in this
    transformers."""
    fields = getattr(config_class, "__dataclass_fields__", {})
    return {"train_sampling_strategy": "group_by_length"} if "train_sampling_strategy" in fields \
        else {"group_by_length": True}


@contextlib.contextmanager
def _dataset_progress(show: bool):
    """``datasets``' progress bars on (as they were) or off for the duration."""
    from datasets.utils import logging

    was = logging.is_progress_bar_enabled()
    if not show:
        logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            logging.enable_progress_bar()


def _silent(*_args) -> None:
    pass


def _loss(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def finetuned_with(output_dir: str | pathlib.Path, request: dict) -> bool:
    """True when ``output_dir`` holds a model :func:`finetune_model` finished for ``request``
    (same base, config, template and data): fine-tuning again would give the same model."""
    info = read_record(pathlib.Path(output_dir, TRAINING_INFO))
    if info is None:
        return False
    return all(info.get(key) == value for key, value in request.items())


def _base_fingerprint(base: pathlib.Path) -> str:
    """A short hash of the base folder's files (name, size, modification time): a base
    retrained in place is a new base, and a model fine-tuned from the old one is not reused."""
    h = hashlib.sha256()
    for p in sorted(base.iterdir()):
        if p.is_file():
            st = p.stat()
            h.update(f"{p.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _check_base(base: pathlib.Path) -> None:
    if not base.is_dir():
        raise FileNotFoundError(f"base model folder {base} not found (give a directory made by save_pretrained)")
    if not (base / "config.json").is_file():
        what = "a LoRA adapter; merge it first or fine-tune its base" if (base / "adapter_config.json").is_file() \
            else "no config.json"
        raise ValueError(f"base model folder {base} holds {what}")


def finetune_model(base_model: str | pathlib.Path, catalog: Catalog, samples: Sequence[Sample],
                   output_dir: str | pathlib.Path, config: FinetuneConfig | None = None,
                   template: PromptTemplate = DEFAULT_PROMPT, device: str | None = None, progress: bool = True,
                   log=print, callbacks: Sequence = ()) -> pathlib.Path:
    """Fine-tune ``base_model`` (a local ``save_pretrained`` folder) on ``samples`` and save the
    result (LoRA adapter, merged or full weights) with its tokenizer and template to
    ``output_dir``; returns it. The info file says the first and last logged training loss.
    ``callbacks``: transformers ``TrainerCallback`` objects (bench/finetune_step.py times steps)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from pyl2d.distributed.launch import launched_rank, launched_world_size

    config = config or FinetuneConfig()
    with_history(samples, "training")
    log = log if launched_rank() == 0 else _silent  # under a launcher, rank 0 speaks for all
    base = pathlib.Path(base_model).resolve()
    _check_base(base)
    output_dir = pathlib.Path(output_dir)
    if output_dir.resolve() == base:
        raise ValueError(f"the output folder is the base model's ({base}): saving there would overwrite the base; "
                         "choose another --output")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu")).type
    precision = resolve_precision(config.precision, device)
    checkpointing = config.gradient_checkpointing if config.gradient_checkpointing is not None else device != "cpu"
    # The process count is part of the request: each process trains on its own batches, so
    # the effective batch (and the model) changes with it.
    processes = launched_world_size()
    request = json.loads(json.dumps({  # as it reads back from JSON (tuples become lists)
        "base": str(base), "base_fingerprint": _base_fingerprint(base),
        # How often it logs and saves changes no weight: a rerun that changes them still resumes.
        "config": {k: v for k, v in dataclasses.asdict(config).items() if k not in ("logging_steps", "save_steps")},
        "template": dataclasses.asdict(template),
        "data_fingerprint": data_fingerprint(samples, template), "processes": processes}))
    if finetuned_with(output_dir, request):  # before loading anything (every rank only reads here)
        log(f"reusing the model at {output_dir} (fine-tuned from the same base on the same data and config)")
        return output_dir
    tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.eos_token_id is None:
        raise ValueError(f"the tokenizer of {base} has no end-of-sequence token; the model could not end a title")
    data = prefix_augment(samples) if config.prefix_augmentation else list(samples)
    dataset, max_length = _dataset(data, tokenizer, template, config.max_length, log)
    # fp16: AMP on fp32 weights; bf16 on a CPU too (autocast: float32 master weights, bf16 products)
    dtype = torch.bfloat16 if precision == "bf16" and device != "cpu" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype, local_files_only=True)
    peft_config = None
    if config.lora:
        from peft import LoraConfig

        peft_config = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                                 target_modules=list(config.target_modules) if not isinstance(config.target_modules, str)
                                 else config.target_modules, task_type="CAUSAL_LM")
    checkpoints = output_dir / "checkpoints"
    # Warmup as a step count (transformers 4 and 5 agree on warmup_steps, not on warmup_ratio).
    steps = math.ceil(math.ceil(len(dataset) / (config.batch_size * processes)) / config.gradient_accumulation
                      * config.epochs)
    args = SFTConfig(
        output_dir=str(checkpoints), num_train_epochs=config.epochs, per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation, learning_rate=config.lr,
        warmup_steps=math.ceil(config.warmup_ratio * steps), lr_scheduler_type="cosine", logging_steps=config.logging_steps,
        save_strategy="steps", save_steps=config.save_steps, save_total_limit=2, seed=config.seed,
        bf16=precision == "bf16", fp16=precision == "fp16", use_cpu=device == "cpu", report_to="none",
        disable_tqdm=not progress, max_length=None, completion_only_loss=True, packing=False,
        dataloader_pin_memory=device != "cpu", **_checkpointing_kwargs(SFTConfig, checkpointing),
        **_length_grouping_kwargs(SFTConfig))
    # Under a launcher (torchrun, accelerate) every rank runs this; rank 0 prepares the output
    # folder first and the others then find it prepared (no two ranks delete or write it).
    with args.main_process_first(local=False, desc="preparing the output folder"):
        if args.process_index == 0:
            pathlib.Path(output_dir, TRAINING_INFO).unlink(missing_ok=True)  # the model there is about to change
        resume = _resume_point(checkpoints, request, prepare=args.process_index == 0)
    with _dataset_progress(progress and args.process_index == 0):  # TRL's preprocessing bars: rank 0's
        trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                             peft_config=peft_config, callbacks=list(callbacks) or None)
    use_compact_head(trainer)  # the LM head on the title tokens only (TRL's scores every position off CUDA)
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in trainer.model.parameters())
    log(f"fine-tuning {base.name} ({'LoRA r=%d' % config.lora_r if config.lora else 'full'}: {trainable:,} of "
        f"{total:,} parameters trained) on {len(dataset)} samples, {config.epochs:g} epochs, lr {config.lr:g}, "
        f"{precision} on {device}, rows of at most {max_length} tokens"
        + (f" x {args.world_size} processes" if args.world_size > 1 else "")
        + (", resuming from the last checkpoint" if resume else ""))
    result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    if trainer.is_world_process_zero():  # under a multi-process launcher, rank 0 saves
        _save(trainer, tokenizer, output_dir, config, {"kind": "finetune", **request, "n_examples": len(dataset),
              "trainable_parameters": trainable, "precision": precision, "train_loss": result.training_loss}, log)
    trainer.accelerator.wait_for_everyone()  # no rank returns before the model is there
    return output_dir


def _save(trainer, tokenizer, output_dir: pathlib.Path, config: FinetuneConfig, info: dict, log) -> None:
    """The trained model (adapter, merged or full weights), its tokenizer, then the info file."""
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    model = trainer.model
    output_dir.mkdir(parents=True, exist_ok=True)
    if config.lora and config.merge:
        model = model.merge_and_unload()
    # What an earlier save of another kind left (a merged model's config.json beside a new
    # adapter would be loaded instead of it): removed first.
    for stale in [*output_dir.glob("adapter_*"), *output_dir.glob("model*.safetensors*"), output_dir / "config.json",
                  output_dir / "generation_config.json", *output_dir.glob("pytorch_model*.bin")]:
        stale.unlink(missing_ok=True)
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    info = {**info, "steps": trainer.state.global_step, "first_loss": losses[0] if losses else None,
            "last_loss": losses[-1] if losses else None}
    # Written last: its presence says the model and tokenizer beside it are complete.
    write_atomic(output_dir / TRAINING_INFO, json.dumps(info, indent=2).encode())
    log(f"fine-tuned {trainer.state.global_step} steps, logged loss {_loss(info['first_loss'])} -> "
        f"{_loss(info['last_loss'])}; saved to {output_dir}" + (" (LoRA adapter)" if config.lora and not config.merge
                                                                   else ""))
