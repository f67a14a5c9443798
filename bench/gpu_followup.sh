#!/usr/bin/env bash
# gpu_followup.sh: the second, short device call of a session (after gpu_check.sh):
# where host time goes on the real GPU (bench/gpu_profile.py), the per-call rows of
# `python -m gpuconv bench --overhead`, the gpu tests gpu_check.sh's pytest step did
# not reach (torch, examples), and filter-bench groups (--kinds). Each step capped.
#   OUT=/some/dir PYTHONPATH=. bash bench/gpu_followup.sh [KINDS] [PYTEST_S] [FILTER_S]
set -u
KINDS="${1:-rank1,1d}"
PYTEST_S="${2:-100}"
FILTER_S="${3:-55}"
export PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"
LOGS="$(mktemp -d)"
t0=$(date +%s)
step() { local name=$1 limit=$2; shift 2; local s=$(date +%s)
    timeout --kill-after=5 "$limit" "$@" >"$LOGS/$name.log" 2>&1; local rc=$?
    echo "$name rc=$rc $(( $(date +%s) - s ))s" | tee -a "$LOGS/steps.txt"; }
step profile 45 "$PY" bench/gpu_profile.py --calls 300 --top 30
step overhead 25 "$PY" -m gpuconv bench --overhead --no-progress --json "$OUT/overhead.json"
step pytest "$PYTEST_S" "$PY" -m pytest -q -m gpu -p no:cacheprovider --durations=20 -rfs \
    --junitxml="$LOGS/pytest.xml" tests/test_torch.py tests/test_examples.py \
    "tests/test_gpu_filter.py::test_awkward_grid"
step filter "$FILTER_S" "$PY" bench/bench_gpu_filter.py --budget 0.05 --kinds "$KINDS" \
    --json "$OUT/bench_filter_more.json"
echo "total $(( $(date +%s) - t0 ))s" >> "$LOGS/steps.txt"
cp "$LOGS/profile.log" "$OUT/profile.txt" 2>/dev/null
tar -czf "$OUT/logs.tar.gz" -C "$LOGS" .
cat "$LOGS/steps.txt"; tail -n 5 "$LOGS/pytest.log"; head -n 16 "$LOGS/profile.log"
