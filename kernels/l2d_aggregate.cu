// CUDA kernels for L2D aggregation: per-segment means (segment_mean) and local_topk's
// local scores and candidate masking. Same formulas as pyl2d/reference/{segment_mean,local_topk}.py;
// the Python side (pyl2d/cuda/{segment_mean,local_topk}.py) builds the CSR / group layout
// with torch and picks the final top-k.
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
#include "l2d_aggregate.h"

namespace pyl2d {
namespace cuda {
namespace {

constexpr int kThreads = 128;  // a multiple of 32
using codes::kNormEps;

inline cudaStream_t as_stream(uintptr_t s) { return reinterpret_cast<cudaStream_t>(s); }

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

template <typename Fn>
void dispatch(int dtype_code, Fn&& fn) {
  switch (dtype_code) {
    case 0: fn(static_cast<const float*>(nullptr)); return;
    case 1: fn(static_cast<const __half*>(nullptr)); return;
    case 2: fn(static_cast<const __nv_bfloat16*>(nullptr)); return;
    default: require(false, "dtype code " + std::to_string(dtype_code) + " is not float32, float16 or bfloat16");
  }
}

}  // namespace

void segment_mean(uintptr_t values, int64_t cols, int64_t row_stride, int dtype_code, uintptr_t order,
                  uintptr_t ends, uintptr_t counts, int64_t segments, uintptr_t means, uintptr_t stream) {
  require(cols >= 0 && segments >= 0 && row_stride >= 0, "segment_mean: negative size or stride");
  if (cols == 0 || segments == 0) return;
  require(means != 0 && ends != 0 && counts != 0, "segment_mean: null output or layout pointer");
  require(segments <= INT_MAX, "segment_mean: too many segments for one grid");
  const int64_t col_blocks = (cols + kThreads - 1) / kThreads;
  require(col_blocks <= 65535, "segment_mean: too many columns");
  const dim3 grid(static_cast<unsigned>(segments), static_cast<unsigned>(col_blocks));
  dispatch(dtype_code, [&](auto tag) {
    using T = std::remove_const_t<std::remove_pointer_t<decltype(tag)>>;
    segment_mean_kernel<T><<<grid, kThreads, 0, as_stream(stream)>>>(
        reinterpret_cast<const T*>(values), cols, row_stride, reinterpret_cast<const int64_t*>(order),
        reinterpret_cast<const int64_t*>(ends), reinterpret_cast<const int64_t*>(counts),
        reinterpret_cast<float*>(means));
  });
  check_launch("segment_mean_kernel");
}

void local_scores(uintptr_t queries, int64_t batch, int64_t dim, int64_t q_stride, uintptr_t memory,
                  int64_t mem_stride, int dtype_code, uintptr_t rows, uintptr_t items, uintptr_t group_end, int64_t m,
                  int metric, uintptr_t out_scores, uintptr_t out_ids, int64_t out_stride, uintptr_t stream) {
  require(batch >= 0 && dim >= 0 && m >= 1 && q_stride >= 0 && mem_stride >= 0, "local_scores: bad sizes");
  require(metric >= 0 && metric < codes::kMetricCount, "local_scores: metric code must be 0, 1 or 2");
  require(out_stride >= m, "local_scores: out_stride must be at least m");
  if (batch == 0) return;
  require(queries != 0 && memory != 0 && rows != 0 && items != 0 && group_end != 0 && out_scores != 0 && out_ids != 0,
          "local_scores: null pointer");
  require(batch <= INT_MAX / m, "local_scores: batch * m exceeds one grid");
  const unsigned blocks = static_cast<unsigned>(batch * m);
  dispatch(dtype_code, [&](auto tag) {
    using T = std::remove_const_t<std::remove_pointer_t<decltype(tag)>>;
    local_scores_kernel<T><<<blocks, kThreads, 0, as_stream(stream)>>>(
        reinterpret_cast<const T*>(queries), dim, q_stride, reinterpret_cast<const T*>(memory), mem_stride,
        reinterpret_cast<const int64_t*>(rows), reinterpret_cast<const int64_t*>(items),
        reinterpret_cast<const int64_t*>(group_end), m, metric, reinterpret_cast<float*>(out_scores),
        reinterpret_cast<int64_t*>(out_ids), out_stride);
  });
  check_launch("local_scores_kernel");
}

void mask_candidates(uintptr_t scores, uintptr_t ids, int64_t batch, int64_t m, int64_t n_cand, uintptr_t items,
                     uintptr_t exclude, int64_t n_exclude, uintptr_t stream) {
  require(batch >= 0 && m >= 1 && n_cand >= 0 && n_exclude >= 0, "mask_candidates: bad sizes");
  require(n_exclude == 0 || exclude != 0, "mask_candidates: exclude is null but n_exclude > 0");
  const int64_t total = batch * (m + n_cand);
  if (total == 0) return;
  require(scores != 0 && ids != 0 && items != 0, "mask_candidates: null pointer");
  const int64_t blocks = (total + kThreads - 1) / kThreads;
  require(blocks <= INT_MAX, "mask_candidates: too many candidates for one grid");
  mask_candidates_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, as_stream(stream)>>>(
      reinterpret_cast<float*>(scores), reinterpret_cast<int64_t*>(ids), batch, m, n_cand,
      reinterpret_cast<const int64_t*>(items), reinterpret_cast<const int64_t*>(exclude), n_exclude);
  check_launch("mask_candidates_kernel");
}

}  // namespace cuda
}  // namespace pyl2d
