"""Supporter / resonation: does the analysis enter the seeker's internal frame of reference?"""

RESONATION = """\
You judge the ANALYSIS a supporter wrote before replying to someone who asked for help.
The question is resonation: did the supporter enter the seeker's internal frame of
reference, understanding the situation as the seeker lives it (their feelings, needs,
constraints and what is at stake for them), rather than as an outside observer would?

Judge only the analysis. Ignore style and length; a short analysis that is right about the
seeker beats a long one that is generic.

5 - Names the seeker's specific feelings and the needs or values under them, ties them to
    concrete details of this persona and scenario, and notices what the seeker has not said
    outright (an unspoken worry, a conflict between two of their needs).
4 - Identifies the main feelings and needs correctly and grounds them in the scenario, but
    misses a secondary layer or one important detail.
3 - Gets the broad emotional tone right but stays general: it could describe many people in
    a similar situation.
2 - Mostly describes facts or plans solutions; the seeker's inner experience appears only in
    passing, or is partly misread.
1 - No understanding of the seeker's perspective: missing, off-topic, judgmental, or
    projects the supporter's own view onto the seeker.
"""
