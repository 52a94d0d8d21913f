// Python bindings for the PERM reward CUDA launchers in kernels/rewards.cu: each entry point
// takes one parameter struct of named fields (kernels/rewards.h).
// Compiles to nothing unless the extension is built with CUDA (PYL2D_WITH_CUDA).
#ifdef PYL2D_WITH_CUDA
#include <pybind11/pybind11.h>

#include "registry.h"
#include "rewards.h"

namespace py = pybind11;

namespace {

// The aggregation fields (pyl2d::cuda::RewardFields) of a params class deriving from it.
template <typename Params>
py::class_<Params>& reward_fields(py::class_<Params>& c) {
  using F = pyl2d::cuda::RewardFields;
  return c.def_readwrite("scores", &F::scores)
      .def_readwrite("weights", &F::weights)
      .def_readwrite("mode", &F::mode)
      .def_readwrite("score_max", &F::score_max)
      .def_readwrite("bystander", &F::bystander)
      .def_readwrite("bystander_coef", &F::bystander_coef)
      .def_readwrite("lengths", &F::lengths)
      .def_readwrite("length_limit", &F::length_limit)
      .def_readwrite("length_coef", &F::length_coef);
}

}  // namespace

PYL2D_REGISTER_BINDINGS(rewards_cuda, [](py::module_& m) {
  using pyl2d::cuda::AggregateRewardsCudaParams;
  using pyl2d::cuda::GroupAdvantagesCudaParams;
  using pyl2d::cuda::ScoreFromHiddenCudaParams;
  const auto release = py::call_guard<py::gil_scoped_release>();

  auto agg = pyl2d::bind_params<AggregateRewardsCudaParams>(m, "AggregateRewardsCudaParams",
                                                            "Named arguments of aggregate_rewards_cuda.");
  reward_fields(agg)
      .def_readwrite("out", &AggregateRewardsCudaParams::out)
      .def_readwrite("stream", &AggregateRewardsCudaParams::stream);
  m.def("aggregate_rewards_cuda", &pyl2d::cuda::aggregate_rewards, release, py::arg("params"),
        "Aggregated reward per row (see kernels/rewards.h). Internal.");

  auto adv = pyl2d::bind_params<GroupAdvantagesCudaParams>(m, "GroupAdvantagesCudaParams",
                                                           "Named arguments of group_advantages_cuda.");
  reward_fields(adv)
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
        "GRPO advantages per group, optionally aggregating the scores (see kernels/rewards.h). Internal.");

  pyl2d::bind_params<ScoreFromHiddenCudaParams>(m, "ScoreFromHiddenCudaParams",
                                                "Named arguments of score_from_hidden_cuda.")
      .def_readwrite("hidden", &ScoreFromHiddenCudaParams::hidden)
      .def_readwrite("weight", &ScoreFromHiddenCudaParams::weight)
      .def_readwrite("ids", &ScoreFromHiddenCudaParams::ids)
      .def_readwrite("values", &ScoreFromHiddenCudaParams::values)
      .def_readwrite("out", &ScoreFromHiddenCudaParams::out)
      .def_readwrite("stream", &ScoreFromHiddenCudaParams::stream);
  m.def("score_from_hidden_cuda", &pyl2d::cuda::score_from_hidden, release, py::arg("params"),
        "Expected score over the score tokens' LM-head rows (see kernels/rewards.h). Internal.");
});
#endif  // PYL2D_WITH_CUDA
