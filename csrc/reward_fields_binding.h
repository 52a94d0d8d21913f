// The aggregation fields (kernels/reward_fields.h) on the params classes of the reward CUDA
// entry points that derive from them (aggregate_rewards_cuda, group_advantages_cuda).
// Include only under PYL2D_WITH_CUDA.
#pragma once
#include <pybind11/pybind11.h>

#include "reward_fields.h"

namespace pyl2d {

// The aggregation fields (pyl2d::cuda::RewardFields) of a params class deriving from it.
template <typename Params>
inline pybind11::class_<Params>& reward_fields(pybind11::class_<Params>& c) {
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

}  // namespace pyl2d
