// CUDA kernel for aggregate_rewards: one thread per row. Same formula as
// pyl2d/ops/aggregate_rewards/reference.py (the row reward lives in reward_common.cuh, shared
// with group_advantages' fused path).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <string>

#include "common.cuh"
#include "codes.h"
#include "aggregate_rewards.h"
#include "reward_common.cuh"

namespace pyl2d {
namespace cuda {
namespace {

template <typename T>
__global__ void aggregate_kernel(RewardArgs a, int64_t rows, float* out) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (row < rows) out[row] = row_reward<T>(a, row);
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

}  // namespace cuda
}  // namespace pyl2d
