"""``segment_mean``: the mean of the rows of a matrix per segment id, e.g. each item's
global L2D representation as the mean of its memory vectors."""
from __future__ import annotations

import torch

from pyl2d import _backend, _checks

# Segments index a GPU grid dimension and int32 ids: 2**31 - 1 at most.
MAX_SEGMENTS = 2**31 - 1


@torch.library.custom_op("pyl2d::segment_mean", mutates_args=())
def _segment_mean_op(values: torch.Tensor, segment_ids: torch.Tensor, num_segments: int,
                     backend: str) -> tuple[torch.Tensor, torch.Tensor]:
    means, counts = _backend.implementation("segment_mean", backend)(values, segment_ids, num_segments)
    return means, counts


@_segment_mean_op.register_fake
def _(values, segment_ids, num_segments, backend):
    return (values.new_empty((num_segments, values.shape[1]), dtype=torch.float32),
            values.new_empty((num_segments,), dtype=torch.int64))


def check_segment_args(values: torch.Tensor, segment_ids: torch.Tensor, num_segments: int) -> None:
    _checks.tensor("values", values, ndim=2, dtypes=_checks.FLOAT_DTYPES)
    _checks.tensor("segment_ids", segment_ids, ndim=1, dtypes=_checks.INDEX_DTYPES)
    if segment_ids.shape[0] != values.shape[0]:
        raise ValueError(f"segment_ids has {segment_ids.shape[0]} entries but values has {values.shape[0]} rows")
    if isinstance(num_segments, bool) or not isinstance(num_segments, int):
        raise ValueError(f"num_segments must be an int, got {type(num_segments).__name__}")
    if not 0 <= num_segments <= MAX_SEGMENTS:
        raise ValueError(f"num_segments={num_segments} is out of range: it must be between 0 and {MAX_SEGMENTS}")
    _checks.width("values", values)
    _checks.same_device([("values", values), ("segment_ids", segment_ids)])
    _checks.ids_in_range("segment_ids", segment_ids, num_segments, allow_padding=False)
    values_max = _checks.finite("values", values)
    if values_max is not None:  # float32 sums of up to M rows
        _checks.fits_float32(values.shape[0] * values_max, "values", "the per-segment sums (M * max|values|)")


def segment_mean(values: torch.Tensor, segment_ids: torch.Tensor, num_segments: int,
                 *, backend: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean of the rows of ``values`` per segment, accumulated in float32.

    Args:
        values: [M, D] float32/float16/bfloat16.
        segment_ids: [M] int32/int64, each in [0, num_segments).
        num_segments: 0 <= S <= 2**31 - 1, the number of segments (e.g. items in the catalog).
        backend: "torch", "cpu", "triton", "cuda" or None (``PYL2D_BACKEND``, else by device).

    Returns:
        (means [S, D] float32, counts [S] int64); a segment with no rows has a zero mean and
        count 0. D = 0, NaN/Inf and values whose float32 sums could overflow are a ValueError.
    """
    check_segment_args(values, segment_ids, num_segments)
    resolved = _backend.resolve(backend, values.device, "segment_mean")
    return _segment_mean_op(values, segment_ids, num_segments, resolved)
