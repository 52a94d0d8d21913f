"""Top-k helpers shared by the backends.

Order everywhere: score descending, ties to the lower item id; empty slots are
(-inf, -1). Packing (score, id) into one int64 key makes that order a plain integer order,
so partial results from tiles or splits merge with one ``topk`` and stay exact.
"""
from __future__ import annotations

import torch

_LOW31 = 0x7FFFFFFF
_NEG_ZERO = -(2 ** 31)  # the bits of -0.0 read as an int32
_LOW32 = 0xFFFFFFFF


def orderable_int32(scores: torch.Tensor) -> torch.Tensor:
    """float32 -> int32 with the same order (as int64 to leave room for shifting); -0.0
    reads as +0.0, so equal scores always tie by id (an l2 distance of 0 may come out -0)."""
    bits = scores.contiguous().view(torch.int32).to(torch.int64)
    bits = torch.where(bits == _NEG_ZERO, torch.zeros_like(bits), bits)
    return torch.where(bits < 0, bits ^ _LOW31, bits)


def pack_keys(scores: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """int64 keys ordered like (score desc, id asc); id -1 (padding) sorts last among equals."""
    id_part = torch.where(ids < 0, torch.zeros_like(ids), _LOW32 - ids.to(torch.int64))
    return (orderable_int32(scores.to(torch.float32)) << 32) | id_part


def empty_candidates(rows: int, width: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """[rows, width] empty slots: scores -inf (float32), ids -1 (int64)."""
    return (torch.full((rows, width), float("-inf"), dtype=torch.float32, device=device),
            torch.full((rows, width), -1, dtype=torch.int64, device=device))


def pad_candidates(scores: torch.Tensor, ids: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, C] candidates widened to ``width`` columns with empty slots (-inf, -1)."""
    if scores.shape[1] >= width:
        return scores, ids
    pad = width - scores.shape[1]
    return (torch.cat([scores, scores.new_full((scores.shape[0], pad), float("-inf"))], 1),
            torch.cat([ids, ids.new_full((ids.shape[0], pad), -1)], 1))


def merge_candidates(scores: torch.Tensor, ids: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Best k of per-row candidate lists ([B, C] each, any order, -1 ids are empty)."""
    scores, ids = pad_candidates(scores, ids, k)
    keys = pack_keys(scores, ids)
    _, pos = torch.topk(keys, k, dim=1, sorted=True)
    out_scores = torch.gather(scores.to(torch.float32), 1, pos)
    out_ids = torch.gather(ids.to(torch.int64), 1, pos)
    empty = out_ids < 0
    return out_scores.masked_fill(empty, float("-inf")), out_ids


def drop_excluded(scores: torch.Tensor, ids: torch.Tensor, exclude: torch.Tensor | None, k: int
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """From best-first candidates [B, C] (C >= k + E), drop ids listed in ``exclude`` [B, E]
    (-1 = padding) and keep the first k, padding with (-inf, -1).

    Because at most E candidates per row are excluded, computing the unfiltered top-(k+E)
    and filtering afterwards gives exactly the filtered top-k."""
    if exclude is None or exclude.shape[1] == 0:
        return scores[:, :k], ids[:, :k]
    hit = (ids.unsqueeze(2) == exclude.to(ids.dtype).unsqueeze(1)).any(2) | (ids < 0)
    order = torch.sort(hit.to(torch.int8), dim=1, stable=True).indices[:, :k]
    kept_hit = torch.gather(hit, 1, order)
    out_scores = torch.gather(scores, 1, order).masked_fill(kept_hit, float("-inf"))
    out_ids = torch.gather(ids, 1, order).masked_fill(kept_hit, -1)
    return pad_candidates(out_scores, out_ids, k)  # fewer candidates than k: pad


def candidates_needed(k: int, exclude: torch.Tensor | None, n: int) -> int:
    """How many unfiltered candidates guarantee the filtered top-k."""
    e = 0 if exclude is None else exclude.shape[1]
    return min(k + e, n)
