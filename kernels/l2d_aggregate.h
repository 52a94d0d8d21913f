// Host launchers for the L2D aggregation kernels (segment_mean, local_topk), called from
// csrc/l2d_aggregate_cuda_bindings.cpp. Plain C++: no CUDA, pybind11 or torch types.
// Pointers are raw device addresses of tensors torch allocated (no launcher allocates);
// `stream` is the caller's cudaStream_t as an integer. Launchers validate their arguments
// (std::invalid_argument) and turn CUDA failures into std::runtime_error.
#pragma once
#include <cstdint>

namespace pyl2d {
namespace cuda {

// means[s, :] (float32 [segments, cols], contiguous) = mean of the rows of `values` listed in
// order[ends[s] - counts[s] .. ends[s]) (order, ends, counts: int64, contiguous); zero rows for
// empty segments. values: [*, cols] with element row stride `row_stride`, contiguous columns,
// float32/float16/bfloat16 (csrc/tensor_arg.h codes).
void segment_mean(uintptr_t values, int64_t cols, int64_t row_stride, int dtype_code, uintptr_t order,
                  uintptr_t ends, uintptr_t counts, int64_t segments, uintptr_t means, uintptr_t stream);

// local_topk's local scores. For query b (row of `queries`, stride q_stride) and position j
// of its m nearest memory entries sorted by item (rows [B, m] int64 memory indices,
// items [B, m] int64, group_end [B, m] int64 = one past the group when j starts one, else j):
// a group start writes the metric (0 ip, 1 cosine, 2 l2) between the query and the mean of
// memory rows rows[b, j .. group_end) to out_scores[b * out_stride + j] and the item to
// out_ids[...]; other positions write (-inf, -1). queries and memory share the dtype.
void local_scores(uintptr_t queries, int64_t batch, int64_t dim, int64_t q_stride, uintptr_t memory,
                  int64_t mem_stride, int dtype_code, uintptr_t rows, uintptr_t items, uintptr_t group_end, int64_t m,
                  int metric, uintptr_t out_scores, uintptr_t out_ids, int64_t out_stride, uintptr_t stream);

// In place on scores/ids [B, m + C] (float32 / int64, contiguous; the first m columns are the
// local groups, the rest global candidates): writes (-inf, -1) over every excluded id
// (exclude [B, E] int64, rows sorted ascending, -1 padding; or 0 when E = 0) and over every
// global candidate whose item appears in items [B, m] (rows sorted ascending).
void mask_candidates(uintptr_t scores, uintptr_t ids, int64_t batch, int64_t m, int64_t n_cand, uintptr_t items,
                     uintptr_t exclude, int64_t n_exclude, uintptr_t stream);

}  // namespace cuda
}  // namespace pyl2d
