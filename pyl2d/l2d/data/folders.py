"""Data folders as the field publishes them, read unchanged into one :class:`Dataset`.

Two layouts are recognised:

- **D3 / BIGRec** (and ``../shared/data``): ``valid.csv``, ``test.csv``, ``items.txt``, and
  ``train.csv`` where the source published one.
- **MiniOneRec**: ``train/``, ``valid/`` and ``test/`` folders holding one CSV per category
  (``Office_Products_5_2016-10-2018-11.csv``) and the catalogs in ``info/<category>*.txt``
  (``sid<TAB>title<TAB>id``). With several categories in one folder, ``category`` picks one.

Which split trains (the fine-tuning and the L2D memory) is an explicit choice,
``train_split``: "train", "valid" or "train+valid". By default it is "train" where the folder
has a train split and "valid" where it has not (D3's public folders have none; D3 trains on
valid.csv). Evaluation always reads the test split.
"""
from __future__ import annotations

import csv
import dataclasses
import pathlib

from pyl2d.l2d.data.records import REQUIRED_COLUMNS, Catalog, Sample, load_catalog, load_samples

TRAIN_SPLITS = ("train", "valid", "train+valid")
_SPLITS = ("train", "valid", "test")


@dataclasses.dataclass
class Dataset:
    """A loaded folder: the catalog, the rows that train (``train_split`` says which split(s)
    they are), the test rows, and the folder's name (with the category for MiniOneRec)."""
    catalog: Catalog
    train: list[Sample]
    test: list[Sample]
    name: str = "data"
    train_split: str = "valid"


@dataclasses.dataclass(frozen=True)
class DataSource:
    """Where a data set is and how to read it: a folder (either layout), the split(s) that
    train (None: the folder's default) and, for a MiniOneRec folder with several categories,
    which one (a file-name prefix such as "Office_Products")."""
    path: str | pathlib.Path
    train_split: str | None = None
    category: str | None = None

    def __post_init__(self):
        if self.train_split is not None and self.train_split not in TRAIN_SPLITS:
            raise ValueError(f"train_split must be one of {', '.join(TRAIN_SPLITS)}; got {self.train_split!r}")


def _category_of(stem: str) -> str:
    """``Office_Products`` of ``Office_Products_5_2016-10-2018-11``."""
    return stem.split("_5_")[0]


def _one_file(folder: pathlib.Path, pattern: str, category: str | None, what: str) -> pathlib.Path | None:
    """The single file of ``folder`` matching ``pattern`` that belongs to ``category`` (a
    category, ``Office_Products``, a prefix of one, or one time window of it named in full,
    ``Office_Products_5_2016-10-2018-11``); None where the folder holds no file of ``pattern``."""
    everything = sorted(p for p in folder.glob(pattern) if p.is_file())
    found = everything
    if category is not None:
        found = [p for p in everything if p.name.startswith(category)]
        full = [p for p in found if p.stem == category]  # one window named in full
        # "Arts" is the category of Arts_5_....csv, not of Arts_Crafts_5_....csv.
        exact = [p for p in found if _category_of(p.stem) == category]
        found = full or exact or found
    if len(found) == 1:
        return found[0]
    if not everything:
        return None
    names = ", ".join(p.name for p in everything)
    if not found:
        raise FileNotFoundError(f"{folder} holds no {what} starting with {category!r} (found: {names})")
    choices = ", ".join(p.stem for p in found)
    raise ValueError(f"{folder} holds {len(found)} {what}s ({names}); pass category= (--category) with one of: "
                     f"{choices}")


def _split_files(folder: pathlib.Path, category: str | None) -> tuple[dict[str, pathlib.Path], pathlib.Path, str]:
    """({split: CSV path}, catalog path, data set name) for either layout. A MiniOneRec split
    folder with no CSV at all counts as absent (the run fails only if it needs that split)."""
    if (folder / "test").is_dir() and (folder / "info").is_dir():  # MiniOneRec
        found = {split: _one_file(folder / split, "*.csv", category, f"{split} CSV")
                 for split in _SPLITS if (folder / split).is_dir()}
        files = {split: path for split, path in found.items() if path is not None}
        if "test" not in files:
            raise FileNotFoundError(f"{folder}/test holds no CSV")
        stem = files["test"].stem
        other = next((f for f in files.values() if f.stem != stem), None)
        if other is not None:  # one category's rows trained, another's tested
            raise ValueError(f"{folder}: the splits hold different categories or time windows "
                             f"({other.relative_to(folder)} but test/{files['test'].name}); pass category= "
                             f"(--category) to pick one they all hold, e.g. {stem}")
        # The catalog of the splits' own window where info/ has it (info/ may hold several
        # windows of one category), else the category's one catalog.
        catalog = folder / "info" / f"{stem}.txt"
        if not catalog.is_file():
            catalog = _one_file(folder / "info", "*.txt", _category_of(stem), "catalog (.txt)")
        if catalog is None:
            raise FileNotFoundError(f"{folder}/info holds no catalog (.txt) for {stem}")
        return files, catalog, f"{folder.name}-{stem}"
    if category is not None:
        raise ValueError(f"category={category!r} (--category) picks a category of a MiniOneRec folder; {folder} is "
                         "a D3/BIGRec folder of one data set")
    files = {split: folder / f"{split}.csv" for split in _SPLITS if (folder / f"{split}.csv").is_file()}
    for name in ("test.csv", "items.txt"):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder} has no {name}: expected a D3/BIGRec folder (valid.csv or train.csv, "
                                    "test.csv, items.txt) or a MiniOneRec one (train/, valid/, test/, info/)")
    return files, folder / "items.txt", folder.name


def load_folder(folder: str | pathlib.Path | DataSource, train_split: str | None = None,
                category: str | None = None) -> Dataset:
    """Load a D3/BIGRec or MiniOneRec folder (see the module docstring); ``folder`` may be a
    :class:`DataSource`, which then carries ``train_split`` and ``category``."""
    if isinstance(folder, DataSource):
        folder, train_split, category = folder.path, folder.train_split, folder.category
    DataSource(folder, train_split, category)  # validates train_split
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"data folder {folder} not found")
    files, catalog_path, name = _split_files(folder, category)
    if train_split is None:
        train_split = "train" if "train" in files else "valid"
    missing = [s for s in train_split.split("+") if s not in files]
    if missing:
        raise FileNotFoundError(f"{folder} has no {missing[0]} split for train_split={train_split!r} "
                                f"(splits found: {', '.join(files)})")
    catalog = load_catalog(catalog_path)
    train: list[Sample] = []
    for split in train_split.split("+"):
        rows, _ = load_samples(files[split], catalog=catalog)
        train += rows
    test, _ = load_samples(files["test"], catalog=catalog)
    return Dataset(catalog, train, test, name, train_split)


def write_folder(dataset: Dataset, folder: str | pathlib.Path) -> pathlib.Path:
    """Write ``valid.csv`` (the training rows), ``test.csv`` and ``items.txt`` in the D3 format
    :func:`load_folder` reads, e.g. to export the synthetic data set."""
    folder = pathlib.Path(folder)
    bad = next((i for i, t in enumerate(dataset.catalog.titles) if any(c in t for c in "\t\n\r")), None)
    if bad is not None:  # items.txt is one title<TAB>id per line
        raise ValueError(f"item {bad}'s title holds a tab or line break, which items.txt cannot hold: "
                         f"{dataset.catalog.titles[bad][:60]!r}")
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in (("valid.csv", dataset.train), ("test.csv", dataset.test)):
        with (folder / name).open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(REQUIRED_COLUMNS)
            for s in rows:
                writer.writerow([repr(list(s.history_titles)), s.target_title, repr(list(s.history_ids)), s.target_id])
    with (folder / "items.txt").open("w", encoding="utf-8") as f:
        sids = dataset.catalog.sids
        for item_id, title in enumerate(dataset.catalog.titles):
            f.write(f"{sids[item_id]}\t{title}\t{item_id}\n" if sids else f"{title}\t{item_id}\n")
    return folder
