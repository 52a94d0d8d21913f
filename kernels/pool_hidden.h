// Host launcher for pool_hidden's CUDA kernels in kernels/pool_hidden.cu (plain C++: no CUDA,
// pybind11 or torch types), called from csrc/pool_hidden_cuda_bindings.cpp. It takes one
// parameter struct of named fields (csrc/native_args.h): tensors are TensorArgs of device
// memory torch allocated; `stream` is the caller's cudaStream_t as an integer. It validates its
// fields by name before any CUDA call (std::invalid_argument), turns CUDA failures into
// std::runtime_error and allocates no device memory.
#pragma once
#include <cstdint>

#include "native_args.h"

namespace pyl2d {
namespace cuda {

// pool_hidden: hidden -> out in the hidden dtype, through a float32 workspace `pooled`.
// mode last: row b takes token last_index[b]; mode mean: the mean over tokens with
// real[b, t] != 0 (every row has at least one real token). normalize: divide each row by
// max(L2 norm, 1e-12) before rounding to the hidden dtype.
struct PoolHiddenCudaParams {
  TensorArg hidden;      // [B, T, D] float32/float16/bfloat16, unit inner stride
  int mode = 0;          // pyl2d._codes.POOL_MODES
  TensorArg last_index;  // [B] int64; required for mode last
  TensorArg real;        // [B, T] uint8, contiguous; required for mode mean
  bool normalize = false;
  TensorArg pooled;      // [B, D] float32, contiguous, workspace
  TensorArg out;         // [B, D] hidden's dtype, contiguous, written
  uintptr_t stream = 0;
};
void pool_hidden(const PoolHiddenCudaParams& p);

}  // namespace cuda
}  // namespace pyl2d
