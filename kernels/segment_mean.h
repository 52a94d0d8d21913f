// Host launcher for segment_mean's CUDA kernel in kernels/segment_mean.cu, called from
// csrc/segment_mean_cuda_bindings.cpp. Plain C++: no CUDA, pybind11 or torch types. It
// takes one parameter struct of named fields (csrc/native_args.h): tensors are TensorArgs of
// device memory torch allocated (it allocates none); `stream` is the caller's cudaStream_t
// as an integer. It validates its fields by name before any CUDA call
// (std::invalid_argument) and turns CUDA failures into std::runtime_error.
#pragma once
#include <cstdint>

#include "native_args.h"

namespace pyl2d {
namespace cuda {

// means[s, :] = mean of the rows of `values` listed in order[ends[s] - counts[s] .. ends[s]);
// zero rows for empty segments.
struct SegmentMeanCudaParams {
  TensorArg values;  // [M, D] float32/float16/bfloat16, unit inner stride
  TensorArg order;   // [M] int64, contiguous: row indices grouped by segment
  TensorArg ends;    // [S] int64, contiguous: one past each segment's last position in order
  TensorArg counts;  // [S] int64, contiguous: rows per segment
  TensorArg means;   // [S, D] float32, contiguous, written
  uintptr_t stream = 0;
};
void segment_mean(const SegmentMeanCudaParams& p);

}  // namespace cuda
}  // namespace pyl2d
