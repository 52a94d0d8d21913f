"""``pyl2d demo | train | finetune | build-memory | eval | calc | recommend``: L2D from the
command line.

Only parsing and printing: the flags become the configs of :mod:`pyl2d.l2d.pipeline.config`
(whose fields are the flags' defaults) and :mod:`pyl2d.l2d.pipeline` runs them, its log
printed to stdout."""
from __future__ import annotations

import argparse
import sys

from pyl2d.l2d.pipeline.argtypes import (device, file, folder, model_path, non_negative_int, positive_float,
                                         positive_int, representation, template_file, unit_float)

FOREIGN_TEMPLATE_HELP = ("the prompt the model was fine-tuned with, for a checkpoint pyl2d did not train (default: "
                         "the model's recorded one, else pyl2d's, with a warning)")
MINUTES_HELP = ("optional wall-clock cap on each model's training (default: none, so that results do not "
                "depend on the machine's speed)")
DATA_HELP = ("a data folder: D3/BIGRec (valid.csv and/or train.csv, test.csv, items.txt) or MiniOneRec "
             "(train/, valid/, test/ CSVs and info/*.txt); the training split fine-tunes and builds the memory, "
             "test.csv evaluates")


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, but not the uninformative None/False ones."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def add_commands(subparsers) -> None:
    """Register the L2D subcommands on the ``pyl2d`` parser."""
    from pyl2d.l2d.pipeline.config import DemoRun, EvalRun, RecommendRun, field_default
    from pyl2d.l2d.decode.recommender import AGGREGATIONS, METRICS

    fmt = _Formatter

    p = subparsers.add_parser(
        "demo", formatter_class=fmt, help="train a tiny model on synthetic data and compare L2D with beam search",
        description="The whole L2D pipeline in a few minutes on a CPU: generate a synthetic catalog and user "
                    "histories, train a tiny Llama to write the next item's title, build the L2D memory, and "
                    "evaluate L2D (global and local) against grounded decoding, constrained beam search and "
                    "popularity. Prints a Recall/NDCG/latency table and saves an accuracy-vs-latency plot.")
    p.add_argument("--output-dir", default=field_default(DemoRun, "output_dir"), type=folder,
                   help="where the model, memory, results.json and plot go")
    p.add_argument("--epochs", type=positive_float, default=field_default(DemoRun, "epochs"),
                   help="training epochs per seed")
    p.add_argument("--seeds", type=positive_int, default=field_default(DemoRun, "seeds"),
                   help="models trained (seeds --seed, --seed + 1, ...); the table shows mean ± std")
    p.add_argument("--seed", type=non_negative_int, default=field_default(DemoRun, "seed"), help="first seed")
    p.add_argument("--minutes", type=positive_float, default=field_default(DemoRun, "minutes"), help=MINUTES_HELP)
    p.add_argument("--users", type=positive_int, default=field_default(DemoRun, "users"), help="synthetic users")
    p.add_argument("--items", type=positive_int, default=field_default(DemoRun, "items"), help="synthetic catalog size")
    p.add_argument("--time-queries", type=positive_int, default=field_default(DemoRun, "time_queries"),
                   help="queries timed at each batch size")
    _common(p)
    p.set_defaults(func=_demo)

    p = subparsers.add_parser(
        "train", formatter_class=fmt, help="train a tiny tokenizer + Llama recommender from scratch",
        description="Train a byte-level BPE tokenizer and a small Llama on the training split to write the "
                    "next item's title after the prompt (loss on the title only); save_pretrained to --output.")
    _data_args(p)
    p.add_argument("--output", required=True, type=folder, help="folder for the model and tokenizer")
    _train_args(p)
    _common(p)
    p.set_defaults(func=_train)

    p = subparsers.add_parser(
        "finetune", formatter_class=fmt, help="fine-tune a pretrained checkpoint (LoRA or full) to write the next title",
        description="Supervised fine-tuning, BIGRec/D3 style, of a local causal LM checkpoint (save_pretrained "
                    "folder, e.g. Qwen2.5 or Llama-3.2): the prompt from the history, the loss on the target title "
                    "only, with TRL's SFTTrainer and peft. Saves the LoRA adapter (or the merged or fully fine-tuned "
                    "weights), the tokenizer and the prompt template to --output; build-memory, eval and recommend "
                    "take --model OUTPUT. A rerun resumes from the last checkpoint in OUTPUT/checkpoints. "
                    "Data-parallel on W devices: torchrun --nproc-per-node W -m pyl2d finetune ... (each process "
                    "takes --train-batch-size rows per step).")
    _data_args(p)
    p.add_argument("--base", required=True, type=model_path, help="the pretrained checkpoint folder or .gguf file")
    p.add_argument("--output", required=True, type=folder, help="folder for the fine-tuned model")
    _finetune_args(p)
    _max_history_arg(p)
    _template_arg(p, "the prompt to train with, recorded with the model (default: pyl2d's)")
    _common(p)
    p.set_defaults(func=_finetune)

    p = subparsers.add_parser(
        "build-memory", formatter_class=fmt, help="build (or resume) the L2D item memory of a model",
        description="Run every training prompt through the model (no LM head) and store its hidden state with "
                    "the target item in one safetensors file (written shard by shard) plus a manifest. An interrupted "
                    "build resumes after the shards it finished when run again with the same arguments. Under "
                    "torchrun (`torchrun --nproc-per-node W -m pyl2d build-memory ...`) each rank encodes its share "
                    "of the shards on its own device; the result is the same memory.")
    _data_args(p)
    p.add_argument("--model", required=True, type=model_path, help="a causal LM folder (save_pretrained) or .gguf file")
    p.add_argument("--output", required=True, type=folder, help="memory folder")
    _max_history_arg(p)
    _template_arg(p, FOREIGN_TEMPLATE_HELP)
    _memory_args(p)
    _inference_precision_arg(p)
    _common(p)
    p.set_defaults(func=_build_memory)

    p = subparsers.add_parser(
        "eval", formatter_class=fmt, help="evaluate L2D and the baselines on a data folder",
        description="Evaluate L2D-global, L2D-local, grounded decoding, constrained beam search and popularity "
                    "on test.csv: item-level Recall/NDCG@5,10,20,50 (history excluded and not), title-level and "
                    "unique-title scores, and ms per query at the best batch size. Without --model, a tiny model "
                    "is first trained on the training split (--train-split) as `pyl2d demo` does.")
    p.add_argument("--data", required=True, type=folder, help=DATA_HELP)
    _split_args(p)
    p.add_argument("--model", type=model_path, default=field_default(EvalRun, "model"),
                   help="a causal LM folder to evaluate (default: train a tiny one into --work-dir)")
    p.add_argument("--memory", type=folder, default=field_default(EvalRun, "memory"),
                   help="its memory folder (default: build one into --work-dir)")
    p.add_argument("--work-dir", type=folder, default=field_default(EvalRun, "work_dir"),
                   help="where a trained model and built memory go (default: ./pyl2d-eval-<data name>)")
    p.add_argument("--output", type=file, default=field_default(EvalRun, "output"),
                   help="also write the results as JSON (a list of records, one per method)")
    p.add_argument("--plot", type=file, default=field_default(EvalRun, "plot"),
                   help="accuracy-vs-latency PNG (default: <work-dir>/accuracy_vs_latency.png)")
    p.add_argument("--calc-output", type=folder, default=None,
                   help="also write each method's ranked titles as a calc.py result file (<method>.json: input, "
                        "output, predict), the format of BIGRec/D3/MiniOneRec; `pyl2d calc` reads them back")
    _eval_args(p)
    _template_arg(p, FOREIGN_TEMPLATE_HELP[:-1] + "; with --memory, the memory's)")
    _train_args(p)
    p.add_argument("--seeds", type=positive_int, default=field_default(EvalRun, "seeds"),
                   help="without --model: train and evaluate this many models (seeds --seed, --seed + 1, ...) and "
                        "report mean ± std; with one, each score's ± is a bootstrap interval over test queries")
    _memory_args(p)
    _inference_precision_arg(p)
    _common(p)
    p.set_defaults(func=_eval)

    p = subparsers.add_parser(
        "calc", formatter_class=fmt, help="HR/NDCG@1..50 of calc.py result files (BIGRec/D3/MiniOneRec format)",
        description="Score result files in the calc.py format of BIGRec, D3 and MiniOneRec (a JSON list of records "
                    "with 'predict', the ranked titles, and 'output', the target title) as those projects do: exact "
                    "title match on the whole list, no exclusion, HR@K and NDCG@K (1 / log2(rank + 2)) for K in 1, "
                    "3, 5, 10, 20, 50. Reads pyl2d's own (`pyl2d eval --calc-output`) and theirs.")
    p.add_argument("results", nargs="+", type=file, help="result JSON files")
    p.add_argument("--catalog", type=file, help="items.txt / info/*.txt: also count predicted titles not in it")
    p.set_defaults(func=_calc)

    p = subparsers.add_parser(
        "recommend", formatter_class=fmt, help="top-k items for a history of item ids",
        description="Recommend with L2D from one prefill: e.g. `pyl2d recommend --model M --memory MEM "
                    "--data DIR --history 12,7,33 --k 10`.")
    _data_args(p)
    p.add_argument("--model", required=True, type=model_path, help="a causal LM folder or .gguf file")
    p.add_argument("--memory", required=True, type=folder, help="its memory folder (pyl2d build-memory)")
    p.add_argument("--history", required=True, action="append",
                   help="comma-separated item ids, oldest first; repeat for several users")
    p.add_argument("--k", type=positive_int, default=field_default(RecommendRun, "k"), help="items to return")
    p.add_argument("--aggregation", choices=AGGREGATIONS, default=field_default(RecommendRun, "aggregation"))
    p.add_argument("--metric", choices=METRICS, default=field_default(RecommendRun, "metric"))
    p.add_argument("--m", type=positive_int, default=field_default(RecommendRun, "m"),
                   help="nearest memory entries for local aggregation")
    _representation_args(p, field_default(RecommendRun, "representation"), field_default(RecommendRun, "local_weight"))
    p.add_argument("--keep-history", action="store_true", help="allow items of the history in the results")
    _template_arg(p, "the prompt to query with (default: the one stored with the memory)")
    _inference_precision_arg(p)
    _common(p)
    p.set_defaults(func=_recommend)


# -- argument groups ------------------------------------------------------------------------
def _common(p) -> None:
    from pyl2d.l2d.pipeline.argtypes import DEVICES
    from pyl2d.l2d.pipeline.config import RuntimeConfig, field_default

    p.add_argument("--threads", type=positive_int, default=field_default(RuntimeConfig, "threads"),
                   help="torch CPU threads (default: torch's choice; 1 helps on a busy machine)")
    p.add_argument("--device", type=device, default=field_default(RuntimeConfig, "device"),
                   help=f"{DEVICES} for prefills, memory builds and search (default: cuda when available); "
                        "the tiny models of train/demo/eval always train on the CPU, seeded and reproducible")
    p.add_argument("--quiet", action="store_true", help="no progress bars")  # RuntimeConfig.progress, negated


def _inference_precision_arg(p) -> None:
    from pyl2d.l2d.model.precision import PRECISIONS
    from pyl2d.l2d.pipeline.config import RuntimeConfig, field_default

    p.add_argument("--precision", choices=PRECISIONS, default=field_default(RuntimeConfig, "precision"),
                   help="number format of the model's prefills and generation (auto: fp32 on a CPU, bf16 on a GPU; "
                        "bf16 on a CPU with AMX or AVX512-BF16 is several times faster than fp32)")


def _data_args(p) -> None:
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--data", type=folder, help=DATA_HELP)
    g.add_argument("--synthetic", action="store_true", help="use the built-in synthetic data set (as the demo)")
    _split_args(p)


def _split_args(p) -> None:
    from pyl2d.l2d.data.folders import TRAIN_SPLITS

    p.add_argument("--train-split", choices=TRAIN_SPLITS,
                   help="the split(s) that train: fine-tuning and the memory (default: train where the folder has "
                        "one, else valid, as D3 does)")
    p.add_argument("--category", help="a MiniOneRec folder with several categories: the one to use (a file-name "
                                      "prefix such as Office_Products)")


def _representation_args(g, default_representation, default_weight) -> None:
    g.add_argument("--representation", type=representation, default=default_representation,
                   help="pre-transform of memory and query states: raw, or tokens joined by commas from center, diag, "
                        f"pca, pca:N, abtt:N, norm (default: {default_representation.describe()})")
    g.add_argument("--local-weight", type=unit_float, default=default_weight,
                   help="local aggregation: items with local entries score w * local + (1 - w) * global (1: the paper)")


def _max_history_arg(g) -> None:
    from pyl2d.l2d.data.prompts import DEFAULT_PROMPT

    g.add_argument("--max-history", type=positive_int,
                   help=f"history items in the prompt (default: the model's training template, else "
                        f"{DEFAULT_PROMPT.max_history})")


def _template_arg(g, what: str) -> None:
    g.add_argument("--template", type=template_file, metavar="FILE",
                   help=f"a JSON prompt template (an object of PromptTemplate fields: template, instruction, "
                        f"item_format, separator, max_history, answer_prefix, use_chat_template): {what}")


def _train_args(p) -> None:
    from pyl2d.l2d.model.train import TrainConfig

    d = TrainConfig()
    g = p.add_argument_group("tiny-model training")
    g.add_argument("--epochs", type=positive_float, default=d.epochs, help="training epochs")
    g.add_argument("--minutes", type=positive_float, default=d.max_minutes, help=MINUTES_HELP)
    g.add_argument("--vocab-size", type=positive_int, default=d.vocab_size)
    g.add_argument("--hidden-size", type=positive_int, default=d.hidden_size)
    g.add_argument("--layers", type=positive_int, default=d.num_layers)
    g.add_argument("--heads", type=positive_int, default=d.num_heads)
    g.add_argument("--intermediate-size", type=positive_int, default=d.intermediate_size)
    g.add_argument("--lr", type=positive_float, default=d.learning_rate)
    g.add_argument("--train-batch-size", type=positive_int, default=d.batch_size)
    g.add_argument("--no-prefix-augmentation", action="store_true",  # TrainConfig.prefix_augmentation, negated
                   help="train on the rows as given, not on every prefix of each history")
    g.add_argument("--seed", type=non_negative_int, default=d.seed)
    _max_history_arg(g)


def _finetune_args(p) -> None:
    from pyl2d.l2d.model.finetune import MAX_LENGTH_CAP, FinetuneConfig
    from pyl2d.l2d.model.precision import PRECISIONS

    d = FinetuneConfig()
    g = p.add_argument_group("fine-tuning")
    g.add_argument("--full", action="store_true", help="fine-tune every weight instead of LoRA adapters")
    g.add_argument("--lora-r", type=positive_int, default=d.lora_r, help="LoRA rank")
    g.add_argument("--lora-alpha", type=positive_int, default=d.lora_alpha)
    g.add_argument("--lora-dropout", type=unit_float, default=d.lora_dropout)
    g.add_argument("--merge", action="store_true", help="save the LoRA model merged into plain weights")
    g.add_argument("--epochs", type=positive_float, default=d.epochs)
    g.add_argument("--lr", type=positive_float, default=d.learning_rate,
                   help="learning rate (default: 2e-4 for LoRA, 2e-5 for --full)")
    g.add_argument("--train-batch-size", type=positive_int, default=d.batch_size)
    g.add_argument("--gradient-accumulation", type=positive_int, default=d.gradient_accumulation)
    g.add_argument("--max-length", type=positive_int, default=d.max_length,
                   help=f"tokens per row (prompt + title + end); longer rows are left out with a warning, never cut "
                        f"(default: the longest row's, at most {MAX_LENGTH_CAP})")
    g.add_argument("--precision", choices=PRECISIONS, default=d.precision,
                   help="auto: bf16 on a GPU that supports it, fp32 on CPU; bf16 on a CPU needs AMX or AVX512-BF16")
    g.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=d.gradient_checkpointing,
                   help="recompute activations in backward to save memory (default: on for a GPU, off on a CPU)")
    g.add_argument("--prefix-augmentation", action="store_true",
                   help="also train on every shorter prefix of each history")
    g.add_argument("--save-steps", type=positive_int, default=d.save_steps, help="checkpoint every N steps")
    g.add_argument("--seed", type=non_negative_int, default=d.seed)


def _memory_args(p) -> None:
    from pyl2d.l2d.pipeline.argtypes import layer_spec
    from pyl2d.l2d.model.hidden import POOLINGS
    from pyl2d.l2d.pipeline.config import MemoryConfig

    d = MemoryConfig()
    g = p.add_argument_group("memory")
    g.add_argument("--layer", type=layer_spec, default=d.layer,
                   help="hidden_states index, or indices for their mean, as --layer=-3,-2,-1 (default: final)")
    g.add_argument("--pooling", choices=POOLINGS, default=d.pooling)
    g.add_argument("--batch-size", type=positive_int, default=d.batch_size, help="prefill batch size")
    g.add_argument("--shard-size", type=positive_int, default=d.shard_size, help="memory entries per shard")
    g.add_argument("--overwrite", action="store_true", help="replace a memory built from something else")
    g.add_argument("--no-prefix-memory", action="store_true",  # MemoryConfig.prefix_memory, negated
                   help="store only the training rows as given, not every prefix of each history (the "
                        "prefixes are what the tiny model is trained on and cover more items)")


def _eval_args(p) -> None:
    from pyl2d.l2d.evaluation.evaluate import METHODS, EvalConfig
    from pyl2d.l2d.decode.recommender import METRICS

    d = EvalConfig()
    p.add_argument("--max-test", type=positive_int, default=d.max_test,
                   help="evaluate on this many random test rows (default: all)")
    p.add_argument("--time-queries", type=positive_int, default=d.time_queries, help="queries timed at each batch size")
    g = p.add_argument_group("evaluation")
    g.add_argument("--methods", default=",".join(d.methods), help="comma-separated subset of " + ", ".join(METHODS))
    g.add_argument("--metric", choices=METRICS, default=d.metric, help="L2D similarity")
    g.add_argument("--m", type=positive_int, default=d.m, help="nearest memory entries for L2D-local")
    _representation_args(g, d.representation, d.local_weight)
    g.add_argument("--beams", type=positive_int, default=d.beams, help="beams (= titles returned) for beam search")


# -- flags to configs -----------------------------------------------------------------------
def _runtime(args):
    from pyl2d.l2d.pipeline.config import RuntimeConfig

    # finetune's --precision is its training precision (FinetuneConfig); the runtime's is unused there.
    # Commands without the flag (train, demo) keep RuntimeConfig's own default.
    given = {"precision": args.precision} if "precision" in vars(args) else {}
    return RuntimeConfig(device=args.device, threads=args.threads, progress=not args.quiet, **given)


def _source(args):
    """--data, --train-split and --category as a DataSource."""
    from pyl2d.l2d.data.folders import DataSource

    return DataSource(args.data, args.train_split, args.category)


def _data(args):
    """The data folder as a DataSource, or None for the synthetic data set (--synthetic)."""
    return None if args.synthetic else _source(args)


def _train_config(args):
    from pyl2d.l2d.model.train import TrainConfig

    return TrainConfig(vocab_size=args.vocab_size, hidden_size=args.hidden_size, num_layers=args.layers,
                       num_heads=args.heads, intermediate_size=args.intermediate_size, epochs=args.epochs,
                       max_minutes=args.minutes, batch_size=args.train_batch_size, learning_rate=args.lr,
                       prefix_augmentation=not args.no_prefix_augmentation, seed=args.seed)


def _finetune_config(args):
    from pyl2d.l2d.model.finetune import FinetuneConfig

    return FinetuneConfig(lora=not args.full, lora_r=args.lora_r, lora_alpha=args.lora_alpha,
                          lora_dropout=args.lora_dropout, merge=args.merge, epochs=args.epochs, learning_rate=args.lr,
                          batch_size=args.train_batch_size, gradient_accumulation=args.gradient_accumulation,
                          max_length=args.max_length, precision=args.precision,
                          gradient_checkpointing=args.gradient_checkpointing,
                          prefix_augmentation=args.prefix_augmentation, save_steps=args.save_steps, seed=args.seed)


def _memory_config(args):
    from pyl2d.l2d.pipeline.config import MemoryConfig

    return MemoryConfig(layer=args.layer, pooling=args.pooling, batch_size=args.batch_size,
                        shard_size=args.shard_size, overwrite=args.overwrite, prefix_memory=not args.no_prefix_memory)


def _eval_config(args):
    from pyl2d.l2d.evaluation.evaluate import EvalConfig

    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    return EvalConfig(methods=methods, metric=args.metric, m=args.m, representation=args.representation,
                      local_weight=args.local_weight, beams=args.beams, batch_size=args.batch_size,
                      time_queries=args.time_queries, max_test=args.max_test,
                      calc_output=args.calc_output)


def _histories(texts) -> list[list[int]]:
    histories = []
    for text in texts:
        try:
            histories.append([int(x) for x in text.replace(" ", "").split(",") if x])
        except ValueError:
            raise ValueError(f"--history {text!r}: expected comma-separated integer item ids") from None
    return histories


def _log(msg: str) -> None:
    print(msg, flush=True)


# -- commands: flags to a run config, then the pipeline ----------------------------------
def _demo_run(args):
    from pyl2d.l2d.pipeline.config import DemoRun

    return DemoRun(output_dir=args.output_dir, epochs=args.epochs, seeds=args.seeds, seed=args.seed,
                   minutes=args.minutes, users=args.users, items=args.items, time_queries=args.time_queries,
                   runtime=_runtime(args))


def _train_run(args):
    from pyl2d.l2d.pipeline.config import TrainRun

    return TrainRun(output=args.output, data=_data(args), training=_train_config(args),
                    max_history=args.max_history, runtime=_runtime(args))


def _finetune_run(args):
    from pyl2d.l2d.pipeline.config import FinetuneRun

    return FinetuneRun(base=args.base, output=args.output, data=_data(args), finetuning=_finetune_config(args),
                       max_history=args.max_history, template=args.template, runtime=_runtime(args))


def _build_memory_run(args):
    from pyl2d.l2d.pipeline.config import BuildMemoryRun

    return BuildMemoryRun(model=args.model, output=args.output, data=_data(args), max_history=args.max_history,
                          template=args.template, memory=_memory_config(args), runtime=_runtime(args))


def _eval_run(args):
    from pyl2d.l2d.pipeline.config import EvalRun

    # The training flags matter (and are checked) only when there is a model to train.
    training = _train_config(args) if args.model is None and not args.memory else None
    return EvalRun(data=_source(args), model=args.model, memory=args.memory, work_dir=args.work_dir, output=args.output,
                   plot=args.plot, max_history=args.max_history, template=args.template,
                   evaluation=_eval_config(args), training=training,
                   seeds=args.seeds, build=_memory_config(args), runtime=_runtime(args))


def _recommend_run(args):
    from pyl2d.l2d.pipeline.config import RecommendRun

    return RecommendRun(model=args.model, memory=args.memory, histories=_histories(args.history), data=_data(args),
                        k=args.k, aggregation=args.aggregation, metric=args.metric, m=args.m,
                        representation=args.representation, local_weight=args.local_weight,
                        exclude_history=not args.keep_history, template=args.template, runtime=_runtime(args))


def _pipeline(runner: str, make_config):
    """The handler of a command that only parses: build its config from the flags and run
    ``pyl2d.l2d.pipeline.<runner>`` on it (imported when the command runs)."""
    def handle(args) -> int:
        from pyl2d.l2d import pipeline

        getattr(pipeline, runner)(make_config(args), log=_log)
        return 0
    return handle


_demo = _pipeline("run_demo", _demo_run)
_train = _pipeline("run_train", _train_run)
_finetune = _pipeline("run_finetune", _finetune_run)
_build_memory = _pipeline("run_build_memory", _build_memory_run)
_eval = _pipeline("run_eval", _eval_run)
_recommend = _pipeline("run_recommend", _recommend_run)


def _calc(args) -> int:
    from pyl2d.l2d.evaluation import calc_convention
    from pyl2d.l2d.data.records import load_catalog

    known = set(load_catalog(args.catalog).titles) if args.catalog else None
    rows = []
    for path in args.results:
        predictions, targets = calc_convention.read_results(path)
        rows.append((str(path), calc_convention.scores(predictions, targets)))
        unknown = "" if known is None else (
            f", {sum(calc_convention.predicted_text(t) not in known for p in predictions for t in p)} predicted "
            "titles not in the catalog")
        _log(f"{path}: {len(predictions)} queries, lists of {min(map(len, predictions))}{unknown}")
    _log(calc_convention.format_table(rows))
    return 0


if __name__ == "__main__":  # pragma: no cover
    from pyl2d.cli import main

    sys.exit(main())
