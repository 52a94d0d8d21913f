"""Rubric texts for PERM's default perspectives, written for pyl2d.

Each rubric is anchored: every score level says what a reply at that level looks like, so
that a judge (hosted or local) scores against fixed descriptions rather than a vague scale.
The three supporter/seeker rubrics score 1-5; the bystander rubric scores 0-100.
"""
from pyl2d.perm.rubrics.expression import EXPRESSION
from pyl2d.perm.rubrics.quality import QUALITY, QUALITY_TOTAL
from pyl2d.perm.rubrics.reception import RECEPTION
from pyl2d.perm.rubrics.resonation import RESONATION

__all__ = ["EXPRESSION", "QUALITY", "QUALITY_TOTAL", "RECEPTION", "RESONATION"]
