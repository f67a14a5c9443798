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
