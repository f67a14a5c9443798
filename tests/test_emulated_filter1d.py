"""The 1-D filter kernel (cuda/filter1d.cu, ``filter1d_tiled``) on the CPU emulation
harness.

``gpuconv.convolve``/``gpuconv.correlate`` are called with the CUDA filter op routed
to an ``EmulatedDevice`` and compared with ``numpy.convolve``/``numpy.correlate`` on
float64/complex128 copies (exactly, for integers and booleans): modes full/same/
valid, even/odd/1-tap kernels, kernels longer than the signal (NumPy's swap),
signal lengths at the block tile +-1, tap counts around the shared-memory tap chunk,
non-contiguous and negative-stride inputs, NaN/inf, complex conjugation. At the op
level: stacks (Bk = 1 and Bk = B), every boundary and a non-zero fill (B x 1 x W
problems reached from 2-D calls), the scalar load/store path, determinism and the
summation order (bit-identical to ``filter2d_naive``), a subset under ASan/UBSan.
"""

from __future__ import annotations

import numpy as np
import pytest

import gpuconv
from gpuconv import _backend, _gpu_filter, _plan_filter
from gpuconv._plan_filter import (
    choose_filter1d,
    fft_gather_name,
    filter1d_candidate,
    filter1d_smem_bytes,
    filter1d_taps,
)
from tests._emu_helpers import EMULATED, prepared_device
from tests._filter_cases import problem, random_values, ref_correlate
from tests._tol import assert_close

pytestmark = EMULATED

F1D_DTYPES = ("float32", "float64", "complex64", "complex128")


def tile(dtype) -> int:
    """Outputs per block of filter1d_tiled."""
    dt = np.dtype(dtype)
    return _plan_filter.F1D_THREADS * (_plan_filter.F1D_OUT_BYTES // dt.itemsize)


@pytest.fixture(scope="module")
def dev():
    return prepared_device(["filter1d.cu", "filter2d.cu", "fft_gather.cu"])


@pytest.fixture(autouse=True)
def _poison(monkeypatch):
    monkeypatch.setattr(_gpu_filter, "POISON_OUTPUTS", True)


@pytest.fixture
def routed(dev, monkeypatch):
    """The public 1-D functions on the emulated CUDA op (NumPy's in/outputs)."""
    ops = type("Ops", (), {"correlate2d": staticmethod(
        lambda *a: _gpu_filter.correlate2d(*a, device=dev))})  # fmt: skip
    real = _backend.backend_ops
    monkeypatch.setattr(
        _backend, "backend_ops", lambda name: ops if name == "numpy" else real(name)
    )
    return dev


def f1d_launches(dev, n0):
    return [k for _, k, *_ in dev.launches[n0:] if k.startswith("filter1d_tiled")]


def reference(fn, a, v, mode):
    dt = np.result_type(a, v)
    if dt.kind in "iub":
        return getattr(np, fn)(a, v, mode)  # NumPy's own wrap-around / OR of ANDs
    wide = np.complex128 if dt.kind == "c" else np.float64
    with np.errstate(invalid="ignore", over="ignore"):
        return getattr(np, fn)(a.astype(wide), v.astype(wide), mode)


def check(fn, a, v, mode, dev, *, expect_kernel=True):
    a0, v0 = a.copy(), v.copy()
    n0 = len(dev.launches)
    got = getattr(gpuconv, fn)(a, v, mode, method="direct")
    np.testing.assert_array_equal(a, a0)
    np.testing.assert_array_equal(v, v0)
    want = reference(fn, a, v, mode)
    dt = np.result_type(a, v)
    assert got.dtype == dt and got.shape == want.shape
    if dt.kind in "iub":
        np.testing.assert_array_equal(got, want)
    else:
        assert_close(got, want, dtype=dt, terms=min(a.size, v.size))
    if expect_kernel:
        assert f1d_launches(dev, n0), "filter1d_tiled did not run"
    return got


@pytest.mark.parametrize("dtype", F1D_DTYPES)
@pytest.mark.parametrize("fn", ["convolve", "correlate"])
def test_api_matches_numpy(dtype, fn, routed):
    rng = np.random.default_rng(0)
    t = tile(dtype)
    # (signal, kernel) lengths: 1 tap, even/odd, kernel longer than the signal
    # (NumPy swaps), signal lengths one off the block tile
    pairs = [(t - 1, 1), (t + 1, 2), (t - 1, 5), (t + 1, 16), (7, 30), (1, 1), (4, 4)]
    for n, m in pairs:
        a = random_values(rng, (n,), dtype)
        v = random_values(rng, (m,), dtype)
        for mode in ("full", "same", "valid"):
            check(fn, a, v, mode, routed)


@pytest.mark.parametrize("dtype", ["int32", "uint32", "int64", "uint64", "bool"])
def test_integers_wrap_and_booleans(dtype, routed):
    rng = np.random.default_rng(1)
    n = tile("int32") + 1 if dtype in ("int32", "uint32", "bool") else 300
    if dtype == "bool":
        a, v = rng.random(n) < 0.1, rng.random(9) < 0.3
    else:
        info = np.iinfo(dtype)
        a = rng.integers(info.min, info.max, n, dtype=dtype, endpoint=True)
        v = rng.integers(info.min, info.max, 9, dtype=dtype, endpoint=True)
    for fn in ("convolve", "correlate"):
        for mode in ("full", "valid"):
            check(fn, a, v, mode, routed)


@pytest.mark.parametrize(
    "dtype, n, taps",
    [
        ("complex128", 700, (511, 512, 513, 1100)),  # KC = 512 taps
        ("float64", 1300, (1025,)),  # KC = 1024
        ("float32", 2100, (2049,)),  # KC = 2048
    ],
)
def test_taps_crossing_the_shared_chunk(dtype, n, taps, routed):
    rng = np.random.default_rng(2)
    assert max(taps) > filter1d_taps(np.dtype(dtype).itemsize)[1]  # two chunks
    a = random_values(rng, (n,), dtype)
    for m in taps:
        v = random_values(rng, (m,), dtype)
        for fn, mode in (("correlate", "valid"), ("convolve", "full")):
            check(fn, a, v, mode, routed)


def test_strided_inputs_and_nonfinite(routed):
    rng = np.random.default_rng(3)
    base = rng.standard_normal(5001)
    a = base[::-2]  # negative stride, non-contiguous
    v = rng.standard_normal(14)[::2]
    for fn in ("convolve", "correlate"):
        check(fn, a, v, "same", routed)
    # NaN and inf in the signal and the kernel: only the windows holding them
    # change (padded taps of the last register chunk never multiply)
    a = rng.standard_normal(2050).astype(np.float32)
    a[[0, 1000, 2049]] = [np.nan, np.inf, -np.inf]
    v = rng.standard_normal(3).astype(np.float32)
    for mode in ("full", "same", "valid"):
        check("convolve", a, v, mode, routed)
    # an inf tap: 'valid' (in 'full'/'same' the op multiplies the zero padding,
    # 0 * inf = NaN, where numpy.correlate skips it: gpuconv's NumPy backend and
    # the 2-D kernels do the same, the FilterProblem definition)
    v5 = np.array([1, 2, np.inf, 4, 5], np.float32)
    check("correlate", rng.standard_normal(40).astype(np.float32), v5, "valid", routed)
    ac = (rng.standard_normal(600) + 1j * rng.standard_normal(600)).astype(np.complex64)
    ac[17] = complex(np.nan, 0)
    vc = (rng.standard_normal(6) - 2j).astype(np.complex64)
    check("correlate", ac, vc, "full", routed)
    check("correlate", vc, ac, "same", routed)  # swapped: conj(v) reversed


def test_auto_choice_and_plan_cache(routed):
    rng = np.random.default_rng(4)
    a, v = rng.standard_normal(3000), rng.standard_normal(7)
    n0 = len(routed.launches)
    got = gpuconv.convolve(a, v, method="direct")
    again = gpuconv.convolve(a, v, method="direct")
    assert len(f1d_launches(routed, n0)) == 2
    np.testing.assert_array_equal(got, again)  # deterministic: bit-identical
    fp = problem(1, 1, 10**7, 1, 1, 31, 0, 30, 1, 10**7 + 30, dtype="float32")
    assert filter1d_candidate(fp)
    assert choose_filter1d(fp, "auto") == "filter1d"
    assert choose_filter1d(fp, "direct") == "filter1d"
    assert choose_filter1d(fp, "tiled") is None  # forced 2-D kernels stay
    long = problem(1, 1, 10**7, 1, 1, 10**4, 0, 0, 1, 10**7 - 10**4 + 1,
                   dtype="float32")  # fmt: skip
    assert choose_filter1d(long, "auto") == "fft1d"
    assert choose_filter1d(problem(1, 1, 64, 1, 1, 3, 0, 0, 1, 62, dtype="int8"),
                           "auto") is None  # fmt: skip
    assert not filter1d_candidate(problem(1, 2, 64, 1, 1, 3, 0, 0, 2, 62))
    for dt in ("float32", "float64", "complex64", "complex128", "int64"):
        size = np.dtype(dt).itemsize
        assert filter1d_smem_bytes(size, 10**6) <= _plan_filter.MAX_SHARED_MEM


# ---------------------------------------------------------------------------------
# the op: stacks, boundaries, fill values, scalar paths, summation order


OP_CASES = [
    # B, Bk, W, KW, pad_left, OW, boundary, fill
    (3, 1, 1023, 6, 5, 1028, "fill", 0.0),
    (2, 2, 1025, 5, 2, 1025, "fill", 1.5),
    (2, 1, 40, 9, 30, 70, "wrap", 0.0),  # kernel/pads beyond the signal
    (1, 1, 7, 20, 12, 30, "symm", 0.0),
    (2, 2, 2049, 3, 0, 2047, "wrap", 0.0),
]


@pytest.mark.parametrize("dtype", ["float32", "float64", "complex64", "int32"])
@pytest.mark.parametrize("case", OP_CASES)
def test_op_stacks_boundaries(case, dtype, dev):
    B, Bk, W, KW, pl, OW, boundary, fill = case
    fp = problem(B, 1, W, Bk, 1, KW, 0, pl, 1, OW, boundary, fill, dtype)
    rng = np.random.default_rng(5)
    x = random_values(rng, (B, 1, W), dtype)
    k = random_values(rng, (Bk, 1, KW), dtype)
    want = ref_correlate(x, k, fp)
    for vector in (True, False):
        n0 = len(dev.launches)
        out = _gpu_filter.correlate2d(x, k, fp, "direct", device=dev, vector=vector)
        assert f1d_launches(dev, n0)
        if np.dtype(dtype).kind in "iu":
            np.testing.assert_array_equal(out, want)
        else:
            assert_close(out, want, dtype=dtype, terms=KW)
    # misaligned rows and buffers: the scalar loads and stores
    buf = np.empty(B * W + 1, dtype)[1:].reshape(B, 1, W)
    buf[...] = x
    out = _gpu_filter.correlate2d(buf, k, fp, "direct", device=dev)
    if np.dtype(dtype).kind in "iu":
        np.testing.assert_array_equal(out, want)
    else:
        assert_close(out, want, dtype=dtype, terms=KW)


@pytest.mark.parametrize("dtype", ["float32", "complex128"])
def test_same_order_as_filter2d(dtype, dev):
    """One multiply-add per tap in ascending order: bit-identical to filter2d_naive
    and filter2d_tiled, and to itself on a second run."""
    rng = np.random.default_rng(6)
    W, KW = 3 * tile(dtype) + 1, 37
    fp = problem(2, 1, W, 1, 1, KW, 0, 18, 1, W, "fill", 0.0, dtype)
    x = random_values(rng, (2, 1, W), dtype)
    k = random_values(rng, (1, 1, KW), dtype)
    one = _gpu_filter.correlate2d(x, k, fp, "direct", device=dev)
    two = _gpu_filter.correlate2d(x, k, fp, "direct", device=dev)
    np.testing.assert_array_equal(one.view(np.uint8), two.view(np.uint8))
    for forced in ("naive", "tiled"):
        other = _gpu_filter.correlate2d(x, k, fp, forced, device=dev)
        np.testing.assert_array_equal(one.view(np.uint8), other.view(np.uint8))


def test_descending_thread_order():
    """A missing barrier shows up in one of the two schedules: run the other one
    (two tap chunks: the barrier before the second chunk's staging)."""
    from gpuconv._emulate import EmulatedDevice

    d = EmulatedDevice(sanitize=False, thread_order="descending")
    rng = np.random.default_rng(10)
    for dtype, W, KW, pl, OW in [("float64", 1500, 1030, 1029, 2528),
                                 ("complex128", 600, 520, 0, 81)]:  # fmt: skip
        fp = problem(2, 1, W, 2, 1, KW, 0, pl, 1, OW, "fill", 0, dtype)
        x = random_values(rng, (2, 1, W), dtype)
        k = random_values(rng, (2, 1, KW), dtype)
        out = _gpu_filter.correlate2d(x, k, fp, "direct", device=d)
        want = ref_correlate(x, k, fp)
        assert_close(out, want, dtype=dtype, terms=KW)
    assert all(k.startswith("filter1d_tiled") for _, k, *_ in d.launches)


def test_sanitized_subset():
    """ASan + UBSan (runner subprocess, buffers in exact-size heap blocks)."""
    from gpuconv._emulate import EmulatedDevice

    sdev = EmulatedDevice(sanitize=True)
    sdev.prepare(["filter1d.cu"])
    rng = np.random.default_rng(7)
    for dtype, W, KW, pl, OW, boundary in [
        ("float32", 2049, 2050, 2049, 4098, "fill"),  # two tap chunks, full
        ("complex128", 513, 4, 0, 510, "symm"),
        ("float64", 1, 3, 2, 3, "wrap"),
    ]:
        fp = problem(1, 1, W, 1, 1, KW, 0, pl, 1, OW, boundary, 0.0, dtype)
        x = random_values(rng, (1, 1, W), dtype)
        k = random_values(rng, (1, 1, KW), dtype)
        out = _gpu_filter.correlate2d(x, k, fp, "direct", device=sdev)
        assert_close(out, ref_correlate(x, k, fp), dtype=dtype, terms=KW)
    assert any(k.startswith("filter1d_tiled") for _, k, *_ in sdev.launches)


# ---------------------------------------------------------------------------------
# the segmented (overlap-save) FFT of 1-D problems ('fft1d')


FFT1D_CASES = [
    # B, Bk, W, KW, pad_left, OW, boundary: several segments, one segment
    (1, 1, 20000, 5, 4, 20004, "fill"),  # 'full', L = 4096: 5 segments
    (2, 2, 40000, 600, 300, 40000, "fill"),  # 'same', L = 8192: 6 segments
    (2, 1, 40000, 601, 0, 39400, "fill"),  # 'valid'
    (1, 1, 30000, 7, 40, 30100, "wrap"),  # 8 segments
    (2, 1, 300, 40, 50, 400, "symm"),  # one segment
    (1, 1, 9000, 600, 300, 9000, "symm"),  # one segment of ~1x, not 2 of 8192
]


@pytest.mark.parametrize("dtype", ["float32", "float64", "complex64", "complex128"])
@pytest.mark.parametrize("case", FFT1D_CASES)
def test_fft1d_segments(case, dtype, dev):
    B, Bk, W, KW, pl, OW, boundary = case
    fp = problem(B, 1, W, Bk, 1, KW, 0, pl, 1, OW, boundary, 0.0, dtype)
    assert _plan_filter.fft1d_ok(fp)
    assert choose_filter1d(fp, "fft") == "fft1d"
    L, nseg = _plan_filter.fft1d_segment(fp)
    assert nseg * (L - KW + 1) >= OW and L - KW + 1 >= 1
    # segments: a power of two, at least 8 KW; one segment: the smooth full size
    assert L & (L - 1) == 0 and L >= 8 * KW if nseg > 1 else L >= W + KW - 1
    rng = np.random.default_rng(8)
    x = random_values(rng, (B, 1, W), dtype)
    k = random_values(rng, (Bk, 1, KW), dtype)
    n0 = len(dev.launches)
    out = _gpu_filter.correlate2d(x, k, fp, "fft", device=dev)
    # one gather writes the segments, the rest is the transforms
    assert [n for _, n, *_ in dev.launches[n0:]] == [fft_gather_name(dtype)]
    # FFT rounding grows with the segment length: the table's tolerance for L terms
    assert_close(out, ref_correlate(x, k, fp), dtype=dtype, terms=L)


def test_fft1d_public_api(routed):
    rng = np.random.default_rng(9)
    a = rng.standard_normal(12000)
    v = rng.standard_normal(700) + 0.5j * rng.standard_normal(700)
    for fn in ("convolve", "correlate"):
        for mode in ("full", "same", "valid"):
            for x, y in ((a, v), (v, a)):  # NumPy's swap both ways
                got = getattr(gpuconv, fn)(x, y, mode, method="fft")
                want = getattr(np, fn)(x, y, mode)
                assert_close(got, want, dtype="complex128", terms=8192)
    # 'auto' on a long kernel takes the FFT only with finite data
    fp = problem(1, 1, 10**7, 1, 1, 10**4, 0, 0, 1, 10**7 - 10**4 + 1)
    assert choose_filter1d(fp, "auto") == "fft1d"
    assert choose_filter1d(problem(1, 1, 100, 1, 1, 5, 0, 0, 1, 96, "fill", 2.0),
                           "fft") is None  # non-zero fill: the 2-D FFT  # fmt: skip
