"""Where the host time of a call goes on a real GPU (issue 15/16 follow-up).

For a few calls of the public API on CuPy arrays: the wall time per call (calls back
to back, synchronised per batch), the device time of one call bracketed by CUDA
events after an L2 flush (what ``bench/bench_gpu_filter.py`` measures: host time
before the first launch is exposed there), and a cProfile of many calls (top
functions by own time and by cumulative time). Prints a text report.

    PYTHONPATH=. python bench/gpu_profile.py [--calls 300] [--top 25]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import sys
import time
from pathlib import Path
from typing import Any

if str(Path(__file__).resolve().parent) not in sys.path:  # loaded by file path
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from _gpu_common import repo_on_path, time_gpu


def _cases(cp: Any) -> dict[str, Any]:
    import gpuconv

    rng = cp.random.default_rng(0)
    img = rng.standard_normal((4096, 4096), dtype=cp.float32)
    small = rng.standard_normal((256, 256), dtype=cp.float32)
    k3 = rng.standard_normal((3, 3), dtype=cp.float32)
    k9 = rng.standard_normal((9, 9), dtype=cp.float32)
    sig = rng.standard_normal(4096, dtype=cp.float32)
    sig6 = rng.standard_normal(10**6, dtype=cp.float32)
    k31 = rng.standard_normal(31, dtype=cp.float32)
    k7 = rng.standard_normal(7, dtype=cp.float32)
    k3001 = rng.standard_normal(3001, dtype=cp.float32)
    x1 = rng.standard_normal((1, 16, 32, 32), dtype=cp.float32)
    w1 = rng.standard_normal((16, 16, 3, 3), dtype=cp.float32)
    x16 = rng.standard_normal((16, 64, 56, 56), dtype=cp.float32)
    w16 = rng.standard_normal((64, 64, 3, 3), dtype=cp.float32)
    gy1 = gpuconv.conv2d(x1, w1, padding=1)
    from bench_gpu_filter import _same_fill_setup

    from gpuconv import _gpu_filter

    fp3, x3, wf3 = _same_fill_setup(cp, img, k3)[:3]
    fp9, x9, wf9 = _same_fill_setup(cp, img, k9)[:3]
    img512 = rng.standard_normal((512, 512), dtype=cp.float32)
    fpf, xf, wff = _same_fill_setup(cp, img512, k9)[:3]
    return {
        # the forced FFT took ~1 ms per call whatever the size at 491e4e5 (512^2 to
        # 4096^2): host time (plans?), to be located by the cProfile below
        "op correlate2d 512^2 k9 fft": lambda: _gpu_filter.correlate2d(
            xf, wff, fpf, "fft"),
        "convolve2d 256^2 k3 auto": lambda: gpuconv.convolve2d(small, k3, "same"),
        "convolve2d 4096^2 k3 auto": lambda: gpuconv.convolve2d(img, k3, "same"),
        "convolve2d 4096^2 k3 direct": lambda: gpuconv.convolve2d(
            img, k3, "same", method="direct"),
        "op correlate2d 4096^2 k3 tiled": lambda: _gpu_filter.correlate2d(
            x3, wf3, fp3, "tiled"),
        "convolve2d 4096^2 k9 auto": lambda: gpuconv.convolve2d(img, k9, "same"),
        "op correlate2d 4096^2 k9 tiled": lambda: _gpu_filter.correlate2d(
            x9, wf9, fp9, "tiled"),
        "convolve 4096 k7": lambda: gpuconv.convolve(sig, k7, "same"),
        # 0.29 ms at 1e6 and at 1e7 samples (b1e14e5; 8 MB moved at 1e6): a fixed
        # cost per call, on the device or exposed host time
        "convolve 1e6 k31": lambda: gpuconv.convolve(sig6, k31, "same"),
        # the segmented 1-D FFT (one fft_gather, two batched transforms): 0.63-0.70
        # ms at 1e6 samples at b1e14e5 whatever the taps
        "convolve 1e6 k3001 fft": lambda: gpuconv.convolve(
            sig6, k3001, "same", method="fft"),
        "conv2d N1 C16 32^2": lambda: gpuconv.conv2d(x1, w1, padding=1),
        "conv2d_backward N1 C16 32^2": lambda: gpuconv.conv2d_backward(
            gy1, x1, w1, padding=1),
        "conv2d N16 C64 56^2": lambda: gpuconv.conv2d(x16, w16, padding=1),
    }


def _peers(cp: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    rng = cp.random.default_rng(0)
    img = rng.standard_normal((4096, 4096), dtype=cp.float32)
    small = rng.standard_normal((256, 256), dtype=cp.float32)
    k3 = rng.standard_normal((3, 3), dtype=cp.float32)
    try:
        import cupyx.scipy.ndimage as ndi

        out["cupyx ndimage.convolve 256^2 k3"] = lambda: ndi.convolve(
            small, k3, mode="constant")
        out["cupyx ndimage.convolve 4096^2 k3"] = lambda: ndi.convolve(
            img, k3, mode="constant")
    except ImportError:
        pass
    try:
        import cupyx.scipy.signal as cps

        img512 = rng.standard_normal((512, 512), dtype=cp.float32)
        k9 = rng.standard_normal((9, 9), dtype=cp.float32)
        out["cupyx fftconvolve 512^2 k9"] = lambda: cps.fftconvolve(
            img512, k9, mode="same")
    except ImportError:
        pass
    try:
        import torch

        x = torch.randn(16, 64, 56, 56, device="cuda")
        w = torch.randn(64, 64, 3, 3, device="cuda")
        x1 = torch.randn(1, 16, 32, 32, device="cuda")
        w1 = torch.randn(16, 16, 3, 3, device="cuda")
        f = torch.nn.functional
        out["torch conv2d N1 C16 32^2"] = lambda: f.conv2d(x1, w1, padding=1)
        out["torch conv2d N16 C64 56^2"] = lambda: f.conv2d(x, w, padding=1)
    except Exception:  # no torch, or no CUDA torch
        pass
    return out


def host_per_call(cp: Any, fn: Any, n: int) -> float:
    """Time until the call returns (launches queued, not finished)."""
    fn()
    cp.cuda.Device().synchronize()
    times = []
    for _ in range(n):
        cp.cuda.Device().synchronize()
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    cp.cuda.Device().synchronize()
    return statistics.median(times)


def event_after_flush(cp: Any, fn: Any, n: int) -> float:
    """Median seconds between CUDA events around one call, an L2-sized fill queued
    before each (not synchronised: the call's host time overlaps it)."""
    buf = cp.empty(64 * 2**20, dtype=cp.float32)
    return time_gpu(cp, fn, lambda: buf.fill(1.0), warmup=1, min_repeats=n,
                    max_repeats=n, budget_s=0.0)[0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--no-backward", action="store_true",
                    help="skip the conv2d_backward case (its kernels' first "
                    "compilation takes tens of seconds on a fresh machine)")
    args = ap.parse_args(argv)
    repo_on_path()
    import cupy as cp

    from gpuconv._bench_overhead import per_call

    cases = _cases(cp)
    if args.no_backward:
        cases = {k: v for k, v in cases.items() if "backward" not in k}
    print(f"{'call':36s} {'wall us':>9s} {'host us':>9s} {'event us':>9s}")
    for name, fn in {**cases, **_peers(cp)}.items():
        w = min(per_call(fn, 250, rounds=5, sync=cp.cuda.Device().synchronize)) * 1e6
        h = host_per_call(cp, fn, 50) * 1e6
        e = event_after_flush(cp, fn, 30) * 1e6
        print(f"{name:36s} {w:9.1f} {h:9.1f} {e:9.1f}", flush=True)
    for name in ("op correlate2d 512^2 k9 fft", "convolve 1e6 k31",
                 "convolve 1e6 k3001 fft", "convolve2d 256^2 k3 auto",
                 "op correlate2d 4096^2 k3 tiled",
                 "conv2d N1 C16 32^2", "convolve 4096 k7", "convolve2d 4096^2 k3 auto",
                 "conv2d_backward N1 C16 32^2"):
        fn = cases.get(name)
        if fn is None:
            continue
        fn()
        cp.cuda.Device().synchronize()
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(args.calls):
            fn()
        cp.cuda.Device().synchronize()
        prof.disable()
        for key in ("tottime", "cumulative"):
            s = io.StringIO()
            pstats.Stats(prof, stream=s).sort_stats(key).print_stats(args.top)
            text = s.getvalue()
            start = text.find("   ncalls")
            print(f"\n=== {name}: {args.calls} calls, by {key}\n{text[start:]}",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
