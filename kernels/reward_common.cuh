// Device and host code shared by the reward CUDA kernels (aggregate_rewards.cu,
// group_advantages.cu, score_from_hidden.cu): the per-row reward (the aggregation the fused
// group_advantages path repeats), the storage dtype dispatch and the RewardArgs built from
// the named RewardFields. Same formula as pyl2d/ops/aggregate_rewards/reference.py.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <string>

#include "common.cuh"
#include "codes.h"
#include "reward_fields.h"

namespace pyl2d {
namespace cuda {

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

template <typename Fn>
void dispatch_dtype(int dtype_code, const char* what, Fn&& fn) {
  switch (dtype_code) {
    case 0: return fn(float{});
    case 1: return fn(__half{});
    case 2: return fn(__nv_bfloat16{});
    default: require(false, std::string(what) + ": unsupported dtype code " + std::to_string(dtype_code));
  }
}

// The kernels' RewardArgs from the named fields, checked against `rows` rows of scores.
inline RewardArgs reward_args(const RewardFields& f, int64_t rows, const char* what) {
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

}  // namespace cuda
}  // namespace pyl2d
