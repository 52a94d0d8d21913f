"""Seconds per LoRA training step: ``pyl2d finetune`` (TRL SFTTrainer + peft, as
:func:`pyl2d.l2d.model.finetune.finetune_model` runs it) against a plain PyTorch + peft loop, on the
same batch (the same rows, LoRA targets, rank and optimizer), in float32 and (where the CPU
runs bf16 natively) bf16 autocast, all in one run; medians over ``--repeats`` steps after a
warm-up step. ``--curve-steps N`` also fine-tunes N steps in fp32 and in bf16 from the same
seed and prints both loss curves.

    python bench/finetune_step.py --base SMOLLM2_FOLDER --data ../shared/data/amazon-office

(SmolLM2-135M-Instruct as a plain folder: see docs; any save_pretrained causal LM works.)
"""
from __future__ import annotations

import argparse
import json
import pathlib
import platform
import statistics
import sys
import tempfile
import time

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from pyl2d.l2d.model.finetune import FinetuneConfig, finetune_model  # noqa: E402
from pyl2d.l2d.model.precision import cpu_bf16_support  # noqa: E402
from pyl2d.l2d.data.folders import load_folder  # noqa: E402
from pyl2d.l2d.data.prompts import DEFAULT_PROMPT  # noqa: E402
from pyl2d.l2d.model.train import sft_examples  # noqa: E402


def _batch_rows(samples, tokenizer, batch: int, tokens: int):
    """``batch`` training rows whose prompt + title are closest to ``tokens`` long."""
    usable = [s for s in samples if s.history_titles]
    examples = sft_examples(usable, tokenizer, DEFAULT_PROMPT, sys.maxsize)
    order = sorted(range(len(examples)), key=lambda i: abs(len(examples[i][0]) - tokens))[:batch]
    return [usable[i] for i in order], [examples[i] for i in order]


def _plain_steps(base, examples, tokenizer, precision: str, steps: int, lr: float) -> list[float]:
    """Seconds of each step of a plain loop: forward with labels, backward, AdamW."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32, local_files_only=True)
    d = FinetuneConfig()
    model = get_peft_model(model, LoraConfig(r=d.lora_r, lora_alpha=d.lora_alpha, lora_dropout=d.lora_dropout,
                                             target_modules=d.target_modules, task_type="CAUSAL_LM"))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    width = max(len(ids) for ids, _ in examples)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    ids = torch.tensor([i + [pad] * (width - len(i)) for i, _ in examples])
    mask = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i, _ in examples])
    labels = torch.tensor([[-100] * n + i[n:] + [-100] * (width - len(i)) for i, n in examples])
    model.train()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - start)
    return times


def _pyl2d_steps(base, catalog, rows, precision: str, steps: int, lr: float, batch: int, seed: int = 0):
    """(seconds of each step, logged losses) of ``finetune_model`` on ``rows`` repeated."""
    from transformers import TrainerCallback

    class Timer(TrainerCallback):
        def __init__(self):
            self.times, self.losses = [], []

        def on_step_begin(self, *_a, **_k):
            self.start = time.perf_counter()

        def on_step_end(self, *_a, **_k):
            self.times.append(time.perf_counter() - self.start)

        def on_log(self, _args, _state, _control, logs=None, **_k):
            if logs and "loss" in logs:
                self.losses.append(float(logs["loss"]))

    timer = Timer()
    data = [r for _ in range(steps) for r in rows] if len(rows) == batch else rows
    with tempfile.TemporaryDirectory() as out:
        config = FinetuneConfig(batch_size=batch, learning_rate=lr, precision=precision, epochs=1.0, warmup_ratio=0.0,
                                logging_steps=1, save_steps=10 ** 6, seed=seed)
        finetune_model(base, catalog, data, pathlib.Path(out, "model"), config, DEFAULT_PROMPT, device="cpu",
                       progress=False, log=lambda *_: None, callbacks=[timer])
    return timer.times, timer.losses


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", required=True, help="a save_pretrained causal LM folder (SmolLM2-135M-Instruct)")
    p.add_argument("--data", required=True, help="a D3/BIGRec data folder (its training split gives the rows)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--tokens", type=int, default=240, help="rows of about this many tokens")
    p.add_argument("--repeats", type=int, default=3, help="timed steps per configuration (after one warm-up)")
    p.add_argument("--curve-steps", type=int, default=0, help="also compare fp32 and bf16 loss curves over N steps")
    p.add_argument("--precisions", default="fp32,bf16", help="which to time (bf16 only where the CPU runs it)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--note", default="", help="what else ran on the machine")
    p.add_argument("--output", help="also write the results as JSON")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.base, local_files_only=True)
    dataset = load_folder(args.data)
    rows, examples = _batch_rows(dataset.train, tokenizer, args.batch, args.tokens)
    shape = f"{len(examples)} x {max(len(i) for i, _ in examples)}"
    precisions = [x for x in args.precisions.split(",") if x == "fp32" or (x == "bf16" and cpu_bf16_support())]
    result = {"cpu": platform.processor() or platform.machine(), "bf16_support": cpu_bf16_support(),
              "threads": torch.get_num_threads(), "batch": shape, "repeats": args.repeats, "note": args.note,
              "seconds_per_step": {}}
    try:
        result["cpu"] = torch.cpu.get_capabilities().get("cpu_name") or result["cpu"]
    except AttributeError:
        pass
    lr = FinetuneConfig().lr
    for precision in precisions:
        plain = _plain_steps(args.base, examples, tokenizer, precision, args.repeats + 1, lr)[1:]
        ours, _ = _pyl2d_steps(args.base, dataset.catalog, rows, precision, args.repeats + 1, lr, args.batch)
        ours = ours[1:]
        row = {"plain": statistics.median(plain), "pyl2d_finetune": statistics.median(ours),
               "plain_all": plain, "pyl2d_all": ours}
        row["ratio"] = row["pyl2d_finetune"] / row["plain"]
        result["seconds_per_step"][precision] = row
        print(f"{precision}: plain {row['plain']:.2f} s/step, pyl2d finetune {row['pyl2d_finetune']:.2f} s/step "
              f"(x{row['ratio']:.2f}) on batch {shape}", flush=True)
        if args.output:  # after each precision: a run cut short keeps what it measured
            pathlib.Path(args.output).write_text(json.dumps(result, indent=2))
    if args.curve_steps and "bf16" in precisions:
        usable = [s for s in dataset.train if s.history_titles][: args.curve_steps * args.batch]
        curves = {prec: _pyl2d_steps(args.base, dataset.catalog, usable, prec, args.curve_steps, lr, args.batch)[1]
                  for prec in ("fp32", "bf16")}
        result["loss_curves"] = curves
        for prec, losses in curves.items():
            print(f"{prec} losses over {len(losses)} steps: first {losses[0]:.3f}, mean of last 5 "
                  f"{statistics.mean(losses[-5:]):.3f}: " + " ".join(f"{x:.2f}" for x in losses), flush=True)
    if args.output:
        pathlib.Path(args.output).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
