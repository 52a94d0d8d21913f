"""Config dataclasses of the L2D pipelines (``pyl2d.l2d.pipeline``), one per command.

They are the one place the pipelines' defaults live: ``pyl2d demo | train | build-memory |
eval | recommend`` take their flags' defaults from these fields, and a default also set by a
lower-level API (``make_synthetic``, ``build_memory``, ``L2DRecommender``...) is read from
there rather than restated. Model training and evaluation settings are the existing
:class:`~pyl2d.l2d.model.train.TrainConfig` and :class:`~pyl2d.l2d.evaluation.evaluate.EvalConfig`.
"""
from __future__ import annotations

import dataclasses
import inspect
import pathlib
from typing import Sequence

from pyl2d.l2d.data.folders import DataSource
from pyl2d.l2d.data.synthetic import make_synthetic
from pyl2d.l2d.decode.recommender import L2DRecommender
from pyl2d.l2d.decode.representation import Representation
from pyl2d.l2d.evaluation.evaluate import EvalConfig
from pyl2d.l2d.memory import build_memory
from pyl2d.l2d.model.finetune import FinetuneConfig
from pyl2d.l2d.model.train import DEMO_CONFIG, TrainConfig

DEMO_SEEDS = 3  # the demo's seeds: enough for a standard deviation next to each score

PathLike = str | pathlib.Path


def _default_of(func, name: str):
    """The default of parameter ``name`` of ``func``: reuse it instead of restating it."""
    return inspect.signature(func).parameters[name].default


def field_default(cls, name: str):
    """The default of dataclass field ``name`` of ``cls`` (its factory's value if it has one)."""
    field = next(f for f in dataclasses.fields(cls) if f.name == name)
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


@dataclasses.dataclass
class RuntimeConfig:
    """Where and how a pipeline runs. ``device=None``: CUDA when available; ``threads=None``:
    torch's choice (1 helps on a busy machine); ``progress``: tqdm bars; ``precision``: the
    number format models are loaded in for prefills and generation ("auto": float32 on a CPU,
    bf16/fp16 on a GPU; "bf16" on a CPU with AMX or AVX512-BF16 is several times faster).
    Fine-tuning has its own (``FinetuneConfig.precision``)."""
    device: str | None = None
    threads: int | None = None
    progress: bool = True
    precision: str = "auto"

    def __post_init__(self):
        from pyl2d.l2d.model.precision import check_precision

        check_precision(self.precision)


@dataclasses.dataclass
class MemoryConfig:
    """How an item memory is built: which hidden state (``layer=None``: the final normed one;
    an int: ``hidden_states[layer]``; a tuple of ints: the mean of those entries), pooled
    how, prefilled in what batches, stored in what shards. ``prefix_memory`` stores every
    prefix of each training history (what the tiny model is trained on); ``overwrite``
    replaces a memory built from something else."""
    layer: int | tuple[int, ...] | None = None
    pooling: str = "last"
    batch_size: int = field_default(EvalConfig, "batch_size")  # the CLI's --batch-size sets both
    shard_size: int = _default_of(build_memory, "shard_size")
    overwrite: bool = _default_of(build_memory, "overwrite")
    prefix_memory: bool = True


@dataclasses.dataclass
class DemoRun:
    """``pyl2d demo``: synthetic data, a tiny model trained for ``epochs`` per seed (``seeds``
    of them from ``seed``; ``minutes``: an optional wall-clock cap), its memory, and every
    method evaluated; models, memories, results.json and the plot go to ``output_dir``."""
    output_dir: PathLike = "pyl2d-demo"
    epochs: float = DEMO_CONFIG["epochs"]
    seeds: int = DEMO_SEEDS
    seed: int = field_default(TrainConfig, "seed")
    minutes: float | None = None
    users: int = _default_of(make_synthetic, "n_users")
    items: int = _default_of(make_synthetic, "n_items")
    time_queries: int = field_default(EvalConfig, "time_queries")
    runtime: RuntimeConfig = dataclasses.field(default_factory=RuntimeConfig)


@dataclasses.dataclass
class TrainRun:
    """``pyl2d train``: a tiny tokenizer + Llama trained on ``data`` (a D3/BIGRec folder;
    None: the built-in synthetic data set), saved to ``output``. ``max_history`` overrides
    the prompt's history length."""
    output: PathLike
    data: PathLike | DataSource | None = None
    training: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    max_history: int | None = None
    runtime: RuntimeConfig = dataclasses.field(default_factory=RuntimeConfig)


@dataclasses.dataclass
class FinetuneRun:
    """``pyl2d finetune``: the local checkpoint ``base`` fine-tuned (LoRA by default) on
    ``data``'s training rows (None: the synthetic data set) and saved to ``output`` with the
    prompt template (``template``: a JSON file of PromptTemplate fields, else pyl2d's default),
    which ``max_history`` overrides the history length of."""
    base: PathLike
    output: PathLike
    data: PathLike | DataSource | None = None
    finetuning: FinetuneConfig = dataclasses.field(default_factory=FinetuneConfig)
    max_history: int | None = None
    template: PathLike | None = None
    runtime: RuntimeConfig = dataclasses.field(default_factory=RuntimeConfig)


@dataclasses.dataclass
class BuildMemoryRun:
    """``pyl2d build-memory``: the memory of ``model`` on ``data``'s training rows (None: the
    synthetic data set), written to (or resumed in) ``output``, prompted with ``template`` (a
    JSON file of PromptTemplate fields; None: the model's training template, else the default,
    warned about). ``max_history`` overrides the template's history length."""
    model: PathLike
    output: PathLike
    data: PathLike | DataSource | None = None
    max_history: int | None = None
    template: PathLike | None = None
    memory: MemoryConfig = dataclasses.field(default_factory=MemoryConfig)
    runtime: RuntimeConfig = dataclasses.field(default_factory=RuntimeConfig)


@dataclasses.dataclass
class EvalRun:
    """``pyl2d eval``: L2D and the baselines on ``data``'s test rows. Without ``model`` a tiny
    one is trained (with ``training``, default ``TrainConfig()``) into ``work_dir``; without
    ``memory`` one is built there (or resumed). ``output``: also write the records as JSON
    (and the info next to it); ``plot``: default ``<work_dir>/accuracy_vs_latency.png``;
    ``work_dir``: default ``./pyl2d-eval-<data name>``. ``seeds``: train and evaluate that many
    models (seeds ``training.seed``, +1, ...) and report mean and standard deviation.
    ``template``: a JSON file of PromptTemplate fields to prompt with (None: the model's own)."""
    data: PathLike | DataSource
    model: PathLike | None = None
    memory: PathLike | None = None
    work_dir: PathLike | None = None
    output: PathLike | None = None
    plot: PathLike | None = None
    max_history: int | None = None
    template: PathLike | None = None
    evaluation: EvalConfig = dataclasses.field(default_factory=EvalConfig)
    training: TrainConfig | None = None
    seeds: int = 1
    build: MemoryConfig = dataclasses.field(default_factory=MemoryConfig)
    runtime: RuntimeConfig = dataclasses.field(default_factory=RuntimeConfig)


@dataclasses.dataclass
class RecommendRun:
    """``pyl2d recommend``: the top ``k`` items for each history (item ids, oldest first) from
    ``model`` and its ``memory``, with ``data``'s catalog (None: the synthetic one)."""
    model: PathLike
    memory: PathLike
    histories: Sequence[Sequence[int]]
    data: PathLike | DataSource | None = None
    k: int = _default_of(L2DRecommender.recommend, "k")
    aggregation: str = "local"  # unlike L2DRecommender's default (global): the more accurate one
    metric: str = _default_of(L2DRecommender, "metric")
    m: int = _default_of(L2DRecommender, "m")
    representation: Representation = field_default(EvalConfig, "representation")
    local_weight: float = field_default(EvalConfig, "local_weight")
    exclude_history: bool = _default_of(L2DRecommender.recommend, "exclude_history")
    template: PathLike | None = None
    runtime: RuntimeConfig = dataclasses.field(default_factory=RuntimeConfig)
