"""PERM: a multi-perspective empathetic reward for GRPO (supporter, seeker and bystander
judges), robust to misbehaving judges, with aggregation and group advantages as fused ops."""
from pyl2d.perm import perspectives
from pyl2d.perm.parsing import ParsedCompletion, parse_completion
from pyl2d.perm.perspectives import DEFAULT_PERSPECTIVES, Perspective
from pyl2d.perm.scores import ParsedScore, ScoreCounter, parse_score

__all__ = ["DEFAULT_PERSPECTIVES", "ParsedCompletion", "ParsedScore", "Perspective", "ScoreCounter",
           "parse_completion", "parse_score", "perspectives"]
