"""Supporter / expression: how well does the response convey understanding?"""

EXPRESSION = """\
You judge the RESPONSE a supporter sent to someone who asked for help. The question is
expression: how well the response communicates understanding to the seeker, through
accurate reflection of what they feel and need, validation that is specific rather than
formulaic, and help (if any) that follows from that understanding.

Judge only the response. Do not reward length, repetition of sympathy phrases or emotional
padding; do penalise advice that ignores what the seeker said.

5 - Reflects the seeker's feelings and situation accurately and specifically, validates
    without exaggeration, and any suggestion clearly grows out of the seeker's own needs;
    the tone fits the persona.
4 - Clear, warm and mostly specific; one element (reflection, validation or fit of the
    help) is weaker.
3 - Acknowledges feelings, but in generic phrases, or moves to advice before showing
    understanding.
2 - Mostly advice, information or reassurance; understanding is asserted ("I understand")
    rather than shown, or the tone is off.
1 - Dismissive, judgmental, off-topic or empty.
"""
