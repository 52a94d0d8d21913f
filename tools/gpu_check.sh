#!/usr/bin/env bash
# One-shot GPU validation that fits one lent-GPU call: build with CUDA for the GPU in front of
# it, run the owed GPU tests first, then the rest of `-m gpu`, then quick benchmarks. What to
# look at in the output, and the owed list itself: docs/gpu_validation.md.
#
#   OUT=/tmp/x bash tools/gpu_check.sh          # on the GPU machine ($OUT comes back)
#   bash tools/gpu_check.sh --plan              # print the stages (name, limit s, file, what)
#   GPU_CHECK_DRY=1 OUT=/tmp/x bash tools/gpu_check.sh
#       CPU dry run (tests/test_gpu_check.py): every stage's plumbing with tiny inputs; the
#       build prints its command instead of compiling, the test stages only collect.
#
# Stages run in PLAN's order, each under its own limit and all under TOTAL_S, so one run ends
# within 8 minutes even when every stage hangs; a failing or killed stage does not stop
# the next. Each stage writes its file under $OUT as it runs (pytest -v prints every result
# as it comes), and summary.txt gets one line per stage when it ends: a killed run still
# returns what it did. At most 8 files, one folder deep, plain names (what the device tool
# brings back).
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

# name              limit_s  log under $OUT          what (and its other result files)
PLAN="
machine                 15  summary.txt            GPU, driver, clocks; python, torch, triton, nvcc versions
build                  140  build.log              CUDA build: this GPU's arch only, all cores, target _C only
owed_tests             110  owed_tests.log         the owed validation (docs/gpu_validation.md), first
gpu_tests              105  gpu_tests.log          the rest of -m gpu
bench_score_topk        60  bench_score_topk.log   N=1M, B=1/256/4096, bf16+fp32, ip+l2: pyl2d vs torch vs floor; table bench_score_topk.md
bench_other             20  bench_other.log        the other ops' benchmarks, --quick
"
# The whole run, stage overheads included (each stage gets at most the time left; the last
# may overrun by timeout's 5 s grace): under 480 s. The stage limits sum to at most this.
# GPU_CHECK_TOTAL_S can only lower it (tests/test_gpu_check.py).
TOTAL_S=460
[[ "${GPU_CHECK_TOTAL_S:-}" =~ ^[0-9]+$ ]] && (( GPU_CHECK_TOTAL_S < TOTAL_S )) && TOTAL_S=$GPU_CHECK_TOTAL_S

if [ "${1:-}" = "--plan" ]; then
  echo "$PLAN" | sed '/^$/d'; echo "total $TOTAL_S"; exit 0
fi

DRY=${GPU_CHECK_DRY:-0}
OUT=${OUT:-gpu_out}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd) || { echo "gpu_check: cannot create OUT=$OUT" >&2; exit 2; }
PY=${PYTHON:-python3}
JOBS=${JOBS:-$(nproc)}
SUMMARY=$OUT/summary.txt
# MALLOC_MMAP_THRESHOLD_ set here spares the benchmarks their re-exec (bench/_harness.py).
export PYTHONUNBUFFERED=1 PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH} REPO OUT DRY PY JOBS SUMMARY \
  MALLOC_MMAP_THRESHOLD_=65536
: > "$SUMMARY"
T0=$SECONDS

note() { echo "$*" | tee -a "$SUMMARY"; }
limit_of() { echo "$PLAN" | awk -v s="$1" '$1 == s {print $2}'; }
file_of() { echo "$PLAN" | awk -v s="$1" '$1 == s {print $3}'; }

# The CUDA architecture of GPU 0 for CMAKE_CUDA_ARCHITECTURES ("9.0" -> "90-real": machine
# code for this chip alone, no PTX); GPU_CHECK_ARCH overrides, 90 when nothing answers.
gpu_arch() {
  local cc
  cc=${GPU_CHECK_ARCH:-$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .')}
  [[ "$cc" =~ ^[0-9]+[a-z]?$ ]] || cc=90
  echo "${cc}-real"
}

# The owed selection: the lines of the ```owed-tests block in docs/gpu_validation.md.
owed_tests() { sed -n '/^```owed-tests$/,/^```$/p' docs/gpu_validation.md | sed '1d;$d;s/#.*//' | awk 'NF {print $1}'; }
# Test files that hold GPU tests (marked with pytest.mark.gpu, literally): collecting only
# these keeps the other test modules' imports (transformers, trl) out of the time budget.
gpu_test_files() { grep -rlE 'mark\.gpu\b' tests --include='test_*.py' | sort; }
pytest_flags() {
  local flags="-m gpu -p no:cacheprovider --no-header -rfE --durations=15"
  # The dry run lists the node ids it would run (-q); the real run prints each result (-v).
  if [ "$DRY" = 1 ]; then echo "-q $flags --collect-only"; return; fi
  flags="-v $flags"
  "$PY" -c "import pytest_timeout" 2>/dev/null && flags="$flags --timeout=60"
  "$PY" -c "import xdist" 2>/dev/null && flags="$flags -n ${GPU_CHECK_WORKERS:-4}"
  echo "$flags"
}

stage_machine() {
  { echo "host $(hostname) cores $(nproc) dry $DRY, $(date -u '+%F %T UTC')"
    nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version,clocks.max.sm,clocks.max.mem --format=csv \
      2>&1 | head -3
    "$PY" -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'gpu', torch.cuda.get_device_name() if torch.cuda.is_available() else None)
try:
    import triton; print('triton', triton.__version__)
except ImportError as exc: print(exc)"
    nvcc --version 2>&1 | tail -1; } 2>&1 | tee -a "$SUMMARY"
}

stage_build() {
  local arch cmd
  arch=$(gpu_arch)
  cmd="JOBS=$JOBS TARGET=_C PYL2D_CUDA=ON PYTHON=$PY bash tools/build_inplace.sh build/gpu -DCMAKE_CUDA_ARCHITECTURES=$arch -DPYL2D_SANITIZE="
  echo "$cmd"
  if [ "$DRY" = 1 ]; then echo "dry run: not built"; return 0; fi
  env JOBS="$JOBS" TARGET=_C PYL2D_CUDA=ON PYTHON="$PY" bash tools/build_inplace.sh build/gpu \
    -DCMAKE_CUDA_ARCHITECTURES="$arch" -DPYL2D_SANITIZE= || return
  "$PY" -c "import torch, pyl2d; from pyl2d import _ext; print('with_cuda', _ext.has_cuda_kernels(), 'backends', pyl2d.available_backends(torch.device('cuda')))"
}

stage_owed_tests() {
  local sel
  sel=$(owed_tests | tr '\n' ' ')
  echo "owed: $sel"
  # -m gpu would drop the owed tests that are not gpu-marked (tests/gpu/test_cuda_params.py).
  # shellcheck disable=SC2046,SC2086
  "$PY" -m pytest $sel $(pytest_flags | sed 's/-m gpu//')
}

stage_gpu_tests() {
  local deselect="" s
  for s in $(owed_tests); do deselect="$deselect --deselect $s"; done
  # shellcheck disable=SC2046,SC2086
  "$PY" -m pytest $(gpu_test_files) $(pytest_flags) $deselect
}

stage_bench_score_topk() {
  local out=$OUT/bench_score_topk.md
  if [ "$DRY" = 1 ]; then
    "$PY" bench/score_topk.py --device cpu --sizes 2x1000x32 --dtypes bfloat16,float32 --metrics ip,l2 --repeats 1 \
      --no-faiss --out "$out"
  else
    "$PY" bench/score_topk.py --device cuda --quick --dtypes bfloat16,float32 --metrics ip,l2 --repeats 5 --out "$out"
  fi
}

BENCH_OTHER="rewards_and_advantages score_from_hidden segment_mean local_topk"
stage_bench_other() {
  local s
  if [ "$DRY" = 1 ]; then  # one process: each script loads and parses its flags
    "$PY" -c "
import runpy, sys, contextlib, io
for name in sys.argv[1:]:
    sys.argv = ['bench/' + name + '.py', '--help']
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            runpy.run_path(sys.argv[0], run_name='__main__')
            code = 0
        except SystemExit as exc:
            code = exc.code
    print('bench/' + name + '.py --help exit', code)" $BENCH_OTHER
    return
  fi
  for s in $BENCH_OTHER; do
    echo "--- bench/$s.py"
    "$PY" "bench/$s.py" --device cuda --quick --repeats 5
    echo "bench/$s.py exit $?"
  done
}
export BENCH_OTHER
export -f gpu_arch owed_tests gpu_test_files pytest_flags stage_machine stage_build stage_owed_tests stage_gpu_tests \
  stage_bench_score_topk stage_bench_other

# Run stage $1 under min(its limit, time left); its output goes to its file (summary.txt
# stages print to the terminal as well); summary.txt gets "stage NAME exit RC after S s (limit L s)".
run_stage() {
  local name=$1 limit file left start rc
  limit=$(limit_of "$name") file=$OUT/$(file_of "$name")
  left=$(( TOTAL_S - (SECONDS - T0) ))
  (( limit > left )) && limit=$left
  echo; echo "=== $name (limit ${limit} s, $(date -u +%T))"
  if (( limit < 5 )); then note "stage $name skipped: ${left} s left of ${TOTAL_S} s"; return; fi
  start=$SECONDS
  if [ "$file" = "$SUMMARY" ]; then
    timeout -k 5 "$limit" bash -c "stage_$name"
  else
    timeout -k 5 "$limit" bash -c "stage_$name" > "$file" 2>&1
  fi
  rc=$?
  (( rc == 124 || rc == 137 )) && rc="$rc (killed at the limit)"
  note "stage $name exit $rc after $(( SECONDS - start )) s (limit $limit s)"
  case $name in
    build) tail -3 "$file";;
    owed_tests|gpu_tests) grep -E "^(FAILED|ERROR)|(passed|failed|error|skipped|deselected|collected|tests? collected)" \
      "$file" | tail -8 | cut -c1-220 | tee -a "$SUMMARY";;
    bench_score_topk) grep -E "^\|" "$OUT/bench_score_topk.md" 2>/dev/null | tail -40;;
  esac
}

for name in $(echo "$PLAN" | awk 'NF {print $1}'); do run_stage "$name"; done
note "done after $(( SECONDS - T0 )) s (total limit $TOTAL_S s)"
