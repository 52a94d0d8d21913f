// Row access for the aggregation kernels (segment_mean, local_topk): fp32/fp16/bf16 rows
// read as float, dispatched once per call on the dtype.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>

#include "tensor_arg.h"

namespace pyl2d {
namespace aggregate {

struct F32 { using storage = float; static float load(float v) { return v; } };
struct F16 { using storage = uint16_t; static float load(uint16_t v) { return half_to_float(v); } };
struct BF16 { using storage = uint16_t; static float load(uint16_t v) { return bf16_to_float(v); } };

// acc[d] += row[d] for d < cols.
template <typename T>
inline void add_row(float* acc, const typename T::storage* row, int64_t cols) {
  for (int64_t d = 0; d < cols; ++d) acc[d] += T::load(row[d]);
}

// Calls fn(tag) with the tag type of a float dtype code; std::invalid_argument otherwise.
template <typename Fn>
inline void dispatch_float(int code, const char* what, Fn&& fn) {
  switch (dtype_from_code(code)) {
    case DType::kFloat32: fn(F32{}); return;
    case DType::kFloat16: fn(F16{}); return;
    case DType::kBFloat16: fn(BF16{}); return;
    default:
      throw std::invalid_argument(std::string("pyl2d._C: ") + what + " must be float32, float16 or bfloat16, got " +
                                  dtype_name(dtype_from_code(code)));
  }
}

}  // namespace aggregate
}  // namespace pyl2d
