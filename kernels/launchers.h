// Host launchers for the CUDA kernels (plain C++: no CUDA, pybind11 or torch types), called
// from csrc/score_topk_cuda_bindings.cpp. Pointers are raw device addresses of tensors that
// torch allocated; `stream` is the caller's cudaStream_t as an integer. Every launcher
// validates its arguments (std::invalid_argument) and turns CUDA failures into
// std::runtime_error; none allocates device memory.
#pragma once
#include <cstdint>

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
// rows of length ws_ld >= n_splits * k; unused slots are (-inf, -1).
// Query q's row is q_base + q_offsets[q] (element offsets, int64, on the device), so strided
// queries and rows picked out of a [B, T, D] hidden tensor need no copy. Items are rows of
// `items` with element stride item_stride. Both have contiguous columns. q_vec / x_vec say
// that the base pointer is 16-byte aligned and every row offset a multiple of 16 bytes.
// metric: 0 = ip, 1 = cosine, 2 = l2; q_norms [B] and x_norms [N] (float32) are required for
// cosine and l2. exclude: [B, E] int64, each row sorted ascending (-1 padding allowed), or 0.
// Split s covers items [s * tiles_per_split * tile_items, ...).
void score_topk_stage1(uintptr_t q_base, uintptr_t q_offsets, int64_t batch, bool q_vec, uintptr_t items,
                       int64_t n_items, int64_t dim, int64_t item_stride, bool x_vec, int dtype_code, int metric,
                       uintptr_t q_norms, uintptr_t x_norms, uintptr_t exclude, int64_t n_exclude, int64_t k,
                       int64_t tiles_per_split, int64_t n_splits, uintptr_t ws_scores, uintptr_t ws_ids,
                       int64_t ws_ld, uintptr_t stream);

// out[r] = float32 L2 norm of row r of x (rows x dim, element row stride, contiguous columns),
// or its sum of squares when `squared` (the l2 term of score_topk).
void row_norms(uintptr_t x, int64_t rows, int64_t dim, int64_t stride, int dtype_code, bool squared, uintptr_t out,
               uintptr_t stream);

// pool_hidden: hidden [B, T, D] (element strides s0, s1, contiguous columns) -> out [B, D] in
// the hidden dtype, through a float32 workspace pooled [B, D] (contiguous).
// mode 0 = last: row b takes token last_index[b] (int64 [B]); mode 1 = mean over tokens with
// real[b, t] != 0 (uint8 [B, T], contiguous; every row has at least one real token).
// normalize: divide each row by max(L2 norm, 1e-12) before rounding to the hidden dtype.
void pool_hidden(uintptr_t hidden, int64_t batch, int64_t tokens, int64_t dim, int64_t stride0, int64_t stride1,
                 int dtype_code, int mode, uintptr_t last_index, uintptr_t real, bool normalize, uintptr_t pooled,
                 uintptr_t out, uintptr_t stream);

}  // namespace cuda
}  // namespace pyl2d
