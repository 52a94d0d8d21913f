#!/usr/bin/env bash
# The CPU kernels under AddressSanitizer and UndefinedBehaviorSanitizer: build pyl2d._C with
# -fsanitize=address,undefined (CMake option PYL2D_SANITIZE), put it beside a copy of the
# Python package, and run the op tests on the cpu backend under the given CPU kernel paths.
# Any out-of-bounds access, use after free or undefined behaviour aborts the test process,
# so the run fails. (Python itself is not instrumented: libasan is preloaded, leaks are not
# checked.)
#   PYTHON=.venv/bin/python tools/sanitize_check.sh ["PYL2D_SIMD=avx2 PYL2D_AMX=0" ...]
# With no argument it runs the best path of this CPU only; SANITIZE_TESTS picks the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
py=$(command -v "${PYTHON:-python}")
py="$(cd "$(dirname "$py")" && pwd)/$(basename "$py")"  # absolute (not resolved: a venv's python stays one)
build=${SANITIZE_BUILD:-build/sanitize}
pybind_dir=$($py -c "import pybind11; print(pybind11.get_cmake_dir())")
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPYL2D_CUDA=OFF \
  -DPYL2D_SANITIZE=address,undefined -Dpybind11_DIR="$pybind_dir" \
  -DPython_EXECUTABLE="$(command -v "$py")" >/dev/null
cmake --build "$build" -j "${JOBS:-2}"

overlay=$(mktemp -d)
trap 'rm -rf "$overlay"' EXIT
cp -r pyl2d "$overlay/"
rm -f "$overlay"/pyl2d/_C*.so
find "$overlay" -name __pycache__ -prune -exec rm -rf {} +
cp "$build"/_C*.so "$overlay/pyl2d/"

pytest_bin="$(dirname "$(command -v "$py")")/pytest"
# libstdc++ preloaded after libasan: else ASan cannot find the real __cxa_throw and aborts
# at the first C++ exception torch throws. Reports go to $SANITIZE_LOG.<pid> (pytest's
# capture would swallow them with the aborted process) and are printed below.
log=${SANITIZE_LOG:-$overlay/report}
export LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libstdc++.so.6)"
export ASAN_OPTIONS=detect_leaks=0:halt_on_error=1:log_path=$log
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:log_path=$log
export PYTHONPATH="$overlay" PYL2D_TEST_BACKENDS=cpu
# The sanitized module must be the one imported (not an installed or in-place build).
(cd / && "$py" -c "import pyl2d._C as c, sys; sys.exit(0 if c.__file__.startswith('$overlay') else 1)") \
  || { echo "the sanitized pyl2d._C is not the one imported" >&2; exit 1; }
[ $# -gt 0 ] || set -- ""
tests=${SANITIZE_TESTS:-tests/ops}
for path in "$@"; do
  echo "+ sanitizers: ${path:-best path} pytest -q $tests"
  if ! env $path "$pytest_bin" -q -p no:cacheprovider $tests; then
    cat "$log".* 2>/dev/null | head -80 >&2 || true
    exit 1
  fi
done
if ls "$log".* >/dev/null 2>&1; then  # a report from a process that did not fail the run
  cat "$log".* | head -80 >&2
  exit 1
fi
echo "sanitizers: no report"
