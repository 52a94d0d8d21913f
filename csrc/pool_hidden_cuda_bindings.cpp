// Python bindings for pool_hidden's CUDA launcher in kernels/pool_hidden.cu: one entry point
// taking one parameter struct of named fields (kernels/pool_hidden.h).
// Compiles to nothing unless the extension is built with CUDA (PYL2D_WITH_CUDA).
#ifdef PYL2D_WITH_CUDA
#include <pybind11/pybind11.h>

#include "pool_hidden.h"
#include "registry.h"

namespace py = pybind11;

PYL2D_REGISTER_BINDINGS(pool_hidden_cuda, [](py::module_& m) {
  using pyl2d::cuda::PoolHiddenCudaParams;
  const auto release = py::call_guard<py::gil_scoped_release>();

  pyl2d::bind_params<PoolHiddenCudaParams>(m, "PoolHiddenCudaParams", "Named arguments of pool_hidden_cuda.")
      .def_readwrite("hidden", &PoolHiddenCudaParams::hidden)
      .def_readwrite("mode", &PoolHiddenCudaParams::mode)
      .def_readwrite("last_index", &PoolHiddenCudaParams::last_index)
      .def_readwrite("real", &PoolHiddenCudaParams::real)
      .def_readwrite("normalize", &PoolHiddenCudaParams::normalize)
      .def_readwrite("pooled", &PoolHiddenCudaParams::pooled)
      .def_readwrite("out", &PoolHiddenCudaParams::out)
      .def_readwrite("stream", &PoolHiddenCudaParams::stream);
  m.def("pool_hidden_cuda", &pyl2d::cuda::pool_hidden, release, py::arg("params"),
        "pool_hidden into a float32 workspace, then normalise and round (see kernels/pool_hidden.h). Internal.");
});
#endif  // PYL2D_WITH_CUDA
