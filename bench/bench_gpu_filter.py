"""GPU benchmark of gpuconv's filter kernels (``cuda/filter2d.cu``) against cupyx.

Suite (performance.md section 2, the single-image filter suite): float32 images of
4096² and 8192², ``convolve2d(x, w, mode='same', boundary='fill')`` with square
kernels k = 3, 5, 7, 9, 15, 31; plus 512² (k = 3, 9) where launch overhead dominates.
For each case:

- gpuconv ``'auto'`` (the public ``gpuconv.convolve2d``: what users get) against
  ``cupyx.scipy.signal.convolve2d`` (target: at least 5x faster) and against
  ``cupyx.scipy.signal.fftconvolve`` (target at k >= 15: never slower);
- gpuconv's forced algorithms ``tiled``, ``naive`` (k <= 9) and ``fft``, which is what
  calibrates the ``'auto'`` cost model of ``gpuconv._plan_filter``.

Rates are Gpx/s (output pixels per second) and the share of the memory floor: 8 bytes
per pixel (one float32 read, one written) at the copy bandwidth measured at start
(``cupy`` device-to-device copy of 1 GiB, counting read + write). Target: >= 70 % of
the floor for k <= 9.

Method: inputs from a fixed seed; every callable is validated against cupyx's direct
convolve2d output (relative max error) before it is timed; then warm-up calls and
timed calls bracketed by CUDA events (median and min reported; enough repeats to
cover ~0.3 s per side, at least 5); inputs of 4096² and more exceed the 50 MB L2, the
512² rows are warm-L2 by design (``l2`` key). Every row carries the device name.

A case or a side that fails (an exception, or an output that fails validation and
is then not timed) is recorded as a row with an ``error`` and the benchmark goes
on; the exit status is then 1.

Extra suites (after the float32 suite; ``--quick`` runs one case of each):

- ``filter2d/<variant>/<n>x<n>/k<k>/<dtype>``: float64 and complex64 images (4096²,
  8192², k = 3, 5, 7, 9), gpuconv ``auto`` and ``tiled`` against
  ``cupyx.scipy.ndimage.convolve`` (``mode='constant'``, the same 'same'/fill-0
  result for odd k) and ``cupyx.scipy.signal.convolve2d``; floor = 2 * itemsize
  bytes per pixel.
- ``filter2d_rank1/<variant>/<n>x<n>/k<k>/float32``: a Gaussian (rank-1) kernel,
  k = 5, 9, 15, 31 at 4096² and 8192²: ``auto``, the 2-D ``tiled`` kernel, the two
  1-D passes (``separable``) and ``fft``, against ``cupyx.scipy.ndimage.convolve``:
  the rows that calibrate :func:`gpuconv._plan_filter.separable_seconds`.
- ``filter2d_stack/<variant>/<B>x<n>x<n>/k<k>/float32``: a stack of 4096 images of
  64² (``axes=(-2, -1)``, one launch), k = 3 and 7, ``auto`` against
  ``cupyx.scipy.ndimage.convolve`` with a ``(1, k, k)`` kernel, and
  ``single_image``: one 4096² image of the same pixel count (the issue's target:
  the stack at the large image's per-pixel rate, ``gpx_s``).
- ``convolve1d/<variant>/n<N>/k<k>/float32``: ``gpuconv.convolve`` and
  ``gpuconv.correlate`` ('same') against ``cupy.convolve``/``cupy.correlate``,
  signals of 1e6, 1e7, 1e8 samples, kernels of 3 to 10 000 taps: ``auto`` (the
  cost model's pick), ``direct`` (``filter1d_tiled``) and ``fft`` (the segmented
  ``fft1d``), the forced rows to fit the 1-D cost model; target: ours at most 0.5x
  CuPy's time.

Standalone (``--json`` is rewritten after every case, so a run cut short by a time
limit still leaves the rows measured so far)::

    PYTHONPATH=. python bench/bench_gpu_filter.py [--quick] [--json out.json]
        [--budget 0.3] [--plot out.png]
    python bench/bench_gpu_filter.py --table out.json     # the table of saved rows

``python -m gpuconv bench --backend cuda`` calls :func:`run_filter_bench`.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

if str(Path(__file__).resolve().parent) not in sys.path:  # loaded by file path
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from _gpu_common import (
    copy_bandwidth,
    device_name,
    failed,
    plot_auto_rows,
    repo_on_path,
    row_saver,
    start_run,
    time_gpu,
    write_rows,  # noqa: F401  (part of this script's API: saving rows)
)

SIZES = (4096, 8192)
KSIZES = (3, 5, 7, 9, 15, 31)
LAUNCH_SIZE = 512
LAUNCH_KSIZES = (3, 9)
QUICK_SIZES = (4096,)
QUICK_KSIZES = (3, 9, 31)
FLOOR_BYTES_PER_PX = 8  # float32 in + out
FLOOR_TARGET = 0.70  # share of the memory floor, k <= 9
CUPYX_DIRECT_TARGET = 0.2  # ours / cupyx.convolve2d time (>= 5x faster)
CUPYX_FFT_TARGET = 1.0  # ours / cupyx.fftconvolve time at k >= 15
DTYPE_SIZES = (4096, 8192)
DTYPE_KSIZES = (3, 5, 7, 9)
EXTRA_DTYPES = ("float64", "complex64")
NDIMAGE_TARGET = 1.0  # ours / cupyx.ndimage.convolve time: never slower
SIGNAL_SIZES = (10**6, 10**7, 10**8)
SIGNAL_TAPS = (3, 31, 301, 3001, 10000)
CUPY_1D_TARGET = 0.5  # ours / cupy.convolve time (>= 2x faster)
RANK1_KSIZES = (5, 9, 15, 31)
#: The stack rows: images per call, image side, kernel sizes.
STACK_IMAGES = 4096
STACK_SIZES = (64,)
STACK_KSIZES = (3, 7)
QUICK_EXTRA = (("2d", "float64", 4096, 3), ("2d", "complex64", 4096, 3),
               ("rank1", "float32", 4096, 15), ("stack", "float32", 64, 3),
               ("1d", "float32", 10**7, 31))


def _rel_err(cp: Any, ours: Any, ref: Any) -> float:
    ours = ours.astype(cp.float64)
    ref = ref.astype(cp.float64)
    scale = max(float(cp.abs(ref).max()), 1.0)
    return float(cp.abs(ours - ref).max()) / scale


def _validated_time(
    cp: Any, fn: Callable[[], Any], ref: Any, limit: float, row: dict[str, Any],
    timing: dict[str, Any], rows: list[dict[str, Any]],
) -> tuple[float, float, int, float] | None:
    """``fn`` checked against ``ref`` (relative error at most ``limit``), then timed:
    ``(median_s, min_s, repeats, max_err)``; ``None`` once ``row`` with the reason
    (a failed validation, not timed, or an exception) is appended to ``rows``."""
    try:
        err = _rel_err(cp, fn(), ref)
        if not err <= limit:
            rows.append({**row, "max_err": err, "validation_failed": True,
                         "error_kind": "validation",
                         "error": f"validation failed: error {err:.3g} > "
                                  f"{limit:.3g}; not timed"})
            return None
        med, mn, reps = time_gpu(cp, fn, **timing)
    except Exception as exc:
        rows.append({**row, "error": f"{type(exc).__name__}: {exc}",
                     "error_kind": "exception"})
        return None
    return med, mn, reps, err


def same_fill_problem(h: int, w: int, kh: int, kw: int, dtype: Any) -> Any:
    """The FilterProblem of ``convolve2d(x, w, 'same', 'fill')`` (kernel flipped)."""
    from gpuconv._filter_args import FilterProblem

    return FilterProblem(1, h, w, 1, kh, kw, kh // 2, kw // 2, h, w, "fill", 0.0,
                         np.dtype(dtype))


#: The groups of rows, in the order they run (``kinds=``, ``--kinds``).
KINDS = ("main", "2d", "rank1", "stack", "1d")


def run_filter_bench(quick: bool = False, repeats: int | None = None,
                     progress: bool = False, budget_s: float = 0.3,
                     sink: Callable[[list[dict[str, Any]]], None] | None = None,
                     kinds: tuple[str, ...] = KINDS,
                     ) -> list[dict[str, Any]]:
    """Rows of the filter benchmark (see the module docstring). Needs CuPy and a GPU.

    ``quick``: 4096² only with k = 3, 9, 31, plus the 512² rows. ``budget_s``:
    seconds of timed calls per side beyond the minimum. ``sink`` is called with the
    rows of each case as soon as it is done (to save rows incrementally).
    ``kinds``: which groups of :data:`KINDS` run (``'main'``: the float32 2-D rows
    against cupyx; ``'2d'``: float64/complex64; ``'rank1'``: Gaussian kernels;
    ``'stack'``: 4096 small images in one call; ``'1d'``: convolve/correlate).
    """
    repo_on_path()
    import cupy as cp

    min_rep = max(3, repeats or 5)
    dev = device_name(cp)
    bw = copy_bandwidth(cp)
    cp.get_default_memory_pool().free_all_blocks()
    base = {"device": dev, "copy_bandwidth_gbs": bw / 1e9, "unit": "gpx_s",
            "dtype": "float32", "op": "convolve2d same fill", "backend": "cuda"}
    cases = [(n, k) for n in (QUICK_SIZES if quick else SIZES)
             for k in (QUICK_KSIZES if quick else KSIZES)]
    cases += [(LAUNCH_SIZE, k) for k in LAUNCH_KSIZES]
    if "main" not in kinds:
        cases = []
    rng = np.random.default_rng(20240607)
    rows: list[dict[str, Any]] = []
    for n, k in cases:
        if progress:
            print(f"[filter bench] {n}x{n} k={k}", file=sys.stderr, flush=True)
        try:
            case_rows = _bench_case(cp, rng, n, k, bw, min_rep, base, budget_s)
        except Exception as exc:  # one bad case must not end the run
            case_rows = [{**base, "case": f"filter2d/-/{n}x{n}/k{k}",
                          "shape": f"{n}x{n} k={k}", "n": n, "k": k,
                          "error": f"{type(exc).__name__}: {exc}",
                          "error_kind": "exception"}]
        rows += case_rows
        if sink is not None:
            sink(case_rows)
        cp.get_default_memory_pool().free_all_blocks()
    extra = [("2d", dt, n, k) for dt in EXTRA_DTYPES for n in DTYPE_SIZES
             for k in DTYPE_KSIZES]
    extra += [("rank1", "float32", n, k) for n in DTYPE_SIZES for k in RANK1_KSIZES]
    extra += [("stack", "float32", n, k) for n in STACK_SIZES for k in STACK_KSIZES]
    extra += [("1d", "float32", n, k) for n in SIGNAL_SIZES for k in SIGNAL_TAPS]
    if quick:
        extra = list(QUICK_EXTRA)
    extra = [e for e in extra if e[0] in kinds]
    for kind, dt, n, k in extra:
        if progress:
            print(f"[filter bench] {kind} {dt} n={n} k={k}", file=sys.stderr,
                  flush=True)
        bench = {"2d": _bench_dtype_case, "rank1": _bench_rank1_case,
                 "stack": _bench_stack_case, "1d": _bench_1d_case}[kind]
        try:
            case_rows = bench(cp, rng, n, k, dt, bw, min_rep, base, budget_s)
        except Exception as exc:  # one bad case must not end the run
            case_rows = [{**base, "dtype": dt, "n": n, "k": k,
                          "case": f"{kind}/-/{n}/k{k}/{dt}",
                          "error": f"{type(exc).__name__}: {exc}",
                          "error_kind": "exception"}]
        rows += case_rows
        if sink is not None:
            sink(case_rows)
        cp.get_default_memory_pool().free_all_blocks()
    return rows


def _timed_rows(cp: Any, case: str, ours: dict[str, Callable[[], Any]],
                peers: dict[str, Callable[[], Any]], ref: Any, limit: float,
                px: float, floor_s: float, target: float, extra: dict[str, Any],
                timing: dict[str, Any]) -> list[dict[str, Any]]:
    """Validate and time ``ours`` and ``peers``; one row per (ours, peer) pair."""
    peer_t: dict[str, float] = {}
    peer_err: dict[str, str] = {}
    for name, fn in peers.items():
        try:
            err = _rel_err(cp, fn(), ref)
            if err > max(limit, 1e-4):
                raise RuntimeError(f"disagrees with the reference: {err:.3g}")
            peer_t[name] = time_gpu(cp, fn, **timing)[0]
        except Exception as exc:  # our rows go on without this peer
            peer_err[name] = f"{type(exc).__name__}: {exc}"
    rows: list[dict[str, Any]] = []
    for variant, fn in ours.items():
        row = {**extra, "case": case.format(variant=variant), "variant": variant,
               "err_limit": limit}
        timed = _validated_time(cp, fn, ref, limit, row, timing, rows)
        if timed is None:
            continue
        med, mn, reps, err = timed
        row.update({"median_s": med, "min_s": mn, "repeats": reps,
                    "rate": px / med / 1e9, "gpx_s": px / med / 1e9,
                    "mem_floor_share": floor_s / med, "max_err": err})
        if not peer_t:
            rows.append({**row, "peer": None, "peer_median_s": None, "ratio": None,
                         "target_ratio": None, "meets_target": None,
                         "peer_error": "; ".join(f"{p}: {e}"
                                                 for p, e in peer_err.items())
                         or "no peer"})
        for peer, pmed in peer_t.items():
            rows.append({**row, "peer": peer, "peer_median_s": pmed,
                         "ratio": med / pmed, "peer_rate": px / pmed / 1e9,
                         "target_ratio": target,
                         "meets_target": med / pmed <= target})
    return rows


def _same_fill_setup(cp: Any, x: Any, w: Any) -> tuple[Any, ...]:
    """The 'same' fill problem of the square image ``x`` and kernel ``w`` for the
    op-level calls: ``(fp, x3, wf3, px, ref, peers)`` with the ``naive`` kernel's
    result as the reference and ``cupyx.scipy.ndimage.convolve`` as the first peer
    (where cupyx is installed)."""
    from gpuconv import _gpu_filter

    n, k = x.shape[0], w.shape[0]
    fp = same_fill_problem(n, n, k, k, np.dtype(x.dtype))
    x3 = x.reshape(1, n, n)
    wf3 = cp.ascontiguousarray(w[::-1, ::-1]).reshape(1, k, k)
    ref = _gpu_filter.correlate2d(x3, wf3, fp, "naive")[0]
    peers: dict[str, Callable[[], Any]] = {}
    try:
        import cupyx.scipy.ndimage as cpn

        peers["cupyx.scipy.ndimage.convolve"] = lambda: cpn.convolve(
            x, w, mode="constant", cval=0.0)
    except ImportError:  # a peer missing: our rows go on
        pass
    return fp, x3, wf3, float(n * n), ref, peers


def _bench_dtype_case(cp: Any, rng: np.random.Generator, n: int, k: int,
                      dtype: str, bw: float, min_rep: int, base: dict[str, Any],
                      budget_s: float = 0.3) -> list[dict[str, Any]]:
    """float64 / complex64 'same' fill rows against cupyx ndimage and signal."""
    import gpuconv
    from gpuconv import _gpu_filter

    dt = np.dtype(dtype)
    xr = rng.standard_normal((n, n))
    wr = rng.standard_normal((k, k))
    if dt.kind == "c":
        xr = xr + 1j * rng.standard_normal((n, n))
        wr = wr + 1j * rng.standard_normal((k, k))
    x = cp.asarray(xr.astype(dt))
    w = cp.asarray(wr.astype(dt))
    fp, x3, wf3, px, ref, peers = _same_fill_setup(cp, x, w)
    try:
        import cupyx.scipy.signal as cps

        peers["cupyx.scipy.signal.convolve2d"] = lambda: cps.convolve2d(
            x, w, mode="same")
    except ImportError:
        pass
    ours = {
        "auto": lambda: gpuconv.convolve2d(x, w, mode="same"),
        "tiled": lambda: _gpu_filter.correlate2d(x3, wf3, fp, "tiled")[0],
    }
    limit = (1e-12 if dt == np.float64 else 1e-5) * k
    extra = {**base, "dtype": dt.name, "shape": f"{n}x{n} k={k}", "n": n, "k": k,
             "l2": "exceeds L2"}
    timing = {"warmup": 2, "min_repeats": min_rep, "max_repeats": 200,
              "budget_s": budget_s}
    floor_s = 2 * dt.itemsize * px / bw
    rows = _timed_rows(cp, f"filter2d/{{variant}}/{n}x{n}/k{k}/{dt.name}", ours,
                       peers, ref, limit, px, floor_s, NDIMAGE_TARGET, extra, timing)
    from gpuconv._plan_filter import choose_algorithm

    for r in rows:  # what bench/calibrate.py reads (the float64 FLOP cost)
        r["algorithm"] = (choose_algorithm(fp, "auto") if r["variant"] == "auto"
                          else r["variant"])
    return rows


def _bench_rank1_case(cp: Any, rng: np.random.Generator, n: int, k: int,
                      dtype: str, bw: float, min_rep: int, base: dict[str, Any],
                      budget_s: float = 0.3) -> list[dict[str, Any]]:
    """A Gaussian (rank-1) kernel: 2-D tiled vs the two 1-D passes vs the FFT."""
    import gpuconv
    from gpuconv import _gpu_filter

    dt = np.dtype(dtype)
    g = np.exp(-np.linspace(-2.0, 2.0, k) ** 2)
    x = cp.asarray(rng.standard_normal((n, n)).astype(dt))
    w = cp.asarray(np.multiply.outer(g, g).astype(dt))
    fp, x3, wf3, px, ref, peers = _same_fill_setup(cp, x, w)
    ours = {
        "auto": lambda: gpuconv.convolve2d(x, w, mode="same"),
        "tiled": lambda: _gpu_filter.correlate2d(x3, wf3, fp, "tiled")[0],
        "separable": lambda: _gpu_filter.correlate2d(x3, wf3, fp, "separable")[0],
        "fft": lambda: _gpu_filter.correlate2d(x3, wf3, fp, "fft")[0],
    }
    # "size", not "n": bench/calibrate.py fits the 2-D algorithms on rows with "n"
    extra = {**base, "dtype": dt.name, "shape": f"{n}x{n} k={k}", "size": n, "k": k,
             "kernel": "gaussian rank 1", "l2": "exceeds L2"}
    timing = {"warmup": 2, "min_repeats": min_rep, "max_repeats": 200,
              "budget_s": budget_s}
    floor_s = 2 * dt.itemsize * px / bw
    return _timed_rows(cp, f"filter2d_rank1/{{variant}}/{n}x{n}/k{k}/{dt.name}",
                       ours, peers, ref, 1e-4, px, floor_s, NDIMAGE_TARGET, extra,
                       timing)


def _bench_stack_case(cp: Any, rng: np.random.Generator, n: int, k: int,
                      dtype: str, bw: float, min_rep: int, base: dict[str, Any],
                      budget_s: float = 0.3) -> list[dict[str, Any]]:
    """A stack of ``STACK_IMAGES`` images of ``n``² in one call (``axes``) against
    ndimage with a unit-depth kernel, and one image of the same pixel count."""
    import gpuconv

    dt = np.dtype(dtype)
    b = STACK_IMAGES
    side = int(round((b * n * n) ** 0.5))
    x = cp.asarray(rng.standard_normal((b, n, n)).astype(dt))
    big = cp.asarray(rng.standard_normal((side, side)).astype(dt))
    w = cp.asarray(rng.standard_normal((k, k)).astype(dt))
    px = float(b * n * n)
    ref = gpuconv.convolve2d(x.astype(cp.float64), w.astype(cp.float64), mode="same",
                             axes=(-2, -1))
    peers: dict[str, Callable[[], Any]] = {}
    try:
        import cupyx.scipy.ndimage as ndi

        peers["cupyx.scipy.ndimage.convolve"] = lambda: ndi.convolve(
            x, w[None], mode="constant")
    except ImportError:
        pass
    single = gpuconv.convolve2d(big, w, mode="same")
    single_err = _rel_err(cp, single, gpuconv.convolve2d(
        big.astype(cp.float64), w.astype(cp.float64), mode="same"))
    if not single_err <= 1e-4 * k:
        raise RuntimeError(f"the single image's result is off: {single_err:.3g}")
    ours = {
        "auto": lambda: gpuconv.convolve2d(x, w, mode="same", axes=(-2, -1)),
    }
    extra = {**base, "dtype": dt.name, "shape": f"{b}x{n}x{n} k={k}", "stack": b,
             "image": n, "k": k, "l2": "exceeds L2"}
    timing = {"warmup": 2, "min_repeats": min_rep, "max_repeats": 200,
              "budget_s": budget_s}
    floor_s = 2 * dt.itemsize * px / bw
    rows = _timed_rows(cp, f"filter2d_stack/{{variant}}/{b}x{n}x{n}/k{k}/{dt.name}",
                       ours, peers, ref, 1e-4 * k, px, floor_s, NDIMAGE_TARGET, extra,
                       timing)
    med, mn, reps = time_gpu(cp, lambda: gpuconv.convolve2d(big, w, mode="same"),
                             **timing)
    rows.append({**extra, "case": f"filter2d_stack/single_image/{side}x{side}/k{k}/"
                 f"{dt.name}", "variant": "single_image", "shape": f"{side}x{side} "
                 f"k={k}", "median_s": med, "min_s": mn, "repeats": reps,
                 "rate": px / med / 1e9, "gpx_s": px / med / 1e9,
                 "mem_floor_share": floor_s / med, "max_err": single_err,
                 "err_limit": 1e-4 * k, "peer": None,
                 "peer_median_s": None, "ratio": None, "target_ratio": None,
                 "meets_target": None})
    return rows


def _bench_1d_case(cp: Any, rng: np.random.Generator, n: int, k: int, dtype: str,
                   bw: float, min_rep: int, base: dict[str, Any],
                   budget_s: float = 0.3) -> list[dict[str, Any]]:
    """1-D 'same' convolve/correlate rows against cupy.convolve/cupy.correlate:
    ``auto``, and the two algorithms forced (``direct``: filter1d_tiled, ``fft``:
    the segmented fft1d) so that their cost models can be fitted."""
    import gpuconv

    dt = np.dtype(dtype)
    a = cp.asarray(rng.standard_normal(n).astype(dt))
    v = cp.asarray(rng.standard_normal(k).astype(dt))
    px = float(n)
    ref_c = cp.convolve(a.astype(cp.float64), v.astype(cp.float64), mode="same")
    ref_r = cp.correlate(a.astype(cp.float64), v.astype(cp.float64), mode="same")
    timing = {"warmup": 2, "min_repeats": min_rep, "max_repeats": 200,
              "budget_s": budget_s}
    floor_s = 2 * dt.itemsize * px / bw
    extra = {**base, "dtype": dt.name, "op": "convolve/correlate 1-D same",
             "shape": f"n={n} k={k}", "size": n, "k": k}
    limit = 1e-4
    rows = _timed_rows(
        cp, f"convolve1d/{{variant}}/n{n}/k{k}/{dt.name}",
        {m: functools.partial(gpuconv.convolve, a, v, mode="same", method=m)
         for m in ("auto", "direct", "fft")},
        {"cupy.convolve": lambda: cp.convolve(a, v, mode="same")},
        ref_c, limit, px, floor_s, CUPY_1D_TARGET, extra, timing)
    rows += _timed_rows(
        cp, f"correlate1d/{{variant}}/n{n}/k{k}/{dt.name}",
        {m: functools.partial(gpuconv.correlate, a, v, mode="same", method=m)
         for m in ("auto", "direct", "fft")},
        {"cupy.correlate": lambda: cp.correlate(a, v, mode="same")},
        ref_r, limit, px, floor_s, CUPY_1D_TARGET, extra, timing)
    return rows


def _bench_case(cp: Any, rng: np.random.Generator, n: int, k: int, bw: float,
                min_rep: int, base: dict[str, Any],
                budget_s: float = 0.3) -> list[dict[str, Any]]:
    import cupyx.scipy.signal as cps

    import gpuconv
    from gpuconv import _gpu_filter
    from gpuconv._plan_filter import choose_algorithm

    x = cp.asarray(rng.standard_normal((n, n), dtype=np.float32))
    w = cp.asarray(rng.standard_normal((k, k), dtype=np.float32))
    fp = same_fill_problem(n, n, k, k, np.float32)
    x3 = x.reshape(1, n, n)
    wf3 = cp.ascontiguousarray(w[::-1, ::-1]).reshape(1, k, k)
    px = float(n * n)
    floor_s = FLOOR_BYTES_PER_PX * px / bw
    timing = {"warmup": 2, "min_repeats": min_rep, "max_repeats": 200,
              "budget_s": budget_s}

    peers: dict[str, Callable[[], Any]] = {
        "cupyx.scipy.signal.convolve2d": lambda: cps.convolve2d(x, w, mode="same"),
        "cupyx.scipy.signal.fftconvolve": lambda: cps.fftconvolve(x, w, mode="same"),
    }
    ours: dict[str, Callable[[], Any]] = {
        "auto": lambda: gpuconv.convolve2d(x, w, mode="same"),
        "tiled": lambda: _gpu_filter.correlate2d(x3, wf3, fp, "tiled")[0],
        "fft": lambda: _gpu_filter.correlate2d(x3, wf3, fp, "fft")[0],
    }
    if k <= 9:
        ours["naive"] = lambda: _gpu_filter.correlate2d(x3, wf3, fp, "naive")[0]

    try:
        ref = peers["cupyx.scipy.signal.convolve2d"]()
    except Exception:  # cupyx missing or broken: our own direct kernel is the ref
        peers = {}
        ref = _gpu_filter.correlate2d(x3, wf3, fp, "naive")[0]
    peer_t: dict[str, tuple[float, float, int]] = {}
    peer_err: dict[str, str] = {}
    for name, fn in peers.items():
        try:
            err = _rel_err(cp, fn(), ref)
            if err > 1e-4:
                raise RuntimeError(f"disagrees with convolve2d: {err:.3g}")
            peer_t[name] = time_gpu(cp, fn, **timing)
        except Exception as exc:  # our rows go on without this peer
            peer_err[name] = f"{type(exc).__name__}: {exc}"
    rows: list[dict[str, Any]] = []
    for variant, fn in ours.items():
        case = f"filter2d/{variant}/{n}x{n}/k{k}"
        limit = 1e-4 if variant == "fft" else 5e-6 * k
        fail = {**base, "case": case, "shape": f"{n}x{n} k={k}", "n": n, "k": k,
                "variant": variant, "err_limit": limit}
        timed = _validated_time(cp, fn, ref, limit, fail, timing, rows)
        if timed is None:
            continue
        med, mn, reps, err = timed
        rate = px / med / 1e9
        chosen = choose_algorithm(fp, "auto") if variant == "auto" else variant
        common = {
            **base, "case": case, "shape": f"{n}x{n} k={k}", "n": n, "k": k,
            "variant": variant, "algorithm": chosen, "median_s": med, "min_s": mn,
            "repeats": reps, "rate": rate, "gpx_s": rate,
            "mem_floor_share": floor_s / med,
            "floor_target": FLOOR_TARGET if k <= 9 else None,
            "max_err": err, "err_limit": limit,
            "l2": "warm" if n <= 2048 else "exceeds L2",
        }
        if k <= 9 and n > LAUNCH_SIZE:
            common["meets_floor"] = floor_s / med >= FLOOR_TARGET
        if not peer_t:  # no peer could be timed: our time alone
            rows.append({**common, "peer": None, "peer_median_s": None,
                         "ratio": None, "peer_rate": None, "target_ratio": None,
                         "meets_target": None,
                         "peer_error": "; ".join(f"{p}: {e}"
                                                 for p, e in peer_err.items())
                         or "cupyx.scipy.signal unavailable"})
        for peer, (pmed, _, _) in peer_t.items():
            target = None
            if variant == "auto":
                if peer.endswith("convolve2d"):
                    target = CUPYX_DIRECT_TARGET
                elif k >= 15:
                    target = CUPYX_FFT_TARGET
            rows.append({
                **common, "peer": peer, "peer_median_s": pmed, "ratio": med / pmed,
                "peer_rate": px / pmed / 1e9, "target_ratio": target,
                "meets_target": None if target is None else med / pmed <= target,
            })
    return rows


def _table(rows: list[dict[str, Any]]) -> str:
    head = f"{'case':44s} {'peer':32s} {'ms':>8s} {'peer ms':>8s} {'ratio':>6s} " \
           f"{'Gpx/s':>7s} {'floor%':>6s} target"
    lines = [head, "-" * len(head)]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['case']:44s} {r['error']}")
            continue
        tgt = ""
        if r.get("target_ratio") is not None:
            ok = "ok" if r["meets_target"] else "MISSED"
            tgt = f"<={r['target_ratio']:g} {ok}"
        if r.get("meets_floor") is not None:
            ok = "ok" if r["meets_floor"] else "MISSED"
            tgt += f" floor>={FLOOR_TARGET:.0%} {ok}"
        peer_ms = ("-" if r.get("peer_median_s") is None
                   else f"{r['peer_median_s'] * 1e3:.3f}")
        ratio = "-" if r.get("ratio") is None else f"{r['ratio']:.3f}"
        lines.append(
            f"{r['case']:44s} {str(r.get('peer') or '-'):32s} "
            f"{r['median_s'] * 1e3:8.3f} {peer_ms:>8s} {ratio:>6s} {r['gpx_s']:7.1f} "
            f"{100 * r['mem_floor_share']:6.1f} {tgt}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--kinds", default=",".join(KINDS),
                    help=f"groups of rows to run, comma-separated, of {KINDS}")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--budget", type=float, default=0.3,
                    help="seconds of timed calls per side (default %(default)s)")
    ap.add_argument("--json", default=None,
                    help="write the rows to this file (rewritten after every case)")
    ap.add_argument("--plot", default=None, metavar="OUT.png",
                    help="ratio chart of the auto rows (needs matplotlib)")
    ap.add_argument("--table", default=None, metavar="JSON",
                    help="only print the table of the filter rows of a saved JSON")
    args = ap.parse_args(argv)
    if args.table:
        doc = json.loads(Path(args.table).read_text())
        rows = doc["rows"] if isinstance(doc, dict) else doc
        rows = [r for r in rows if str(r.get("case", "")).startswith(
            ("filter2d", "convolve1d/", "correlate1d/"))]
        print(_table(rows))
        return 0
    meta = start_run("bench_gpu_filter", argv)
    if meta is None:
        return 2
    rows, save = row_saver(args.json, meta)
    run_filter_bench(quick=args.quick, repeats=args.repeats, progress=True,
                     budget_s=args.budget, sink=save,
                     kinds=tuple(args.kinds.split(",")))
    print(_table(rows))
    if rows and rows[0].get("copy_bandwidth_gbs"):
        print(f"device: {rows[0]['device']}, copy bandwidth "
              f"{rows[0]['copy_bandwidth_gbs']:.0f} GB/s")
    if args.plot:
        plot_auto_rows(rows, args.plot, "bench_gpu_filter")
    return 1 if failed(rows) else 0


if __name__ == "__main__":
    sys.exit(main())
