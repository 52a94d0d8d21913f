// Host launchers for the PERM reward kernels (plain C++: no CUDA, pybind11 or torch types),
// called from csrc/rewards_cuda_bindings.cpp. Pointers are raw device addresses of tensors
// torch allocated; `stream` is the caller's cudaStream_t as an integer. Launchers validate
// their arguments (std::invalid_argument), turn CUDA failures into std::runtime_error and
// allocate no device memory.
#pragma once
#include <cstdint>

namespace pyl2d {
namespace cuda {

// How a row of judge scores becomes a reward (see pyl2d/ops/aggregate_rewards.py).
// scores: [rows, cols] with element row stride `row_stride` and contiguous columns, dtype
// float32/float16/bfloat16 (code as in csrc/tensor_arg.h). weights [cols], bystander [rows]
// and lengths [rows] are contiguous float32 or 0 (absent). mode: 0 mean, 1 harmonic, 2 geometric.
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

// out[rows] (float32) = aggregated reward of each row.
void aggregate_rewards(const RewardArgs& args, int64_t rows, uintptr_t out, uintptr_t stream);

// GRPO advantages, one thread block per group. Group g owns positions
// order[offsets[g] .. offsets[g+1]) (order is int64 [B], or 0 for the identity; offsets int64
// [groups + 1]). Members' rewards are read from `rewards` (float32 [B]) or, when
// `from_scores`, computed from `args` and also written to rewards_out (the fused path).
// scale: 0 none, 1 group, 2 batch (divides by batch_std + eps). adv is float32 [B].
void group_advantages(const RewardArgs& args, bool from_scores, uintptr_t rewards, uintptr_t order,
                      uintptr_t offsets, int64_t groups, int64_t largest_group, float eps, int scale, bool impute,
                      float batch_std, uintptr_t adv, uintptr_t rewards_out, uintptr_t stream);

// out[rows] (float32) = sum_s softmax_s(hidden[r] . weight[ids[s]]) * values[s]. hidden [rows, dim]
// (row stride h_stride) and weight [*, dim] (row stride w_stride) share a float dtype with
// contiguous columns; ids int64 [s] (validated by the caller), values float32 [s].
void score_from_hidden(uintptr_t hidden, int64_t rows, int64_t dim, int64_t h_stride, int dtype_code,
                       uintptr_t weight, int64_t w_stride, uintptr_t ids, uintptr_t values, int64_t s, uintptr_t out,
                       uintptr_t stream);

}  // namespace cuda
}  // namespace pyl2d
