"""Prompt templates and chat-template handling."""
import pytest

from pyl2d.l2d.data.prompts import DEFAULT_PROMPT, PromptTemplate, answer_token_ids, prompt_token_ids


def test_default_prompt_lists_history_in_order():
    text = DEFAULT_PROMPT.prompt(["First", 'Quote "x"', "Last"])
    assert text.index('"First"') < text.index('"Quote "x""') < text.index('"Last"')
    assert text.endswith("Next item:")
    assert DEFAULT_PROMPT.answer("Title") == " Title"


def test_history_is_truncated_to_the_most_recent_items():
    t = PromptTemplate(max_history=2, template="{history} ({n})", item_format="<{title}>", separator="|")
    assert t.prompt(["a", "b", "c"]) == "<b>|<c> (2)"


def test_bad_templates_and_empty_history():
    with pytest.raises(ValueError, match="history"):
        PromptTemplate(template="no placeholder")
    with pytest.raises(ValueError, match="title"):
        PromptTemplate(item_format="x")
    with pytest.raises(ValueError, match="empty"):
        DEFAULT_PROMPT.prompt([])


def test_chat_template_is_honoured(tiny_model):
    _, tok = tiny_model
    plain = DEFAULT_PROMPT.prompt(["A", "B"], tok)
    assert plain == DEFAULT_PROMPT.user_text(["A", "B"])  # the tiny tokenizer has no chat template
    tok.chat_template = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}"
                         "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    try:
        chat = DEFAULT_PROMPT.prompt(["A", "B"], tok)
        assert chat == "<|user|>" + plain + "<|assistant|>"
        assert PromptTemplate(use_chat_template=False).prompt(["A", "B"], tok) == plain
    finally:
        tok.chat_template = None


def test_token_ids_start_with_bos_once(tiny_model):
    _, tok = tiny_model
    ids = prompt_token_ids(tok, [DEFAULT_PROMPT.prompt(["A"]), "<s>already"])
    assert ids[0][0] == tok.bos_token_id and ids[1][0] == tok.bos_token_id and ids[1][1] != tok.bos_token_id
    assert tok.eos_token_id not in answer_token_ids(tok, DEFAULT_PROMPT, ["A title"])[0]


@pytest.mark.parametrize("template", ["{n:>50000000} {history}", "{history.__class__}", "{history[0]}", "{0} {history}",
                                      "{} {history}", "{history!r}", "{{history}}", "{history} {user}", "{history",
                                      "{history:{n}}"])
def test_only_plain_known_placeholders_render(template):
    with pytest.raises(ValueError, match="^template "):
        PromptTemplate(template=template)


def test_item_format_placeholders_types_and_lengths_are_checked():
    from pyl2d.l2d.data.prompts import MAX_FIELD_CHARS

    with pytest.raises(ValueError, match="item_format has unknown placeholder"):
        PromptTemplate(item_format="{title} {history}")
    with pytest.raises(ValueError, match="item_format has a format spec"):
        PromptTemplate(item_format="{title:^9999999}")
    with pytest.raises(ValueError, match="max_history must be an integer"):
        PromptTemplate(max_history="3")
    with pytest.raises(ValueError, match="use_chat_template must be true or false"):
        PromptTemplate(use_chat_template="yes")
    with pytest.raises(ValueError, match="instruction is .* characters long"):
        PromptTemplate(instruction="x" * (MAX_FIELD_CHARS + 1))
    # A brace in the instruction or separator is text, not a placeholder (they are not format strings).
    assert "{n:>9}" in PromptTemplate(instruction="{n:>9}").prompt(["A"])


def _write(tmp_path, content, name="t.json"):
    path = tmp_path / name
    path.write_text(content) if isinstance(content, str) else path.write_bytes(content)
    return path


def test_a_template_file_sets_some_fields_and_keeps_the_defaults(tmp_path):
    import json

    from pyl2d.l2d.data.prompts import load_template

    path = _write(tmp_path, json.dumps({"template": "Given {history}, next:", "item_format": "<{title}>"}))
    t = load_template(path)
    assert t.prompt(["a", "b"]) == "Given <a>, <b>, next:" and t.max_history == DEFAULT_PROMPT.max_history


@pytest.mark.parametrize("content, message", [
    ('{"templat": "{history}"}', "unknown field 'templat'"),
    ('{"template": "{history} {user}"}', "field template has unknown placeholder '{user}'"),
    ('{"max_history": 0}', "field max_history must be >= 1"),
    ('["{history}"]', "expected a JSON object"),
    ('{"template": ', r"not valid JSON \(line 1"),
    (b"\xff\xfe{}", "not UTF-8"),
    ("[" * 100000, "larger than"),
    ("[" * 60000, "not valid JSON"),  # nested too deep for the parser: still one line
])
def test_bad_template_files_are_one_line_errors_naming_the_file(tmp_path, content, message):
    from pyl2d.l2d.data.prompts import load_template

    path = _write(tmp_path, content)
    with pytest.raises(ValueError, match=message) as info:
        load_template(path)
    assert str(info.value).startswith(f"template file {path}: ") and "\n" not in str(info.value)
    with pytest.raises(ValueError, match="cannot read it"):
        load_template(tmp_path / "absent.json")
