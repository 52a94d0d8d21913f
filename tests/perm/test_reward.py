"""PERMReward as a TRL reward function (scripted judge), LocalJudge on a tiny random model,
and the TRL/verl advantage presets."""
import dataclasses
import math
import re

import pytest
import torch

from pyl2d.perm import LocalJudge, PERMReward, ScriptedJudge, trl_advantages, verl_advantages
from pyl2d.perm.judges import JudgeRequest
from pyl2d.perm.perspectives import DEFAULT_PERSPECTIVES, EXPRESSION, QUALITY, RECEPTION, RESONATION

GOOD = "## Analysis:\nShe fears being a burden.\n\n## Response:\nIt sounds exhausting to carry this alone."
SCRIPT = {"supporter/resonation": "Score: 4", "supporter/expression": "**Score:** 5", "seeker/reception": "score = 3",
          "bystander/quality": "Total score: 90/100"}


def test_trl_signature_plain_text_and_name():
    reward = PERMReward(ScriptedJudge(SCRIPT), name="perm_empathy")
    assert reward.__name__ == "perm_empathy"
    out = reward(prompts=["p1", "p2"], completions=[GOOD, GOOD], completion_ids=[[1, 2], [3]],
                 persona=["nurse", "teacher"], scenario=["night shifts", "exams"], query=["q1", "q2"],
                 trainer_state=object(), some_other_column=[1, 2])
    want = (0.8 + 1.0 + 0.6) / 3 + 0.2 * (0.9 - 1)
    assert out == pytest.approx([want, want], abs=1e-6) and all(isinstance(r, float) for r in out)
    assert reward.last_metrics["supporter/expression/mean"] == 5.0
    assert reward.last_metrics["reward/mean"] == pytest.approx(want, abs=1e-6)


def test_conversational_completions_and_context_reaches_the_judge():
    judge = ScriptedJudge(SCRIPT)
    reward = PERMReward(judge, columns={"persona": "who"})
    prompts = [[{"role": "system", "content": "be kind"}, {"role": "user", "content": "I failed my exam"}]]
    completions = [[{"role": "assistant", "content": GOOD}]]
    out = reward(prompts=prompts, completions=completions, completion_ids=[[1]], who=["a nursing student"])
    assert len(out) == 1 and not math.isnan(out[0])
    texts = [c.messages[-1]["content"] for c in judge.calls]
    assert all("a nursing student" in t and "I failed my exam" in t for t in texts)
    # The analysis perspective reads the analysis, the others the response.
    by_name = {c.perspective.name: c.messages[-1]["content"] for c in judge.calls}
    assert "She fears being a burden." in by_name["supporter/resonation"]
    assert "She fears" not in by_name["seeker/reception"] and "carry this alone" in by_name["seeker/reception"]


def test_missing_section_policies():
    judge = ScriptedJudge(lambda r: "Score: 1" if "(empty)" in r.messages[-1]["content"] else "Score: 5")
    empty = PERMReward(judge, perspectives=[RESONATION, EXPRESSION], missing_section="empty")
    invalid = PERMReward(ScriptedJudge("Score: 5"), perspectives=[RESONATION, EXPRESSION], missing_section="invalid")
    only_response = "# Response\nThat sounds hard."
    assert empty(completions=[only_response]) == pytest.approx([(0.2 + 1.0) / 2])
    assert invalid(completions=[only_response]) == pytest.approx([1.0])  # the analysis score drops out
    assert invalid.last_metrics["supporter/resonation/invalid"] == 1.0
    assert invalid.counter.counts["supporter/resonation"]["missing_section"] == 1
    assert math.isnan(invalid(completions=["no headings at all"])[0])


def test_judge_failures_are_nan_and_counted():
    def script(request):
        if "FAIL" in request.messages[-1]["content"]:
            raise RuntimeError("judge down")
        return "Score: 4" if request.perspective.score_max == 5 else "Total score: 50/100"

    reward = PERMReward(ScriptedJudge(script))
    out = reward(completions=[GOOD, GOOD.replace("She fears", "FAIL").replace("It sounds", "FAIL")])
    assert not math.isnan(out[0]) and math.isnan(out[1])
    assert all(reward.last_metrics[f"{p.name}/invalid"] == 1.0 for p in DEFAULT_PERSPECTIVES)


@pytest.mark.parametrize("trl_version,warns", [("1.5.1", True), ("1.6.0", False), (None, False)])
def test_unscorable_completions_under_a_trl_that_zeroes_nan_warn_once(monkeypatch, trl_version, warns):
    """TRL < 1.6 nansums reward functions, so PERM's NaN (nothing could be scored) becomes a
    reward of 0; called by such a trainer (it passes trainer_state) the reward says so, once."""
    import sys
    import types
    import warnings

    monkeypatch.setitem(sys.modules, "trl", types.SimpleNamespace(__version__=trl_version) if trl_version else None)
    reward = PERMReward(ScriptedJudge("no score here"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            assert all(math.isnan(r) for r in reward(completions=["a", "b"], trainer_state=object()))
        reward(completions=["a"])  # not from a trainer: no word either way
    said = [w for w in caught if "turns NaN rewards into 0" in str(w.message)]
    assert len(said) == (1 if warns else 0)
    if warns:
        assert "TRL 1.5.1" in str(said[0].message) and "impute_missing=True" in str(said[0].message)


def test_length_penalty_and_logging_callbacks():
    metrics, extra = {}, {}
    reward = PERMReward(ScriptedJudge(SCRIPT), perspectives=[EXPRESSION], length_limit=3, length_coef=0.1)
    out = reward(completions=[GOOD, GOOD], completion_ids=[[0] * 3, [0] * 5],
                 log_metric=lambda k, v: metrics.__setitem__(k, v), log_extra=lambda k, v: extra.__setitem__(k, v))
    assert out == pytest.approx([1.0, 0.8])
    assert metrics["perm/supporter/expression/mean"] == 5.0
    assert extra["perm/supporter/expression"] == [5.0, 5.0]


def test_reward_argument_errors():
    with pytest.raises(ValueError, match="judge"):
        PERMReward(object())
    with pytest.raises(ValueError, match="mode"):
        PERMReward(ScriptedJudge("1"), mode="median")
    with pytest.raises(ValueError, match="missing_section"):
        PERMReward(ScriptedJudge("1"), missing_section="skip")
    with pytest.raises(ValueError, match="columns"):
        PERMReward(ScriptedJudge("1"), columns={"persona_name": "x"})
    with pytest.raises(ValueError, match="persona"):
        PERMReward(ScriptedJudge("Score: 3"))(completions=[GOOD], persona=["a", "b"])


@pytest.mark.parametrize("kwargs,message", [
    (dict(bystander_coef=math.nan), "bystander_coef must be a finite number"),
    (dict(length_limit=-5), "length_limit must be >= 0"),
    (dict(length_limit="768"), "length_limit must be a finite number"),
    (dict(length_coef=0.5), "length_coef needs length_limit"),
    (dict(backend="nope"), "backend='nope' is not a backend"),
    (dict(impute_missing="no"), "impute_missing must be False, True"),
    (dict(mode="harmonic", perspectives=[RESONATION, dataclasses.replace(EXPRESSION, score_min=-2, score_max=2)]),
     "mode='harmonic' needs scores >= 0, but perspective 'supporter/expression' scores from -2"),
    (dict(perspectives=[dataclasses.replace(p, weight=0.0) for p in (RESONATION, EXPRESSION)]),
     "every supporter/seeker perspective has weight 0"),
    (dict(perspectives=[RESONATION, dataclasses.replace(QUALITY, weight=0.0)]), "a bystander's weight is"),
])
def test_settings_are_checked_when_the_reward_is_made_not_after_a_batch_of_judge_calls(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        PERMReward(ScriptedJudge("Score: 3"), **kwargs)


def test_perspective_weights_must_be_finite_numbers():
    for bad in (math.inf, "1", -1.0):
        with pytest.raises(ValueError, match="perspective 'supporter/resonation': weight"):
            dataclasses.replace(RESONATION, weight=bad)


def test_a_bad_completion_is_named_and_content_parts_are_read_as_text():
    judge = ScriptedJudge(SCRIPT)
    reward = PERMReward(judge)
    with pytest.raises(ValueError, match=r"completions\[1\]: a completion must be a str"):
        reward(prompts=["p"] * 3, completions=[GOOD, None, GOOD])
    with pytest.raises(ValueError, match=r"completion_ids\[0\] must be a sequence of token ids"):
        PERMReward(judge, length_limit=3, length_coef=0.1)(completions=[GOOD], completion_ids=[None])
    assert judge.calls == []
    parts = lambda text: [{"type": "image"}, {"type": "text", "text": text}]  # noqa: E731 -- TRL's multimodal form
    out = reward(prompts=[[{"role": "user", "content": parts("I feel lonely")}]],
                 completions=[[{"role": "assistant", "content": parts(GOOD)}]])
    assert not math.isnan(out[0])
    sent = [c.messages[-1]["content"] for c in judge.calls]
    assert all("I feel lonely" in t and "'type'" not in t for t in sent)
    assert any("carry this alone" in t for t in sent)


def test_an_empty_batch_leaves_no_stale_last_batch():
    reward = PERMReward(ScriptedJudge(SCRIPT))
    reward(prompts=["p"], completions=[GOOD])
    assert reward.last_metrics
    assert reward(prompts=[], completions=[]) == []
    assert reward.last_metrics == {} and reward.last_scores.shape[0] == 0


@pytest.mark.parametrize("kwargs,names", [
    (dict(prompts=["p1"], completions=[GOOD] * 3), r"prompts has 1 .* completions has 3"),
    (dict(prompts=["p1"] * 4, completions=[GOOD] * 3), r"prompts has 4 .* completions has 3"),
    (dict(prompts=["p1"] * 3, completions=[GOOD] * 3, completion_ids=[[1]]), r"completion_ids has 1 .* has 3"),
    (dict(prompts=["p1"], completions=[GOOD] * 2, impute=True), r"prompts has 1 .* completions has 2"),
])
def test_length_mismatches_are_clear_value_errors(kwargs, names):
    impute = kwargs.pop("impute", False)
    judge = ScriptedJudge("Score: 3")
    reward = PERMReward(judge, impute_missing=impute, length_limit=10, length_coef=0.1)
    with pytest.raises(ValueError, match=names):
        reward(**kwargs)
    assert judge.calls == []  # checked before any judge call
    with pytest.raises(ValueError, match="completions"):
        reward(prompts=None, completions="not a list")


def test_presets():
    r = torch.tensor([1.0, 2.0, 3.0, float("nan"), 5.0, 0.5])
    index = torch.tensor([7, 7, 7, 7, 9, 3])
    adv = verl_advantages(r, index)
    # verl: a group of one has mean 0 and std 1.
    assert adv[4].item() == pytest.approx(5.0 / (1 + 1e-6)) and adv[5].item() == pytest.approx(0.5 / (1 + 1e-6))
    assert adv[3].item() == 0.0
    torch.testing.assert_close(adv[:3], torch.tensor([-1.0, 0.0, 1.0]) / (1 + 1e-6))
    assert verl_advantages(r, index, norm_adv_by_std=False)[4].item() == 5.0
    torch.testing.assert_close(trl_advantages(r[:4], 2), torch.tensor([-0.7071, 0.7071, 0.0, 0.0]), atol=1e-3,
                               rtol=0)


# --- LocalJudge on a tiny random Llama with a character-level tokenizer (no downloads) ---

@pytest.fixture(scope="module")
def tiny_lm():
    pytest.importorskip("transformers")
    from tests.perm._tiny_lm import tiny_lm as build

    return build()


def _requests(texts, perspective=EXPRESSION):
    return [JudgeRequest(perspective, tuple(perspective.messages(persona="p", scenario="s", query="q", text=t)))
            for t in texts]


def test_local_judge_matches_full_vocabulary_logits(tiny_lm):
    model, tokenizer = tiny_lm
    judge = LocalJudge(model, tokenizer, batch_size=3)
    requests = _requests(["short", "a somewhat longer reply to judge", "mid length"])
    got = [s.value for s in judge.score(requests)]
    for value, want in zip(got, _full_forward_scores(judge, model, tokenizer, requests)):
        assert value == pytest.approx(want, abs=1e-4)  # left padding does not change the score
        assert 1.0 <= value <= 5.0


def _full_forward_scores(judge, model, tokenizer, requests):
    """The expected score of each request from the model's full forward (all its logits)."""
    ids, values = judge.score_tokens(EXPRESSION)
    out = []
    for request in requests:
        enc = tokenizer(judge.prompt(request), return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            logits = model(**enc).logits[0, -1]
        out.append(float(torch.softmax(logits[ids].double(), 0) @ values.double()))
    return out


def test_local_judge_in_perm_reward_and_single_token_rule(tiny_lm):
    model, tokenizer = tiny_lm
    judge = LocalJudge(model, tokenizer)
    out = PERMReward(judge, perspectives=[RESONATION, EXPRESSION, RECEPTION])(completions=[GOOD, GOOD])
    assert len(out) == 2 and 0.2 <= out[0] <= 1.0 and out[0] == pytest.approx(out[1], abs=1e-5)
    with pytest.raises(ValueError, match="single token"):
        judge.score(_requests(["x"], QUALITY))


def test_impute_group_mean_never_mixes_groups():
    from pyl2d.perm.advantages import impute_group_mean

    nan = float("nan")
    scores = torch.tensor([[1.0, nan], [3.0, 4.0], [nan, nan], [5.0, 2.0], [nan, nan]])
    groups = torch.tensor([10, 10, 10, 7, 7])
    out = impute_group_mean(scores, groups)
    torch.testing.assert_close(out, torch.tensor([[1.0, 4.0], [3.0, 4.0], [2.0, 4.0], [5.0, 2.0], [5.0, 2.0]]))
    assert math.isnan(impute_group_mean(torch.tensor([[nan]]), torch.tensor([0]))[0, 0])
    with pytest.raises(ValueError, match="group_index"):
        impute_group_mean(scores, groups[:3])


def test_reward_imputes_missing_scores_from_the_same_prompt():
    def script(request):
        text = request.messages[-1]["content"]
        if "FAIL" in text and request.perspective.name == "seeker/reception":
            return "no score here"
        return "Score: 5" if "great" in text else "Score: 1"

    completions = ["# Analysis\nx\n# Response\ngreat", "# Analysis\nx\n# Response\nFAIL", "# Analysis\nx\n# Response\nok"]
    prompts = ["A", "A", "B"]
    plain = PERMReward(ScriptedJudge(script), perspectives=[EXPRESSION, RECEPTION])
    imputed = PERMReward(ScriptedJudge(script), perspectives=[EXPRESSION, RECEPTION], impute_missing=True)
    assert plain(prompts=prompts, completions=completions)[1] == pytest.approx(0.2)  # reception drops out
    # Reception of completion 2 takes prompt A's mean (5 from completion 1), not the batch's.
    assert imputed(prompts=prompts, completions=completions)[1] == pytest.approx((0.2 + 1.0) / 2)
    assert math.isnan(imputed.last_scores[1, 1])  # raw scores stay raw for logging


def _tiny_arch(name, vocab_size):
    import transformers

    common = dict(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096, pad_token_id=0,
                  eos_token_id=2, bos_token_id=None)
    if name == "phi":  # LM head with a bias
        config, cls = transformers.PhiConfig(**common), transformers.PhiForCausalLM
    elif name == "gemma2":  # final logit soft-capping (small, so it matters)
        config = transformers.Gemma2Config(**common, head_dim=8, final_logit_softcapping=0.05)
        cls = transformers.Gemma2ForCausalLM
    elif name == "cohere":  # logits multiplied by logit_scale
        config, cls = transformers.CohereConfig(**common, logit_scale=3.0), transformers.CohereForCausalLM
    else:  # granite: logits divided by logits_scaling
        config, cls = transformers.GraniteConfig(**common, logits_scaling=0.25), transformers.GraniteForCausalLM
    torch.manual_seed(1)
    model = cls(config).eval()
    head = model.get_output_embeddings()
    if getattr(head, "bias", None) is not None:
        with torch.no_grad():
            head.bias.normal_(0, 2.0)  # a bias large enough to move the score
    return model


@pytest.mark.parametrize("arch", ["phi", "gemma2", "cohere", "granite"])
def test_local_judge_applies_head_bias_scaling_and_softcap(tiny_lm, arch):
    _, tokenizer = tiny_lm
    model = _tiny_arch(arch, len(tokenizer))
    judge = LocalJudge(model, tokenizer, batch_size=2)
    assert judge.logit_terms(), arch
    requests = _requests(["short", "a somewhat longer reply to judge", "mid"])
    got = [s.value for s in judge.score(requests)]
    assert got == pytest.approx(_full_forward_scores(judge, model, tokenizer, requests), abs=1e-4), arch
