#!/usr/bin/env bash
# One-shot GPU validation: build with CUDA, run the GPU tests, run the GPU benchmarks.
# Writes logs and result tables to $OUT (default ./gpu_out). Every stage has its own time
# limit and the script goes on after a failing stage, so one run yields everything it can.
#   OUT=/tmp/x bash tools/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
PY=${PYTHON:-python3}
T_BUILD=${T_BUILD:-200} T_TEST=${T_TEST:-150} T_BENCH=${T_BENCH:-200}
stage() { echo; echo "=== $1 ($(date +%T))"; }

stage "machine"
{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv;
  $PY -c "import torch, triton, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'triton', triton.__version__, 'cuda', torch.version.cuda)"; } 2>&1 | tee "$OUT/machine.txt"

stage "build (CUDA sm_90)"
JOBS=16 PYL2D_CUDA=ON PYTHON=$PY timeout "$T_BUILD" bash tools/build_inplace.sh build/gpu -DCMAKE_CUDA_ARCHITECTURES=90 > "$OUT/build.log" 2>&1
echo "build exit $?"; tail -5 "$OUT/build.log"
$PY -c "import pyl2d, torch; from pyl2d import _ext; print('with_cuda', _ext.has_cuda_kernels(), 'backends', pyl2d.available_backends(torch.device('cuda')))"

stage "GPU tests"
TO=$($PY -c "import pytest_timeout" 2>/dev/null && echo --timeout=90)
timeout "$T_TEST" $PY -m pytest ${TEST_PATHS:-tests} -m gpu -q --no-header -p no:cacheprovider $TO --maxfail=40 -rf > "$OUT/gpu_tests.log" 2>&1
echo "tests exit $?"; grep -E "^(FAILED|ERROR)" "$OUT/gpu_tests.log" | cut -c1-220 | head -40; tail -3 "$OUT/gpu_tests.log"

stage "benchmarks"
timeout "$T_BENCH" $PY bench/score_topk.py --device cuda ${BENCH_ARGS:---dtypes bfloat16,float32 --metrics ip,l2 --repeats 10} --out "$OUT/score_topk_gpu.md" > "$OUT/bench_score_topk.log" 2>&1
echo "score_topk bench exit $?"
for extra in ${EXTRA_BENCH-bench/rewards_and_advantages.py bench/score_from_hidden.py bench/segment_mean.py bench/local_topk.py}; do
  [ -f "$extra" ] || continue
  timeout 90 $PY "$extra" --device cuda >> "$OUT/bench_extra.log" 2>&1
  echo "$extra exit $?"
done
# Those scripts write their tables under bench/results/; bring the GPU ones back.
find bench/results -name '*gpu*' -newer "$OUT/machine.txt" -exec cp {} "$OUT/" \;
stage "done"
cat "$OUT/score_topk_gpu.md" 2>/dev/null | tail -60
