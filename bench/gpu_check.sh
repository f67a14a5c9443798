#!/usr/bin/env bash
# gpu_check.sh: the one script to run on a lent GPU (issues 3 and 5). Under 6 minutes.
#
#   OUT=/some/dir bash bench/gpu_check.sh        (from the repository root or anywhere)
#
# Needs: CuPy (12 or 13/14), pytest, SciPy; PyTorch for the cuDNN peer; nothing else
# (no hypothesis, dask, matplotlib or tqdm needed; no network). Runs from the working
# tree with PYTHONPATH set to the repository root.
#
# Steps, most valuable first, each with its own time limit (they add up to under the
# 350 s deadline, GPU_CHECK_DEADLINE_S); a failing or timed-out step is recorded and
# the next one runs anyway; logs and results under $OUT:
#   1. device     nvidia-smi's device line, gpuconv.info()            (15 s) device.log
#   2. pytest     pytest -m gpu on the GPU test files, every kernel compiled from
#                 source into a fresh CuPy cache (mktemp -d, outside $OUT)
#                                                                   (120 s) pytest_gpu.log
#   3. memcheck   compute-sanitizer memcheck  } bench/gpu_sanitize_all.py: small conv
#   4. racecheck  compute-sanitizer racecheck } and filter workloads, memory pool off
#                                                          (30 s each) sanitize_*.log
#   5. bench_conv bench/bench_gpu_conv.py: 'auto' and the forced tiled_regblock
#                 against cuDNN; rows written as they come    (85 s) bench_conv.json
#   6. bench_filt bench/bench_gpu_filter.py: filter rows vs cupyx (55 s) bench_filter.json
# A short table of the steps and the benchmarks is printed last (also summary.txt).
# Exit status: 0 when every step passed, else 1. Commit $OUT's JSON files and
# summary.txt under bench/results/ (named by device and date).
set -u -o pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
OUT="${OUT:-$ROOT/bench/results/gpu_check-$STAMP}"
mkdir -p "$OUT"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
# A fresh kernel cache, outside $OUT (binaries are not results): every kernel is
# compiled from source once, in the pytest step, and reused by the later steps.
CUPY_CACHE_DIR="$(mktemp -d "${TMPDIR:-/tmp}/gpuconv-cupy-cache.XXXXXX")"
export CUPY_CACHE_DIR
trap 'rm -rf "$CUPY_CACHE_DIR"' EXIT
export PYTHONDONTWRITEBYTECODE=1
PY="${PYTHON:-python}"
DEADLINE_S="${GPU_CHECK_DEADLINE_S:-350}"
RESERVE_S=10  # kept for the summary
START=$(date +%s)
SUMMARY=()
FAILED=0

remaining() { echo $(( DEADLINE_S - RESERVE_S - ($(date +%s) - START) )); }

# run_step NAME LIMIT_S LOG CMD...: runs CMD with a limit (capped by the deadline),
# records ok / FAIL(rc) / TIMEOUT / SKIPPED; never stops the script.
run_step() {
    local name=$1 limit=$2 log=$3
    shift 3
    local left
    left=$(remaining)
    if (( left < 5 )); then
        SUMMARY+=("$(printf '%-10s %-8s %5s   %s' "$name" SKIPPED - 'deadline reached')")
        FAILED=1
        return
    fi
    (( limit > left )) && limit=$left
    local t0
    t0=$(date +%s)
    echo "== $name (limit ${limit}s) -> $OUT/$log" >&2
    timeout --kill-after=5 "$limit" "$@" >"$OUT/$log" 2>&1
    local rc=$?
    local dt=$(( $(date +%s) - t0 ))
    local state="ok"
    if (( rc == 124 || rc == 137 )); then state="TIMEOUT"; FAILED=1
    elif (( rc != 0 )); then state="FAIL($rc)"; FAILED=1; fi
    SUMMARY+=("$(printf '%-10s %-8s %5ss  %s' "$name" "$state" "$dt" "$log")")
    tail -n 3 "$OUT/$log" >&2
}

# 1. the device
device_step() {
    nvidia-smi --query-gpu=name,pci.bus_id,driver_version,memory.total,clocks.max.sm \
        --format=csv,noheader 2>&1 || echo "nvidia-smi failed"
    "$PY" -c "import gpuconv, json; print(json.dumps(gpuconv.info(), default=str))"
}
export PY
export -f device_step
run_step device 15 device.log bash -c device_step
DEVICE_LINE="$(head -n 1 "$OUT/device.log" 2>/dev/null)"

# 2. the gpu-marked tests: only files that collect without hypothesis/dask/
#    matplotlib (test_dask.py skips itself without dask; test_examples.py's digits
#    run skips itself without scikit-learn)
run_step pytest 120 pytest_gpu.log \
    "$PY" -m pytest -q -m gpu -p no:cacheprovider --maxfail=20 --durations=15 \
    --junitxml="$OUT/pytest_gpu.xml" \
    tests/test_gpu_conv.py tests/test_gpu_filter.py tests/test_gpu_mma.py \
    tests/test_examples.py \
    tests/test_dask.py

# 3./4. compute-sanitizer on the small conv + filter workloads, memory pool off
SANITIZER="$(command -v compute-sanitizer || true)"
if [[ -z "$SANITIZER" ]]; then
    for c in /usr/local/cuda/bin/compute-sanitizer /usr/local/cuda-*/bin/compute-sanitizer \
             /opt/nvidia/*/compute-sanitizer/compute-sanitizer; do
        [[ -x "$c" ]] && SANITIZER="$c" && break
    done
fi
if [[ -z "$SANITIZER" ]]; then
    SANITIZER="$("$PY" - <<'EOF' 2>/dev/null
import glob, os, sys
for base in sys.path:
    for hit in glob.glob(os.path.join(base, "nvidia", "**", "compute-sanitizer"),
                         recursive=True):
        if os.access(hit, os.X_OK) and os.path.isfile(hit):
            print(hit); raise SystemExit
EOF
)"
fi
if [[ -n "$SANITIZER" ]]; then
    run_step memcheck 30 sanitize_memcheck.log \
        "$SANITIZER" --tool memcheck --error-exitcode 99 --leak-check no \
        "$PY" bench/gpu_sanitize_all.py
    run_step racecheck 30 sanitize_racecheck.log \
        "$SANITIZER" --tool racecheck --error-exitcode 99 \
        "$PY" bench/gpu_sanitize_all.py
else
    echo "compute-sanitizer not found (PATH, /usr/local/cuda*, pip nvidia packages)" \
        >"$OUT/sanitize_memcheck.log"
    SUMMARY+=("$(printf '%-10s %-8s %5s   %s' sanitizer MISSING - 'compute-sanitizer not found: memcheck/racecheck not run')")
    FAILED=1
fi

# 5./6. the benchmarks (each rewrites its JSON after every row: a timeout keeps the
#       rows measured so far); the PNG only where matplotlib is installed
run_step bench_conv 85 bench_conv.log \
    "$PY" bench/bench_gpu_conv.py --no-progress --variants tiled_regblock \
    --budget 0.1 --json "$OUT/bench_conv.json" --plot "$OUT/bench_conv.png"
run_step bench_filt 55 bench_filter.log \
    "$PY" bench/bench_gpu_filter.py --budget 0.1 \
    --json "$OUT/bench_filter.json" --plot "$OUT/bench_filter.png"

# the short table, last
summary() {
    echo "gpu_check $STAMP  device: $DEVICE_LINE"
    echo "elapsed $(( $(date +%s) - START ))s; logs in $OUT"
    echo
    printf '%-10s %-8s %6s  %s\n' step result time log
    printf '%s\n' "${SUMMARY[@]}"
    echo
    if [[ -s "$OUT/bench_conv.json" ]]; then
        timeout 10 "$PY" - "$OUT/bench_conv.json" <<'EOF'
import json, sys
sys.path.insert(0, "bench")
from bench_gpu_conv import format_rows
rows = json.load(open(sys.argv[1]))["rows"]
auto = [r for r in rows if r.get("variant") in ("auto", None)]
print(format_rows(auto))
tgt = [r for r in auto if r.get("target_ratio")]
peak = [r for r in auto if r.get("peak_fraction_target")]
print(f"{len(rows)} conv rows; cuDNN targets met: "
      f"{sum(bool(r.get('meets_target')) for r in tgt)} of {len(tgt)}; 40% FP32 "
      f"peak met: {sum(bool(r.get('meets_peak')) for r in peak)} of {len(peak)} "
      "compute-bound rows")
EOF
    fi
    if [[ -s "$OUT/bench_filter.json" ]]; then
        echo
        timeout 10 "$PY" bench/bench_gpu_filter.py --table "$OUT/bench_filter.json"
    fi
    echo
    echo "exit status $FAILED (0: every step passed)"
}
summary 2>&1 | tee "$OUT/summary.txt"
exit $FAILED
