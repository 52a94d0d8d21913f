"""The JSONL files of ``pyl2d perm score``: reading the dialogues, finding the ids already
scored (to resume), and appending to the output with a torn last line repaired.

The input may come from someone else, so every size in it is bounded before use: a line is
at most ``MAX_LINE_BYTES`` (a longer one is reported and skipped without being held in
memory), an id at most ``MAX_ID_CHARS``. A row is strict JSON: NaN/Infinity and a key given
twice in one object (which ``json`` would silently resolve to the last) are malformed."""
from __future__ import annotations

import json
import pathlib
import stat
import sys
from typing import BinaryIO, Iterator, Sequence

from pyl2d._io import strict_json

MAX_LINE_BYTES = 16 << 20  # a dialogue of 16 MiB is far beyond any judge's context
MAX_ID_CHARS = 1024
_READ_CHUNK = 1 << 20


class _Malformed(ValueError):
    pass


def bounded_lines(f: BinaryIO, limit: int = MAX_LINE_BYTES) -> Iterator[bytes | None]:
    """The lines of ``f`` (bytes, newline kept), None in place of one longer than ``limit``
    bytes, whose rest is read past in chunks: memory stays O(limit) whatever the file holds."""
    while True:
        raw = f.readline(limit + 1)
        if not raw:
            return
        if len(raw) <= limit or raw.endswith(b"\n"):
            yield raw
            continue
        while raw and not raw.endswith(b"\n"):
            raw = f.readline(_READ_CHUNK)
        yield None


def _check_id(value, lineno: int) -> str:
    """The row's id as text: a JSON string or integer (a float, bool, list or object would
    be written back as some other text, and 1.0 and 1 would meet), at most MAX_ID_CHARS."""
    if value is None:
        return str(lineno)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise _Malformed(f"must be a string or an integer, got {type(value).__name__}")
    key = str(value)
    if len(key) > MAX_ID_CHARS:
        raise _Malformed(f"is {len(key)} characters long, more than {MAX_ID_CHARS}")
    return key


def read_rows(path: pathlib.Path, id_field: str, completion_field: str, text_fields: Sequence[str] = ()
              ) -> tuple[list[tuple[str, dict]], list[str]]:
    """(id, row) of each well-formed input line, and a "file:line: what is wrong" for each other
    (a repeated id is wrong too: the output, and resuming, go by id). ``text_fields``: the
    context fields (persona, scenario, query), which must be text or null where present (a
    number or object would reach the judge as its Python repr)."""
    rows, problems, first_line = [], [], {}
    with path.open("rb") as f:
        for lineno, raw in enumerate(bounded_lines(f), 1):
            where = f"{path}:{lineno}"
            if raw is None:
                problems.append(f"{where}: line longer than {MAX_LINE_BYTES >> 20} MiB")
                continue
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                problems.append(f"{where}: not valid UTF-8 (byte {exc.object[exc.start]:#04x} at column "
                                f"{exc.start + 1})")
                continue
            if not line.strip():
                continue
            try:
                row = strict_json(line)
            except (ValueError, RecursionError) as exc:
                problems.append(f"{where}: not valid JSON ({getattr(exc, 'msg', None) or exc or type(exc).__name__})"
                                [:300])
                continue
            if not isinstance(row, dict):
                problems.append(f"{where}: expected a JSON object")
            elif not _encodable(row):
                problems.append(f"{where}: text holds an unpaired surrogate escape (\\ud800-\\udfff), "
                                "which is no character and cannot be sent to a judge")
            elif not isinstance(row.get(completion_field), str):
                problems.append(f"{where}: field {completion_field!r} is missing or not text")
            elif any(row.get(name) is not None and not isinstance(row[name], str) for name in text_fields):
                name = next(n for n in text_fields if row.get(n) is not None and not isinstance(row[n], str))
                problems.append(f"{where}: field {name!r} must be text or null, got {type(row[name]).__name__}")
            else:
                try:
                    key = _check_id(row.get(id_field), lineno)
                except _Malformed as exc:
                    problems.append(f"{where}: field {id_field!r} {exc}")
                    continue
                if key in first_line:
                    problems.append(f"{where}: duplicate id {key[:80]!r} (first on line {first_line[key]})")
                    continue
                first_line[key] = lineno
                rows.append((key, row))
    return rows, problems


def _encodable(row: dict) -> bool:
    """Whether every string in ``row`` is text UTF-8 can carry (JSON's ``\\ud800`` alone is not)."""
    try:
        json.dumps(row, ensure_ascii=False).encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def done_ids(path: pathlib.Path | None) -> set[str]:
    """Ids already in an output file; a torn last line (an interrupted write) is ignored."""
    if path is None or not path.exists():
        return set()
    check_output(path)
    ids = set()
    with path.open("rb") as f:
        for raw in bounded_lines(f):
            try:
                ids.add(str(json.loads(raw.decode("utf-8", errors="replace"))["id"]))
            except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
                continue
    return ids


def check_output(path: pathlib.Path) -> None:
    """--output must be a regular file where it exists: a FIFO would block the run forever
    (reading the ids done, then appending), a device would swallow or refuse the scores."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ValueError(f"--output {path}: cannot read ({exc.strerror or type(exc).__name__})") from None
    if not stat.S_ISREG(mode):
        raise ValueError(f"--output {path} is not a regular file (a FIFO, device or socket); name a file")


def open_output(path: pathlib.Path | None):
    """The output stream: stdout, or ``path`` for appending with a torn last line repaired."""
    if path is None:
        return sys.stdout
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() and path.stat().st_size:
            with path.open("rb+") as f:  # a torn last line gets its newline back
                f.seek(-1, 2)
                if f.read(1) != b"\n":
                    f.write(b"\n")
        return path.open("a", encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"--output {path}: cannot write ({exc.strerror or type(exc).__name__})") from None
