"""choose_method: the NumPy backend's direct/FFT cost model and what 'auto' does."""

from __future__ import annotations

import numpy as np
import pytest

import gpuconv
from gpuconv import _cpu, _cpu_filter
from gpuconv._filter_args import FilterProblem


def _fp(n, k, dtype="float32", B=1, Bk=1, mode="same"):
    dt = np.dtype(dtype)
    if mode == "same":
        pad, out = k // 2, n
    else:
        pad, out = k - 1, n + k - 1
    return FilterProblem(B, n, n, Bk, k, k, pad, pad, out, out, "fill", dt.type(0), dt)


@pytest.mark.parametrize("dtype", ["float32", "float64", "complex64", "complex128"])
def test_model_crossover(dtype):
    """Direct for small kernels, FFT for large ones, with one crossover (between
    5x5 and 15x15 for a 1024x1024 image) and none below 3x3."""
    picks = [_cpu_filter.choose(_fp(1024, k, dtype)) for k in range(1, 32, 2)]
    first_fft = picks.index("fft")
    assert all(p == "direct" for p in picks[:first_fft])
    assert all(p == "fft" for p in picks[first_fft:])
    assert 5 <= 2 * first_fft + 1 <= 15


def test_model_costs_monotone():
    d_prev = f_prev = 0.0
    for k in (1, 3, 5, 9, 17, 33):
        d, f = _cpu_filter.estimate_seconds(_fp(512, k, "float64"))
        assert d > d_prev and f >= f_prev
        d_prev, f_prev = d, f
    # more images cost more of both
    d1, f1 = _cpu_filter.estimate_seconds(_fp(64, 9, B=1))
    d8, f8 = _cpu_filter.estimate_seconds(_fp(64, 9, B=8, Bk=8))
    assert d8 > d1 and f8 > f1


@pytest.mark.parametrize(
    "dtype", ["int8", "uint8", "int32", "int64", "uint64", "longdouble"]
)
def test_never_fft_for_integers_or_longdouble(dtype):
    x = np.ones((300, 300), dtype)
    k = np.ones((41, 41), dtype)
    assert gpuconv.choose_method(x, k, "same") == "direct"
    assert _cpu_filter.estimate_seconds(_fp(300, 41, dtype))[1] == np.inf


def test_bool_1d_never_fft():
    assert gpuconv.choose_method(np.ones(5000, bool), np.ones(3000, bool)) == "direct"


def test_public_examples():
    x = np.zeros((1024, 1024), np.float32)
    assert gpuconv.choose_method(x, np.ones((3, 3), np.float32), "same") == "direct"
    assert gpuconv.choose_method(x, np.ones((31, 31), np.float32), "same") == "fft"


@pytest.mark.parametrize("where", ["in1", "in2", "fill"])
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_nonfinite_forces_direct(where, value):
    x = np.ones((200, 200))
    k = np.ones((31, 31))
    k[0, 0] = 2  # not separable: a rank-1 kernel's direct sum is cheap enough here
    fill = 0.0
    assert gpuconv.choose_method(x, k, "same") == "fft"
    if where == "in1":
        x[100, 7] = value
    elif where == "in2":
        k[3, 4] = value
    else:
        fill = value
    assert gpuconv.choose_method(x, k, "same", "fill", fill) == "direct"
    # a non-finite fill value is harmless when no padding is read
    if where == "fill":
        big = np.ones((300, 300))
        assert gpuconv.choose_method(big, k, "valid", "fill", fill) == "fft"
        assert gpuconv.choose_method(x, k, "same", "symm", fill) == "fft"


def test_separable_kernels_shift_the_crossover():
    """A rank-1 kernel costs KH + KW taps on the direct path."""
    x = np.ones((512, 512))
    g = np.exp(-(np.linspace(-3, 3, 15) ** 2))
    rng = np.random.default_rng(0)
    assert gpuconv.choose_method(x, np.outer(g, g), "same") == "direct"
    assert gpuconv.choose_method(x, rng.standard_normal((15, 15)), "same") == "fft"


def test_one_dimensional_and_stacks():
    assert gpuconv.choose_method(np.ones(100), np.ones(3)) == "direct"
    assert gpuconv.choose_method(np.ones(200_000), np.ones(5000)) == "fft"
    stack = np.ones((8, 64, 64))
    assert gpuconv.choose_method(stack, np.ones((3, 3)), axes=(1, 2)) == "direct"
    assert gpuconv.choose_method(stack, np.ones((8, 25, 25)), axes=(1, 2)) == "fft"
    assert gpuconv.choose_method(np.ones((0, 5)), np.ones((3, 3))) == "direct"


def test_measure_returns_times(rng):
    x = rng.standard_normal((40, 40))
    method, times = gpuconv.choose_method(
        x, rng.standard_normal((7, 7)), "same", measure=True
    )
    assert method in ("direct", "fft")
    assert set(times) == {"direct", "fft"}
    assert all(t > 0 for t in times.values())
    assert method == min(times, key=times.__getitem__)
    method, times = gpuconv.choose_method(
        np.ones((30, 30), np.int16), np.ones((5, 5), np.int16), measure=True
    )
    assert method == "direct" and set(times) == {"direct"}
    x[0, 0] = np.nan
    method, times = gpuconv.choose_method(x, np.ones((9, 9)), measure=True)
    assert method == "direct" and set(times) == {"direct", "fft"}


@pytest.mark.parametrize("kshape", [(3, 3), (25, 25)])
def test_auto_uses_choose_method(kshape, rng, monkeypatch):
    """convolve2d(method='auto') hands the backend exactly what choose_method says."""
    seen = []
    real = _cpu.correlate2d

    def spy(in1, k, fp, method):
        seen.append(method)
        return real(in1, k, fp, method)

    monkeypatch.setattr(_cpu, "correlate2d", spy)
    x = rng.standard_normal((128, 128)).astype(np.float32)
    k = rng.standard_normal(kshape).astype(np.float32)
    expected = gpuconv.choose_method(x, k, "same")
    gpuconv.convolve2d(x, k, "same")
    gpuconv.correlate2d(x, k, "same")
    assert seen == [expected, expected]
    assert expected == ("direct" if kshape == (3, 3) else "fft")


def test_next_fast_len():
    for n in list(range(1, 200)) + [1025, 4097, 10007]:
        m = _cpu_filter.next_fast_len(n)
        assert m >= n
        r = m
        for p in (2, 3, 5):
            while r % p == 0:
                r //= p
        assert r == 1
        # nothing 5-smooth in between
        for q in range(n, m):
            r = q
            for p in (2, 3, 5):
                while r % p == 0:
                    r //= p
            assert r != 1


def test_cuda_backend_gets_auto_unresolved(rng, monkeypatch):
    """'auto' is resolved by choose_method only for the NumPy backend; a CUDA
    backend receives 'auto' (it has its own chooser) and the same problem."""
    from gpuconv import _backend

    seen = []

    class FakeGpuOps:
        @staticmethod
        def correlate2d(in1, k, fp, method):
            seen.append(method)
            return _cpu.correlate2d(in1, k, fp, "direct")

    x = rng.standard_normal((64, 64))
    k = rng.standard_normal((25, 25))
    ref = gpuconv.convolve2d(x, k, "same")
    monkeypatch.setattr(_backend, "select_backend", lambda *a, backend=None: "cuda")
    monkeypatch.setattr(_backend, "to_backend", lambda name, *a: (list(a), lambda y: y))
    monkeypatch.setattr(_backend, "backend_ops", lambda name: FakeGpuOps)
    monkeypatch.setattr(_backend, "cupy_module", lambda: np)
    np.testing.assert_allclose(gpuconv.convolve2d(x, k, "same"), ref)
    gpuconv.correlate(x[0], k[0], "full", method="fft")
    gpuconv.convolve(x[0], k[0], method="direct")
    assert seen == ["auto", "fft", "direct"]


# ---- small problems are direct: SciPy's exact results on integer-valued floats ----
# (image, kernel) shapes: the repro (3x3 image, 6x6 kernel), 1x1, non-square,
# even/odd, kernel larger than the image in one or both axes, 16x16 at both ends
EXACT_PAIRS = [
    ((3, 3), (6, 6)),
    ((1, 1), (1, 1)),
    ((1, 7), (3, 2)),
    ((5, 4), (4, 5)),
    ((16, 16), (16, 16)),
    ((16, 9), (3, 3)),
    ((2, 16), (16, 1)),
    ((8, 8), (9, 9)),
    ((11, 6), (2, 2)),
    ((16, 16), (5, 7)),
    ((7, 13), (12, 4)),
    ((4, 4), (15, 16)),
]


def _valid_ok(hw, khw):
    pairs = list(zip(hw, khw, strict=True))
    return all(a >= b for a, b in pairs) or all(a <= b for a, b in pairs)


def _exact_cases(rng):
    pairs = list(EXACT_PAIRS)
    pairs += [  # plus a sample of all sizes up to 16x16
        (tuple(rng.integers(1, 17, 2)), tuple(rng.integers(1, 17, 2)))
        for _ in range(16)
    ]
    for hw, khw in pairs:
        for mode in ("full", "same", "valid"):
            if mode == "valid" and not _valid_ok(hw, khw):
                continue
            for boundary, fill in (("fill", 0), ("fill", 3), ("wrap", 0), ("symm", 0)):
                yield hw, khw, mode, boundary, fill


def _ints(rng, shape, dtype):
    v = rng.integers(-9, 10, shape).astype(dtype)
    if np.dtype(dtype).kind == "c":
        v += 1j * rng.integers(-9, 10, shape)
    return v


@pytest.mark.parametrize("dtype", ["float32", "float64", "complex128"])
def test_small_integer_valued_problems_match_scipy_exactly(dtype):
    import scipy.signal as ss

    rng = np.random.default_rng(10)
    n = 0
    for hw, khw, mode, boundary, fill in _exact_cases(rng):
        x = _ints(rng, hw, dtype)
        k = _ints(rng, khw, dtype)
        assert gpuconv.choose_method(x, k, mode, boundary, fill) == "direct"
        for ours, theirs in (
            (gpuconv.convolve2d, ss.convolve2d),
            (gpuconv.correlate2d, ss.correlate2d),
        ):
            want = theirs(x, k, mode, boundary, fill)
            got = ours(x, k, mode, boundary, fill)  # method='auto'
            assert got.dtype == want.dtype
            assert np.array_equal(got, want), (hw, khw, mode, boundary, fill)
            n += 1
    assert n > 500


def test_small_rank1_and_1d_integer_valued_problems_are_exact():
    """Separable integer kernels (whose factors need not be integers) and NumPy's
    1-D convolve/correlate of up to 16 samples, every mode."""
    import scipy.signal as ss

    rng = np.random.default_rng(11)
    for u, v in [([1, 3, 1], [3, 9, 3]), ([2, 5, 7, 1], [3, 1, 6]), ([7] * 5, [1] * 6)]:
        k = np.outer(u, v).astype(np.float64)
        x = rng.integers(-9, 10, (12, 14)).astype(np.float64)
        for mode in ("full", "same", "valid"):
            want = ss.convolve2d(x, k, mode, "symm")
            assert np.array_equal(gpuconv.convolve2d(x, k, mode, "symm"), want)
    for _ in range(30):
        a = rng.integers(-9, 10, rng.integers(1, 17)).astype(np.float64)
        v = rng.integers(-9, 10, rng.integers(1, 17)).astype(np.float64)
        for mode in ("full", "same", "valid"):
            assert np.array_equal(gpuconv.convolve(a, v, mode), np.convolve(a, v, mode))
            assert np.array_equal(
                gpuconv.correlate(a, v, mode), np.correlate(a, v, mode)
            )


def test_large_problems_still_take_the_fft():
    """The CPU benchmark's FFT cases (1024² and 2048², k >= 15) keep the FFT."""
    for n in (1024, 2048):
        x = np.zeros((n, n), np.float32)
        for k in (15, 31):
            assert (
                gpuconv.choose_method(
                    x, np.ones((k, k), np.float32) + np.eye(k, dtype=np.float32), "same"
                )
                == "fft"
            )
