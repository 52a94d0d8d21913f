// The aggregation fields shared by the reward CUDA launchers' parameter structs
// (kernels/aggregate_rewards.h, kernels/group_advantages.h) and the kernels' view of them
// (plain C++: no CUDA, pybind11 or torch types; see csrc/native_args.h for TensorArg).
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

// The named aggregation fields (see pyl2d/ops/_rewards/cuda.py), shared by
// aggregate_rewards.h and group_advantages.h.
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

}  // namespace cuda
}  // namespace pyl2d
