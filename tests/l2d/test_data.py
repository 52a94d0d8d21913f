"""D3 CSV and catalog loading, prefix augmentation, the synthetic generator, real data."""
import csv
import warnings

import pytest

from pyl2d.l2d.data import folders, records
from pyl2d.l2d.data.synthetic import make_synthetic

HEADER = ["user_id", "history_item_title", "item_title", "history_item_id", "item_id", "extra"]


def write_rows(path, rows, header=HEADER):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        for r in rows:
            w.writerow(r)


def test_loads_rows_with_html_and_quotes(tmp_path):
    p = tmp_path / "valid.csv"
    write_rows(p, [
        ["u1", repr(["Don't Explain", 'He said "hi"']), "A &amp; B <i>live</i>", "[3, 4]", "5", "x"],
        ["u2", "[]", "Solo", "[]", "1", "y"],
    ])
    samples, report = records.load_samples(p)
    assert report.bad_rows == [] and report.n_rows == 2
    assert samples[0] == records.Sample((3, 4), ("Don't Explain", 'He said "hi"'), 5, "A &amp; B <i>live</i>")
    assert samples[1].history_ids == () and samples[1].target_id == 1


def test_malformed_rows_are_counted_with_line_numbers(tmp_path):
    p = tmp_path / "valid.csv"
    with open(p, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        w.writerow(["u1", "['a', 'b']", "c", "[1, 2]", "3", ""])            # line 2: fine
        w.writerow(["u2", "['a', 'b'", "c", "[1, 2]", "3", ""])             # line 3: bad literal
        w.writerow(["u3", "['multi',\n 'line']", "c", "[1, 2]", "3", ""])   # lines 4-5: fine
        w.writerow(["u4", "['a']", "c", "[1, 2]", "3", ""])                 # line 6: length mismatch
        w.writerow(["u5", "['a']", "c", "[1]", "three", ""])                # line 7: bad id
        w.writerow(["u6", "['a']", "c", "[1]", "3", "", "surplus"])         # line 8: extra field
        w.writerow(["u7", "['a']", "c", "['x']", "3", ""])                  # line 9: non-int id
    with pytest.warns(UserWarning, match="skipped 5 of 7 rows"):
        samples, report = records.load_samples(p)
    assert len(samples) == 2 and samples[1].history_titles == ("multi", "line")
    assert [line for line, _ in report.bad_rows] == [3, 6, 7, 8, 9]
    assert "2 titles but 1 ids" not in report.summary() and "1 titles but 2 ids" in report.summary()


def test_rows_that_are_not_utf8_are_skipped_with_their_line(tmp_path):
    p = tmp_path / "test.csv"
    lines = [",".join(HEADER),
             "u1,\"['a', 'b']\",c,\"[1, 2]\",3,",            # line 2: fine
             "u2,\"['caf\xe9']\",c,[1],3,",                  # line 3: latin-1 byte in a history title
             "u3,\"['a']\",\xff\xfe,[1],3,",                  # line 4: bad bytes in the target title
             "u\xff4,\"['a']\",d,[1],4,\x80",                 # line 5: bad bytes only in ignored columns
             "u5,\"['\xc3\xa9t\xc3\xa9']\",e,[2],5,"]          # line 6: real UTF-8
    p.write_bytes("\n".join(lines).encode("latin-1") + b"\n")
    with pytest.warns(UserWarning, match=r"test\.csv: skipped 2 of 5 rows: line 3: history_item_title is not valid "
                                         r"UTF-8 \(byte 0xe9 at character 6\); line 4: item_title is not valid UTF-8"):
        samples, report = records.load_samples(p)
    assert [line for line, _ in report.bad_rows] == [3, 4]
    assert [s.target_id for s in samples] == [3, 4, 5] and samples[2].history_titles == ("\u00e9t\u00e9",)


def test_line_numbers_count_blank_lines_and_reasons_are_exact(tmp_path):
    p = tmp_path / "valid.csv"
    p.write_text(",".join(HEADER) + "\n"
                 "u1,['a'],c,[1],3,\n"        # line 2: fine
                 "\n\n"                        # lines 3-4: blank
                 "u2,['a'],c,[1],-1,\n"       # line 5: negative id
                 "u3,['a'],c,[-2],3,\n"       # line 6: negative history id
                 "u4,['a'],c,[1],abc,\n")     # line 7: not an integer
    with pytest.warns(UserWarning, match="skipped 3 of 4 rows"):
        _, report = records.load_samples(p)
    assert report.bad_rows == [(5, "item id -1 is negative"), (6, "history_item_id: item id -2 is negative"),
                               (7, "item id 'abc' is not an integer")]


def test_a_repeated_column_and_an_oversized_history_are_refused(tmp_path):
    p = tmp_path / "valid.csv"
    write_rows(p, [["u1", "['a']", "c", "[1]", "3", "x", "0"]], header=HEADER + ["item_id"])
    with pytest.raises(ValueError, match="names column 'item_id' 2 times"):
        records.load_samples(p)
    huge = repr(list(range(records.MAX_LIST_FIELD // 3)))
    write_rows(p, [["u1", "['a']", "c", "[1]", "3", ""], ["u2", repr(["t"] * (records.MAX_LIST_FIELD // 3)), "c", huge,
                                                           "3", ""]])
    with pytest.warns(UserWarning, match="line 3: cannot parse: history_item_title is .* characters long"):
        samples, _ = records.load_samples(p)
    assert len(samples) == 1


def test_rows_are_checked_against_the_catalog_with_their_line(tmp_path):
    p = tmp_path / "test.csv"
    write_rows(p, [["u1", "['a']", "b", "[0]", "1", ""],        # line 2: fine
                   ["u2", "['a']", "b", "[0]", "9", ""],        # line 3: outside the catalog
                   ["u3", "['a']", "Wrong", "[0]", "1", ""]])   # line 4: a title the catalog does not give
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        samples, report = records.load_samples(p, catalog=records.Catalog(["a", "b"]))
    assert report.bad_rows == [(3, "item id 9 is outside the catalog of 2 items")] and len(samples) == 2
    messages = [str(w.message) for w in caught]
    assert any("1 rows title an item otherwise than the catalog (line 4: item 1 is 'Wrong' here, 'b' in" in m
               for m in messages), messages


def test_catalog_line_that_is_not_utf8_is_kept_and_reported(tmp_path):
    p = tmp_path / "items.txt"
    p.write_bytes(b"Fine\t0\nCaf\xe9 del Mar\t1\nLast\t2\n")
    with pytest.warns(UserWarning, match=r"items\.txt: 1 line\(s\) not valid UTF-8.*line 2: byte 0xe9"):
        cat = records.load_catalog(p)
    assert cat.titles == ["Fine", "Caf\ufffd del Mar", "Last"]
    p.write_bytes(b"Fine\t0\nx\t\xff1\n")
    with pytest.raises(ValueError, match=r"line 2: item id '\ufffd1' is not an integer"):
        records.load_catalog(p)


def test_file_without_usable_rows_is_an_error(tmp_path):
    p = tmp_path / "bad.csv"
    write_rows(p, [["u", "nonsense(", "t", "[1]", "1", ""]])
    with pytest.raises(ValueError, match="no usable row"):
        records.load_samples(p)
    q = tmp_path / "nocol.csv"
    write_rows(q, [["u", "t"]], header=["user_id", "item_title"])
    with pytest.raises(ValueError, match="lacks the column"):
        records.load_samples(q)
    with pytest.raises(FileNotFoundError):
        records.load_samples(tmp_path / "missing.csv")


def test_catalog_formats_and_errors(tmp_path):
    a = tmp_path / "a.txt"
    a.write_text("Greatest Hits\t0\nSolo\t1\nGreatest Hits\t2\n")
    cat = records.load_catalog(a)
    assert len(cat) == 3 and cat.ids_with_title("Greatest Hits") == [0, 2]
    assert not cat.title_is_unique(0) and cat.title_is_unique(1)
    b = tmp_path / "b.txt"
    b.write_text("<a_1><b_2>\tPen, \"blue\"\t0\n<a_3>\tTape\t1\n")
    assert records.load_catalog(b).titles == ['Pen, "blue"', "Tape"]
    c = tmp_path / "c.txt"
    c.write_text("x\t0\ny\t2\n")
    with pytest.raises(ValueError, match="dense"):
        records.load_catalog(c)
    c.write_text("x\t0\ny\t0\n")
    with pytest.raises(ValueError, match="appears twice"):
        records.load_catalog(c)
    c.write_text("x\tzero\n")
    with pytest.raises(ValueError, match="not an integer"):
        records.load_catalog(c)


def test_prefix_augmentation():
    s = records.Sample((1, 2, 3), ("a", "b", "c"), 4, "d")
    out = records.prefix_augment([s, records.Sample((1, 2), ("a", "b"), 3, "c")])
    assert [(x.history_ids, x.target_id) for x in out] == [((1,), 2), ((1, 2), 3), ((1, 2, 3), 4)]
    assert out[0].history_titles == ("a",) and out[0].target_title == "b"


def test_unknown_ids_and_empty_history_are_errors():
    cat = records.Catalog(["a", "b"])
    with pytest.raises(ValueError, match="outside the catalog"):
        cat.check_ids([records.Sample((0,), ("a",), 5, "?")])
    with pytest.raises(ValueError, match="empty"):
        records.sample_from_history([], cat)
    with pytest.raises(ValueError, match="outside the catalog"):
        records.sample_from_history([0, 9], cat)


def test_synthetic_is_deterministic_and_consistent():
    a, b = make_synthetic(seed=1), make_synthetic(seed=1)
    assert a.train == b.train and a.catalog.titles == b.catalog.titles
    for s in a.train + a.test:
        assert all(a.catalog.title(i) == t for i, t in zip(s.history_ids, s.history_titles))
        assert a.catalog.title(s.target_id) == s.target_title and s.history_ids
    assert len(a.test) == 600


@pytest.mark.data
@pytest.mark.parametrize("name,n_items,n_valid,n_test", [("amazon-cds", 5841, 6156, 6157),
                                                         ("amazon-office", 3459, 4866, 4866)])
def test_real_data_loads(data_dir, name, n_items, n_valid, n_test):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = folders.load_folder(data_dir / name)
    assert (len(ds.catalog), len(ds.train), len(ds.test)) == (n_items, n_valid, n_test)
    assert all(ds.catalog.title(s.target_id) == s.target_title for s in ds.test[:500])
