"""Named run settings: ``PERMReward.from_preset(name, judge)`` takes a preset's reward settings
and ``judge_options(name)`` its judge's (``OpenAIJudge(url, model, **judge_options(name))``).

"perm-paper" is the PERM paper's GRPO run as its code (ZhengWwwq/PERM, perm/grpo_train.sh
and perm/grpo.py) runs it, checked against that code on the same judge replies
(tests/perm/fixtures/perm_code_rewards.json, docs/perm.md):

- the harmonic mean of the three empathy perspectives, the bystander term with coefficient
  0.5 and 0.001 per completion token beyond 768 (``--calculate_score_mode harmonic
  --use_standby_reward --standby_reward_coef 0.5 --use_length_penalty
  --length_penalty_limit 768 --length_penalty_coef 0.001``);
- the first score of a reply counts, not the last (the PERM judges are asked for one verdict
  line, and the PERM code reads the first "Score:" line);
- the bystander writes five 0-20 sub-scores and a ``Total Score: X / 100`` line, and only the
  total is read;
- an unreadable score is replaced by the mean of the same perspective's valid scores over the
  whole reward call (every prompt in it), as the PERM code does;
- the judge samples with temperature 0.3, top_p 0.9, at most 1024 tokens, 64 requests at once.

Where the PERM code's behaviour is a defect, pyl2d's is kept (docs/perm.md lists them): a
score outside the rubric, a reply cut off at ``max_tokens`` and a non-ASCII digit are invalid
(and imputed), not used as they are; a batch where every reply of a perspective is unreadable
leaves those scores NaN instead of raising.
"""
from __future__ import annotations

from pyl2d.perm.perspectives import PAPER_PERSPECTIVES

PRESETS: dict[str, dict] = {
    "perm-paper": {"mode": "harmonic", "bystander_coef": 0.5, "length_limit": 768, "length_coef": 0.001,
                   "perspectives": PAPER_PERSPECTIVES, "impute_missing": "batch"},
}
JUDGE_PRESETS: dict[str, dict] = {
    "perm-paper": {"temperature": 0.3, "max_tokens": 1024, "concurrency": 64, "extra_body": {"top_p": 0.9}},
}


def check_preset(name) -> str:
    """``name`` when it is a preset, else a ValueError listing the presets."""
    if not isinstance(name, str) or name not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}; got {name!r}")
    return name


def reward_options(name: str) -> dict:
    """The ``PERMReward`` keyword arguments of preset ``name``."""
    return dict(PRESETS[check_preset(name)])


def judge_options(name: str) -> dict:
    """The ``OpenAIJudge`` keyword arguments of preset ``name`` (its sampling settings)."""
    return {k: (dict(v) if isinstance(v, dict) else v) for k, v in JUDGE_PRESETS[check_preset(name)].items()}
