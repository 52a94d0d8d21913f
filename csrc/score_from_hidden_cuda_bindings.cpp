// Python bindings for score_from_hidden's CUDA launcher in kernels/score_from_hidden.cu: one entry
// point taking one parameter struct of named fields (kernels/score_from_hidden.h).
// Compiles to nothing unless the extension is built with CUDA (PYL2D_WITH_CUDA).
#ifdef PYL2D_WITH_CUDA
#include <pybind11/pybind11.h>

#include "registry.h"
#include "score_from_hidden.h"

namespace py = pybind11;

PYL2D_REGISTER_BINDINGS(score_from_hidden_cuda, [](py::module_& m) {
  using pyl2d::cuda::ScoreFromHiddenCudaParams;
  const auto release = py::call_guard<py::gil_scoped_release>();

  pyl2d::bind_params<ScoreFromHiddenCudaParams>(m, "ScoreFromHiddenCudaParams",
                                                "Named arguments of score_from_hidden_cuda.")
      .def_readwrite("hidden", &ScoreFromHiddenCudaParams::hidden)
      .def_readwrite("weight", &ScoreFromHiddenCudaParams::weight)
      .def_readwrite("ids", &ScoreFromHiddenCudaParams::ids)
      .def_readwrite("values", &ScoreFromHiddenCudaParams::values)
      .def_readwrite("out", &ScoreFromHiddenCudaParams::out)
      .def_readwrite("stream", &ScoreFromHiddenCudaParams::stream);
  m.def("score_from_hidden_cuda", &pyl2d::cuda::score_from_hidden, release, py::arg("params"),
        "Expected score over the score tokens' LM-head rows (see kernels/score_from_hidden.h). Internal.");
});
#endif  // PYL2D_WITH_CUDA
