// Shared scalar code for the PERM reward ops (aggregate_rewards, group_advantages), used by
// the C++ CPU backend; the CUDA kernels in kernels/rewards.cu mirror the same formulas.
#pragma once
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "tensor_arg.h"

namespace pyl2d {
namespace rewards {

enum Mode : int { kMean = 0, kHarmonic = 1, kGeometric = 2 };
enum Scale : int { kScaleNone = 0, kScaleGroup = 1, kScaleBatch = 2 };

inline float load_as_float(const void* base, int64_t index, DType dtype) {
  switch (dtype) {
    case DType::kFloat32: return static_cast<const float*>(base)[index];
    case DType::kFloat16: return half_to_float(static_cast<const uint16_t*>(base)[index]);
    case DType::kBFloat16: return bf16_to_float(static_cast<const uint16_t*>(base)[index]);
    default: throw std::invalid_argument(std::string("pyl2d._C rewards: unsupported dtype ") + dtype_name(dtype));
  }
}

// The aggregated reward of one row: weighted mean of valid scores / score_max in ``mode``.
// ``weights`` may be null (all 1). Matches pyl2d/reference/aggregate_rewards.py.
inline float aggregate_row(const void* scores, int64_t row_offset, int64_t cols, DType dtype, const float* weights,
                           int mode, float score_max) {
  float wsum = 0.f, acc = 0.f;
  for (int64_t p = 0; p < cols; ++p) {
    const float x = load_as_float(scores, row_offset + p, dtype) / score_max;
    const float w = weights ? weights[p] : 1.f;
    if (std::isnan(x) || !(w > 0.f)) continue;
    wsum += w;
    if (mode == kMean) acc += w * x;
    else if (mode == kHarmonic) acc += w / x;
    else acc += w * std::log(x);
  }
  if (!(wsum > 0.f)) return NAN;
  if (mode == kMean) return acc / wsum;
  if (mode == kHarmonic) return wsum / acc;
  return std::exp(acc / wsum);
}

}  // namespace rewards
}  // namespace pyl2d
