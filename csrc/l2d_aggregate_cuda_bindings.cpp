// Python bindings for the L2D aggregation CUDA launchers in kernels/l2d_aggregate.cu.
// Compiles to nothing unless the extension is built with CUDA (PYL2D_WITH_CUDA).
#ifdef PYL2D_WITH_CUDA
#include <pybind11/pybind11.h>

#include "l2d_aggregate.h"
#include "registry.h"

namespace py = pybind11;

PYL2D_REGISTER_BINDINGS(l2d_aggregate_cuda, [](py::module_& m) {
  const auto release = py::call_guard<py::gil_scoped_release>();
  m.def("segment_mean_cuda", &pyl2d::cuda::segment_mean, release,
        "Per-segment float32 means over a CSR row order (see kernels/l2d_aggregate.h). Internal.", py::arg("values"),
        py::arg("cols"), py::arg("row_stride"), py::arg("dtype_code"), py::arg("order"), py::arg("ends"),
        py::arg("counts"), py::arg("segments"), py::arg("means"), py::arg("stream"));
  m.def("local_scores_cuda", &pyl2d::cuda::local_scores, release,
        "local_topk: scores against per-item means of the nearest memory (see kernels/l2d_aggregate.h). Internal.",
        py::arg("queries"), py::arg("batch"), py::arg("dim"), py::arg("q_stride"), py::arg("memory"),
        py::arg("mem_stride"), py::arg("dtype_code"), py::arg("rows"), py::arg("items"), py::arg("group_end"),
        py::arg("m"), py::arg("metric"), py::arg("out_scores"), py::arg("out_ids"), py::arg("out_stride"),
        py::arg("stream"));
  m.def("mask_candidates_cuda", &pyl2d::cuda::mask_candidates, release,
        "local_topk: drop excluded and locally replaced candidates (see kernels/l2d_aggregate.h). Internal.",
        py::arg("scores"), py::arg("ids"), py::arg("batch"), py::arg("m"), py::arg("n_cand"), py::arg("items"),
        py::arg("exclude"), py::arg("n_exclude"), py::arg("stream"));
});
#endif  // PYL2D_WITH_CUDA
