// segment_mean on CPU: counting sort of the rows by segment (CSR), then each segment's
// rows summed in float32 in index order by one thread, so results are deterministic and
// no atomics are needed. Outputs and workspaces come from torch (pyl2d/cpu/segment_mean.py).
#include <cstdint>
#include <stdexcept>
#include <string>

#include <pybind11/pybind11.h>

#include "aggregate_rows.h"
#include "native_args.h"
#include "parallel.h"
#include "registry.h"
#include "tensor_arg.h"

namespace py = pybind11;

namespace pyl2d {
namespace {

template <typename Id>
void count_segments(const Id* ids, int64_t rows, int64_t segments, int64_t* counts) {
  for (int64_t s = 0; s < segments; ++s) counts[s] = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t id = static_cast<int64_t>(ids[r]);
    if (id < 0 || id >= segments)
      throw std::invalid_argument("segment_ids holds id " + std::to_string(id) + ", out of range [0, " +
                                  std::to_string(segments) + ")");
    counts[id] += 1;
  }
}

// order[] lists the rows grouped by segment (stable); ends[s] is one past segment s.
template <typename Id>
void group_rows(const Id* ids, int64_t rows, int64_t segments, const int64_t* counts, int64_t* ends,
                int64_t* order) {
  int64_t start = 0;
  for (int64_t s = 0; s < segments; ++s) { ends[s] = start; start += counts[s]; }
  for (int64_t r = 0; r < rows; ++r) order[ends[static_cast<int64_t>(ids[r])]++] = r;
}

template <typename T>
void mean_rows(const typename T::storage* values, int64_t row_stride, int64_t cols, int64_t segments,
               const int64_t* counts, const int64_t* ends, const int64_t* order, float* means, int threads) {
  constexpr int64_t kSegmentsPerTask = 16;
  parallel_ranges(segments, kSegmentsPerTask, threads, [&](int64_t s0, int64_t s1, int) {
    for (int64_t s = s0; s < s1; ++s) {
      float* out = means + s * cols;
      for (int64_t d = 0; d < cols; ++d) out[d] = 0.0f;
      const int64_t n = counts[s];
      if (n == 0) continue;
      for (int64_t j = ends[s] - n; j < ends[s]; ++j) aggregate::add_row<T>(out, values + order[j] * row_stride, cols);
      const float inv = 1.0f / static_cast<float>(n);
      for (int64_t d = 0; d < cols; ++d) out[d] *= inv;
    }
  });
}

}  // namespace

// segment_mean's named arguments (pyl2d/ops/segment_mean/cpu.py; bound below).
struct SegmentMeanParams {
  TensorArg values;       // [M, D] float32/float16/bfloat16, unit inner stride
  TensorArg segment_ids;  // [M] int32/int64 in [0, S), contiguous
  TensorArg means;        // [S, D] float32, contiguous; written
  TensorArg counts;       // [S] int64; written
  TensorArg ends;         // [S] int64 workspace
  TensorArg order;        // [M] int64 workspace
  int64_t num_threads = 0;  // torch.get_num_threads()
};

namespace {

void segment_mean_cpu(const SegmentMeanParams& a) {
  const Matrix v = as_matrix(a.values, "values");
  const int64_t rows = v.rows, cols = v.cols, row_stride = v.row_stride;
  const int values_dtype = static_cast<int>(v.dtype);
  expect(a.segment_ids, "segment_ids", 1, {DType::kInt32, DType::kInt64});
  expect_sizes(a.segment_ids, "segment_ids", {rows});
  expect_contiguous(a.segment_ids, "segment_ids");
  expect(a.means, "means", 2, {DType::kFloat32});
  const int64_t segments = a.means.size(0);
  expect_sizes(a.means, "means", {segments, cols});
  expect_contiguous(a.means, "means");
  expect_vector(a.counts, "counts", segments, DType::kInt64);
  expect_vector(a.ends, "ends", segments, DType::kInt64);
  expect_vector(a.order, "order", rows, DType::kInt64);
  const uintptr_t values = v.ptr, ids = a.segment_ids.ptr, means = a.means.ptr, counts = a.counts.ptr;
  const uintptr_t ends_ws = a.ends.ptr, order_ws = a.order.ptr;
  const int ids_dtype = a.segment_ids.dtype;
  if (rows < 0 || cols < 0 || segments < 0) throw std::invalid_argument("segment_mean_cpu: negative size");
  auto* cnt = reinterpret_cast<int64_t*>(counts);
  auto* ends = reinterpret_cast<int64_t*>(ends_ws);
  auto* order = reinterpret_cast<int64_t*>(order_ws);
  const DType id_type = dtype_from_code(ids_dtype);
  if (id_type == DType::kInt64) {
    count_segments(reinterpret_cast<const int64_t*>(ids), rows, segments, cnt);
    group_rows(reinterpret_cast<const int64_t*>(ids), rows, segments, cnt, ends, order);
  } else if (id_type == DType::kInt32) {
    count_segments(reinterpret_cast<const int32_t*>(ids), rows, segments, cnt);
    group_rows(reinterpret_cast<const int32_t*>(ids), rows, segments, cnt, ends, order);
  } else {
    throw std::invalid_argument(std::string("segment_ids must be int32 or int64, got ") + dtype_name(id_type));
  }
  aggregate::dispatch_float(values_dtype, "values", [&](auto tag) {
    using T = decltype(tag);
    mean_rows<T>(reinterpret_cast<const typename T::storage*>(values), row_stride, cols, segments, cnt, ends, order,
                 reinterpret_cast<float*>(means), resolve_threads(a.num_threads));
  });
}

}  // namespace
}  // namespace pyl2d

PYL2D_REGISTER_BINDINGS(segment_mean_cpu, [](py::module_& m) {
  using pyl2d::SegmentMeanParams;
  pyl2d::bind_params<SegmentMeanParams>(m, "SegmentMeanParams", "Named arguments of segment_mean_cpu.")
      .def_readwrite("values", &SegmentMeanParams::values)
      .def_readwrite("segment_ids", &SegmentMeanParams::segment_ids)
      .def_readwrite("means", &SegmentMeanParams::means)
      .def_readwrite("counts", &SegmentMeanParams::counts)
      .def_readwrite("ends", &SegmentMeanParams::ends)
      .def_readwrite("order", &SegmentMeanParams::order)
      .def_readwrite("num_threads", &SegmentMeanParams::num_threads);
  m.def("segment_mean_cpu", &pyl2d::segment_mean_cpu, py::call_guard<py::gil_scoped_release>(), py::arg("params"),
        "Per-segment float32 mean of rows (internal; use pyl2d.segment_mean).");
});
