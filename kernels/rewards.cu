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

namespace {

// The kernels' RewardArgs from the named fields, checked against `rows` rows of scores.
RewardArgs reward_args(const RewardFields& f, int64_t rows, const char* what) {
  expect(f.scores, "scores", 2, {DType::kFloat32, DType::kFloat16, DType::kBFloat16});
  const Matrix scores = as_matrix(f.scores, "scores");
  require(scores.rows == rows, std::string(what) + ": scores has " + std::to_string(scores.rows) +
                                   " rows, expected " + std::to_string(rows));
  require(scores.rows >= 1 && scores.cols >= 1, std::string(what) + ": empty input");
  require(f.mode >= 0 && f.mode < codes::kRewardModeCount, std::string(what) + ": unknown mode");
  if (f.weights.defined) expect_vector(f.weights, "weights", scores.cols, DType::kFloat32);
  if (f.bystander.defined) expect_vector(f.bystander, "bystander", rows, DType::kFloat32);
  if (f.lengths.defined) expect_vector(f.lengths, "lengths", rows, DType::kFloat32);
  RewardArgs a;
  a.scores = scores.ptr;
  a.row_stride = scores.row_stride;
  a.cols = scores.cols;
  a.dtype_code = static_cast<int>(scores.dtype);
  a.weights = f.weights.defined ? f.weights.ptr : 0;
  a.mode = f.mode;
  a.score_max = f.score_max;
  a.bystander = f.bystander.defined ? f.bystander.ptr : 0;
  a.bystander_coef = f.bystander_coef;
  a.lengths = f.lengths.defined ? f.lengths.ptr : 0;
  a.length_limit = f.length_limit;
  a.length_coef = f.length_coef;
  return a;
}

}  // namespace

void aggregate_rewards(const AggregateRewardsCudaParams& p) {
  expect(p.out, "out", 1, {DType::kFloat32});
  const int64_t rows = p.out.size(0);
  expect_vector(p.out, "out", rows, DType::kFloat32);
  const RewardArgs args = reward_args(p, rows, "aggregate_rewards");
  const auto st = reinterpret_cast<cudaStream_t>(p.stream);
  const unsigned blocks = static_cast<unsigned>((rows + kMaxThreads - 1) / kMaxThreads);
  dispatch_dtype(args.dtype_code, "aggregate_rewards", [&](auto tag) {
    using T = decltype(tag);
    aggregate_kernel<T><<<blocks, kMaxThreads, 0, st>>>(args, rows, p.out.data<float>());
  });
  check_launch("aggregate_rewards");
}

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
