// Host launcher for aggregate_rewards' CUDA kernel in kernels/aggregate_rewards.cu (plain C++:
// no CUDA, pybind11 or torch types), called from csrc/aggregate_rewards_cuda_bindings.cpp.
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

// out[rows] = aggregated reward of each row of scores.
struct AggregateRewardsCudaParams : RewardFields {
  TensorArg out;  // [rows] float32, written
  uintptr_t stream = 0;
};
void aggregate_rewards(const AggregateRewardsCudaParams& p);

}  // namespace cuda
}  // namespace pyl2d
