"""pyl2d.perm.verl as verl calls it today, replayed from verl's code (main of 2026-01-29; verl
is not installed here, so its call sequences are restated below, file by file):

- ``verl/trainer/ppo/reward.py`` ``get_custom_reward_fn``: the function named by
  ``custom_reward_function`` (``pkg://`` path), wrapped in a ``functools.partial`` that
  merges ``reward_kwargs`` into every call (they win); a coroutine function stays one;
- the reward loop (``use_reward_loop: true``, the default): ``RewardLoopWorker`` makes one
  task per sample and the naive reward-loop manager's ``run_single`` adds ``num_turns`` and
  ``rollout_reward_scores`` to ``extra_info``, passes ``reward_router_address`` and
  ``reward_model_tokenizer`` only when a reward router runs, awaits a coroutine function and
  runs a plain one in the loop's executor, and takes ``result["score"]``;
- the legacy naive manager: one plain call per sample;
- the legacy batch manager: one call with ``data_sources`` (a numpy array), ``solution_strs``,
  ``ground_truths``, ``extra_infos`` (a numpy array of dicts) and the manager's own kwargs.

A loopback judge server answers (tests/perm/conftest.py); each test takes well under a second
except the unreachable-judge one (about 1 s).
"""
import asyncio
import functools
import importlib
import inspect
import math
import warnings

import numpy as np
import pytest

from pyl2d.perm import verl as perm_verl
from tests.perm._tiny_lm import tiny_lm

ANALYSIS = "# Analysis\nShe fears being a burden.\n# Response\n"
SHORT = ANALYSIS + "It sounds exhausting."
LONG = ANALYSIS + "It is hard. " * 70  # 840+ characters but about 150 words: over 768 tokens only when counted in tokens
INFO = {"persona": "a nurse", "scenario": "night shifts", "query": "I am so tired"}
# The loopback server answers "Score: 4" (1-5) and "Total score: 70/100": harmonic 0.8, bystander 0.5 * (0.7 - 1).
SCORE = 0.8 + 0.5 * (0.70 - 1.0)


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    """A character-level tokenizer in a folder, as ``tokenizer: <path>`` names one."""
    path = tmp_path_factory.mktemp("tok")
    tiny_lm()[1].save_pretrained(path)
    return str(path)


def custom_reward_fn(name: str, reward_kwargs: dict):
    """get_custom_reward_fn: load ``pkg://pyl2d.perm.verl`` and merge reward_kwargs into each call."""
    raw = getattr(importlib.import_module("pkg://pyl2d.perm.verl"[len("pkg://"):].replace("/", ".")), name)

    def call(raw_fn, extra, *args, **kwargs):
        return raw_fn(*args, **{**kwargs, **extra})

    async def acall(raw_fn, extra, *args, **kwargs):
        return await raw_fn(*args, **{**kwargs, **extra})
    return functools.partial(acall if inspect.iscoroutinefunction(raw) else call, raw, reward_kwargs)


def samples(texts):
    return [{"data_source": "esconv", "solution_str": t, "ground_truth": None, "extra_info": dict(INFO)} for t in texts]


async def reward_loop(fn, batch, reward_router_address=None, reward_model_tokenizer=None):
    """RewardLoopWorker.compute_score_batch + the naive reward-loop manager's run_single."""
    loop = asyncio.get_running_loop()
    is_async = inspect.iscoroutinefunction(fn)
    extra = ({"reward_router_address": reward_router_address, "reward_model_tokenizer": reward_model_tokenizer}
             if reward_router_address is not None else {})

    async def run_single(s):
        extra_info = s["extra_info"]
        extra_info["num_turns"] = None
        extra_info["rollout_reward_scores"] = {}
        call = dict(data_source=s["data_source"], solution_str=s["solution_str"], ground_truth=s["ground_truth"],
                    extra_info=extra_info, **extra)
        result = await fn(**call) if is_async else await loop.run_in_executor(None, lambda: fn(**call))
        score = result["score"] if isinstance(result, dict) else result
        return {"reward_score": score, "reward_extra_info": dict(result) if isinstance(result, dict) else {}}
    return await asyncio.gather(*(asyncio.create_task(run_single(s)) for s in batch))


def naive_manager(fn, batch):
    return [fn(data_source=s["data_source"], solution_str=s["solution_str"], ground_truth=s["ground_truth"],
               extra_info=s["extra_info"]) for s in batch]


def batch_manager(fn, batch, **manager_kwargs):
    return fn(data_sources=np.array([s["data_source"] for s in batch], dtype=object),
              solution_strs=[s["solution_str"] for s in batch], ground_truths=[s["ground_truth"] for s in batch],
              extra_infos=np.array([s["extra_info"] for s in batch], dtype=object), **manager_kwargs)


def config(server, **extra):
    return {**{"judge_url": server.base_url, "judge_model": "judge", "api_key_env": "PYL2D_TEST_NO_KEY",
               "preset": "perm-paper"}, **extra}


def test_reward_loop_replay_batches_the_concurrent_samples_and_counts_tokens(judge_server, tokenizer_dir):
    fn = custom_reward_fn("compute_score_async", config(judge_server, tokenizer=tokenizer_dir, batch_wait=0.2))
    assert inspect.iscoroutinefunction(fn)  # so verl awaits it
    texts = [SHORT] * 7 + [LONG]
    out = asyncio.run(reward_loop(fn, samples(texts)))
    scorer = perm_verl._scorer_from(fn.args[1])
    assert scorer.batch_sizes == [8]  # eight per-sample calls, one judge batch
    assert judge_server.total_requests() == 8 * 4
    over = len(tiny_lm()[1].encode(LONG, add_special_tokens=False)) - 768
    assert over > 0 and len(LONG.split()) < 768
    assert [o["reward_score"] for o in out] == pytest.approx([SCORE] * 7 + [SCORE - 0.001 * over], abs=1e-5)
    assert all(o["reward_extra_info"]["perm_unscorable"] is False for o in out)
    # the preset's sampling reached the judge
    assert {(b["temperature"], b["top_p"], b["max_tokens"]) for b in judge_server.bodies} == {(0.3, 0.9, 1024)}
    assert scorer.reward.judge.concurrency == 64


def test_reward_loop_splits_batches_at_batch_size_and_uses_verls_tokenizer(judge_server):
    tok = tiny_lm()[1]
    fn = custom_reward_fn("compute_score_async", config(judge_server, batch_size=4, batch_wait=0.5))
    out = asyncio.run(reward_loop(fn, samples([SHORT] * 7 + [LONG]), reward_router_address="127.0.0.1:9",
                                  reward_model_tokenizer=tok))
    assert perm_verl._scorer_from(fn.args[1]).batch_sizes == [4, 4]
    over = len(tok.encode(LONG, add_special_tokens=False)) - 768
    assert out[-1]["reward_score"] == pytest.approx(SCORE - 0.001 * over, abs=1e-5)


def test_the_legacy_naive_and_batch_managers_give_the_reward_loops_scores(judge_server, tokenizer_dir):
    kwargs = config(judge_server, tokenizer=tokenizer_dir)
    batch = samples([SHORT, LONG, SHORT])
    loop_scores = [o["reward_score"] for o in asyncio.run(reward_loop(custom_reward_fn("compute_score_async", kwargs),
                                                                      samples([SHORT, LONG, SHORT])))]
    naive = naive_manager(custom_reward_fn("compute_score", kwargs), batch)
    assert [r["score"] for r in naive] == pytest.approx(loop_scores, abs=1e-6)
    # the batch manager forwards its own kwargs (max_resp_len, ...): ignored with one warning
    perm_verl._WARNED.clear()
    with pytest.warns(RuntimeWarning, match=r"ignores reward_kwargs \['max_resp_len', 'overlong_buffer_cfg'\]"):
        out = batch_manager(custom_reward_fn("compute_score", kwargs), batch, max_resp_len=1024,
                            overlong_buffer_cfg={"enable": False})
    assert [r["score"] for r in out] == pytest.approx(loop_scores, abs=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once, not per call
        batch_manager(custom_reward_fn("compute_score", kwargs), batch, max_resp_len=1024,
                      overlong_buffer_cfg={"enable": False})


def test_a_length_term_without_a_tokenizer_is_an_error_not_a_word_count(judge_server):
    kwargs = config(judge_server)  # perm-paper has the length term
    with pytest.raises(ValueError, match="counts completion tokens.*reward_kwargs tokenizer"):
        naive_manager(custom_reward_fn("compute_score", kwargs), samples([SHORT]))
    with pytest.raises(ValueError, match="counts completion tokens"):
        asyncio.run(reward_loop(custom_reward_fn("compute_score_async", kwargs), samples([SHORT, SHORT])))
    assert judge_server.total_requests() == 0
    plain = custom_reward_fn("compute_score", config(judge_server, preset=None, bystander_coef=0.5, mode="harmonic"))
    assert naive_manager(plain, samples([LONG]))[0]["score"] == pytest.approx(SCORE, abs=1e-5)


def test_an_unreachable_judge_scores_nan_score_for_every_sample_and_loses_none(refused_url):
    fn = custom_reward_fn("compute_score_async", {"judge_url": refused_url, "judge_model": "judge",
                                                  "api_key_env": "PYL2D_TEST_NO_KEY", "max_retries": 0,
                                                  "nan_score": -1.0, "batch_wait": 0.05})
    out = asyncio.run(reward_loop(fn, samples([SHORT] * 5)))
    assert [o["reward_score"] for o in out] == [-1.0] * 5
    assert all(o["reward_extra_info"]["perm_unscorable"] for o in out)


@pytest.mark.parametrize("kwargs, message", [
    (dict(nan_score=math.nan), "nan_score must be a finite number"),
    (dict(nan_score=math.inf), "nan_score must be a finite number"),
    (dict(nan_score="0"), "nan_score must be a finite number"),
    (dict(batch_size="8"), "batch_size must be a positive int"),
    (dict(batch_size=0), "batch_size must be a positive int"),
    (dict(batch_wait=-1), "batch_wait must be >= 0"),
    (dict(batch_wait=1e9), "batch_wait must be at most"),
    (dict(judge_model=3), "judge_model must be a model name"),
    (dict(temperature="0.3"), "temperature must be a finite number"),
    (dict(max_tokens=0), "max_tokens must be a positive int"),
    (dict(extra_body="top_p=0.9"), "extra_body must be a mapping"),
    (dict(tokenizer=5), "tokenizer must be a tokenizer name or folder"),
    (dict(tokenizer="/nonexistent/tokenizer"), "tokenizer '/nonexistent/tokenizer' could not be loaded"),
    (dict(preset="perm-2025"), r"preset must be one of \['perm-paper'\]"),
    (dict(concurrency="64"), "concurrency must be a positive int"),
])
def test_verl_settings_of_the_wrong_type_are_refused_before_any_judge_call(judge_server, kwargs, message):
    with pytest.raises(ValueError, match=message):
        perm_verl.compute_score("esconv", SHORT, None, INFO, **config(judge_server, **{"preset": None, **kwargs}))
    assert judge_server.total_requests() == 0


@pytest.mark.parametrize("call, message", [
    (dict(solution_strs="abc", data_sources=["x"]), "solution_strs must be a list"),
    (dict(solution_strs=[SHORT, SHORT], data_sources=["x"]), "data_sources has 1 entries but solution_strs has 2"),
    (dict(solution_strs=[SHORT], ground_truths=[None, None]), "ground_truths has 2 entries but solution_strs has 1"),
    (dict(solution_strs=[SHORT], extra_infos=[INFO, INFO]), "extra_infos has 2 entries"),
    (dict(solution_strs=[SHORT], data_sources="esconv"), "data_sources must be a list"),
    (dict(solution_strs=[SHORT, None]), r"solution_strs\[1\] must be the completion's text"),
    (dict(solution_str=None), "solution_str must be the completion's text"),
    (dict(solution_str=b"bytes"), "solution_str must be the completion's text"),
])
def test_verl_inputs_are_checked(judge_server, call, message):
    with pytest.raises(ValueError, match=message):
        perm_verl.compute_score(**call, **config(judge_server, preset=None))
    assert judge_server.total_requests() == 0


def test_the_async_form_checks_its_input_too(judge_server):
    with pytest.raises(ValueError, match="solution_str must be the completion's text"):
        asyncio.run(perm_verl.compute_score_async("esconv", None, None, INFO, **config(judge_server, preset=None)))
