"""convolve / correlate (1-D) on the NumPy backend against NumPy and a naive loop."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import gpuconv
from gpuconv import _cpu
from tests._tol import assert_close
from tests.ref_filters import ref_filter1d

FUNCS = {"convolve": np.convolve, "correlate": np.correlate}
MODES = ("full", "same", "valid", 0, 1, 2)
LENGTHS = (1, 2, 3, 4, 7, 10)


def _rand(rng, n, dtype):
    dt = np.dtype(dtype)
    if dt == np.bool_:
        return rng.integers(0, 2, n).astype(bool)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        return rng.integers(
            max(info.min, -100), min(info.max, 100), n, endpoint=True
        ).astype(dt)
    if dt.kind == "c":
        return (rng.standard_normal(n) + 1j * rng.standard_normal(n)).astype(dt)
    return rng.standard_normal(n).astype(dt)


def _check(out, ref, terms):
    assert out.shape == ref.shape
    assert out.dtype == ref.dtype
    if ref.dtype.kind in "biu":
        np.testing.assert_array_equal(out, ref)
    elif ref.dtype == np.float16:
        # NumPy accumulates half in float32 and rounds once, as gpuconv does; the
        # summation order may differ, so allow one float16 ulp.
        np.testing.assert_allclose(
            out.astype(np.float32),
            ref.astype(np.float32),
            rtol=2e-3,
            atol=2e-3 * np.sqrt(terms),
        )
    else:
        assert_close(out, ref, terms=terms)


@pytest.mark.parametrize("method", ["direct", "fft", "auto"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fn", FUNCS)
def test_matches_numpy_all_lengths(fn, mode, method, rng):
    """All length pairs incl. v longer than a (swap), float and complex."""
    for n1, n2 in itertools.product(LENGTHS, LENGTHS):
        for dtype in ("float64", "complex128"):
            a, v = _rand(rng, n1, dtype), _rand(rng, n2, "complex128")
            out = getattr(gpuconv, fn)(a, v, mode, method=method)
            _check(out, FUNCS[fn](a, v, mode), min(n1, n2))


DTYPE_PAIRS = [
    ("bool", "bool"),
    ("int8", "int8"),
    ("uint8", "uint8"),
    ("uint8", "int8"),
    ("int32", "int64"),
    ("uint64", "uint64"),
    ("float16", "float16"),
    ("float32", "float32"),
    ("float16", "float32"),
    ("int8", "float32"),
    ("float64", "complex64"),
    ("complex64", "complex64"),
    ("bool", "int16"),
]


@pytest.mark.parametrize("dt1,dt2", DTYPE_PAIRS, ids=["-".join(p) for p in DTYPE_PAIRS])
@pytest.mark.parametrize("fn", FUNCS)
def test_dtypes_like_numpy(fn, dt1, dt2, rng):
    """np.result_type; bool is OR of ANDs; int8 wraps; float16 sums in float32."""
    for n1, n2, mode in itertools.product(
        (1, 5, 9), (1, 4, 12), ("full", "same", "valid")
    ):
        a, v = _rand(rng, n1, dt1), _rand(rng, n2, dt2)
        out = getattr(gpuconv, fn)(a, v, mode)
        _check(out, FUNCS[fn](a, v, mode), min(n1, n2))


@pytest.mark.parametrize("fn", FUNCS)
def test_against_naive_loop(fn, rng):
    for n1, n2, mode in itertools.product(
        (1, 3, 6), (1, 2, 5, 8), ("full", "same", "valid")
    ):
        a = _rand(rng, n1, "complex128")
        v = _rand(rng, n2, "complex128")
        out = getattr(gpuconv, fn)(a, v, mode)
        _check(out, ref_filter1d(a, v, mode, convolve=fn == "convolve"), min(n1, n2))
        a8, v8 = _rand(rng, n1, "int8") * 3, _rand(rng, n2, "int8") * 5
        out = getattr(gpuconv, fn)(a8, v8, mode)
        _check(out, ref_filter1d(a8, v8, mode, convolve=fn == "convolve"), 1)


def test_swap_and_conjugation():
    """correlate(v, a) is correlate(a, v) reversed and conjugated (NumPy's docs)."""
    a = np.array([0, 1, 0.5j])
    v = np.array([1 + 1j, 2, 3 - 1j])
    for mode in ("full", "same", "valid"):
        np.testing.assert_allclose(
            gpuconv.correlate(v, a, mode), np.conj(gpuconv.correlate(a, v, mode))[::-1]
        )
    long_v = np.arange(1.0, 8.0) + 1j
    for mode in ("full", "same", "valid"):
        _check(gpuconv.correlate(a, long_v, mode), np.correlate(a, long_v, mode), 3)
        _check(gpuconv.convolve(a, long_v, mode), np.convolve(a, long_v, mode), 3)


def test_scalars_and_lists():
    """np.convolve treats scalars as one-element arrays; lists are accepted."""
    for a, v in ((3, 4), (3, [1, 2]), ([1, 2, 3], 2.5), (np.int8(3), [1, 2])):
        _check(gpuconv.convolve(a, v), np.convolve(a, v), 1)
    _check(gpuconv.correlate([1, 2, 3], [1, 1]), np.correlate([1, 2, 3], [1, 1]), 2)


def test_layouts_inputs_unchanged(rng):
    base = rng.standard_normal(40)
    ro = base.copy()
    ro.flags.writeable = False
    for a in (
        base[::3],
        base[::-1],
        ro,
        np.broadcast_to(base[:1], (9,)),
        base.astype(">f8"),
        base.tolist(),
    ):
        v = base[5:12][::-2]
        keep_a, keep_v = np.array(a, copy=True), v.copy()
        for fn, mode in itertools.product(FUNCS, ("full", "same", "valid")):
            _check(getattr(gpuconv, fn)(a, v, mode), FUNCS[fn](np.array(a), v, mode), 4)
        np.testing.assert_array_equal(np.asarray(a), keep_a)
        np.testing.assert_array_equal(v, keep_v)


def test_long_signals_direct_and_fft(rng):
    """Rows longer than a block (column blocks) and the FFT path on long signals."""
    a = rng.standard_normal(100_003).astype(np.float32)
    v = rng.standard_normal(51).astype(np.float32)
    for fn, mode in itertools.product(FUNCS, ("full", "same", "valid")):
        ref = FUNCS[fn](a.astype(np.float64), v.astype(np.float64), mode)
        for method in ("direct", "fft", "auto"):
            out = getattr(gpuconv, fn)(a, v, mode, method=method)
            assert out.dtype == np.float32
            assert_close(out, ref, np.float32, terms=51)


def test_nan_inf_mask_like_numpy(rng):
    a = rng.standard_normal(30)
    a[[0, 13, 29]] = [np.nan, np.inf, -np.inf]
    v = np.array([1.0, 0.0, -2.0, 0.5])
    for fn, mode in itertools.product(FUNCS, ("full", "same", "valid")):
        with np.errstate(invalid="ignore"):
            ref = FUNCS[fn](a, v, mode)
        out = getattr(gpuconv, fn)(a, v, mode)
        np.testing.assert_array_equal(np.isnan(out), np.isnan(ref))
        np.testing.assert_array_equal(np.isinf(out), np.isinf(ref))
        ok = np.isfinite(ref)
        assert_close(out[ok], ref[ok], terms=4)


def test_routes_through_backend_op(rng, monkeypatch):
    """1-D calls reach the backend as (1, 1, n) problems."""
    seen = []
    real = _cpu.correlate2d

    def spy(in1, k, fp, method):
        seen.append((in1.shape, k.shape, fp.B, fp.H, fp.KH, method))
        return real(in1, k, fp, method)

    monkeypatch.setattr(_cpu, "correlate2d", spy)
    gpuconv.convolve(rng.standard_normal(9), rng.standard_normal(4), "same")
    assert seen == [((1, 1, 9), (1, 1, 4), 1, 1, 1, "direct")]


ints = st.integers(-50, 50)


@given(
    st.lists(ints, min_size=1, max_size=12),
    st.lists(ints, min_size=1, max_size=12),
    st.sampled_from(["full", "same", "valid"]),
    st.sampled_from(list(FUNCS)),
    st.sampled_from(["int8", "int64", "float64", "complex128"]),
)
def test_property_oracle(a, v, mode, fn, dtype):
    a, v = np.array(a).astype(dtype), np.array(v).astype(dtype)
    if np.dtype(dtype).kind == "c":
        v = v * (1 - 1j)
    out = getattr(gpuconv, fn)(a, v, mode)
    _check(out, FUNCS[fn](a, v, mode), min(len(a), len(v)))
