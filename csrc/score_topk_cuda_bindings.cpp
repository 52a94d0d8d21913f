// Python bindings for the CUDA launchers in kernels/ (score_topk stage 1, pool_hidden).
// Compiles to nothing unless the extension is built with CUDA (PYL2D_WITH_CUDA).
#ifdef PYL2D_WITH_CUDA
#include <pybind11/pybind11.h>

#include "launchers.h"
#include "registry.h"

namespace py = pybind11;

PYL2D_REGISTER_BINDINGS(score_topk_cuda, [](py::module_& m) {
  m.attr("cuda_score_topk_max_k") = pyl2d::cuda::score_topk_max_k();
  m.attr("cuda_score_topk_tile_items") = pyl2d::cuda::score_topk_tile_items();
  m.def("score_topk_stage1_cuda", &pyl2d::cuda::score_topk_stage1, py::arg("q_base"), py::arg("q_offsets"),
        py::arg("batch"), py::arg("q_vec"), py::arg("items"), py::arg("n_items"), py::arg("dim"),
        py::arg("item_stride"), py::arg("x_vec"), py::arg("dtype_code"), py::arg("metric"), py::arg("q_norms"),
        py::arg("x_norms"), py::arg("exclude"), py::arg("n_exclude"), py::arg("k"), py::arg("tiles_per_split"),
        py::arg("n_splits"), py::arg("ws_scores"), py::arg("ws_ids"), py::arg("ws_ld"), py::arg("stream"),
        py::call_guard<py::gil_scoped_release>(),
        "Per-(query, item split) top-k candidates of score_topk (see kernels/launchers.h). Internal.");
  m.def("score_topk_block_queries_cuda", &pyl2d::cuda::score_topk_block_queries, py::arg("dtype_code"),
        py::arg("k"), py::arg("batch"), "Queries per thread block of score_topk stage 1. Internal.");
  m.def("row_norms_cuda", &pyl2d::cuda::row_norms, py::arg("x"), py::arg("rows"), py::arg("dim"), py::arg("stride"),
        py::arg("dtype_code"), py::arg("squared"), py::arg("out"), py::arg("stream"),
        py::call_guard<py::gil_scoped_release>(),
        "float32 L2 norm (or sum of squares) of each row (see kernels/launchers.h). Internal.");
  m.def("pool_hidden_cuda", &pyl2d::cuda::pool_hidden, py::arg("hidden"), py::arg("batch"), py::arg("tokens"),
        py::arg("dim"), py::arg("stride0"), py::arg("stride1"), py::arg("dtype_code"), py::arg("mode"),
        py::arg("last_index"), py::arg("real"), py::arg("normalize"), py::arg("pooled"), py::arg("out"),
        py::arg("stream"), py::call_guard<py::gil_scoped_release>(),
        "pool_hidden into a float32 workspace, then normalise and round (see kernels/launchers.h). Internal.");
});
#endif  // PYL2D_WITH_CUDA
