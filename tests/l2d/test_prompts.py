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
