"""convolve2d / correlate2d on the NumPy backend against SciPy and a naive loop.

Oracles: ``scipy.signal.convolve2d``/``correlate2d`` (1.17) and the float64/exact
integer loop of ``tests/ref_filters.py``. Tolerances come from ``tests/_tol.py``.
"""

from __future__ import annotations

import doctest
import itertools
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import signal

import gpuconv
from gpuconv import _cpu, _cpu_filter, _filter_args, _filters
from tests._tol import assert_close, assert_within_bound
from tests.ref_filters import ref_filter2d

FUNCS = {"convolve2d": signal.convolve2d, "correlate2d": signal.correlate2d}
MODES = ("full", "same", "valid")
BOUNDARIES = ("fill", "wrap", "symm")
KERNELS = [(1, 1), (2, 2), (3, 3), (2, 4), (4, 1), (3, 5), (1, 6)]
METHODS = ("direct", "fft")


def _ours(fn: str):
    return getattr(gpuconv, fn)


def _rand(rng, shape, dtype):
    dt = np.dtype(dtype)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        return rng.integers(
            max(info.min, -120), min(info.max, 120), shape, endpoint=True
        ).astype(dt)
    if dt.kind == "c":
        return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dt)
    return rng.standard_normal(shape).astype(dt)


def _check(out, ref, terms):
    assert out.shape == ref.shape
    assert out.dtype == ref.dtype
    assert_close(out, ref, ref.dtype, terms=terms)


# --------------------------------------------------------------------------------------
# modes x boundaries x kernels x methods against SciPy
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("kshape", KERNELS, ids=str)
@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fn", FUNCS)
def test_matches_scipy(fn, mode, boundary, kshape, method, rng):
    x = rng.standard_normal((7, 11))
    k = rng.standard_normal(kshape)
    ref = FUNCS[fn](x, k, mode, boundary, 1.5)
    out = _ours(fn)(x, k, mode, boundary, 1.5, method=method)
    _check(out, ref, k.size)


@pytest.mark.parametrize(
    "boundary", ["fill", "pad", "wrap", "circular", "symm", "symmetric"]
)
@pytest.mark.parametrize("fn", FUNCS)
def test_boundary_aliases(fn, boundary, rng):
    x, k = rng.standard_normal((5, 6)), rng.standard_normal((3, 2))
    for mode in MODES:
        _check(
            _ours(fn)(x, k, mode, boundary, -1), FUNCS[fn](x, k, mode, boundary, -1), 6
        )


@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fn", FUNCS)
def test_kernel_larger_than_image(fn, mode, boundary, rng):
    """gh-8684/gh-12686: wrap/symm with kernels up to 3x the image (patterns repeat).
    'valid' swaps the inputs."""
    x = rng.standard_normal((3, 4)) + 1j * rng.standard_normal((3, 4))
    for kshape in [(5, 7), (9, 2), (4, 13), (11, 12)]:
        k = rng.standard_normal(kshape) - 1j * rng.standard_normal(kshape)
        if mode == "valid" and kshape in [(9, 2), (4, 13)]:
            continue  # neither input is larger in both dimensions (errors table)
        for method in METHODS:
            ref = FUNCS[fn](x, k, mode, boundary, 0.5)
            out = _ours(fn)(x, k, mode, boundary, 0.5, method=method)
            _check(out, ref, k.size)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fn", FUNCS)
def test_against_naive_loop(fn, mode, rng):
    """The library's own oracle (independent of SciPy) on odd/even/1x1 kernels."""
    for shape, kshape, boundary in itertools.product(
        [(5, 7), (2, 3)], [(1, 1), (2, 2), (3, 4), (6, 3)], BOUNDARIES
    ):
        if mode == "valid" and not (
            (shape[0] >= kshape[0] and shape[1] >= kshape[1])
            or (shape[0] <= kshape[0] and shape[1] <= kshape[1])
        ):
            continue
        x = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
        k = rng.standard_normal(kshape) + 1j * rng.standard_normal(kshape)
        ref = ref_filter2d(x, k, mode, boundary, 2 - 1j, convolve=fn == "convolve2d")
        out = _ours(fn)(x, k, mode, boundary, 2 - 1j)
        _check(out, ref, k.size)


@pytest.mark.parametrize("kshape", [(2, 2), (4, 4), (2, 3), (3, 2), (4, 1)], ids=str)
def test_same_alignment_even_kernels(kshape, rng):
    """convolve2d 'same' = full[(KH-1)//2:][:H]; correlate2d 'same' = full[KH//2:][:H];
    they differ for even kernels (SciPy's rule, documented in the module table)."""
    x = rng.standard_normal((6, 7))
    k = rng.standard_normal(kshape)
    KH, KW = kshape
    full_c = gpuconv.convolve2d(x, k, "full")
    full_r = gpuconv.correlate2d(x, k, "full")
    same_c = gpuconv.convolve2d(x, k, "same")
    same_r = gpuconv.correlate2d(x, k, "same")
    assert_close(same_c, full_c[(KH - 1) // 2 :, (KW - 1) // 2 :][:6, :7], terms=k.size)
    assert_close(same_r, full_r[KH // 2 :, KW // 2 :][:6, :7], terms=k.size)
    assert_close(same_c, signal.convolve2d(x, k, "same"), terms=k.size)
    assert_close(same_r, signal.correlate2d(x, k, "same"), terms=k.size)
    flipped = gpuconv.correlate2d(x, k[::-1, ::-1], "same")
    assert not np.allclose(same_c, flipped)


def test_same_impulse_table():
    """api.md b.1: impulse at index 3 of 7, kernels [1, 2] and [1, 2, 3, 4]."""
    x = np.zeros((1, 7))
    x[0, 3] = 1
    for k in ([[1, 2]], [[1, 2, 3, 4]]):
        for fn in FUNCS:
            np.testing.assert_array_equal(
                _ours(fn)(x, k, "same"), FUNCS[fn](x, k, "same")
            )
    np.testing.assert_array_equal(
        gpuconv.correlate2d(x, [[1, 2]], "same")[0], [0, 0, 2, 1, 0, 0, 0]
    )
    np.testing.assert_array_equal(
        gpuconv.convolve2d(x, [[1, 2, 3, 4]], "same")[0], [0, 0, 1, 2, 3, 4, 0]
    )


# --------------------------------------------------------------------------------------
# dtypes
# --------------------------------------------------------------------------------------

DTYPE_PAIRS = [
    ("int8", "int8"),
    ("uint8", "uint8"),
    ("int16", "uint16"),
    ("int32", "int32"),
    ("int64", "int64"),
    ("uint64", "uint64"),
    ("float32", "float32"),
    ("float64", "float64"),
    ("complex64", "complex64"),
    ("complex128", "complex128"),
    ("uint8", "int8"),
    ("int8", "float32"),
    ("int32", "float32"),
    ("float32", "float64"),
    ("float32", "complex64"),
    ("uint8", "complex128"),
    ("longdouble", "float64"),
    ("float16", "float64"),
    ("float16", "int16"),
    ("bool", "int8"),
    ("bool", "float32"),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fn", FUNCS)
@pytest.mark.parametrize("dt1,dt2", DTYPE_PAIRS, ids=["-".join(p) for p in DTYPE_PAIRS])
def test_dtypes_match_scipy(dt1, dt2, fn, mode, rng):
    """Output dtype is np.result_type (no widening); integers wrap exactly."""
    x = _rand(rng, (6, 9), dt1)
    k = _rand(rng, (3, 4), dt2)
    for boundary, fill in (("fill", 3), ("fill", 2.5), ("symm", 0), ("wrap", 0)):
        ref = FUNCS[fn](x, k, mode, boundary, fill)
        out = _ours(fn)(x, k, mode, boundary, fill)
        assert out.dtype == ref.dtype == np.result_type(x, k)
        if ref.dtype.kind in "iu":
            np.testing.assert_array_equal(out, ref)
        else:
            wide = {"f": np.float64, "c": np.complex128}[ref.dtype.kind]
            tol_dtype = wide if ref.dtype.itemsize > np.dtype(wide).itemsize else None
            assert_close(out, ref, tol_dtype, terms=12)


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int64", "uint64"])
def test_integer_wraparound_exact(dtype, rng):
    """Sums that overflow wrap modulo 2**bits, as SciPy's C loop and the exact
    Python-integer reference."""
    info = np.iinfo(dtype)
    x = rng.integers(info.max // 2, info.max, (5, 6), endpoint=True, dtype=dtype)
    k = rng.integers(1, 7, (3, 3), dtype=dtype)
    for fn, mode in itertools.product(FUNCS, MODES):
        out = _ours(fn)(x, k, mode, "fill", 0)
        np.testing.assert_array_equal(out, FUNCS[fn](x, k, mode))
        np.testing.assert_array_equal(
            out, ref_filter2d(x, k, mode, convolve=fn == "convolve2d")
        )


@pytest.mark.parametrize(
    "dtype,fill",
    [
        ("int8", 2.5),
        ("int8", -2.7),
        ("uint8", 7),
        ("int32", np.float64(3.9)),
        ("float32", 1e300),
        ("float32", np.nan),
        ("float64", -1),
        ("float64", [1.5]),
        ("complex64", 1 - 2j),
        ("float64", "3"),
        ("int8", np.int64(1000)),
        ("float32", np.array(2, np.int16)),
        ("float64", None),
    ],
)
def test_fillvalue_cast_like_scipy(dtype, fill, rng):
    """The fill value is cast to the output dtype exactly as SciPy does (2.5 -> 2,
    NumPy scalars wrap, safe casts for arrays, strings parsed, None -> nan)."""
    x = _rand(rng, (4, 5), dtype)
    k = _rand(rng, (2, 3), dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = signal.convolve2d(x, k, "full", "fill", fill)
        out = gpuconv.convolve2d(x, k, "full", "fill", fill)
    assert out.dtype == ref.dtype
    assert_close(out, ref, terms=6)


@pytest.mark.parametrize("fill", [1j, [], [1, 2], "abc"])
@pytest.mark.parametrize("boundary", ["wrap", "symm"])
def test_fillvalue_ignored_without_fill_boundary(boundary, fill):
    """SciPy only converts fillvalue for boundary='fill'; so does gpuconv."""
    x, k = np.arange(9.0).reshape(3, 3), np.ones((2, 2))
    np.testing.assert_array_equal(
        gpuconv.convolve2d(x, k, boundary=boundary, fillvalue=fill),
        signal.convolve2d(x, k, boundary=boundary, fillvalue=fill),
    )


@pytest.mark.parametrize("fill", [0, 1.5, -1, np.nan, np.inf])
@pytest.mark.parametrize("fn", FUNCS)
def test_fillvalues_float(fn, fill, rng):
    x, k = rng.standard_normal((6, 5)), rng.standard_normal((3, 2))
    for mode in MODES:
        _check(
            _ours(fn)(x, k, mode, "fill", fill), FUNCS[fn](x, k, mode, "fill", fill), 6
        )


@pytest.mark.parametrize("fn", FUNCS)
def test_complex_conjugation_and_swap_quirk(fn, rng):
    """correlate2d conjugates in2; after the 'valid' swap the result is reversed but
    not conjugated (SciPy's behaviour: api.md b.2)."""
    np.testing.assert_array_equal(gpuconv.correlate2d([[1]], [[2j]]), [[-2j]])
    a = rng.standard_normal((2, 3)) + 1j * rng.standard_normal((2, 3))
    b = rng.standard_normal((4, 5)) + 1j * rng.standard_normal((4, 5))
    for x, y in ((a, b), (b, a)):
        _check(_ours(fn)(x, y, "valid"), FUNCS[fn](x, y, "valid"), 6)
    quirk = gpuconv.correlate2d(a, b, "valid")
    assert_close(quirk, np.conj(signal.correlate(a, b, "valid", method="direct")))


# --------------------------------------------------------------------------------------
# empty inputs
# --------------------------------------------------------------------------------------

EMPTY_SHAPES = [(0, 3), (3, 0), (0, 0), (0, 1), (1, 0), (3, 3), (2, 5)]
EMPTY_KERNELS = [(2, 2), (0, 2), (2, 0), (0, 0), (1, 3), (3, 3)]


def _scipy_unsafe(s1, s2, mode, boundary):
    """SciPy 1.17 can die with SIGFPE on wrap/symm of an empty image into a
    non-empty output (e.g. (0, 3) with (2, 2) or (2, 0), 'full'): not called there."""
    if boundary == "fill" or mode == "valid":
        return False
    out = [s1[i] + s2[i] - 1 if mode == "full" else s1[i] for i in (0, 1)]
    return s1[0] * s1[1] == 0 and min(out) > 0


@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("fn", FUNCS)
def test_empty_inputs_match_scipy(fn, boundary):
    """SciPy's size formulas, zeros for empty kernels, sum(fill * k) for an empty
    image (e.g. (0,3) with (2,2) 'full' gives a (1,4) array), its ValueErrors.
    Where SciPy crashes, an empty kernel still gives zeros and a non-empty one
    raises ValueError."""
    checked = 0
    for s1, s2, mode in itertools.product(EMPTY_SHAPES, EMPTY_KERNELS, MODES):
        x = np.arange(1.0, 1 + np.prod(s1)).reshape(s1)
        k = np.arange(1.0, 1 + np.prod(s2)).reshape(s2)
        if s1[0] * s1[1] and s2[0] * s2[1]:
            continue  # not an empty case
        if _scipy_unsafe(s1, s2, mode, boundary):
            if s2[0] * s2[1] == 0:
                out = _ours(fn)(x, k, mode, boundary)
                full = (s1[0] + s2[0] - 1, s1[1] + s2[1] - 1)
                assert out.shape == (full if mode == "full" else s1)
                assert not out.any()
            else:
                with pytest.raises(ValueError, match="cannot extend an empty image"):
                    _ours(fn)(x, k, mode, boundary)
            continue
        try:
            ref = FUNCS[fn](x, k, mode, boundary, 2)
        except ValueError as e:
            with pytest.raises(ValueError) as info:
                _ours(fn)(x, k, mode, boundary, 2)
            assert str(info.value) == str(e)
            continue
        out = _ours(fn)(x, k, mode, boundary, 2)
        assert out.shape == ref.shape and out.dtype == ref.dtype, (s1, s2, mode)
        np.testing.assert_array_equal(out, ref)
        checked += 1
    assert checked > 30


def test_empty_integer_fill_wraps():
    x = np.ones((0, 3), np.int8)
    k = np.full((2, 2), 100, np.int8)
    out = gpuconv.correlate2d(x, k, "full", fillvalue=3)
    np.testing.assert_array_equal(out, signal.correlate2d(x, k, "full", fillvalue=3))
    assert out.dtype == np.int8


# --------------------------------------------------------------------------------------
# layouts: never modified, any strides
# --------------------------------------------------------------------------------------


def _layouts(a):
    ro = a.copy()
    ro.flags.writeable = False
    big = np.zeros((a.shape[0] * 2, a.shape[1] * 3), a.dtype)
    big[::2, ::3] = a
    return {
        "C": a.copy(),
        "F": np.asfortranarray(a),
        "neg": a[::-1, ::-1].copy()[::-1, ::-1],
        "strided": big[::2, ::3],
        "readonly": ro,
        "broadcast": np.broadcast_to(a[:1], a.shape),
        "byteswapped": a.astype(a.dtype.newbyteorder(">")),
        "list": a.tolist(),
    }


@pytest.mark.parametrize(
    "layout",
    ["C", "F", "neg", "strided", "readonly", "broadcast", "byteswapped", "list"],
)
@pytest.mark.parametrize("fn", FUNCS)
def test_layouts_and_inputs_unchanged(fn, layout, rng):
    x0 = rng.standard_normal((7, 9))
    k0 = rng.standard_normal((3, 4))
    x, k = _layouts(x0)[layout], _layouts(k0)[layout]
    xs, ks = np.array(x, copy=True), np.array(k, copy=True)
    for mode, boundary in itertools.product(MODES, BOUNDARIES):
        for method in METHODS:
            out = _ours(fn)(x, k, mode, boundary, 0.5, method=method)
            ref = FUNCS[fn](np.array(x), np.array(k), mode, boundary, 0.5)
            _check(out, ref, 12)
    np.testing.assert_array_equal(np.asarray(x), xs)
    np.testing.assert_array_equal(np.asarray(k), ks)


# --------------------------------------------------------------------------------------
# NaN / inf
# --------------------------------------------------------------------------------------

PLACES = {"corner": (0, 0), "border": (0, 4), "interior": (3, 5), "last": (6, 8)}


def _assert_nan_mask(out, ref, terms):
    np.testing.assert_array_equal(np.isnan(out), np.isnan(ref))
    np.testing.assert_array_equal(np.isposinf(out), np.isposinf(ref))
    np.testing.assert_array_equal(np.isneginf(out), np.isneginf(ref))
    finite = np.isfinite(ref)
    assert_close(
        out[finite],
        ref[finite],
        terms=terms,
        scale=max(1.0, np.abs(ref[finite]).max(initial=0)),
    )


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("fn", FUNCS)
def test_nonfinite_mask_like_scipy(fn, place, value, rng):
    """NaN/inf reach exactly the outputs whose window holds them (0*inf = nan):
    'auto' must take the direct path even for large kernels."""
    x = rng.standard_normal((7, 9)).astype(np.float32)
    x[PLACES[place]] = value
    for k in (
        rng.standard_normal((3, 3)).astype(np.float32),
        np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], np.float32),  # zero taps
        np.outer([1, 2, 1], [1, 0, -1]).astype(np.float32),  # separable, zeros
        rng.standard_normal((9, 11)).astype(np.float32),  # 'auto' would like FFT
    ):
        for mode, boundary in itertools.product(MODES, BOUNDARIES):
            if mode == "valid" and k.shape[1] > 9:
                continue
            with np.errstate(invalid="ignore"):
                ref = FUNCS[fn](x, k, mode, boundary)
            out = _ours(fn)(x, k, mode, boundary)
            assert out.dtype == np.float32
            _assert_nan_mask(out, ref, k.size)


@pytest.mark.parametrize("fn", FUNCS)
def test_nonfinite_complex_unit_taps(fn):
    """(1 + 0j) * (1 + inf j) = nan + inf j (0 * inf) in SciPy's complex multiply-add:
    taps of +-1 are not shortcut for complex data. (Values with an infinite part
    and a nan or second infinite part are left out: SciPy's C99 complex multiply
    recovers infinities there, NumPy's and gpuconv's textbook product gives nan.)"""
    x = np.ones((5, 6), np.complex128)
    x[2, 3] = complex(1, np.inf)
    x[0, 0] = complex(np.inf, 0)
    x[4, 5] = complex(-2, -np.inf)
    k = np.array([[1, -1, 0], [0, 1, 2j]], np.complex128)
    for mode, boundary in itertools.product(MODES, BOUNDARIES):
        with np.errstate(invalid="ignore"):
            ref = FUNCS[fn](x, k, mode, boundary)
        out = _ours(fn)(x, k, mode, boundary)
        for part in (np.real, np.imag):
            np.testing.assert_array_equal(np.isnan(part(out)), np.isnan(part(ref)))
            np.testing.assert_array_equal(np.isinf(part(out)), np.isinf(part(ref)))


def test_nonfinite_kernel_and_fill(rng):
    x = rng.standard_normal((6, 6))
    k = rng.standard_normal((5, 5))
    k[1, 2] = np.inf
    with np.errstate(invalid="ignore"):
        for fn, mode in itertools.product(FUNCS, MODES):
            _assert_nan_mask(_ours(fn)(x, k, mode), FUNCS[fn](x, k, mode), 25)
    big = rng.standard_normal((40, 40))
    kb = rng.standard_normal((21, 21))
    assert gpuconv.choose_method(big, kb, "same") == "fft"
    with np.errstate(invalid="ignore"):
        out = gpuconv.convolve2d(big, kb, "same", fillvalue=np.nan)
        _assert_nan_mask(out, signal.convolve2d(big, kb, "same", fillvalue=np.nan), 441)


def test_fft_smears_nan_when_forced(rng):
    """Documented: an explicit method='fft' spreads a NaN over the output."""
    x = rng.standard_normal((16, 16))
    x[0, 0] = np.nan
    out = gpuconv.convolve2d(x, np.ones((3, 3)), "same", method="fft")
    assert np.isnan(out).sum() > 4


# --------------------------------------------------------------------------------------
# FFT vs direct, separable kernels
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64", "complex64", "complex128"])
@pytest.mark.parametrize("fn", FUNCS)
def test_fft_direct_scipy_agree(fn, dtype, rng):
    x = _rand(rng, (37, 53), dtype)
    for kshape, mode, boundary in [
        ((15, 15), "same", "fill"),
        ((16, 9), "full", "symm"),
        ((11, 20), "valid", "wrap"),
        ((31, 31), "same", "wrap"),
    ]:
        k = _rand(rng, kshape, dtype)
        ref = FUNCS[fn](
            x.astype(np.complex128), k.astype(np.complex128), mode, boundary, 0.25
        )
        if np.dtype(dtype).kind == "f":
            ref = ref.real
        for method in ("direct", "fft", "auto"):
            out = _ours(fn)(x, k, mode, boundary, 0.25, method=method)
            assert out.dtype == np.dtype(dtype)
            assert_close(out, ref, dtype, terms=k.size)


def _direct_bound(fn, x, k, mode, boundary, fill):
    """Per-element error scale of the direct sum, ``sum |k| |ext(x)|``, plus the
    FFT's global term ``sum |k| * max |x|`` (see ``tests/_tol.py``)."""
    ax, ak = np.abs(x).astype(np.float64), np.abs(k).astype(np.float64)
    local = FUNCS[fn](ax, ak, mode, boundary, abs(fill))
    return local + ak.sum() * ax.max()


FILL_FFT_CASES = [  # (image, kernel, mode): all take the FFT under method='auto'
    ((64, 64), (31, 31), "same"),
    ((64, 64), (31, 31), "full"),
    ((61, 67), (30, 17), "same"),  # even kernel, odd sizes
    ((20, 20), (31, 31), "same"),  # kernel larger than the image: all border
]


@pytest.mark.parametrize(
    "dtype, fill",
    [
        (dt, fill)
        for dt in ("float32", "float64", "complex64", "complex128")
        for fill in (255, 1e4, -3.5) + ((2 - 3j,) if dt.startswith("complex") else ())
    ],
    ids=str,
)
@pytest.mark.parametrize("fn", FUNCS)
def test_fft_with_fill_value_elementwise(fn, dtype, fill, rng):
    """The FFT with a non-zero fill value is as accurate, element by element, as the
    direct sum: the transform sees the zero-extended image and the fill's share is
    added exactly. (Transforming the fill-extended image made the error grow with
    |fill| everywhere: 250 eps x bound at fill = 1e4.)"""
    wide = np.complex128 if np.dtype(dtype).kind == "c" else np.float64
    for xshape, kshape, mode in FILL_FFT_CASES:
        x = _rand(rng, xshape, dtype)
        k = _rand(rng, kshape, dtype)
        ref = FUNCS[fn](x.astype(wide), k.astype(wide), mode, "fill", fill)
        bound = _direct_bound(fn, x, k, mode, "fill", fill)
        assert gpuconv.choose_method(x, k, mode, "fill", fill) == "fft"
        for method in ("fft", "auto"):
            out = _ours(fn)(x, k, mode, "fill", fill, method=method)
            assert out.dtype == np.dtype(dtype)
            assert_within_bound(out, ref, bound, dtype)


@pytest.mark.parametrize("dtype", ["float32", "complex128"])
@pytest.mark.parametrize("boundary", ["wrap", "symm"])
@pytest.mark.parametrize("fn", FUNCS)
def test_fft_wrap_symm_elementwise(fn, boundary, dtype, rng):
    """wrap/symm extend the image with its own values before the transform: element
    by element as accurate as the direct sum too."""
    wide = np.complex128 if np.dtype(dtype).kind == "c" else np.float64
    for xshape, kshape, mode in FILL_FFT_CASES:
        x = _rand(rng, xshape, dtype) + 100  # a large mean, as images have
        k = _rand(rng, kshape, dtype)
        ref = FUNCS[fn](x.astype(wide), k.astype(wide), mode, boundary)
        bound = _direct_bound(fn, x, k, mode, boundary, 0)
        out = _ours(fn)(x, k, mode, boundary, method="fft")
        assert_within_bound(out, ref, bound, dtype)


@pytest.mark.parametrize("fill", [1e4, 2 - 3j], ids=str)
@pytest.mark.parametrize("fn", FUNCS)
def test_fft_fill_value_stacks(fn, fill, rng):
    """``axes`` stacks with one kernel (Bk = 1) and one kernel per image (Bk = B)."""
    x = _rand(rng, (3, 40, 44), "complex64")
    for k in (_rand(rng, (25, 21), "complex64"), _rand(rng, (3, 25, 21), "complex64")):
        for mode in ("same", "full"):
            out = _ours(fn)(x, k, mode, "fill", fill, axes=(-2, -1), method="fft")
            for b in range(3):
                kb = k if k.ndim == 2 else k[b]
                xb = x[b].astype(np.complex128)
                ref = FUNCS[fn](xb, kb.astype(np.complex128), mode, "fill", fill)
                bound = _direct_bound(fn, xb, kb, mode, "fill", fill)
                assert_within_bound(out[b], ref, bound, "complex64")


def test_fill_correction_regions_cover_exactly_the_border():
    """The blocks the fill correction touches are exactly the outputs that read a
    padded pixel, for every mode and kernel size (even, larger than the image)."""
    from gpuconv._padding import fill_correction_regions

    for (H, W), (KH, KW), mode in itertools.product(
        [(5, 7), (1, 1), (3, 2)], [(1, 1), (2, 3), (6, 9)], MODES
    ):
        if mode == "valid" and (KH > H or KW > W):
            continue
        for corr in (True, False):
            half = ((KH - 1) // 2, (KW - 1) // 2) if corr else (KH // 2, KW // 2)
            pt, pl = {"full": (KH - 1, KW - 1), "same": half}.get(mode, (0, 0))
            OH, OW = {"full": (H + KH - 1, W + KW - 1), "same": (H, W)}.get(
                mode, (H - KH + 1, W - KW + 1)
            )
            reads_border = np.zeros((OH, OW), int)
            for i, j in itertools.product(range(OH), range(OW)):
                inside = 0 <= i - pt and i - pt + KH <= H
                inside = inside and 0 <= j - pl and j - pl + KW <= W
                reads_border[i, j] = not inside
            got = np.zeros((OH, OW), int)
            for r0, r1, c0, c1 in fill_correction_regions(H, W, KH, KW, pt, pl, OH, OW):
                got[r0:r1, c0:c1] += 1
            np.testing.assert_array_equal(got, reads_border)


@pytest.mark.parametrize(
    "k",
    [
        np.ones((5, 5)),
        np.outer([1, 4, 6, 4, 1], [1, 4, 6, 4, 1]) / 256.0,
        np.outer(
            np.exp(-(np.linspace(-2, 2, 7) ** 2)), np.exp(-(np.linspace(-2, 2, 9) ** 2))
        ),
        np.outer([1, 0, -1], [1, 2, 1]),
        np.outer([1j, 2, -1], [1, 1 - 1j, 3, 0.5]),
    ],
    ids=["box", "binomial", "gaussian", "sobel", "complex"],
)
@pytest.mark.parametrize("fn", FUNCS)
def test_separable_kernels(fn, k, rng):
    """Rank-1 kernels take two 1-D passes; results still match SciPy (and the
    integer-valued box/sobel ones exactly on integer-valued data)."""
    x = rng.integers(-9, 9, (23, 31)).astype(
        np.complex128 if k.dtype.kind == "c" else float
    )
    assert _cpu_filter.rank1_factors(np.asarray(k, dtype=x.dtype)) is not None
    for mode, boundary in itertools.product(MODES, BOUNDARIES):
        ref = FUNCS[fn](x, k, mode, boundary, 2)
        out = _ours(fn)(x, k, mode, boundary, 2, method="direct")
        _check(out, ref, k.size)
        if k.dtype.kind == "f" and np.all(k == np.round(k)):
            np.testing.assert_array_equal(out, ref)


def test_rank1_rejects_full_rank():
    assert _cpu_filter.rank1_factors(np.eye(3)) is None
    assert _cpu_filter.rank1_factors(np.zeros((3, 3))) is None
    assert _cpu_filter.rank1_factors(np.arange(9).reshape(3, 3)) is None


def test_long_rows_and_many_small_images(rng):
    """Block shapes: rows longer than a block, and stacks of tiny images."""
    x = rng.standard_normal((2, 70000)).astype(np.float32)
    k = rng.standard_normal((2, 3)).astype(np.float32)
    assert_close(
        gpuconv.convolve2d(x, k, "same"), signal.convolve2d(x, k, "same"), terms=6
    )
    xs = rng.standard_normal((300, 4, 5))
    out = gpuconv.correlate2d(xs, k, "full", "wrap", axes=(1, 2))
    for i in (0, 157, 299):
        assert_close(out[i], signal.correlate2d(xs[i], k, "full", "wrap"), terms=6)


# --------------------------------------------------------------------------------------
# axes stacks
# --------------------------------------------------------------------------------------


def _loop_scipy(fn, x, k, mode, boundary, fill):
    """SciPy applied to every slice of x (..., H, W) and k (..., KH, KW), broadcast."""
    batch = np.broadcast_shapes(x.shape[:-2], k.shape[:-2])
    xb = np.broadcast_to(x, batch + x.shape[-2:])
    kb = np.broadcast_to(k, batch + k.shape[-2:])
    outs = [FUNCS[fn](xb[i], kb[i], mode, boundary, fill) for i in np.ndindex(*batch)]
    return np.array(outs).reshape(batch + outs[0].shape)


@pytest.mark.parametrize(
    "kshape", [(3, 4), (3, 3, 4), (4, 3, 3, 4), (1, 3, 3, 4), (4, 1, 3, 4)], ids=str
)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fn", FUNCS)
def test_axes_stack_equals_loop(fn, mode, kshape, rng):
    x = rng.standard_normal((4, 3, 8, 9))
    k = rng.standard_normal(kshape)
    x_keep, k_keep = x.copy(), k.copy()
    for boundary in BOUNDARIES:
        out = _ours(fn)(x, k, mode, boundary, 0.5, axes=(-2, -1))
        ref = _loop_scipy(fn, x, k, mode, boundary, 0.5)
        _check(out, ref, 12)
    np.testing.assert_array_equal(x, x_keep)
    np.testing.assert_array_equal(k, k_keep)


@pytest.mark.parametrize("fn", FUNCS)
def test_axes_positions(fn, rng):
    """Any two distinct axes, negative allowed; the filtered axes stay in place;
    (1, 0) filters the transposed image."""
    x = rng.standard_normal((5, 4, 6))  # H=5 (axis 0), stack 4, W=6 (axis 2)
    k = rng.standard_normal((2, 3))
    out = _ours(fn)(x, k, "same", "symm", axes=(0, -1))
    ref = np.stack([FUNCS[fn](x[:, i, :], k, "same", "symm") for i in range(4)], axis=1)
    _check(out, ref, 6)
    # in2 with the same ndim uses the same axes
    k3 = rng.standard_normal((2, 4, 3))
    out = _ours(fn)(x, k3, "full", axes=(0, 2))
    ref = np.stack(
        [FUNCS[fn](x[:, i, :], k3[:, i, :], "full") for i in range(4)], axis=1
    )
    _check(out, ref, 6)
    # transposed axes (in2 has in1's ndim, so its axes are swapped too)
    x2 = rng.standard_normal((5, 7))
    out = _ours(fn)(x2, k, "full", axes=(1, 0))
    _check(out, FUNCS[fn](x2.T, k.T, "full").T, 6)
    # plain 2-D through axes equals the plain call
    _check(_ours(fn)(x2, k, "valid", axes=(-2, -1)), FUNCS[fn](x2, k, "valid"), 6)


@pytest.mark.parametrize("fn", FUNCS)
def test_axes_valid_swap_and_broadcast(fn, rng):
    """'valid' with in2 larger swaps whole stacks (= SciPy per slice); a single image
    broadcasts against a stack of kernels."""
    x = rng.standard_normal((3, 2, 3)) + 1j * rng.standard_normal((3, 2, 3))
    k = rng.standard_normal((3, 4, 5)) + 1j * rng.standard_normal((3, 4, 5))
    _check(
        _ours(fn)(x, k, "valid", axes=(1, 2)),
        _loop_scipy(fn, x, k, "valid", "fill", 0),
        6,
    )
    img = rng.standard_normal((1, 6, 7))
    ks = rng.standard_normal((5, 2, 2))
    out = _ours(fn)(img, ks, "same", "wrap", axes=(-2, -1))
    _check(out, _loop_scipy(fn, img, ks, "same", "wrap", 0), 4)
    # empty stacks
    assert _ours(fn)(np.ones((0, 5, 5)), np.ones((2, 2)), axes=(1, 2)).shape == (
        0,
        6,
        6,
    )
    assert _ours(fn)(np.ones((1, 5, 5)), np.ones((0, 2, 2)), axes=(1, 2)).shape == (
        0,
        6,
        6,
    )


# --------------------------------------------------------------------------------------
# dispatch, hypothesis properties, doctests
# --------------------------------------------------------------------------------------


def test_backend_numpy_explicit_and_context(rng, monkeypatch):
    calls = []
    real = _cpu.correlate2d

    def spy(in1, k, fp, method):
        calls.append((fp, method))
        assert isinstance(fp, _filter_args.FilterProblem) and method in (
            "direct",
            "fft",
        )
        assert in1.shape == (fp.B, fp.H, fp.W) and k.shape == (fp.Bk, fp.KH, fp.KW)
        return real(in1, k, fp, method)

    monkeypatch.setattr(_cpu, "correlate2d", spy)
    x, k = rng.standard_normal((5, 5)), rng.standard_normal((2, 2))
    ref = signal.convolve2d(x, k)
    _check(gpuconv.convolve2d(x, k, backend="numpy"), ref, 4)
    with gpuconv.use_backend("numpy"):
        _check(gpuconv.convolve2d(x, k), ref, 4)
    assert len(calls) == 2
    # empty problems never reach the backend
    gpuconv.convolve2d(np.ones((0, 3)), k)
    assert len(calls) == 2


finite = st.floats(
    -10, 10, allow_nan=False, allow_infinity=False, allow_subnormal=False
)


@st.composite
def _problem(draw):
    h, w = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    kh, kw = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    mode = draw(st.sampled_from(MODES))
    if mode == "valid":
        kh, kw = min(kh, h), min(kw, w)
    boundary = draw(st.sampled_from(BOUNDARIES))
    x = np.array(draw(st.lists(finite, min_size=h * w, max_size=h * w))).reshape(h, w)
    k = np.array(draw(st.lists(finite, min_size=kh * kw, max_size=kh * kw))).reshape(
        kh, kw
    )
    return x, k, mode, boundary, draw(finite)


@given(_problem(), st.sampled_from(list(FUNCS)))
def test_property_oracle(prob, fn):
    x, k, mode, boundary, fill = prob
    ref = FUNCS[fn](x, k, mode, boundary, fill)
    for method in METHODS:
        out = _ours(fn)(x, k, mode, boundary, fill, method=method)
        _check(out, ref, k.size)


@given(_problem(), finite, finite)
def test_property_linearity(prob, alpha, beta):
    x, k, mode, boundary, _ = prob
    y = np.roll(x, 1) - 0.5
    lhs = gpuconv.convolve2d(alpha * x + beta * y, k, mode, boundary)
    rhs = alpha * gpuconv.convolve2d(x, k, mode, boundary) + beta * gpuconv.convolve2d(
        y, k, mode, boundary
    )
    scale = (abs(alpha) + abs(beta) + 1) * (np.abs(x).max() + 1) * (np.abs(k).sum() + 1)
    assert_close(lhs, rhs, np.float64, terms=k.size, scale=scale)


@given(_problem())
def test_property_convolve_is_flipped_correlate(prob):
    """convolve2d == correlate2d with the kernel reversed, except 'same' with an even
    kernel dimension (the two put the extra padding on opposite sides)."""
    x, k, mode, boundary, fill = prob
    conv = gpuconv.convolve2d(x, k, mode, boundary, fill)
    corr = gpuconv.correlate2d(x, k[::-1, ::-1], mode, boundary, fill)
    if mode != "same" or (k.shape[0] % 2 and k.shape[1] % 2):
        assert_close(conv, corr, np.float64, terms=k.size)
    else:
        KH, KW = k.shape
        fc = gpuconv.convolve2d(x, k, "full", boundary, fill)
        H, W = x.shape
        assert_close(
            conv, fc[(KH - 1) // 2 :][:H, (KW - 1) // 2 :][:, :W], terms=k.size
        )


@pytest.mark.parametrize("module", [_filters, _filter_args, _cpu_filter])
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
