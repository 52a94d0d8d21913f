"""PERM: a multi-perspective empathetic reward for GRPO (supporter, seeker and bystander
judges), robust to misbehaving judges, with aggregation and group advantages as fused ops."""
from pyl2d.perm import perspectives
from pyl2d.perm.advantages import trl_advantages, verl_advantages
from pyl2d.perm.judges import Judge, JudgeRequest, LocalJudge, OpenAIJudge, ScriptedJudge
from pyl2d.perm.parsing import ParsedCompletion, parse_completion
from pyl2d.perm.perspectives import DEFAULT_PERSPECTIVES, Perspective
from pyl2d.perm.reward import PERMReward
from pyl2d.perm.scores import ParsedScore, ScoreCounter, parse_score

__all__ = ["DEFAULT_PERSPECTIVES", "Judge", "JudgeRequest", "LocalJudge", "OpenAIJudge", "PERMReward",
           "ParsedCompletion", "ParsedScore", "Perspective", "ScoreCounter", "ScriptedJudge", "parse_completion",
           "parse_score", "perspectives", "trl_advantages", "verl_advantages"]
