"""L2D representation study: choose the hidden-state options on a validation split, report test.

For one data folder (D3 format, e.g. ``../shared/data/amazon-cds``) and each seed:

1. carve a validation split out of the training rows (``split_validation``: a fixed 15% of
   the rows that end a user's sequence; the same for every seed), train the tiny model on the
   rest (seeded, a fixed number of epochs) and keep it under ``--work-dir`` (reused when
   rerun with the same settings);
2. encode the memory (every prefix of the remaining training rows) and the validation and
   test queries once, at every candidate layer;
3. rank validation and test queries with every option combination of the grid below, from
   those cached hidden states, through ``L2DRecommender.rank`` (the fused ops, every option a
   pre-transform);
4. run the paper's L2D and the baselines (grounded decoding, constrained beam search,
   popularity) on the test queries with ``pyl2d.l2d.evaluation.evaluate``.

Everything is written to ``<work-dir>/study.json``; ``--report a.json b.json`` prints the
Markdown of ``docs/results.md`` from the files of several data sets: options chosen on the
validation rows only (mean over seeds), then their test scores next to the paper's L2D and the
baselines. Run from the repository root::

    python bench/l2d_study.py --data ../shared/data/amazon-cds --work-dir runs/study-cds --seeds 3
    python bench/l2d_study.py --report runs/study-cds/study.json runs/study-office/study.json
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import pathlib
import platform
import sys
import time

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from pyl2d.l2d.data import prefix_augment, split_validation  # noqa: E402
from pyl2d.l2d.data.folders import load_folder  # noqa: E402
from pyl2d.l2d.data.prompts import prompt_token_ids  # noqa: E402
from pyl2d.l2d.decode.recommender import L2DRecommender, pad_ids  # noqa: E402
from pyl2d.l2d.decode.representation import Representation, fit_transform  # noqa: E402
from pyl2d.l2d.evaluation import metrics, spread  # noqa: E402
from pyl2d.l2d.evaluation.evaluate import EvalConfig, evaluate  # noqa: E402
from pyl2d.l2d.memory import ItemMemory, data_fingerprint, model_fingerprint  # noqa: E402
from pyl2d.l2d.model.hidden import HiddenStateExtractor, layer_mean, load_model  # noqa: E402
from pyl2d.l2d.model.train import TrainConfig  # noqa: E402
from pyl2d.l2d.pipeline import prompt_template, seed_list, train_or_reuse  # noqa: E402
from pyl2d.l2d.pipeline.config import RuntimeConfig  # noqa: E402

VALIDATION_FRACTION = 0.15
SELECT_BY = "recall@10"  # the validation metric that picks the options
KS = metrics.KS
# The grid. Layers as Hugging Face numbers hidden_states (0 = embeddings); "final" = the
# final normed state (the paper's); tuples = the mean of those states.
LAYERS = {"final": None, "mid": (-2,), "mean-last-2": (-2, -1)}
REPRESENTATIONS = {
    "raw": Representation(),
    "center": Representation(center=True),
    "norm": Representation(normalize=True),
    "center+norm": Representation(center=True, normalize=True),
    "diag": Representation(center=True, whiten="diag"),
    "pca": Representation(center=True, whiten="pca"),
    "pca+norm": Representation(center=True, whiten="pca", normalize=True),
    "abtt1": Representation(center=True, remove_top=1),
}
AGGREGATIONS = [("global", None, 1.0)] + [("local", m, w) for m in (100, 1000) for w in (1.0, 0.5)]
PAPER = ("final", "raw", "global", None, 1.0), ("final", "raw", "local", 1000, 1.0)


def _cpu_name() -> str:
    """The CPU model and its widest SIMD (benchmark results must name the machine)."""
    try:
        text = pathlib.Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.machine()
    name = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")),
                platform.machine())
    simd = "AVX-512" if " avx512f" in text else "AVX2" if " avx2" in text else "no AVX2"
    return f"{name} ({simd}, {len([l for l in text.splitlines() if l.startswith('processor')])} cores)"


class _AllLayers(HiddenStateExtractor):
    """Pools every hidden_states entry at once, concatenated along the feature axis."""

    def _forward(self, input_ids, attention_mask):
        return torch.cat(list(self._decode(input_ids, attention_mask, all_states=True).hidden_states), dim=-1)


def _states(extractor, prompts, n_states, hidden):
    flat = extractor.encode_ids(prompt_token_ids(extractor.tokenizer, prompts))
    return flat.view(len(prompts), n_states, hidden)


def _layer_vectors(states: torch.Tensor, layer) -> torch.Tensor:
    if layer is None:
        return states[:, -1].contiguous()
    return layer_mean([states[:, i] for i in range(states.shape[1])], layer).contiguous()


def _ranks(rec: L2DRecommender, vectors, samples, length: int) -> torch.Tensor:
    _, ids = rec.rank(vectors, length, pad_ids([s.history_ids for s in samples]))
    return metrics.hit_ranks(ids, torch.tensor([s.target_id for s in samples]))


def _scores(ranks: torch.Tensor, length: int) -> dict:
    return {**metrics.summarize(ranks, length, KS), "interval": spread.bootstrap_intervals(ranks, length, KS)}


def run_seed(args, dataset, train_rows, val_rows, test_rows, seed: int, log) -> dict:
    work = pathlib.Path(args.work_dir) / f"seed-{seed}"
    training = TrainConfig(epochs=args.epochs, seed=seed)
    runtime = RuntimeConfig(device="cpu", threads=args.threads, progress=False)
    sub = dataclasses.replace(dataset, train=train_rows)
    train_or_reuse(sub, work / "model", training, args.max_history, runtime, log)
    model, tokenizer = load_model(str(work / "model"), device="cpu")
    template = prompt_template(work / "model")
    n_states = model.config.num_hidden_layers + 1
    hidden = model.config.hidden_size
    extractor = _AllLayers(model, tokenizer, batch_size=64, progress=False)
    start = time.perf_counter()
    memory_rows = prefix_augment(train_rows)
    memory_states = _states(extractor, [template.prompt(s.history_titles, tokenizer) for s in memory_rows],
                            n_states, hidden)
    query_states = {name: _states(extractor, [template.prompt(s.history_titles, tokenizer) for s in rows],
                                  n_states, hidden) for name, rows in (("val", val_rows), ("test", test_rows))}
    log(f"seed {seed}: encoded {len(memory_rows)} memory rows and {len(val_rows)} + {len(test_rows)} queries at "
        f"{n_states} layers in {time.perf_counter() - start:.0f} s")
    item_ids = torch.tensor([s.target_id for s in memory_rows])
    manifest = {"model_fingerprint": model_fingerprint(model), "template": dataclasses.asdict(template),
                "pooling": "last", "data_fingerprint": data_fingerprint(memory_rows, template)}
    length = max(KS)
    grid = {}
    start = time.perf_counter()
    for layer_name, layer in LAYERS.items():
        memory = ItemMemory(_layer_vectors(memory_states, layer), item_ids, len(dataset.catalog),
                            {**manifest, "layer": "final" if layer is None else list(layer)})
        queries = {split: _layer_vectors(states, layer) for split, states in query_states.items()}
        transforms = {name: fit_transform(memory.vectors, rep) for name, rep in REPRESENTATIONS.items()}  # once each
        for (rep_name, rep), (aggregation, m, weight) in itertools.product(REPRESENTATIONS.items(), AGGREGATIONS):
            rec = L2DRecommender(model, tokenizer, memory, dataset.catalog, aggregation=aggregation, m=m or 1000,
                                 representation=rep, local_weight=weight, check_model=False,
                                 transform=transforms[rep_name])
            key = json.dumps([layer_name, rep_name, aggregation, m, weight])
            grid[key] = {split: _scores(_ranks(rec, queries[split], rows, length), length)
                         for split, rows in (("val", val_rows), ("test", test_rows))}
    log(f"seed {seed}: {len(grid)} option combinations ranked in {time.perf_counter() - start:.0f} s")
    final_memory = ItemMemory(memory_states[:, -1].contiguous(), item_ids, len(dataset.catalog),
                              {**manifest, "layer": "final"})
    baselines = evaluate(model, tokenizer, final_memory, train_rows, test_rows, dataset.catalog,
                         config=EvalConfig(methods=("l2d-global", "l2d-local", "grounded", "beam", "popularity"),
                                           time_queries=args.time_queries, seed=0), log=log)
    return {"seed": seed, "grid": grid, "evaluate": baselines}


def study(args) -> None:
    torch.set_num_threads(args.threads)
    dataset = load_folder(args.data)
    train_rows, val_rows = split_validation(dataset.train, VALIDATION_FRACTION, seed=0)
    test_rows = [s for s in dataset.test if s.history_ids]
    if args.max_test and args.max_test < len(test_rows):
        import random

        keep = sorted(random.Random(0).sample(range(len(test_rows)), args.max_test))
        test_rows = [test_rows[i] for i in keep]
    work = pathlib.Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    out_path = work / "study.json"
    done = json.loads(out_path.read_text()) if out_path.is_file() else {"runs": []}
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    log(f"{dataset.name}: {len(train_rows)} training rows, {len(val_rows)} validation rows, {len(test_rows)} test "
        f"rows, {len(dataset.catalog)} items")
    for seed in seed_list(args.seed, args.seeds):
        if any(r["seed"] == seed for r in done["runs"]):
            log(f"seed {seed}: already in {out_path}")
            continue
        done["runs"].append(run_seed(args, dataset, train_rows, val_rows, test_rows, seed, log))
        done["info"] = {"data": dataset.name, "n_train": len(train_rows), "n_val": len(val_rows),
                        "n_test": len(test_rows), "n_items": len(dataset.catalog), "epochs": args.epochs,
                        "max_history": args.max_history, "select_by": SELECT_BY,
                        "cpu": _cpu_name(), "date": time.strftime("%Y-%m-%d")}
        tmp = out_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(done))
        tmp.replace(out_path)  # a crash loses at most the seed being run
        log(f"seed {seed}: written to {out_path}")


# -- report ----------------------------------------------------------------------------------
def _fmt(values, key) -> str:
    vals = [v[key] for v in values]
    if any(v is None for v in vals):
        return "-"
    mean, std = spread.mean_std(vals)
    return f"{mean:.4f} ± {std:.4f}" if std is not None else f"{mean:.4f}"


def _label(key: str) -> str:
    layer, rep, aggregation, m, weight = json.loads(key)
    agg = "global" if aggregation == "global" else f"local m={m}" + (f" w={weight:g}" if weight != 1.0 else "")
    return f"{layer} / {rep} / {agg}"


def _default_representation(val_score: dict, paper: list[str]) -> str:
    """The representation that, alone (final layer, m = 1000, w = 1), beats the paper's raw
    one on every data set's validation split for global and local aggregation alike, the
    best such by the sum of those scores; "raw" (the paper's) when none does."""
    best, best_sum = "raw", None
    for rep in REPRESENTATIONS:
        keys = [json.dumps(["final", rep, "global", None, 1.0]), json.dumps(["final", rep, "local", 1000, 1.0])]
        if all(all(v > b for v, b in zip(val_score[k], val_score[base])) for k, base in zip(keys, paper)):
            total = sum(sum(val_score[k]) for k in keys)
            if best_sum is None or total > best_sum:
                best, best_sum = rep, total
    return best


def _single_changes(keys):
    """The grid keys that differ from the paper's local setting in one option (plus the paper)."""
    base = list(PAPER[1])
    out = []
    for key in keys:
        fields = json.loads(key)
        if fields[2] != "local":
            continue
        if sum(a != b for a, b in zip(fields, base)) <= 1:
            out.append(key)
    return out


def report(paths) -> str:
    studies = [json.loads(pathlib.Path(p).read_text()) for p in paths]
    keys = list(studies[0]["runs"][0]["grid"])
    paper = [json.dumps(list(p)) for p in PAPER]
    val_score = {}
    lines = []
    for st in studies:
        for key in keys:
            mean = spread.mean_std([r["grid"][key]["val"][SELECT_BY] for r in st["runs"]])[0]
            val_score.setdefault(key, []).append(mean)
    # A default must beat the paper's setting of its aggregation on every data set's validation split.
    chosen = {}
    for aggregation, base in (("global", paper[0]), ("local", paper[1])):
        candidates = [k for k in keys if json.loads(k)[2] == aggregation]
        wins = [k for k in candidates if all(v > b for v, b in zip(val_score[k], val_score[base]))]
        chosen[aggregation] = max(wins, key=lambda k: sum(val_score[k])) if wins else base
    default_rep = _default_representation(val_score, paper)
    default = {a: json.dumps(["final", default_rep, a, None if a == "global" else 1000, 1.0])
               for a in ("global", "local")}
    for st in studies:
        info, runs = st["info"], st["runs"]
        seeds = [r["seed"] for r in runs]
        lines.append(f"### {info['data']}\n")
        lines.append(f"{info['n_train']} training rows, {info['n_val']} validation rows (carved from them), "
                     f"{info['n_test']} test rows, {info['n_items']} items; seeds {seeds}; {info['epochs']:g} epochs; "
                     f"history {info['max_history']}; CPU {info['cpu']}; {info['date']}. Scores: mean ± standard "
                     f"deviation over the seeds.\n")
        best_here = {a: max((k for k in keys if json.loads(k)[2] == a),
                            key=lambda k: spread.mean_std([r["grid"][k]["val"][SELECT_BY] for r in runs])[0])
                     for a in ("global", "local")}
        rows = [("L2D-global, paper", paper[0]), ("L2D-local, paper", paper[1])]
        rows += [(f"L2D-{a}, new default", default[a]) for a in ("global", "local") if default[a] not in paper]
        rows += [(f"L2D-{a}, best combination on both validation splits", chosen[a]) for a in ("global", "local")
                 if chosen[a] != default[a]]
        rows += [(f"L2D-{a}, best on this validation split", best_here[a]) for a in ("global", "local")
                 if best_here[a] not in (chosen[a], default[a])]
        head = ["method", "options", f"val {SELECT_BY}"] + [f"R@{k}" for k in KS] + [f"N@{k}" for k in (10, 20)]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        for name, key in rows:
            vals = [r["grid"][key]["test"] for r in runs]
            val = [r["grid"][key]["val"] for r in runs]
            cells = [name, _label(key), _fmt(val, SELECT_BY)] + [_fmt(vals, f"recall@{k}") for k in KS]
            cells += [_fmt(vals, f"ndcg@{k}") for k in (10, 20)]
            lines.append("| " + " | ".join(cells) + " |")
        for method in ("grounded", "beam", "popularity"):
            recs = [next(x for x in r["evaluate"]["records"] if x["method"] == method) for r in runs]
            cells = [method, "", "-"] + [_fmt(recs, f"recall@{k}") for k in KS]
            cells += [_fmt(recs, f"ndcg@{k}") for k in (10, 20)]
            lines.append("| " + " | ".join(cells) + " |")
        ms = {m: next(x for x in runs[0]["evaluate"]["records"] if x["method"] == m)["ms_per_query"]
              for m in ("l2d-global", "l2d-local", "grounded", "beam")}
        ev_info = runs[0]["evaluate"]["info"]
        lines.append("\nms/query (paper settings, best batch size, first seed): " +
                     ", ".join(f"{m} {v:.2f}" for m, v in ms.items()) +
                     f". {ev_info['test_targets_without_memory']:.1%} of the test targets never occur as a training "
                     f"target; {ev_info['test_targets_with_unique_title']:.1%} have a unique title.\n")
        top = sorted(keys, key=lambda k: -spread.mean_std([r["grid"][k]["val"][SELECT_BY] for r in runs])[0])[:8]
        lines.append(f"Top 8 option combinations by validation {SELECT_BY} on {info['data']} (test for reference):\n")
        lines.append(f"| layer / representation / aggregation | val {SELECT_BY} | test R@10 | test R@20 |")
        lines.append("|---|---|---|---|")
        for key in top:
            val = [r["grid"][key]["val"] for r in runs]
            vals = [r["grid"][key]["test"] for r in runs]
            lines.append(f"| {_label(key)} | {_fmt(val, SELECT_BY)} | {_fmt(vals, 'recall@10')} | "
                         f"{_fmt(vals, 'recall@20')} |")
        lines.append("")
    lines.append(f"Each option alone, the others at the paper's setting: validation {SELECT_BY}, mean over seeds "
                 "((+): above the paper's setting on that data set).\n")
    names = [st["info"]["data"] for st in studies]
    lines.append("| option | " + " | ".join(f"{n} {a}" for n in names for a in ("global", "local")) + " |")
    lines.append("|---|" + "---|" * (2 * len(names)))
    everywhere = []
    for key in _single_changes(keys):
        layer, rep, aggregation, m, weight = json.loads(key)
        cells = []
        for index in range(len(studies)):
            for agg, base in (("global", paper[0]), ("local", paper[1])):
                other = json.dumps([layer, rep, agg, (m or 1000) if agg == "local" else None,
                                    weight if agg == "local" else 1.0])
                if other not in val_score:
                    cells.append("")
                    continue
                v, b = val_score[other][index], val_score[base][index]
                cells.append(f"{v:.4f}" + (" (+)" if v > b else ""))
        lines.append(f"| {_label(key)} | " + " | ".join(cells) + " |")
        if all(c.endswith("(+)") for c in cells):
            everywhere.append((sum(float(c.split()[0]) for c in cells), _label(key)))
    lines.append("")
    best = max(everywhere)[1] if everywhere else "none"
    lines.append("Single options above the paper's setting in every column: "
                 + (", ".join(label for _, label in sorted(everywhere, reverse=True)) or "none")
                 + f"; the best of them by the sum of its columns: {best}. Hence the default representation: "
                 f"**{default_rep}**.\n")
    lines.append(f"Chosen on both validation splits (must beat the paper's setting of its aggregation on each): "
                 f"global: {_label(chosen['global'])}; local: {_label(chosen['local'])}.")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", help="a D3-format data folder")
    p.add_argument("--work-dir", help="models, and study.json, go here")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--seed", type=int, default=0, help="first seed")
    p.add_argument("--epochs", type=float, default=TrainConfig().epochs)
    p.add_argument("--max-history", type=int, default=5)
    p.add_argument("--max-test", type=int, default=1000, help="random test rows (seed 0); 0: all")
    p.add_argument("--time-queries", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--report", nargs="+", metavar="STUDY_JSON", help="print the Markdown report of these studies")
    args = p.parse_args(argv)
    if args.report:
        print(report(args.report))
        return 0
    if not args.data or not args.work_dir:
        p.error("--data and --work-dir are required (or --report)")
    if not pathlib.Path(args.data).is_dir():
        print(f"l2d_study: data folder {args.data} not found (see ../shared/data/README.md); skipped")
        return 0
    study(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
