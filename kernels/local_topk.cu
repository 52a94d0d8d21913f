// CUDA kernels for local_topk's stages: local scores against per-item means of the nearest
// memory rows, and candidate masking. Same formulas as pyl2d/ops/local_topk/reference.py; the
// Python side (pyl2d/ops/local_topk/cuda.py, _stages.py) builds the group layout with torch
// and picks the final top-k.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <climits>
#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>

#include "common.cuh"
#include "codes.h"
#include "float_dispatch.cuh"
#include "local_topk.h"

namespace pyl2d {
namespace cuda {
namespace {

constexpr int kThreads = 128;  // a multiple of 32 (block_sum3)
using codes::kNormEps;

// Sums three values over the block; the result is valid in thread 0. `red` holds 3 * 32 floats.
__device__ void block_sum3(float& a, float& b, float& c, float* red) {
  for (int o = 16; o > 0; o >>= 1) {
    a += __shfl_xor_sync(0xffffffffu, a, o);
    b += __shfl_xor_sync(0xffffffffu, b, o);
    c += __shfl_xor_sync(0xffffffffu, c, o);
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  if (lane == 0) { red[warp] = a; red[32 + warp] = b; red[64 + warp] = c; }
  __syncthreads();
  if (warp == 0) {
    a = lane < warps ? red[lane] : 0.f;
    b = lane < warps ? red[32 + lane] : 0.f;
    c = lane < warps ? red[64 + lane] : 0.f;
    for (int o = 16; o > 0; o >>= 1) {
      a += __shfl_xor_sync(0xffffffffu, a, o);
      b += __shfl_xor_sync(0xffffffffu, b, o);
      c += __shfl_xor_sync(0xffffffffu, c, o);
    }
  }
}

// One block per (query, position); threads stride over the dimensions.
template <typename T>
__global__ void local_scores_kernel(const T* queries, int64_t dim, int64_t q_stride, const T* memory,
                                    int64_t mem_stride, const int64_t* rows, const int64_t* items,
                                    const int64_t* group_end, int64_t m, int metric, float* out_scores,
                                    int64_t* out_ids, int64_t out_stride) {
  __shared__ float red[96];
  const int64_t flat = blockIdx.x;
  const int64_t b = flat / m, j = flat % m;
  const int64_t start = b * m + j, end = b * m + group_end[start];
  float* score_out = out_scores + b * out_stride + j;
  int64_t* id_out = out_ids + b * out_stride + j;
  if (end <= start) {  // not the first entry of its item's group (uniform across the block)
    if (threadIdx.x == 0) { *score_out = -INFINITY; *id_out = -1; }
    return;
  }
  const T* q = queries + b * q_stride;
  float dot = 0.f, q_sq = 0.f, sum_sq = 0.f;
  for (int64_t d = threadIdx.x; d < dim; d += blockDim.x) {
    float s = 0.f;
    for (int64_t r = start; r < end; ++r) s += to_float<T>(memory[rows[r] * mem_stride + d]);
    const float qd = to_float<T>(q[d]);
    dot += qd * s;
    q_sq += qd * qd;
    sum_sq += s * s;
  }
  block_sum3(dot, q_sq, sum_sq, red);
  if (threadIdx.x != 0) return;
  const float inv = 1.f / static_cast<float>(end - start);
  const float dot_mean = dot * inv, x_sq = sum_sq * inv * inv;
  float score;
  if (metric == codes::kIP) score = dot_mean;
  else if (metric == codes::kCosine) score = dot_mean / (fmaxf(sqrtf(q_sq), kNormEps) * fmaxf(sqrtf(x_sq), kNormEps));
  else score = -sqrtf(fmaxf(q_sq - 2.f * dot_mean + x_sq, 0.f));
  *score_out = score;
  *id_out = items[start];
}

__device__ bool sorted_contains(const int64_t* row, int64_t n, int64_t id) {
  int64_t lo = 0, hi = n;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (row[mid] < id) lo = mid + 1;
    else hi = mid;
  }
  return lo < n && row[lo] == id;
}

__global__ void mask_candidates_kernel(float* scores, int64_t* ids, int64_t batch, int64_t m, int64_t n_cand,
                                       const int64_t* items, const int64_t* exclude, int64_t n_exclude) {
  const int64_t width = m + n_cand;
  const int64_t flat = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (flat >= batch * width) return;
  const int64_t b = flat / width, slot = flat % width;
  const int64_t id = ids[flat];
  bool drop = id < 0;
  if (!drop && slot >= m) drop = sorted_contains(items + b * m, m, id);
  if (!drop && n_exclude > 0) drop = sorted_contains(exclude + b * n_exclude, n_exclude, id);
  if (drop) { scores[flat] = -INFINITY; ids[flat] = -1; }
}

}  // namespace

void local_scores(const LocalScoresParams& p) {
  expect(p.queries, "queries", 2, {DType::kFloat32, DType::kFloat16, DType::kBFloat16});
  const Matrix queries = as_matrix(p.queries, "queries");
  const int64_t batch = queries.rows, dim = queries.cols, q_stride = queries.row_stride;
  expect(p.memory, "memory", 2, {queries.dtype});
  const Matrix memory = as_matrix(p.memory, "memory");
  const int64_t mem_stride = memory.row_stride;
  require(memory.cols == dim, "local_scores: memory has dimension " + std::to_string(memory.cols) +
                                  " but the queries have " + std::to_string(dim));
  expect(p.rows, "rows", 2, {DType::kInt64});
  const int64_t m = p.rows.size(1);
  expect_contiguous(p.rows, "rows", {batch, m}, {DType::kInt64});
  expect_contiguous(p.items, "items", {batch, m}, {DType::kInt64});
  expect_contiguous(p.group_end, "group_end", {batch, m}, {DType::kInt64});
  expect(p.out_scores, "out_scores", 2, {DType::kFloat32});
  expect(p.out_ids, "out_ids", 2, {DType::kInt64});
  const Matrix out = as_matrix(p.out_scores, "out_scores");
  require(out.rows == batch, "local_scores: out_scores has " + std::to_string(out.rows) + " rows but there are " +
                                 std::to_string(batch) + " queries");
  require(out.cols >= m, "local_scores: out_scores needs at least m = " + std::to_string(m) + " columns");
  require(p.out_ids.sizes == p.out_scores.sizes && p.out_ids.strides == p.out_scores.strides,
          "local_scores: out_ids must have the sizes and strides of out_scores");
  const int64_t out_stride = out.row_stride;
  const int metric = p.metric;
  require(batch >= 0 && dim >= 0 && m >= 1 && q_stride >= 0 && mem_stride >= 0, "local_scores: bad sizes");
  require(metric >= 0 && metric < codes::kMetricCount, "local_scores: metric code must be 0, 1 or 2");
  require(out_stride >= m, "local_scores: out_stride must be at least m");
  if (batch == 0) return;
  require(queries.ptr != 0 && memory.ptr != 0 && p.rows.ptr != 0 && p.items.ptr != 0 && p.group_end.ptr != 0 &&
              out.ptr != 0 && p.out_ids.ptr != 0,
          "local_scores: null pointer");
  require(batch <= INT_MAX / m, "local_scores: batch * m exceeds one grid");
  const unsigned blocks = static_cast<unsigned>(batch * m);
  dispatch(static_cast<int>(queries.dtype), [&](auto tag) {
    using T = std::remove_const_t<std::remove_pointer_t<decltype(tag)>>;
    local_scores_kernel<T><<<blocks, kThreads, 0, as_stream(p.stream)>>>(
        reinterpret_cast<const T*>(queries.ptr), dim, q_stride, reinterpret_cast<const T*>(memory.ptr), mem_stride,
        p.rows.data<const int64_t>(), p.items.data<const int64_t>(), p.group_end.data<const int64_t>(), m, metric,
        reinterpret_cast<float*>(out.ptr), p.out_ids.data<int64_t>(), out_stride);
  });
  check_launch("local_scores_kernel");
}

void mask_candidates(const MaskCandidatesParams& p) {
  expect(p.items, "items", 2, {DType::kInt64});
  const int64_t batch = p.items.size(0), m = p.items.size(1);
  expect_contiguous(p.items, "items", {batch, m}, {DType::kInt64});
  expect(p.scores, "scores", 2, {DType::kFloat32});
  const int64_t width = p.scores.size(1);
  require(m >= 1 && width >= m, "mask_candidates: scores needs at least m = " + std::to_string(m) +
                                    " columns (m = the columns of items, >= 1)");
  const int64_t n_cand = width - m;
  expect_contiguous(p.scores, "scores", {batch, width}, {DType::kFloat32});
  expect_contiguous(p.ids, "ids", {batch, width}, {DType::kInt64});
  int64_t n_exclude = 0;
  if (p.exclude.defined) {
    expect(p.exclude, "exclude", 2, {DType::kInt64});
    n_exclude = p.exclude.size(1);
    expect_contiguous(p.exclude, "exclude", {batch, n_exclude}, {DType::kInt64});
  }
  require(batch >= 0 && m >= 1 && n_cand >= 0 && n_exclude >= 0, "mask_candidates: bad sizes");
  require(n_exclude == 0 || p.exclude.ptr != 0, "mask_candidates: exclude is null but n_exclude > 0");
  const int64_t total = batch * (m + n_cand);
  if (total == 0) return;
  require(p.scores.ptr != 0 && p.ids.ptr != 0 && p.items.ptr != 0, "mask_candidates: null pointer");
  const int64_t blocks = (total + kThreads - 1) / kThreads;
  require(blocks <= INT_MAX, "mask_candidates: too many candidates for one grid");
  mask_candidates_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, as_stream(p.stream)>>>(
      p.scores.data<float>(), p.ids.data<int64_t>(), batch, m, n_cand, p.items.data<const int64_t>(),
      n_exclude > 0 ? p.exclude.data<const int64_t>() : nullptr, n_exclude);
  check_launch("mask_candidates_kernel");
}

}  // namespace cuda
}  // namespace pyl2d
