// Python bindings for local_topk's CUDA launchers in kernels/local_topk.cu: each entry point
// takes one parameter struct of named fields (kernels/local_topk.h).
// Compiles to nothing unless the extension is built with CUDA (PYL2D_WITH_CUDA).
#ifdef PYL2D_WITH_CUDA
#include <pybind11/pybind11.h>

#include "local_topk.h"
#include "registry.h"

namespace py = pybind11;

PYL2D_REGISTER_BINDINGS(local_topk_cuda, [](py::module_& m) {
  using pyl2d::cuda::LocalScoresParams;
  using pyl2d::cuda::MaskCandidatesParams;
  const auto release = py::call_guard<py::gil_scoped_release>();

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
        "local_topk: scores against per-item means of the nearest memory (see kernels/local_topk.h). Internal.");

  pyl2d::bind_params<MaskCandidatesParams>(m, "MaskCandidatesParams", "Named arguments of mask_candidates_cuda.")
      .def_readwrite("scores", &MaskCandidatesParams::scores)
      .def_readwrite("ids", &MaskCandidatesParams::ids)
      .def_readwrite("items", &MaskCandidatesParams::items)
      .def_readwrite("exclude", &MaskCandidatesParams::exclude)
      .def_readwrite("stream", &MaskCandidatesParams::stream);
  m.def("mask_candidates_cuda", &pyl2d::cuda::mask_candidates, release, py::arg("params"),
        "local_topk: drop excluded and locally replaced candidates (see kernels/local_topk.h). Internal.");
});
#endif  // PYL2D_WITH_CUDA
