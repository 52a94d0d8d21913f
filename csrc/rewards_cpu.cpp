// CPU kernels for the PERM reward ops: aggregate_rewards, group_advantages (TRL's GRPO
// formula, NaN-aware) and score_from_hidden (expected score over a few LM-head rows).
// Tensors arrive as raw pointers (see pyl2d/_ext.py); outputs and workspaces are torch's.
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>

#include "registry.h"
#include "rewards_common.h"
#include "tensor_arg.h"

namespace py = pybind11;

namespace pyl2d {
namespace {

using rewards::aggregate_row;

// Threads only pay off past about a millisecond of work: waking an OpenMP team costs
// microseconds on an idle machine and far more on a loaded one.
constexpr int64_t kParallelRows = int64_t(1) << 18;
constexpr int64_t kParallelMacs = int64_t(1) << 22;

template <typename T, int kMode>
void aggregate_rows(const T* scores, int64_t rows, int64_t cols, int64_t row_stride, const float* weights,
                    float score_max, const float* bystander, float bcoef, const float* lengths, float limit,
                    float lcoef, float* out) {
#pragma omp parallel for schedule(static) if (rows >= kParallelRows)
  for (int64_t i = 0; i < rows; ++i) {
    float r = aggregate_row<T, kMode>(scores + i * row_stride, cols, weights, score_max);
    if (bystander) r += bcoef * (bystander[i] / 100.f - 1.f);
    if (lengths) r -= lcoef * std::max(0.f, lengths[i] - limit);
    out[i] = r;
  }
}

template <typename T>
void aggregate_typed(uintptr_t scores, int mode, int64_t rows, int64_t cols, int64_t row_stride,
                     const float* weights, float score_max, const float* bystander, float bcoef,
                     const float* lengths, float limit, float lcoef, float* out) {
  const T* s = reinterpret_cast<const T*>(scores);
  if (mode == rewards::kMean)
    aggregate_rows<T, rewards::kMean>(s, rows, cols, row_stride, weights, score_max, bystander, bcoef, lengths, limit,
                                      lcoef, out);
  else if (mode == rewards::kHarmonic)
    aggregate_rows<T, rewards::kHarmonic>(s, rows, cols, row_stride, weights, score_max, bystander, bcoef, lengths,
                                          limit, lcoef, out);
  else
    aggregate_rows<T, rewards::kGeometric>(s, rows, cols, row_stride, weights, score_max, bystander, bcoef, lengths,
                                           limit, lcoef, out);
}

void aggregate_rewards_cpu(uintptr_t scores_ptr, int64_t rows, int64_t cols, int64_t row_stride, int dtype_code,
                           uintptr_t weights_ptr, int mode, double score_max, uintptr_t bystander_ptr,
                           double bystander_coef, uintptr_t lengths_ptr, double length_limit, double length_coef,
                           uintptr_t out_ptr) {
  const DType dtype = dtype_from_code(dtype_code);
  if (mode < 0 || mode > 2) throw std::invalid_argument("aggregate_rewards: unknown mode");
  const auto* weights = reinterpret_cast<const float*>(weights_ptr);
  const auto* bystander = reinterpret_cast<const float*>(bystander_ptr);
  const auto* lengths = reinterpret_cast<const float*>(lengths_ptr);
  auto* out = reinterpret_cast<float*>(out_ptr);
  const float smax = static_cast<float>(score_max), bcoef = static_cast<float>(bystander_coef);
  const float limit = static_cast<float>(length_limit), lcoef = static_cast<float>(length_coef);
  switch (dtype) {
    case DType::kFloat32:
      return aggregate_typed<float>(scores_ptr, mode, rows, cols, row_stride, weights, smax, bystander, bcoef, lengths,
                                    limit, lcoef, out);
    case DType::kFloat16:
      return aggregate_typed<rewards::Half>(scores_ptr, mode, rows, cols, row_stride, weights, smax, bystander, bcoef,
                                            lengths, limit, lcoef, out);
    case DType::kBFloat16:
      return aggregate_typed<rewards::BFloat>(scores_ptr, mode, rows, cols, row_stride, weights, smax, bystander,
                                              bcoef, lengths, limit, lcoef, out);
    default:
      throw std::invalid_argument(std::string("aggregate_rewards: unsupported dtype ") + dtype_name(dtype));
  }
}

// Statistics of one group's rewards r[begin, end) (contiguous layout), float64.
struct GroupStats {
  double count = 0, mean = NAN, ssd = 0;
};

inline GroupStats contiguous_stats(const float* r, int64_t begin, int64_t end, bool impute) {
  GroupStats st;
  double sum = 0;
  for (int64_t i = begin; i < end; ++i)
    if (!std::isnan(r[i])) { st.count += 1.0; sum += r[i]; }
  st.mean = sum / st.count;
  for (int64_t i = begin; i < end; ++i)
    if (!std::isnan(r[i])) st.ssd += (r[i] - st.mean) * (r[i] - st.mean);
  if (impute && st.count > 0) st.count = static_cast<double>(end - begin);
  return st;
}

inline float advantage(float r, double mean, double denom) {
  const double a = (r - mean) / denom;  // NaN for a missing reward: 0, imputed or not
  return std::isnan(a) ? 0.f : static_cast<float>(a);
}

// The batch std over the (imputed) rewards; group means in `mean` when imputing.
double batch_std(const float* r, int64_t n, const int64_t* ids, int64_t gsize, const double* mean, bool impute) {
  auto value = [&](int64_t i) -> double {
    return std::isnan(r[i]) && impute ? mean[ids ? ids[i] : i / gsize] : r[i];
  };
  double bn = 0, bsum = 0, bssd = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double v = value(i);
    if (!std::isnan(v)) { bn += 1.0; bsum += v; }
  }
  const double bmean = bsum / bn;
  for (int64_t i = 0; i < n; ++i) {
    const double v = value(i);
    if (!std::isnan(v)) bssd += (v - bmean) * (v - bmean);
  }
  return std::sqrt(bssd / (bn - 1.0));
}

// Workspace (float64, 4 * groups): valid count, mean, members, squared deviations.
// Imputing a missing reward with its group's mean leaves the mean and the squared deviations
// unchanged and only makes it count as a member.
void group_advantages_cpu(uintptr_t rewards_ptr, int64_t n, int64_t groups, uintptr_t ids_ptr, double eps,
                          int scale, bool impute, uintptr_t workspace_ptr, uintptr_t out_ptr) {
  if (groups < 1 || n < 1) throw std::invalid_argument("group_advantages: empty input");
  if (!ids_ptr && n % groups) throw std::invalid_argument("group_advantages: groups must divide the batch");
  if (scale < 0 || scale > 2) throw std::invalid_argument("group_advantages: unknown scale");
  const float* r = reinterpret_cast<const float*>(rewards_ptr);
  const int64_t* ids = reinterpret_cast<const int64_t*>(ids_ptr);
  float* out = reinterpret_cast<float*>(out_ptr);
  double* ws = reinterpret_cast<double*>(workspace_ptr);
  double *count = ws, *mean = ws + groups, *members = ws + 2 * groups, *ssd = ws + 3 * groups;

  if (!ids) {  // contiguous groups: each group's three passes stay in cache
    const int64_t gsize = n / groups;
    double bstd = 1.0;
    if (scale == rewards::kScaleBatch) {
      for (int64_t g = 0; g < groups; ++g) mean[g] = contiguous_stats(r, g * gsize, (g + 1) * gsize, false).mean;
      bstd = batch_std(r, n, nullptr, gsize, mean, impute);
    }
#pragma omp parallel for schedule(static) if (n >= kParallelRows)
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t begin = g * gsize, end = begin + gsize;
      const GroupStats st = contiguous_stats(r, begin, end, impute);
      double denom = 1.0;
      if (scale == rewards::kScaleGroup) denom = std::sqrt(st.ssd / (st.count - 1.0)) + eps;
      else if (scale == rewards::kScaleBatch) denom = bstd + eps;
      for (int64_t i = begin; i < end; ++i) out[i] = advantage(r[i], st.mean, denom);
    }
    return;
  }

  std::fill(ws, ws + 4 * groups, 0.0);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t g = ids[i];
    if (g < 0 || g >= groups) throw std::out_of_range("group_advantages: group id out of range");
    members[g] += 1.0;
    if (std::isnan(r[i])) continue;
    count[g] += 1.0;
    mean[g] += r[i];
  }
  for (int64_t g = 0; g < groups; ++g) mean[g] /= count[g];
  for (int64_t i = 0; i < n; ++i)
    if (!std::isnan(r[i])) ssd[ids[i]] += (r[i] - mean[ids[i]]) * (r[i] - mean[ids[i]]);
  for (int64_t g = 0; g < groups; ++g)
    if (impute && count[g] > 0) count[g] = members[g];
  const double bstd = scale == rewards::kScaleBatch ? batch_std(r, n, ids, 0, mean, impute) : 1.0;
#pragma omp parallel for schedule(static) if (n >= kParallelRows)
  for (int64_t i = 0; i < n; ++i) {
    const int64_t g = ids[i];
    double denom = 1.0;
    if (scale == rewards::kScaleGroup) denom = std::sqrt(ssd[g] / (count[g] - 1.0)) + eps;
    else if (scale == rewards::kScaleBatch) denom = bstd + eps;
    out[i] = advantage(r[i], mean[g], denom);
  }
}

// Dot product in float32 with 8 independent accumulators (lets the compiler vectorise).
using rewards::BFloat;
using rewards::Half;
using rewards::to_float;

template <typename T>
float dot(const T* a, const T* b, int64_t d) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t k = 0;
  for (; k + 8 <= d; k += 8)
    for (int j = 0; j < 8; ++j) acc[j] += to_float(a[k + j]) * to_float(b[k + j]);
  float tail = 0;
  for (; k < d; ++k) tail += to_float(a[k]) * to_float(b[k]);
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail;
}

template <typename T>
void expected_scores(const T* hidden, int64_t rows, int64_t h_stride, const T* weight, int64_t w_rows,
                     int64_t w_stride, int64_t d, const int64_t* ids, const float* values, int64_t s, float* out) {
  for (int64_t j = 0; j < s; ++j)
    if (ids[j] < 0 || ids[j] >= w_rows) throw std::out_of_range("score_from_hidden: score token id out of range");
#pragma omp parallel for schedule(static) if (rows * s * d >= kParallelMacs)
  for (int64_t i = 0; i < rows; ++i) {
    // Online softmax: one pass over the score tokens, no buffer.
    float top = -INFINITY, z = 0.f, acc = 0.f;
    for (int64_t j = 0; j < s; ++j) {
      const float logit = dot(hidden + i * h_stride, weight + ids[j] * w_stride, d);
      if (logit > top) {
        const float rescale = std::exp(top - logit);
        z = z * rescale + 1.f;
        acc = acc * rescale + values[j];
        top = logit;
      } else {
        const float e = std::exp(logit - top);
        z += e;
        acc += e * values[j];
      }
    }
    out[i] = acc / z;
  }
}

void score_from_hidden_cpu(uintptr_t hidden_ptr, int64_t rows, int64_t d, int64_t h_stride, int dtype_code,
                           uintptr_t weight_ptr, int64_t w_rows, int64_t w_stride, uintptr_t ids_ptr,
                           uintptr_t values_ptr, int64_t s, uintptr_t out_ptr) {
  const DType dtype = dtype_from_code(dtype_code);
  const int64_t* ids = reinterpret_cast<const int64_t*>(ids_ptr);
  const float* values = reinterpret_cast<const float*>(values_ptr);
  float* out = reinterpret_cast<float*>(out_ptr);
  switch (dtype) {
    case DType::kFloat32:
      return expected_scores(reinterpret_cast<const float*>(hidden_ptr), rows, h_stride,
                             reinterpret_cast<const float*>(weight_ptr), w_rows, w_stride, d, ids, values, s, out);
    case DType::kFloat16:
      return expected_scores(reinterpret_cast<const Half*>(hidden_ptr), rows, h_stride,
                             reinterpret_cast<const Half*>(weight_ptr), w_rows, w_stride, d, ids, values, s, out);
    case DType::kBFloat16:
      return expected_scores(reinterpret_cast<const BFloat*>(hidden_ptr), rows, h_stride,
                             reinterpret_cast<const BFloat*>(weight_ptr), w_rows, w_stride, d, ids, values, s, out);
    default:
      throw std::invalid_argument(std::string("score_from_hidden: unsupported dtype ") + dtype_name(dtype));
  }
}

}  // namespace
}  // namespace pyl2d

PYL2D_REGISTER_BINDINGS(rewards_cpu, [](py::module_& m) {
  const auto release = py::call_guard<py::gil_scoped_release>();
  m.def("aggregate_rewards_cpu", &pyl2d::aggregate_rewards_cpu, release,
        "Weighted mean of valid scores per row (+ bystander and length terms) into float32 out.");
  m.def("group_advantages_cpu", &pyl2d::group_advantages_cpu, release,
        "GRPO advantages, NaN-aware (TRL's formula); workspace is 4 * groups float64.");
  m.def("score_from_hidden_cpu", &pyl2d::score_from_hidden_cpu, release,
        "Expected score over the score tokens' LM-head rows.");
});
