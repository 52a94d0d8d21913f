// CUDA kernel for score_from_hidden: the expected score over a few LM-head rows, one block per
// row. Same formula as pyl2d/ops/score_from_hidden/reference.py.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <string>

#include "common.cuh"
#include "codes.h"
#include "reward_common.cuh"
#include "score_from_hidden.h"

namespace pyl2d {
namespace cuda {
namespace {

// One block per row: each warp takes score tokens s = warp, warp + warps, ...; lanes stride D.
template <typename T>
__global__ void score_from_hidden_kernel(const T* hidden, int64_t dim, int64_t h_stride, const T* weight,
                                         int64_t w_stride, const int64_t* ids, const float* values, int64_t s,
                                         float* out) {
  extern __shared__ float logits[];
  const int64_t row = blockIdx.x;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  const T* h = hidden + row * h_stride;
  for (int64_t j = warp; j < s; j += warps) {
    const T* w = weight + ids[j] * w_stride;
    float acc = 0.f;
    for (int64_t d = lane; d < dim; d += 32) acc += to_float<T>(h[d]) * to_float<T>(w[d]);
    for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
    if (lane == 0) logits[j] = acc;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    float top = -INFINITY;
    for (int64_t j = 0; j < s; ++j) top = fmaxf(top, logits[j]);
    float z = 0.f, acc = 0.f;
    for (int64_t j = 0; j < s; ++j) {
      const float e = expf(logits[j] - top);
      z += e;
      acc += e * values[j];
    }
    out[row] = acc / z;
  }
}

}  // namespace

void score_from_hidden(const ScoreFromHiddenCudaParams& p) {
  expect(p.hidden, "hidden", 2, {DType::kFloat32, DType::kFloat16, DType::kBFloat16});
  const Matrix hidden = as_matrix(p.hidden, "hidden");
  expect(p.weight, "weight", 2, {hidden.dtype});
  const Matrix weight = as_matrix(p.weight, "weight");
  require(weight.cols == hidden.cols, "score_from_hidden: weight has dimension " + std::to_string(weight.cols) +
                                          " but hidden has " + std::to_string(hidden.cols));
  expect(p.ids, "ids", 1, {DType::kInt64});
  const int64_t s = p.ids.size(0);
  expect_vector(p.ids, "ids", s, DType::kInt64);
  expect_vector(p.values, "values", s, DType::kFloat32);
  const int64_t rows = hidden.rows, dim = hidden.cols;
  expect_vector(p.out, "out", rows, DType::kFloat32);
  require(rows >= 1 && rows <= 0x7fffffff && dim >= 1, "score_from_hidden: bad shape");
  require(s >= 1 && s <= 8192, "score_from_hidden: between 1 and 8192 score tokens");
  const auto st = reinterpret_cast<cudaStream_t>(p.stream);
  const int threads = s >= 8 ? 256 : 32 * static_cast<int>(s);
  const size_t shared = static_cast<size_t>(s) * sizeof(float);
  dispatch_dtype(static_cast<int>(hidden.dtype), "score_from_hidden", [&](auto tag) {
    using T = decltype(tag);
    score_from_hidden_kernel<T><<<static_cast<unsigned>(rows), threads, shared, st>>>(
        reinterpret_cast<const T*>(hidden.ptr), dim, hidden.row_stride, reinterpret_cast<const T*>(weight.ptr),
        weight.row_stride, p.ids.data<const int64_t>(), p.values.data<const float>(), s, p.out.data<float>());
  });
  check_launch("score_from_hidden");
}

}  // namespace cuda
}  // namespace pyl2d
