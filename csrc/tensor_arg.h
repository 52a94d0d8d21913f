// How tensors cross the Python/C++ boundary without libtorch: a raw pointer, sizes and
// element strides, and a dtype code. Python (pyl2d/_ext.py) builds these; outputs are
// always allocated by torch on the Python side and passed in as pointers.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>

namespace pyl2d {

// pyl2d._codes.DTYPES (checked by tests/test_codes.py through pyl2d._C.codes()).
enum class DType : int {
  kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2, kInt32 = 3, kInt64 = 4, kBool = 5, kUInt8 = 6, kFloat64 = 7
};
constexpr int kDTypeCount = 8;

inline DType dtype_from_code(int code) {
  if (code < 0 || code >= kDTypeCount) throw std::invalid_argument("pyl2d._C: unknown dtype code " + std::to_string(code));
  return static_cast<DType>(code);
}

inline const char* dtype_name(DType d) {
  switch (d) {
    case DType::kFloat32: return "float32";
    case DType::kFloat16: return "float16";
    case DType::kBFloat16: return "bfloat16";
    case DType::kInt32: return "int32";
    case DType::kInt64: return "int64";
    case DType::kBool: return "bool";
    case DType::kUInt8: return "uint8";
    case DType::kFloat64: return "float64";
  }
  return "?";
}

// Scalar conversions for the storage formats (round-to-nearest-even on the way down).
inline float half_to_float(uint16_t h) {
  const uint32_t sign = (h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: renormalise
      exp = 127 - 15 + 1;
      while ((mant & 0x400u) == 0) { mant <<= 1; --exp; }
      mant &= 0x3ffu;
      bits = sign | (exp << 23) | (mant << 13);
    }
  } else if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  __builtin_memcpy(&f, &bits, 4);
  return f;
}

inline float bf16_to_float(uint16_t b) {
  uint32_t bits = static_cast<uint32_t>(b) << 16;
  float f;
  __builtin_memcpy(&f, &bits, 4);
  return f;
}

// A 2-D strided view: rows x cols with element strides; the common case for ops here.
struct Matrix {
  uintptr_t ptr = 0;
  int64_t rows = 0, cols = 0;
  int64_t row_stride = 0, col_stride = 1;  // in elements
  DType dtype = DType::kFloat32;
};

}  // namespace pyl2d
