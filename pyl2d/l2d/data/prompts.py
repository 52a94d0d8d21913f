"""Prompt templates: a user's history of item titles -> the text whose continuation is the
next item's title.

The same template is used to fine-tune the model, to build the L2D memory, to query it and
to run the language-space baselines, so the hidden state at the prompt's last token always
means "what comes next". When the tokenizer has a chat template, the prompt is rendered as a
user turn followed by the generation prompt (the assistant turn then holds the title).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from pyl2d.l2d.data.records import Sample

# Short on purpose: every token of the instruction is paid for in every prefill.
DEFAULT_INSTRUCTION = "A user's items, oldest first, and the next one."
DEFAULT_TEMPLATE = "{instruction}\nHistory: {history}\nNext item:"


@dataclasses.dataclass(frozen=True)
class PromptTemplate:
    """How a history becomes a prompt and a target title becomes the model's answer.

    ``template`` may use ``{instruction}``, ``{history}`` and ``{n}`` (number of history
    items). Each title is wrapped with ``item_format`` and joined with ``separator``; only the
    last ``max_history`` items are kept. ``answer_prefix`` is prepended to the title when it is
    the model's output (a space so a byte-level BPE tokenizes it like running text)."""
    template: str = DEFAULT_TEMPLATE
    instruction: str = DEFAULT_INSTRUCTION
    item_format: str = '"{title}"'
    separator: str = ", "
    max_history: int = 10
    answer_prefix: str = " "
    use_chat_template: bool = True

    def __post_init__(self):
        if "{history}" not in self.template:
            raise ValueError("template must contain {history}")
        if "{title}" not in self.item_format:
            raise ValueError("item_format must contain {title}")
        if self.max_history < 1:
            raise ValueError(f"max_history must be >= 1, got {self.max_history}")
        # Rendered once now, so that an unknown placeholder fails here, not mid-build.
        for name, text, fields in (("template", self.template, dict(instruction="", history="", n=1)),
                                   ("item_format", self.item_format, dict(title=""))):
            try:
                text.format(**fields)
            except (KeyError, IndexError, ValueError) as exc:
                allowed = ", ".join("{" + f + "}" for f in fields)
                raise ValueError(f"{name} {text[:80]!r} does not render with {allowed} "
                                 f"({type(exc).__name__}: {exc}); write a literal brace as {{{{ or }}}}") from None

    def history_text(self, titles: Sequence[str]) -> str:
        kept = list(titles)[-self.max_history:]
        return self.separator.join(self.item_format.format(title=t) for t in kept)

    def user_text(self, titles: Sequence[str]) -> str:
        """The prompt before any chat formatting."""
        if len(titles) == 0:
            raise ValueError("history is empty: a prompt needs at least one item title")
        kept = list(titles)[-self.max_history:]
        return self.template.format(instruction=self.instruction, history=self.history_text(kept), n=len(kept))

    def prompt(self, titles: Sequence[str], tokenizer=None) -> str:
        """The full prompt string, chat-formatted when ``tokenizer`` has a chat template."""
        text = self.user_text(titles)
        if self.use_chat_template and tokenizer is not None and getattr(tokenizer, "chat_template", None):
            return tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                                 add_generation_prompt=True)
        return text

    def answer(self, title: str) -> str:
        """The text the model is trained to produce after the prompt (end-of-sequence added
        separately, as a token)."""
        return self.answer_prefix + title


DEFAULT_PROMPT = PromptTemplate()


def prompt_token_ids(tokenizer, prompts: Sequence[str]) -> list[list[int]]:
    """Token ids of each prompt; a BOS token is added when the tokenizer defines one and the
    prompt (e.g. from a chat template) does not already start with it."""
    bos = getattr(tokenizer, "bos_token_id", None)
    out = []
    for ids in tokenizer(list(prompts), add_special_tokens=False)["input_ids"]:
        if bos is not None and (not ids or ids[0] != bos):
            ids = [bos] + ids
        out.append(ids)
    return out


def answer_token_ids(tokenizer, template: PromptTemplate, titles: Sequence[str]) -> list[list[int]]:
    """Token ids of each answer (title), without the end-of-sequence token."""
    return tokenizer([template.answer(t) for t in titles], add_special_tokens=False)["input_ids"]


def data_fingerprint(samples: Sequence[Sample], template: PromptTemplate) -> str:
    """A short hash of what the prompts and targets are made of: the template and each
    sample's ids and titles (a retitled item changes every prompt it appears in, so a memory
    or model built from the old titles must not be taken for the new one's)."""
    h = hashlib.sha256(json.dumps(dataclasses.asdict(template), sort_keys=True).encode())
    for s in samples:
        h.update(json.dumps([s.history_ids, s.history_titles, s.target_id, s.target_title]).encode())
    return h.hexdigest()[:16]
