"""The JSONL files of ``pyl2d perm score``: reading the dialogues, finding the ids already
scored (to resume), and appending to the output with a torn last line repaired."""
from __future__ import annotations

import json
import pathlib
import sys


def read_rows(path: pathlib.Path, id_field: str, completion_field: str) -> tuple[list[tuple[str, dict]], list[str]]:
    """(id, row) of each well-formed input line, and a "file:line: what is wrong" for each other
    (a repeated id is wrong too: the output, and resuming, go by id)."""
    rows, problems, first_line = [], [], {}
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            where = f"{path}:{lineno}"
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                problems.append(f"{where}: not valid UTF-8 (byte {exc.object[exc.start]:#04x} at column "
                                f"{exc.start + 1})")
                continue
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except (ValueError, RecursionError) as exc:
                problems.append(f"{where}: not valid JSON ({getattr(exc, 'msg', type(exc).__name__)})")
                continue
            if not isinstance(row, dict):
                problems.append(f"{where}: expected a JSON object")
            elif not _encodable(row):
                problems.append(f"{where}: text holds an unpaired surrogate escape (\\ud800-\\udfff), "
                                "which is no character and cannot be sent to a judge")
            elif not isinstance(row.get(completion_field), str):
                problems.append(f"{where}: field {completion_field!r} is missing or not text")
            else:
                key = str(row.get(id_field, lineno))
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
    ids = set()
    with path.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                ids.add(str(json.loads(line)["id"]))
            except (ValueError, KeyError, TypeError):
                continue
    return ids


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
