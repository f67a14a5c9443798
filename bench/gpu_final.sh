#!/usr/bin/env bash
# gpu_final.sh: a session's last short device call (~4 minutes), after changes that
# gpu_check.sh measured before: the tensor-core rows of the NHWC pipeline
# (bench_tc.json), the conv benchmark's auto rows (FP32, TF32, float16; every row
# validated before it is timed), the float32 filter and stack rows against cupyx, the filter kernels' own
# time (bench/filter_kernel_time.py), the torch block, and the gpu tests named in
# $FINAL_TESTS, Nsight Compute on the tensor-core (NCHW and NHWC), Winograd and col2im kernels
# (bench/ncu_probe.py), then the per-call host time (bench/gpu_profile.py, once the
# kernels are compiled). Each step capped (the caps add up to 530 s with the default
# PYTEST_S=30: give the device call a timeout_s of about 580); rows are written as
# they come.
#   OUT=/some/dir PYTHONPATH=. bash bench/gpu_final.sh
set -u
export PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"
LOGS="$(mktemp -d)"
export CUPY_CACHE_DIR="$(mktemp -d)"
t0=$(date +%s)
step() { local name=$1 limit=$2; shift 2; local s=$(date +%s)
    timeout --kill-after=5 "$limit" "$@" >"$LOGS/$name.log" 2>&1; local rc=$?
    echo "$name rc=$rc $(( $(date +%s) - s ))s" | tee -a "$LOGS/steps.txt"; }
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader \
    > "$LOGS/device.log" 2>&1
# first the tensor-core rows that decide the NHWC pipeline (auto, the NCHW mma
# kernels and mma_nhwc forced, against cuDNN TF32 / float16) on the 3x3 and 1x1
# layers, then every layer: FP32 (auto, Winograd and the NHWC weight gradient forced)
# and the tensor-core auto rows
step bench_tc "${TC_S:-100}" "$PY" bench/bench_gpu_conv.py --no-progress --no-fp32 \
    --layers N32-C64-56x56-K64,N32-C128,N32-C256,N32-C512,N32-C64-56x56-K256,N16-C512 \
    --tc-variants mma,mma_nhwc --budget 0.05 --json "$OUT/bench_tc.json"
step bench_conv "${CONV_S:-120}" "$PY" bench/bench_gpu_conv.py --no-progress --variants tiled_regblock,winograd,winograd4,nhwc,unfold \
    --tc-variants '' --budget 0.05 --json "$OUT/bench_conv.json"
step bench_filt "${FILTER_S:-45}" "$PY" bench/bench_gpu_filter.py --budget 0.05 \
    --kinds main,stack --json "$OUT/bench_filter.json"
# the 1-D rows against cupy.convolve/correlate (last measured at b1e14e5, before the
# plan-cache fix; json in logs.tar.gz: $OUT holds 8 files)
step bench_1d "${ONED_S:-30}" "$PY" bench/bench_gpu_filter.py --budget 0.05 \
    --kinds 1d --json "$LOGS/bench_1d.json"
# float64 and complex64 rows against cupyx (issue 16: never slower than ndimage in
# either dtype; last measured at 08aa471; json in logs.tar.gz)
step bench_2d "${TWOD_S:-25}" "$PY" bench/bench_gpu_filter.py --budget 0.05 \
    --kinds 2d --json "$LOGS/bench_2d.json"
step kernel_time "${KTIME_S:-40}" "$PY" bench/filter_kernel_time.py --n 4096 8192 \
    --stack 4096x64 --batch 10 --repeats 3 --json "$OUT/filter_kernel_time.json"
# thread-block sweep of the tiled filter kernel (rows in logs.tar.gz: $OUT holds 8 files)
step block_sweep "${SWEEP_S:-25}" "$PY" bench/filter_kernel_time.py --n 4096 --k 3 5 \
    --batch 10 --repeats 3 --blocks 32x8 64x4 128x2 32x16 64x8 \
    --json "$LOGS/filter_block_sweep.json"
step bench_torch "${TORCH_S:-20}" "$PY" bench/bench_gpu_torch.py --budget 0.1 \
    --json "$OUT/bench_torch.json"
# Nsight Compute on the kernels the measurements left most open (bench/ncu_probe.py)
NCU="${NCU:-/usr/local/cuda/bin/ncu}"
if [[ -x "$NCU" ]]; then
    step ncu "${NCU_S:-60}" "$NCU" --clock-control none \
        --kernel-name regex:'mma|winograd|col2im|tiled_regblock|nhwc|unfold' --launch-count 56 \
        --section SpeedOfLight --section WarpStateStats --section Occupancy \
        --section LaunchStats --section SchedulerStats "$PY" bench/ncu_probe.py
    cp "$LOGS/ncu.log" "$OUT/ncu.txt" 2>/dev/null
fi
# last: the kernels it calls were compiled by the benchmarks above (a fresh machine
# spent the whole 25 s profile step of the 491e4e5 run compiling)
step profile "${PROFILE_S:-35}" "$PY" bench/gpu_profile.py --calls 200 --top 25 --no-backward
if [[ -n "${FINAL_TESTS:-}" ]]; then
    # shellcheck disable=SC2086
    step pytest "${PYTEST_S:-30}" "$PY" -m pytest -q -m gpu -p no:cacheprovider -rfs \
        -x $FINAL_TESTS
fi
echo "total $(( $(date +%s) - t0 ))s" >> "$LOGS/steps.txt"
# (the profile stays in logs.tar.gz: $OUT returns 8 files at most)
{
    cat "$LOGS/device.log" "$LOGS/steps.txt"
    for f in bench_tc bench_conv bench_filt bench_1d bench_2d kernel_time block_sweep bench_torch pytest; do
        [[ -s "$LOGS/$f.log" ]] && { echo "== $f"; tail -n 60 "$LOGS/$f.log"; }
    done
} > "$OUT/summary.txt"
tar -czf "$OUT/logs.tar.gz" -C "$LOGS" .
cat "$LOGS/steps.txt"; head -n 14 "$LOGS/profile.log"
