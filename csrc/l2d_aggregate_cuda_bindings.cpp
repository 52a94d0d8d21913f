// Python bindings for the L2D aggregation CUDA launchers in kernels/l2d_aggregate.cu: each
// entry point takes one parameter struct of named fields (kernels/l2d_aggregate.h).
// Compiles to nothing unless the extension is built with CUDA (PYL2D_WITH_CUDA).
#ifdef PYL2D_WITH_CUDA
#include <pybind11/pybind11.h>

#include "l2d_aggregate.h"
#include "registry.h"

namespace py = pybind11;

PYL2D_REGISTER_BINDINGS(l2d_aggregate_cuda, [](py::module_& m) {
  using pyl2d::cuda::LocalScoresParams;
  using pyl2d::cuda::MaskCandidatesParams;
  using pyl2d::cuda::SegmentMeanCudaParams;
  const auto release = py::call_guard<py::gil_scoped_release>();

  pyl2d::bind_params<SegmentMeanCudaParams>(m, "SegmentMeanCudaParams", "Named arguments of segment_mean_cuda.")
      .def_readwrite("values", &SegmentMeanCudaParams::values)
      .def_readwrite("order", &SegmentMeanCudaParams::order)
      .def_readwrite("ends", &SegmentMeanCudaParams::ends)
      .def_readwrite("counts", &SegmentMeanCudaParams::counts)
      .def_readwrite("means", &SegmentMeanCudaParams::means)
      .def_readwrite("stream", &SegmentMeanCudaParams::stream);
  m.def("segment_mean_cuda", &pyl2d::cuda::segment_mean, release, py::arg("params"),
        "Per-segment float32 means over a CSR row order (see kernels/l2d_aggregate.h). Internal.");

  pyl2d::bind_params<LocalScoresParams>(m, "LocalScoresParams", "Named arguments of local_scores_cuda.")
      .def_readwrite("queries", &LocalScoresParams::queries)
      .def_readwrite("memory", &LocalScoresParams::memory)
      .def_readwrite("rows", &LocalScoresParams::rows)
      .def_readwrite("items", &LocalScoresParams::items)
      .def_readwrite("group_end", &LocalScoresParams::group_end)
      .def_readwrite("metric", &LocalScoresParams::metric)
      .def_readwrite("out_scores", &LocalScoresParams::out_scores)
      .def_readwrite("out_ids", &LocalScoresParams::out_ids)
      .def_readwrite("stream", &LocalScoresParams::stream);
  m.def("local_scores_cuda", &pyl2d::cuda::local_scores, release, py::arg("params"),
        "local_topk: scores against per-item means of the nearest memory (see kernels/l2d_aggregate.h). Internal.");

  pyl2d::bind_params<MaskCandidatesParams>(m, "MaskCandidatesParams", "Named arguments of mask_candidates_cuda.")
      .def_readwrite("scores", &MaskCandidatesParams::scores)
      .def_readwrite("ids", &MaskCandidatesParams::ids)
      .def_readwrite("items", &MaskCandidatesParams::items)
      .def_readwrite("exclude", &MaskCandidatesParams::exclude)
      .def_readwrite("stream", &MaskCandidatesParams::stream);
  m.def("mask_candidates_cuda", &pyl2d::cuda::mask_candidates, release, py::arg("params"),
        "local_topk: drop excluded and locally replaced candidates (see kernels/l2d_aggregate.h). Internal.");
});
#endif  // PYL2D_WITH_CUDA
