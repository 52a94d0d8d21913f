"""Every default the README and docs/*.md state is the code's: a stated default is written
`` `value`<!-- default: <dotted path> --> `` (the comment does not render), and this test
resolves the path (a constant, a config dataclass field, a function or class parameter, a
dict key) and compares. Change a default in the code and the docs that state it fail here."""
import dataclasses
import importlib
import inspect
import pathlib
import re

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
MARKER = re.compile(r"`([^`]*)`<!-- default: ([\w.]+) -->")
_MISSING = object()


def _markers():
    for doc in DOCS:
        for lineno, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1):
            for value, ref in MARKER.findall(line):
                yield pytest.param(value, ref, id=f"{doc.name}:{lineno}:{ref.rsplit('.', 1)[-1]}")


def _member(owner, name):
    """``owner.name``: an attribute, a dict key, a dataclass field's default, or a parameter's."""
    if isinstance(owner, dict):
        return owner.get(name, _MISSING)
    if dataclasses.is_dataclass(owner):
        for field in dataclasses.fields(owner):
            if field.name == name:
                if field.default is not dataclasses.MISSING:
                    return field.default
                return field.default_factory()
    value = getattr(owner, name, _MISSING)
    if value is _MISSING and callable(owner):
        parameter = inspect.signature(owner).parameters.get(name)
        if parameter is not None and parameter.default is not inspect.Parameter.empty:
            return parameter.default
    return value


def resolve(ref: str):
    parts = ref.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            obj = _member(obj, name)
            if obj is _MISSING:
                raise LookupError(f"{ref}: no {name!r}")
        return obj
    raise LookupError(f"{ref}: no module")


def as_doc_text(value) -> str:
    """How the docs spell ``value``: a representation by its label, None as 'none'."""
    if hasattr(value, "describe"):
        return value.describe()
    if value is None:
        return "none"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@pytest.mark.parametrize("value,ref", list(_markers()))
def test_stated_default_is_the_codes(value, ref):
    assert value == as_doc_text(resolve(ref)), f"the docs say {value!r}; {ref} is {as_doc_text(resolve(ref))!r}"


def test_the_main_defaults_are_stated_with_markers():
    refs = {ref for doc in DOCS for _, ref in MARKER.findall(doc.read_text(encoding="utf-8"))}
    assert {"pyl2d.l2d.decode.recommender.DEFAULT_REPRESENTATION",
            "pyl2d.l2d.decode.recommender.DEFAULT_METRIC"} <= refs


def test_the_representation_default_has_one_spelling():
    """Outside the study's own tables (docs/results.md), the default representation appears
    only in its marked form."""
    label = as_doc_text(resolve("pyl2d.l2d.decode.recommender.DEFAULT_REPRESENTATION"))
    for doc in DOCS:
        if doc.name == "results.md":
            continue
        text = MARKER.sub("", doc.read_text(encoding="utf-8"))
        for spelling in ("pca,norm", "pca+norm"):
            assert spelling not in text.replace(label, ""), f"{doc.name} spells the default {spelling!r} unmarked"


def test_resolve_reads_each_kind_of_reference():
    from pyl2d.l2d.model.train import DEMO_CONFIG, TrainConfig

    assert resolve("pyl2d.l2d.model.train.TrainConfig.hidden_size") == TrainConfig().hidden_size  # a field
    assert resolve("pyl2d.l2d.model.train.DEMO_CONFIG.epochs") == DEMO_CONFIG["epochs"]  # a dict key
    assert resolve("pyl2d.l2d.data.synthetic.make_synthetic.n_items") == inspect.signature(
        importlib.import_module("pyl2d.l2d.data.synthetic").make_synthetic).parameters["n_items"].default
    with pytest.raises(LookupError):
        resolve("pyl2d.l2d.model.train.TrainConfig.no_such_field")
