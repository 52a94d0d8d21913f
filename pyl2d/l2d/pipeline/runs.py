"""The L2D pipelines, callable from Python: what ``pyl2d demo | train | finetune | build-memory |
eval | recommend`` run, each taking its config from :mod:`pyl2d.l2d.pipeline.config`.

Each reports progress through ``log`` (one line per call; the CLI prints it) and shows tqdm
bars unless ``runtime.progress`` is False. A memory build interrupted part-way resumes from
its last complete shard when run again with the same settings. Bad input raises ValueError or
OSError (the CLI turns them into ``pyl2d <command>: error: ...``)::

    from pyl2d.l2d.pipeline import EvalRun, run_eval
    result = run_eval(EvalRun(data="data/games", model="ckpt", memory="ckpt-memory"))
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import time
from typing import Callable

from pyl2d._io import read_json
from pyl2d.l2d.data.records import with_history
from pyl2d.l2d.evaluation.evaluate import EvalConfig
from pyl2d.l2d.pipeline.config import (BuildMemoryRun, DemoRun, EvalRun, FinetuneRun, MemoryConfig, PathLike,
                                       RecommendRun, RuntimeConfig, TrainRun, field_default)
from pyl2d.l2d.model.train import DEMO_CONFIG, MAX_RECORD_BYTES, TRAINING_INFO, TrainConfig

Log = Callable[[str], None]
DEMO_M = 200  # nearest memory entries for L2D-local in the demo (its memory is small)

__all__ = ["BuildMemoryRun", "DemoRun", "EvalRun", "FinetuneRun", "MemoryConfig", "RecommendRun", "RuntimeConfig",
           "TrainRun", "field_default", "load_dataset", "prompt_template", "run_build_memory", "run_demo", "run_eval",
           "run_finetune", "run_recommend", "run_train", "seed_list", "train_or_reuse"]


# -- steps ----------------------------------------------------------------------------------
def _setup(runtime: RuntimeConfig) -> None:
    import torch

    from pyl2d.l2d.model.precision import resolve_precision

    # A precision the device cannot run fails now, not after a model is trained for it.
    resolve_precision(runtime.precision, runtime.device)
    if runtime.threads:
        torch.set_num_threads(runtime.threads)
    if not runtime.progress:  # --quiet: transformers' own bars (loading, saving weights) too
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()


def load_dataset(data, n_users: int | None = None, n_items: int | None = None, log: Log | None = None):
    """``data``'s folder (a path or a :class:`~pyl2d.l2d.data.folders.DataSource`: D3/BIGRec or
    MiniOneRec), or (``data=None``) the built-in synthetic data set; ``log`` says what loaded."""
    from pyl2d.l2d.data.folders import load_folder
    from pyl2d.l2d.data.synthetic import make_synthetic

    if not data:
        sizes = {k: v for k, v in (("n_users", n_users), ("n_items", n_items)) if v is not None}
        return make_synthetic(**sizes)
    dataset = load_folder(data)
    if log is not None:
        log(f"data {dataset.name}: {len(dataset.train)} training rows ({dataset.train_split}), "
            f"{len(dataset.test)} test rows, {len(dataset.catalog)} items")
    return dataset


def prompt_template(model_path: PathLike | None = None, max_history: int | None = None,
                    template_file: PathLike | None = None, log: Log | None = None):
    """The prompt template: ``template_file``'s (a JSON object of PromptTemplate fields, for a
    checkpoint trained with another project's prompt), else the one the model was trained with
    (``pyl2d train`` and ``finetune`` write it next to the model), else the default, which
    ``log`` (when given) warns about; ``max_history`` overrides the history length."""
    from pyl2d.l2d.data.prompts import DEFAULT_PROMPT, PromptTemplate, load_template

    template = DEFAULT_PROMPT
    info = pathlib.Path(model_path, TRAINING_INFO) if model_path else None
    if template_file:
        template = load_template(template_file)
    elif info is not None and os.path.lexists(info):  # a FIFO or dangling link is an error, not the default
        try:
            template = PromptTemplate(**read_json(info, MAX_RECORD_BYTES, "a pyl2d training record")["template"])
        except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:  # ValueError: bad JSON or template
            why = (f"no {exc} entry" if isinstance(exc, KeyError) else exc.strerror if isinstance(exc, OSError)
                   else str(exc).splitlines()[0][:200])
            raise ValueError(f"{info}: not a pyl2d training record with a prompt template ({why}); "
                             f"retrain, or remove the file to prompt with the default template") from None
    elif info is not None and log is not None:
        log(f"warning: {model_path} has no {TRAINING_INFO} recording its prompt template; prompting with pyl2d's "
            "default. A checkpoint fine-tuned elsewhere (BIGRec, D3, MiniOneRec) needs its own prompt: give "
            "--template FILE (a JSON object of PromptTemplate fields, see docs/l2d.md)")
    if max_history:
        template = dataclasses.replace(template, max_history=max_history)
    return template


@dataclasses.dataclass(frozen=True)
class _Prompt:
    """The prompt options of a run: a template file (None: the model's own) and a history length."""
    file: PathLike | None = None
    max_history: int | None = None


def _build(model_path, dataset, memory_path, memory: MemoryConfig, runtime: RuntimeConfig,
           prompt: _Prompt, log: Log):
    """(model, tokenizer, memory), the memory built into ``memory_path`` or resumed there."""
    from pyl2d.l2d.data.records import prefix_augment
    from pyl2d.l2d.model.hidden import HiddenStateExtractor, load_model
    from pyl2d.l2d.memory import build_memory

    model, tokenizer = load_model(str(model_path), device=runtime.device, precision=runtime.precision)
    extractor = HiddenStateExtractor(model, tokenizer, layer=memory.layer, pooling=memory.pooling,
                                     batch_size=memory.batch_size, progress=runtime.progress)
    start = time.perf_counter()
    samples = prefix_augment(dataset.train) if memory.prefix_memory else dataset.train
    item_memory = build_memory(extractor, samples, len(dataset.catalog), memory_path,
                               prompt_template(model_path, prompt.max_history, prompt.file, log),
                               shard_size=memory.shard_size,
                               overwrite=memory.overwrite, model_name=str(model_path), log=log)
    log(f"memory: {len(item_memory)} entries of dimension {item_memory.hidden_size} at {memory_path} "
        f"({time.perf_counter() - start:.0f} s)")
    return model, tokenizer, item_memory


def _load_or_build(model_path, dataset, memory_path, work_dir: pathlib.Path, memory: MemoryConfig,
                   runtime: RuntimeConfig, prompt: _Prompt, log: Log):
    """Load a complete memory at ``memory_path`` (unless ``memory.overwrite``); else build it,
    or resume an interrupted build, there (default ``<work_dir>/memory``)."""
    from pyl2d.l2d.model.hidden import load_model
    from pyl2d.l2d.memory import MANIFEST, ItemMemory
    from pyl2d.l2d.memory.manifest import read_manifest

    manifest = pathlib.Path(memory_path, MANIFEST) if memory_path is not None else None
    if manifest is not None and manifest.is_file() and not memory.overwrite and read_manifest(manifest)["complete"]:
        model, tokenizer = load_model(str(model_path), device=runtime.device, precision=runtime.precision)
        return model, tokenizer, ItemMemory.load(memory_path)
    return _build(model_path, dataset, memory_path or work_dir / "memory", memory, runtime, prompt, log)


def _report(result: dict, output: PathLike | None, plot: PathLike, title: str, log: Log) -> None:
    """Log both tables; write the JSON (records, and info next to it) and the plot."""
    from pyl2d.l2d.evaluation.evaluate import format_calc_table, format_no_exclusion_table, format_table, save_plot

    from pyl2d.l2d.evaluation.spread import spread_label

    log(f"\nScores: {spread_label(result)}.")
    log("History excluded (item level; title R@10: D3-style title hit among the same history-excluded list; "
        "uniq R@10: targets with a unique title):")
    log(format_table(result))
    log("\nHistory not excluded (item level; title R@10: D3-style title hit):")
    log(format_no_exclusion_table(result))
    log("\nHR/NDCG in the calc.py convention of BIGRec/D3/MiniOneRec (title match on the whole list, history not "
        "excluded; see docs/l2d.md), to compare with published tables:")
    log(format_calc_table(result))
    if output:
        pathlib.Path(output).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(output).write_text(json.dumps(result["records"], indent=2))
        pathlib.Path(output).with_suffix(".info.json").write_text(json.dumps(result["info"], indent=2))
        log(f"results written to {output}")
    if save_plot(result, str(plot), title=title):
        log(f"plot saved to {plot}")
    else:
        log("matplotlib is not installed: no plot (pip install matplotlib)")


def _evaluate_one(dataset, model_path, memory_path, work_dir: pathlib.Path, *, evaluation: EvalConfig,
                  memory: MemoryConfig, runtime: RuntimeConfig, prompt: _Prompt, log: Log) -> dict:
    from pyl2d.l2d.evaluation.evaluate import evaluate

    model, tokenizer, item_memory = _load_or_build(model_path, dataset, memory_path, work_dir, memory, runtime,
                                                   prompt, log)
    # A template file given for a memory built before is checked against the memory's (evaluate warns).
    given = prompt_template(None, prompt.max_history, prompt.file) if prompt.file else None
    result = evaluate(model, tokenizer, item_memory, dataset.train, dataset.test, dataset.catalog,
                      template=given, config=evaluation, log=log, progress=runtime.progress)
    result["info"].update(data=dataset.name, model=str(model_path), memory=str(memory_path or work_dir / "memory"))
    return result


def train_or_reuse(dataset, model_path: pathlib.Path, training: TrainConfig, max_history: int | None,
                    runtime: RuntimeConfig, log: Log, template_file: PathLike | None = None) -> None:
    """Train into ``model_path`` unless it already holds the model this training would give."""
    from pyl2d.l2d.model.train import train_model, trained_with

    template = prompt_template(None, max_history, template_file)
    if trained_with(model_path, dataset.train, training, template):
        log(f"reusing the model at {model_path} (trained on the same data with the same config and seed)")
        return
    train_model(dataset.catalog, dataset.train, model_path, training, template, progress=runtime.progress, log=log)


def seed_list(first: int, count: int) -> list[int]:
    """The seeds of a ``--seeds count`` run: ``first, first + 1, ...``."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"seeds must be a positive int, got {count!r}")
    return list(range(first, first + count))


def _train_and_evaluate(dataset, work_dir: pathlib.Path, training: TrainConfig, seeds: int, *,
                        evaluation: EvalConfig, memory: MemoryConfig, runtime: RuntimeConfig,
                        prompt: _Prompt, log: Log) -> dict:
    """Train one model per seed (``<work_dir>/model``, or ``<work_dir>/seed-<s>/model`` for
    several), build its memory, evaluate; the seeds' results combined."""
    from pyl2d.l2d.evaluation.spread import combine_seeds

    seeds_used = seed_list(training.seed, seeds)
    results = []
    for seed in seeds_used:
        timed = evaluation if not results else dataclasses.replace(evaluation, timing=False)  # latency: seed 1 only
        seed_dir = work_dir / f"seed-{seed}" if len(seeds_used) > 1 else work_dir
        if evaluation.calc_output and len(seeds_used) > 1:  # one result file per method and seed
            timed = dataclasses.replace(timed, calc_output=str(pathlib.Path(evaluation.calc_output, f"seed-{seed}")))
        if len(seeds_used) > 1:
            log(f"\n== seed {seed} ({len(results) + 1} of {len(seeds_used)}) ==")
        train_or_reuse(dataset, seed_dir / "model", dataclasses.replace(training, seed=seed), prompt.max_history,
                        runtime, log, prompt.file)
        results.append(_evaluate_one(dataset, seed_dir / "model", None, seed_dir, evaluation=timed,
                                     memory=memory, runtime=runtime, prompt=prompt, log=log))
    return combine_seeds(results, seeds_used)


# -- pipelines ------------------------------------------------------------------------------
def run_demo(config: DemoRun | None = None, log: Log = print) -> dict:
    """Synthetic data, a tiny model per seed, its memory, every method evaluated: the
    evaluation result ({"records", "info"}); models, memories, results.json and the plot are
    in ``output_dir``."""
    config = config or DemoRun()
    _setup(config.runtime)
    start = time.perf_counter()
    out = pathlib.Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    dataset = load_dataset(None, n_users=config.users, n_items=config.items)
    log(f"synthetic data: {len(dataset.catalog)} items, {len(dataset.train)} training and "
        f"{len(dataset.test)} test rows")
    training = TrainConfig(**{**DEMO_CONFIG, "epochs": config.epochs, "max_minutes": config.minutes,
                              "seed": config.seed})
    result = _train_and_evaluate(dataset, out, training, config.seeds,
                                 evaluation=EvalConfig(m=DEMO_M, time_queries=config.time_queries),
                                 memory=MemoryConfig(overwrite=True), runtime=config.runtime, prompt=_Prompt(),
                                 log=log)
    _report(result, str(out / "results.json"), str(out / "accuracy_vs_latency.png"), "pyl2d demo (synthetic data)",
            log)
    log(f"demo finished in {time.perf_counter() - start:.0f} s")
    return result


def run_train(config: TrainRun, log: Log = print) -> pathlib.Path:
    """Train a tiny tokenizer + Llama and save both to ``config.output`` (returned)."""
    from pyl2d.l2d.model.train import train_model

    _setup(config.runtime)
    dataset = load_dataset(config.data, log=log)
    train_model(dataset.catalog, dataset.train, config.output, config.training,
                prompt_template(None, config.max_history), progress=config.runtime.progress, log=log)
    log(f"model saved to {config.output}; next: {_next_build_memory(config.output, config.data)}")
    return pathlib.Path(config.output)


def run_finetune(config: FinetuneRun, log: Log = print) -> pathlib.Path:
    """Fine-tune ``config.base`` on the training rows and save it to ``config.output`` (returned).
    Under a launcher (``torchrun`` or ``accelerate launch``: WORLD_SIZE > 1) every process
    trains data-parallel on its share of each batch, through the Trainer; rank 0 logs and saves."""
    from pyl2d.distributed.launch import launched_rank
    from pyl2d.l2d.model.finetune import finetune_model
    from pyl2d.l2d.model.gguf import resolve

    _setup(config.runtime)
    dataset = load_dataset(config.data, log=log if launched_rank() == 0 else None)
    finetune_model(resolve(config.base, log=log), dataset.catalog, dataset.train, config.output, config.finetuning,
                   prompt_template(None, config.max_history, config.template), device=config.runtime.device,
                   progress=config.runtime.progress, log=log)
    if launched_rank() == 0:
        log(f"model saved to {config.output}; next: {_next_build_memory(config.output, config.data)}")
    return pathlib.Path(config.output)


def run_build_memory(config: BuildMemoryRun, log: Log = print):
    """Build (or resume) the memory of ``config.model`` in ``config.output``: the ItemMemory.
    Under a distributed launcher (torchrun: WORLD_SIZE > 1) every rank encodes its share
    of the shards on its own device (:mod:`pyl2d.l2d.memory.build`); rank 0 logs."""
    from pyl2d.distributed.launch import process_group

    _setup(config.runtime)
    if config.template:
        prompt_template(None, None, config.template)  # a bad file fails before anything is written
    with process_group(config.runtime.device) as (rank, world, device):
        if rank == 0 and world > 1:
            log(f"data-parallel memory build on {world} ranks (rank 0 on {device})")
        runtime = dataclasses.replace(config.runtime, device=device, progress=config.runtime.progress and rank == 0)
        memory = _build(config.model, load_dataset(config.data, log=log if rank == 0 else None), config.output,
                        config.memory, runtime, _Prompt(config.template, config.max_history),
                        log if rank == 0 else _silent)[2]
    if rank == 0:
        common = f"--model {config.model} --memory {config.output} --data {_data_arg(config.data)}"
        log(f"next: pyl2d eval {common}, or pyl2d recommend {common} --history ID,ID,...")
    return memory


def _silent(*_args) -> None:
    pass


def _data_arg(data) -> str:
    """``data`` as the --data value that names it again (a DataSource's folder and category)."""
    from pyl2d.l2d.data.folders import DataSource

    if isinstance(data, DataSource):
        return f"{data.path}" + (f" --category {data.category}" if data.category else "")
    return str(data) if data else "DATA"


def _next_build_memory(model, data) -> str:
    """The command that follows a trained or fine-tuned model: its memory."""
    return f"pyl2d build-memory --model {model} --data {_data_arg(data)} --output {model}-memory"


def run_eval(config: EvalRun, log: Log = print) -> dict:
    """Evaluate L2D and the baselines (training a model per seed and building its memory when
    no model is given): {"records": one dict per method, "info": what was evaluated}."""
    # Argument errors first, so that a refused run leaves no work folder behind.
    if config.model is None and config.memory:
        raise ValueError("--memory needs --model (the memory must come from the model evaluated)")
    if config.model is not None and config.seeds != 1:
        raise ValueError(f"--seeds {config.seeds} needs models to train (without --model); a given model "
                         "has one seed, whose test-query spread is reported as a bootstrap interval")
    if config.template:
        prompt_template(None, None, config.template)  # a bad file fails before anything is written
    _setup(config.runtime)
    dataset = load_dataset(config.data, log=log)
    with_history(dataset.test, "test")  # checked now, not after a model is trained for it
    if config.model is None:
        with_history(dataset.train, "training")
    work_dir = pathlib.Path(config.work_dir or f"pyl2d-eval-{dataset.name}")
    work_dir.mkdir(parents=True, exist_ok=True)
    plot = config.plot or str(work_dir / "accuracy_vs_latency.png")
    title = f"pyl2d eval: {dataset.name}"
    if config.model is None:
        result = _train_and_evaluate(dataset, work_dir, config.training or TrainConfig(), config.seeds,
                                     evaluation=config.evaluation, memory=config.build, runtime=config.runtime,
                                     prompt=_Prompt(config.template, config.max_history), log=log)
    else:
        from pyl2d.l2d.evaluation.spread import combine_seeds

        result = combine_seeds([_evaluate_one(dataset, config.model, config.memory, work_dir,
                                              evaluation=config.evaluation, memory=config.build,
                                              runtime=config.runtime,
                                              prompt=_Prompt(config.template, config.max_history), log=log)],
                               [None])
    _report(result, config.output, plot, title, log)
    return result


def run_recommend(config: RecommendRun, log: Log = print):
    """Recommend with L2D from one prefill per history; logs each history's titles and its top
    ``k`` and returns the :class:`~pyl2d.l2d.decode.recommender.Recommendations`."""
    from pyl2d.l2d.model.hidden import load_model
    from pyl2d.l2d.memory import ItemMemory
    from pyl2d.l2d.decode.recommender import L2DRecommender

    _setup(config.runtime)
    if config.template:
        prompt_template(None, None, config.template)  # a bad file fails before the model loads
    dataset = load_dataset(config.data)
    histories = [list(h) for h in config.histories]
    model, tokenizer = load_model(str(config.model), device=config.runtime.device,
                                  precision=config.runtime.precision)
    memory = ItemMemory.load(config.memory)
    template = prompt_template(None, None, config.template) if config.template else None  # None: the memory's
    rec = L2DRecommender(model, tokenizer, memory, dataset.catalog, metric=config.metric, template=template,
                         aggregation=config.aggregation, m=config.m, representation=config.representation,
                         local_weight=config.local_weight if config.aggregation == "local" else 1.0)
    out = rec.recommend(histories, k=config.k, exclude_history=config.exclude_history)
    for history, ids, scores, titles in zip(histories, out.ids.tolist(), out.scores.tolist(), out.titles):
        log("history: " + " | ".join(dataset.catalog.title(i) for i in history))
        for rank, (i, s, t) in enumerate(zip(ids, scores, titles), 1):
            if i >= 0:
                log(f"  {rank:>3}. [{i}] {t}  (score {s:.4f})")
    return out
