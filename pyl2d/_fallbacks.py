"""Plain-torch pieces that the kernel backends (cpu, triton, cuda) share: index preparation
and the chunked paths for sizes a kernel does not take.

Written apart from the ops' ``reference.py`` on purpose: the reference is the oracle the tests
compare every backend against, so no backend may share its code.
"""
from __future__ import annotations

import torch

from pyl2d._codes import NORM_EPS


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """[B] int64 index of each row's last nonzero mask entry (left or right padding)."""
    real = (attention_mask != 0).to(torch.int8)
    return (real.shape[1] - 1) - torch.flip(real, dims=[1]).argmax(dim=1)


def chunk_scores(queries: torch.Tensor, items: torch.Tensor, metric: str,
                 item_norms: torch.Tensor | None = None) -> torch.Tensor:
    """[B, n] float32 scores of one chunk of items (larger is better; l2 = -distance, its
    squared norms as sums of squares like the kernels')."""
    q, x = queries.to(torch.float32), items.to(torch.float32)
    dots = q @ x.T
    if metric == "ip":
        return dots
    if metric == "cosine":
        x_norm = item_norms.to(torch.float32) if item_norms is not None else x.norm(dim=1)
        return dots / (q.norm(dim=1).clamp_min(NORM_EPS)[:, None] * x_norm.clamp_min(NORM_EPS)[None, :])
    x_sq = item_norms.to(torch.float32).square() if item_norms is not None else (x * x).sum(1)
    return -((q * q).sum(1)[:, None] - 2.0 * dots + x_sq[None, :]).clamp_min(0.0).sqrt()


# Elements per chunk of the rows when summing their squares: 64 MiB of float32 at most.
NORM_TERM_CHUNK_ELEMENTS = 1 << 24


def norm_terms(rows: torch.Tensor, metric: str, given: torch.Tensor | None = None) -> torch.Tensor | None:
    """[N] float32 term of each row that the search kernels' epilogues read: |x| for cosine,
    |x|^2 for l2 (a sum of squares, never a rounded norm squared again, so equal distances
    give equal scores and tie by id), None for ip. ``given``: the rows' L2 norms, when the
    caller has them. No float32 copy of ``rows``: the l2 sums run over bounded chunks."""
    if metric == "ip":
        return None
    if given is not None:
        norms = given.to(torch.float32)
        return (norms * norms if metric == "l2" else norms).contiguous()
    if metric == "cosine":
        return torch.linalg.vector_norm(rows, dim=1, dtype=torch.float32)
    out = torch.empty(rows.shape[0], dtype=torch.float32, device=rows.device)
    step = max(1, NORM_TERM_CHUNK_ELEMENTS // max(1, rows.shape[1]))
    for start in range(0, rows.shape[0], step):
        part = rows[start:start + step].to(torch.float32)
        out[start:start + step] = (part * part).sum(1)
    return out


def expected_scores(hidden: torch.Tensor, lm_head_weight: torch.Tensor, score_token_ids: torch.Tensor,
                    score_values: torch.Tensor) -> torch.Tensor:
    """[R] float32 expected score under the softmax over the score tokens' logits."""
    rows = lm_head_weight[score_token_ids.to(torch.int64)].to(torch.float32)
    weights = torch.softmax(hidden.to(torch.float32) @ rows.T, dim=1)
    return weights @ score_values.to(torch.float32)


def group_segments(batch: int, num_groups: int, group_ids, device) -> tuple[torch.Tensor | None, torch.Tensor, int]:
    """(order or None, offsets [G+1] int64, largest group size): the groups as segments of
    ``order`` (None: contiguous equal groups)."""
    if group_ids is None:
        size = batch // num_groups
        return None, torch.arange(num_groups + 1, device=device, dtype=torch.int64) * size, size
    ids = group_ids.to(torch.int64)
    counts = torch.bincount(ids, minlength=num_groups)
    offsets = torch.zeros(num_groups + 1, dtype=torch.int64, device=device)
    offsets[1:] = torch.cumsum(counts, 0)
    return torch.argsort(ids, stable=True), offsets, int(counts.max())


def batch_std(rewards: torch.Tensor, num_groups: int, group_ids, impute: bool) -> float:
    """Sample std of the non-NaN rewards over the whole batch (``scale="batch"``); with
    ``impute`` a missing reward counts as its group's mean."""
    r = rewards.to(torch.float32)
    valid = ~torch.isnan(r)
    if impute:
        n = r.shape[0]
        ids = (group_ids.to(torch.int64) if group_ids is not None
               else torch.arange(n, device=r.device) // (n // num_groups))
        zeros = torch.zeros(num_groups, dtype=torch.float32, device=r.device)
        mean = zeros.index_add(0, ids, torch.where(valid, r, 0.0)) / zeros.index_add(0, ids, valid.to(torch.float32))
        r = torch.where(valid, r, mean[ids])
        valid = ~torch.isnan(r)
    count = valid.sum().to(torch.float32)
    centre = torch.where(valid, r, 0.0).sum() / count
    return float((torch.where(valid, r - centre, 0.0).square().sum() / (count - 1)).sqrt())
