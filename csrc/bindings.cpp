// pyl2d._C: the compiled extension. Op files register their own functions via
// PYL2D_REGISTER_BINDINGS; this file only creates the module and reports build facts.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "codes.h"
#include "native_args.h"
#include "registry.h"
#include "tensor_arg.h"

namespace py = pybind11;

namespace {

// The compiled codes (codes.h, tensor_arg.h) by name, for tests/test_codes.py to check
// against pyl2d/_codes.py.
py::dict code_tables() {
  namespace c = pyl2d::codes;
  py::dict metric, pool_mode, reward_mode, advantage_scale, dtype, out;
  metric["ip"] = int(c::kIP), metric["cosine"] = int(c::kCosine), metric["l2"] = int(c::kL2);
  pool_mode["last"] = int(c::kPoolLast), pool_mode["mean"] = int(c::kPoolMean);
  reward_mode["mean"] = int(c::kRewardMean), reward_mode["harmonic"] = int(c::kRewardHarmonic);
  reward_mode["geometric"] = int(c::kRewardGeometric);
  advantage_scale["none"] = int(c::kScaleNone), advantage_scale["group"] = int(c::kScaleGroup);
  advantage_scale["batch"] = int(c::kScaleBatch);
  for (int i = 0; i < pyl2d::kDTypeCount; ++i) dtype[pyl2d::dtype_name(static_cast<pyl2d::DType>(i))] = i;
  out["metric"] = metric, out["pool_mode"] = pool_mode, out["reward_mode"] = reward_mode;
  out["advantage_scale"] = advantage_scale, out["dtype"] = dtype;
  out["counts"] = py::dict(py::arg("metric") = int(c::kMetricCount), py::arg("pool_mode") = int(c::kPoolModeCount),
                           py::arg("reward_mode") = int(c::kRewardModeCount),
                           py::arg("advantage_scale") = int(c::kAdvantageScaleCount),
                           py::arg("dtype") = pyl2d::kDTypeCount);
  out["norm_eps"] = c::kNormEps;
  return out;
}

}  // namespace

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
  py::class_<pyl2d::TensorArg>(m, "TensorArg", "A tensor described once: pointer, dtype code, sizes, strides.")
      .def(py::init<>())
      .def(py::init<uintptr_t, int, std::vector<int64_t>, std::vector<int64_t>>(), py::arg("ptr"), py::arg("dtype"),
           py::arg("sizes"), py::arg("strides"))
      .def_readonly("defined", &pyl2d::TensorArg::defined)
      .def_readonly("ptr", &pyl2d::TensorArg::ptr)
      .def_readonly("dtype", &pyl2d::TensorArg::dtype)
      .def_readonly("sizes", &pyl2d::TensorArg::sizes)
      .def_readonly("strides", &pyl2d::TensorArg::strides);
  m.def("codes", &code_tables, "The compiled codes and constants by name (mirrors pyl2d/_codes.py).");
  for (auto& entry : pyl2d::binding_registry()) entry.second(m);
}
