// CPU kernel for group_advantages: TRL's GRPO formula, NaN-aware, over contiguous equal groups
// or explicit group ids. Tensors arrive as raw pointers (see pyl2d/_ext.py); outputs and
// workspaces are torch's.
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
// group_advantages' named arguments (pyl2d/ops/group_advantages/cpu.py; bound below).
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

using rewards::kParallelRows;

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

}  // namespace
}  // namespace pyl2d

PYL2D_REGISTER_BINDINGS(group_advantages_cpu, [](py::module_& m) {
  const auto release = py::call_guard<py::gil_scoped_release>();
  using pyl2d::GroupAdvantagesParams;
  pyl2d::bind_params<GroupAdvantagesParams>(m, "GroupAdvantagesParams", "Named arguments of group_advantages_cpu.")
      .def_readwrite("rewards", &GroupAdvantagesParams::rewards)
      .def_readwrite("group_ids", &GroupAdvantagesParams::group_ids)
      .def_readwrite("workspace", &GroupAdvantagesParams::workspace)
      .def_readwrite("out", &GroupAdvantagesParams::out)
      .def_readwrite("num_groups", &GroupAdvantagesParams::num_groups)
      .def_readwrite("eps", &GroupAdvantagesParams::eps)
      .def_readwrite("scale", &GroupAdvantagesParams::scale)
      .def_readwrite("impute", &GroupAdvantagesParams::impute);
  m.def("group_advantages_cpu", &pyl2d::group_advantages_cpu, release, py::arg("params"),
        "GRPO advantages, NaN-aware (TRL's formula), into params.out.");
});
