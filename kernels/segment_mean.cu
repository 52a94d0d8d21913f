// CUDA kernel for segment_mean: per-segment float32 means over a CSR row order. Same formula as
// pyl2d/ops/segment_mean/reference.py; the Python side (pyl2d/ops/segment_mean/cuda.py) builds
// the CSR layout with torch.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <climits>
#include <cstdint>
#include <string>
#include <type_traits>

#include "common.cuh"
#include "float_dispatch.cuh"
#include "segment_mean.h"

namespace pyl2d {
namespace cuda {
namespace {

constexpr int kThreads = 128;  // columns per block

template <typename T>
__global__ void segment_mean_kernel(const T* values, int64_t cols, int64_t row_stride, const int64_t* order,
                                    const int64_t* ends, const int64_t* counts, float* means) {
  const int64_t seg = blockIdx.x;
  const int64_t d = static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x;
  if (d >= cols) return;
  const int64_t n = counts[seg], end = ends[seg];
  float acc = 0.f;
  for (int64_t j = end - n; j < end; ++j) acc += to_float<T>(values[order[j] * row_stride + d]);
  means[seg * cols + d] = n > 0 ? acc / static_cast<float>(n) : 0.f;
}

}  // namespace

void segment_mean(const SegmentMeanCudaParams& p) {
  expect(p.values, "values", 2, {DType::kFloat32, DType::kFloat16, DType::kBFloat16});
  const Matrix values = as_matrix(p.values, "values");
  const int64_t cols = values.cols, row_stride = values.row_stride;
  expect(p.means, "means", 2, {DType::kFloat32});
  const int64_t segments = p.means.size(0);
  expect_contiguous(p.means, "means", {segments, cols}, {DType::kFloat32});
  expect_vector(p.order, "order", values.rows, DType::kInt64);
  expect_vector(p.ends, "ends", segments, DType::kInt64);
  expect_vector(p.counts, "counts", segments, DType::kInt64);
  require(cols >= 0 && segments >= 0 && row_stride >= 0, "segment_mean: negative size or stride");
  if (cols == 0 || segments == 0) return;
  require(p.means.ptr != 0 && p.ends.ptr != 0 && p.counts.ptr != 0, "segment_mean: null output or layout pointer");
  require(segments <= INT_MAX, "segment_mean: too many segments for one grid");
  const int64_t col_blocks = (cols + kThreads - 1) / kThreads;
  require(col_blocks <= 65535, "segment_mean: too many columns");
  const dim3 grid(static_cast<unsigned>(segments), static_cast<unsigned>(col_blocks));
  dispatch(static_cast<int>(values.dtype), [&](auto tag) {
    using T = std::remove_const_t<std::remove_pointer_t<decltype(tag)>>;
    segment_mean_kernel<T><<<grid, kThreads, 0, as_stream(p.stream)>>>(
        reinterpret_cast<const T*>(values.ptr), cols, row_stride, p.order.data<const int64_t>(),
        p.ends.data<const int64_t>(), p.counts.data<const int64_t>(), p.means.data<float>());
  });
  check_launch("segment_mean_kernel");
}

}  // namespace cuda
}  // namespace pyl2d
