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


# What a template may hold: its fields' types, the placeholders of its two format strings, and a
# bound on each text (a template is user input, and each character is paid for in every prefill).
MAX_FIELD_CHARS = 4096
_FIELD_TYPES = {"template": str, "instruction": str, "item_format": str, "separator": str, "max_history": int,
                "answer_prefix": str, "use_chat_template": bool}
_KIND_NAMES = {str: "a string", int: "an integer", bool: "true or false"}
_PLACEHOLDERS = {"template": ("instruction", "history", "n"), "item_format": ("title",)}


def _check_placeholders(name: str, text: str, allowed: tuple[str, ...], required: str) -> None:
    """``text`` may hold only the plain placeholders ``allowed`` (no format spec, conversion,
    attribute or index) and must hold ``{required}``; else a ValueError naming ``name``."""
    import string

    shown = ", ".join("{" + a + "}" for a in allowed)
    try:
        parts = list(string.Formatter().parse(text))
    except ValueError as exc:  # a lone brace
        raise ValueError(f"{name} {text[:80]!r}: {exc}; write a literal brace as {{{{ or }}}}") from None
    found = set()
    for _, field, spec, conversion in parts:
        if field is None:
            continue
        if field not in allowed or spec or conversion:
            what = "{" + field + ("!" + conversion if conversion else "") + (":" + spec if spec else "") + "}"
            why = "unknown placeholder" if field not in allowed else "a format spec or conversion"
            raise ValueError(f"{name} has {why} {what[:80]!r}: only plain {shown} are allowed "
                             "(a literal brace is {{ or }})")
        found.add(field)
    if required not in found:
        raise ValueError(f"{name} must contain {{{required}}}")


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
        for name, kind in _FIELD_TYPES.items():
            value = getattr(self, name)
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise ValueError(f"{name} must be {_KIND_NAMES[kind]}, got {type(value).__name__} {value!r:.80}")
            if kind is str and len(value) > MAX_FIELD_CHARS:
                raise ValueError(f"{name} is {len(value):,} characters long; at most {MAX_FIELD_CHARS:,} are allowed")
        if self.max_history < 1:
            raise ValueError(f"max_history must be >= 1, got {self.max_history}")
        # Checked now, so that a bad placeholder fails here, not mid-build, and hostile ones
        # ({n:>50000000}, {history.__class__}) never render.
        _check_placeholders("template", self.template, _PLACEHOLDERS["template"], required="history")
        _check_placeholders("item_format", self.item_format, _PLACEHOLDERS["item_format"], required="title")

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


MAX_TEMPLATE_FILE_BYTES = 64 * 1024  # a template is a few fields of a few KiB at most


def load_template(path) -> PromptTemplate:
    """A prompt template from a JSON file holding an object with some of PromptTemplate's
    fields (the ``"template"`` entry of a ``pyl2d_training.json`` or memory manifest; the
    others keep their defaults). An unreadable, oversized or malformed file, an unknown field
    or a bad value is a one-line ValueError naming the file and the field."""
    import json
    import pathlib

    from pyl2d._io import open_regular, strict_json

    path = pathlib.Path(path)
    try:
        with open(open_regular(path), "rb") as f:  # a FIFO is refused, not waited on
            raw = f.read(MAX_TEMPLATE_FILE_BYTES + 1)
    except OSError as exc:
        raise ValueError(f"template file {path}: cannot read it ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise ValueError(f"template file {exc}") from None
    if len(raw) > MAX_TEMPLATE_FILE_BYTES:
        raise ValueError(f"template file {path}: larger than {MAX_TEMPLATE_FILE_BYTES // 1024} KiB; a prompt template "
                         "is a JSON object of a few short fields")
    try:
        data = strict_json(raw.decode("utf-8"))  # a field given twice is an error, not the last
    except UnicodeDecodeError as exc:
        raise ValueError(f"template file {path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except (ValueError, RecursionError) as exc:
        where = f" (line {exc.lineno}, column {exc.colno})" if isinstance(exc, json.JSONDecodeError) else ""
        raise ValueError(f"template file {path}: not valid JSON{where}") from None
    if not isinstance(data, dict):
        raise ValueError(f"template file {path}: expected a JSON object of template fields, got a "
                         f"{type(data).__name__}")
    known = [f.name for f in dataclasses.fields(PromptTemplate)]
    unknown = [k for k in data if k not in known]
    if unknown:
        raise ValueError(f"template file {path}: unknown field {unknown[0]!r:.80} (the fields are {', '.join(known)})")
    try:
        return PromptTemplate(**data)
    except ValueError as exc:
        raise ValueError(f"template file {path}: field {exc}") from None
