#!/usr/bin/env bash
# gpu_check.sh: the one script to run on a lent GPU (issues 3, 5 and 10). Under 7.5 minutes.
#
#   OUT=/some/dir bash bench/gpu_check.sh               (from anywhere)
#   OUT=/some/dir PYTHONPATH=. bash bench/gpu_check.sh  (from the repository root)
#
# Needs: CuPy (12 or 13/14), pytest, SciPy; PyTorch for the cuDNN peer; nothing else
# (no hypothesis, dask, matplotlib or tqdm needed; no network). Runs from the working
# tree with the repository root first on PYTHONPATH (relative PYTHONPATH entries are
# taken from the folder the script was started in).
#
# It cannot pass without using the GPU:
#   - the device step fails unless nvidia-smi lists a GPU AND gpuconv's cuda backend
#     runs on it (CuPy imports, sees a device, sums on it); when it fails, the later
#     steps are not run (they could only skip or fail) and its reason is the first
#     line of the summary;
#   - the pytest step fails on a failed test, on a gpu test skipped for any reason
#     but a missing optional package, and when fewer gpu tests ran than
#     `pytest --collect-only -m gpu` collected (bench/gpu_check_verdict.py).
#
# Steps, most valuable first, each with its own time limit (they add up to under the
# 430 s deadline, GPU_CHECK_DEADLINE_S); after the device step, a failing or
# timed-out step is recorded and the next one runs anyway:
#   1. device     nvidia-smi's device line, gpuconv.info(), a sum on the device
#                                                                    (15 s) device.log
#   2. pytest     pytest -m gpu on the GPU test files, every kernel compiled from
#                 source into a fresh CuPy cache (mktemp -d, outside $OUT)
#                                                 (160 s) pytest_collect.log, pytest_gpu.log
#   3. memcheck   compute-sanitizer memcheck  } bench/gpu_sanitize_all.py: small conv
#   4. racecheck  compute-sanitizer racecheck } and filter workloads, memory pool off
#                                                          (35 s each) sanitize_*.log
#   5. bench_conv bench/bench_gpu_conv.py: 'auto' and the forced tiled_regblock
#                 against cuDNN; rows written as they come   (100 s) bench_conv.json
#   6. bench_filt bench/bench_gpu_filter.py: filter rows vs cupyx (50 s) bench_filter.json
#   7. bench_torch bench/bench_gpu_torch.py: a ResNet basic block's training step
#                 through gpuconv.torch vs torch.nn.Conv2d (FP32, TF32) (25 s) bench_torch.json
# A short table of the steps and the benchmarks is printed last.
#
# $OUT receives at most 8 files, what a lent machine returns: summary.txt,
# bench_conv.json, bench_filter.json, bench_torch.json, logs.tar.gz (every log, the pytest junit XML
# and a copy of summary.txt) and, where matplotlib is installed, bench_conv.png and
# bench_filter.png. Exit status: 0 when every step passed, else 1. Commit the JSON
# files, summary.txt and the PNGs under bench/results/ (named by device, date and
# commit: cuda-<device>-<date>-<commit>-{conv,filter,torch}.json, -summary.txt).
set -u -o pipefail

CALLER_PWD="$(pwd)"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
OUT="${OUT:-$ROOT/bench/results/gpu_check-$STAMP}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"  # absolute, before the cd below
if [[ -n "$(ls -A "$OUT")" ]]; then
    echo "warning: $OUT is not empty; a lent machine returns at most 8 files" >&2
fi
# The repository root first, then the caller's entries made absolute (the '.' of
# `PYTHONPATH=. bash bench/gpu_check.sh` is the folder the script was started in).
PP="$ROOT"
IFS=: read -r -a _pp_parts <<< "${PYTHONPATH:-}"
for _p in "${_pp_parts[@]+"${_pp_parts[@]}"}"; do
    [[ -z "$_p" ]] && continue
    [[ "$_p" != /* ]] && _p="$CALLER_PWD/$_p"
    PP="$PP:$_p"
done
export PYTHONPATH="$PP"
cd "$ROOT"
# The logs go to a temporary folder, archived into $OUT/logs.tar.gz at the end. A
# fresh kernel cache, outside $OUT (binaries are not results): every kernel is
# compiled from source once, in the pytest step, and reused by the later steps.
LOGS="$(mktemp -d "${TMPDIR:-/tmp}/gpuconv-gpu-check-logs.XXXXXX")"
CUPY_CACHE_DIR="$(mktemp -d "${TMPDIR:-/tmp}/gpuconv-cupy-cache.XXXXXX")"
export LOGS CUPY_CACHE_DIR
trap 'rm -rf "$CUPY_CACHE_DIR" "$LOGS"' EXIT
export PYTHONDONTWRITEBYTECODE=1
PY="${PYTHON:-python}"
export PY
DEADLINE_S="${GPU_CHECK_DEADLINE_S:-430}"
RESERVE_S=10  # kept for the summary
START=$(date +%s)
SUMMARY=()
REASONS=()  # one line per failed step: the first lines of the summary
FAILED=0
STOPPED=""  # why the remaining steps are not run (set when the device step fails)

remaining() { echo $(( DEADLINE_S - RESERVE_S - ($(date +%s) - START) )); }

# run_step NAME LIMIT_S LOG CMD...: runs CMD with a limit (capped by the deadline),
# records ok / FAIL(rc) / TIMEOUT / SKIPPED / NOT RUN and, for a failure, the reason
# (the log's last "REASON: " line, else its last line). Returns CMD's status.
run_step() {
    local name=$1 limit=$2 log=$3
    shift 3
    if [[ -n "$STOPPED" ]]; then
        SUMMARY+=("$(printf '%-10s %-8s %5s   %s' "$name" 'NOT RUN' - "$STOPPED")")
        FAILED=1
        return 1
    fi
    local left
    left=$(remaining)
    if (( left < 5 )); then
        SUMMARY+=("$(printf '%-10s %-8s %5s   %s' "$name" SKIPPED - 'deadline reached')")
        REASONS+=("FAIL $name: the deadline was reached before the step")
        FAILED=1
        return 1
    fi
    (( limit > left )) && limit=$left
    local t0
    t0=$(date +%s)
    echo "== $name (limit ${limit}s) -> logs.tar.gz:$log" >&2
    timeout --kill-after=5 "$limit" "$@" >"$LOGS/$log" 2>&1
    local rc=$?
    local dt=$(( $(date +%s) - t0 ))
    local state="ok"
    if (( rc == 124 || rc == 137 )); then state="TIMEOUT"; FAILED=1
    elif (( rc != 0 )); then state="FAIL($rc)"; FAILED=1; fi
    SUMMARY+=("$(printf '%-10s %-8s %5ss  %s' "$name" "$state" "$dt" "$log")")
    if [[ "$state" != ok ]]; then
        local why
        why="$(grep '^REASON: ' "$LOGS/$log" | tail -n 1 | cut -c9-)"
        [[ -z "$why" ]] && why="$(tail -n 1 "$LOGS/$log")"
        [[ "$state" == TIMEOUT ]] && why="timed out after ${limit}s; last line: $why"
        REASONS+=("FAIL $name: ${why:-no output} (logs.tar.gz:$log)")
    fi
    tail -n 3 "$LOGS/$log" >&2
    return $rc
}

# 1. the device: nvidia-smi must list a GPU, and gpuconv's cuda backend must run on it
device_step() {
    if ! command -v nvidia-smi >/dev/null 2>&1; then
        echo "REASON: nvidia-smi is not on PATH (no NVIDIA driver: no GPU to check)"
        return 3
    fi
    nvidia-smi --query-gpu=name,pci.bus_id,driver_version,memory.total,clocks.max.sm \
        --format=csv,noheader 2>&1 || echo "nvidia-smi --query-gpu failed"
    local listed
    listed="$(nvidia-smi -L 2>&1 | grep -c '^GPU [0-9]')"
    echo "nvidia-smi lists $listed GPU(s)"
    "$PY" - "$listed" <<'EOF'
import json
import sys

listed = int(sys.argv[1])
try:
    import gpuconv
    from gpuconv import _backend
except Exception as exc:
    print(f"REASON: gpuconv could not be imported: {exc!r}")
    raise SystemExit(3) from None
info = gpuconv.info()
print(json.dumps(info, default=str))
if listed < 1:
    print("REASON: nvidia-smi lists no GPU")
    raise SystemExit(3)
if info["cuda_missing"] is not None:
    print(f"REASON: nvidia-smi lists {listed} GPU(s), but gpuconv's cuda backend is "
          f"unavailable: {info['cuda_missing']}")
    raise SystemExit(3)
cp = _backend.cupy_module()
got = int(cp.arange(1000, dtype=cp.int64).sum())  # a kernel launch on the device
if got != 499500:
    print(f"REASON: a CuPy sum on the device returned {got}, not 499500")
    raise SystemExit(3)
print(f"device ok: {info['device']}, CuPy {info['cupy']}")
EOF
}
export -f device_step
if ! run_step device 15 device.log bash -c device_step; then
    STOPPED="the device step failed"
fi
DEVICE_LINE="$(head -n 1 "$LOGS/device.log" 2>/dev/null)"

# 2. the gpu-marked tests: only files that collect without hypothesis/dask/
#    matplotlib (test_dask.py skips itself without dask; test_examples.py's digits
#    run skips itself without scikit-learn). The expected count is what pytest
#    collects with -m gpu; the verdict reads the junit XML.
pytest_step() {
    local files=(tests/test_gpu_conv.py tests/test_gpu_filter.py tests/test_gpu_mma.py
                 tests/test_examples.py tests/test_dask.py tests/test_torch.py)
    "$PY" -m pytest --collect-only -q -m gpu -p no:cacheprovider "${files[@]}" \
        >"$LOGS/pytest_collect.log" 2>&1
    local crc=$?
    local expected
    expected="$(grep -c '::' "$LOGS/pytest_collect.log")"
    if (( crc != 0 )); then
        tail -n 5 "$LOGS/pytest_collect.log"
        echo "REASON: pytest --collect-only -m gpu failed (status $crc;" \
             "pytest_collect.log)"
        return 2
    fi
    echo "pytest --collect-only -m gpu: $expected tests"
    "$PY" -m pytest -q -m gpu -p no:cacheprovider --maxfail=20 --durations=15 -rs \
        --junitxml="$LOGS/pytest_gpu.xml" "${files[@]}"
    local rc=$?
    "$PY" bench/gpu_check_verdict.py "$LOGS/pytest_gpu.xml" --expected "$expected" \
        --pytest-status "$rc"
}
export -f pytest_step
run_step pytest 160 pytest_gpu.log bash -c pytest_step

# 3./4. compute-sanitizer on the small conv + filter workloads, memory pool off
SANITIZER="$(command -v compute-sanitizer || true)"
if [[ -z "$SANITIZER" ]]; then
    for c in /usr/local/cuda/bin/compute-sanitizer /usr/local/cuda-*/bin/compute-sanitizer \
             /opt/nvidia/*/compute-sanitizer/compute-sanitizer; do
        [[ -x "$c" ]] && SANITIZER="$c" && break
    done
fi
if [[ -z "$SANITIZER" && -z "$STOPPED" ]]; then
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
if [[ -n "$SANITIZER" || -n "$STOPPED" ]]; then
    run_step memcheck 35 sanitize_memcheck.log \
        "$SANITIZER" --tool memcheck --error-exitcode 99 --leak-check no \
        "$PY" bench/gpu_sanitize_all.py
    run_step racecheck 35 sanitize_racecheck.log \
        "$SANITIZER" --tool racecheck --error-exitcode 99 \
        "$PY" bench/gpu_sanitize_all.py
else
    echo "compute-sanitizer not found (PATH, /usr/local/cuda*, pip nvidia packages)" \
        >"$LOGS/sanitize_memcheck.log"
    SUMMARY+=("$(printf '%-10s %-8s %5s   %s' sanitizer MISSING - 'compute-sanitizer not found: memcheck/racecheck not run')")
    REASONS+=("FAIL sanitizer: compute-sanitizer not found (PATH, /usr/local/cuda*, pip nvidia packages)")
    FAILED=1
fi

# 5./6. the benchmarks (each rewrites its JSON after every row: a timeout keeps the
#       rows measured so far); the PNG only where matplotlib is installed
run_step bench_conv 100 bench_conv.log \
    "$PY" bench/bench_gpu_conv.py --no-progress --variants tiled_regblock,winograd,winograd4 \
    --budget 0.1 --json "$OUT/bench_conv.json" --plot "$OUT/bench_conv.png"
run_step bench_filt 50 bench_filter.log \
    "$PY" bench/bench_gpu_filter.py --budget 0.1 \
    --json "$OUT/bench_filter.json" --plot "$OUT/bench_filter.png"
run_step bench_torch 25 bench_torch.log \
    "$PY" bench/bench_gpu_torch.py --budget 0.2 --json "$OUT/bench_torch.json"

# the short table, last; the reasons of the failures first
summary() {
    if (( ${#REASONS[@]} )); then
        printf '%s\n' "${REASONS[@]}"
    elif (( FAILED )); then
        echo "FAIL: a step did not pass (table below)"
    else
        echo "PASS: every step passed"
    fi
    echo "gpu_check $STAMP  device: $DEVICE_LINE"
    echo "elapsed $(( $(date +%s) - START ))s; logs in $OUT/logs.tar.gz"
    echo
    printf '%-10s %-8s %6s  %s\n' step result time log
    printf '%s\n' "${SUMMARY[@]}"
    for log in device.log pytest_gpu.log; do
        [[ -s "$LOGS/$log" ]] && echo "${log%.log}: $(tail -n 1 "$LOGS/$log")"
    done
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
    if [[ -s "$OUT/bench_torch.json" ]]; then
        echo
        timeout 10 "$PY" bench/bench_gpu_torch.py --table "$OUT/bench_torch.json"
    fi
    echo
    echo "exit status $FAILED (0: every step passed)"
}
summary 2>&1 | tee "$OUT/summary.txt"

# $OUT: at most 8 files. The logs (and a copy of the summary) in one archive; a
# JSON file's temporary twin left by a killed benchmark goes into it too.
cp "$OUT/summary.txt" "$LOGS/summary.txt"
for tmp in "$OUT"/*.tmp; do
    [[ -e "$tmp" ]] && mv "$tmp" "$LOGS/"
done
tar -czf "$OUT/logs.tar.gz" -C "$LOGS" .
n_out="$(find "$OUT" -mindepth 1 -maxdepth 1 | wc -l)"
if (( n_out > 8 )); then
    echo "warning: $n_out files under $OUT (a lent machine returns at most 8)" \
        | tee -a "$OUT/summary.txt" >&2
fi
exit $FAILED
