"""cpu backend of ``segment_mean``: a counting sort of the rows by segment, then one
thread per segment sums its rows in float32 (csrc/segment_mean_cpu.cpp)."""
from __future__ import annotations

import torch

from pyl2d import _ext
from pyl2d._cpu_threads import cpu_threads


def segment_mean(values, segment_ids, num_segments):
    values = _ext.ensure_inner_contiguous(values)
    segment_ids = segment_ids.contiguous()
    rows, cols = values.shape
    means = torch.empty((num_segments, cols), dtype=torch.float32)
    counts = torch.empty((num_segments,), dtype=torch.int64)
    ends = torch.empty((num_segments,), dtype=torch.int64)
    order = torch.empty((rows,), dtype=torch.int64)
    lib = _ext.require()
    _ext.call(lib.segment_mean_cpu, lib.SegmentMeanParams, values=values, segment_ids=segment_ids, means=means,
              counts=counts, ends=ends, order=order, num_threads=cpu_threads())
    return means, counts
