// pyl2d._C: the compiled extension. Op files register their own functions via
// PYL2D_REGISTER_BINDINGS; this file only creates the module and reports build facts.
#include <pybind11/pybind11.h>

#include "registry.h"

namespace py = pybind11;

PYBIND11_MODULE(_C, m) {
  m.doc() = "pyl2d compiled kernels (CPU, and CUDA when built with it). Internal: use pyl2d.ops.";
#ifdef PYL2D_WITH_CUDA
  m.attr("with_cuda") = true;
#else
  m.attr("with_cuda") = false;
#endif
#ifdef PYL2D_WITH_OPENMP
  m.attr("with_openmp") = true;
#else
  m.attr("with_openmp") = false;
#endif
  for (auto& entry : pyl2d::binding_registry()) entry.second(m);
}
