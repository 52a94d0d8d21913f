"""Reference for ``segment_mean``: float32 ``index_add_`` of the rows, divided by the counts."""
from __future__ import annotations

import torch


def segment_mean(values, segment_ids, num_segments):
    """Per-segment mean of the rows of ``values`` [M, D]; empty segments are zero rows.

    Returns (means [S, D] float32, counts [S] int64)."""
    ids = segment_ids.to(torch.int64)
    rows = values.to(torch.float32)
    sums = torch.zeros((num_segments, values.shape[1]), dtype=torch.float32, device=values.device)
    sums.index_add_(0, ids, rows)
    counts = torch.bincount(ids, minlength=num_segments)
    means = sums / counts.clamp_min(1).to(torch.float32).unsqueeze(1)
    return means, counts
