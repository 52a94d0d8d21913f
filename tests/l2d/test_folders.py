"""Data folders as published: D3/BIGRec (with or without train.csv) and MiniOneRec (train/,
valid/, test/ CSVs, info/*.txt catalogs, quoted ids, semantic-id columns), the explicit
choice of the split that trains, and clear errors for what is not there."""
import csv
import pathlib

import pytest

from pyl2d.l2d.data.folders import DataSource, load_folder

TITLES = ["Pen, \"blue\"", "Tape", "Stapler", "Ink", "Folder"]
SIDS = ["<a_1><b_2><c_3>", "<a_1><b_2><c_4>", "<a_5><b_0><c_0>", "<a_7><b_1><c_1>", "<a_9><b_9><c_9>"]
COLUMNS = ["user_id", "history_item_title", "item_title", "history_item_id", "item_id", "history_item_sid",
           "item_sid"]


def _row(user: str, history: list[int], target: int) -> list[str]:
    """A MiniOneRec row: ids as quoted strings, semantic ids beside the titles."""
    return [user, repr([TITLES[i] for i in history]), TITLES[target], repr([str(i) for i in history]), str(target),
            repr([SIDS[i] for i in history]), SIDS[target]]


def write_minionerec(root: pathlib.Path, category: str = "Office_Products") -> pathlib.Path:
    stem = f"{category}_5_2016-10-2018-11"
    rows = {"train": [_row("u1", [0], 1), _row("u1", [0, 1], 2), _row("u2", [3], 4)],
            "valid": [_row("u1", [0, 1, 2], 3)],
            "test": [_row("u1", [0, 1, 2, 3], 4), _row("u2", [3, 4], 0)]}
    for split, lines in rows.items():
        (root / split).mkdir(parents=True, exist_ok=True)
        with open(root / split / f"{stem}.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(COLUMNS)
            w.writerows(lines)
    (root / "info").mkdir(exist_ok=True)
    (root / "info" / f"{stem}.txt").write_text("".join(f"{s}\t{t}\t{i}\n" for i, (s, t) in enumerate(zip(SIDS, TITLES))))
    return root


def test_minionerec_folder_loads_unchanged(tmp_path):
    ds = load_folder(write_minionerec(tmp_path / "Amazon"))
    assert ds.train_split == "train"
    assert [(s.history_ids, s.target_id) for s in ds.train] == [((0,), 1), ((0, 1), 2), ((3,), 4)]
    assert [(s.history_ids, s.target_id) for s in ds.test] == [((0, 1, 2, 3), 4), ((3, 4), 0)]
    assert ds.catalog.titles == TITLES and ds.catalog.sids == SIDS
    assert ds.name == "Amazon-Office_Products_5_2016-10-2018-11"


@pytest.mark.parametrize("split,n", [("valid", 1), ("train+valid", 4), ("train", 3)])
def test_the_training_split_is_an_explicit_choice(tmp_path, split, n):
    root = write_minionerec(tmp_path / "Amazon")
    assert len(load_folder(root, train_split=split).train) == n
    assert load_folder(DataSource(root, split)).train_split == split


def test_several_categories_need_a_choice(tmp_path):
    root = write_minionerec(tmp_path / "Amazon")
    write_minionerec(root, "Industrial_and_Scientific")
    with pytest.raises(ValueError, match="category"):
        load_folder(root)
    assert load_folder(root, category="Industrial").name.endswith("Industrial_and_Scientific_5_2016-10-2018-11")
    with pytest.raises(FileNotFoundError, match="starting with 'Books'"):
        load_folder(root, category="Books")


def test_a_category_named_in_full_is_not_ambiguous_with_a_longer_one(tmp_path):
    root = write_minionerec(tmp_path / "Amazon", "Arts")
    write_minionerec(root, "Arts_Crafts")
    assert load_folder(root, category="Arts").name.endswith("-Arts_5_2016-10-2018-11")
    assert load_folder(root, category="Arts_Crafts").name.endswith("-Arts_Crafts_5_2016-10-2018-11")


def test_splits_of_different_categories_are_an_error(tmp_path):
    root = write_minionerec(tmp_path / "Amazon")
    write_minionerec(tmp_path / "other", "Arts")
    for split in ("valid", "test"):  # valid/ and test/ hold Arts only; train/ Office only
        (root / split / "Office_Products_5_2016-10-2018-11.csv").unlink()
        (tmp_path / "other" / split / "Arts_5_2016-10-2018-11.csv").rename(root / split / "Arts_5_2016-10-2018-11.csv")
    (tmp_path / "other" / "info" / "Arts_5_2016-10-2018-11.txt").rename(root / "info" / "Arts_5_2016-10-2018-11.txt")
    with pytest.raises(ValueError, match="the splits hold different categories"):
        load_folder(root)


def test_d3_folder_with_and_without_train_csv(tmp_path):
    root = write_minionerec(tmp_path / "src")
    d3 = tmp_path / "d3"
    d3.mkdir()
    for split in ("valid", "test"):
        (d3 / f"{split}.csv").write_bytes((root / split / "Office_Products_5_2016-10-2018-11.csv").read_bytes())
    (d3 / "items.txt").write_bytes((root / "info" / "Office_Products_5_2016-10-2018-11.txt").read_bytes())
    ds = load_folder(d3)
    assert ds.train_split == "valid" and len(ds.train) == 1  # D3's public folders train on valid.csv
    with pytest.raises(FileNotFoundError, match="no train split"):
        load_folder(d3, train_split="train")
    with pytest.raises(ValueError, match="picks a category of a MiniOneRec folder"):
        load_folder(d3, category="Office_Products")  # silently ignored, it would read as applied
    (d3 / "train.csv").write_bytes((root / "train" / "Office_Products_5_2016-10-2018-11.csv").read_bytes())
    assert load_folder(d3).train_split == "train" and len(load_folder(d3).train) == 3


def test_bad_arguments_and_folders(tmp_path):
    with pytest.raises(ValueError, match="train_split"):
        load_folder(tmp_path, train_split="test")
    with pytest.raises(FileNotFoundError, match="not found"):
        load_folder(tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="test.csv"):
        load_folder(tmp_path)
    from pyl2d.l2d.data import Catalog
    from pyl2d.l2d.data.folders import Dataset, write_folder

    with pytest.raises(ValueError, match="item 1's title holds a tab or line break"):
        write_folder(Dataset(Catalog(["a", "b\tc"]), [], []), tmp_path / "out")


@pytest.mark.data
def test_real_office_data_in_minionerec_layout(data_dir, tmp_path):
    """amazon-office comes from MiniOneRec: laid out as MiniOneRec publishes it (links, never
    copies), it loads to the same rows, catalog and semantic ids as the D3 layout."""
    src = data_dir / "amazon-office"
    stem = "Office_Products_5_2016-10-2018-11"
    root = tmp_path / "Amazon"
    for split, name in (("valid", "valid.csv"), ("test", "test.csv")):
        (root / split).mkdir(parents=True)
        (root / split / f"{stem}.csv").symlink_to(src / name)
    (root / "info").mkdir()
    (root / "info" / f"{stem}.txt").symlink_to(src / "items.txt")
    d3, mini = load_folder(src), load_folder(root)
    assert mini.train_split == "valid" and mini.train == d3.train and mini.test == d3.test
    assert mini.catalog.titles == d3.catalog.titles and len(mini.catalog.sids) == 3459
    assert mini.catalog.sids[0].startswith("<a_")


def _second_window(root: pathlib.Path, splits=("train", "valid", "test")) -> None:
    """Another time window of the same category beside the first (MiniOneRec publishes
    several), its catalog reversed so that reading the wrong one shows."""
    stem, other = "Office_Products_5_2016-10-2018-11", "Office_Products_5_2014-01-2016-09"
    for split in splits:
        (root / split / f"{other}.csv").write_bytes((root / split / f"{stem}.csv").read_bytes())
    rows = list(zip(SIDS, TITLES))[::-1]
    (root / "info" / f"{other}.txt").write_text("".join(f"{s}\t{t}\t{i}\n" for i, (s, t) in enumerate(rows)))


def test_a_second_catalog_window_does_not_block_the_splits_window(tmp_path):
    """info/ holds two windows of one category and the splits one: the splits' window's
    catalog is read, with or without --category (it failed both ways, asking for --category)."""
    root = write_minionerec(tmp_path / "Amazon")
    _second_window(root, splits=())
    for category in (None, "Office_Products"):
        ds = load_folder(root, category=category)
        assert ds.catalog.titles == TITLES and ds.name.endswith("Office_Products_5_2016-10-2018-11")


def test_two_windows_in_the_splits_are_picked_by_their_full_name(tmp_path):
    root = write_minionerec(tmp_path / "Amazon")
    _second_window(root)
    with pytest.raises(ValueError, match="Office_Products_5_2014-01-2016-09, Office_Products_5_2016-10-2018-11"):
        load_folder(root, category="Office_Products")
    ds = load_folder(root, category="Office_Products_5_2014-01-2016-09")
    assert ds.catalog.titles == TITLES[::-1] and ds.name.endswith("2014-01-2016-09")
    assert load_folder(root, category="Office_Products_5_2016-10-2018-11").catalog.titles == TITLES


def test_an_empty_split_folder_the_run_does_not_use_is_ignored(tmp_path):
    root = write_minionerec(tmp_path / "Amazon")
    (root / "valid" / "Office_Products_5_2016-10-2018-11.csv").unlink()  # valid/ is empty now
    assert len(load_folder(root, train_split="train").train) == 3
    with pytest.raises(FileNotFoundError, match="no valid split"):
        load_folder(root, train_split="valid")
