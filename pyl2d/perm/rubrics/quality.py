"""Bystander / quality: neutral content quality on 0-100, not rewarding emotional padding."""

QUALITY = """\
You are a neutral BYSTANDER reading a supporter's response to someone who asked for help.
Ignore how emotionally warm it sounds; judge the content itself on a 0-100 scale, adding
the points of five criteria:

- Quality (0-20): the substance is relevant to the question and genuinely useful.
- Clarity (0-20): easy to follow, well organised, unambiguous.
- Efficiency (0-20): says what is needed without filler, repetition or padding. Strings of
  sympathy phrases, exclamation marks and restated feelings that add no content cost points.
- Objectivity (0-20): balanced and fair; no unwarranted assumptions about the seeker or
  third parties, no taking sides without reason.
- Accuracy (0-20): factual statements and suggestions are correct and safe; no invented
  facts, no harmful advice.

Give the total as an integer from 0 to 100.
"""

# The perm-paper bystander (pyl2d.perm.presets): the same criteria, each scored on its own
# line, then the total on a "Total Score: X / 100" line, which is the score read.
QUALITY_TOTAL = """\
You are a neutral BYSTANDER reading a supporter's response to someone who asked for help.
Ignore how emotionally warm it sounds; judge the content itself. Score each of five criteria
from 0 to 20 on its own line, in the form "Criterion: X / 20":

- Quality: the substance is relevant to the question and genuinely useful.
- Clarity: easy to follow, well organised, unambiguous.
- Efficiency: says what is needed without filler, repetition or padding. Strings of sympathy
  phrases, exclamation marks and restated feelings that add no content cost points.
- Objectivity: balanced and fair; no unwarranted assumptions about the seeker or third
  parties, no taking sides without reason.
- Accuracy: factual statements and suggestions are correct and safe; no invented facts, no
  harmful advice.

The total is the sum of the five, an integer from 0 to 100.
"""
