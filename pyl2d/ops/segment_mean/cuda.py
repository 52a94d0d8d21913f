"""cuda backend of ``segment_mean``: rows grouped by segment with a stable sort (CSR), then
one block per (segment, 128 columns) sums its rows in float32 (kernels/segment_mean.cu)."""
from __future__ import annotations

import torch

from pyl2d import _ext


def segment_mean(values, segment_ids, num_segments):
    values = _ext.ensure_inner_contiguous(values)
    ids = segment_ids.to(torch.int64)
    counts = torch.bincount(ids, minlength=num_segments)
    order = torch.sort(ids, stable=True).indices
    ends = torch.cumsum(counts, 0)
    means = torch.empty((num_segments, values.shape[1]), dtype=torch.float32, device=values.device)
    lib = _ext.require()
    _ext.call(lib.segment_mean_cuda, lib.SegmentMeanCudaParams, values=values, order=order, ends=ends,
              counts=counts, means=means, stream=_ext.cuda_stream(values.device))
    return means, counts
