#!/usr/bin/env bash
# Developer build: compile pyl2d._C into the source tree (pyl2d/_C*.so) for PYTHONPATH=. use.
# Usage: tools/build_inplace.sh [build-dir] [extra cmake args...]   (PYL2D_CUDA=OFF by default here)
# Environment: JOBS (parallel jobs, 2), TARGET (build only this target, e.g. _C), PYTHON, PYL2D_CUDA.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build/dev}; shift || true
py=${PYTHON:-python}
pybind_dir=$($py -c "import pybind11; print(pybind11.get_cmake_dir())")
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DPYL2D_CUDA=${PYL2D_CUDA:-OFF} \
  -Dpybind11_DIR="$pybind_dir" -DPython_EXECUTABLE="$(command -v $py)" "$@" >/dev/null
cmake --build "$build" -j "${JOBS:-2}" ${TARGET:+--target "$TARGET"}
# Copy then rename: replacing the file in place would corrupt it under any process that
# has the old module mapped (a running test), while a rename leaves that mapping intact.
for so in "$build"/_C*.so; do
  cp "$so" "pyl2d/.$(basename "$so").tmp.$$"
  mv -f "pyl2d/.$(basename "$so").tmp.$$" "pyl2d/$(basename "$so")"
done
echo "built $(ls pyl2d/_C*.so)"
