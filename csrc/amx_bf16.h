// Intel AMX tile kernel for bfloat16 inputs: a 32-item x 32-query block of dot products
// per call, float32 accumulation (TDPBF16PS multiplies bf16 pairs exactly and adds in fp32).
//
// Compiled per function with target attributes and used only after a run-time check of
// CPUID, the OS (XCR0) and the Linux permission request for tile data, so the module still
// runs everywhere else.
#pragma once
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__) && \
    ((!defined(__clang__) && __GNUC__ >= 11) || (defined(__clang__) && __clang_major__ >= 12))
#define PYL2D_HAVE_AMX 1
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace pyl2d {
namespace amx {

constexpr int kItems = 32;    // items per block (two A tiles of 16 rows)
constexpr int kQueries = 32;  // queries per block (two B tiles of 16 columns)
constexpr int kDStep = 32;    // bf16 values per tile row

#ifdef PYL2D_HAVE_AMX
#define PYL2D_AMX_TARGET __attribute__((target("amx-tile,amx-bf16")))

inline bool detect() {
  unsigned a, b, c, d;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  const bool amx_bf16 = (d >> 22) & 1u, amx_tile = (d >> 24) & 1u;
  if (!amx_bf16 || !amx_tile) return false;
  if (!__get_cpuid(1, &a, &b, &c, &d) || !((c >> 27) & 1u)) return false;  // OSXSAVE
  unsigned lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  if (((lo >> 17) & 3u) != 3u) return false;  // XTILECFG and XTILEDATA enabled by the OS
  // Linux hands out the tile data state only on request (arch_prctl ARCH_REQ_XCOMP_PERM).
  constexpr long kReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kReqXcompPerm, kXfeatureXtiledata) == 0;
}

// Whether the AMX path can run here (PYL2D_AMX=0 in the environment turns it off).
inline bool available() {
  static const bool ok = [] {
    const char* env = std::getenv("PYL2D_AMX");
    if (env && std::string(env) == "0") return false;
    return detect();
  }();
  return ok;
}

struct alignas(64) TileConfig {
  uint8_t palette_id;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};

// Per thread, before any block: eight 16 x 64-byte tiles. The config lives in static
// storage: GCC's _tile_loadconfig declares only 8 bytes of its operand as read, so stores
// into a stack buffer could be dropped as dead.
PYL2D_AMX_TARGET inline void configure() {
  static const TileConfig cfg = [] {
    TileConfig c;
    std::memset(&c, 0, sizeof(c));
    c.palette_id = 1;
    for (int t = 0; t < 8; ++t) {
      c.colsb[t] = 64;
      c.rows[t] = 16;
    }
    return c;
  }();
  __asm__ volatile("" ::: "memory");
  _tile_loadconfig(&cfg);
}

PYL2D_AMX_TARGET inline void release() { _tile_release(); }

// Where a block's 32 items are: A tile rows 0-15 at a0 and 16-31 at a1, `stride` bytes
// between rows, dimension d at element offset d * step (packed tiles: step 32, stride 64;
// plain item rows: step 1, stride = the row stride in bytes).
struct ItemTiles {
  const uint16_t* a0;
  const uint16_t* a1;
  int64_t step;
  int64_t stride;
};

// st[j * lds + i] (+)= sum_{d < len} x_j[d] * q_i[d] for j < 32 items, i < 32 queries.
// qp: the 32 queries packed by pack_queries (two groups of 16 queries, `qstride` values
// apart); x and qp already offset to the first dimension; len is a multiple of 32. With
// accumulate, st holds the earlier chunks' sums.
PYL2D_AMX_TARGET inline void block(const ItemTiles& x, const uint16_t* qp, int64_t qstride, int64_t len, float* st,
                                   int64_t lds, bool accumulate) {
  const uint16_t* qp1 = qp + 16 * qstride;
  const int64_t sstride = lds * 4;
  if (accumulate) {
    _tile_loadd(0, st, sstride);
    _tile_loadd(1, st + 16, sstride);
    _tile_loadd(2, st + 16 * lds, sstride);
    _tile_loadd(3, st + 16 * lds + 16, sstride);
  } else {
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
  }
  for (int64_t d = 0; d < len; d += kDStep) {
    _tile_loadd(4, x.a0 + d * x.step, x.stride);
    _tile_loadd(5, x.a1 + d * x.step, x.stride);
    _tile_loadd(6, qp + d * 16, 64);
    _tile_loadd(7, qp1 + d * 16, 64);
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
  _tile_stored(0, st, sstride);
  _tile_stored(1, st + 16, sstride);
  _tile_stored(2, st + 16 * lds, sstride);
  _tile_stored(3, st + 16 * lds + 16, sstride);
}
#else
inline bool detect() { return false; }
inline bool available() { return false; }
inline void configure() {}
inline void release() {}
struct ItemTiles {
  const uint16_t* a0;
  const uint16_t* a1;
  int64_t step;
  int64_t stride;
};
inline void block(const ItemTiles&, const uint16_t*, int64_t, int64_t, float*, int64_t, bool) {}
#endif

// Pack bf16 query rows for B tiles: per group of 16 queries, pair p of dimensions holds
// (q0[2p], q0[2p+1], q1[2p], q1[2p+1], ...): out[g][p][16][2], zero-padded to `dpad`
// dimensions and to whole groups. `rows(i)` returns query i's bf16 row or null past the end.
template <class RowFn>
void pack_queries(RowFn rows, int64_t n_queries, int64_t D, int64_t dpad, uint16_t* out) {
  const int64_t groups = (n_queries + 15) / 16;
  std::memset(out, 0, static_cast<size_t>(groups * 16 * dpad) * 2);
  for (int64_t i = 0; i < n_queries; ++i) {
    const uint16_t* q = rows(i);
    uint16_t* g = out + (i / 16) * 16 * dpad;
    const int64_t lane = i % 16;
    for (int64_t d = 0; d < D; ++d) g[(d / 2) * 32 + lane * 2 + (d & 1)] = q[d];
  }
}

// Pack up to 32 bf16 item rows for A tiles: per step of 32 dimensions, two contiguous
// 16-row x 64-byte tiles (rows 0-15, then 16-31): out[dpad/32][2][16][32], zero-padded
// in rows and dimensions. Contiguous tiles avoid the cache-set aliasing of rows whose
// stride is a multiple of 4 KiB.
inline void pack_items(const uint16_t* x, int64_t ldx, int rows, int64_t D, int64_t dpad, uint16_t* out) {
  const int64_t steps = dpad / kDStep;
  for (int r = 0; r < kItems; ++r) {
    uint16_t* dst = out + (r / 16) * 512 + (r % 16) * 32;
    if (r >= rows) {
      for (int64_t s = 0; s < steps; ++s) std::memset(dst + s * 1024, 0, 64);
      continue;
    }
    const uint16_t* src = x + r * ldx;
    const int64_t full = D / kDStep;
    for (int64_t s = 0; s < full; ++s) std::memcpy(dst + s * 1024, src + s * kDStep, 64);
    if (full < steps) {
      const int64_t rem = D - full * kDStep;
      std::memset(dst + full * 1024, 0, 64);
      std::memcpy(dst + full * 1024, src + full * kDStep, static_cast<size_t>(rem) * 2);
    }
  }
}

}  // namespace amx
}  // namespace pyl2d
