"""HR/NDCG in the calc.py convention of BIGRec/D3/MiniOneRec, on a fixture whose expected
values are worked out by hand below (exact title match after stripping quotes, newlines and
spaces; first match on the whole list; nothing excluded; NDCG = 1 / log2(rank + 2))."""
import json
import math
import subprocess
import sys

import pytest

from pyl2d.l2d.evaluation import calc_convention as calc

# Four queries, lists of five titles.
RECORDS = [
    {"predict": ["A", "B", "C", "D", "E"], "output": "A"},                 # hit at 0
    {"predict": ['"B"', "A", "C\n", "D", "E"], "output": ' C\n'},          # quotes/newlines stripped: hit at 2
    {"predict": ["X", "Y", "Z", "W", "V"], "output": ["V", "ignored"]},    # a list target: its first: hit at 4
    {"predict": ["A", "A", "B", "C", "D"], "output": "Q"},                 # miss
]
# By hand: HR@K = hits with rank < K over 4 queries; NDCG@K = sum of 1/log2(rank + 2) over them / 4.
EXPECTED = {
    "hr@1": 1 / 4, "hr@3": 2 / 4, "hr@5": 3 / 4,
    "ndcg@1": 1 / 4,                                   # rank 0: 1/log2(2) = 1
    "ndcg@3": (1 + 1 / 2) / 4,                         # rank 2: 1/log2(4) = 1/2
    "ndcg@5": (1 + 1 / 2 + math.log(2) / math.log(6)) / 4,  # rank 4: 1/log2(6)
}


def test_scores_match_the_hand_computed_values():
    predictions = [r["predict"] for r in RECORDS]
    targets = [r["output"] for r in RECORDS]
    got = calc.scores(predictions, targets)
    assert set(got) == set(EXPECTED)  # K = 10, 20, 50 exceed the lists of 5: left out, as calc.py does
    for key, value in EXPECTED.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key


def test_write_then_read_round_trips(tmp_path):
    path = calc.write_results(tmp_path / "out" / "l2d.json", [["A", "B"], ["C", "D"]], ["B", "Z"], ["h1", "h2"])
    records = json.loads(path.read_text())
    assert records[0] == {"input": "h1", "output": "B", "predict": ["A", "B"]}
    predictions, targets = calc.read_results(path)
    assert calc.scores(predictions, targets) == {"hr@1": 0.0, "ndcg@1": 0.0}


@pytest.mark.parametrize("content,message", [
    ("{not json", "not JSON"),
    ("[]", "non-empty JSON list"),
    ('[{"predict": ["a"], "output": 3}]', "record 0: 'output'"),
    ('[{"predict": ["a"], "output": "a"}, {"predict": "a", "output": "a"}]', "record 1: 'predict'"),
    ('[{"predict": [], "output": "a"}]', "empty 'predict'"),
])
def test_malformed_files_are_named_with_the_record(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as err:
        calc.read_results(path)
    assert "bad.json" in str(err.value)


def test_calc_command_prints_the_table(tmp_path):
    path = tmp_path / "theirs.json"
    path.write_text(json.dumps(RECORDS))
    catalog = tmp_path / "items.txt"
    catalog.write_text("A\t0\nB\t1\nC\t2\n")
    out = subprocess.run([sys.executable, "-m", "pyl2d", "calc", str(path), "--catalog", str(catalog)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "4 queries, lists of 5" in out.stdout and "predicted titles not in the catalog" in out.stdout
    assert "| HR@1 |" in out.stdout and f"{EXPECTED['ndcg@5']:.4f}" in out.stdout
