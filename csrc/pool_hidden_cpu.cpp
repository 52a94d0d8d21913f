// pool_hidden on CPU: one vector per sequence from hidden states [B, T, D] under a 0/1
// mask [B, T] (uint8, prepared by the Python wrapper): the last real token (left or right
// padding) or the masked mean, accumulated in float32, optionally L2-normalised like
// F.normalize (eps 1e-12), stored in the hidden dtype.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include <pybind11/pybind11.h>

#include "codes.h"
#include "native_args.h"
#include "registry.h"
#include "parallel.h"
#include "simd_dot.h"
#include "tensor_arg.h"

namespace py = pybind11;

namespace pyl2d {
namespace {

using codes::kNormEps;
constexpr int64_t kChunk = 512;  // D is split in chunks so a single long sequence uses every thread

// float -> float16 bits, round to nearest even (overflow to inf).
uint16_t float_to_half(float value) {
  uint32_t f;
  std::memcpy(&f, &value, 4);
  const uint32_t sign = (f >> 16) & 0x8000u;
  f &= 0x7fffffffu;
  uint32_t out;
  if (f >= (127u + 16u) << 23) {  // >= 2^16: inf (or NaN)
    out = f > 0x7f800000u ? 0x7e00u : 0x7c00u;
  } else if (f < 113u << 23) {  // half subnormal or zero: let the FPU round at 2^-24 steps
    const uint32_t magic_bits = ((127u - 15u) + (23u - 10u) + 1u) << 23;
    float magic, v;
    std::memcpy(&magic, &magic_bits, 4);
    std::memcpy(&v, &f, 4);
    v += magic;
    std::memcpy(&out, &v, 4);
    out -= magic_bits;
  } else {
    const uint32_t mant_odd = (f >> 13) & 1u;
    f += (static_cast<uint32_t>(15 - 127) << 23) + 0xfffu + mant_odd;
    out = f >> 13;
  }
  return static_cast<uint16_t>(sign | out);
}

// float -> bfloat16 bits, round to nearest even (inputs are finite).
uint16_t float_to_bf16(float value) {
  uint32_t f;
  std::memcpy(&f, &value, 4);
  f += 0x7fffu + ((f >> 16) & 1u);
  return static_cast<uint16_t>(f >> 16);
}

void store_row(const float* src, int64_t n, DType dtype, void* dst) {
  if (dtype == DType::kFloat32) {
    std::memcpy(dst, src, static_cast<size_t>(n) * 4);
  } else if (dtype == DType::kFloat16) {
    uint16_t* h = static_cast<uint16_t*>(dst);
    for (int64_t i = 0; i < n; ++i) h[i] = float_to_half(src[i]);
  } else {
    uint16_t* h = static_cast<uint16_t*>(dst);
    for (int64_t i = 0; i < n; ++i) h[i] = float_to_bf16(src[i]);
  }
}

}  // namespace

// pool_hidden's named arguments (pyl2d/ops/pool_hidden/cpu.py; bound below).
struct PoolHiddenParams {
  TensorArg hidden;          // [B, T, D] float32/float16/bfloat16, unit inner stride
  TensorArg attention_mask;  // [B, T] uint8 0/1, contiguous
  TensorArg out;             // [B, D] in the hidden dtype, unit inner stride; written
  int mode = 0;              // pyl2d._codes.POOL_MODES
  bool normalize = false;
  int64_t num_threads = 0;
};

namespace {

void pool_hidden_cpu(const PoolHiddenParams& a) {
  expect(a.hidden, "hidden", 3);
  expect(a.attention_mask, "attention_mask", 2, {DType::kUInt8});
  expect(a.out, "out", 2);
  const int64_t B = a.hidden.size(0), T = a.hidden.size(1), D = a.hidden.size(2);
  if (D > 1 && a.hidden.stride(2) != 1) throw std::invalid_argument("hidden: inner stride must be 1");
  expect_sizes(a.attention_mask, "attention_mask", {B, T});
  expect_contiguous(a.attention_mask, "attention_mask");
  expect_sizes(a.out, "out", {B, D});
  if (a.out.dtype != a.hidden.dtype) throw std::invalid_argument("out must have the hidden dtype");
  if (D > 1 && a.out.stride(1) != 1) throw std::invalid_argument("out: inner stride must be 1");
  const uintptr_t hidden_ptr = a.hidden.ptr, mask_ptr = a.attention_mask.ptr, out_ptr = a.out.ptr;
  const int64_t stride_b = a.hidden.stride(0), stride_t = a.hidden.stride(1), out_stride = a.out.stride(0);
  const int mode = a.mode;
  const bool normalize = a.normalize;
  const int64_t num_threads = a.num_threads;
  const DType dtype = a.hidden.type();
  if (dtype != DType::kFloat32 && dtype != DType::kFloat16 && dtype != DType::kBFloat16)
    throw std::invalid_argument(std::string("hidden must be float32, float16 or bfloat16, got ") + dtype_name(dtype));
  if (hidden_ptr == 0 || mask_ptr == 0 || out_ptr == 0) throw std::invalid_argument("null data pointer");
  if (B < 1 || T < 1 || D < 1) throw std::invalid_argument("hidden must be non-empty");
  if (stride_b < 0 || stride_t < 0 || out_stride < D) throw std::invalid_argument("bad strides");
  if (mode != codes::kPoolLast && mode != codes::kPoolMean) throw std::invalid_argument("pool_hidden_cpu: unknown mode code");
  const bool mean = mode == codes::kPoolMean;

  const uint8_t* mask = reinterpret_cast<const uint8_t*>(mask_ptr);
  std::vector<int64_t> last(static_cast<size_t>(B), -1), count(static_cast<size_t>(B), 0);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t t = 0; t < T; ++t)
      if (mask[b * T + t]) {
        last[b] = t;
        ++count[b];
      }
    if (count[b] == 0)
      throw std::invalid_argument("attention_mask has a row with no real token (all zero): row " + std::to_string(b));
  }

  const simd::Kernels& K = simd::kernels();
  const size_t esize = dtype == DType::kFloat32 ? 4 : 2;
  const char* base = reinterpret_cast<const char*>(hidden_ptr);
  std::vector<float> pooled(static_cast<size_t>(B * D));
  const int64_t n_chunks = (D + kChunk - 1) / kChunk;
  const int threads = resolve_threads(num_threads);
  std::vector<std::vector<float>> tmps(static_cast<size_t>(threads), std::vector<float>(static_cast<size_t>(kChunk)));
  parallel_for(B * n_chunks, threads, [&](int64_t u, int worker) {
    std::vector<float>& tmp = tmps[static_cast<size_t>(worker)];
    const int64_t b = u / n_chunks, d0 = (u % n_chunks) * kChunk;
    const int64_t len = std::min(kChunk, D - d0);
    float* acc = pooled.data() + b * D + d0;
    auto row = [&](int64_t t) { return base + (b * stride_b + t * stride_t + d0) * static_cast<int64_t>(esize); };
    if (!mean) {
      K.to_f32(row(last[b]), dtype, len, acc);
    } else {
      std::fill(acc, acc + len, 0.f);
      for (int64_t t = 0; t < T; ++t) {
        if (!mask[b * T + t]) continue;
        K.to_f32(row(t), dtype, len, tmp.data());
        for (int64_t i = 0; i < len; ++i) acc[i] += tmp[i];
      }
      const float c = static_cast<float>(count[b]);
      for (int64_t i = 0; i < len; ++i) acc[i] /= c;
    }
  });

  char* out = reinterpret_cast<char*>(out_ptr);
  for (int64_t b = 0; b < B; ++b) {
    float* row = pooled.data() + b * D;
    if (normalize) {
      const float norm = std::max(std::sqrt(K.sumsq(row, D)), kNormEps);
      for (int64_t i = 0; i < D; ++i) row[i] /= norm;
    }
    store_row(row, D, dtype, out + b * out_stride * static_cast<int64_t>(esize));
  }
}

}  // namespace
}  // namespace pyl2d

PYL2D_REGISTER_BINDINGS(pool_hidden_cpu, [](py::module_& m) {
  using pyl2d::PoolHiddenParams;
  pyl2d::bind_params<PoolHiddenParams>(m, "PoolHiddenParams", "Named arguments of pool_hidden_cpu.")
      .def_readwrite("hidden", &PoolHiddenParams::hidden)
      .def_readwrite("attention_mask", &PoolHiddenParams::attention_mask)
      .def_readwrite("out", &PoolHiddenParams::out)
      .def_readwrite("mode", &PoolHiddenParams::mode)
      .def_readwrite("normalize", &PoolHiddenParams::normalize)
      .def_readwrite("num_threads", &PoolHiddenParams::num_threads);
  m.def("pool_hidden_cpu", &pyl2d::pool_hidden_cpu, py::call_guard<py::gil_scoped_release>(), py::arg("params"),
        "Pool hidden [B,T,D] under a 0/1 mask into params.out (internal; use pyl2d.pool_hidden).");
});
