"""Recommendation data: D3/BIGRec/MiniOneRec-format CSV samples and the item catalog (the
folder layouts that hold them: :mod:`pyl2d.l2d.data.folders`).

A sample is one (history -> next item) pair. The CSV columns used are ``history_item_title``,
``item_title``, ``history_item_id``, ``item_id`` (lists as Python literals; ids may be ints or
quoted digit strings, as MiniOneRec writes them: ``['0', '17']``); every other column is
ignored (a required column named twice is an error). Malformed rows (bytes that are not
UTF-8, ids outside the catalog and histories over ``MAX_LIST_FIELD`` characters included)
are skipped, counted and reported with their line numbers, because real exports contain a
few; a file with no usable row is an error. Rows that title an item otherwise than the
catalog are kept and reported. In ``items.txt`` a title that is not valid UTF-8 keeps its line (the
ids must stay dense) with the bad bytes replaced by U+FFFD, and the line is reported.
"""
from __future__ import annotations

import ast
import csv
import dataclasses
import numbers
import pathlib
import random
import re
import sys
import warnings
from typing import Iterable, Sequence

from pyl2d._io import open_text

REQUIRED_COLUMNS = ("history_item_title", "item_title", "history_item_id", "item_id")

# Files are read with errors="surrogateescape": an undecodable byte 0xNN becomes U+DCNN, found
# per row instead of aborting the whole file at the first one.
_BAD_BYTE = re.compile("[\udc80-\udcff]")

# Titles can be long (HTML fragments, track lists); lift the csv module's 128 KiB field cap.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
# A history list longer than this is skipped as malformed (the public data sets' longest is
# about 1 KB): parsing a list literal takes ~100x its size in memory.
MAX_LIST_FIELD = 2 ** 20


@dataclasses.dataclass(frozen=True)
class Sample:
    """One training or test example: the user's history (oldest first) and the next item."""
    history_ids: tuple[int, ...]
    history_titles: tuple[str, ...]
    target_id: int
    target_title: str


@dataclasses.dataclass
class LoadReport:
    """What a loader skipped: ``bad_rows`` is a list of (line number, reason)."""
    path: str
    n_rows: int = 0
    bad_rows: list[tuple[int, str]] = dataclasses.field(default_factory=list)

    def summary(self, limit: int = 5) -> str:
        shown = "; ".join(f"line {line}: {why}" for line, why in self.bad_rows[:limit])
        more = f" (and {len(self.bad_rows) - limit} more)" if len(self.bad_rows) > limit else ""
        return f"{self.path}: skipped {len(self.bad_rows)} of {self.n_rows} rows: {shown}{more}"


class Catalog:
    """The item catalog: dense ids 0..N-1 and their titles (titles need not be unique), and
    each item's semantic id (``sids``, e.g. ``<a_60><b_159><c_203>``) where the catalog file
    gives them (MiniOneRec, D3 Office), else None: kept as an attribute, never used to rank."""

    def __init__(self, titles: Sequence[str], sids: Sequence[str] | None = None):
        if len(titles) == 0:
            raise ValueError("the catalog is empty")
        if sids is not None and len(sids) != len(titles):
            raise ValueError(f"sids has {len(sids)} entries for {len(titles)} titles")
        self.titles: list[str] = list(titles)
        self.sids: list[str] | None = None if sids is None else list(sids)
        self._by_title: dict[str, list[int]] = {}
        for item_id, title in enumerate(self.titles):
            self._by_title.setdefault(title, []).append(item_id)

    def __len__(self) -> int:
        return len(self.titles)

    def title(self, item_id: int) -> str:
        return self.titles[item_id]

    def ids_with_title(self, title: str) -> list[int]:
        """All item ids carrying ``title`` (ascending), empty if none."""
        return self._by_title.get(title, [])

    def unique_titles(self) -> list[str]:
        """Distinct titles, in first-occurrence order."""
        return list(self._by_title)

    def title_is_unique(self, item_id: int) -> bool:
        return len(self._by_title[self.titles[item_id]]) == 1

    def outside(self, sample: Sample) -> int | None:
        """The first item id of ``sample`` outside this catalog, else None."""
        n = len(self)
        return next((x for x in (*sample.history_ids, sample.target_id) if not 0 <= x < n), None)

    def check_ids(self, samples: Iterable[Sample], what: str = "samples") -> None:
        """Raise ValueError if any sample refers to an id outside the catalog."""
        n = len(self)
        for i, s in enumerate(samples):
            bad = [x for x in (*s.history_ids, s.target_id) if not 0 <= x < n]
            if bad:
                raise ValueError(f"{what}[{i}] refers to item id {bad[0]}, outside the catalog of {n} items")


def _undecodable(text: str) -> str | None:
    """A description of the first byte of ``text`` that was not valid UTF-8, else None."""
    bad = _BAD_BYTE.search(text)
    return None if bad is None else f"byte 0x{ord(bad.group()) - 0xDC00:02x} at character {bad.start() + 1}"


def _printable(text: str) -> str:
    """``text`` with undecodable bytes shown as U+FFFD (safe to print and to use as a title)."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _parse_list(text: str, column: str) -> list:
    if len(text) > MAX_LIST_FIELD:
        raise ValueError(f"{column} is {len(text)} characters long, over the {MAX_LIST_FIELD} a history may take")
    value = ast.literal_eval(text)
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{column} is not a list")
    return list(value)


def _item_id(value) -> int:
    """An item id written as an int or a quoted string of digits ('17'); ValueError else."""
    if isinstance(value, str) and re.fullmatch(r"\s*[-+]?[0-9]+\s*", value):
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"item id {value!r} is not an integer")
    if value < 0:
        raise ValueError(f"item id {value} is negative")
    return value


def _parse_row(row: dict) -> Sample:
    missing = [c for c in REQUIRED_COLUMNS if row.get(c) in (None, "")]
    # An empty history literal "[]" is fine here; a missing field is not.
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    for column in REQUIRED_COLUMNS:
        where = _undecodable(row[column])
        if where:
            raise ValueError(f"{column} is not valid UTF-8 ({where})")
    try:
        titles = _parse_list(row["history_item_title"], "history_item_title")
        ids = _parse_list(row["history_item_id"], "history_item_id")
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
        raise ValueError(f"cannot parse: {str(exc) or type(exc).__name__}".splitlines()[0][:120]) from None
    target_id = _item_id(row["item_id"].strip().strip("'\""))
    if len(titles) != len(ids):
        raise ValueError(f"history has {len(titles)} titles but {len(ids)} ids")
    if not all(isinstance(t, str) for t in titles):
        raise ValueError("history_item_title holds a non-string")
    try:
        ids = [_item_id(x) for x in ids]
    except ValueError as exc:
        raise ValueError(f"history_item_id: {exc}") from None
    return Sample(tuple(ids), tuple(titles), target_id, row["item_title"])


def load_samples(path: str | pathlib.Path, *, warn: bool = True, catalog: Catalog | None = None
                 ) -> tuple[list[Sample], LoadReport]:
    """Read a D3-format CSV. Returns the samples and a report of skipped rows.

    Raises FileNotFoundError if the file is missing and ValueError if a required column is
    absent or repeated, or no row is usable. With ``catalog``, a row naming an item outside it
    is skipped too, and rows that title an item otherwise than the catalog does are reported.
    ``warn`` emits a warning when rows were skipped or titled otherwise."""
    path = pathlib.Path(path)
    report = LoadReport(str(path))
    samples: list[Sample] = []
    retitled: list[tuple[int, int, str]] = []  # (line, item id, this file's title)
    with open_text(path, newline="", encoding="utf-8-sig", errors="surrogateescape") as f:
        # csv.reader, not DictReader: it yields blank lines too, so every row's line is known.
        reader = csv.reader(f)
        header, start_line = None, 1
        for fields in reader:
            if header is None:
                if fields:
                    header = fields
                    _check_header(path, header)
                start_line = reader.line_num + 1
                continue
            line, start_line = start_line, reader.line_num + 1
            if not fields:
                continue
            report.n_rows += 1
            try:
                if len(fields) > len(header):
                    raise ValueError("more fields than the header")
                sample = _parse_row(dict(zip(header, fields)))
                bad = None if catalog is None else catalog.outside(sample)
                if bad is not None:
                    raise ValueError(f"item id {bad} is outside the catalog of {len(catalog)} items")
            except ValueError as exc:
                report.bad_rows.append((line, str(exc)))
                continue
            samples.append(sample)
            if catalog is not None:
                retitled += [(line, i, t) for i, t in zip((*sample.history_ids, sample.target_id),
                                                           (*sample.history_titles, sample.target_title))
                             if t != catalog.titles[i]][:1]
        if header is None:
            raise ValueError(f"{path} is empty")
    if not samples:
        raise ValueError(f"{path} holds no usable row ({report.n_rows} rows read). " + report.summary())
    if report.bad_rows and warn:
        warnings.warn(report.summary(), stacklevel=2)
    if retitled and warn:
        line, item, title = retitled[0]
        warnings.warn(f"{path}: {len(retitled)} rows title an item otherwise than the catalog (line {line}: item "
                      f"{item} is {_printable(title)[:60]!r} here, {_printable(catalog.titles[item])[:60]!r} in the "
                      "catalog); prompts use this file's titles, ranked lists the catalog's", stacklevel=2)
    return samples, report


def _check_header(path: pathlib.Path, header: list[str]) -> None:
    absent = [c for c in REQUIRED_COLUMNS if c not in header]
    if absent:
        raise ValueError(f"{path} lacks the column(s) {', '.join(absent)} (found {_printable(', '.join(header))})")
    repeated = [c for c in REQUIRED_COLUMNS if header.count(c) > 1]
    if repeated:
        raise ValueError(f"{path}: the header names column {repeated[0]!r} {header.count(repeated[0])} times; "
                         "which one holds the data is ambiguous")


def load_catalog(path: str | pathlib.Path) -> Catalog:
    """Read ``title<TAB>id`` or ``sid<TAB>title<TAB>id`` lines (D3, MiniOneRec's
    ``info/*.txt``); ids must be dense 0..N-1; semantic ids are kept as ``Catalog.sids``.

    A line that is not valid UTF-8 is kept with U+FFFD for its bad bytes (skipping it would
    leave a hole in the ids) and reported in a warning with its line number."""
    path = pathlib.Path(path)
    by_id: dict[int, str] = {}
    sid_of: dict[int, str] = {}
    not_utf8: list[tuple[int, str]] = []
    with open_text(path, encoding="utf-8-sig", errors="surrogateescape") as f:
        for line_no, line in enumerate(f, 1):
            line = line.rstrip("\n").rstrip("\r")
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) not in (2, 3):
                raise ValueError(f"{path} line {line_no}: expected 'title<TAB>id' or "
                                 f"'sid<TAB>title<TAB>id', got {len(fields)} fields")
            title, raw_id = fields[-2], fields[-1]
            where = _undecodable(line)
            if where:
                not_utf8.append((line_no, where))
                title = _printable(title)
            try:
                item_id = int(raw_id)
            except ValueError:
                raise ValueError(f"{path} line {line_no}: item id {_printable(raw_id)!r} is not an integer") from None
            if item_id in by_id:
                raise ValueError(f"{path} line {line_no}: item id {item_id} appears twice")
            by_id[item_id] = title
            if len(fields) == 3:
                sid_of[item_id] = _printable(fields[0])
    if not by_id:
        raise ValueError(f"{path} holds no item")
    if not_utf8:
        shown = "; ".join(f"line {line}: {where}" for line, where in not_utf8[:5])
        more = f" (and {len(not_utf8) - 5} more)" if len(not_utf8) > 5 else ""
        warnings.warn(f"{path}: {len(not_utf8)} line(s) not valid UTF-8, their bad bytes replaced by U+FFFD: "
                      f"{shown}{more}", stacklevel=2)
    n = len(by_id)
    if min(by_id) != 0 or max(by_id) != n - 1:
        raise ValueError(f"{path}: item ids must be dense 0..{n - 1}; found {min(by_id)}..{max(by_id)}")
    if sid_of and len(sid_of) != n:
        raise ValueError(f"{path}: {len(sid_of)} of {n} lines give a semantic id (sid<TAB>title<TAB>id); "
                         "give it on every line or on none")
    return Catalog([by_id[i] for i in range(n)], [sid_of[i] for i in range(n)] if sid_of else None)


def prefix_augment(samples: Iterable[Sample], min_history: int = 1) -> list[Sample]:
    """Each sample plus every shorter prefix of its history predicting the item after it.

    Duplicates (the same user's consecutive rows already cover many prefixes) are dropped."""
    seen: set[tuple] = set()
    out: list[Sample] = []
    for s in samples:
        ids = (*s.history_ids, s.target_id)
        titles = (*s.history_titles, s.target_title)
        for end in range(max(min_history, 0), len(ids)):
            key = (ids[:end], ids[end])
            if key in seen:
                continue
            seen.add(key)
            out.append(Sample(ids[:end], titles[:end], ids[end], titles[end]))
    return out


def latest_rows(samples: Sequence[Sample]) -> list[int]:
    """Indices of the rows that end a user's sequence in ``samples``: no other row continues
    them. D3/BIGRec rows of one user are (h -> t), (h + t -> t'), ...: a row is continued
    when another row's history is the longest suffix of h + (t,) that the data's history
    length allows. Holding out only such rows keeps them out of the training data even after
    :func:`prefix_augment` (no remaining row holds their history followed by their target),
    which is what a validation split needs; no user id column is required."""
    longest = max((len(s.history_ids) for s in samples), default=0)
    if longest == 0:
        return list(range(len(samples)))
    histories = {s.history_ids for s in samples}
    return [i for i, s in enumerate(samples) if (*s.history_ids, s.target_id)[-longest:] not in histories]


def split_validation(samples: Sequence[Sample], fraction: float = 0.15, seed: int = 0
                     ) -> tuple[list[Sample], list[Sample]]:
    """(train, validation): a seeded random ``fraction`` of the rows held out for choosing
    settings, taken among the rows that end a user's sequence (:func:`latest_rows`), so the
    validation rows are each user's newest, as the test rows are, and never leak into the
    training rows or their prefixes. Raises ValueError when too few rows end a sequence."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be between 0 and 1, got {fraction}")
    candidates = [i for i in latest_rows(samples) if samples[i].history_ids]
    wanted = round(fraction * len(samples))
    if wanted < 1 or wanted > len(candidates):
        raise ValueError(f"cannot hold out {fraction:.0%} of {len(samples)} rows for validation: only "
                         f"{len(candidates)} rows end a user's sequence")
    held = set(random.Random(seed).sample(candidates, wanted))
    return ([s for i, s in enumerate(samples) if i not in held], [s for i, s in enumerate(samples) if i in held])


def with_history(samples: Iterable[Sample], what: str) -> list[Sample]:
    """The samples with a non-empty history (a prompt needs one); ValueError naming ``what``
    ("training", "test") when there is none, before any work is spent on them."""
    usable = [s for s in samples if s.history_titles]
    if not usable:
        raise ValueError(f"no {what} sample has a non-empty history")
    return usable


def sample_from_history(history_ids: Sequence[int], catalog: Catalog) -> Sample:
    """A query-only sample from item ids (target unknown: id -1)."""
    if isinstance(history_ids, (str, bytes)) or not isinstance(history_ids, Sequence):
        raise ValueError(f"a history is a list of item ids, got {type(history_ids).__name__}")
    if len(history_ids) == 0:
        raise ValueError("history is empty: give at least one item id")
    n = len(catalog)
    ids = []
    for x in history_ids:
        if isinstance(x, bool) or not isinstance(x, numbers.Integral):  # 1.9 or True is no item id
            raise ValueError(f"history holds {x!r}, which is not an integer item id")
        if not 0 <= int(x) < n:
            raise ValueError(f"history refers to item id {x}, outside the catalog of {n} items")
        ids.append(int(x))
    return Sample(tuple(ids), tuple(catalog.title(x) for x in ids), -1, "")
