"""cpu backend of ``segment_mean``: a counting sort of the rows by segment, then one
thread per segment sums its rows in float32 (csrc/segment_mean_cpu.cpp)."""
from __future__ import annotations

import torch

from pyl2d import _ext


def segment_mean(values, segment_ids, num_segments):
    values = _ext.ensure_inner_contiguous(values)
    segment_ids = segment_ids.contiguous()
    rows, cols = values.shape
    means = torch.empty((num_segments, cols), dtype=torch.float32)
    counts = torch.empty((num_segments,), dtype=torch.int64)
    ends = torch.empty((num_segments,), dtype=torch.int64)
    order = torch.empty((rows,), dtype=torch.int64)
    ptr, _, _, row_stride, code = _ext.matrix(values)
    _ext.require().segment_mean_cpu(ptr, rows, cols, row_stride, code, segment_ids.data_ptr(),
                                    _ext.dtype_code(segment_ids), num_segments, means.data_ptr(),
                                    counts.data_ptr(), ends.data_ptr(), order.data_ptr())
    return means, counts
