// CPU kernel for score_from_hidden: the expected score over a few LM-head rows (softmax over
// the score tokens' logits). Tensors arrive as raw pointers (see pyl2d/_ext.py); outputs are
// torch's.
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

// Threads only pay off past about a millisecond of work: waking an OpenMP team costs
// microseconds on an idle machine and far more on a loaded one.
constexpr int64_t kParallelMacs = int64_t(1) << 22;

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

// score_from_hidden's named arguments (pyl2d/ops/score_from_hidden/cpu.py; bound below).
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

PYL2D_REGISTER_BINDINGS(score_from_hidden_cpu, [](py::module_& m) {
  const auto release = py::call_guard<py::gil_scoped_release>();
  using pyl2d::ScoreFromHiddenParams;
  pyl2d::bind_params<ScoreFromHiddenParams>(m, "ScoreFromHiddenParams", "Named arguments of score_from_hidden_cpu.")
      .def_readwrite("hidden", &ScoreFromHiddenParams::hidden)
      .def_readwrite("lm_head_weight", &ScoreFromHiddenParams::lm_head_weight)
      .def_readwrite("score_token_ids", &ScoreFromHiddenParams::score_token_ids)
      .def_readwrite("score_values", &ScoreFromHiddenParams::score_values)
      .def_readwrite("out", &ScoreFromHiddenParams::out);
  m.def("score_from_hidden_cpu", &pyl2d::score_from_hidden_cpu, release, py::arg("params"),
        "Expected score over the score tokens' LM-head rows, into params.out.");
});
