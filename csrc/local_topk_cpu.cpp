// local_topk's aggregation + ranking stage on CPU (L2D local aggregation).
//
// Inputs per query b: its m nearest memory entries (indices into memory, -1 = empty slot) and C global
// candidates (scores and item ids, from score_topk over the admissible item
// representations; pyl2d/_local_stages.py proves that C = k + m + E of them make the
// result exact). Here, per query: group the m entries by item, average each group's
// vectors in float32 (the item's local representation) and score it; the local score
// replaces the item's global one; excluded items are dropped; the k best by
// (score desc, id asc) are written, the tail padded with (-inf, -1).
// Work per query is O(m * D + (m + C) log(m + C)); nothing of size B x N exists.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <pybind11/pybind11.h>

#include "aggregate_rows.h"
#include "codes.h"
#include "native_args.h"
#include "parallel.h"
#include "registry.h"
#include "tensor_arg.h"

namespace py = pybind11;

namespace pyl2d {
namespace {

using Metric = codes::Metric;
using codes::kNormEps;

struct Candidate {
  float score;
  int64_t id;
};

inline bool ranks_before(const Candidate& a, const Candidate& b) {
  return a.score > b.score || (a.score == b.score && a.id < b.id);
}

// The metric from a dot product and squared norms, with the reference's formulas.
inline float score_from(Metric metric, float dot, float q_sq, float x_sq) {
  switch (metric) {
    case Metric::kIP: return dot;
    case Metric::kCosine:
      return dot / (std::max(std::sqrt(q_sq), kNormEps) * std::max(std::sqrt(x_sq), kNormEps));
    case Metric::kL2: return -std::sqrt(std::max(q_sq - 2.0f * dot + x_sq, 0.0f));
    default: return dot;  // codes are checked at the entry point
  }
}

struct Problem {
  uintptr_t queries, memory;
  int64_t batch, cols, q_stride, mem_rows, mem_stride;
  const int64_t* mem_item_ids;  // [M]
  int64_t n_items;
  const int64_t* nearest;  // [B, m]
  int64_t m;
  const float* cand_scores;  // [B, C]
  const int64_t* cand_ids;   // [B, C], -1 = empty
  int64_t n_cand;
  const int64_t* exclude;  // [B, E] or null, -1 = padding
  int64_t n_exclude;
  int64_t k;
  Metric metric;
  float* out_scores;  // [B, k]
  int64_t* out_ids;   // [B, k]
};

// Scratch reused across the queries one thread handles.
struct Scratch {
  std::vector<float> query, acc;
  std::vector<std::pair<int64_t, int64_t>> entries;  // (item, memory index)
  std::vector<Candidate> local, ranked;
  std::vector<int64_t> excluded;
};

inline bool contains_sorted(const std::vector<int64_t>& sorted, int64_t id) {
  return std::binary_search(sorted.begin(), sorted.end(), id);
}

template <typename T>
void rank_one_query(const Problem& p, int64_t b, Scratch& s) {
  using S = typename T::storage;
  const int64_t D = p.cols;
  const S* q_row = reinterpret_cast<const S*>(p.queries) + b * p.q_stride;
  s.query.assign(D, 0.0f);
  float q_sq = 0.0f;
  for (int64_t d = 0; d < D; ++d) {
    s.query[d] = T::load(q_row[d]);
    q_sq += s.query[d] * s.query[d];
  }

  s.entries.clear();
  for (int64_t j = 0; j < p.m; ++j) {
    const int64_t row = p.nearest[b * p.m + j];
    if (row >= 0) s.entries.emplace_back(p.mem_item_ids[row], row);  // -1: an empty slot
  }
  std::sort(s.entries.begin(), s.entries.end());

  s.excluded.clear();
  if (p.exclude != nullptr)
    for (int64_t e = 0; e < p.n_exclude; ++e)
      if (p.exclude[b * p.n_exclude + e] >= 0) s.excluded.push_back(p.exclude[b * p.n_exclude + e]);
  std::sort(s.excluded.begin(), s.excluded.end());

  // Local representations: one group of entries per item (entries are sorted by item).
  s.local.clear();
  s.acc.resize(D);
  for (size_t g = 0; g < s.entries.size();) {
    const int64_t item = s.entries[g].first;
    size_t end = g;
    std::fill(s.acc.begin(), s.acc.end(), 0.0f);
    for (; end < s.entries.size() && s.entries[end].first == item; ++end)
      aggregate::add_row<T>(s.acc.data(), reinterpret_cast<const S*>(p.memory) + s.entries[end].second * p.mem_stride,
                            D);
    const float inv = 1.0f / static_cast<float>(end - g);
    float dot = 0.0f, x_sq = 0.0f;
    for (int64_t d = 0; d < D; ++d) {
      const float x = s.acc[d] * inv;
      dot += s.query[d] * x;
      x_sq += x * x;
    }
    s.local.push_back({score_from(p.metric, dot, q_sq, x_sq), item});
    g = end;
  }

  // Candidates: local items, then global ones without a local score; none excluded.
  s.ranked.clear();
  for (const Candidate& c : s.local)
    if (!contains_sorted(s.excluded, c.id)) s.ranked.push_back(c);
  auto local_has = [&](int64_t id) {
    auto it = std::lower_bound(s.local.begin(), s.local.end(), id,
                               [](const Candidate& c, int64_t v) { return c.id < v; });
    return it != s.local.end() && it->id == id;
  };
  for (int64_t c = 0; c < p.n_cand; ++c) {
    const int64_t id = p.cand_ids[b * p.n_cand + c];
    if (id < 0 || local_has(id) || contains_sorted(s.excluded, id)) continue;
    s.ranked.push_back({p.cand_scores[b * p.n_cand + c], id});
  }

  const int64_t keep = std::min<int64_t>(p.k, static_cast<int64_t>(s.ranked.size()));
  std::partial_sort(s.ranked.begin(), s.ranked.begin() + keep, s.ranked.end(), ranks_before);
  for (int64_t j = 0; j < p.k; ++j) {
    const bool filled = j < keep;
    p.out_scores[b * p.k + j] = filled ? s.ranked[j].score : -std::numeric_limits<float>::infinity();
    p.out_ids[b * p.k + j] = filled ? s.ranked[j].id : -1;
  }
}

// Index checks before the parallel region: an exception must not escape an OpenMP loop.
void check_indices(const Problem& p) {
  for (int64_t i = 0; i < p.batch * p.m; ++i) {
    const int64_t row = p.nearest[i];
    if (row == -1) continue;  // an empty slot (pyl2d.distributed: entries held by other ranks)
    if (row < -1 || row >= p.mem_rows)
      throw std::invalid_argument("local_topk_cpu: nearest memory index " + std::to_string(row) + " out of range");
    const int64_t item = p.mem_item_ids[row];
    if (item < 0 || item >= p.n_items)
      throw std::invalid_argument("memory_item_ids holds id " + std::to_string(item) + ", out of range [0, " +
                                  std::to_string(p.n_items) + ")");
  }
  for (int64_t i = 0; i < p.batch * p.n_cand; ++i)
    if (p.cand_ids[i] < -1 || p.cand_ids[i] >= p.n_items)
      throw std::invalid_argument("local_topk_cpu: candidate id " + std::to_string(p.cand_ids[i]) + " out of range");
}

}  // namespace

// local_topk's aggregation + ranking stage, by name (pyl2d/ops/local_topk/cpu.py; bound below).
struct LocalTopkParams {
  TensorArg queries;          // [B, D] float32/float16/bfloat16, unit inner stride
  TensorArg memory;           // [M, D], same dtype
  TensorArg memory_item_ids;  // [M] int64 in [0, n_items)
  TensorArg nearest;          // [B, m] int64: each query's m nearest memory rows, -1 = empty slot
  TensorArg cand_scores;      // [B, C] float32: global candidates' scores
  TensorArg cand_ids;         // [B, C] int64
  TensorArg exclude;          // optional [B, E] int64, -1 = padding
  TensorArg out_scores;       // [B, k] float32; written
  TensorArg out_ids;          // [B, k] int64; written
  int64_t n_items = 0;
  int64_t k = 0;
  int metric = 0;             // pyl2d._codes.METRICS
  int64_t num_threads = 0;    // torch.get_num_threads()
};

namespace {

void local_topk_cpu(const LocalTopkParams& a) {
  const Matrix qm = as_matrix(a.queries, "queries"), mm = as_matrix(a.memory, "memory");
  const uintptr_t queries = qm.ptr, memory = mm.ptr;
  const int64_t batch = qm.rows, cols = qm.cols, q_stride = qm.row_stride, mem_rows = mm.rows;
  const int64_t mem_stride = mm.row_stride, n_items = a.n_items, k = a.k;
  const int q_dtype = static_cast<int>(qm.dtype), mem_dtype = static_cast<int>(mm.dtype), metric = a.metric;
  if (mm.cols != cols) throw std::invalid_argument("local_topk_cpu: memory and queries differ in width");
  expect_vector(a.memory_item_ids, "memory_item_ids", mem_rows, DType::kInt64);
  expect(a.nearest, "nearest", 2, {DType::kInt64});
  expect(a.cand_scores, "cand_scores", 2, {DType::kFloat32});
  expect(a.cand_ids, "cand_ids", 2, {DType::kInt64});
  const int64_t m = a.nearest.size(1), n_cand = a.cand_ids.size(1);
  expect_sizes(a.nearest, "nearest", {batch, m});
  expect_sizes(a.cand_scores, "cand_scores", {batch, n_cand});
  expect_sizes(a.cand_ids, "cand_ids", {batch, n_cand});
  for (const auto* t : {&a.nearest, &a.cand_scores, &a.cand_ids}) expect_contiguous(*t, "candidates");
  int64_t n_exclude = 0;
  if (a.exclude.defined) {
    expect(a.exclude, "exclude", 2, {DType::kInt64});
    n_exclude = a.exclude.size(1);
    expect_sizes(a.exclude, "exclude", {batch, n_exclude});
    expect_contiguous(a.exclude, "exclude");
  }
  expect(a.out_scores, "out_scores", 2, {DType::kFloat32});
  expect(a.out_ids, "out_ids", 2, {DType::kInt64});
  expect_sizes(a.out_scores, "out_scores", {batch, k});
  expect_sizes(a.out_ids, "out_ids", {batch, k});
  expect_contiguous(a.out_scores, "out_scores");
  expect_contiguous(a.out_ids, "out_ids");
  const uintptr_t mem_item_ids = a.memory_item_ids.ptr, nearest = a.nearest.ptr, cand_scores = a.cand_scores.ptr;
  const uintptr_t cand_ids = a.cand_ids.ptr, exclude = a.exclude.ptr, out_scores = a.out_scores.ptr;
  const uintptr_t out_ids = a.out_ids.ptr;
  if (q_dtype != mem_dtype) throw std::invalid_argument("local_topk_cpu: queries and memory must share a dtype");
  if (batch < 0 || cols < 0 || m < 1 || m > mem_rows || n_cand < 0 || n_exclude < 0 || k < 1)
    throw std::invalid_argument("local_topk_cpu: bad sizes");
  if (metric < 0 || metric >= codes::kMetricCount) throw std::invalid_argument("local_topk_cpu: unknown metric code");
  Problem p{queries, memory, batch, cols, q_stride, mem_rows, mem_stride,
            reinterpret_cast<const int64_t*>(mem_item_ids), n_items, reinterpret_cast<const int64_t*>(nearest), m,
            reinterpret_cast<const float*>(cand_scores), reinterpret_cast<const int64_t*>(cand_ids), n_cand,
            reinterpret_cast<const int64_t*>(exclude), n_exclude, k, static_cast<Metric>(metric),
            reinterpret_cast<float*>(out_scores), reinterpret_cast<int64_t*>(out_ids)};
  check_indices(p);
  aggregate::dispatch_float(q_dtype, "queries", [&](auto tag) {
    using T = decltype(tag);
    const int threads = resolve_threads(a.num_threads);
    std::vector<Scratch> scratch(static_cast<size_t>(threads));
    parallel_for(p.batch, threads, [&](int64_t b, int worker) { rank_one_query<T>(p, b, scratch[worker]); });
  });
}

}  // namespace
}  // namespace pyl2d

PYL2D_REGISTER_BINDINGS(local_topk_cpu, [](py::module_& m) {
  using pyl2d::LocalTopkParams;
  pyl2d::bind_params<LocalTopkParams>(m, "LocalTopkParams", "Named arguments of local_topk_cpu.")
      .def_readwrite("queries", &LocalTopkParams::queries)
      .def_readwrite("memory", &LocalTopkParams::memory)
      .def_readwrite("memory_item_ids", &LocalTopkParams::memory_item_ids)
      .def_readwrite("nearest", &LocalTopkParams::nearest)
      .def_readwrite("cand_scores", &LocalTopkParams::cand_scores)
      .def_readwrite("cand_ids", &LocalTopkParams::cand_ids)
      .def_readwrite("exclude", &LocalTopkParams::exclude)
      .def_readwrite("out_scores", &LocalTopkParams::out_scores)
      .def_readwrite("out_ids", &LocalTopkParams::out_ids)
      .def_readwrite("n_items", &LocalTopkParams::n_items)
      .def_readwrite("k", &LocalTopkParams::k)
      .def_readwrite("metric", &LocalTopkParams::metric)
      .def_readwrite("num_threads", &LocalTopkParams::num_threads);
  m.def("local_topk_cpu", &pyl2d::local_topk_cpu, py::call_guard<py::gil_scoped_release>(), py::arg("params"),
        "local_topk's aggregation + ranking stage (internal; use pyl2d.local_topk).");
});
