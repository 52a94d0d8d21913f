// Self-registration of binding groups, so that each op's source file adds its own
// functions to the pyl2d._C module without a central list to edit.
#pragma once
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <pybind11/pybind11.h>

namespace pyl2d {

using BindingFn = std::function<void(pybind11::module_&)>;

inline std::vector<std::pair<std::string, BindingFn>>& binding_registry() {
  static std::vector<std::pair<std::string, BindingFn>> registry;
  return registry;
}

// py::class_ for an entry point's parameter struct: default-constructible, fields added
// with .def_readwrite by the caller (one per named field).
template <typename Params>
pybind11::class_<Params> bind_params(pybind11::module_& m, const char* name, const char* doc) {
  return pybind11::class_<Params>(m, name, doc).def(pybind11::init<>());
}

struct BindingRegistrar {
  BindingRegistrar(const char* name, BindingFn fn) {
    binding_registry().emplace_back(name, std::move(fn));
  }
};

}  // namespace pyl2d

#define PYL2D_CONCAT_INNER(a, b) a##b
#define PYL2D_CONCAT(a, b) PYL2D_CONCAT_INNER(a, b)
// Usage (at namespace scope in a .cpp/.cu host file):
//   PYL2D_REGISTER_BINDINGS(score_topk_cpu, [](pybind11::module_& m) { m.def(...); });
#define PYL2D_REGISTER_BINDINGS(name, fn) \
  static ::pyl2d::BindingRegistrar PYL2D_CONCAT(pyl2d_registrar_, name)(#name, fn)
