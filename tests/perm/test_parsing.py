"""Completion sections and judge-text scores are read strictly and tolerantly."""
import math

import pytest
from hypothesis import given, strategies as st

from pyl2d.perm.parsing import parse_completion
from pyl2d.perm.perspectives import DEFAULT_PERSPECTIVES, Perspective, check_perspectives
from pyl2d.perm.scores import MALFORMED, MISSING, OK, OUT_OF_RANGE, ScoreCounter, parse_score


@pytest.mark.parametrize("text", [
    "# Analysis\nthe seeker is afraid\n# Response\nThat sounds frightening.",
    "## Analysis:\nthe seeker is afraid\n\n## Response:\nThat sounds frightening.",
    "**Analysis**\nthe seeker is afraid\n**Response**\nThat sounds frightening.",
    "**Analysis:** the seeker is afraid\n**Response:** That sounds frightening.",
    "Analysis: the seeker is afraid\nResponse: That sounds frightening.",
    "analysis\nthe seeker is afraid\nRESPONSE\nThat sounds frightening.",
    "### Analysis of the seeker\nthe seeker is afraid\n### Reply\nThat sounds frightening.",
    "<analysis>the seeker is afraid</analysis>\n<response>That sounds frightening.</response>",
])
def test_heading_variants(text):
    parsed = parse_completion(text)
    assert parsed.analysis == "the seeker is afraid"
    assert parsed.response == "That sounds frightening."
    assert parsed.missing == ()


def test_missing_sections_are_reported_not_guessed():
    assert parse_completion("I hear you.").missing == ("analysis", "response")
    parsed = parse_completion("# Analysis\nsad\n")
    assert parsed.missing == ("response",) and parsed.analysis == "sad"
    # An empty section is present (""), not missing (None).
    assert parse_completion("# Analysis\n# Response\nok").analysis == ""


def test_words_that_start_a_line_are_not_headings():
    parsed = parse_completion("Analysis: she is sad.\nResponse of her family matters.\nAnalysis shows more.")
    assert parsed.missing == ("response",)
    assert "Response of her family" in parsed.analysis


@pytest.mark.parametrize("text,analysis,response", [
    ("# Analysis\nshe writes a <response> tag.\n# Response\nI hear you.", "she writes a <response> tag.", "I hear you."),
    ("<analysis>sad</analysis>\n# Response\nI hear you.", "sad", "I hear you."),  # tags and headings mixed
    ("<analysis>sad</analysis><reply>I hear you.</reply>", "sad", "I hear you."),
    ("Sure! <analysis>sad</analysis> <response>I hear you.</response>", "sad", "I hear you."),
    ("<analysis>sad</analysis>\n<response>I hear you", "sad", "I hear you"),  # cut off before its closing tag
    ("__Analysis__\nsad\n__Response__\nI hear you.", "sad", "I hear you."),
])
def test_stray_and_mixed_tags_lose_no_section(text, analysis, response):
    parsed = parse_completion(text)
    assert (parsed.analysis, parsed.response) == (analysis, response)


@pytest.mark.parametrize("text", [" " * 1_000_000 + "\n# Analysis\na\n# Response\nb", "<analysis>" * 200_000,
                                  "x <analysis> " * 100_000, "\t" * 500_000 + "**" + " " * 500_000])
def test_hostile_completions_parse_in_linear_time(text):
    import time

    start = time.monotonic()
    parse_completion(text)
    assert time.monotonic() - start < 5.0  # well under a second; a line of 16k blanks once took 11 s


def test_completion_must_be_text():
    with pytest.raises(ValueError, match="completion"):
        parse_completion(None)


@pytest.mark.parametrize("text,low,high,value", [
    ("Score: 4", 1, 5, 4.0), ("**Score:** 4", 1, 5, 4.0), ("Score: **4**", 1, 5, 4.0),
    ("score = 4", 1, 5, 4.0), ("4/5", 1, 5, 4.0), ("Total score: 78/100", 0, 100, 78.0),
    ("Final score: 3.5", 1, 5, 3.5), ("Rating: [[2]]", 1, 5, 2.0), ("I give it 3 out of 5.", 1, 5, 3.0),
    ("Score 1: cold. Score 5: deep.\nReasoning...\nScore: 3", 1, 5, 3.0), ("5", 1, 5, 5.0),
    ("Score: 0", 0, 100, 0.0), ("Quality 18/20, ...\nTotal score: 81", 0, 100, 81.0),
])
def test_score_forms(text, low, high, value):
    parsed = parse_score(text, low, high)
    assert parsed.status == OK and parsed.value == value


@pytest.mark.parametrize("text,status", [
    ("Score: 6", OUT_OF_RANGE), ("Score: 0", OUT_OF_RANGE), ("Score: 4/10", OUT_OF_RANGE),
    ("Score: -1", OUT_OF_RANGE), ("the reply is lovely", MISSING), ("", MISSING), (None, MISSING),
])
def test_invalid_scores_are_nan_not_clipped(text, status):
    parsed = parse_score(text, 1, 5)
    assert parsed.status == status and math.isnan(parsed.value) and not parsed.valid


@pytest.mark.parametrize("text", [
    "Score: 1e3", "Score: 3,5", "Score: 3-4", "Score: 3 - 4", "Score: 3 to 4", "Score: 3 or 4", "Score: 4.0.1",
    "Score: 4th", "Score: 2e0", "Rating: 3,5/5", "Score: 4/5e1", "Score: 0x4", "Score: 4\u20135",
])
def test_malformed_labelled_numbers_are_invalid(text):
    parsed = parse_score("Reasoning.\n" + text, 1, 5)
    assert parsed.status == MALFORMED and math.isnan(parsed.value) and not parsed.valid, parsed


@pytest.mark.parametrize("text", ["3,5/5", "1e3/5", "3-4/5", "3.5.1/5", "Score: \uff14", "Score: \u0664"])
def test_malformed_unlabelled_numbers_are_invalid(text):
    parsed = parse_score("Reasoning.\n" + text, 1, 5)
    assert parsed.status in (MALFORMED, MISSING) and math.isnan(parsed.value), parsed


@pytest.mark.parametrize("text,value", [
    ("Score: 4.", 4.0), ("Score: 4, because it is warm.", 4.0), ("Score: 4.5", 4.5), ("Score: 4 out of 5", 4.0),
    ("Score: 4\nSome 3-4 words", 4.0), ("Score: (4)", None),
])
def test_plain_numbers_next_to_punctuation_are_fine(text, value):
    parsed = parse_score(text, 1, 5)
    if value is None:
        assert not parsed.valid
    else:
        assert parsed.status == OK and parsed.value == value, parsed


@given(st.integers(-1000, 1000), st.sampled_from(["Score: {}", "**Score:** {}", "score = {}", "{}/5"]))
def test_score_roundtrip_property(v, fmt):
    parsed = parse_score("Some reasoning.\n" + fmt.format(v), 1, 5)
    if 1 <= v <= 5:
        assert parsed.value == v
    else:
        assert math.isnan(parsed.value)


def test_counter_counts_invalid_per_perspective():
    c = ScoreCounter()
    for s in (OK, MISSING, OUT_OF_RANGE, OK):
        c.add("seeker/reception", s)
    assert c.invalid("seeker/reception") == 2 and c.invalid("other") == 0
    assert c.as_dict()["seeker/reception"][OK] == 2


def test_default_perspectives_and_prompts():
    ps = check_perspectives(DEFAULT_PERSPECTIVES)
    assert [p.name for p in ps] == ["supporter/resonation", "supporter/expression", "seeker/reception",
                                    "bystander/quality"]
    assert ps[0].section == "analysis" and ps[3].score_max == 100
    msgs = ps[2].messages(persona="a nurse", scenario="night shifts", query="I am exhausted", text="Rest.")
    assert msgs[0]["role"] == "system" and "a nurse" in msgs[1]["content"] and "from 1 to 5" in msgs[1]["content"]


def test_perspective_validation():
    with pytest.raises(ValueError, match="role"):
        Perspective("x/y", "judge", "response", "r")
    with pytest.raises(ValueError, match="score range"):
        Perspective("x/y", "seeker", "response", "r", score_min=5, score_max=1)
    with pytest.raises(ValueError, match="duplicate"):
        check_perspectives([DEFAULT_PERSPECTIVES[0]] * 2)
    with pytest.raises(ValueError, match="at least one"):
        check_perspectives([DEFAULT_PERSPECTIVES[3]])


_BODY = st.text(alphabet=st.characters(whitelist_categories=("Ll", "Lu", "Nd"), whitelist_characters=" .,!?'\n"),
                min_size=1, max_size=60).filter(lambda t: t.strip() and not any(
                    w in t.lower() for w in ("analysis", "response", "reply")))
_STYLES = ["# {}\n", "## {}:\n", "**{}**\n", "**{}:** ", "{}: ", "{}\n", "### {}\n"]


@given(analysis=_BODY, response=_BODY, style_a=st.sampled_from(_STYLES), style_r=st.sampled_from(_STYLES),
       upper=st.booleans())
def test_property_sections_roundtrip(analysis, response, style_a, style_r, upper):
    name = str.upper if upper else str.title
    text = style_a.format(name("analysis")) + analysis + "\n" + style_r.format(name("response")) + response
    parsed = parse_completion(text)
    assert parsed.analysis == analysis.strip() and parsed.response == response.strip()


@pytest.mark.parametrize("text", ["score" + " " * 100_000, "Score:" + " " * 100_000 + "x", " " * 100_000 + "x",
                                  "4" + " " * 100_000 + "x", "Score: " + "[ " * 50_000, "Score: 4" + "] " * 50_000])
def test_hostile_judge_text_parses_in_linear_time(text):
    import time

    start = time.monotonic()
    parse_score(text, 1, 5)
    assert time.monotonic() - start < 5.0  # milliseconds when linear; quadratic backtracking took minutes
