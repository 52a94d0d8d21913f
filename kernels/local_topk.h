// Host launchers for local_topk's CUDA stages in kernels/local_topk.cu, called from
// csrc/local_topk_cuda_bindings.cpp. Plain C++: no CUDA, pybind11 or torch types. Each
// takes one parameter struct of named fields (csrc/native_args.h): tensors are TensorArgs of
// device memory torch allocated (no launcher allocates); `stream` is the caller's cudaStream_t
// as an integer. Launchers validate their fields by name before any CUDA call
// (std::invalid_argument) and turn CUDA failures into std::runtime_error.
#pragma once
#include <cstdint>

#include "native_args.h"

namespace pyl2d {
namespace cuda {

// local_topk's local scores. For query b and position j of its m nearest memory entries
// sorted by item (rows: memory indices, items, group_end: one past the group when j starts
// one, else j; each [B, m] int64, contiguous): a group start writes the metric between the
// query and the mean of memory rows rows[b, j .. group_end) to out_scores[b, j] and the item
// to out_ids[b, j]; other positions write (-inf, -1).
struct LocalScoresParams {
  TensorArg queries;     // [B, D] float32/float16/bfloat16, unit inner stride
  TensorArg memory;      // [M, D] queries' dtype, unit inner stride
  TensorArg rows, items, group_end;  // [B, m] int64, contiguous
  int metric = 0;        // pyl2d._codes.METRICS
  TensorArg out_scores;  // [B, >= m] float32, unit inner stride, first m columns written
  TensorArg out_ids;     // int64, same sizes and strides as out_scores
  uintptr_t stream = 0;
};
void local_scores(const LocalScoresParams& p);

// In place on scores / ids [B, m + C] (the first m columns are the local groups, the rest
// global candidates): writes (-inf, -1) over every excluded id and over every global
// candidate whose item appears in `items`.
struct MaskCandidatesParams {
  TensorArg scores;   // [B, m + C] float32, contiguous, updated
  TensorArg ids;      // [B, m + C] int64, contiguous, updated
  TensorArg items;    // [B, m] int64, contiguous, rows ascending
  TensorArg exclude;  // optional [B, E] int64, contiguous, rows ascending, -1 padding
  uintptr_t stream = 0;
};
void mask_candidates(const MaskCandidatesParams& p);

}  // namespace cuda
}  // namespace pyl2d
