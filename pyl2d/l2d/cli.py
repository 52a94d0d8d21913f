"""``pyl2d demo | train | build-memory | eval | recommend``: L2D from the command line."""
from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys
import time

from pyl2d.l2d.argtypes import device, file, folder, non_negative_int, positive_float, positive_int

DATA_HELP = ("a folder with valid.csv (training: fine-tuning and the memory), test.csv (evaluation) and "
             "items.txt (the catalog), in the D3/BIGRec CSV format")


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, but not the uninformative None/False ones."""

    def _get_help_string(self, action):
        if action.default in (None, False) or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def add_commands(subparsers) -> None:
    """Register the L2D subcommands on the ``pyl2d`` parser."""
    fmt = _Formatter

    p = subparsers.add_parser(
        "demo", formatter_class=fmt, help="train a tiny model on synthetic data and compare L2D with beam search",
        description="The whole L2D pipeline in a few minutes on a CPU: generate a synthetic catalog and user "
                    "histories, train a tiny Llama to write the next item's title, build the L2D memory, and "
                    "evaluate L2D (global and local) against grounded decoding, constrained beam search and "
                    "popularity. Prints a Recall/NDCG/latency table and saves an accuracy-vs-latency plot.")
    p.add_argument("--output-dir", default="pyl2d-demo", type=folder, help="where the model, memory, results.json and plot go")
    p.add_argument("--minutes", type=positive_float, default=1.5, help="training time budget")
    p.add_argument("--users", type=positive_int, default=600, help="synthetic users")
    p.add_argument("--items", type=positive_int, default=400, help="synthetic catalog size")
    p.add_argument("--time-queries", type=positive_int, default=64, help="queries timed at each batch size")
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
        "build-memory", formatter_class=fmt, help="build (or resume) the L2D item memory of a model",
        description="Run every training prompt through the model (no LM head) and store its hidden state with "
                    "the target item as safetensors shards plus a manifest. An interrupted build resumes from "
                    "the last complete shard when run again with the same arguments.")
    _data_args(p)
    p.add_argument("--model", required=True, type=folder, help="a causal LM folder (save_pretrained)")
    p.add_argument("--output", required=True, type=folder, help="memory folder")
    p.add_argument("--max-history", type=positive_int,
                   help="history items in the prompt (default: the model's training template, else 10)")
    _memory_args(p)
    _common(p)
    p.set_defaults(func=_build_memory)

    p = subparsers.add_parser(
        "eval", formatter_class=fmt, help="evaluate L2D and the baselines on a data folder",
        description="Evaluate L2D-global, L2D-local, grounded decoding, constrained beam search and popularity "
                    "on test.csv: item-level Recall/NDCG@5,10,20,50 (history excluded and not), title-level and "
                    "unique-title scores, and ms per query at the best batch size. Without --model, a tiny model "
                    "is first trained on valid.csv as `pyl2d demo` does.")
    p.add_argument("--data", required=True, type=folder, help=DATA_HELP)
    p.add_argument("--model", type=folder, help="a causal LM folder to evaluate (default: train a tiny one into --work-dir)")
    p.add_argument("--memory", type=folder, help="its memory folder (default: build one into --work-dir)")
    p.add_argument("--work-dir", type=folder, help="where a trained model and built memory go (default: ./pyl2d-eval-<data name>)")
    p.add_argument("--output", type=file, help="also write the results as JSON (a list of records, one per method)")
    p.add_argument("--plot", type=file, help="accuracy-vs-latency PNG (default: <work-dir>/accuracy_vs_latency.png)")
    p.add_argument("--max-test", type=positive_int, help="evaluate on this many random test rows (default: all)")
    p.add_argument("--time-queries", type=positive_int, default=64, help="queries timed at each batch size")
    _eval_args(p)
    _train_args(p)
    _memory_args(p)
    _common(p)
    p.set_defaults(func=_eval)

    p = subparsers.add_parser(
        "recommend", formatter_class=fmt, help="top-k items for a history of item ids",
        description="Recommend with L2D from one prefill: e.g. `pyl2d recommend --model M --memory MEM "
                    "--data DIR --history 12,7,33 --k 10`.")
    _data_args(p)
    p.add_argument("--model", required=True, type=folder, help="a causal LM folder")
    p.add_argument("--memory", required=True, type=folder, help="its memory folder (pyl2d build-memory)")
    p.add_argument("--history", required=True, action="append",
                   help="comma-separated item ids, oldest first; repeat for several users")
    p.add_argument("--k", type=positive_int, default=10, help="items to return")
    p.add_argument("--aggregation", choices=("global", "local"), default="local")
    p.add_argument("--metric", choices=("l2", "ip", "cosine"), default="l2")
    p.add_argument("--m", type=positive_int, default=1000, help="nearest memory entries for local aggregation")
    p.add_argument("--keep-history", action="store_true", help="allow items of the history in the results")
    _common(p)
    p.set_defaults(func=_recommend)


# -- argument groups ------------------------------------------------------------------------
def _common(p) -> None:
    p.add_argument("--threads", type=positive_int, help="torch CPU threads (default: torch's choice; 1 helps on a busy machine)")
    p.add_argument("--device", type=device, help="cpu, cuda or cuda:N (default: cuda when available)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _data_args(p) -> None:
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--data", type=folder, help=DATA_HELP)
    g.add_argument("--synthetic", action="store_true", help="use the built-in synthetic data set (as the demo)")


def _train_args(p) -> None:
    from pyl2d.l2d.train import TrainConfig

    d = TrainConfig()
    g = p.add_argument_group("tiny-model training")
    g.add_argument("--minutes", type=positive_float, default=d.max_minutes, help="training time budget")
    g.add_argument("--epochs", type=positive_float, default=d.epochs, help="epochs (whichever limit comes first)")
    g.add_argument("--vocab-size", type=positive_int, default=d.vocab_size)
    g.add_argument("--hidden-size", type=positive_int, default=d.hidden_size)
    g.add_argument("--layers", type=positive_int, default=d.num_layers)
    g.add_argument("--heads", type=positive_int, default=d.num_heads)
    g.add_argument("--intermediate-size", type=positive_int, default=d.intermediate_size)
    g.add_argument("--lr", type=positive_float, default=d.learning_rate)
    g.add_argument("--train-batch-size", type=positive_int, default=d.batch_size)
    g.add_argument("--no-prefix-augmentation", action="store_true",
                   help="train on the rows as given, not on every prefix of each history")
    g.add_argument("--seed", type=non_negative_int, default=d.seed)
    g.add_argument("--max-history", type=positive_int,
                   help="history items in the prompt (default: the model's training template, else 10)")


def _memory_args(p) -> None:
    g = p.add_argument_group("memory")
    g.add_argument("--layer", type=int, help="hidden_states index to use (default: the final normed state)")
    g.add_argument("--pooling", choices=("last", "mean"), default="last")
    g.add_argument("--batch-size", type=positive_int, default=64, help="prefill batch size")
    g.add_argument("--shard-size", type=positive_int, default=4096, help="memory entries per shard")
    g.add_argument("--overwrite", action="store_true", help="replace a memory built from something else")
    g.add_argument("--no-prefix-memory", action="store_true",
                   help="store only the training rows as given, not every prefix of each history (the "
                        "prefixes are what the tiny model is trained on and cover more items)")


def _eval_args(p) -> None:
    from pyl2d.l2d.evaluate import METHODS

    g = p.add_argument_group("evaluation")
    g.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of " + ", ".join(METHODS))
    g.add_argument("--metric", choices=("l2", "ip", "cosine"), default="l2", help="L2D similarity")
    g.add_argument("--m", type=positive_int, default=1000, help="nearest memory entries for L2D-local")
    g.add_argument("--beams", type=positive_int, default=10, help="beams (= titles returned) for beam search")


# -- helpers --------------------------------------------------------------------------------
def _setup(args) -> None:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)


def _dataset(args, n_users: int = 600, n_items: int = 400):
    from pyl2d.l2d.data import load_folder
    from pyl2d.l2d.synthetic import make_synthetic

    if getattr(args, "synthetic", False) or not getattr(args, "data", None):
        return make_synthetic(n_items=n_items, n_users=n_users)
    return load_folder(args.data)


def _train_config(args, **overrides):
    from pyl2d.l2d.train import TrainConfig

    values = dict(vocab_size=args.vocab_size, hidden_size=args.hidden_size, num_layers=args.layers,
                  num_heads=args.heads, intermediate_size=args.intermediate_size, epochs=args.epochs,
                  max_minutes=args.minutes, batch_size=args.train_batch_size, learning_rate=args.lr,
                  prefix_augmentation=not args.no_prefix_augmentation, seed=args.seed)
    values.update(overrides)
    return TrainConfig(**values)


def _template(args, model_path=None):
    """The prompt template: the one the model was trained with (pyl2d train writes it next to
    the model), else the default; ``--max-history`` overrides the history length."""
    from pyl2d.l2d.prompts import DEFAULT_PROMPT, PromptTemplate

    template = DEFAULT_PROMPT
    info = pathlib.Path(model_path, "pyl2d_training.json") if model_path else None
    if info is not None and info.is_file():
        template = PromptTemplate(**json.loads(info.read_text())["template"])
    if getattr(args, "max_history", None):
        template = dataclasses.replace(template, max_history=args.max_history)
    return template


def _log(msg: str) -> None:
    print(msg, flush=True)


def _build(args, model_path, dataset, memory_path):
    from pyl2d.l2d.data import prefix_augment
    from pyl2d.l2d.hidden import HiddenStateExtractor, load_model
    from pyl2d.l2d.memory import build_memory
    model, tokenizer = load_model(str(model_path), device=args.device)
    extractor = HiddenStateExtractor(model, tokenizer, layer=getattr(args, "layer", None),
                                     pooling=getattr(args, "pooling", "last"),
                                     batch_size=getattr(args, "batch_size", 64), progress=not args.quiet)
    start = time.perf_counter()
    samples = dataset.train if getattr(args, "no_prefix_memory", False) else prefix_augment(dataset.train)
    memory = build_memory(extractor, samples, len(dataset.catalog), memory_path, _template(args, model_path),
                          shard_size=getattr(args, "shard_size", 4096), overwrite=getattr(args, "overwrite", False),
                          model_name=str(model_path), log=_log)
    _log(f"memory: {len(memory)} entries of dimension {memory.hidden_size} at {memory_path} "
         f"({time.perf_counter() - start:.0f} s)")
    return model, tokenizer, memory


def _run_eval(args, dataset, model_path, memory_path, work_dir: pathlib.Path, title: str) -> dict:
    from pyl2d.l2d.evaluate import EvalConfig, evaluate, format_no_exclusion_table, format_table, save_plot
    from pyl2d.l2d.memory import MANIFEST, ItemMemory
    from pyl2d.l2d.memory_format import read_manifest

    manifest = pathlib.Path(memory_path, MANIFEST) if memory_path is not None else None
    if manifest is not None and manifest.is_file() and not args.overwrite and read_manifest(manifest)["complete"]:
        from pyl2d.l2d.hidden import load_model

        model, tokenizer = load_model(str(model_path), device=args.device)
        memory = ItemMemory.load(memory_path)
    else:  # build it, or resume an interrupted build
        model, tokenizer, memory = _build(args, model_path, dataset, memory_path or work_dir / "memory")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    config = EvalConfig(methods=methods, metric=args.metric, m=args.m, beams=args.beams,
                        batch_size=getattr(args, "batch_size", 64), time_queries=args.time_queries,
                        max_test=getattr(args, "max_test", None))
    result = evaluate(model, tokenizer, memory, dataset.train, dataset.test, dataset.catalog, config=config, log=_log)
    result["info"].update(data=dataset.name, model=str(model_path), memory=str(memory_path or work_dir / "memory"))
    _log("\nHistory excluded (item level; title R@10: D3-style title hit among the same history-excluded list; "
         "uniq R@10: targets with a unique title):")
    _log(format_table(result))
    _log("\nHistory not excluded (item level; title R@10: D3-style title hit):")
    _log(format_no_exclusion_table(result))
    if getattr(args, "output", None):
        pathlib.Path(args.output).write_text(json.dumps(result["records"], indent=2))
        pathlib.Path(args.output).with_suffix(".info.json").write_text(json.dumps(result["info"], indent=2))
        _log(f"results written to {args.output}")
    plot = getattr(args, "plot", None) or str(work_dir / "accuracy_vs_latency.png")
    if save_plot(result, plot, title=title):
        _log(f"plot saved to {plot}")
    else:
        _log("matplotlib is not installed: no plot (pip install matplotlib)")
    return result


# -- commands -------------------------------------------------------------------------------
def _demo(args) -> int:
    from pyl2d.l2d.train import DEMO_CONFIG, TrainConfig, train_model

    _setup(args)
    start = time.perf_counter()
    out = pathlib.Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    dataset = _dataset(args, n_users=args.users, n_items=args.items)
    _log(f"synthetic data: {len(dataset.catalog)} items, {len(dataset.train)} training and "
         f"{len(dataset.test)} test rows")
    config = TrainConfig(**{**DEMO_CONFIG, "max_minutes": args.minutes})
    train_model(dataset.catalog, dataset.train, out / "model", config, progress=not args.quiet, log=_log)
    ns = argparse.Namespace(**vars(args), methods=",".join(("l2d-global", "l2d-local", "grounded", "beam", "popularity")),
                            metric="l2", m=200, beams=10, overwrite=True, output=str(out / "results.json"),
                            plot=str(out / "accuracy_vs_latency.png"), layer=None, pooling="last",
                            batch_size=64, shard_size=4096)
    _run_eval(ns, dataset, out / "model", out / "memory", out, "pyl2d demo (synthetic data)")
    _log(f"demo finished in {time.perf_counter() - start:.0f} s")
    return 0


def _train(args) -> int:
    from pyl2d.l2d.train import train_model

    _setup(args)
    dataset = _dataset(args)
    train_model(dataset.catalog, dataset.train, args.output, _train_config(args), _template(args),
                progress=not args.quiet, log=_log)
    _log(f"model saved to {args.output}")
    return 0


def _build_memory(args) -> int:
    _setup(args)
    _build(args, args.model, _dataset(args), args.output)
    return 0


def _eval(args) -> int:
    from pyl2d.l2d.train import train_model

    _setup(args)
    dataset = _dataset(args)
    work_dir = pathlib.Path(args.work_dir or f"pyl2d-eval-{dataset.name}")
    work_dir.mkdir(parents=True, exist_ok=True)
    model_path = args.model
    if model_path is None:
        model_path = work_dir / "model"
        if args.memory:
            raise ValueError("--memory needs --model (the memory must come from the model evaluated)")
        train_model(dataset.catalog, dataset.train, model_path, _train_config(args), _template(args),
                    progress=not args.quiet, log=_log)
    _run_eval(args, dataset, model_path, args.memory, work_dir, f"pyl2d eval: {dataset.name}")
    return 0


def _recommend(args) -> int:
    from pyl2d.l2d.hidden import load_model
    from pyl2d.l2d.memory import ItemMemory
    from pyl2d.l2d.recommender import L2DRecommender

    _setup(args)
    dataset = _dataset(args)
    histories = []
    for text in args.history:
        try:
            histories.append([int(x) for x in text.replace(" ", "").split(",") if x])
        except ValueError:
            raise ValueError(f"--history {text!r}: expected comma-separated integer item ids") from None
    model, tokenizer = load_model(args.model, device=args.device)
    memory = ItemMemory.load(args.memory)
    rec = L2DRecommender(model, tokenizer, memory, dataset.catalog, metric=args.metric,
                         aggregation=args.aggregation, m=args.m)
    out = rec.recommend(histories, k=args.k, exclude_history=not args.keep_history)
    for history, ids, scores, titles in zip(histories, out.ids.tolist(), out.scores.tolist(), out.titles):
        _log("history: " + " | ".join(dataset.catalog.title(i) for i in history))
        for rank, (i, s, t) in enumerate(zip(ids, scores, titles), 1):
            if i >= 0:
                _log(f"  {rank:>3}. [{i}] {t}  (score {s:.4f})")
    return 0


if __name__ == "__main__":  # pragma: no cover
    from pyl2d.cli import main

    sys.exit(main())
