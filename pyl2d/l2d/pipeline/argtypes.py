"""argparse ``type=`` validators for the L2D subcommands.

A bad value becomes an argparse error naming the flag (exit status 2, no traceback) instead of
a crash deep inside torch or a half-done run: counts must be positive, floats finite, a
device must exist on this machine, and an output path must be of the kind expected (a
folder, or a file) when it already exists.
"""
from __future__ import annotations

import argparse
import math
import pathlib

DEVICES = "cpu, cuda or cuda:N"


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def non_negative_int(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text}")
    return value


def layer_spec(text: str) -> int | tuple[int, ...] | None:
    """Which hidden state: "final" (None: the final normed state), an index such as "-2"
    (``hidden_states[-2]``), or indices joined by commas such as "-3,-2,-1" (their mean)."""
    name = text.strip().lower()
    if name == "final":
        return None
    parts = [p.strip() for p in name.split(",")]
    try:
        indices = tuple(int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a layer: give 'final', a hidden_states index "
                                         "like -2, or indices like -3,-2,-1 (their mean)") from None
    if len(set(indices)) < len(indices):
        raise argparse.ArgumentTypeError(f"{text!r} names a layer twice")
    return indices if len(indices) > 1 else indices[0]


def device(text: str) -> str:
    """``cpu``, ``cuda`` or ``cuda:N``, and only a CUDA device this machine has."""
    import torch

    name = text.strip().lower()
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"unknown device {text!r}; use {DEVICES}") from None
    if dev.type == "cpu":
        return "cpu"
    if dev.type != "cuda":
        raise argparse.ArgumentTypeError(f"device {text!r} is not supported; use {DEVICES}")
    if not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text!r} requested but CUDA is not available on this machine "
                                         f"(torch {torch.__version__}); use --device cpu")
    count = torch.cuda.device_count()
    if dev.index is not None and dev.index >= count:
        raise argparse.ArgumentTypeError(f"{text!r} requested but this machine has {count} CUDA device(s)")
    return name


def _path(text: str, what: str) -> pathlib.Path:
    """``text`` as a path; an empty one names no ``what``."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"an empty path names no {what}")
    return pathlib.Path(text)


def folder(text: str) -> str:
    """A folder path: fine if absent (it will be created), an error if it is a file."""
    path = _path(text, "folder")
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} exists and is not a folder")
    return text


def model_path(text: str) -> str:
    """A model: a checkpoint folder, or a ``.gguf`` file (converted on load: pyl2d.l2d.model.gguf)."""
    path = _path(text, "model")
    if path.is_file() and path.suffix.lower() != ".gguf":
        raise argparse.ArgumentTypeError(f"{text} is a file but not a .gguf; give a model folder or a .gguf file")
    return text


def file(text: str) -> str:
    """A file path to write: an error if it names a folder or lies under a file."""
    path = pathlib.Path(text)
    if not text or path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a folder; give a file name")
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: {parent} is a file, not a folder")
    return text


def template_file(text: str) -> str:
    """``--template``: a readable JSON prompt template, checked now (unknown fields or
    placeholders are an error before any model loads)."""
    from pyl2d.l2d.data.prompts import load_template

    try:
        load_template(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def representation(text: str):
    """``--representation``: a :class:`~pyl2d.l2d.decode.representation.Representation` spec."""
    from pyl2d.l2d.decode.representation import parse_representation

    try:
        return parse_representation(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def unit_float(text: str) -> float:
    """A finite number in [0, 1] (``--local-weight``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise argparse.ArgumentTypeError(f"must be a number between 0 and 1, got {text}")
    return value
