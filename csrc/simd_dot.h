// SIMD building blocks for the CPU scoring kernels: blocked dot products between rows of
// two float32 matrices, fp16/bf16 -> fp32 row conversion, sums of squares and the
// threshold scan of top-k selection.
//
// The module is compiled for baseline x86-64 (or aarch64), so the fast variants are
// compiled per function for AVX-512 and AVX2+FMA (GCC/Clang target attributes) and chosen
// at run time with __builtin_cpu_supports; a portable variant covers everything else.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "tensor_arg.h"

// GCC 12 flags its own _mm512_undefined_*() placeholders inside intrinsics as uninitialized.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define PYL2D_SIMD_X86 1
#include <immintrin.h>
#endif

namespace pyl2d {
namespace simd {

// s[i*lds + j] (+)= sum_{d<len} q[i*ldq + d] * x[j*ldx + d] for i < nq, j < nx.
using DotsFn = void (*)(const float* q, int64_t ldq, int nq, const float* x, int64_t ldx, int nx, int64_t len,
                        float* s, int64_t lds, bool accumulate);
// Same as DotsFn with item rows x stored as float16 or bfloat16, widened in registers
// (no converted copy: the small-batch path, where a copy would cost a second pass).
using Dots16Fn = void (*)(const float* q, int64_t ldq, int nq, const uint16_t* x, DType x_dtype, int64_t ldx, int nx,
                          int64_t len, float* s, int64_t lds, bool accumulate);
// dst[0..n) = float(src[0..n)) for a float32/float16/bfloat16 source.
using ToF32Fn = void (*)(const void* src, DType dtype, int64_t n, float* dst);
// sum of squares of x[0..n).
using SumSqFn = float (*)(const float* x, int64_t n);
// The first j in [from, n) with s[j] >= thr, or n: top-k selection skips the scores that
// cannot enter a query's top k a vector at a time (NaN never qualifies).
using NextAtLeastFn = int64_t (*)(const float* s, int64_t from, int64_t n, float thr);

struct Kernels {
  const char* name;
  DotsFn dots;
  Dots16Fn dots16;  // null where the variant has none
  ToF32Fn to_f32;
  SumSqFn sumsq;
  NextAtLeastFn next_at_least;
};

// ----------------------------------------------------------------------------------------
// Portable variant: plain loops the compiler vectorises for the baseline ISA.
namespace portable {

inline float dot(const float* a, const float* b, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t d = 0;
  for (; d + 8 <= n; d += 8)
    for (int l = 0; l < 8; ++l) acc[l] += a[d + l] * b[d + l];
  float tail = 0.f;
  for (; d < n; ++d) tail += a[d] * b[d];
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail;
}

inline void dots(const float* q, int64_t ldq, int nq, const float* x, int64_t ldx, int nx, int64_t len, float* s,
                 int64_t lds, bool accumulate) {
  for (int j = 0; j < nx; ++j)
    for (int i = 0; i < nq; ++i) {
      const float r = dot(q + i * ldq, x + j * ldx, len);
      s[i * lds + j] = accumulate ? s[i * lds + j] + r : r;
    }
}

inline void to_f32(const void* src, DType dtype, int64_t n, float* dst) {
  if (dtype == DType::kFloat32) {
    std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
  } else if (dtype == DType::kFloat16) {
    const uint16_t* h = static_cast<const uint16_t*>(src);
    for (int64_t i = 0; i < n; ++i) dst[i] = half_to_float(h[i]);
  } else {
    const uint16_t* h = static_cast<const uint16_t*>(src);
    for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_float(h[i]);
  }
}

inline float sumsq(const float* x, int64_t n) { return dot(x, x, n); }

inline int64_t next_at_least(const float* s, int64_t from, int64_t n, float thr) {
  while (from < n && !(s[from] >= thr)) ++from;
  return from;
}

}  // namespace portable

#ifdef PYL2D_SIMD_X86
// ----------------------------------------------------------------------------------------
// AVX-512 variant: micro-kernel of MQ queries x NX items, 16-float lanes along D.
#define PYL2D_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma,f16c")))
namespace avx512 {

// Software prefetch distance (floats) for the query rows, which stream from L2: measured
// 0/32/64/96/128/256, 64 was best (about +10% at B >= 256).
constexpr int64_t kPrefetchQ = 64;

// Item row loaders: 16 values (or the first `m` of them) widened to fp32 lanes.
struct LoadF32 {
  using T = float;
  PYL2D_AVX512 static __m512 load(const T* p) { return _mm512_loadu_ps(p); }
  PYL2D_AVX512 static __m512 load(__mmask16 m, const T* p) { return _mm512_maskz_loadu_ps(m, p); }
};
struct LoadF16 {
  using T = uint16_t;
  PYL2D_AVX512 static __m512 load(const T* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  PYL2D_AVX512 static __m512 load(__mmask16 m, const T* p) { return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p)); }
};
struct LoadBF16 {
  using T = uint16_t;
  PYL2D_AVX512 static __m512 load(const T* p) {
    const __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    return _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
  }
  PYL2D_AVX512 static __m512 load(__mmask16 m, const T* p) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p)), 16));
  }
};

// The horizontal sums of four vectors at once: (sum a, sum b, sum c, sum d), in about a
// third of the shuffles of four separate reductions.
PYL2D_AVX512 inline __m128 reduce4(__m512 a, __m512 b, __m512 c, __m512 d) {
  // Within each 128-bit lane: pairwise interleave and add, twice.
  const __m512 ab = _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));  // a0+a2 b0+b2 a1+a3 b1+b3
  const __m512 cd = _mm512_add_ps(_mm512_unpacklo_ps(c, d), _mm512_unpackhi_ps(c, d));
  const __m512 abcd = _mm512_add_ps(
      _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(ab), _mm512_castps_pd(cd))),
      _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(ab), _mm512_castps_pd(cd))));  // a b c d per lane
  // Add the four 128-bit lanes.
  const __m256 half = _mm256_add_ps(_mm512_castps512_ps256(abcd),
                                    _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(abcd), 1)));
  return _mm_add_ps(_mm256_castps256_ps128(half), _mm256_extractf128_ps(half, 1));
}

template <class LX, int MQ, int NX>
PYL2D_AVX512 inline void micro(const float* q, int64_t ldq, const typename LX::T* x, int64_t ldx, int64_t len,
                               float* s, int64_t lds, bool accumulate) {
  __m512 acc[MQ][NX];
#pragma GCC unroll 8
  for (int i = 0; i < MQ; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NX; ++j) acc[i][j] = _mm512_setzero_ps();
  int64_t d = 0;
  for (; d + 16 <= len; d += 16) {
    __m512 xv[NX];
#pragma GCC unroll 8
    for (int j = 0; j < NX; ++j) xv[j] = LX::load(x + j * ldx + d);
#pragma GCC unroll 8
    for (int i = 0; i < MQ; ++i) {
      const __m512 qv = _mm512_loadu_ps(q + i * ldq + d);
      // The query rows stream from L2 (the item rows stay in L1 across query blocks).
      if (MQ > 1) _mm_prefetch(reinterpret_cast<const char*>(q + i * ldq + d + kPrefetchQ), _MM_HINT_T0);
#pragma GCC unroll 8
      for (int j = 0; j < NX; ++j) acc[i][j] = _mm512_fmadd_ps(qv, xv[j], acc[i][j]);
    }
  }
  if (d < len) {
    const __mmask16 m = static_cast<__mmask16>((1u << (len - d)) - 1u);
    __m512 xv[NX];
#pragma GCC unroll 8
    for (int j = 0; j < NX; ++j) xv[j] = LX::load(m, x + j * ldx + d);
#pragma GCC unroll 8
    for (int i = 0; i < MQ; ++i) {
      const __m512 qv = _mm512_maskz_loadu_ps(m, q + i * ldq + d);
#pragma GCC unroll 8
      for (int j = 0; j < NX; ++j) acc[i][j] = _mm512_fmadd_ps(qv, xv[j], acc[i][j]);
    }
  }
  if constexpr (MQ == 4) {
#pragma GCC unroll 8
    for (int j = 0; j < NX; ++j) {
      alignas(16) float r[4];
      _mm_store_ps(r, reduce4(acc[0][j], acc[1][j], acc[2][j], acc[3][j]));
#pragma GCC unroll 4
      for (int i = 0; i < 4; ++i) s[i * lds + j] = accumulate ? s[i * lds + j] + r[i] : r[i];
    }
  } else {
#pragma GCC unroll 8
    for (int i = 0; i < MQ; ++i)
#pragma GCC unroll 8
      for (int j = 0; j < NX; ++j) {
        const float r = _mm512_reduce_add_ps(acc[i][j]);
        s[i * lds + j] = accumulate ? s[i * lds + j] + r : r;
      }
  }
}

constexpr int kMQ = 4;
constexpr int kNX = 6;

template <class LX, int MQ>
PYL2D_AVX512 inline void micro_nx(int nx, const float* q, int64_t ldq, const typename LX::T* x, int64_t ldx,
                                  int64_t len, float* s, int64_t lds, bool accumulate) {
  switch (nx) {
    case 6: micro<LX, MQ, 6>(q, ldq, x, ldx, len, s, lds, accumulate); break;
    case 5: micro<LX, MQ, 5>(q, ldq, x, ldx, len, s, lds, accumulate); break;
    case 4: micro<LX, MQ, 4>(q, ldq, x, ldx, len, s, lds, accumulate); break;
    case 3: micro<LX, MQ, 3>(q, ldq, x, ldx, len, s, lds, accumulate); break;
    case 2: micro<LX, MQ, 2>(q, ldq, x, ldx, len, s, lds, accumulate); break;
    default: micro<LX, MQ, 1>(q, ldq, x, ldx, len, s, lds, accumulate); break;
  }
}

template <class LX>
PYL2D_AVX512 inline void dots_t(const float* q, int64_t ldq, int nq, const typename LX::T* x, int64_t ldx, int nx,
                                int64_t len, float* s, int64_t lds, bool accumulate) {
  for (int j = 0; j < nx; j += kNX) {
    const int bx = std::min(kNX, nx - j);
    for (int i = 0; i < nq; i += kMQ) {
      const int bq = std::min(kMQ, nq - i);
      const float* qi = q + i * ldq;
      const typename LX::T* xj = x + j * ldx;
      float* sij = s + i * lds + j;
      switch (bq) {
        case 4: micro_nx<LX, 4>(bx, qi, ldq, xj, ldx, len, sij, lds, accumulate); break;
        case 3: micro_nx<LX, 3>(bx, qi, ldq, xj, ldx, len, sij, lds, accumulate); break;
        case 2: micro_nx<LX, 2>(bx, qi, ldq, xj, ldx, len, sij, lds, accumulate); break;
        default: micro_nx<LX, 1>(bx, qi, ldq, xj, ldx, len, sij, lds, accumulate); break;
      }
    }
  }
}

PYL2D_AVX512 inline void dots(const float* q, int64_t ldq, int nq, const float* x, int64_t ldx, int nx, int64_t len,
                              float* s, int64_t lds, bool accumulate) {
  dots_t<LoadF32>(q, ldq, nq, x, ldx, nx, len, s, lds, accumulate);
}

PYL2D_AVX512 inline void dots16(const float* q, int64_t ldq, int nq, const uint16_t* x, DType x_dtype, int64_t ldx,
                                int nx, int64_t len, float* s, int64_t lds, bool accumulate) {
  if (x_dtype == DType::kFloat16)
    dots_t<LoadF16>(q, ldq, nq, x, ldx, nx, len, s, lds, accumulate);
  else
    dots_t<LoadBF16>(q, ldq, nq, x, ldx, nx, len, s, lds, accumulate);
}

PYL2D_AVX512 inline void to_f32(const void* src, DType dtype, int64_t n, float* dst) {
  if (dtype == DType::kFloat32) {
    std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
    return;
  }
  const uint16_t* h = static_cast<const uint16_t*>(src);
  int64_t i = 0;
  if (dtype == DType::kFloat16) {
    for (; i + 16 <= n; i += 16)
      _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(h + i))));
    if (i < n) {
      const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1u);
      _mm512_mask_storeu_ps(dst + i, m, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, h + i)));
    }
  } else {
    for (; i + 16 <= n; i += 16) {
      const __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(h + i)));
      _mm512_storeu_ps(dst + i, _mm512_castsi512_ps(_mm512_slli_epi32(w, 16)));
    }
    if (i < n) {
      const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1u);
      const __m512i w = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, h + i));
      _mm512_mask_storeu_ps(dst + i, m, _mm512_castsi512_ps(_mm512_slli_epi32(w, 16)));
    }
  }
}

PYL2D_AVX512 inline float sumsq(const float* x, int64_t n) {
  float r = 0.f;
  micro<LoadF32, 1, 1>(x, 0, x, 0, n, &r, 0, false);
  return r;
}

PYL2D_AVX512 inline int64_t next_at_least(const float* s, int64_t from, int64_t n, float thr) {
  const __m512 t = _mm512_set1_ps(thr);
  for (; from + 16 <= n; from += 16) {
    const __mmask16 m = _mm512_cmp_ps_mask(_mm512_loadu_ps(s + from), t, _CMP_GE_OQ);
    if (m) return from + __builtin_ctz(m);
  }
  return portable::next_at_least(s, from, n, thr);
}

}  // namespace avx512

// ----------------------------------------------------------------------------------------
// AVX2 + FMA variant: 8-float lanes, 4 x 3 accumulators (16 ymm registers).
#define PYL2D_AVX2 __attribute__((target("avx2,fma,f16c")))
namespace avx2 {

PYL2D_AVX2 inline float hsum(__m256 v) {
  __m128 lo = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
  return _mm_cvtss_f32(lo);
}

PYL2D_AVX2 inline __m256i tail_mask(int64_t rem) {
  alignas(32) static const int32_t table[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(table + 8 - rem));
}

template <int MQ, int NX>
PYL2D_AVX2 inline void micro(const float* q, int64_t ldq, const float* x, int64_t ldx, int64_t len, float* s,
                             int64_t lds, bool accumulate) {
  __m256 acc[MQ][NX];
#pragma GCC unroll 8
  for (int i = 0; i < MQ; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NX; ++j) acc[i][j] = _mm256_setzero_ps();
  int64_t d = 0;
  for (; d + 8 <= len; d += 8) {
    __m256 xv[NX];
#pragma GCC unroll 8
    for (int j = 0; j < NX; ++j) xv[j] = _mm256_loadu_ps(x + j * ldx + d);
#pragma GCC unroll 8
    for (int i = 0; i < MQ; ++i) {
      const __m256 qv = _mm256_loadu_ps(q + i * ldq + d);
#pragma GCC unroll 8
      for (int j = 0; j < NX; ++j) acc[i][j] = _mm256_fmadd_ps(qv, xv[j], acc[i][j]);
    }
  }
  if (d < len) {
    const __m256i m = tail_mask(len - d);
    __m256 xv[NX];
#pragma GCC unroll 8
    for (int j = 0; j < NX; ++j) xv[j] = _mm256_maskload_ps(x + j * ldx + d, m);
#pragma GCC unroll 8
    for (int i = 0; i < MQ; ++i) {
      const __m256 qv = _mm256_maskload_ps(q + i * ldq + d, m);
#pragma GCC unroll 8
      for (int j = 0; j < NX; ++j) acc[i][j] = _mm256_fmadd_ps(qv, xv[j], acc[i][j]);
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < MQ; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NX; ++j) {
      const float r = hsum(acc[i][j]);
      s[i * lds + j] = accumulate ? s[i * lds + j] + r : r;
    }
}

constexpr int kMQ = 4;
constexpr int kNX = 3;

template <int MQ>
PYL2D_AVX2 inline void micro_nx(int nx, const float* q, int64_t ldq, const float* x, int64_t ldx, int64_t len,
                                float* s, int64_t lds, bool accumulate) {
  switch (nx) {
    case 3: micro<MQ, 3>(q, ldq, x, ldx, len, s, lds, accumulate); break;
    case 2: micro<MQ, 2>(q, ldq, x, ldx, len, s, lds, accumulate); break;
    default: micro<MQ, 1>(q, ldq, x, ldx, len, s, lds, accumulate); break;
  }
}

PYL2D_AVX2 inline void dots(const float* q, int64_t ldq, int nq, const float* x, int64_t ldx, int nx, int64_t len,
                            float* s, int64_t lds, bool accumulate) {
  for (int j = 0; j < nx; j += kNX) {
    const int bx = std::min(kNX, nx - j);
    for (int i = 0; i < nq; i += kMQ) {
      const int bq = std::min(kMQ, nq - i);
      const float* qi = q + i * ldq;
      const float* xj = x + j * ldx;
      float* sij = s + i * lds + j;
      switch (bq) {
        case 4: micro_nx<4>(bx, qi, ldq, xj, ldx, len, sij, lds, accumulate); break;
        case 3: micro_nx<3>(bx, qi, ldq, xj, ldx, len, sij, lds, accumulate); break;
        case 2: micro_nx<2>(bx, qi, ldq, xj, ldx, len, sij, lds, accumulate); break;
        default: micro_nx<1>(bx, qi, ldq, xj, ldx, len, sij, lds, accumulate); break;
      }
    }
  }
}

PYL2D_AVX2 inline void to_f32(const void* src, DType dtype, int64_t n, float* dst) {
  if (dtype == DType::kFloat32) {
    std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
    return;
  }
  const uint16_t* h = static_cast<const uint16_t*>(src);
  int64_t i = 0;
  if (dtype == DType::kFloat16) {
    for (; i + 8 <= n; i += 8)
      _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h + i))));
    for (; i < n; ++i) dst[i] = half_to_float(h[i]);
  } else {
    for (; i + 8 <= n; i += 8) {
      const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h + i)));
      _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(_mm256_slli_epi32(w, 16)));
    }
    for (; i < n; ++i) dst[i] = bf16_to_float(h[i]);
  }
}

PYL2D_AVX2 inline float sumsq(const float* x, int64_t n) {
  float r = 0.f;
  micro<1, 1>(x, 0, x, 0, n, &r, 0, false);
  return r;
}

PYL2D_AVX2 inline int64_t next_at_least(const float* s, int64_t from, int64_t n, float thr) {
  const __m256 t = _mm256_set1_ps(thr);
  for (; from + 8 <= n; from += 8) {
    const int m = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(s + from), t, _CMP_GE_OQ));
    if (m) return from + __builtin_ctz(static_cast<unsigned>(m));
  }
  return portable::next_at_least(s, from, n, thr);
}

}  // namespace avx2
#endif  // PYL2D_SIMD_X86

// ----------------------------------------------------------------------------------------
// Run-time choice. PYL2D_SIMD=portable|avx2|avx512 in the environment caps the choice
// (for tests and comparisons); an unsupported request falls back to the best available.

// The variants this CPU can run, best first ("portable" always last).
inline std::vector<std::string> supported_variants() {
  std::vector<std::string> out;
#ifdef PYL2D_SIMD_X86
  __builtin_cpu_init();
  const bool has512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
                      __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  const bool has2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  if (has512) out.push_back("avx512");
  if (has2) out.push_back("avx2");
#endif
  out.push_back("portable");
  return out;
}

inline Kernels select_kernels(const char* cap) {
  const Kernels portable_k{"portable", portable::dots, nullptr, portable::to_f32, portable::sumsq,
                           portable::next_at_least};
#ifdef PYL2D_SIMD_X86
  const Kernels avx2_k{"avx2", avx2::dots, nullptr, avx2::to_f32, avx2::sumsq, avx2::next_at_least};
  const Kernels avx512_k{"avx512", avx512::dots, avx512::dots16, avx512::to_f32, avx512::sumsq,
                         avx512::next_at_least};
  const std::vector<std::string> have = supported_variants();
  const auto supports = [&](const char* v) { return std::find(have.begin(), have.end(), v) != have.end(); };
  const std::string want = cap ? cap : "";
  if (want == "portable") return portable_k;
  if (want == "avx2") return supports("avx2") ? avx2_k : portable_k;
  if (supports("avx512")) return avx512_k;
  if (supports("avx2")) return avx2_k;
#else
  (void)cap;
#endif
  return portable_k;
}

inline const Kernels& kernels() {
  static const Kernels k = select_kernels(std::getenv("PYL2D_SIMD"));
  return k;
}

}  // namespace simd
}  // namespace pyl2d

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
