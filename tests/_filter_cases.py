"""Problems, inputs and an independent reference for the CUDA filter-op tests.

Used by ``test_emulated_filter.py`` (kernels on the CPU emulation harness) and
``test_gpu_filter.py`` (kernels on a GPU). The reference :func:`ref_correlate` is a
direct transcription of the FilterProblem definition: extend the images with
``gpuconv._padding.pad_index`` (or the fill value), then sum shifted slices times
taps in float64/complex128, or for integers in 64-bit arithmetic that wraps exactly
as the dtype's (reduction modulo 2^n commutes with + and *). ``scipy_problem`` maps
SciPy's ``convolve2d``/``correlate2d`` modes onto a FilterProblem; the tests check
the pair (problem, reference) against SciPy itself.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gpuconv._filter_args import FilterProblem
from gpuconv._padding import pad_index

INT_DTYPES = ("int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64")
FLOAT_DTYPES = ("float32", "float64", "complex64", "complex128")
ALL_DTYPES = INT_DTYPES + FLOAT_DTYPES
BOUNDARIES = ("fill", "wrap", "symm")
MODES = ("full", "same", "valid")


def problem(
    B: int, H: int, W: int, Bk: int, KH: int, KW: int, pt: int, pl: int,
    OH: int, OW: int, boundary: str = "fill", fill: Any = 0, dtype: Any = "float64",
) -> FilterProblem:  # fmt: skip
    dt = np.dtype(dtype)
    return FilterProblem(
        B,
        H,
        W,
        Bk,
        KH,
        KW,
        pt,
        pl,
        OH,
        OW,
        boundary,
        np.asarray(fill).astype(dt)[()],
        dt,
    )


def scipy_problem(
    H: int, W: int, KH: int, KW: int, mode: str, boundary: str = "fill",
    fill: Any = 0, dtype: Any = "float64", *, correlate: bool = True, B: int = 1,
    Bk: int = 1,
) -> FilterProblem:  # fmt: skip
    """The problem of ``scipy.signal.correlate2d`` (``correlate=True``; kernel used as
    is, conjugated for complex) or ``convolve2d`` (kernel flipped) in ``mode``.

    'same' puts the extra row/column of an even kernel at the end for correlate2d
    (pad_top = (KH-1)//2) and at the start for convolve2d (pad_top = KH//2).
    """
    if mode == "full":
        pt, pl, oh, ow = KH - 1, KW - 1, H + KH - 1, W + KW - 1
    elif mode == "same":
        pt, pl = ((KH - 1) // 2, (KW - 1) // 2) if correlate else (KH // 2, KW // 2)
        oh, ow = H, W
    elif mode == "valid":
        pt, pl, oh, ow = 0, 0, H - KH + 1, W - KW + 1
    else:
        raise ValueError(mode)
    return problem(B, H, W, Bk, KH, KW, pt, pl, oh, ow, boundary, fill, dtype)


def op_kernel(w: np.ndarray, correlate: bool) -> np.ndarray:
    """The kernel the op receives for SciPy's correlate2d/convolve2d with ``w``."""
    return np.conj(w) if correlate else w[..., ::-1, ::-1]


def extend(in1: np.ndarray, fp: FilterProblem) -> np.ndarray:
    """``ext(in1)`` on the window the outputs read: ``(B, OH+KH-1, OW+KW-1)``."""
    mode = fp.pad_mode
    rows = pad_index(fp.H, fp.pad_top, fp.pad_bottom, mode)
    cols = pad_index(fp.W, fp.pad_left, fp.pad_right, mode)
    x = in1[:, np.maximum(rows, 0)][:, :, np.maximum(cols, 0)]
    if fp.boundary == "fill":
        outside = (rows[:, None] < 0) | (cols[None, :] < 0)
        x = np.where(outside[None], np.asarray(fp.fillvalue, dtype=in1.dtype), x)
    return x


def _wide(dt: np.dtype) -> np.dtype:
    if dt.kind == "c":
        return np.dtype(np.complex128)
    if dt.kind == "f":
        return np.dtype(np.float64)
    return np.dtype(np.uint64)  # wraps modulo 2^64, then truncated to the dtype


def ref_correlate(in1: np.ndarray, k: np.ndarray, fp: FilterProblem) -> np.ndarray:
    """The op's definition, evaluated on the CPU (float64/complex128 or exact ints)."""
    dt = np.dtype(fp.dtype)
    wide = _wide(dt)
    x = extend(np.asarray(in1), fp).astype(wide)
    kk = np.asarray(k).astype(wide)
    out = np.zeros((fp.B, fp.OH, fp.OW), dtype=wide)
    with np.errstate(over="ignore", invalid="ignore"):
        for a in range(fp.KH):
            for c in range(fp.KW):
                tap = kk[:, a, c][:, None, None]
                out += x[:, a : a + fp.OH, c : c + fp.OW] * tap
    return out.astype(dt)


def direct_bound(in1: np.ndarray, k: np.ndarray, fp: FilterProblem) -> np.ndarray:
    """Per-element error scale of the direct sum for ``tests._tol.assert_within_bound``:
    ``sum |k| |ext(in1)|`` (the fill value's magnitude where the border is read) plus
    the FFT's global term ``sum |k| * max |in1|`` per image, float64 ``(B, OH, OW)``."""
    f8 = np.dtype(np.float64)
    fp_abs = FilterProblem(
        fp.B, fp.H, fp.W, fp.Bk, fp.KH, fp.KW, fp.pad_top, fp.pad_left, fp.OH, fp.OW,
        fp.boundary, f8.type(abs(fp.fillvalue)), f8,
    )  # fmt: skip
    ax = np.abs(np.asarray(in1)).astype(f8)
    ak = np.abs(np.asarray(k)).astype(f8)
    local = ref_correlate(ax, ak, fp_abs)
    return local + (ak.sum(axis=(1, 2)) * ax.max(axis=(1, 2)))[:, None, None]


#: Problems that exercise the FFT path with a fill value: ``(B, Bk, H, W, KH, KW,
#: mode, correlate)``; the kernel is larger than the image in the last one.
FILL_FFT_CASES = [
    (1, 1, 64, 64, 31, 31, "same", True),
    (3, 1, 40, 44, 25, 21, "full", True),
    (2, 2, 61, 67, 30, 17, "same", False),
    (2, 2, 20, 20, 31, 31, "same", True),
]


def check_fft_fill_value(call: Any, rng: np.random.Generator, dtype: str) -> None:
    """The FFT algorithm with a non-zero fill value on every :data:`FILL_FFT_CASES`
    problem: each element within the direct sum's own error bound (the fill never
    enters the transform; it is added exactly afterwards). ``call(x, k, fp, method)``
    runs the backend op under test."""
    from tests._tol import assert_within_bound

    fills = [255, 1e4, -3.5] + ([2 - 3j] if dtype.startswith("complex") else [])
    for B, Bk, h, w, kh, kw, mode, corr in FILL_FFT_CASES:
        x = random_values(rng, (B, h, w), dtype)
        k = random_values(rng, (Bk, kh, kw), dtype)
        for fill in fills:
            fp = scipy_problem(
                h, w, kh, kw, mode, "fill", fill, dtype, correlate=corr, B=B, Bk=Bk
            )
            out = call(x, k, fp, "fft")
            want = ref_correlate(x, k, fp)
            assert_within_bound(out, want, direct_bound(x, k, fp), dtype)


def random_values(rng: np.random.Generator, shape: tuple[int, ...], dtype: Any,
                  *, small_int: bool = False) -> np.ndarray:  # fmt: skip
    """Inputs of ``dtype``: the full range for integers (so sums wrap around),
    standard normal for floats, or small integers (exact float sums) when asked."""
    dt = np.dtype(dtype)
    if dt.kind in "iu":
        if small_int:
            lo, hi = (0, 5) if dt.kind == "u" else (-4, 5)
        else:
            info = np.iinfo(dt)
            lo, hi = int(info.min), int(info.max) + 1
        return rng.integers(lo, hi, size=shape, dtype=dt)
    real = np.float64 if dt in (np.float64, np.complex128) else np.float32
    if small_int:
        v = rng.integers(-8, 9, size=shape).astype(real)
        if dt.kind == "c":
            v = v + 1j * rng.integers(-8, 9, size=shape).astype(real)
    else:
        v = rng.standard_normal(shape).astype(real)
        if dt.kind == "c":
            v = v + 1j * rng.standard_normal(shape).astype(real)
    return np.asarray(v, dtype=dt).copy()


_NP_PAD_MODES = {"fill": "constant", "wrap": "wrap", "symm": "symmetric"}


def fft_gather_reference(src, di, dj, row_step, extent, origin, boundary):
    """``dst[b, i, j] = ext(src[b])[r - ot, c - ol]`` for ``r < ER``, ``c < EC``
    (``(r, c) = (i * row_step[0], i * row_step[1] + j)``), else 0, with ``ext`` by
    ``numpy.pad`` (zeros for 'fill')."""
    B, H, W = src.shape
    rows = np.array([i * row_step[0] for i in range(di)])
    cols = np.array([[i * row_step[1] + j for j in range(dj)] for i in range(di)])
    pr = int(max(abs(rows).max(), extent[0]) + abs(origin[0]) + H)
    pc = int(max(abs(cols).max(), extent[1]) + abs(origin[1]) + W)
    ext = np.pad(src, ((0, 0), (pr, pr), (pc, pc)), mode=_NP_PAD_MODES[boundary])
    out = np.zeros((B, di, dj), src.dtype)
    for i in range(di):
        r = rows[i]
        if r >= extent[0]:
            continue
        c = cols[i]
        ok = c < extent[1]
        out[:, i, ok] = ext[:, r - origin[0] + pr, c[ok] - origin[1] + pc]
    return out


class Shaped:
    """Shape, dtype and contiguity of an array too large to allocate: what the FFT
    paths' planners read of their buffers (the int32-limit tests)."""

    def __init__(self, shape, dtype="float32"):
        self.shape, self.ndim, self.dtype = shape, len(shape), np.dtype(dtype)
        self.flags = type("Flags", (), {"c_contiguous": True})()
