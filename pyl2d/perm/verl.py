"""PERM as a verl reward function.

verl calls a custom reward function in one of two forms: per sample,
``compute_score(data_source, solution_str, ground_truth, extra_info)`` (the naive reward
manager), or per batch, ``compute_score(data_sources=, solution_strs=, ground_truths=,
extra_infos=)`` (``reward_model.reward_manager=batch``, which lets the judge see the whole
batch at once: use it). :func:`compute_score` here takes both. Point verl at this file::

    custom_reward_function:
      path: <site-packages>/pyl2d/perm/verl.py    # python -c "import pyl2d.perm.verl as v; print(v.__file__)"
      name: compute_score
      reward_kwargs:
        judge_url: http://127.0.0.1:8000/v1       # an OpenAI-compatible server (vLLM, SGLang)
        judge_model: Qwen/Qwen2.5-7B-Instruct
        preset: perm-paper                        # or mode / bystander_coef / ... one by one
    reward_model:
      reward_manager: batch

The judge's API key is read from the environment variable ``api_key_env`` names (default
OPENAI_API_KEY), never from the config. Each sample's ``extra_info`` supplies the persona,
scenario and query (keys as ``PERMReward``'s columns); ``solution_str`` is the completion. A
completion nothing could score gets ``nan_score`` (default 0.0: verl has no missing reward),
and the returned dicts carry ``perm_unscorable`` so it shows in verl's logs.
"""
from __future__ import annotations

import inspect
import math
import threading

from pyl2d.perm.reward import PERMReward

_REWARDS: dict[tuple, PERMReward] = {}
_LOCK = threading.Lock()
# reward_kwargs: judge_url / judge_model, then any keyword of OpenAIJudge or of PERMReward.
_OWN_KEYS = ("judge_url", "judge_model", "preset", "nan_score")


def _keywords(func) -> set[str]:
    """The keyword-settable parameters of ``func`` (its signature is the one list of them)."""
    params = inspect.signature(func).parameters.values()
    return {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)} - {"self"}


def make_compute_score(reward: PERMReward, nan_score: float = 0.0):
    """A verl ``compute_score`` (both forms) scoring with ``reward``."""
    def compute_score(data_source=None, solution_str=None, ground_truth=None, extra_info=None, *,
                      data_sources=None, solution_strs=None, ground_truths=None, extra_infos=None, **_unused):
        batch = solution_strs is not None
        texts = [str(t) for t in solution_strs] if batch else [str(solution_str)]
        infos = list(extra_infos) if batch and extra_infos is not None else [extra_info] * len(texts)
        if len(infos) != len(texts):
            raise ValueError(f"extra_infos has {len(infos)} entries but solution_strs has {len(texts)}")
        columns = {name: [_field(info, name) for info in infos] for name in reward.columns.values()}
        rewards = reward(prompts=None, completions=texts, **columns)
        out = [{"score": nan_score if math.isnan(r) else r, "perm_unscorable": math.isnan(r)} for r in rewards]
        return out if batch else out[0]
    compute_score.perm = reward
    return compute_score


def _field(info, name: str) -> str:
    if info is None:
        return ""
    if not hasattr(info, "get"):
        raise ValueError(f"extra_info must be a dict (with persona / scenario / query), got {type(info).__name__}")
    value = info.get(name)
    return "" if value is None else str(value)


def _reward_from(kwargs: dict) -> PERMReward:
    """The PERMReward a config describes, built once per distinct config (judge clients are
    reused across verl's calls)."""
    from pyl2d.perm.judges import OpenAIJudge

    key = tuple(sorted((k, repr(v)) for k, v in kwargs.items()))
    with _LOCK:
        if key not in _REWARDS:
            if "judge_url" not in kwargs or "judge_model" not in kwargs:
                raise ValueError("pyl2d.perm.verl.compute_score needs reward_kwargs judge_url and judge_model")
            judge_keys = _keywords(OpenAIJudge.__init__) - {"base_url", "model"}
            reward_keys = _keywords(PERMReward.__init__) - {"judge"}
            unknown = sorted(set(kwargs) - judge_keys - reward_keys - set(_OWN_KEYS))
            if unknown:
                raise ValueError(f"unknown reward_kwargs {unknown}; allowed: {sorted(_OWN_KEYS)}, the judge's "
                                 f"{sorted(judge_keys)} and the reward's {sorted(reward_keys)}")
            judge = OpenAIJudge(kwargs["judge_url"], kwargs["judge_model"],
                                **{k: v for k, v in kwargs.items() if k in judge_keys})
            options = {k: v for k, v in kwargs.items() if k in reward_keys}
            preset = kwargs.get("preset")
            _REWARDS[key] = (PERMReward.from_preset(preset, judge, **options) if preset
                             else PERMReward(judge, **options))
        return _REWARDS[key]


def compute_score(data_source=None, solution_str=None, ground_truth=None, extra_info=None, *, data_sources=None,
                  solution_strs=None, ground_truths=None, extra_infos=None, **reward_kwargs):
    """verl's entry point (see the module docstring): the reward is configured by
    ``reward_kwargs`` (judge_url, judge_model, preset, nan_score, and any keyword of
    OpenAIJudge or PERMReward; another key is an error that lists them)."""
    reward = _reward_from(reward_kwargs)
    return make_compute_score(reward, float(reward_kwargs.get("nan_score", 0.0)))(
        data_source, solution_str, ground_truth, extra_info, data_sources=data_sources, solution_strs=solution_strs,
        ground_truths=ground_truths, extra_infos=extra_infos)
