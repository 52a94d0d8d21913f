"""Reading files that may come from someone else, bounded: only regular files (a FIFO would
block the reader forever, ``/dev/zero`` never ends), at most a stated size, and JSON that is
strict (NaN/Infinity and a key given twice, which ``json`` resolves silently to the last, are
errors). Every error is a ValueError naming the file, or an OSError from the system with it."""
from __future__ import annotations

import fcntl
import io
import json
import os
import pathlib
import stat

_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"))


def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"key {key[:80]!r} appears twice in one object")
            seen.add(key)
    return obj


def strict_json(text: str | bytes):
    """``json.loads`` without NaN/Infinity and without repeated keys (ValueError)."""
    return json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_reject_constant)


def open_regular(path: str | pathlib.Path) -> int:
    """A read-only descriptor of ``path`` once it is known to be a regular file (opened without
    blocking, so a FIFO is refused instead of waited on); ValueError naming what it is."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
            raise ValueError(f"{path} is {kind}, not a regular file")
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~os.O_NONBLOCK)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_text(path: str | pathlib.Path, *, encoding: str = "utf-8", errors: str = "strict",
              newline: str | None = None) -> io.TextIOWrapper:
    """``open(path)`` for reading text from a file that must be a regular one (see
    :func:`open_regular`)."""
    return open(open_regular(path), encoding=encoding, errors=errors, newline=newline, closefd=True)


def read_bounded(path: str | pathlib.Path, limit: int, what: str) -> bytes:
    """The bytes of the regular file ``path``, refused (ValueError naming it and ``what`` it
    should be) when it holds more than ``limit`` bytes; never reads past the limit."""
    fd = open_regular(path)
    with open(fd, "rb", closefd=True) as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"{path} is over {limit:,} bytes: too large to be {what}")
    return data


def read_json(path: str | pathlib.Path, limit: int, what: str):
    """The strict JSON in the regular file ``path`` (see :func:`read_bounded`); ValueError
    naming the file for a file that is not one."""
    data = read_bounded(path, limit, what)
    try:
        return strict_json(data)
    except (ValueError, RecursionError) as exc:  # RecursionError: nested too deep
        detail = "nested too deeply" if isinstance(exc, RecursionError) else str(exc).splitlines()[0][:200]
        raise ValueError(f"{path} is not valid JSON ({detail}): it should be {what}") from None
