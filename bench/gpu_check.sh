#!/usr/bin/env bash
# gpu_check.sh: the one script to run on a lent GPU (issue 3). Under 6 minutes.
#
#   OUT=/some/dir bash bench/gpu_check.sh        (from the repository root or anywhere)
#
# Steps (each with its own time limit inside an overall deadline; a failing step does
# not stop the next one; logs under $OUT):
#   1. device     nvidia-smi's device line and gpuconv.info()          -> device.log
#   2. pytest     pytest -m gpu (every gpu-marked test), fresh
#                 CUPY_CACHE_DIR so every kernel is compiled from source -> pytest_gpu.log
#   3. memcheck   compute-sanitizer --tool memcheck on a small subset
#   4. racecheck  compute-sanitizer --tool racecheck on the same subset
#                 (bench/gpu_sanitize_subset.py; CuPy's memory pool off) -> sanitize_*.log
#   5. bench      python -m gpuconv bench --backend cuda (conv, then filter rows),
#                 JSON + PNG                                           -> bench_*.json/png
# A short table of the steps and the conv benchmark is printed last (also summary.txt).
# Exit status: 0 when every step passed, else 1. Commit $OUT's JSON under
# bench/results/ (named by device and date).
#
# Needs: CuPy, pytest, SciPy; PyTorch for the cuDNN peer; no network. Runs from the
# working tree with PYTHONPATH set to the repository root.
set -u -o pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
OUT="${OUT:-$ROOT/bench/results/gpu_check-$STAMP}"
mkdir -p "$OUT"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export CUPY_CACHE_DIR="$OUT/cupy_kernel_cache"
export PYTHONDONTWRITEBYTECODE=1
PY="${PYTHON:-python}"
DEADLINE_S="${GPU_CHECK_DEADLINE_S:-350}"
START=$(date +%s)
SUMMARY=()
FAILED=0

remaining() { echo $(( DEADLINE_S - ($(date +%s) - START) )); }

# run_step NAME LIMIT_S LOG CMD...: runs CMD with a limit (capped by the deadline).
run_step() {
    local name=$1 limit=$2 log=$3
    shift 3
    local left
    left=$(remaining)
    if (( left < 10 )); then
        SUMMARY+=("$(printf '%-10s %-8s %6s  %s' "$name" "SKIPPED" "-" "deadline reached")")
        FAILED=1
        return
    fi
    (( limit > left )) && limit=$left
    local t0=$(date +%s)
    echo "== $name (limit ${limit}s) -> $log" >&2
    timeout --kill-after=10 "$limit" "$@" >"$OUT/$log" 2>&1
    local rc=$?
    local dt=$(( $(date +%s) - t0 ))
    local state="ok"
    if (( rc == 124 || rc == 137 )); then state="TIMEOUT"; FAILED=1
    elif (( rc != 0 )); then state="FAIL($rc)"; FAILED=1; fi
    SUMMARY+=("$(printf '%-10s %-8s %5ss  %s' "$name" "$state" "$dt" "$log")")
    tail -n 3 "$OUT/$log" >&2
}

# 1. the device
{
    nvidia-smi --query-gpu=name,pci.bus_id,driver_version,memory.total,clocks.max.sm \
        --format=csv,noheader 2>&1 || echo "nvidia-smi failed"
    "$PY" -c "import gpuconv, json; print(json.dumps(gpuconv.info(), default=str))"
} >"$OUT/device.log" 2>&1
DEVICE_LINE="$(head -n 1 "$OUT/device.log")"
SUMMARY+=("$(printf '%-10s %-8s %5ss  %s' device ok 0 "$DEVICE_LINE")")

# 2. every gpu-marked test
run_step pytest 140 pytest_gpu.log \
    "$PY" -m pytest -q -m gpu tests -p no:cacheprovider --maxfail=20 \
    --junitxml="$OUT/pytest_gpu.xml"

# 3./4. compute-sanitizer on a small subset, memory pool off
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
    run_step memcheck 35 sanitize_memcheck.log \
        "$SANITIZER" --tool memcheck --error-exitcode 99 --leak-check no \
        "$PY" bench/gpu_sanitize_subset.py
    run_step racecheck 35 sanitize_racecheck.log \
        "$SANITIZER" --tool racecheck --error-exitcode 99 \
        "$PY" bench/gpu_sanitize_subset.py
    # the filter kernels (issue 5): same two tools on bench/gpu_sanitize_filter.py
    run_step memchk_flt 30 sanitize_memcheck_filter.log \
        "$SANITIZER" --tool memcheck --error-exitcode 99 --leak-check no \
        "$PY" bench/gpu_sanitize_filter.py
    run_step racechk_flt 30 sanitize_racecheck_filter.log \
        "$SANITIZER" --tool racecheck --error-exitcode 99 \
        "$PY" bench/gpu_sanitize_filter.py
else
    echo "compute-sanitizer not found (PATH, /usr/local/cuda*, pip nvidia packages)" \
        >"$OUT/sanitize_memcheck.log"
    SUMMARY+=("$(printf '%-10s %-8s %5s   %s' sanitizer MISSING - 'compute-sanitizer not found: memcheck/racecheck not run')")
    FAILED=1
fi

# 5. the benchmark: conv rows first (this issue), then the filter rows
run_step bench_conv 80 bench_conv.log \
    "$PY" -m gpuconv bench --backend cuda --cases conv --no-progress \
    --json "$OUT/bench_conv.json" --plot "$OUT/bench_conv.png"
if [[ ! -s "$OUT/bench_conv.json" ]]; then  # the CLI failed: the module standalone
    run_step bench_conv2 60 bench_conv_standalone.log \
        "$PY" bench/bench_gpu_conv.py --no-progress --json "$OUT/bench_conv.json"
fi
run_step bench_filt 90 bench_filter.log \
    "$PY" -m gpuconv bench --backend cuda --cases filter --no-progress \
    --json "$OUT/bench_filter.json" --plot "$OUT/bench_filter.png"
if [[ ! -s "$OUT/bench_filter.json" ]]; then  # the CLI failed: the module standalone
    run_step bench_flt2 90 bench_filter_standalone.log \
        "$PY" bench/bench_gpu_filter.py --json "$OUT/bench_filter.json"
fi

# the short table, last
{
    echo "gpu_check $STAMP  device: $DEVICE_LINE"
    echo "elapsed $(( $(date +%s) - START ))s; logs in $OUT"
    echo
    printf '%-10s %-8s %6s  %s\n' step result time log
    printf '%s\n' "${SUMMARY[@]}"
    echo
    if [[ -s "$OUT/bench_conv.json" ]]; then
        "$PY" - "$OUT/bench_conv.json" <<'EOF'
import json, sys
sys.path.insert(0, "bench")
from bench_gpu_conv import format_rows
rows = json.load(open(sys.argv[1]))["rows"]
auto = [r for r in rows if r.get("variant", "auto") == "auto"]
print(format_rows(auto))
tgt = [r for r in auto if r.get("target_ratio")]
peak = [r for r in auto if r.get("peak_fraction_target")]
print(f"cuDNN targets met: {sum(bool(r.get('meets_target')) for r in tgt)} of "
      f"{len(tgt)}; 40% FP32 peak met: {sum(bool(r.get('meets_peak')) for r in peak)}"
      f" of {len(peak)} compute-bound rows")
EOF
    fi
    if [[ -s "$OUT/bench_filter.json" ]]; then  # the filter rows (issue 5)
        echo
        "$PY" bench/bench_gpu_filter.py --table "$OUT/bench_filter.json"
    fi
} | tee "$OUT/summary.txt"
exit $FAILED
