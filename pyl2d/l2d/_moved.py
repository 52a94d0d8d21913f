"""Module paths that moved when ``pyl2d.l2d`` was split into rooms: importing an old
path still works for one minor release, warns once with the new path, and gives the new module
itself (so ``pyl2d.l2d.hidden is pyl2d.l2d.model.hidden``: monkeypatching either patches both).

``MOVED`` is the one list of them; an import hook (:class:`_MovedFinder`, installed by
``pyl2d/l2d/__init__.py``) serves them, so no stub files clutter the package."""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings

REMOVED_IN = "0.2"

# old module under pyl2d.l2d -> its new path under pyl2d.l2d
MOVED = {
    "folders": "data.folders", "synthetic": "data.synthetic", "prompts": "data.prompts",
    "hidden": "model.hidden", "train": "model.train", "finetune": "model.finetune",
    "memory_build": "memory.build", "memory_file": "memory.datafile", "memory_format": "memory.manifest",
    "memory_lock": "memory.lock",
    "recommender": "decode.recommender", "representation": "decode.representation",
    "interpolate": "decode.interpolate", "sharded": "decode.sharded",
    "evaluate": "evaluation.evaluate", "baselines": "evaluation.baselines", "metrics": "evaluation.metrics",
    "spread": "evaluation.spread", "calc_convention": "evaluation.calc_convention",
    "cli": "pipeline.cli", "argtypes": "pipeline.argtypes", "pipeline_config": "pipeline.config",
}
_PREFIX = "pyl2d.l2d."


def _caller_stacklevel() -> int:
    """The stacklevel of the first frame outside this module and the import machinery, so the
    warning names the user's import line, also through ``importlib.import_module``.
    (``warnings`` skips the frozen importlib frames itself, so they are not counted.)"""
    level, frame = 1, sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if filename in (__file__, importlib.__file__):
            level += 1
        elif not filename.startswith("<frozen importlib"):
            break
        frame = frame.f_back
    return level


def new_path(old: str) -> str:
    """The full new module path of ``pyl2d.l2d.<old>``."""
    return _PREFIX + MOVED[old]


def warn_moved(old: str) -> None:
    warnings.warn(f"pyl2d.l2d.{old} moved to {new_path(old)}; import it from there (the old path goes in "
                  f"pyl2d {REMOVED_IN})", FutureWarning, stacklevel=_caller_stacklevel())


class _Alias(importlib.abc.Loader):
    """Loads an old path as the new module object (created once, by importing the new path)."""

    def __init__(self, old: str):
        self.old = old

    def create_module(self, spec):
        warn_moved(self.old)
        return importlib.import_module(new_path(self.old))

    def exec_module(self, module) -> None:  # already executed under its new name
        pass


class _MovedFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if not fullname.startswith(_PREFIX):
            return None
        old = fullname[len(_PREFIX):]
        if old not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, _Alias(old))


def install() -> None:
    """Put the finder on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.append(_MovedFinder())
