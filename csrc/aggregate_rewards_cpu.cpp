// CPU kernel for aggregate_rewards: the weighted mean (arithmetic, harmonic or geometric) of
// each row's valid judge scores, plus the bystander and length terms. The row formula is
// rewards::aggregate_row (rewards_common.h). Tensors arrive as raw pointers (see
// pyl2d/_ext.py); outputs are torch's.
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
using rewards::kParallelRows;

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

// aggregate_rewards' named arguments (pyl2d/ops/aggregate_rewards/cpu.py; bound below).
struct AggregateRewardsParams {
  TensorArg scores;     // [B, P] float32/float16/bfloat16, unit inner stride; NaN = missing
  TensorArg weights;    // optional [P] float32
  TensorArg bystander;  // optional [B] float32
  TensorArg lengths;    // optional [B] float32 (with length_limit)
  TensorArg out;        // [B] float32; written
  int mode = 0;         // pyl2d._codes.REWARD_MODES
  double score_max = 1.0, bystander_coef = 0.0, length_limit = 0.0, length_coef = 0.0;
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

}  // namespace
}  // namespace pyl2d

PYL2D_REGISTER_BINDINGS(aggregate_rewards_cpu, [](py::module_& m) {
  const auto release = py::call_guard<py::gil_scoped_release>();
  using pyl2d::AggregateRewardsParams;
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
  m.def("aggregate_rewards_cpu", &pyl2d::aggregate_rewards_cpu, release, py::arg("params"),
        "Weighted mean of valid scores per row (+ bystander and length terms) into params.out.");
});
