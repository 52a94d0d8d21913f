// Host helpers shared by the segment_mean and local_topk CUDA launchers: the caller's stream
// from its integer, and a dispatch on the storage dtype code (float32, float16, bfloat16) that
// hands `fn` a null `const T*` of the matching type.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "common.cuh"

namespace pyl2d {
namespace cuda {

inline cudaStream_t as_stream(uintptr_t s) { return reinterpret_cast<cudaStream_t>(s); }

template <typename Fn>
void dispatch(int dtype_code, Fn&& fn) {
  switch (dtype_code) {
    case 0: fn(static_cast<const float*>(nullptr)); return;
    case 1: fn(static_cast<const __half*>(nullptr)); return;
    case 2: fn(static_cast<const __nv_bfloat16*>(nullptr)); return;
    default: require(false, "dtype code " + std::to_string(dtype_code) + " is not float32, float16 or bfloat16");
  }
}

}  // namespace cuda
}  // namespace pyl2d
