// Host launcher for group_advantages' CUDA kernel in kernels/group_advantages.cu, plain and
// fused with the aggregation (rewards_and_advantages) (plain C++: no CUDA, pybind11 or torch
// types), called from csrc/group_advantages_cuda_bindings.cpp.
// It takes one parameter struct of named fields (csrc/native_args.h): tensors are TensorArgs
// of device memory torch allocated; `stream` is the caller's cudaStream_t as an integer. It
// validates its fields by name before any CUDA call (std::invalid_argument), turns CUDA
// failures into std::runtime_error and allocates no device memory.
#pragma once
#include <cstdint>

#include "native_args.h"
#include "reward_fields.h"

namespace pyl2d {
namespace cuda {

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

}  // namespace cuda
}  // namespace pyl2d
