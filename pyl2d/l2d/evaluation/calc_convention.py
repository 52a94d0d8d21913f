"""The evaluation convention of BIGRec, D3 and MiniOneRec (their ``calc.py``), so that pyl2d's
numbers sit next to the published tables.

Convention, as those scripts compute it:

- A result file is a JSON list with one record per test query; ``"predict"`` is the ranked
  list of predicted item texts (titles), ``"output"`` the target's text (a string, or a list
  whose first element is the target). Other keys (``"instruction"``, ``"input"``) are ignored.
- Texts are compared exactly after removing surrounding double quotes, newlines and spaces
  (predicted: quotes and newlines, then whitespace; target: spaces, newlines and quotes).
- ``r`` is the 0-based position of the first predicted text equal to the target's, over the
  whole list; nothing is excluded (the user's history items count as misses).
- HR@K = mean over queries of [r < K]; NDCG@K = mean of [r < K] / log2(r + 2) (calc.py sums
  1 / ln(r + 2) and divides by 1 / ln 2: the same number, so the log base does not matter).
- K runs over 1, 3, 5, 10, 20, 50, keeping those no longer than the lists (calc.py takes the
  first query's list length; here the shortest list's, the same for fixed-length beams).
"""
from __future__ import annotations

import json
import pathlib
from typing import Sequence

from pyl2d._io import read_bounded, strict_json

KS = (1, 3, 5, 10, 20, 50)
MAX_RESULT_BYTES = 1 << 30  # a few MB per thousand queries; past this it is no result file


def predicted_text(text: str) -> str:
    """A predicted title as calc.py compares it."""
    return text.strip('"\n').strip()


def target_text(output) -> str:
    """The target title of a record's ``"output"`` (a string or a list) as calc.py compares it."""
    if isinstance(output, list):
        return output[0].strip('"').strip(" ")
    return output.strip(' \n"')


def first_hits(predictions: Sequence[Sequence[str]], targets: Sequence[str]) -> list[int]:
    """Per query, the 0-based position of the first prediction matching the target (-1: none)."""
    if len(predictions) != len(targets):
        raise ValueError(f"{len(predictions)} prediction lists but {len(targets)} targets")
    ranks = []
    for predicted, target in zip(predictions, targets):
        wanted = target_text(target)
        ranks.append(next((i for i, t in enumerate(predicted) if predicted_text(t) == wanted), -1))
    return ranks


def scores(predictions: Sequence[Sequence[str]], targets: Sequence[str], ks: Sequence[int] = KS
           ) -> dict[str, float]:
    """``{"hr@K": ..., "ndcg@K": ...}`` for each K of ``ks`` no longer than the shortest list."""
    if not predictions:
        raise ValueError("no query to score")
    return scores_of_ranks(first_hits(predictions, targets), min(len(p) for p in predictions), ks)


def scores_of_ranks(ranks: Sequence[int], list_length: int, ks: Sequence[int] = KS) -> dict[str, float]:
    """:func:`scores` from the :func:`first_hits` ranks of lists of ``list_length`` titles:
    pyl2d's Recall/NDCG (:mod:`pyl2d.l2d.evaluation.metrics`, the same formulas) under calc.py's names."""
    import torch

    from pyl2d.l2d.evaluation import metrics

    summary = metrics.summarize(torch.as_tensor(list(ranks), dtype=torch.int64), list_length, ks)
    return {key.replace("recall@", "hr@"): value for key, value in summary.items() if value is not None}


def write_results(path: str | pathlib.Path, predictions: Sequence[Sequence[str]], targets: Sequence[str],
                  inputs: Sequence[str] | None = None) -> pathlib.Path:
    """Write a calc.py result file (atomically): ``input`` (the prompt text, when given),
    ``output`` (the target title) and ``predict`` (the ranked titles) per query."""
    from pyl2d.l2d._files import write_atomic

    if len(predictions) != len(targets) or (inputs is not None and len(inputs) != len(targets)):
        raise ValueError("predictions, targets and inputs must have one entry per query")
    records = [{**({"input": inputs[i]} if inputs is not None else {}), "output": targets[i],
                "predict": [t if t is not None else "" for t in predictions[i]]} for i in range(len(targets))]
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(records, indent=1, ensure_ascii=False).encode())
    return path


def read_results(path: str | pathlib.Path) -> tuple[list[list[str]], list]:
    """(predictions, targets) of a calc.py result file; ValueError naming the file and the
    record for anything calc.py could not read."""
    path = pathlib.Path(path)
    try:
        records = strict_json(read_bounded(path, MAX_RESULT_BYTES, "a calc.py result file").decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    except ValueError as exc:  # a key twice, NaN, an integer past int()'s digit limit
        raise ValueError(f"{path}: not a calc.py result file ({str(exc).splitlines()[0][:200]})") from None
    except RecursionError:
        raise ValueError(f"{path}: JSON nested too deeply to be a calc.py result file") from None
    if not isinstance(records, list) or not records:
        raise ValueError(f"{path}: expected a non-empty JSON list of records with 'predict' and 'output'")
    predictions, targets = [], []
    for i, record in enumerate(records):
        where = f"{path}: record {i}"
        if not isinstance(record, dict):
            raise ValueError(f"{where} is a {type(record).__name__}, not an object")
        predict, output = record.get("predict"), record.get("output")
        if not isinstance(predict, list) or not all(isinstance(t, str) for t in predict):
            raise ValueError(f"{where}: 'predict' must be a list of strings")
        if isinstance(output, list):
            if not output or not isinstance(output[0], str):
                raise ValueError(f"{where}: 'output' is a list whose first element is not a string")
        elif not isinstance(output, str):
            raise ValueError(f"{where}: 'output' must be a string (or a list of them)")
        predictions.append(predict)
        targets.append(output)
    if min(len(p) for p in predictions) == 0:
        raise ValueError(f"{path}: a record has an empty 'predict' list")
    return predictions, targets


def format_table(rows: Sequence[tuple[str, dict[str, float]]], ks: Sequence[int] = KS) -> str:
    """A Markdown table of (name, :func:`scores`) rows; "-" where K exceeded the lists."""
    head = ["method"] + [f"HR@{k}" for k in ks] + [f"NDCG@{k}" for k in ks]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, values in rows:
        cells = [name] + [_fmt(values.get(f"hr@{k}")) for k in ks] + [_fmt(values.get(f"ndcg@{k}")) for k in ks]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
