// Python bindings for aggregate_rewards' CUDA launcher in kernels/aggregate_rewards.cu: one entry
// point taking one parameter struct of named fields (kernels/aggregate_rewards.h).
// Compiles to nothing unless the extension is built with CUDA (PYL2D_WITH_CUDA).
#ifdef PYL2D_WITH_CUDA
#include <pybind11/pybind11.h>

#include "aggregate_rewards.h"
#include "registry.h"
#include "reward_fields_binding.h"

namespace py = pybind11;

PYL2D_REGISTER_BINDINGS(aggregate_rewards_cuda, [](py::module_& m) {
  using pyl2d::cuda::AggregateRewardsCudaParams;
  const auto release = py::call_guard<py::gil_scoped_release>();

  auto agg = pyl2d::bind_params<AggregateRewardsCudaParams>(m, "AggregateRewardsCudaParams",
                                                            "Named arguments of aggregate_rewards_cuda.");
  pyl2d::reward_fields(agg)
      .def_readwrite("out", &AggregateRewardsCudaParams::out)
      .def_readwrite("stream", &AggregateRewardsCudaParams::stream);
  m.def("aggregate_rewards_cuda", &pyl2d::cuda::aggregate_rewards, release, py::arg("params"),
        "Aggregated reward per row (see kernels/aggregate_rewards.h). Internal.");
});
#endif  // PYL2D_WITH_CUDA
