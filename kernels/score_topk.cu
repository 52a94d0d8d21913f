// score_topk stage 1 on CUDA: each thread block takes BQ (64 or 128) queries and one split of
// the items, computes BQ x kBN score tiles (tensor cores via WMMA for fp16/bf16, fp32 FMA for
// float32; float32 accumulation either way), applies the metric, and keeps each query's k
// best admissible items of its split in shared memory. The score matrix never reaches global
// memory; the per-(query, split) candidates are merged on the Python side.
//
// Selection: warp w owns queries w, w + 8, ... of the block. A query's candidates live in a
// shared buffer of `cap` keys (k + 32 <= cap <= k + 96); a key passes when it beats the
// query's threshold (the k-th best key at the last compaction) and is not excluded. After each
// 32 items, when more than cap - 32 keys are buffered, the warp keeps the best k by computing
// every key's rank (the buffer's first part is sorted from the previous compaction, so ranks
// come from a binary search plus a count over the new keys) and moving each key with rank < k
// to slot rank. 32 items add at most 32 keys, so the buffer never overflows; the slack above k
// makes compactions rare once the threshold has settled.
#include <mma.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <type_traits>

#include "common.cuh"
#include "codes.h"
#include "score_topk.h"

namespace pyl2d {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kBQSmall = 64;            // queries per block: float32, or k too large for 128
constexpr int kBQLarge = 128;           // queries per block: 16-bit inputs when it fits
constexpr int kBN = 128;                // items per tile
constexpr int kMaxK = 256;              // largest k kept per (query, split)
constexpr int kCapMax = kMaxK + 64;     // largest candidate buffer per query
constexpr int kKeysPerLane = kCapMax / 32;
constexpr int kLDC = kBN + 4;           // score tile row pitch (floats)
using codes::kCosine;
using codes::kIP;
using codes::kL2;
using codes::kNormEps;

// Shared-memory operand layout for one stage: A = [BQ][kLDK] queries, B = [kBN][kLDK] items
// (both row-major in the storage type), kBK deep: 64 for 16-bit types (128-byte row segments,
// half the barriers per flop), 32 for float32. 16-bit rows are padded by 8 elements (16 bytes:
// keeps uint4 stores and WMMA's 32-byte fragment alignment, avoids bank conflicts); float rows
// by one element (conflict-free scalar reads in the FMA tile).
template <typename T, int BQ>
struct Layout {
  static constexpr int kVec = 16 / static_cast<int>(sizeof(T));  // elements per 16-byte chunk
  static constexpr int kBK = sizeof(T) == 2 ? 64 : 32;            // reduction depth per step
  static constexpr int kLDK = sizeof(T) == 2 ? kBK + 8 : kBK + 1;
  static constexpr int kChunksPerRow = kBK / kVec;
  static constexpr int kAChunks = BQ * kChunksPerRow / kThreads;  // per thread
  static constexpr int kBChunks = kBN * kChunksPerRow / kThreads;
  static constexpr int kStageElems = (BQ + kBN) * kLDK;
  static_assert(kBK % kVec == 0, "tile depth must hold whole chunks");
  static_assert((BQ * kChunksPerRow) % kThreads == 0 && (kBN * kChunksPerRow) % kThreads == 0,
                "chunks must split evenly over threads");
};

constexpr size_t round_up(size_t x, size_t a) { return (x + a - 1) / a * a; }
constexpr size_t larger(size_t x, size_t y) { return x > y ? x : y; }

// Bytes of the region shared by the two operand stages and (after the K loop) the score tile.
template <typename T, int BQ>
constexpr size_t operand_region_bytes() {
  return round_up(larger(2 * static_cast<size_t>(Layout<T, BQ>::kStageElems) * sizeof(T),
                         static_cast<size_t>(BQ) * kLDC * sizeof(float)),
                  128);
}

// Dynamic shared memory for one block with candidate buffers of `cap` keys per query.
template <typename T, int BQ>
size_t stage1_smem_bytes(int cap) {
  return operand_region_bytes<T, BQ>() + static_cast<size_t>(BQ) * cap * sizeof(uint64_t)  // candidates
         + BQ * sizeof(uint64_t)                                                          // thresholds
         + BQ * sizeof(int64_t)                                                           // row offsets
         + BQ * sizeof(float)                                                             // query norms
         + 2 * BQ * sizeof(int);                                                          // counts
}

struct Stage1Args {
  const void* q_base;
  const int64_t* q_offsets;
  int64_t batch;
  bool q_vec;
  const void* items;
  int64_t n_items, dim, item_stride;
  bool x_vec;
  int metric;
  const float* q_norms;
  const float* x_norms;
  const int64_t* exclude;
  int64_t n_exclude;
  int kp;
  int cap;  // candidate slots per query, kp + 32 <= cap <= kCapMax
  int64_t tiles_per_split;
  float* ws_scores;
  int64_t* ws_ids;
  int64_t ws_ld;
};

// One 16-byte chunk of a row (elements [k, k + kVec)), zero beyond `dim` and for a padding
// row (row == nullptr). Vector load only when aligned and entirely inside the row.
template <typename T>
__device__ __forceinline__ uint4 load_chunk(const T* row, int64_t k, int64_t dim, bool vec_ok) {
  constexpr int kVec = 16 / static_cast<int>(sizeof(T));
  uint4 v = make_uint4(0u, 0u, 0u, 0u);
  if (row == nullptr) return v;
  if (vec_ok && k + kVec <= dim) return __ldg(reinterpret_cast<const uint4*>(row + k));
  using Bits = typename std::conditional<sizeof(T) == 2, uint16_t, uint32_t>::type;
  union {
    uint4 u;
    Bits b[kVec];
  } tmp;
  tmp.u = v;
  const Bits* src = reinterpret_cast<const Bits*>(row);
#pragma unroll
  for (int e = 0; e < kVec; ++e) {
    if (k + e < dim) tmp.b[e] = src[k + e];
  }
  return tmp.u;
}

template <typename T>
__device__ __forceinline__ void store_chunk(T* dst, uint4 v) {
  if constexpr (sizeof(T) == 2) {
    *reinterpret_cast<uint4*>(dst) = v;
  } else {
    uint32_t* d = reinterpret_cast<uint32_t*>(dst);
    d[0] = v.x;
    d[1] = v.y;
    d[2] = v.z;
    d[3] = v.w;
  }
}

// Tensor-core tile for fp16/bf16: each warp owns 32 queries x kFN*16 items; the 8 warps are
// (BQ / 32) x kWarpsN: 2 x 4 warps of 32 x 32 for BQ = 64, 4 x 2 warps of 32 x 64 for BQ = 128.
template <typename T, int BQ>
struct WmmaTile {
  static constexpr int kLDK = Layout<T, BQ>::kLDK;
  static constexpr int kBK = Layout<T, BQ>::kBK;
  static constexpr int kWarpsN = kWarps / (BQ / 32);
  static constexpr int kFN = kBN / kWarpsN / 16;  // 16-wide fragments per warp along items
  static_assert(BQ % 32 == 0 && kWarps % (BQ / 32) == 0 && kBN % (kWarpsN * 16) == 0, "bad warp layout");
  nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 16, float> acc[2][kFN];

  __device__ __forceinline__ void zero() {
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
      for (int j = 0; j < kFN; ++j) nvcuda::wmma::fill_fragment(acc[i][j], 0.0f);
  }

  __device__ __forceinline__ void step(const T* As, const T* Bs, int tid) {
    const int warp = tid >> 5, wm = warp / kWarpsN, wn = warp % kWarpsN;
#pragma unroll
    for (int kk = 0; kk < kBK; kk += 16) {
      nvcuda::wmma::fragment<nvcuda::wmma::matrix_a, 16, 16, 16, T, nvcuda::wmma::row_major> a[2];
      nvcuda::wmma::fragment<nvcuda::wmma::matrix_b, 16, 16, 16, T, nvcuda::wmma::col_major> b[kFN];
#pragma unroll
      for (int i = 0; i < 2; ++i) nvcuda::wmma::load_matrix_sync(a[i], As + (wm * 32 + i * 16) * kLDK + kk, kLDK);
#pragma unroll
      for (int j = 0; j < kFN; ++j)
        nvcuda::wmma::load_matrix_sync(b[j], Bs + (wn * kFN * 16 + j * 16) * kLDK + kk, kLDK);
#pragma unroll
      for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < kFN; ++j) nvcuda::wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);
    }
  }

  __device__ __forceinline__ void store(float* C, int tid) {
    const int warp = tid >> 5, wm = warp / kWarpsN, wn = warp % kWarpsN;
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
      for (int j = 0; j < kFN; ++j)
        nvcuda::wmma::store_matrix_sync(C + (wm * 32 + i * 16) * kLDC + wn * kFN * 16 + j * 16, acc[i][j], kLDC,
                                        nvcuda::wmma::mem_row_major);
  }
};

// Exact float32 FMA tile: thread (ty, tx) of a 16 x 16 grid owns queries ty + 16 i (i < 4)
// and items tx + 16 j (j < 8).
struct FmaTile {
  static constexpr int kLDK = Layout<float, kBQSmall>::kLDK;
  static constexpr int kBK = Layout<float, kBQSmall>::kBK;
  float acc[4][8];

  __device__ __forceinline__ void zero() {
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 8; ++j) acc[i][j] = 0.0f;
  }

  __device__ __forceinline__ void step(const float* As, const float* Bs, int tid) {
    const int ty = tid / 16, tx = tid % 16;
#pragma unroll 4
    for (int k = 0; k < kBK; ++k) {
      float a[4], b[8];
#pragma unroll
      for (int i = 0; i < 4; ++i) a[i] = As[(ty + 16 * i) * kLDK + k];
#pragma unroll
      for (int j = 0; j < 8; ++j) b[j] = Bs[(tx + 16 * j) * kLDK + k];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
  }

  __device__ __forceinline__ void store(float* C, int tid) {
    const int ty = tid / 16, tx = tid % 16;
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 8; ++j) C[(ty + 16 * i) * kLDC + tx + 16 * j] = acc[i][j];
  }
};

template <typename T, int BQ>
struct TileFor {
  using type = WmmaTile<T, BQ>;
};
template <>
struct TileFor<float, kBQSmall> {
  using type = FmaTile;
};

// q_term / x_term: |q|, |x| for cosine; |q|^2, |x|^2 (sums of squares, never a rounded norm
// squared again, so equal distances give equal scores and tie by id) for l2.
__device__ __forceinline__ float apply_metric(int metric, float dot, float q_term, float x_term) {
  if (metric == kIP) return dot;
  if (metric == kCosine) return dot / (fmaxf(q_term, kNormEps) * fmaxf(x_term, kNormEps));
  return -sqrtf(fmaxf(q_term - 2.0f * dot + x_term, 0.0f));
}

// Whether `id` is in the ascending row `ids[0, n)`.
__device__ __forceinline__ bool sorted_contains(const int64_t* ids, int64_t n, int64_t id) {
  int64_t lo = 0, hi = n;
  while (lo < hi) {
    const int64_t mid = (lo + hi) >> 1;
    if (__ldg(ids + mid) < id) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo < n && __ldg(ids + lo) == id;
}

// Called by a whole warp with cnt > kp (uniform): keeps the kp best of buf[0, cnt), sorted
// best first in buf[0, kp). buf[0, sorted) is already sorted best first; keys are unique.
__device__ void keep_best(uint64_t* buf, int cnt, int sorted, int kp, int lane) {
  uint64_t key[kKeysPerLane];
  int rank[kKeysPerLane];
#pragma unroll
  for (int r = 0; r < kKeysPerLane; ++r) {
    const int e = lane + 32 * r;
    key[r] = 0;
    rank[r] = INT_MAX;
    if (e < cnt) {
      const uint64_t x = buf[e];
      int better = 0;  // keys better than x among the unsorted tail
      for (int j = sorted; j < cnt; ++j) better += buf[j] > x ? 1 : 0;
      if (e < sorted) {
        better += e;  // exactly the sorted keys before it are better
      } else {
        int lo = 0, hi = sorted;  // sorted keys better than x form a prefix
        while (lo < hi) {
          const int mid = (lo + hi) >> 1;
          if (buf[mid] > x) {
            lo = mid + 1;
          } else {
            hi = mid;
          }
        }
        better += lo;
      }
      key[r] = x;
      rank[r] = better;
    }
  }
  __syncwarp();
#pragma unroll
  for (int r = 0; r < kKeysPerLane; ++r) {
    if (rank[r] < kp) buf[rank[r]] = key[r];
  }
  __syncwarp();
}

template <typename T, int BQ>
__global__ void __launch_bounds__(kThreads, BQ == kBQLarge ? 1 : 2) stage1_kernel(const Stage1Args a) {
  using L = Layout<T, BQ>;
  using Tile = typename TileFor<T, BQ>::type;
  extern __shared__ __align__(128) unsigned char smem[];

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int kp = a.kp;
  const int cap = a.cap;
  const int64_t q0 = static_cast<int64_t>(blockIdx.x) * BQ;
  const int q_rows = static_cast<int>(a.batch - q0 < BQ ? a.batch - q0 : BQ);
  const int64_t split = blockIdx.y;
  const int64_t split_items = a.tiles_per_split * kBN;
  const int64_t n_begin = split * split_items;
  const int64_t n_end = n_begin + split_items < a.n_items ? n_begin + split_items : a.n_items;

  T* stages = reinterpret_cast<T*>(smem);
  float* scores = reinterpret_cast<float*>(smem);  // aliases the stages after the K loop
  size_t off = operand_region_bytes<T, BQ>();
  uint64_t* cand = reinterpret_cast<uint64_t*>(smem + off);
  off += static_cast<size_t>(BQ) * cap * sizeof(uint64_t);
  uint64_t* thr_s = reinterpret_cast<uint64_t*>(smem + off);
  off += BQ * sizeof(uint64_t);
  int64_t* qoff_s = reinterpret_cast<int64_t*>(smem + off);
  off += BQ * sizeof(int64_t);
  float* qnorm_s = reinterpret_cast<float*>(smem + off);
  off += BQ * sizeof(float);
  int* cnt_s = reinterpret_cast<int*>(smem + off);
  off += BQ * sizeof(int);
  int* sorted_s = reinterpret_cast<int*>(smem + off);

  for (int r = tid; r < BQ; r += kThreads) {
    const bool valid = r < q_rows;
    qoff_s[r] = valid ? a.q_offsets[q0 + r] : 0;
    qnorm_s[r] = (valid && a.metric != kIP) ? a.q_norms[q0 + r] : 0.0f;
    thr_s[r] = 0;
    cnt_s[r] = 0;
    sorted_s[r] = 0;
  }
  __syncthreads();

  const T* q_base = static_cast<const T*>(a.q_base);
  const T* x_base = static_cast<const T*>(a.items);
  const int64_t dim = a.dim;
  const int nk = static_cast<int>((dim + L::kBK - 1) / L::kBK);

  uint4 ra[L::kAChunks];
  uint4 rb[L::kBChunks];

  for (int64_t n0 = n_begin; n0 < n_end; n0 += kBN) {
    // Global -> registers for reduction step starting at k0.
    auto load_stage = [&](int64_t k0) {
#pragma unroll
      for (int p = 0; p < L::kAChunks; ++p) {
        const int c = tid + kThreads * p, r = c / L::kChunksPerRow, col = (c % L::kChunksPerRow) * L::kVec;
        const T* row = r < q_rows ? q_base + qoff_s[r] : nullptr;
        ra[p] = load_chunk<T>(row, k0 + col, dim, a.q_vec);
      }
#pragma unroll
      for (int p = 0; p < L::kBChunks; ++p) {
        const int c = tid + kThreads * p, r = c / L::kChunksPerRow, col = (c % L::kChunksPerRow) * L::kVec;
        const int64_t n = n0 + r;
        const T* row = n < n_end ? x_base + n * a.item_stride : nullptr;
        rb[p] = load_chunk<T>(row, k0 + col, dim, a.x_vec);
      }
    };
    // Registers -> shared stage.
    auto store_stage = [&](T* stage) {
      T* As = stage;
      T* Bs = stage + BQ * L::kLDK;
#pragma unroll
      for (int p = 0; p < L::kAChunks; ++p) {
        const int c = tid + kThreads * p, r = c / L::kChunksPerRow, col = (c % L::kChunksPerRow) * L::kVec;
        store_chunk<T>(As + r * L::kLDK + col, ra[p]);
      }
#pragma unroll
      for (int p = 0; p < L::kBChunks; ++p) {
        const int c = tid + kThreads * p, r = c / L::kChunksPerRow, col = (c % L::kChunksPerRow) * L::kVec;
        store_chunk<T>(Bs + r * L::kLDK + col, rb[p]);
      }
    };

    Tile tile;
    tile.zero();
    load_stage(0);
    __syncthreads();  // the previous tile's selection has finished reading `scores`
    store_stage(stages);
    __syncthreads();
    for (int kt = 0; kt < nk; ++kt) {
      const T* cur = stages + (kt & 1) * L::kStageElems;
      const bool more = kt + 1 < nk;
      if (more) load_stage(static_cast<int64_t>(kt + 1) * L::kBK);  // overlaps the math below
      tile.step(cur, cur + BQ * L::kLDK, tid);
      // The other stage was last read in step kt - 1, which every warp finished before the
      // barrier that ended iteration kt - 1.
      if (more) store_stage(stages + ((kt + 1) & 1) * L::kStageElems);
      __syncthreads();
    }
    tile.store(scores, tid);  // every warp is past its last read of the stages
    __syncthreads();

    // Selection: warp-owned queries, lanes across the tile's items.
    for (int r = warp; r < q_rows; r += kWarps) {
      uint64_t* buf = cand + static_cast<size_t>(r) * cap;
      int cnt = cnt_s[r];
      int sorted = sorted_s[r];
      uint64_t thr = thr_s[r];
      const float qn = qnorm_s[r];
      const int64_t* ex = a.n_exclude > 0 ? a.exclude + (q0 + r) * a.n_exclude : nullptr;
#pragma unroll
      for (int j = 0; j < kBN / 32; ++j) {
        const int c = lane + 32 * j;
        const int64_t n = n0 + c;
        bool pass = false;
        uint64_t key = 0;
        if (n < n_end) {
          const float xn = a.metric != kIP ? __ldg(a.x_norms + n) : 0.0f;
          const float s = apply_metric(a.metric, scores[r * kLDC + c], qn, xn);
          key = pack_key(s, static_cast<uint32_t>(n));
          pass = key > thr;
          if (pass && ex != nullptr) pass = !sorted_contains(ex, a.n_exclude, n);
        }
        const unsigned mask = __ballot_sync(0xffffffffu, pass);
        if (pass) buf[cnt + __popc(mask & ((1u << lane) - 1u))] = key;
        cnt += __popc(mask);  // <= cap: cnt was <= cap - 32 before these 32 items
        if (cnt > cap - 32) {  // warp-uniform; cap - 32 >= kp
          __syncwarp();      // the appended keys are visible to every lane
          keep_best(buf, cnt, sorted, kp, lane);
          cnt = kp;
          sorted = kp;
          thr = buf[kp - 1];
        }
      }
      if (lane == 0) {
        cnt_s[r] = cnt;
        sorted_s[r] = sorted;
        thr_s[r] = thr;
      }
    }
  }
  __syncthreads();  // lane 0's state writes are visible to the whole warp

  for (int r = warp; r < q_rows; r += kWarps) {
    uint64_t* buf = cand + static_cast<size_t>(r) * cap;
    int cnt = cnt_s[r];
    if (cnt > kp) {  // warp-uniform
      keep_best(buf, cnt, sorted_s[r], kp, lane);
      cnt = kp;
    }
    float* out_s = a.ws_scores + (q0 + r) * a.ws_ld + split * kp;
    int64_t* out_i = a.ws_ids + (q0 + r) * a.ws_ld + split * kp;
    for (int s = lane; s < kp; s += 32) {
      if (s < cnt) {
        const uint64_t key = buf[s];
        out_s[s] = key_score(key);
        out_i[s] = key_id(key);
      } else {
        out_s[s] = -INFINITY;
        out_i[s] = -1;
      }
    }
  }
}

// L2 norm (or, when `squared`, sum of squares) of each row in float32: one warp per row,
// 16-byte loads when aligned.
template <typename T>
__global__ void row_norms_kernel(const T* __restrict__ x, int64_t rows, int64_t dim, int64_t stride, bool vec_ok,
                                 bool squared, float* __restrict__ out) {
  constexpr int kVec = 16 / static_cast<int>(sizeof(T));
  using Bits = typename std::conditional<sizeof(T) == 2, uint16_t, uint32_t>::type;
  const int lane = threadIdx.x & 31;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * (kThreads / 32) + (threadIdx.x >> 5);
  if (row >= rows) return;  // whole warps leave together
  const T* p = x + row * stride;
  float ss = 0.0f;
  int64_t tail = 0;
  if (vec_ok) {
    const int64_t chunks = dim / kVec;
    for (int64_t c = lane; c < chunks; c += 32) {
      union {
        uint4 u;
        T v[kVec];
      } tmp;
      tmp.u = __ldg(reinterpret_cast<const uint4*>(p) + c);
#pragma unroll
      for (int e = 0; e < kVec; ++e) {
        const float f = to_float(tmp.v[e]);
        ss = fmaf(f, f, ss);
      }
    }
    tail = chunks * kVec;
  }
  for (int64_t d = tail + lane; d < dim; d += 32) {
    const float f = to_float(p[d]);
    ss = fmaf(f, f, ss);
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
  if (lane == 0) out[row] = squared ? ss : sqrtf(ss);
}

template <typename T>
void launch_row_norms(uintptr_t x, int64_t rows, int64_t dim, int64_t stride, bool squared, uintptr_t out,
                      cudaStream_t stream) {
  const bool vec_ok = x % 16 == 0 && stride % (16 / static_cast<int64_t>(sizeof(T))) == 0;
  const int64_t blocks = (rows + kThreads / 32 - 1) / (kThreads / 32);
  require(blocks <= INT_MAX, "too many rows");
  row_norms_kernel<T><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
      reinterpret_cast<const T*>(x), rows, dim, stride, vec_ok, squared, reinterpret_cast<float*>(out));
  check_launch("row_norms launch");
}

size_t smem_optin() {
  int device = 0, optin = 0;
  check(cudaGetDevice(&device), "cudaGetDevice");
  check(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device),
        "cudaDeviceGetAttribute(MaxSharedMemoryPerBlockOptin)");
  return static_cast<size_t>(optin);
}

// 128 queries per block for 16-bit inputs when there are more than 64 queries and the shared
// memory fits with at least 32 keys of slack (cap = k + 64), else 64.
template <typename T>
int pick_block_queries(int64_t batch, int k, size_t optin) {
  if (sizeof(T) == 2 && batch > kBQSmall && stage1_smem_bytes<T, kBQLarge>(k + 64) <= optin) return kBQLarge;
  return kBQSmall;
}

// Candidate slots per query: k + 96 (64 keys of slack between compactions), less if the
// shared memory or kCapMax says so, never below k + 32.
template <typename T, int BQ>
int pick_cap(int k, size_t optin) {
  int cap = k + 96 < kCapMax ? k + 96 : kCapMax;
  while (cap > k + 32 && stage1_smem_bytes<T, BQ>(cap) > optin) --cap;
  return cap;
}

template <typename T, int BQ>
void launch_stage1(Stage1Args& args, int64_t n_splits, size_t optin, cudaStream_t stream) {
  args.cap = pick_cap<T, BQ>(args.kp, optin);
  const size_t smem = stage1_smem_bytes<T, BQ>(args.cap);
  if (smem > optin) {
    throw std::runtime_error("pyl2d CUDA: score_topk needs " + std::to_string(smem) +
                             " bytes of shared memory per block but the device allows " + std::to_string(optin));
  }
  check(cudaFuncSetAttribute(stage1_kernel<T, BQ>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             static_cast<int>(smem)),
        "cudaFuncSetAttribute(score_topk stage 1)");
  const int64_t q_blocks = (args.batch + BQ - 1) / BQ;
  if (q_blocks > INT_MAX) throw std::invalid_argument("pyl2d CUDA: batch too large");
  const dim3 grid(static_cast<unsigned>(q_blocks), static_cast<unsigned>(n_splits));
  stage1_kernel<T, BQ><<<grid, kThreads, smem, stream>>>(args);
  check_launch("score_topk stage 1 launch");
}

template <typename T>
void dispatch_stage1(Stage1Args& args, int64_t n_splits, cudaStream_t stream) {
  static_assert(kCapMax % 32 == 0 && kCapMax >= kMaxK + 32, "keep_best holds kCapMax keys per warp");
  args.x_vec = args.x_vec && args.item_stride % (16 / static_cast<int64_t>(sizeof(T))) == 0;
  const size_t optin = smem_optin();
  if constexpr (sizeof(T) == 2) {
    if (pick_block_queries<T>(args.batch, args.kp, optin) == kBQLarge) {
      launch_stage1<T, kBQLarge>(args, n_splits, optin, stream);
      return;
    }
  }
  launch_stage1<T, kBQSmall>(args, n_splits, optin, stream);
}

}  // namespace

int score_topk_max_k() { return kMaxK; }
int score_topk_tile_items() { return kBN; }

void row_norms(const RowNormsParams& p) {
  expect(p.x, "x", 2, {DType::kFloat32, DType::kFloat16, DType::kBFloat16});
  const Matrix x = as_matrix(p.x, "x");
  require(x.rows >= 1 && x.cols >= 1 && x.row_stride >= 0, "row_norms needs a non-empty matrix x");
  expect_vector(p.out, "out", x.rows, DType::kFloat32);
  require(x.ptr != 0 && p.out.ptr != 0, "row_norms: null x or out pointer");
  cudaStream_t s = reinterpret_cast<cudaStream_t>(p.stream);
  switch (x.dtype) {
    case DType::kFloat32: launch_row_norms<float>(x.ptr, x.rows, x.cols, x.row_stride, p.squared, p.out.ptr, s); break;
    case DType::kFloat16: launch_row_norms<__half>(x.ptr, x.rows, x.cols, x.row_stride, p.squared, p.out.ptr, s); break;
    case DType::kBFloat16:
      launch_row_norms<__nv_bfloat16>(x.ptr, x.rows, x.cols, x.row_stride, p.squared, p.out.ptr, s);
      break;
    default: throw std::invalid_argument("pyl2d CUDA: row_norms takes float32, float16 or bfloat16");
  }
}

int score_topk_block_queries(int dtype_code, int64_t k, int64_t batch) {
  require(k >= 1 && k <= kMaxK, "k must be in [1, " + std::to_string(kMaxK) + "]");
  switch (dtype_code) {
    case 0: return kBQSmall;
    case 1: return pick_block_queries<__half>(batch, static_cast<int>(k), smem_optin());
    case 2: return pick_block_queries<__nv_bfloat16>(batch, static_cast<int>(k), smem_optin());
    default: throw std::invalid_argument("pyl2d CUDA: score_topk takes float32, float16 or bfloat16");
  }
}

void score_topk_stage1(const ScoreTopkStage1Params& p) {
  expect(p.items, "items", 2, {DType::kFloat32, DType::kFloat16, DType::kBFloat16});
  const Matrix items = as_matrix(p.items, "items");
  const int64_t n_items = items.rows, dim = items.cols, item_stride = items.row_stride;
  expect(p.q_offsets, "q_offsets", 1, {DType::kInt64});
  const int64_t batch = p.q_offsets.size(0);
  require(batch >= 1, "batch (q_offsets entries) must be >= 1");
  expect_vector(p.q_offsets, "q_offsets", batch, DType::kInt64);
  const TensorArg& qb = p.q_base;
  require(qb.defined, "q_base is required");
  require(qb.dim() >= 1 && qb.strides.size() == qb.sizes.size(), "q_base must have at least one dimension");
  require(qb.type() == items.dtype, std::string("q_base has dtype ") + dtype_name(qb.type()) + " but items have " +
                                        dtype_name(items.dtype));
  require(qb.sizes.back() == dim, "q_base rows have " + std::to_string(qb.sizes.back()) +
                                      " elements but items have dimension " + std::to_string(dim));
  require(dim <= 1 || qb.strides.back() == 1, "q_base: inner stride must be 1");
  require(n_items >= 1 && n_items < (int64_t(1) << 31), "the number of items must be in [1, 2^31)");
  require(dim >= 1, "dim must be >= 1");
  require(qb.ptr != 0 && p.q_offsets.ptr != 0 && items.ptr != 0, "null query or item pointer");
  require(item_stride >= 0, "item_stride must be >= 0");
  const int metric = p.metric;
  require(metric == kIP || metric == kCosine || metric == kL2, "metric code must be 0 (ip), 1 (cosine) or 2 (l2)");
  require(metric == kIP || (p.q_norms.defined && p.x_norms.defined), "cosine and l2 need q_norms and x_norms");
  if (p.q_norms.defined) expect_vector(p.q_norms, "q_norms", batch, DType::kFloat32);
  if (p.x_norms.defined) expect_vector(p.x_norms, "x_norms", n_items, DType::kFloat32);
  const int64_t k = p.k;
  require(k >= 1 && k <= kMaxK, "k must be in [1, " + std::to_string(kMaxK) + "]");
  int64_t n_exclude = 0;
  if (p.exclude.defined) {
    expect(p.exclude, "exclude", 2, {DType::kInt64});
    n_exclude = p.exclude.size(1);
    expect_contiguous(p.exclude, "exclude", {batch, n_exclude}, {DType::kInt64});
    require(n_exclude == 0 || p.exclude.ptr != 0, "exclude pointer missing");
  }
  const int64_t tiles_per_split = p.tiles_per_split, n_splits = p.n_splits;
  require(tiles_per_split >= 1 && n_splits >= 1 && n_splits <= 65535, "bad item split");
  require(tiles_per_split * n_splits * kBN >= n_items, "the item splits do not cover every item");
  require((tiles_per_split * (n_splits - 1)) * kBN < n_items, "the last item split is empty");
  expect(p.ws_scores, "ws_scores", 2, {DType::kFloat32});
  expect(p.ws_ids, "ws_ids", 2, {DType::kInt64});
  const Matrix ws = as_matrix(p.ws_scores, "ws_scores");
  require(ws.rows == batch, "ws_scores has " + std::to_string(ws.rows) + " rows but there are " +
                                std::to_string(batch) + " queries");
  require(p.ws_ids.sizes == p.ws_scores.sizes && p.ws_ids.strides == p.ws_scores.strides,
          "ws_ids must have the sizes and strides of ws_scores");
  const int64_t ws_ld = ws.row_stride;
  require(ws.ptr != 0 && p.ws_ids.ptr != 0 && ws.cols >= n_splits * k && ws_ld >= n_splits * k,
          "workspace too small: ws_scores and ws_ids need n_splits * k columns");

  Stage1Args args;
  args.q_base = reinterpret_cast<const void*>(qb.ptr);
  args.q_offsets = p.q_offsets.data<const int64_t>();
  args.batch = batch;
  args.q_vec = p.q_vec && (qb.ptr % 16 == 0);
  args.items = reinterpret_cast<const void*>(items.ptr);
  args.n_items = n_items;
  args.dim = dim;
  args.item_stride = item_stride;
  args.x_vec = p.x_vec && (items.ptr % 16 == 0);
  args.metric = metric;
  args.q_norms = p.q_norms.defined ? p.q_norms.data<const float>() : nullptr;
  args.x_norms = p.x_norms.defined ? p.x_norms.data<const float>() : nullptr;
  args.exclude = n_exclude > 0 ? p.exclude.data<const int64_t>() : nullptr;
  args.n_exclude = n_exclude;
  args.kp = static_cast<int>(k);
  args.tiles_per_split = tiles_per_split;
  args.ws_scores = reinterpret_cast<float*>(ws.ptr);
  args.ws_ids = p.ws_ids.data<int64_t>();
  args.ws_ld = ws_ld;
  cudaStream_t s = reinterpret_cast<cudaStream_t>(p.stream);
  switch (items.dtype) {
    case DType::kFloat32:
      dispatch_stage1<float>(args, n_splits, s);
      break;
    case DType::kFloat16:
      dispatch_stage1<__half>(args, n_splits, s);
      break;
    case DType::kBFloat16:
      dispatch_stage1<__nv_bfloat16>(args, n_splits, s);
      break;
    default:
      throw std::invalid_argument("pyl2d CUDA: score_topk takes float32, float16 or bfloat16");
  }
}

}  // namespace cuda
}  // namespace pyl2d
