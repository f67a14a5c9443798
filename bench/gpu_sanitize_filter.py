"""A small filter workload for compute-sanitizer (``bench/gpu_check.sh`` runs it
through ``bench/gpu_sanitize_all.py``).

CuPy's memory pool is switched off first (a pooled sub-allocation would hide an
out-of-bounds access inside a larger block), so every buffer is its own
``cudaMalloc``. Runs ``filter2d_naive`` and ``filter2d_tiled`` (compile-time 3x3 and
9x9 with interior tiles on the 128-bit load path, the runtime-size path, the RY = 1
path, border tiles with wrap/symm/fill, a kernel larger than the image) for every
dtype on small shapes, the separable passes, ``filter1d`` and the FFT paths (their
``fft_gather`` pass, 2-D and 1-D; the 2-D path's ``fft_spectrum_product`` and
``fft_crop``), checks each result against the NumPy backend's
op, and exits 1 on a wrong result. Under ``compute-sanitizer --tool memcheck|racecheck
--error-exitcode N`` a memory error or a shared-memory race makes the exit status N.

    PYTHONPATH=. compute-sanitizer --tool racecheck --error-exitcode 99 \\
        python bench/gpu_sanitize_filter.py
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

if str(Path(__file__).resolve().parent) not in sys.path:  # loaded by file path
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from _gpu_common import sanitize_workload


def _workload(cp: Any) -> tuple[int, int]:
    from gpuconv import _gpu_filter
    from gpuconv._cpu_filter import correlate2d as numpy_op
    from tests._filter_cases import ALL_DTYPES, random_values, scipy_problem

    rng = np.random.default_rng(0)
    cases = [
        # (dtypes, B, Bk, H, W, KH, KW, mode, boundary)
        (ALL_DTYPES, 2, 2, 37, 45, 4, 3, "same", "symm"),
        (ALL_DTYPES, 1, 1, 5, 3, 7, 9, "full", "wrap"),  # kernel larger than image
        (("float32", "float64"), 1, 1, 70, 520, 3, 3, "same", "fill"),  # interior
        (("float32", "float64"), 1, 1, 70, 520, 9, 9, "same", "symm"),
        # 1-D rows: the RY = 1 instance
        (("float32", "int32", "complex64"), 3, 3, 1, 700, 1, 13, "full", "fill"),
    ]
    bad = runs = 0
    for dtypes, B, Bk, h, w, kh, kw, mode, boundary in cases:
        for dtype in dtypes:
            x = random_values(rng, (B, h, w), dtype, small_int=True)
            k = random_values(rng, (Bk, kh, kw), dtype, small_int=True)
            fp = scipy_problem(h, w, kh, kw, mode, boundary, 2, dtype, B=B, Bk=Bk)
            want = numpy_op(x, k, fp, "direct")
            dx, dk = cp.asarray(x), cp.asarray(k)
            for method in ("naive", "tiled"):
                got = cp.asnumpy(_gpu_filter.correlate2d(dx, dk, fp, method))
                runs += 1
                if not np.array_equal(got, want):
                    bad += 1
                    case = (B, Bk, h, w, kh, kw, mode, boundary)
                    print(f"WRONG {dtype} {method} {case}")
    # two 1-D passes for a rank-1 kernel (forced), and the 1-D kernel filter1d
    # (cuda/filter1d.cu) through the public 1-D API, against the NumPy backend
    import gpuconv

    for dtype in ("float32", "float64"):
        x = random_values(rng, (1, 61, 133), dtype, small_int=True)
        u = random_values(rng, (7,), dtype, small_int=True)
        k = np.outer(u, u[::-1]).astype(dtype)[None]
        fp = scipy_problem(61, 133, 7, 7, "same", "symm", 2, dtype, B=1, Bk=1)
        want = numpy_op(x, k, fp, "direct")
        got = cp.asnumpy(_gpu_filter.correlate2d(cp.asarray(x), cp.asarray(k), fp,
                                                 "separable"))
        runs += 1
        if not np.allclose(got, want, rtol=1e-5, atol=1e-3):
            bad += 1
            print(f"WRONG {dtype} separable")
        for n, taps, mode in ((5003, 31, "full"), (777, 1001, "same"),
                              (10, 17, "valid")):
            s1 = random_values(rng, (n,), dtype, small_int=True)
            k1 = random_values(rng, (taps,), dtype, small_int=True)
            if mode == "valid" and taps > n:
                s1, k1 = k1, s1
            want = gpuconv.convolve(s1, k1, mode, method="direct", backend="numpy")
            got = cp.asnumpy(gpuconv.convolve(cp.asarray(s1), cp.asarray(k1), mode,
                                              method="direct"))
            runs += 1
            if not np.allclose(got, want, rtol=1e-5, atol=1e-3):
                bad += 1
                print(f"WRONG {dtype} filter1d {(n, taps, mode)}")
    r, b = _fft_workload(cp, rng, numpy_op)
    return runs + r, bad + b


class _Shaped:
    """The shape, dtype and layout the planner reads of a C-contiguous array."""

    def __init__(self, shape: tuple[int, ...], dtype: str) -> None:
        self.shape, self.ndim, self.dtype = shape, len(shape), np.dtype(dtype)
        self.flags = type("Flags", (), {"c_contiguous": True})()


def _fft_workload(cp: Any, rng: Any, numpy_op: Any) -> tuple[int, int]:
    """The FFT paths, forced: ``fft_gather`` (cuda/fft_gather.cu) in both geometries
    (the 2-D padded input: the image at the origin, the extended window of
    wrap/symm/a fill value; the 1-D overlapping segments, several of them),
    ``fft_spectrum_product`` (cuda/fft_spectrum_product.cu: both factor orders, a
    kernel shared by a stack, a kernel per image), ``fft_crop`` (cuda/fft_crop.cu:
    every 2-D case; a non-zero fill's correction, with a kernel per image) and the
    transforms around them, against the NumPy backend's direct op."""
    from gpuconv import _gpu_filter, _plan_filter
    from tests._filter_cases import problem, random_values, scipy_problem

    runs = bad = 0
    for dtype in ("float32", "complex128"):
        tol = 1e-4 if dtype == "float32" else 1e-10
        cases = [scipy_problem(37, 45, 4, 3, "same", b, fill, dtype, B=2)
                 for b, fill in (("fill", 0), ("fill", 2), ("wrap", 0), ("symm", 0))]
        # fft_spectrum_product: both factor orders, a stack sharing one kernel
        # (small images: FS_TARGET_BLOCKS blocks exist with several images per
        # block) and a kernel per image
        product = [scipy_problem(20, 40, 2, 3, "same", "wrap", 0, dtype, B=2101),
                   scipy_problem(60, 100, 9, 2, "full", "fill", 0, dtype, B=3,
                                 Bk=3)]  # fmt: skip
        for fp in product:
            sh, sw = _plan_filter.fft_grid(fp)[:2]
            real = dtype != "complex128"
            assert _gpu_filter.kernel_dft_cheaper(fp.KH, fp.KW, sh, sw, real)
            nv, r = sw // 2 + 1 if real else sw, min(fp.KH, fp.KW)
            (launch,) = _plan_filter.plan_fft_spectrum_product(*(
                _Shaped(shape, "complex64" if real else "complex128")
                for shape in ((fp.B, sh, nv), (1, sh, r), (fp.Bk, r, nv))))
            assert (int(launch.args[10]) > 1) == (fp.Bk == 1)  # images per block
        cases += product
        # fft_crop with a fill value's correction: a kernel per image, taller than
        # the image ('full': no interior row), a complex fill on complex data
        fill = 1.5 - 2.0j if dtype == "complex128" else 1.5
        cases.append(scipy_problem(20, 30, 25, 9, "full", "fill", fill, dtype, B=2,
                                   Bk=2))  # fmt: skip
        cases.append(problem(2, 1, 40000, 1, 1, 601, 0, 300, 1, 40000, "fill", 0.0,
                             dtype))  # 1-D: 6 segments of 8192
        cases.append(problem(1, 1, 30000, 1, 1, 7, 0, 40, 1, 30100, "wrap", 0.0,
                             dtype))  # 8 segments of 4096
        for fp in cases:
            x = random_values(rng, (fp.B, fp.H, fp.W), dtype)
            k = random_values(rng, (fp.Bk, fp.KH, fp.KW), dtype)
            want = numpy_op(x, k, fp, "direct")
            got = cp.asnumpy(_gpu_filter.correlate2d(cp.asarray(x), cp.asarray(k), fp,
                                                     "fft"))
            runs += 1
            scale = float(np.abs(want).max()) or 1.0
            if not float(np.abs(got - want).max()) <= 10 * tol * scale:
                bad += 1
                print(f"WRONG {dtype} fft {fp}")
    return runs, bad


def main() -> int:
    return sanitize_workload("gpu_sanitize_filter", _workload)


if __name__ == "__main__":
    sys.exit(main())
