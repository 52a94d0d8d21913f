// Shared scalar code for the PERM reward ops (aggregate_rewards, group_advantages,
// score_from_hidden), used by their C++ CPU kernels (csrc/<op>_cpu.cpp); the CUDA kernels
// (kernels/reward_common.cuh) mirror the same formulas.
#pragma once
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "tensor_arg.h"
#include "codes.h"

namespace pyl2d {
namespace rewards {

// Codes from codes.h (pyl2d/_codes.py), by their local names.
constexpr int kMean = codes::kRewardMean, kHarmonic = codes::kRewardHarmonic, kGeometric = codes::kRewardGeometric;
using codes::kScaleBatch;
using codes::kScaleGroup;
using codes::kScaleNone;

// Threads only pay off past about a millisecond of work: waking an OpenMP team costs
// microseconds on an idle machine and far more on a loaded one. Rows (aggregate_rewards,
// group_advantages) past which their loops go parallel.
constexpr int64_t kParallelRows = int64_t(1) << 18;

struct Half { uint16_t bits; };
struct BFloat { uint16_t bits; };
inline float to_float(float v) { return v; }
inline float to_float(Half v) { return half_to_float(v.bits); }
inline float to_float(BFloat v) { return bf16_to_float(v.bits); }

// The aggregated reward of one row: weighted mean of valid scores / score_max in ``kMode``.
// ``weights`` may be null (all 1). Matches pyl2d/reference/aggregate_rewards.py.
template <typename T, int kMode>
inline float aggregate_row(const T* row, int64_t cols, const float* weights, float score_max) {
  float wsum = 0.f, acc = 0.f;
  for (int64_t p = 0; p < cols; ++p) {
    const float x = to_float(row[p]) / score_max;
    const float w = weights ? weights[p] : 1.f;
    if (std::isnan(x) || !(w > 0.f)) continue;
    wsum += w;
    if (kMode == kMean) acc += w * x;
    else if (kMode == kHarmonic) acc += w / x;
    else acc += w * std::log(x);
  }
  if (!(wsum > 0.f)) return NAN;
  if (kMode == kMean) return acc / wsum;
  if (kMode == kHarmonic) return wsum / acc;
  return std::exp(acc / wsum);
}

}  // namespace rewards
}  // namespace pyl2d
