"""PERMReward plugs into TRL's GRPOTrainer unchanged (and, as ``as_async()``, into its
coroutine reward path): one real training step on CPU with a tiny random policy and a
scripted judge. TRL is a test dependency (pyproject's [test] extra), so CI runs these."""
import math

import pytest
from packaging.version import Version

trl = pytest.importorskip("trl")
datasets = pytest.importorskip("datasets")

from pyl2d.perm import PERMReward, ScriptedJudge  # noqa: E402
from tests.perm._tiny_lm import tiny_lm  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")
TRL_VERSION = Version(trl.__version__)


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_group_advantages_match_trl_nanstd(scale):
    """Against TRL's own nanstd helper, with unscorable (NaN) rewards."""
    if TRL_VERSION < Version("1.6"):
        pytest.skip(f"TRL {trl.__version__} zeroes NaN rewards before grouping; the formula is TRL 1.6's")
    import torch
    from trl.trainer.utils import nanstd

    from pyl2d.ops import group_advantages

    g = torch.Generator().manual_seed(0)
    rewards = torch.randn(48, generator=g)
    rewards[torch.rand(48, generator=g) < 0.25] = float("nan")
    grouped = rewards.view(-1, 8)
    mean = torch.nanmean(grouped, dim=1).repeat_interleave(8)
    std = nanstd(grouped, dim=1).repeat_interleave(8) if scale != "batch" else nanstd(rewards).expand_as(rewards)
    want = rewards - mean
    if scale != "none":
        want = want / (std + 1e-4)
    want = torch.nan_to_num(want, nan=0.0)
    torch.testing.assert_close(group_advantages(rewards, 8, scale=scale), want, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("conversational,use_async", [(False, False), (True, False), (False, True)],
                         ids=["text", "conversational", "async"])
def test_grpo_step_with_perm_reward(tmp_path, conversational, use_async):
    if use_async and TRL_VERSION < Version("0.27"):
        pytest.skip(f"TRL {trl.__version__}'s GRPOTrainer does not await reward functions (0.27 does)")
    model, tokenizer = tiny_lm()
    judge = ScriptedJudge(lambda r: "Total score: 60/100" if r.perspective.score_max == 100 else
                          f"Score: {1 + len(r.messages[-1]['content']) % 5}")
    reward = PERMReward(judge, name="perm")
    if conversational:
        prompts = [[{"role": "user", "content": f"I feel {w}."}] for w in ("lonely", "tired")]
    else:
        prompts = ["I feel lonely.", "I feel tired."]
    dataset = datasets.Dataset.from_dict({"prompt": prompts, "persona": ["a nurse", "a student"],
                                          "scenario": ["night shifts", "exams"], "query": ["lonely", "tired"]})
    config = trl.GRPOConfig(output_dir=str(tmp_path), num_generations=4, per_device_train_batch_size=4,
                            max_completion_length=8, max_steps=1, logging_steps=1, report_to=[], use_cpu=True,
                            bf16=False, save_strategy="no", learning_rate=1e-5)
    trainer = trl.GRPOTrainer(model=model, processing_class=tokenizer,
                              reward_funcs=[reward.as_async() if use_async else reward], args=config,
                              train_dataset=dataset)
    trainer.train()
    logged = {k: v for entry in trainer.state.log_history for k, v in entry.items()}
    assert "rewards/perm/mean" in logged and math.isfinite(logged["rewards/perm/mean"])
    assert len(judge.calls) >= 4 * 4  # every completion judged from every perspective
    if TRL_VERSION >= Version("1.0"):  # TRL passes log_metric to reward functions from 1.0
        assert any(k.startswith("perm/") for k in logged), sorted(logged)
