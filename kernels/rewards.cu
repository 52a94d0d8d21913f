// CUDA kernels for the PERM reward ops: per-row aggregation, per-group GRPO advantages that
// can aggregate the scores themselves (fused), and the expected score over a few LM-head
// rows. Same formulas as pyl2d/reference/{aggregate_rewards,group_advantages,score_from_hidden}.py.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <string>

#include "common.cuh"
#include "codes.h"
#include "rewards.h"

namespace pyl2d {
namespace cuda {
namespace {

constexpr int kMaxThreads = 256;

template <typename T>
__device__ float row_reward(const RewardArgs& a, int64_t row) {
  const T* scores = reinterpret_cast<const T*>(a.scores) + row * a.row_stride;
  const float* weights = reinterpret_cast<const float*>(a.weights);
  float wsum = 0.f, acc = 0.f;
  for (int64_t p = 0; p < a.cols; ++p) {
    const float x = to_float<T>(scores[p]) / a.score_max;
    const float w = weights ? weights[p] : 1.f;
    if (isnan(x) || !(w > 0.f)) continue;
    wsum += w;
    if (a.mode == codes::kRewardMean) acc += w * x;
    else if (a.mode == codes::kRewardHarmonic) acc += w / x;
    else acc += w * logf(x);
  }
  float r;
  if (!(wsum > 0.f)) r = NAN;
  else if (a.mode == codes::kRewardMean) r = acc / wsum;
  else if (a.mode == codes::kRewardHarmonic) r = wsum / acc;
  else r = expf(acc / wsum);
  if (a.bystander) r += a.bystander_coef * (reinterpret_cast<const float*>(a.bystander)[row] / 100.f - 1.f);
  if (a.lengths) r -= a.length_coef * fmaxf(reinterpret_cast<const float*>(a.lengths)[row] - a.length_limit, 0.f);
  return r;
}

template <typename T>
__global__ void aggregate_kernel(RewardArgs a, int64_t rows, float* out) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (row < rows) out[row] = row_reward<T>(a, row);
}

// Sum over the block; every thread gets the result. `red` holds 33 floats.
__device__ float block_sum(float v, float* red) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
  __syncthreads();  // earlier readers of red[32] are done
  if (lane == 0) red[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float t = lane < warps ? red[lane] : 0.f;
    for (int o = 16; o > 0; o >>= 1) t += __shfl_xor_sync(0xffffffffu, t, o);
    if (lane == 0) red[32] = t;
  }
  __syncthreads();
  return red[32];
}

template <typename T, bool kFromScores>
__device__ float member_value(const RewardArgs& a, const float* rewards, int64_t pos) {
  if constexpr (kFromScores) return row_reward<T>(a, pos);
  else return rewards[pos];
}

template <typename T, bool kFromScores>
__global__ void advantages_kernel(RewardArgs a, const float* rewards, const int64_t* order, const int64_t* offsets,
                                  float eps, int scale, bool impute, float batch_std, float* adv, float* rewards_out) {
  __shared__ float red[33];
  const int64_t g = blockIdx.x;
  const int64_t start = offsets[g], end = offsets[g + 1];
  auto position = [&](int64_t k) { return order ? order[k] : k; };
  float cnt = 0.f, sum = 0.f;
  for (int64_t k = start + threadIdx.x; k < end; k += blockDim.x) {
    const float r = member_value<T, kFromScores>(a, rewards, position(k));
    if (!isnan(r)) { cnt += 1.f; sum += r; }
  }
  float count = block_sum(cnt, red);
  const float mean = block_sum(sum, red) / count;
  // A missing reward imputed with the group's mean leaves mean and deviations unchanged and
  // only counts as a member.
  if (impute && count > 0.f) count = static_cast<float>(end - start);
  float denom = 1.f;
  if (scale == codes::kScaleGroup) {
    float ssd = 0.f;
    for (int64_t k = start + threadIdx.x; k < end; k += blockDim.x) {
      const float v = member_value<T, kFromScores>(a, rewards, position(k));
      if (!isnan(v)) ssd += (v - mean) * (v - mean);
    }
    denom = sqrtf(block_sum(ssd, red) / (count - 1.f)) + eps;
  } else if (scale == codes::kScaleBatch) {
    denom = batch_std + eps;
  }
  for (int64_t k = start + threadIdx.x; k < end; k += blockDim.x) {
    const int64_t pos = position(k);
    const float r = member_value<T, kFromScores>(a, rewards, pos);
    if (kFromScores) rewards_out[pos] = r;
    const float x = (r - mean) / denom;  // NaN for a missing reward: 0 below, imputed or not
    adv[pos] = isnan(x) ? 0.f : x;
  }
}

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

int threads_for(int64_t largest_group) {
  int t = 32;
  while (t < kMaxThreads && t < largest_group) t <<= 1;
  return t;
}

template <typename Fn>
void dispatch_dtype(int dtype_code, const char* what, Fn&& fn) {
  switch (dtype_code) {
    case 0: return fn(float{});
    case 1: return fn(__half{});
    case 2: return fn(__nv_bfloat16{});
    default: require(false, std::string(what) + ": unsupported dtype code " + std::to_string(dtype_code));
  }
}

}  // namespace

void aggregate_rewards(const RewardArgs& args, int64_t rows, uintptr_t out, uintptr_t stream) {
  require(rows >= 1 && args.cols >= 1, "aggregate_rewards: empty input");
  require(args.mode >= 0 && args.mode <= 2, "aggregate_rewards: unknown mode");
  const auto st = reinterpret_cast<cudaStream_t>(stream);
  const unsigned blocks = static_cast<unsigned>((rows + kMaxThreads - 1) / kMaxThreads);
  dispatch_dtype(args.dtype_code, "aggregate_rewards", [&](auto tag) {
    using T = decltype(tag);
    aggregate_kernel<T><<<blocks, kMaxThreads, 0, st>>>(args, rows, reinterpret_cast<float*>(out));
  });
  check_launch("aggregate_rewards");
}

void group_advantages(const RewardArgs& args, bool from_scores, uintptr_t rewards, uintptr_t order,
                      uintptr_t offsets, int64_t groups, int64_t largest_group, float eps, int scale, bool impute,
                      float batch_std, uintptr_t adv, uintptr_t rewards_out, uintptr_t stream) {
  require(groups >= 1 && groups <= 0x7fffffff, "group_advantages: bad number of groups");
  require(scale >= 0 && scale <= 2, "group_advantages: unknown scale");
  require(from_scores ? (args.scores != 0 && rewards_out != 0) : rewards != 0, "group_advantages: missing input");
  const auto st = reinterpret_cast<cudaStream_t>(stream);
  const int threads = threads_for(largest_group);
  const auto* r = reinterpret_cast<const float*>(rewards);
  const auto* ord = reinterpret_cast<const int64_t*>(order);
  const auto* off = reinterpret_cast<const int64_t*>(offsets);
  auto* a = reinterpret_cast<float*>(adv);
  auto* ro = reinterpret_cast<float*>(rewards_out);
  const unsigned blocks = static_cast<unsigned>(groups);
  if (!from_scores) {
    advantages_kernel<float, false><<<blocks, threads, 0, st>>>(args, r, ord, off, eps, scale, impute, batch_std, a,
                                                                ro);
  } else {
    dispatch_dtype(args.dtype_code, "group_advantages", [&](auto tag) {
      using T = decltype(tag);
      advantages_kernel<T, true><<<blocks, threads, 0, st>>>(args, r, ord, off, eps, scale, impute, batch_std, a, ro);
    });
  }
  check_launch("group_advantages");
}

void score_from_hidden(uintptr_t hidden, int64_t rows, int64_t dim, int64_t h_stride, int dtype_code,
                       uintptr_t weight, int64_t w_stride, uintptr_t ids, uintptr_t values, int64_t s, uintptr_t out,
                       uintptr_t stream) {
  require(rows >= 1 && rows <= 0x7fffffff && dim >= 1, "score_from_hidden: bad shape");
  require(s >= 1 && s <= 8192, "score_from_hidden: between 1 and 8192 score tokens");
  const auto st = reinterpret_cast<cudaStream_t>(stream);
  const int threads = s >= 8 ? 256 : 32 * static_cast<int>(s);
  const size_t shared = static_cast<size_t>(s) * sizeof(float);
  dispatch_dtype(dtype_code, "score_from_hidden", [&](auto tag) {
    using T = decltype(tag);
    score_from_hidden_kernel<T><<<static_cast<unsigned>(rows), threads, shared, st>>>(
        reinterpret_cast<const T*>(hidden), dim, h_stride, reinterpret_cast<const T*>(weight), w_stride,
        reinterpret_cast<const int64_t*>(ids), reinterpret_cast<const float*>(values), s,
        reinterpret_cast<float*>(out));
  });
  check_launch("score_from_hidden");
}

}  // namespace cuda
}  // namespace pyl2d
