// Host launcher for score_from_hidden's CUDA kernel in kernels/score_from_hidden.cu (plain C++:
// no CUDA, pybind11 or torch types), called from csrc/score_from_hidden_cuda_bindings.cpp.
// It takes one parameter struct of named fields (csrc/native_args.h): tensors are TensorArgs
// of device memory torch allocated; `stream` is the caller's cudaStream_t as an integer. It
// validates its fields by name before any CUDA call (std::invalid_argument), turns CUDA
// failures into std::runtime_error and allocates no device memory.
#pragma once
#include <cstdint>

#include "native_args.h"

namespace pyl2d {
namespace cuda {

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
