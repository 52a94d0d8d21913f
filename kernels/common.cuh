// Device helpers shared by the CUDA kernels: error checking that throws (never aborts),
// storage-type conversions, and the (score, id) key packing used for top-k selection.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

namespace pyl2d {
namespace cuda {

// A failed CUDA call becomes a C++ exception (pybind11 turns it into RuntimeError).
inline void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) {
    throw std::runtime_error(std::string("pyl2d CUDA error in ") + what + ": " + cudaGetErrorName(err) + " (" +
                             cudaGetErrorString(err) + ")");
  }
}

// After a kernel launch: reports bad launch configurations and earlier asynchronous faults.
inline void check_launch(const char* what) { check(cudaGetLastError(), what); }

inline void require(bool ok, const std::string& message) {
  if (!ok) throw std::invalid_argument("pyl2d CUDA: " + message);
}

template <typename T>
__device__ __forceinline__ float to_float(T v);
template <>
__device__ __forceinline__ float to_float<float>(float v) { return v; }
template <>
__device__ __forceinline__ float to_float<__half>(__half v) { return __half2float(v); }
template <>
__device__ __forceinline__ float to_float<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half from_float<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

// float32 -> uint32 with the same order; -0.0 reads as +0.0 (as in pyl2d/_topk.py and
// csrc/topk_select.h), so equal scores always tie by id.
__device__ __forceinline__ uint32_t orderable_bits(float s) {
  uint32_t b = __float_as_uint(s);
  if (b == 0x80000000u) b = 0u;
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

__device__ __forceinline__ float from_orderable_bits(uint32_t o) {
  return __uint_as_float((o & 0x80000000u) ? (o & 0x7fffffffu) : ~o);
}

// Unsigned 64-bit key whose integer order is "score descending, then lower id first" when
// compared with '>': larger key = better. Every real key is > 0, so 0 means "empty".
__device__ __forceinline__ uint64_t pack_key(float score, uint32_t id) {
  return (static_cast<uint64_t>(orderable_bits(score)) << 32) | static_cast<uint64_t>(0xffffffffu - id);
}

__device__ __forceinline__ float key_score(uint64_t key) {
  return from_orderable_bits(static_cast<uint32_t>(key >> 32));
}

__device__ __forceinline__ int64_t key_id(uint64_t key) {
  return static_cast<int64_t>(0xffffffffu - static_cast<uint32_t>(key & 0xffffffffu));
}

}  // namespace cuda
}  // namespace pyl2d
