"""PERM as a verl reward function, for verl as it runs today (read from verl's code, main of
2026-01-29: ``verl/trainer/ppo/reward.py``, ``verl/experimental/reward_loop/`` and
``verl/workers/reward_manager/``).

verl calls a custom reward function (``custom_reward_function.path`` / ``name``, its
``reward_kwargs`` merged into every call) in one of three ways:

- **the reward loop** (``reward_model.use_reward_loop: true``, verl's default): each sample,
  as its rollout finishes, is scored by ``await compute_score(data_source=, solution_str=,
  ground_truth=, extra_info=, **reward_kwargs)``, many samples at once on one event loop
  (plus ``reward_router_address`` and ``reward_model_tokenizer`` when verl runs a reward
  model). Use :func:`compute_score_async` there: it is a coroutine function, so verl awaits
  it, and the samples awaiting on the loop are sent to the judge together, as one batch of
  up to ``batch_size`` samples, once ``batch_wait`` seconds pass after the first one;
- the legacy naive manager (``use_reward_loop: false``): the same call, synchronously, per
  sample: :func:`compute_score`;
- the legacy batch manager (``use_reward_loop: false`` and ``reward_manager.name: batch``):
  ``compute_score(data_sources=, solution_strs=, ground_truths=, extra_infos=,
  **reward_kwargs)`` once per batch, the manager's own kwargs (``max_resp_len``, ...) merged
  in: :func:`compute_score`.

::

    custom_reward_function:
      path: pkg://pyl2d.perm.verl
      name: compute_score_async          # compute_score with use_reward_loop: false
      reward_kwargs:
        judge_url: http://127.0.0.1:8000/v1
        judge_model: Qwen/Qwen2.5-7B-Instruct
        preset: perm-paper               # the reward's and the judge's settings
        tokenizer: ${actor_rollout_ref.model.path}   # counts completion tokens for the length term

``reward_kwargs`` holds ``judge_url``, ``judge_model``, ``preset``, ``nan_score`` (the score
of a completion nothing could score, default 0.0: verl rewards must be finite),
``tokenizer``, ``batch_size`` (default 64) and ``batch_wait`` (seconds, default 0.05), and any
keyword of ``OpenAIJudge`` or ``PERMReward``. A key of verl's own (``reward_router_address``,
``reward_model_tokenizer``) is accepted; any other key is ignored with one warning (verl
merges manager kwargs into the call), and a known key of the wrong type is an error.

The length term counts completion tokens, never words: verl passes text only, so each
completion is tokenized with ``tokenizer`` (a tokenizer name or folder, loaded once; from
Python also a tokenizer object), else with verl's ``reward_model_tokenizer`` when verl passes
one; with neither, a reward with a length term is an error. The judge's API key is read from
the environment variable ``api_key_env`` names (default OPENAI_API_KEY). Each sample's
``extra_info`` supplies the persona, scenario and query (keys as ``PERMReward``'s columns);
the returned dicts carry ``perm_unscorable`` so unscorable completions show in verl's logs.
"""
from __future__ import annotations

import asyncio
import inspect
import math
import numbers
import threading
import warnings
import weakref
from typing import Mapping

from pyl2d._checks import finite_number
from pyl2d.perm.reward import PERMReward

# reward_kwargs: these, then any keyword of OpenAIJudge or of PERMReward.
_OWN_KEYS = ("judge_url", "judge_model", "preset", "nan_score", "tokenizer", "batch_size", "batch_wait")
# What verl itself adds to the call (the reward loop, when it runs a reward model).
_VERL_KEYS = ("reward_router_address", "reward_model_tokenizer")
DEFAULT_BATCH_SIZE = 64
DEFAULT_BATCH_WAIT = 0.05
MAX_BATCH_WAIT = 60.0
_SCORERS: dict[tuple, "_Scorer"] = {}
_LOCK = threading.Lock()
_WARNED: set[str] = set()


def _keywords(func) -> set[str]:
    """The keyword-settable parameters of ``func`` (its signature is the one list of them)."""
    params = inspect.signature(func).parameters.values()
    return {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)} - {"self"}


def _sequence(name: str, values, n: int | None = None) -> list:
    """``values`` as a list (a list, tuple or numpy array; never a str or a mapping), of
    length ``n`` when given."""
    if isinstance(values, (str, bytes, Mapping)) or not hasattr(values, "__len__") or not hasattr(values, "__iter__"):
        raise ValueError(f"{name} must be a list with one entry per sample, got {type(values).__name__}")
    out = list(values)
    if n is not None and len(out) != n:
        raise ValueError(f"{name} has {len(out)} entries but solution_strs has {n}; they must match one to one")
    return out


def _text(name: str, value) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be the completion's text (a str), got {type(value).__name__}")
    return value


def _field(info, name: str) -> str:
    if info is None:
        return ""
    if not hasattr(info, "get"):
        raise ValueError(f"extra_info must be a dict (with persona / scenario / query), got {type(info).__name__}")
    value = info.get(name)
    return "" if value is None else str(value)


def _load_tokenizer(tokenizer):
    """A tokenizer object from a name or folder (loaded once per name), or the object itself."""
    if isinstance(tokenizer, str):
        return _tokenizer_named(tokenizer)
    if not callable(getattr(tokenizer, "encode", None)):
        raise ValueError(f"tokenizer must be a tokenizer name or folder, or an object with encode(), got "
                         f"{type(tokenizer).__name__}")
    return tokenizer


_TOKENIZERS: dict[str, object] = {}


def _tokenizer_named(name: str):
    with _LOCK:
        if name not in _TOKENIZERS:
            from transformers import AutoTokenizer

            try:
                _TOKENIZERS[name] = AutoTokenizer.from_pretrained(name)
            except (OSError, ValueError) as exc:
                raise ValueError(f"reward_kwargs tokenizer {name!r} could not be loaded: {exc}") from None
        return _TOKENIZERS[name]


class _Scorer:
    """One configured reward: scores lists of samples, sync or async, and batches the
    reward loop's concurrent per-sample calls (one batcher per event loop)."""

    def __init__(self, reward: PERMReward, nan_score: float = 0.0, tokenizer=None,
                 batch_size: int = DEFAULT_BATCH_SIZE, batch_wait: float = DEFAULT_BATCH_WAIT):
        if not isinstance(reward, PERMReward):
            raise ValueError(f"reward must be a PERMReward, got {type(reward).__name__}")
        self.reward = reward
        self.nan_score = finite_number("nan_score", nan_score)
        self.tokenizer = None if tokenizer is None else _load_tokenizer(tokenizer)
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.batch_size = int(batch_size)
        self.batch_wait = finite_number("batch_wait", batch_wait, nonnegative=True)
        if self.batch_wait > MAX_BATCH_WAIT:
            raise ValueError(f"batch_wait must be at most {MAX_BATCH_WAIT:g} seconds, got {batch_wait!r}")
        self.batch_sizes: list[int] = []  # the judge batches sent by the async form, in order
        self._batchers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    # -- one batch of samples
    def _inputs(self, texts: list[str], infos: list, verl_tokenizer) -> dict:
        columns = {name: [_field(info, name) for info in infos] for name in self.reward.columns.values()}
        inputs = {"prompts": None, "completions": texts, **columns}
        if self.reward.length_limit is not None:
            tokenizer = self.tokenizer or verl_tokenizer
            if tokenizer is None:
                raise ValueError("the reward's length term counts completion tokens, and verl passes text only: set "
                                 "reward_kwargs tokenizer (e.g. ${actor_rollout_ref.model.path}), or drop the term "
                                 "(length_limit: null)")
            if not callable(getattr(tokenizer, "encode", None)):
                raise ValueError(f"reward_model_tokenizer must be a tokenizer (with encode()), got "
                                 f"{type(tokenizer).__name__}")
            inputs["completion_ids"] = [tokenizer.encode(t, add_special_tokens=False) for t in texts]
        return inputs

    def _results(self, rewards: list[float]) -> list[dict]:
        return [{"score": self.nan_score if math.isnan(r) else r, "perm_unscorable": math.isnan(r)} for r in rewards]

    def score(self, texts: list[str], infos: list, verl_tokenizer=None) -> list[dict]:
        return self._results(self.reward(**self._inputs(texts, infos, verl_tokenizer)))

    async def ascore(self, texts: list[str], infos: list, verl_tokenizer=None) -> list[dict]:
        return self._results(await self.reward.acall(**self._inputs(texts, infos, verl_tokenizer)))

    # -- the reward loop's per-sample calls, batched
    async def submit(self, text: str, info, verl_tokenizer) -> dict:
        loop = asyncio.get_running_loop()
        batcher = self._batchers.get(loop)
        if batcher is None:
            batcher = self._batchers[loop] = _Batcher(self, loop)
        return await batcher.submit((text, info, verl_tokenizer))


class _Batcher:
    """Collects the samples awaiting on one event loop; sends them as one judge batch when
    ``batch_size`` are waiting or ``batch_wait`` seconds after the first arrived."""

    def __init__(self, scorer: _Scorer, loop: asyncio.AbstractEventLoop):
        self.scorer, self.loop = scorer, loop
        self.pending: list[tuple[tuple, asyncio.Future]] = []
        self.timer: asyncio.TimerHandle | None = None
        self.tasks: set[asyncio.Task] = set()

    async def submit(self, sample: tuple) -> dict:
        future = self.loop.create_future()
        self.pending.append((sample, future))
        if len(self.pending) >= self.scorer.batch_size:
            self.flush()
        elif self.timer is None:
            self.timer = self.loop.call_later(self.scorer.batch_wait, self.flush)
        return await future

    def flush(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        batch, self.pending = self.pending, []
        if batch:
            task = self.loop.create_task(self._run(batch))
            self.tasks.add(task)  # keep a reference until it is done
            task.add_done_callback(self.tasks.discard)

    async def _run(self, batch) -> None:
        samples = [s for s, _ in batch]
        self.scorer.batch_sizes.append(len(samples))
        try:
            tokenizer = next((t for _, _, t in samples if t is not None), None)
            results = await self.scorer.ascore([t for t, _, _ in samples], [i for _, i, _ in samples], tokenizer)
        except BaseException as exc:  # every waiting sample gets the error: none is lost or left waiting
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc if isinstance(exc, Exception) else RuntimeError(repr(exc)))
            if not isinstance(exc, Exception):
                raise
            return
        for (_, future), result in zip(batch, results):
            if not future.done():  # a caller that gave up (cancelled) is skipped
                future.set_result(result)


def _check_batch(solution_strs, data_sources, ground_truths, extra_infos) -> tuple[list[str], list]:
    texts = [_text(f"solution_strs[{i}]", t) for i, t in enumerate(_sequence("solution_strs", solution_strs))]
    n = len(texts)
    for name, values in (("data_sources", data_sources), ("ground_truths", ground_truths)):
        if values is not None:
            _sequence(name, values, n)
    infos = [None] * n if extra_infos is None else _sequence("extra_infos", extra_infos, n)
    return texts, infos


def make_compute_score(reward: PERMReward, nan_score: float = 0.0, tokenizer=None):
    """A sync verl ``compute_score`` (per sample or per batch) scoring with ``reward``;
    ``tokenizer`` counts completion tokens when the reward has a length term."""
    scorer = _Scorer(reward, nan_score, tokenizer)

    def compute_score(data_source=None, solution_str=None, ground_truth=None, extra_info=None, *,
                      data_sources=None, solution_strs=None, ground_truths=None, extra_infos=None,
                      reward_model_tokenizer=None, **_verl):
        if solution_strs is not None:
            texts, infos = _check_batch(solution_strs, data_sources, ground_truths, extra_infos)
            return scorer.score(texts, infos, reward_model_tokenizer)
        return scorer.score([_text("solution_str", solution_str)], [extra_info], reward_model_tokenizer)[0]
    compute_score.perm = reward
    compute_score.scorer = scorer
    return compute_score


def make_async_compute_score(reward: PERMReward, nan_score: float = 0.0, tokenizer=None, *,
                             batch_size: int = DEFAULT_BATCH_SIZE, batch_wait: float = DEFAULT_BATCH_WAIT):
    """An async verl ``compute_score`` for the reward loop: per-sample calls awaiting together
    are scored as one judge batch (see the module docstring)."""
    scorer = _Scorer(reward, nan_score, tokenizer, batch_size, batch_wait)

    async def compute_score(data_source=None, solution_str=None, ground_truth=None, extra_info=None, *,
                            reward_model_tokenizer=None, **_verl):
        return await scorer.submit(_text("solution_str", solution_str), extra_info, reward_model_tokenizer)
    compute_score.perm = reward
    compute_score.scorer = scorer
    return compute_score


def _warn_unknown(unknown: list[str], allowed: list[str]) -> None:
    new = [k for k in unknown if k not in _WARNED]
    if new:
        _WARNED.update(new)
        warnings.warn(f"pyl2d.perm.verl ignores reward_kwargs {new} (not pyl2d's; verl merges manager kwargs into "
                      f"the call); pyl2d's are {allowed}", RuntimeWarning, stacklevel=4)


def _check_judge_options(options: dict) -> None:
    """Types OpenAIJudge would send as they are (a "0.3" temperature would reach the server)."""
    if "temperature" in options:
        finite_number("reward_kwargs temperature", options["temperature"], nonnegative=True)
    if "max_tokens" in options:
        v = options["max_tokens"]
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
            raise ValueError(f"reward_kwargs max_tokens must be a positive int, got {v!r}")
    if "extra_body" in options and options["extra_body"] is not None and not isinstance(options["extra_body"],
                                                                                          Mapping):
        raise ValueError(f"reward_kwargs extra_body must be a mapping, got {type(options['extra_body']).__name__}")


def _scorer_from(kwargs: dict) -> _Scorer:
    """The scorer a config describes, built once per distinct config (judge clients are
    reused across verl's calls)."""
    from pyl2d.perm.judges import OpenAIJudge
    from pyl2d.perm.presets import check_preset, judge_options

    judge_keys = _keywords(OpenAIJudge.__init__) - {"base_url", "model"}
    reward_keys = _keywords(PERMReward.__init__) - {"judge"}
    mine = set(_OWN_KEYS) | judge_keys | reward_keys
    unknown = sorted(k for k in kwargs if k not in mine and k not in _VERL_KEYS)
    if unknown:
        _warn_unknown(unknown, sorted(mine))
    config = {k: v for k, v in kwargs.items() if k in mine}
    key = tuple(sorted((k, repr(v)) for k, v in config.items()))
    with _LOCK:
        scorer = _SCORERS.get(key)
    if scorer is not None:
        return scorer
    if "judge_url" not in config or "judge_model" not in config:
        raise ValueError("pyl2d.perm.verl.compute_score needs reward_kwargs judge_url and judge_model")
    if not isinstance(config["judge_model"], str) or not config["judge_model"]:
        raise ValueError(f"reward_kwargs judge_model must be a model name (a str), got {config['judge_model']!r}")
    preset = config.get("preset")
    if preset is not None:
        check_preset(preset)
    judge_settings = {**(judge_options(preset) if preset else {}),
                      **{k: v for k, v in config.items() if k in judge_keys}}
    _check_judge_options(judge_settings)
    judge = OpenAIJudge(config["judge_url"], config["judge_model"], **judge_settings)
    options = {k: v for k, v in config.items() if k in reward_keys}
    reward = PERMReward.from_preset(preset, judge, **options) if preset else PERMReward(judge, **options)
    scorer = _Scorer(reward, config.get("nan_score", 0.0), config.get("tokenizer"),
                     config.get("batch_size", DEFAULT_BATCH_SIZE), config.get("batch_wait", DEFAULT_BATCH_WAIT))
    with _LOCK:
        return _SCORERS.setdefault(key, scorer)


def compute_score(data_source=None, solution_str=None, ground_truth=None, extra_info=None, *, data_sources=None,
                  solution_strs=None, ground_truths=None, extra_infos=None, **reward_kwargs):
    """verl's sync entry point, per sample (naive manager) or per batch (batch manager):
    the reward is configured by ``reward_kwargs`` (see the module docstring)."""
    scorer = _scorer_from(reward_kwargs)
    verl_tokenizer = reward_kwargs.get("reward_model_tokenizer")
    if solution_strs is not None:
        texts, infos = _check_batch(solution_strs, data_sources, ground_truths, extra_infos)
        return scorer.score(texts, infos, verl_tokenizer)
    return scorer.score([_text("solution_str", solution_str)], [extra_info], verl_tokenizer)[0]


async def compute_score_async(data_source=None, solution_str=None, ground_truth=None, extra_info=None,
                              **reward_kwargs):
    """verl's reward-loop entry point (``use_reward_loop: true``): awaited once per sample;
    the samples awaiting together are scored as one judge batch."""
    scorer = _scorer_from(reward_kwargs)
    return await scorer.submit(_text("solution_str", solution_str), extra_info,
                               reward_kwargs.get("reward_model_tokenizer"))
