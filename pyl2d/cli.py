"""The ``pyl2d`` command line. Each feature area adds its subcommands through an
``add_commands(subparsers)`` function in its own module, listed in ``_COMMAND_MODULES``."""
from __future__ import annotations

import argparse
import functools
import importlib
import sys
import warnings

# Modules that contribute subcommands; a module missing from this install is skipped.
_COMMAND_MODULES = ("pyl2d.l2d.pipeline.cli", "pyl2d.perm.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pyl2d",
        description="Fast latent-space decoding (L2D) for LLM recommenders and empathetic rewards (PERM).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        module.add_commands(sub)
    return parser


def _show_warning(prog, message, category, filename, lineno, file=None, line=None) -> None:
    """A warning as one line for the person at the terminal: what, not which source line
    raised it (the Python default shows pyl2d's own code)."""
    kind = "" if category is UserWarning else f" ({category.__name__})"
    print(f"{prog}: warning{kind}: {message}", file=file or sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        with warnings.catch_warnings():
            warnings.showwarning = functools.partial(_show_warning, f"pyl2d {args.command}")
            return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError) as exc:  # bad input, or a path that cannot be read or written
        print(f"pyl2d {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
