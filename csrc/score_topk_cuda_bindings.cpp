// Python bindings for score_topk's CUDA launchers in kernels/score_topk.cu (stage 1, row
// norms): each entry point takes one parameter struct of named fields (kernels/score_topk.h).
// Compiles to nothing unless the extension is built with CUDA (PYL2D_WITH_CUDA).
#ifdef PYL2D_WITH_CUDA
#include <pybind11/pybind11.h>

#include "score_topk.h"
#include "registry.h"

namespace py = pybind11;

PYL2D_REGISTER_BINDINGS(score_topk_cuda, [](py::module_& m) {
  using pyl2d::cuda::RowNormsParams;
  using pyl2d::cuda::ScoreTopkStage1Params;
  const auto release = py::call_guard<py::gil_scoped_release>();
  m.attr("cuda_score_topk_max_k") = pyl2d::cuda::score_topk_max_k();
  m.attr("cuda_score_topk_tile_items") = pyl2d::cuda::score_topk_tile_items();

  pyl2d::bind_params<ScoreTopkStage1Params>(m, "ScoreTopkStage1Params", "Named arguments of score_topk_stage1_cuda.")
      .def_readwrite("q_base", &ScoreTopkStage1Params::q_base)
      .def_readwrite("q_offsets", &ScoreTopkStage1Params::q_offsets)
      .def_readwrite("q_vec", &ScoreTopkStage1Params::q_vec)
      .def_readwrite("items", &ScoreTopkStage1Params::items)
      .def_readwrite("x_vec", &ScoreTopkStage1Params::x_vec)
      .def_readwrite("metric", &ScoreTopkStage1Params::metric)
      .def_readwrite("q_norms", &ScoreTopkStage1Params::q_norms)
      .def_readwrite("x_norms", &ScoreTopkStage1Params::x_norms)
      .def_readwrite("exclude", &ScoreTopkStage1Params::exclude)
      .def_readwrite("k", &ScoreTopkStage1Params::k)
      .def_readwrite("tiles_per_split", &ScoreTopkStage1Params::tiles_per_split)
      .def_readwrite("n_splits", &ScoreTopkStage1Params::n_splits)
      .def_readwrite("ws_scores", &ScoreTopkStage1Params::ws_scores)
      .def_readwrite("ws_ids", &ScoreTopkStage1Params::ws_ids)
      .def_readwrite("stream", &ScoreTopkStage1Params::stream);
  m.def("score_topk_stage1_cuda", &pyl2d::cuda::score_topk_stage1, release, py::arg("params"),
        "Per-(query, item split) top-k candidates of score_topk (see kernels/score_topk.h). Internal.");
  m.def("score_topk_block_queries_cuda", &pyl2d::cuda::score_topk_block_queries, py::arg("dtype_code"),
        py::arg("k"), py::arg("batch"), "Queries per thread block of score_topk stage 1. Internal.");

  pyl2d::bind_params<RowNormsParams>(m, "RowNormsParams", "Named arguments of row_norms_cuda.")
      .def_readwrite("x", &RowNormsParams::x)
      .def_readwrite("squared", &RowNormsParams::squared)
      .def_readwrite("out", &RowNormsParams::out)
      .def_readwrite("stream", &RowNormsParams::stream);
  m.def("row_norms_cuda", &pyl2d::cuda::row_norms, release, py::arg("params"),
        "float32 L2 norm (or sum of squares) of each row (see kernels/score_topk.h). Internal.");
});
#endif  // PYL2D_WITH_CUDA
