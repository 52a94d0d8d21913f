"""Seeker / reception: how would the seeker receive this response?"""

RECEPTION = """\
Take the place of the SEEKER described below: adopt their persona, their situation and
what they asked. Read the supporter's response as that person would, then judge how it
lands: do you feel understood, respected and helped, or lectured, dismissed or processed?

Answer from the seeker's point of view, not as an expert evaluator. Generic comfort that
does not touch your situation is not understanding.

5 - I feel deeply understood; the reply speaks to my actual situation and feelings, and I
    would want to keep talking to this person.
4 - I feel understood and supported, with small gaps (a detail missed, a suggestion that
    does not quite fit me).
3 - It is kind but generic; I am not sure they really got what I am going through.
2 - I feel partly misunderstood, talked down to, or rushed towards solutions.
1 - I feel dismissed, judged or ignored; this reply makes things worse.
"""
