// CUDA kernel for group_advantages: per-group GRPO advantages, one thread block per group,
// reading the rewards or aggregating them from the judge scores on the fly. The fused
// rewards_and_advantages path is this kernel with kFromScores: it shares the block layout,
// the reductions and the advantage formula, and only changes where a member's reward comes
// from, so it lives here rather than in a file of its own. Same formulas as
// pyl2d/ops/{group_advantages,aggregate_rewards}/reference.py.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <string>

#include "common.cuh"
#include "codes.h"
#include "group_advantages.h"
#include "reward_common.cuh"

namespace pyl2d {
namespace cuda {
namespace {

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

int threads_for(int64_t largest_group) {
  int t = 32;
  while (t < kMaxThreads && t < largest_group) t <<= 1;
  return t;
}

}  // namespace

void group_advantages(const GroupAdvantagesCudaParams& p) {
  expect(p.adv, "adv", 1, {DType::kFloat32});
  const int64_t batch = p.adv.size(0);
  expect_vector(p.adv, "adv", batch, DType::kFloat32);
  expect(p.offsets, "offsets", 1, {DType::kInt64});
  const int64_t groups = p.offsets.size(0) - 1;
  require(groups >= 1 && groups <= 0x7fffffff,
          "group_advantages: bad number of groups (offsets has groups + 1 entries)");
  expect_vector(p.offsets, "offsets", groups + 1, DType::kInt64);
  if (p.order.defined) expect_vector(p.order, "order", batch, DType::kInt64);
  require(p.scale >= 0 && p.scale < codes::kAdvantageScaleCount, "group_advantages: unknown scale");
  const bool from_scores = p.scores.defined;
  RewardArgs args;
  if (from_scores) {
    require(!p.rewards.defined, "group_advantages: give scores or rewards, not both");
    args = reward_args(p, batch, "group_advantages");
    require(p.rewards_out.defined, "group_advantages: rewards_out is required with scores");
  } else {
    require(p.rewards.defined, "group_advantages: rewards is required (or scores, to aggregate them)");
    expect_vector(p.rewards, "rewards", batch, DType::kFloat32);
  }
  if (p.rewards_out.defined) expect_vector(p.rewards_out, "rewards_out", batch, DType::kFloat32);
  const auto st = reinterpret_cast<cudaStream_t>(p.stream);
  const int threads = threads_for(p.largest_group);
  const auto* r = p.rewards.defined ? p.rewards.data<const float>() : nullptr;
  const auto* ord = p.order.defined ? p.order.data<const int64_t>() : nullptr;
  const auto* off = p.offsets.data<const int64_t>();
  auto* a = p.adv.data<float>();
  auto* ro = p.rewards_out.defined ? p.rewards_out.data<float>() : nullptr;
  const float eps = p.eps, batch_std = p.batch_std;
  const int scale = p.scale;
  const bool impute = p.impute;
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

}  // namespace cuda
}  // namespace pyl2d
