// The codes and constants shared with Python, mirrored from pyl2d/_codes.py (the one
// definition): each enumerator's value is its name's position in the Python table.
// pyl2d._C.codes() reports these compiled values and tests/test_codes.py checks them
// against pyl2d/_codes.py, so adding a metric or mode touches these two files only.
#pragma once

namespace pyl2d {
namespace codes {

// pyl2d._codes.METRICS
enum Metric : int { kIP = 0, kCosine = 1, kL2 = 2, kMetricCount = 3 };
// pyl2d._codes.POOL_MODES
enum PoolMode : int { kPoolLast = 0, kPoolMean = 1, kPoolModeCount = 2 };
// pyl2d._codes.REWARD_MODES
enum RewardMode : int { kRewardMean = 0, kRewardHarmonic = 1, kRewardGeometric = 2, kRewardModeCount = 3 };
// pyl2d._codes.ADVANTAGE_SCALES
enum AdvantageScale : int { kScaleNone = 0, kScaleGroup = 1, kScaleBatch = 2, kAdvantageScaleCount = 3 };

// pyl2d._codes.NORM_EPS
constexpr float kNormEps = 1e-12f;

}  // namespace codes
}  // namespace pyl2d
