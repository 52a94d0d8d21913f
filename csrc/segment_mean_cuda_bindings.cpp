// Python bindings for segment_mean's CUDA launcher in kernels/segment_mean.cu: one entry point
// taking one parameter struct of named fields (kernels/segment_mean.h).
// Compiles to nothing unless the extension is built with CUDA (PYL2D_WITH_CUDA).
#ifdef PYL2D_WITH_CUDA
#include <pybind11/pybind11.h>

#include "registry.h"
#include "segment_mean.h"

namespace py = pybind11;

PYL2D_REGISTER_BINDINGS(segment_mean_cuda, [](py::module_& m) {
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
        "Per-segment float32 means over a CSR row order (see kernels/segment_mean.h). Internal.");
});
#endif  // PYL2D_WITH_CUDA
