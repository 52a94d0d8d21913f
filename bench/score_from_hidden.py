"""Benchmark score_from_hidden, PERM's local judge head: the expected score over S=5 score
tokens read from the final hidden states, against the two ways plain torch computes it.

- full vocabulary: hidden @ W.T over the whole 32k vocabulary, softmax, pick the score
  tokens and renormalise (what the LM head + softmax does);
- torch gather+matmul: hidden @ W[score ids].T, softmax over the S tokens.
V = 32,000, D = 2048; float32 on CPU, bfloat16 on GPU; B in {16, 256}. Target: >= 10x the
full-vocabulary path.

    python bench/score_from_hidden.py                  # CPU
    python bench/score_from_hidden.py --device cuda    # GPU
    python bench/score_from_hidden.py --quick          # B = 16 only (smoke run, writes no file)

Prints a table of median milliseconds and the speed-up over the full-vocabulary path and
writes it to bench/results/score_from_hidden_<cpu|gpu>_<date>.md. CPU: perf_counter medians;
GPU: CUDA-event medians from triton.testing.do_bench.
"""
from __future__ import annotations

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pyl2d import _backend  # noqa: E402
from pyl2d.ops import score_from_hidden  # noqa: E402

import _harness  # noqa: E402

BATCHES = [16, 256]
QUICK_BATCHES = [16]
VOCAB, DIM, S = 32_000, 2048, 5


def bench(device: str, batches, repeats: int, vocab=VOCAB, dim=DIM, s=S) -> tuple[list[str], list[list[str]]]:
    timed = _harness.median_ms
    kernels = [b for b in _backend.available(torch.device(device), "score_from_hidden") if b != "torch"]
    header = ["B"] + [f"score_from_hidden ({k})" for k in kernels] + ["torch gather+matmul", "full vocabulary",
                                                                       "full / ours"]
    rows = []
    g = torch.Generator().manual_seed(0)
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    weight = (torch.randn(vocab, dim, generator=g) * 0.02).to(dtype).to(device)
    ids = torch.randperm(vocab, generator=g)[:s].to(device)
    values = torch.arange(1, s + 1, dtype=torch.float32, device=device)

    def full_vocab(h):
        probs = torch.softmax((h @ weight.T).float(), dim=-1)[:, ids]
        return (probs / probs.sum(1, keepdim=True)) @ values

    def gather_eager(h):
        return torch.softmax((h @ weight[ids].T).float(), dim=-1) @ values

    for b in batches:
        h = torch.randn(b, dim, generator=g).to(dtype).to(device)
        ours = [timed(lambda k=k: score_from_hidden(h, weight, ids, values, backend=k), device, repeats)
                for k in kernels]
        full = timed(lambda: full_vocab(h), device, repeats)
        gather = timed(lambda: gather_eager(h), device, repeats)
        rows.append([f"{b}"] + [f"{t:.3f}" for t in ours] + [f"{gather:.3f}", f"{full:.2f}",
                                                             _harness.ratio(full / min(ours))])
    return header, rows


def report(args) -> str:
    backend = _backend.default_backend(torch.device(args.device), "score_from_hidden")
    return "\n".join([
        f"# score_from_hidden benchmark ({args.device}, default backend {backend})", "",
        f"{_harness.machine_line(args.device)}. {_harness.timing_line(args.device)}.", "",
        f"## Local judge head: score_from_hidden vs full-vocabulary LM head + softmax "
        f"(V={VOCAB:,}, D={DIM}, S={S})", "",
        _harness.markdown_table(*bench(args.device, QUICK_BATCHES if args.quick else BATCHES, args.repeats)), ""])


if __name__ == "__main__":
    sys.exit(_harness.main("score_from_hidden", __doc__, report, repeats=7))
