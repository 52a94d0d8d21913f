// Python bindings for group_advantages' CUDA launcher in kernels/group_advantages.cu (plain, and
// fused with the aggregation for rewards_and_advantages): one entry point taking one parameter
// struct of named fields (kernels/group_advantages.h).
// Compiles to nothing unless the extension is built with CUDA (PYL2D_WITH_CUDA).
#ifdef PYL2D_WITH_CUDA
#include <pybind11/pybind11.h>

#include "group_advantages.h"
#include "registry.h"
#include "reward_fields_binding.h"

namespace py = pybind11;

PYL2D_REGISTER_BINDINGS(group_advantages_cuda, [](py::module_& m) {
  using pyl2d::cuda::GroupAdvantagesCudaParams;
  const auto release = py::call_guard<py::gil_scoped_release>();

  auto adv = pyl2d::bind_params<GroupAdvantagesCudaParams>(m, "GroupAdvantagesCudaParams",
                                                           "Named arguments of group_advantages_cuda.");
  pyl2d::reward_fields(adv)
      .def_readwrite("rewards", &GroupAdvantagesCudaParams::rewards)
      .def_readwrite("order", &GroupAdvantagesCudaParams::order)
      .def_readwrite("offsets", &GroupAdvantagesCudaParams::offsets)
      .def_readwrite("largest_group", &GroupAdvantagesCudaParams::largest_group)
      .def_readwrite("eps", &GroupAdvantagesCudaParams::eps)
      .def_readwrite("scale", &GroupAdvantagesCudaParams::scale)
      .def_readwrite("impute", &GroupAdvantagesCudaParams::impute)
      .def_readwrite("batch_std", &GroupAdvantagesCudaParams::batch_std)
      .def_readwrite("adv", &GroupAdvantagesCudaParams::adv)
      .def_readwrite("rewards_out", &GroupAdvantagesCudaParams::rewards_out)
      .def_readwrite("stream", &GroupAdvantagesCudaParams::stream);
  m.def("group_advantages_cuda", &pyl2d::cuda::group_advantages, release, py::arg("params"),
        "GRPO advantages per group, optionally aggregating the scores (see kernels/group_advantages.h). Internal.");
});
#endif  // PYL2D_WITH_CUDA
