// Python bindings for the PERM reward CUDA launchers in kernels/rewards.cu.
// Compiles to nothing unless the extension is built with CUDA (PYL2D_WITH_CUDA).
#ifdef PYL2D_WITH_CUDA
#include <pybind11/pybind11.h>

#include "registry.h"
#include "rewards.h"

namespace py = pybind11;

namespace {

pyl2d::cuda::RewardArgs reward_args(uintptr_t scores, int64_t row_stride, int64_t cols, int dtype_code,
                                    uintptr_t weights, int mode, float score_max, uintptr_t bystander,
                                    float bystander_coef, uintptr_t lengths, float length_limit, float length_coef) {
  pyl2d::cuda::RewardArgs a;
  a.scores = scores;
  a.row_stride = row_stride;
  a.cols = cols;
  a.dtype_code = dtype_code;
  a.weights = weights;
  a.mode = mode;
  a.score_max = score_max;
  a.bystander = bystander;
  a.bystander_coef = bystander_coef;
  a.lengths = lengths;
  a.length_limit = length_limit;
  a.length_coef = length_coef;
  return a;
}

}  // namespace

PYL2D_REGISTER_BINDINGS(rewards_cuda, [](py::module_& m) {
  const auto release = py::call_guard<py::gil_scoped_release>();
  m.def(
      "aggregate_rewards_cuda",
      [](uintptr_t scores, int64_t rows, int64_t cols, int64_t row_stride, int dtype_code, uintptr_t weights, int mode,
         float score_max, uintptr_t bystander, float bystander_coef, uintptr_t lengths, float length_limit,
         float length_coef, uintptr_t out, uintptr_t stream) {
        pyl2d::cuda::aggregate_rewards(reward_args(scores, row_stride, cols, dtype_code, weights, mode, score_max,
                                                   bystander, bystander_coef, lengths, length_limit, length_coef),
                                       rows, out, stream);
      },
      release, "Aggregated reward per row (see kernels/rewards.h). Internal.");
  m.def(
      "group_advantages_cuda",
      [](uintptr_t scores, int64_t cols, int64_t row_stride, int dtype_code, uintptr_t weights, int mode,
         float score_max, uintptr_t bystander, float bystander_coef, uintptr_t lengths, float length_limit,
         float length_coef, bool from_scores, uintptr_t rewards, uintptr_t order, uintptr_t offsets, int64_t groups,
         int64_t largest_group, float eps, int scale, bool impute, float batch_std, uintptr_t adv,
         uintptr_t rewards_out, uintptr_t stream) {
        pyl2d::cuda::group_advantages(reward_args(scores, row_stride, cols, dtype_code, weights, mode, score_max,
                                                  bystander, bystander_coef, lengths, length_limit, length_coef),
                                      from_scores, rewards, order, offsets, groups, largest_group, eps, scale, impute,
                                      batch_std, adv, rewards_out, stream);
      },
      release, "GRPO advantages per group, optionally aggregating the scores (see kernels/rewards.h). Internal.");
  m.def("score_from_hidden_cuda", &pyl2d::cuda::score_from_hidden, release,
        "Expected score over the score tokens' LM-head rows (see kernels/rewards.h). Internal.");
});
#endif  // PYL2D_WITH_CUDA
