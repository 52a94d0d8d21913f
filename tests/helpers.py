"""Shared test helpers: devices/backends to test, per-dtype tolerances, top-k comparison."""
from __future__ import annotations

import torch

from pyl2d import _backend

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
# Relative to the score scale (max |score| of the oracle); inputs are identical across
# backends, so only accumulation order differs.
REL_TOL = {torch.float32: 2e-5, torch.float16: 2e-4, torch.bfloat16: 2e-4}


def backends(device: str = "cpu", *, op: str | None = None, include_torch: bool = False) -> list[str]:
    """Backends to test for ``op`` on ``device`` (those built here and implementing it)."""
    dev = torch.device(device)
    out = _backend.available(dev, op)
    return out if include_torch else [b for b in out if b != "torch"]


def devices() -> list[str]:
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def randn(*shape, dtype=torch.float32, device="cpu", generator=None, scale=1.0):
    """Random normal, never zeros; rounded to ``dtype``."""
    t = torch.randn(*shape, generator=generator, dtype=torch.float32) * scale
    return t.to(dtype).to(device)


def oracle_scores(queries, items, metric, item_norms=None):
    """Float64 scores on the (already rounded) inputs: what every backend approximates."""
    from pyl2d.reference.score_topk import similarity
    q = queries.double().cpu()
    x = items.double().cpu()
    dots = q @ x.T
    if metric == "ip":
        return dots
    xn = x.norm(dim=1) if item_norms is None else item_norms.double().cpu()
    qn = q.norm(dim=1)
    if metric == "cosine":
        return dots / (qn.clamp_min(1e-12)[:, None] * xn.clamp_min(1e-12)[None])
    return -(qn[:, None] ** 2 - 2 * dots + xn[None] ** 2).clamp_min(0).sqrt()


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
