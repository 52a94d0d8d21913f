// Named arguments of the native entry points. Python describes each tensor once as a
// TensorArg (pyl2d/_ext.py: arg()), and each entry point takes one parameter struct of
// named fields (bound with pybind11 next to the entry point), so a swapped argument is a
// wrong field name, caught at the call, not a silently swapped pointer.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "tensor_arg.h"

namespace pyl2d {

struct TensorArg {
  bool defined = false;  // false: an absent optional tensor (None on the Python side)
  uintptr_t ptr = 0;
  int dtype = 0;         // pyl2d._codes.DTYPES
  std::vector<int64_t> sizes, strides;  // strides in elements

  TensorArg() = default;
  TensorArg(uintptr_t p, int d, std::vector<int64_t> s, std::vector<int64_t> st)
      : defined(true), ptr(p), dtype(d), sizes(std::move(s)), strides(std::move(st)) {}

  int64_t dim() const { return static_cast<int64_t>(sizes.size()); }
  int64_t size(int64_t i) const { return sizes.at(static_cast<size_t>(i)); }
  int64_t stride(int64_t i) const { return strides.at(static_cast<size_t>(i)); }
  DType type() const { return dtype_from_code(dtype); }
  template <typename T>
  T* data() const { return reinterpret_cast<T*>(ptr); }
};

// Throws std::invalid_argument naming `name` unless `t` is defined with `ndim` dimensions
// and one of `dtypes` (any float/index dtype when the list is empty).
inline void expect(const TensorArg& t, const char* name, int64_t ndim, std::initializer_list<DType> dtypes = {}) {
  if (!t.defined) throw std::invalid_argument(std::string(name) + " is required");
  if (t.dim() != ndim || static_cast<int64_t>(t.strides.size()) != ndim)
    throw std::invalid_argument(std::string(name) + " must have " + std::to_string(ndim) + " dimensions");
  if (dtypes.size() == 0) return;
  for (DType d : dtypes)
    if (t.type() == d) return;
  throw std::invalid_argument(std::string(name) + " has an unexpected dtype " + dtype_name(t.type()));
}

// `t` as a 2-D matrix view (checked; the inner stride must be 1 unless there is one column).
inline Matrix as_matrix(const TensorArg& t, const char* name) {
  expect(t, name, 2);
  if (t.size(1) > 1 && t.stride(1) != 1) throw std::invalid_argument(std::string(name) + ": inner stride must be 1");
  return Matrix{t.ptr, t.size(0), t.size(1), t.stride(0), 1, t.type()};
}

// Throws unless `t` is a defined contiguous 1-D tensor of `n` elements of dtype `d`.
inline void expect_vector(const TensorArg& t, const char* name, int64_t n, DType d) {
  expect(t, name, 1, {d});
  if (t.size(0) != n)
    throw std::invalid_argument(std::string(name) + " has " + std::to_string(t.size(0)) + " entries, expected " +
                                std::to_string(n));
  if (n > 1 && t.stride(0) != 1) throw std::invalid_argument(std::string(name) + " must be contiguous");
}

inline std::string shape_text(const std::vector<int64_t>& sizes) {
  std::string out = "[";
  for (size_t i = 0; i < sizes.size(); ++i) out += (i ? ", " : "") + std::to_string(sizes[i]);
  return out + "]";
}

// Throws unless `t` (already checked by expect) has exactly `sizes`.
inline void expect_sizes(const TensorArg& t, const char* name, const std::vector<int64_t>& sizes) {
  if (t.sizes != sizes)
    throw std::invalid_argument(std::string(name) + " has shape " + shape_text(t.sizes) + ", expected " +
                                shape_text(sizes));
}

// Throws unless `t` is row-major contiguous, as torch's is_contiguous (strides of size-1
// dimensions and of empty tensors do not matter).
inline void expect_contiguous(const TensorArg& t, const char* name) {
  for (int64_t n : t.sizes)
    if (n == 0) return;
  int64_t want = 1;
  for (int64_t i = t.dim() - 1; i >= 0; --i) {
    if (t.size(i) != 1 && t.stride(i) != want) throw std::invalid_argument(std::string(name) + " must be contiguous");
    want *= t.size(i);
  }
}

// expect + expect_sizes + expect_contiguous in one: a dense tensor of exactly `sizes`.
inline void expect_contiguous(const TensorArg& t, const char* name, const std::vector<int64_t>& sizes,
                              std::initializer_list<DType> dtypes = {}) {
  expect(t, name, static_cast<int64_t>(sizes.size()), dtypes);
  expect_sizes(t, name, sizes);
  expect_contiguous(t, name);
}

}  // namespace pyl2d

