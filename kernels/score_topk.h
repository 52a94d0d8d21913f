// Host launchers for score_topk's CUDA kernels in kernels/score_topk.cu (plain C++: no CUDA,
// pybind11 or torch types), called from csrc/score_topk_cuda_bindings.cpp. Each takes one
// parameter struct of named fields (csrc/native_args.h): tensors are TensorArgs of device
// memory torch allocated; `stream` is the caller's cudaStream_t as an integer. Every launcher
// validates its fields by name before any CUDA call (std::invalid_argument) and turns CUDA
// failures into std::runtime_error; none allocates device memory.
#pragma once
#include <cstdint>

#include "native_args.h"

namespace pyl2d {
namespace cuda {

// Largest k the fused selection kernel keeps per (query, item split); larger k must use a
// fallback on the Python side.
int score_topk_max_k();
// Item rows per tile: item splits are whole multiples of it.
int score_topk_tile_items();
// Queries per thread block that score_topk_stage1 will use for this dtype, k and batch on the
// current device (64 or 128; for planning the item splits).
int score_topk_block_queries(int dtype_code, int64_t k, int64_t batch);

// Stage 1 of score_topk: for every query and every split of the items, the k best admissible
// (not excluded) items of that split, written unsorted to
//   ws_scores[q, split * k + j] (float32) and ws_ids[q, split * k + j] (int64),
// unused slots are (-inf, -1). Query q's row is q_base's storage at element offset q_offsets[q]
// (int64 [B], on the device), so strided queries and rows picked out of a [B, T, D] hidden
// tensor need no copy. Split s covers items [s * tiles_per_split * tile_items, ...).
struct ScoreTopkStage1Params {
  TensorArg q_base;     // the tensor the query rows are read from: items' dtype, last dim D, unit inner stride
  TensorArg q_offsets;  // [B] int64 element offsets of the query rows into q_base
  bool q_vec = false;   // q_base 16-byte aligned and every offset a multiple of 16 bytes
  TensorArg items;      // [N, D] float32/float16/bfloat16, unit inner stride
  bool x_vec = false;   // items 16-byte aligned with a row stride of a multiple of 16 bytes
  int metric = 0;       // pyl2d._codes.METRICS
  TensorArg q_norms;    // [B] float32 norm terms (|q| cosine, |q|^2 l2); required unless ip
  TensorArg x_norms;    // [N] float32 norm terms of the items; required unless ip
  TensorArg exclude;    // optional [B, E] int64, contiguous, rows ascending, -1 padding
  int64_t k = 0;
  int64_t tiles_per_split = 0, n_splits = 0;
  TensorArg ws_scores;  // [B, >= n_splits * k] float32, unit inner stride, written
  TensorArg ws_ids;     // int64, same sizes and strides as ws_scores, written
  uintptr_t stream = 0;  // cudaStream_t
};
void score_topk_stage1(const ScoreTopkStage1Params& p);

// out[r] = float32 L2 norm of row r of x, or its sum of squares when `squared` (the l2 term
// of score_topk).
struct RowNormsParams {
  TensorArg x;    // [rows, dim] float32/float16/bfloat16, unit inner stride
  bool squared = false;
  TensorArg out;  // [rows] float32, written
  uintptr_t stream = 0;
};
void row_norms(const RowNormsParams& p);

}  // namespace cuda
}  // namespace pyl2d
