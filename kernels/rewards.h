// Host launchers for the PERM reward kernels (plain C++: no CUDA, pybind11 or torch types),
// called from csrc/rewards_cuda_bindings.cpp. Each takes one parameter struct of named fields
// (csrc/native_args.h): tensors are TensorArgs of device memory torch allocated; `stream` is
// the caller's cudaStream_t as an integer. Launchers validate their fields by name before any
// CUDA call (std::invalid_argument), turn CUDA failures into std::runtime_error and allocate
// no device memory.
#pragma once
#include <cstdint>

#include "native_args.h"

namespace pyl2d {
namespace cuda {

// The kernels' view of the aggregation (passed by value to the device): how a row of judge
// scores becomes a reward. scores: element row stride `row_stride`, contiguous columns; the
// optional float32 vectors are 0 when absent; mode and dtype_code are pyl2d._codes codes.
struct RewardArgs {
  uintptr_t scores = 0;
  int64_t row_stride = 0, cols = 0;
  int dtype_code = 0;
  uintptr_t weights = 0;
  int mode = 0;
  float score_max = 5.f;
  uintptr_t bystander = 0;
  float bystander_coef = 0.f;
  uintptr_t lengths = 0;
  float length_limit = 0.f, length_coef = 0.f;
};

// The named aggregation fields (see pyl2d/ops/aggregate_rewards.py), shared by the two
// entry points below.
struct RewardFields {
  TensorArg scores;     // [rows, P] float32/float16/bfloat16, unit inner stride
  TensorArg weights;    // optional [P] float32, contiguous
  int mode = 0;         // pyl2d._codes.REWARD_MODES
  float score_max = 5.f;
  TensorArg bystander;  // optional [rows] float32, contiguous
  float bystander_coef = 0.f;
  TensorArg lengths;    // optional [rows] float32, contiguous
  float length_limit = 0.f, length_coef = 0.f;
};

// out[rows] = aggregated reward of each row of scores.
struct AggregateRewardsCudaParams : RewardFields {
  TensorArg out;  // [rows] float32, written
  uintptr_t stream = 0;
};
void aggregate_rewards(const AggregateRewardsCudaParams& p);

// GRPO advantages, one thread block per group. Group g owns positions
// order[offsets[g] .. offsets[g+1]) (the identity when order is absent). Members' rewards
// are read from `rewards` or, when `scores` is given, aggregated from the RewardFields and
// also written to rewards_out (the fused path). Exactly one of scores / rewards is given.
struct GroupAdvantagesCudaParams : RewardFields {
  TensorArg rewards;      // [B] float32, contiguous, unless scores is given
  TensorArg order;        // optional [B] int64, contiguous
  TensorArg offsets;      // [groups + 1] int64, contiguous
  int64_t largest_group = 0;
  float eps = 0.f;
  int scale = 0;          // pyl2d._codes.ADVANTAGE_SCALES; batch divides by batch_std + eps
  bool impute = false;
  float batch_std = 0.f;
  TensorArg adv;          // [B] float32, written
  TensorArg rewards_out;  // [B] float32, written; required when scores is given
  uintptr_t stream = 0;
};
void group_advantages(const GroupAdvantagesCudaParams& p);

// out[rows] = sum_s softmax_s(hidden[r] . weight[ids[s]]) * values[s].
struct ScoreFromHiddenCudaParams {
  TensorArg hidden;  // [rows, D] float32/float16/bfloat16, unit inner stride
  TensorArg weight;  // [V, D] hidden's dtype, unit inner stride (the LM head)
  TensorArg ids;     // [S] int64, contiguous, in [0, V) (validated by the caller)
  TensorArg values;  // [S] float32, contiguous
  TensorArg out;     // [rows] float32, written
  uintptr_t stream = 0;
};
void score_from_hidden(const ScoreFromHiddenCudaParams& p);

}  // namespace cuda
}  // namespace pyl2d
