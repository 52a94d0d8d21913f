// score_topk on CPU: each query's k best items by inner product, cosine or L2 without
// materialising the queries x items score matrix.
//
// Two ways to get the dot products, chosen per machine and dtype in Python
// (pyl2d/ops/score_topk/cpu.py, gemm_path):
// - own kernels: work is split into many (query block x item chunk) tasks claimed one at a
//   time by the workers (parallel.h), so a single query still uses every core and a
//   descheduled worker holds back only its current task. A task walks its chunk in
//   item tiles; per tile a kernel fills a [query block x tile] block of dot products, in
//   float32:
//   - fp32 items: register-blocked SIMD kernel (simd_dot.h) reading the rows in place;
//   - fp16/bf16, few queries: the same kernel widening item values in registers;
//   - fp16/bf16, more queries: each D chunk of the tile widened once into thread scratch;
//   - bf16 on CPUs with AMX: tile matrix multiply (amx_bf16.h).
// - vendor GEMM (float32): Python's callback fills a [B x tile] block of scores with
//   torch.mm (MKL) per item tile, and the workers select from it, query chunks in
//   parallel; only the norms, exclusion and selection are fused here.
// Item norms (cosine, l2) are computed while the tile is hot unless given. Each worker
// keeps one bounded top-k buffer per query for the whole call (topk_select.h), taking the
// few candidates that beat its threshold; the workers' buffers are merged at the end.
// Extra memory is bounded by the tile, block and k sizes (and threads x B x 2k keys),
// independent of the number of items.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "amx_bf16.h"
#include "codes.h"
#include "native_args.h"
#include "parallel.h"
#include "registry.h"
#include "simd_dot.h"
#include "tensor_arg.h"
#include "topk_select.h"

namespace py = pybind11;

namespace pyl2d {
namespace {

using codes::kNormEps;
constexpr int64_t kDirectHalfMaxQueries = 8;
// Tasks per worker (query blocks x item chunks): many small tasks keep every worker busy
// when one of them is descheduled; a task costs no extra merging (buffers are per worker).
constexpr int64_t kTasksPerThread = 64;
// Below this many multiply-adds a call runs on the calling thread: waking workers would
// cost more than they save.
constexpr int64_t kMinParallelWork = int64_t(1) << 16;

using Metric = codes::Metric;

size_t dtype_size(DType d) {
  switch (d) {
    case DType::kFloat32:
    case DType::kInt32: return 4;
    case DType::kFloat16:
    case DType::kBFloat16: return 2;
    case DType::kInt64:
    case DType::kFloat64: return 8;
    default: return 1;
  }
}

bool is_float(DType d) { return d == DType::kFloat32 || d == DType::kFloat16 || d == DType::kBFloat16; }

void check_matrix(const char* name, const Matrix& m, bool floating) {
  if (m.ptr == 0) throw std::invalid_argument(std::string(name) + " has a null data pointer");
  if (m.rows < 1 || m.cols < 1) throw std::invalid_argument(std::string(name) + " must be non-empty");
  if (m.rows > 1 && m.row_stride < 0) throw std::invalid_argument(std::string(name) + " has a negative row stride");
  if (floating && !is_float(m.dtype))
    throw std::invalid_argument(std::string(name) + " must be float32, float16 or bfloat16, got " + dtype_name(m.dtype));
}

// Read row r of a float matrix as fp32 into dst (no copy for fp32: returns the row).
const float* row_f32(const Matrix& m, int64_t r, float* dst, const simd::Kernels& K) {
  const char* base = reinterpret_cast<const char*>(m.ptr) + r * m.row_stride * static_cast<int64_t>(dtype_size(m.dtype));
  if (m.dtype == DType::kFloat32) return reinterpret_cast<const float*>(base);
  K.to_f32(base, m.dtype, m.cols, dst);
  return dst;
}

// Tile sizes: an item tile of about 1 MiB stays in L2 while a block of queries sweeps
// it; on the SIMD path D is processed in chunks so the rows a micro-kernel touches stay in
// L1. Tiles are whole multiples of 96 items (micro-kernel width 6, AMX block 32).
struct Tiling {
  bool amx = false;
  int64_t items_per_tile;
  int64_t queries_per_block;
  int64_t d_chunk;
};

Tiling choose_tiling(int64_t B, int64_t D, bool amx) {
  Tiling t;
  t.amx = amx;
  const int64_t bytes_per_item = (amx ? 2 : 4) * D;
  t.items_per_tile = std::clamp<int64_t>(((1 << 20) / bytes_per_item) / 96 * 96, 96, 480);
  // Each query block re-reads the items from memory: blocks are as large as L2 allows for
  // their D chunk (256 queries x 512 dims = 512 KiB).
  t.queries_per_block = std::min<int64_t>(B, 256);
  // AMX blocks are 32 queries wide.
  if (amx) t.queries_per_block = (std::min<int64_t>(B, 256) + amx::kQueries - 1) / amx::kQueries * amx::kQueries;
  // Few queries: memory-bound, so each item row is streamed once, whole. Many: chunks keep
  // the query block's slice in L2 and the micro-kernel's item rows in L1.
  t.d_chunk = (D <= 768 || B <= kDirectHalfMaxQueries) ? D : 512;
  return t;
}

struct Problem {
  Matrix queries, items;
  int64_t k = 1;
  Metric metric = Metric::kIP;
  const float* item_norms = nullptr;  // may be null: computed per tile
  // Per query, a sorted list of excluded ids: excl_ids[excl_begin[b] .. excl_begin[b+1]).
  std::vector<int64_t> excl_ids;
  std::vector<int64_t> excl_begin;
};

bool has_exclusions(const Problem& p, int64_t b) { return p.excl_begin[b] != p.excl_begin[b + 1]; }

bool excluded(const Problem& p, int64_t b, int64_t id) {
  const int64_t lo = p.excl_begin[b], hi = p.excl_begin[b + 1];
  if (lo == hi) return false;
  return std::binary_search(p.excl_ids.begin() + lo, p.excl_ids.begin() + hi, id);
}

void build_exclusions(Problem& p, uintptr_t ptr, int64_t rows, int64_t cols, int64_t row_stride, DType dtype) {
  const int64_t B = p.queries.rows, N = p.items.rows;
  p.excl_begin.assign(static_cast<size_t>(B + 1), 0);
  if (ptr == 0 || cols == 0) return;
  if (rows != B) throw std::invalid_argument("exclude has " + std::to_string(rows) + " rows but there are " +
                                             std::to_string(B) + " queries");
  if (dtype != DType::kInt32 && dtype != DType::kInt64)
    throw std::invalid_argument(std::string("exclude must be int32 or int64, got ") + dtype_name(dtype));
  p.excl_ids.reserve(static_cast<size_t>(B * cols));
  for (int64_t b = 0; b < B; ++b) {
    const size_t start = p.excl_ids.size();
    for (int64_t e = 0; e < cols; ++e) {
      const int64_t off = b * row_stride + e;
      const int64_t id = dtype == DType::kInt32 ? reinterpret_cast<const int32_t*>(ptr)[off]
                                                : reinterpret_cast<const int64_t*>(ptr)[off];
      if (id == -1) continue;
      if (id < 0 || id >= N)
        throw std::invalid_argument("exclude holds id " + std::to_string(id) + ", out of range [0, " +
                                    std::to_string(N) + ") (-1 marks padding)");
      p.excl_ids.push_back(id);
    }
    std::sort(p.excl_ids.begin() + start, p.excl_ids.end());
    p.excl_ids.erase(std::unique(p.excl_ids.begin() + start, p.excl_ids.end()), p.excl_ids.end());
    p.excl_begin[b + 1] = static_cast<int64_t>(p.excl_ids.size());
  }
}

// Queries in the forms the kernels read: fp32 rows (SIMD path) or packed bf16 (AMX path).
struct QueryData {
  const float* qf = nullptr;  // [B x ldq] fp32
  int64_t ldq = 0;
  const float* norm = nullptr;        // [B] norm terms (norm_term: |q| for cosine, |q|^2 for l2)
  const uint16_t* packed = nullptr;   // AMX: [B rounded up to 32 x dpad] in B-tile layout
  int64_t dpad = 0;
};

// Everything one thread owns; sized by the tiling, never by N.
struct ThreadScratch {
  std::vector<float> tile;      // converted item tile [items_per_tile x ld]
  std::vector<uint16_t> stage;  // AMX: edge groups of the tile packed into A-tile layout
  std::vector<amx::ItemTiles> groups;  // AMX: where each 32-item group's tiles are
  std::vector<float> row;       // one fp32 item row (AMX path norms)
  std::vector<float> norms;     // norm terms of the tile's items (norm_term)
  std::vector<float> scores;    // dots of the block: [query][item] (SIMD) or [item][query] (AMX)
  std::vector<float> thresholds;  // per query of the block: its top-k threshold (AMX selection)
};

// AMX path: dots of queries [q0, q0+nq) against items [j0, j0+nt) into S[item * lds + query].
void amx_dots(const Problem& p, const QueryData& qd, int64_t q0, int64_t nq, int64_t j0, int nt, ThreadScratch& ws,
              float* S, int64_t lds) {
  const int64_t D = p.items.cols;
  const uint16_t* items = reinterpret_cast<const uint16_t*>(p.items.ptr);
  const int64_t group_elems = amx::kItems * qd.dpad;
  const int groups = (nt + amx::kItems - 1) / amx::kItems;
  // Whole groups of 32 rows are read in place; only edge groups (fewer rows, or D not a
  // multiple of 32) are packed into zero-padded tiles so every tile load stays inside the
  // items. Packing every group (contiguous tiles, no 4 KiB-stride set aliasing) measured
  // slower at every benchmark size: the extra pass over the tile costs more.
  ws.stage.resize(static_cast<size_t>(groups * group_elems));
  std::vector<amx::ItemTiles>& tiles = ws.groups;
  tiles.resize(static_cast<size_t>(groups));
  for (int g = 0; g < groups; ++g) {
    const int jg = g * amx::kItems;
    const int rows = std::min(amx::kItems, nt - jg);
    const uint16_t* x = items + (j0 + jg) * p.items.row_stride;
    if (rows == amx::kItems && D == qd.dpad) {
      tiles[g] = {x, x + 16 * p.items.row_stride, 1, p.items.row_stride * 2};
    } else {
      uint16_t* xp = ws.stage.data() + g * group_elems;
      amx::pack_items(x, p.items.row_stride, rows, D, qd.dpad, xp);
      tiles[g] = {xp, xp + 512, amx::kItems, 64};
    }
  }
  // D in chunks: 32 items x 256 dims (16 KiB) stay in L1 while the query groups stream by.
  constexpr int64_t kChunk = 256;
  for (int g = 0; g < groups; ++g)
    for (int64_t d0 = 0; d0 < qd.dpad; d0 += kChunk) {
      const int64_t len = std::min(kChunk, qd.dpad - d0);
      const amx::ItemTiles& t = tiles[g];
      const amx::ItemTiles at = {t.a0 + d0 * t.step, t.a1 + d0 * t.step, t.step, t.stride};
      for (int64_t ig = 0; ig < nq; ig += amx::kQueries)
        amx::block(at, qd.packed + (q0 + ig) * qd.dpad + d0 * 16, qd.dpad, len, S + g * amx::kItems * lds + ig, lds,
                   d0 > 0);
    }
}

// What a row's norm contributes to its scores: |x| for cosine, |x|^2 for l2. The l2 term
// stays a sum of squares (never a square root squared again), so on exact inputs equal
// distances give bit-equal scores and tie by id rather than by rounding.
inline float norm_term(Metric metric, float sumsq) { return metric == Metric::kL2 ? sumsq : std::sqrt(sumsq); }
inline float given_norm_term(Metric metric, float norm) { return metric == Metric::kL2 ? norm * norm : norm; }

// Metric from a dot product and the two rows' norm terms (norm_term): cosine and l2 use
// the same expansion as the reference.
inline float metric_score(Metric metric, float dot, float qterm, float xterm) {
  if (metric == Metric::kCosine) return dot / (std::max(qterm, kNormEps) * std::max(xterm, kNormEps));
  if (metric == Metric::kL2) return -std::sqrt(std::max(qterm - 2.0f * dot + xterm, 0.0f));
  return dot;
}

// Selection from S[query * lds + item] (SIMD and vendor layout): one query's row at a
// time into its buffer tops[i]; xterm holds the tile's item norm terms (l2, cosine).
void select_by_query(const Problem& p, const simd::Kernels& K, const QueryData& qd, int64_t q0, int64_t nq,
                     int64_t j0, int nt, float* S, int64_t lds, const float* xterm, TopKBuffer* tops) {
  for (int64_t i = 0; i < nq; ++i) {
    float* srow = S + i * lds;
    const int64_t b = q0 + i;
    if (p.metric != Metric::kIP)
      for (int j = 0; j < nt; ++j) srow[j] = metric_score(p.metric, srow[j], qd.norm[b], xterm[j]);
    TopKBuffer& top = tops[i];
    if (top.dense() && !has_exclusions(p, b)) {
      top.offer(srow, 1, nt, j0);
      continue;
    }
    for (int64_t j = K.next_at_least(srow, 0, nt, top.threshold()); j < nt;
         j = K.next_at_least(srow, j + 1, nt, top.threshold())) {
      const int64_t id = j0 + j;
      if (top.admits(srow[j], id) && !excluded(p, b, id)) top.push(srow[j], id);
    }
    top.saw(nt);
  }
}

// Selection from S[item * lds + query] (AMX layout). Queries whose buffer is dense (a
// large k early on, no exclusions) offer their strided column at once, without a branch
// per score; the others go one item's column of queries at a time, against a contiguous
// array of (possibly stale, hence lower) query thresholds, where +inf marks a query the
// first pass already took.
void select_by_item(const Problem& p, const QueryData& qd, int64_t q0, int64_t nq, int64_t j0, int nt, float* S,
                    int64_t lds, ThreadScratch& ws, TopKBuffer* tops) {
  if (p.metric != Metric::kIP)
    for (int j = 0; j < nt; ++j) {
      float* col = S + j * lds;
      for (int64_t i = 0; i < nq; ++i) col[i] = metric_score(p.metric, col[i], qd.norm[q0 + i], ws.norms[j]);
    }
  float* thr = ws.thresholds.data();
  bool any_sparse = false;
  for (int64_t i = 0; i < nq; ++i) {
    TopKBuffer& top = tops[i];
    if (top.dense() && !has_exclusions(p, q0 + i)) {
      top.offer(S + i, lds, nt, j0);
      thr[i] = std::numeric_limits<float>::infinity();
    } else {
      thr[i] = top.threshold();
      any_sparse = true;
    }
  }
  if (!any_sparse) return;
  for (int j = 0; j < nt; ++j) {
    const float* col = S + j * lds;
    const int64_t id = j0 + j;
    for (int64_t i = 0; i < nq; ++i) {
      if (!(col[i] >= thr[i])) continue;  // also skips the queries offered above (+inf)
      TopKBuffer& top = tops[i];
      if (top.admits(col[i], id) && !excluded(p, q0 + i, id)) {
        top.push(col[i], id);
        thr[i] = top.threshold();
      }
    }
  }
  for (int64_t i = 0; i < nq; ++i)
    if (thr[i] != std::numeric_limits<float>::infinity()) tops[i].saw(nt);
}

// One task of the own-kernel path: queries [q0, q0+nq) against items [i0, i1), into the
// worker's buffers tops[0..nq) of those queries.
void run_task(const Problem& p, const simd::Kernels& K, const Tiling& t, const QueryData& qd, int64_t q0, int64_t nq,
              int64_t i0, int64_t i1, ThreadScratch& ws, TopKBuffer* tops) {
  const int64_t D = p.items.cols;
  const bool half = p.items.dtype != DType::kFloat32;
  // Small query blocks read fp16/bf16 items directly (widened in registers): a converted
  // copy would cost more than it saves. Larger blocks widen each D chunk of the tile once
  // and reuse it for every query of the block.
  const bool direct16 = !t.amx && half && K.dots16 != nullptr && nq <= kDirectHalfMaxQueries;
  const bool convert = !t.amx && !direct16 && half;
  const bool need_norms = p.metric != Metric::kIP;
  if (convert) ws.tile.resize(static_cast<size_t>(t.items_per_tile * (t.d_chunk + 16)));
  ws.norms.resize(static_cast<size_t>(t.items_per_tile));
  ws.scores.resize(static_cast<size_t>(t.queries_per_block * t.items_per_tile));
  if (t.amx || direct16) ws.row.resize(static_cast<size_t>(D));
  ws.thresholds.resize(static_cast<size_t>(nq));

  // Element strides of S for (query, item).
  const int64_t s_query = t.amx ? 1 : t.items_per_tile;
  const int64_t s_item = t.amx ? t.queries_per_block : 1;
  const size_t isz = dtype_size(p.items.dtype);
  for (int64_t j0 = i0; j0 < i1; j0 += t.items_per_tile) {
    const int nt = static_cast<int>(std::min(t.items_per_tile, i1 - j0));
    float* S = ws.scores.data();
    if (t.amx || direct16) {
      if (need_norms && !p.item_norms) {
        for (int j = 0; j < nt; ++j) {
          const char* src = reinterpret_cast<const char*>(p.items.ptr) + (j0 + j) * p.items.row_stride * int64_t(isz);
          K.to_f32(src, p.items.dtype, D, ws.row.data());
          ws.norms[j] = norm_term(p.metric, K.sumsq(ws.row.data(), D));
        }
      }
      if (t.amx) {
        amx_dots(p, qd, q0, nq, j0, nt, ws, S, s_item);
      } else {
        const uint16_t* xt = reinterpret_cast<const uint16_t*>(p.items.ptr) + j0 * p.items.row_stride;
        for (int64_t d0 = 0; d0 < D; d0 += t.d_chunk) {
          const int64_t len = std::min(t.d_chunk, D - d0);
          K.dots16(qd.qf + q0 * qd.ldq + d0, qd.ldq, static_cast<int>(nq), xt + d0, p.items.dtype, p.items.row_stride,
                   nt, len, S, s_query, d0 > 0);
        }
      }
    } else {
      const bool own_norms = need_norms && !p.item_norms;
      if (convert) {
        // fp16/bf16: one D chunk of the tile at a time is widened into scratch (so the
        // scratch and the query block's chunk share L2), squared norms accumulated while
        // each converted row is hot, then the dots for that chunk.
        const int64_t ldc = t.d_chunk + 16;  // padded so rows do not alias in the cache
        if (own_norms) std::fill(ws.norms.begin(), ws.norms.begin() + nt, 0.0f);
        for (int64_t d0 = 0; d0 < D; d0 += t.d_chunk) {
          const int64_t len = std::min(t.d_chunk, D - d0);
          for (int j = 0; j < nt; ++j) {
            const char* src = reinterpret_cast<const char*>(p.items.ptr) +
                              ((j0 + j) * p.items.row_stride + d0) * static_cast<int64_t>(isz);
            float* dst = ws.tile.data() + j * ldc;
            K.to_f32(src, p.items.dtype, len, dst);
            if (own_norms) ws.norms[j] += K.sumsq(dst, len);
          }
          K.dots(qd.qf + q0 * qd.ldq + d0, qd.ldq, static_cast<int>(nq), ws.tile.data(), ldc, nt, len, S, s_query,
                 d0 > 0);
        }
        if (own_norms)
          for (int j = 0; j < nt; ++j) ws.norms[j] = norm_term(p.metric, ws.norms[j]);
      } else {
        // fp32: the kernel reads the items in place; norms first, which pulls the tile in.
        const float* xt = reinterpret_cast<const float*>(p.items.ptr) + j0 * p.items.row_stride;
        const int64_t ldx = p.items.row_stride;
        if (own_norms)
          for (int j = 0; j < nt; ++j) ws.norms[j] = norm_term(p.metric, K.sumsq(xt + j * ldx, D));
        for (int64_t d0 = 0; d0 < D; d0 += t.d_chunk) {
          const int64_t len = std::min(t.d_chunk, D - d0);
          K.dots(qd.qf + q0 * qd.ldq + d0, qd.ldq, static_cast<int>(nq), xt + d0, ldx, nt, len, S, s_query, d0 > 0);
        }
      }
    }
    if (need_norms && p.item_norms)
      for (int j = 0; j < nt; ++j) ws.norms[j] = given_norm_term(p.metric, p.item_norms[j0 + j]);
    // Scores, then selection, along S's contiguous dimension.
    if (s_item == 1) {
      select_by_query(p, K, qd, q0, nq, j0, nt, S, s_query, ws.norms.data(), tops);
    } else {
      select_by_item(p, qd, q0, nq, j0, nt, S, s_item, ws, tops);
    }
  }
}


// Queries per task when B queries are split over `threads` workers.
int64_t query_chunk(int64_t B, int threads) { return std::max<int64_t>(1, B / (kTasksPerThread * threads)); }

// Own-kernel path: (query block x item chunk) tasks, query-block-major, many per worker,
// each into its worker's buffers tops[worker].
void search_own(const Problem& p, const simd::Kernels& K, const Tiling& t, const QueryData& qd, bool use_amx,
                int threads, std::vector<std::vector<TopKBuffer>>& tops) {
  const int64_t B = p.queries.rows, N = p.items.rows;
  const int64_t n_qblocks = (B + t.queries_per_block - 1) / t.queries_per_block;
  const int64_t n_tiles = (N + t.items_per_tile - 1) / t.items_per_tile;
  int64_t n_chunks = 1;
  if (threads > 1) n_chunks = std::min<int64_t>(n_tiles, (kTasksPerThread * threads + n_qblocks - 1) / n_qblocks);
  const int64_t tiles_per_chunk = (n_tiles + n_chunks - 1) / n_chunks;
  n_chunks = (n_tiles + tiles_per_chunk - 1) / tiles_per_chunk;
  std::vector<ThreadScratch> scratch(static_cast<size_t>(threads));
  parallel_for(n_qblocks * n_chunks, threads, [&](int64_t task, int worker) {
    const int64_t qb = task / n_chunks, ch = task % n_chunks;
    const int64_t q0 = qb * t.queries_per_block;
    const int64_t nq = std::min(t.queries_per_block, B - q0);
    const int64_t i0 = ch * tiles_per_chunk * t.items_per_tile;
    const int64_t i1 = std::min(N, i0 + tiles_per_chunk * t.items_per_tile);
    if (use_amx) amx::configure();  // tile state is per thread
    run_task(p, K, t, qd, q0, nq, i0, i1, scratch[static_cast<size_t>(worker)], &tops[worker][q0]);
    if (use_amx) amx::release();
  });
}

}  // namespace

// score_topk's named arguments (pyl2d/ops/score_topk/cpu.py; bound below).
struct ScoreTopkParams {
  TensorArg queries;     // [B, D] float32/float16/bfloat16, unit inner stride
  TensorArg items;       // [N, D], same dtype
  TensorArg exclude;     // optional [B, E] int32/int64, -1 = padding
  TensorArg item_norms;  // optional [N] float32 L2 norms
  TensorArg out_scores;  // [B, k] float32, written
  TensorArg out_ids;     // [B, k] int64, written
  int64_t k = 0;
  int metric = 0;        // pyl2d._codes.METRICS
  int64_t num_threads = 0;
  // Vendor-GEMM path (float32 only) when set: gemm(j0, nt) fills tile_scores[:, :nt] with
  // the dot products of every query with items [j0, j0 + nt) (torch.mm), nt <= its width.
  py::object gemm = py::none();
  TensorArg tile_scores;  // [B, tile] float32, row stride tile
};

namespace {

// Vendor-GEMM path: per item tile, Python's gemm callback fills a.tile_scores, then query
// chunks select from it in parallel into tops (one buffer per query). Each parallel region
// ends in a barrier, which waits for a descheduled worker on a busy machine: given norms are
// copied on this thread, and the last tile's region writes the results too.
void search_vendor(const Problem& p, const simd::Kernels& K, const QueryData& qd, const ScoreTopkParams& a,
                   int threads, std::vector<TopKBuffer>& tops, float* out_scores, int64_t* out_ids) {
  const int64_t B = p.queries.rows, N = p.items.rows, D = p.items.cols, k = p.k;
  const int64_t width = a.tile_scores.size(1), lds = a.tile_scores.stride(0);
  float* S = a.tile_scores.data<float>();
  std::vector<float> xterm(static_cast<size_t>(std::min(width, N)));
  for (int64_t j0 = 0; j0 < N; j0 += width) {
    const int64_t nt = std::min(width, N - j0);
    {
      py::gil_scoped_acquire gil;
      a.gemm(j0, nt);
    }
    if (p.metric != Metric::kIP && p.item_norms) {
      for (int64_t j = 0; j < nt; ++j) xterm[j] = given_norm_term(p.metric, p.item_norms[j0 + j]);
    } else if (p.metric != Metric::kIP) {
      const float* x = reinterpret_cast<const float*>(p.items.ptr);
      parallel_ranges(nt, 256, threads, [&](int64_t j1, int64_t j2, int) {
        for (int64_t j = j1; j < j2; ++j) xterm[j] = norm_term(p.metric, K.sumsq(x + (j0 + j) * p.items.row_stride, D));
      });
    }
    const bool last = j0 + nt >= N;
    parallel_ranges(B, query_chunk(B, threads), threads, [&](int64_t q0, int64_t q1, int) {
      select_by_query(p, K, qd, q0, q1 - q0, j0, static_cast<int>(nt), S + q0 * lds, lds, xterm.data(), &tops[q0]);
      if (last)
        for (int64_t b = q0; b < q1; ++b) tops[b].write_sorted(out_scores + b * k, out_ids + b * k);
    });
  }
}

void score_topk_cpu(const ScoreTopkParams& a) {
  Problem p;
  p.queries = as_matrix(a.queries, "queries");
  p.items = as_matrix(a.items, "items");
  const int64_t B = p.queries.rows, Dq = p.queries.cols, N = p.items.rows, D = p.items.cols, k = a.k;
  const int metric = a.metric;
  expect(a.out_scores, "out_scores", 2, {DType::kFloat32});
  expect(a.out_ids, "out_ids", 2, {DType::kInt64});
  if (a.out_scores.sizes != std::vector<int64_t>{B, k} || a.out_ids.sizes != std::vector<int64_t>{B, k} ||
      a.out_scores.stride(0) != k || a.out_ids.stride(0) != k)
    throw std::invalid_argument("out_scores and out_ids must be contiguous [B, k]");
  uintptr_t ex_ptr = 0;
  int64_t ex_rows = 0, ex_cols = 0, ex_stride = 0;
  int ex_dtype = static_cast<int>(DType::kInt64);
  if (a.exclude.defined) {
    const Matrix ex = as_matrix(a.exclude, "exclude");
    ex_ptr = ex.ptr, ex_rows = ex.rows, ex_cols = ex.cols, ex_stride = ex.row_stride;
    ex_dtype = static_cast<int>(ex.dtype);
  }
  check_matrix("queries", p.queries, true);
  check_matrix("items", p.items, true);
  if (Dq != D) throw std::invalid_argument("items has dimension " + std::to_string(D) + " but the queries have " +
                                           std::to_string(Dq));
  if (p.queries.dtype != p.items.dtype) throw std::invalid_argument("queries and items must have the same dtype");
  if (k < 1 || k > N) throw std::invalid_argument("k=" + std::to_string(k) + " is out of range [1, " + std::to_string(N) + "]");
  p.k = k;
  if (metric < 0 || metric >= codes::kMetricCount) throw std::invalid_argument("score_topk_cpu: unknown metric code");
  p.metric = static_cast<Metric>(metric);
  if (a.item_norms.defined) {
    expect_vector(a.item_norms, "item_norms", N, DType::kFloat32);
    p.item_norms = a.item_norms.data<const float>();
  }
  build_exclusions(p, ex_ptr, ex_rows, ex_cols, ex_stride, dtype_from_code(ex_dtype));
  float* out_scores = a.out_scores.data<float>();
  int64_t* out_ids = a.out_ids.data<int64_t>();

  if (N > kMaxRankedId)
    throw std::invalid_argument("items has " + std::to_string(N) + " rows; the cpu backend scores at most " +
                                std::to_string(kMaxRankedId) + " per call (split the items)");

  const simd::Kernels& K = simd::kernels();
  const bool vendor = !a.gemm.is_none();
  if (vendor) {
    if (p.items.dtype != DType::kFloat32) throw std::invalid_argument("the vendor-GEMM path takes float32 only");
    expect(a.tile_scores, "tile_scores", 2, {DType::kFloat32});
    if (a.tile_scores.size(0) != B || a.tile_scores.size(1) < 1 || a.tile_scores.stride(1) != 1)
      throw std::invalid_argument("tile_scores must be [B, tile] with unit inner stride");
  }
  // AMX computes 32 queries at a time: below that many the SIMD path wastes less.
  const bool use_amx = !vendor && p.items.dtype == DType::kBFloat16 && B > kDirectHalfMaxQueries && amx::available();
  const Tiling t = choose_tiling(B, D, use_amx);
  int threads = resolve_threads(a.num_threads);
  if (B * N * D < kMinParallelWork) threads = 1;

  // Queries as padded fp32 rows (B x D: independent of N) and their norms.
  QueryData qd;
  qd.ldq = D + 16;
  std::vector<float> qf(static_cast<size_t>(B * qd.ldq));
  std::vector<float> qnorm(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; ++b) {
    float* dst = qf.data() + b * qd.ldq;
    const float* src = row_f32(p.queries, b, dst, K);
    if (src != dst) std::copy(src, src + D, dst);
    qnorm[b] = norm_term(p.metric, K.sumsq(dst, D));
  }
  qd.qf = qf.data();
  qd.norm = qnorm.data();
  std::vector<uint16_t> qpacked;
  if (use_amx) {
    qd.dpad = (D + amx::kDStep - 1) / amx::kDStep * amx::kDStep;
    const int64_t bpad = (B + amx::kQueries - 1) / amx::kQueries * amx::kQueries;
    qpacked.resize(static_cast<size_t>(bpad * qd.dpad));
    const uint16_t* qbase = reinterpret_cast<const uint16_t*>(p.queries.ptr);
    amx::pack_queries([&](int64_t i) { return qbase + i * p.queries.row_stride; }, B, D, qd.dpad, qpacked.data());
    qd.packed = qpacked.data();
  }

  // One top-k buffer per (worker, query); the vendor path needs only worker 0's row.
  std::vector<std::vector<TopKBuffer>> tops(static_cast<size_t>(vendor ? 1 : threads),
                                            std::vector<TopKBuffer>(static_cast<size_t>(B)));
  for (auto& row : tops)
    for (auto& top : row) top.reset(k);
  if (vendor) {
    search_vendor(p, K, qd, a, threads, tops[0], out_scores, out_ids);
    return;
  }
  search_own(p, K, t, qd, use_amx, threads, tops);
  // Per query: merge the workers' buffers (exclusions were applied already), best first.
  parallel_ranges(B, query_chunk(B, threads), threads, [&](int64_t b0, int64_t b1, int) {
    for (int64_t b = b0; b < b1; ++b) {
      TopKBuffer& top = tops[0][b];
      for (size_t w = 1; w < tops.size(); ++w) top.absorb(tops[w][b]);
      top.write_sorted(out_scores + b * k, out_ids + b * k);
    }
  });
}

}  // namespace
}  // namespace pyl2d

PYL2D_REGISTER_BINDINGS(score_topk_cpu, [](py::module_& m) {
  using pyl2d::ScoreTopkParams;
  pyl2d::bind_params<ScoreTopkParams>(m, "ScoreTopkParams", "Named arguments of score_topk_cpu.")
      .def_readwrite("queries", &ScoreTopkParams::queries)
      .def_readwrite("items", &ScoreTopkParams::items)
      .def_readwrite("exclude", &ScoreTopkParams::exclude)
      .def_readwrite("item_norms", &ScoreTopkParams::item_norms)
      .def_readwrite("out_scores", &ScoreTopkParams::out_scores)
      .def_readwrite("out_ids", &ScoreTopkParams::out_ids)
      .def_readwrite("k", &ScoreTopkParams::k)
      .def_readwrite("metric", &ScoreTopkParams::metric)
      .def_readwrite("num_threads", &ScoreTopkParams::num_threads)
      .def_readwrite("gemm", &ScoreTopkParams::gemm)
      .def_readwrite("tile_scores", &ScoreTopkParams::tile_scores);
  m.def("score_topk_cpu", &pyl2d::score_topk_cpu, py::call_guard<py::gil_scoped_release>(), py::arg("params"),
        "Fused similarity + top-k on CPU (internal; use pyl2d.score_topk): writes params.out_scores "
        "and params.out_ids.");
  m.def("cpu_simd_variant", [] { return std::string(pyl2d::simd::kernels().name); },
        "Which SIMD variant the CPU kernels use here (avx512, avx2 or portable).");
  m.def("cpu_simd_supported", [] { return pyl2d::simd::supported_variants(); },
        "The SIMD variants this CPU can run, best first (PYL2D_SIMD picks one of them).");
  m.def("cpu_has_amx", [] { return pyl2d::amx::available(); },
        "Whether bfloat16 scoring uses Intel AMX tiles here (PYL2D_AMX=0 turns them off).");
  m.def("cpu_amx_supported", [] { return pyl2d::amx::detect(); },
        "Whether this CPU and OS could run AMX tiles, whatever PYL2D_AMX says.");
});
