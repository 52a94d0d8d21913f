// CPU kernels for the PERM reward ops: aggregate_rewards, group_advantages (TRL's GRPO
// formula, NaN-aware) and score_from_hidden (expected score over a few LM-head rows).
// Tensors arrive as raw pointers (see pyl2d/_ext.py); outputs and workspaces are torch's.
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>

#include "native_args.h"
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

}  // namespace

// aggregate_rewards' named arguments (pyl2d/ops/aggregate_rewards.py; bound below).
struct AggregateRewardsParams {
  TensorArg scores;     // [B, P] float32/float16/bfloat16, unit inner stride; NaN = missing
  TensorArg weights;    // optional [P] float32
  TensorArg bystander;  // optional [B] float32
  TensorArg lengths;    // optional [B] float32 (with length_limit)
  TensorArg out;        // [B] float32; written
  int mode = 0;         // pyl2d._codes.REWARD_MODES
  double score_max = 1.0, bystander_coef = 0.0, length_limit = 0.0, length_coef = 0.0;
};

// group_advantages' named arguments (pyl2d/ops/group_advantages.py; bound below).
struct GroupAdvantagesParams {
  TensorArg rewards;    // [N] float32, contiguous
  TensorArg group_ids;  // optional [N] int64 in [0, num_groups); absent: contiguous equal groups
  TensorArg workspace;  // [4 * num_groups] float64
  TensorArg out;        // [N] float32; written
  int64_t num_groups = 0;
  double eps = 0.0;
  int scale = 0;        // pyl2d._codes.ADVANTAGE_SCALES
  bool impute = false;
};

namespace {

void aggregate_rewards_cpu(const AggregateRewardsParams& a) {
  const Matrix sc = as_matrix(a.scores, "scores");
  const int64_t rows = sc.rows, cols = sc.cols, row_stride = sc.row_stride;
  const uintptr_t scores_ptr = sc.ptr;
  const int dtype_code = static_cast<int>(sc.dtype);
  if (a.weights.defined) expect_vector(a.weights, "weights", cols, DType::kFloat32);
  if (a.bystander.defined) expect_vector(a.bystander, "bystander", rows, DType::kFloat32);
  if (a.lengths.defined) expect_vector(a.lengths, "lengths", rows, DType::kFloat32);
  expect_vector(a.out, "out", rows, DType::kFloat32);
  const uintptr_t weights_ptr = a.weights.ptr, bystander_ptr = a.bystander.ptr, lengths_ptr = a.lengths.ptr;
  const uintptr_t out_ptr = a.out.ptr;
  const int mode = a.mode;
  const double score_max = a.score_max, bystander_coef = a.bystander_coef;
  const double length_limit = a.length_limit, length_coef = a.length_coef;
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
void group_advantages_cpu(const GroupAdvantagesParams& a) {
  expect(a.rewards, "rewards", 1, {DType::kFloat32});
  const int64_t n = a.rewards.size(0), groups = a.num_groups;
  expect_vector(a.rewards, "rewards", n, DType::kFloat32);
  if (a.group_ids.defined) expect_vector(a.group_ids, "group_ids", n, DType::kInt64);
  expect_vector(a.workspace, "workspace", 4 * groups, DType::kFloat64);
  expect_vector(a.out, "out", n, DType::kFloat32);
  const uintptr_t rewards_ptr = a.rewards.ptr, ids_ptr = a.group_ids.ptr, workspace_ptr = a.workspace.ptr;
  const uintptr_t out_ptr = a.out.ptr;
  const double eps = a.eps;
  const int scale = a.scale;
  const bool impute = a.impute;
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

}  // namespace

// score_from_hidden's named arguments (pyl2d/ops/score_from_hidden.py; bound below).
struct ScoreFromHiddenParams {
  TensorArg hidden;           // [R, D] float32/float16/bfloat16, unit inner stride
  TensorArg lm_head_weight;   // [V, D], same dtype
  TensorArg score_token_ids;  // [S] int64 in [0, V)
  TensorArg score_values;     // [S] float32
  TensorArg out;              // [R] float32; written
};

namespace {

void score_from_hidden_cpu(const ScoreFromHiddenParams& a) {
  const Matrix h = as_matrix(a.hidden, "hidden"), w = as_matrix(a.lm_head_weight, "lm_head_weight");
  if (h.dtype != w.dtype) throw std::invalid_argument("hidden and lm_head_weight must share a dtype");
  if (h.cols != w.cols) throw std::invalid_argument("hidden and lm_head_weight must have the same width");
  expect(a.score_token_ids, "score_token_ids", 1, {DType::kInt64});
  const int64_t s = a.score_token_ids.size(0);
  expect_vector(a.score_token_ids, "score_token_ids", s, DType::kInt64);
  expect_vector(a.score_values, "score_values", s, DType::kFloat32);
  expect_vector(a.out, "out", h.rows, DType::kFloat32);
  const uintptr_t hidden_ptr = h.ptr, weight_ptr = w.ptr, ids_ptr = a.score_token_ids.ptr;
  const uintptr_t values_ptr = a.score_values.ptr, out_ptr = a.out.ptr;
  const int64_t rows = h.rows, d = h.cols, h_stride = h.row_stride, w_rows = w.rows, w_stride = w.row_stride;
  const DType dtype = h.dtype;
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
  using pyl2d::AggregateRewardsParams;
  using pyl2d::GroupAdvantagesParams;
  using pyl2d::ScoreFromHiddenParams;
  pyl2d::bind_params<AggregateRewardsParams>(m, "AggregateRewardsParams", "Named arguments of aggregate_rewards_cpu.")
      .def_readwrite("scores", &AggregateRewardsParams::scores)
      .def_readwrite("weights", &AggregateRewardsParams::weights)
      .def_readwrite("bystander", &AggregateRewardsParams::bystander)
      .def_readwrite("lengths", &AggregateRewardsParams::lengths)
      .def_readwrite("out", &AggregateRewardsParams::out)
      .def_readwrite("mode", &AggregateRewardsParams::mode)
      .def_readwrite("score_max", &AggregateRewardsParams::score_max)
      .def_readwrite("bystander_coef", &AggregateRewardsParams::bystander_coef)
      .def_readwrite("length_limit", &AggregateRewardsParams::length_limit)
      .def_readwrite("length_coef", &AggregateRewardsParams::length_coef);
  pyl2d::bind_params<GroupAdvantagesParams>(m, "GroupAdvantagesParams", "Named arguments of group_advantages_cpu.")
      .def_readwrite("rewards", &GroupAdvantagesParams::rewards)
      .def_readwrite("group_ids", &GroupAdvantagesParams::group_ids)
      .def_readwrite("workspace", &GroupAdvantagesParams::workspace)
      .def_readwrite("out", &GroupAdvantagesParams::out)
      .def_readwrite("num_groups", &GroupAdvantagesParams::num_groups)
      .def_readwrite("eps", &GroupAdvantagesParams::eps)
      .def_readwrite("scale", &GroupAdvantagesParams::scale)
      .def_readwrite("impute", &GroupAdvantagesParams::impute);
  pyl2d::bind_params<ScoreFromHiddenParams>(m, "ScoreFromHiddenParams", "Named arguments of score_from_hidden_cpu.")
      .def_readwrite("hidden", &ScoreFromHiddenParams::hidden)
      .def_readwrite("lm_head_weight", &ScoreFromHiddenParams::lm_head_weight)
      .def_readwrite("score_token_ids", &ScoreFromHiddenParams::score_token_ids)
      .def_readwrite("score_values", &ScoreFromHiddenParams::score_values)
      .def_readwrite("out", &ScoreFromHiddenParams::out);
  m.def("aggregate_rewards_cpu", &pyl2d::aggregate_rewards_cpu, release, py::arg("params"),
        "Weighted mean of valid scores per row (+ bystander and length terms) into params.out.");
  m.def("group_advantages_cpu", &pyl2d::group_advantages_cpu, release, py::arg("params"),
        "GRPO advantages, NaN-aware (TRL's formula), into params.out.");
  m.def("score_from_hidden_cpu", &pyl2d::score_from_hidden_cpu, release, py::arg("params"),
        "Expected score over the score tokens' LM-head rows, into params.out.");
});
