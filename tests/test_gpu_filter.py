"""The CUDA filter op and the public filter API on a GPU (marker ``gpu``).

Against the NumPy backend's op (``gpuconv._cpu_filter.correlate2d``, exact for
integers and integer-valued floats) and SciPy/NumPy: every algorithm (naive, tiled,
fft, auto) and dtype on the awkward grid (image sizes at the default tile +-1, even
and odd kernels, 1x1, kernels larger than the image, every mode, boundary and fill
value, stacks with Bk = 1 and Bk = B, NaN/inf, integer wrap-around); non-contiguous
and negative-stride CuPy inputs through the public API; outputs poisoned so an
unwritten element fails; batches past gridDim.z's limit; a problem past 2**31
elements (gated on free memory) checked against a slice; float32 flush-to-zero.

The test bodies take an ``env`` (array module, device, host copy) so that the same
code can be dry-run on the CPU emulation harness (see ``_emulated_env``) where no
GPU is lent; the ``gpu`` tests below run them on CuPy.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from gpuconv import _gpu_filter, _plan_filter
from tests._filter_cases import (
    ALL_DTYPES,
    BOUNDARIES,
    FLOAT_DTYPES,
    MODES,
    check_fft_fill_value,
    problem,
    random_values,
    ref_correlate,
    scipy_problem,
)
from tests._tol import assert_close


@dataclass
class Env:
    xp: Any
    device: Any
    asnumpy: Any


def numpy_backend(x, k, fp):
    from gpuconv._cpu_filter import correlate2d

    with np.errstate(invalid="ignore", over="ignore"):
        return correlate2d(x, k, fp, "direct")


def check_against_numpy(out, x, k, fp, fft: bool = False):
    want = numpy_backend(x, k, fp)
    dt = np.dtype(fp.dtype)
    if dt.kind in "iub":
        np.testing.assert_array_equal(out, want)
        return
    np.testing.assert_array_equal(np.isnan(out), np.isnan(want))
    if fft:  # FFT error is relative to the largest output
        finite = np.isfinite(want)
        scale = float(np.abs(want[finite]).max()) if finite.any() else 1.0
        assert_close(out, want, dtype=dt, terms=fp.KH * fp.KW * 16, scale=scale)
    else:
        assert_close(out, want, dtype=dt, terms=fp.KH * fp.KW)


def op(env: Env, x, k, fp, method, **kw):
    """The op on device copies of host arrays; returns the host result."""
    dx, dk = env.xp.asarray(x), env.xp.asarray(k)
    out = _gpu_filter.correlate2d(dx, dk, fp, method, device=env.device, **kw)
    assert out.shape == (fp.B, fp.OH, fp.OW) and out.dtype == fp.dtype
    return env.asnumpy(out)


# ---------------------------------------------------------------------------------
# test bodies
# ---------------------------------------------------------------------------------
def _default_tile(dtype) -> tuple[int, int]:
    dt = np.dtype(dtype)
    return 32 * _plan_filter.rx(dt.itemsize), 8 * _plan_filter.RY_IMAGE


def body_awkward_grid(env: Env, dtype: str) -> None:
    rng = np.random.default_rng(7)
    tw, th = _default_tile(dtype)
    methods = ["naive", "tiled", "auto"] + (["fft"] if dtype in FLOAT_DTYPES else [])
    small = dict(small_int=True)
    cases = [
        # (B, Bk, H, W, KH, KW, mode, boundary, fill)
        (1, 1, th - 1, tw - 1, 3, 3, "same", "fill", 0),
        (1, 1, th, tw, 5, 5, "same", "symm", 0),
        (2, 1, th + 1, tw + 1, 4, 4, "same", "wrap", 0),
        (2, 2, th + 1, 2 * tw + 1, 7, 7, "full", "fill", 3),
        (1, 1, 2 * th - 1, tw + 1, 9, 9, "valid", "fill", 0),
        (3, 3, 40, 50, 2, 6, "full", "symm", 0),
        (1, 1, 37, 61, 1, 1, "same", "fill", 0),
        (1, 1, 5, 4, 9, 11, "same", "wrap", 0),  # kernel larger than the image
        (2, 1, 3, 7, 8, 15, "full", "symm", 0),
        (1, 1, 70, 90, 15, 15, "same", "fill", -2),
        (4, 4, 1, 500, 1, 31, "full", "fill", 0),  # 1-D rows: the RY = 1 instance
    ]
    for B, Bk, h, w, kh, kw, mode, boundary, fill in cases:
        x = random_values(rng, (B, h, w), dtype, **small)
        k = random_values(rng, (Bk, kh, kw), dtype, **small)
        fp = scipy_problem(h, w, kh, kw, mode, boundary, fill, dtype, B=B, Bk=Bk)
        results = {}
        for m in methods:
            if m == "tiled" and _plan_filter.tiled_config(fp) is None:
                continue
            results[m] = op(env, x, k, fp, m)
            check_against_numpy(results[m], x, k, fp, fft=m == "fft")
        # integer-valued inputs: every direct kernel gives the same bits
        if "tiled" in results:
            assert results["naive"].tobytes() == results["tiled"].tobytes()


def body_pipelined(env: Env, monkeypatch: Any) -> None:
    """The persistent, double-buffered ``filter2d_tiled_pipelined`` (every
    registered dtype and k) gives tiled's and naive's bits on standard-normal
    values: the device's own grid, and a grid of 2 blocks walking every tile (the
    buffers swapped many times, real cp.async); interior and border tiles, both
    copy paths ('same': element copies in float32, 'valid': 16-byte chunks)."""
    from gpuconv import _plan_cache

    rng = np.random.default_rng(5)
    for two_blocks in (False, True):
        if two_blocks:  # 2 SMs with room for 1 block each
            monkeypatch.setattr(_gpu_filter, "_sm_facts", lambda device: (2, 1))
            _plan_cache.clear()
        for dtype, ks in sorted(_plan_filter.PIPELINED):
            for h, w, mode, boundary in ((130, 517, "same", "wrap"),
                                         (67, 300, "valid", "symm")):  # fmt: skip
                x = random_values(rng, (2, h, w), dtype)
                k = random_values(rng, (1, ks, ks), dtype)
                fp = scipy_problem(h, w, ks, ks, mode, boundary, 0.5, dtype, B=2)
                got = op(env, x, k, fp, "tiled", pipelined=True)
                assert got.tobytes() == op(env, x, k, fp, "tiled").tobytes()
                assert got.tobytes() == op(env, x, k, fp, "naive").tobytes()


def body_full_range_values(env: Env, dtype: str) -> None:
    """Random values over the dtype's range: integer sums wrap around."""
    rng = np.random.default_rng(11)
    for B, Bk, h, w, kh, kw, mode, boundary in [
        (3, 1, 33, 70, 3, 3, "same", "symm"),
        (2, 2, 17, 29, 5, 4, "full", "wrap"),
    ]:
        x = random_values(rng, (B, h, w), dtype)
        k = random_values(rng, (Bk, kh, kw), dtype)
        fill = random_values(rng, (), dtype)[()]
        fp = scipy_problem(h, w, kh, kw, mode, boundary, fill, dtype, B=B, Bk=Bk)
        for m in ("naive", "tiled"):
            check_against_numpy(op(env, x, k, fp, m), x, k, fp)


def body_nan_inf(env: Env) -> None:
    rng = np.random.default_rng(3)
    for dtype in ("float32", "float64", "complex64"):
        x = random_values(rng, (1, 40, 300), dtype)
        x[0, 0, 0] = np.nan
        x[0, 0, 150] = np.inf
        x[0, 20, 100] = -np.inf
        x[0, 39, 299] = np.nan
        k = random_values(rng, (1, 5, 5), dtype)
        k[0, 2, 2] = 0
        for boundary in BOUNDARIES:
            fp = scipy_problem(40, 300, 5, 5, "same", boundary, 0, dtype)
            for m in ("naive", "tiled", "auto"):
                check_against_numpy(op(env, x, k, fp, m), x, k, fp)


def body_poisoned_outputs(env: Env) -> None:
    rng = np.random.default_rng(5)
    for dtype in ("float32", "float64", "int16", "complex128"):
        tw, th = _default_tile(dtype)
        for h, w, ks in [(th + 1, tw + 3, 3), (7, 13, 4), (2 * th - 1, 2 * tw - 1, 9)]:
            x = random_values(rng, (2, h, w), dtype, small_int=True)
            k = random_values(rng, (1, ks, ks), dtype, small_int=True)
            fp = scipy_problem(h, w, ks, ks, "same", "symm", 0, dtype, B=2)
            for m in ("naive", "tiled"):
                out = env.xp.full(
                    (2, h, w), _gpu_filter.poison_value(dtype), dtype=np.dtype(dtype)
                )
                dx, dk = env.xp.asarray(x), env.xp.asarray(k)
                _gpu_filter.correlate2d(dx, dk, fp, m, device=env.device, out=out)
                check_against_numpy(env.asnumpy(out), x, k, fp)


def body_many_batches(env: Env) -> None:
    """More images than gridDim.z can hold (65535): the kernels' batch loop."""
    rng = np.random.default_rng(9)
    B = 70001
    x = random_values(rng, (B, 3, 5), "float32", small_int=True)
    k = random_values(rng, (B, 2, 2), "float32", small_int=True)
    fp = scipy_problem(3, 5, 2, 2, "full", "wrap", 0, "float32", B=B, Bk=B)
    for m in ("naive", "tiled"):
        out = op(env, x, k, fp, m)
        np.testing.assert_array_equal(out, ref_correlate(x, k, fp))


def body_fft_fill_value(env: Env) -> None:
    """The FFT algorithm with a non-zero fill value, every element within the direct
    sum's own error bound (the fill is added exactly after the transform)."""
    rng = np.random.default_rng(17)
    for dtype in FLOAT_DTYPES:
        check_fft_fill_value(lambda *a: op(env, *a), rng, dtype)


def body_flush_to_zero(env: Env) -> None:
    """float32 subnormals are flushed on the GPU (CuPy compiles with -ftz=true):
    SciPy gives 1e-39 here, the kernels give 0. Documented behaviour."""
    x = np.full((1, 20, 40), 1e-39, np.float32)
    k = np.zeros((1, 3, 3), np.float32)
    k[0, 1, 1] = 1
    fp = scipy_problem(20, 40, 3, 3, "same", "fill", 0, "float32")
    assert numpy_backend(x, k, fp)[0, 5, 5] == np.float32(1e-39)
    for m in ("naive", "tiled"):
        assert np.all(op(env, x, k, fp, m) == 0)


def body_separable_and_dft_spectrum(env: Env) -> None:
    """Rank-1 kernels as two 1-D passes (forced), every boundary, and the FFT path
    with the kernel spectrum from DFT matrices (cuBLAS GEMMs on a GPU)."""
    rng = np.random.default_rng(21)
    g7 = np.exp(-np.linspace(-2, 2, 7) ** 2)
    g6 = np.exp(-np.linspace(-1, 1, 6) ** 2)
    for dtype in ("float32", "float64", "complex64"):
        k = np.multiply.outer(g7, g6).astype(dtype)[None]
        for h, w, boundary, fill in [(33, 130, "fill", -1.5), (17, 64, "wrap", 0),
                                     (5, 3, "symm", 0)]:  # fmt: skip
            x = random_values(rng, (2, h, w), dtype)
            fp = scipy_problem(h, w, 7, 6, "same", boundary, fill, dtype, B=2)
            check_against_numpy(op(env, x, k, fp, "separable"), x, k, fp)
    x = random_values(rng, (2, 300, 257), "float32")
    k = random_values(rng, (1, 9, 9), "float32")
    fp = scipy_problem(300, 257, 9, 9, "same", "fill", 2.0, "float32", B=2)
    sh, sw = _plan_filter.fft_grid(fp)[:2]
    assert _gpu_filter.kernel_dft_cheaper(9, 9, sh, sw, True)
    check_against_numpy(op(env, x, k, fp, "fft"), x, k, fp, fft=True)


def body_fft_gather(env: Env) -> None:
    """``fft_gather`` (the FFT paths' pass, cuda/fft_gather.cu) bit for bit against
    ``numpy.pad``: both geometries, every dtype and boundary, more rows than grid y,
    columns over several blocks."""
    from tests._filter_cases import fft_gather_reference

    rng = np.random.default_rng(23)
    geometries = [  # (B, H, W, DI, DJ, row_step, extent, origin)
        (2, 37, 45, 50, 2100, (1, 0), (44, 2060), (3, 5)),
        (3, 1, 9000, 24, 1201, (0, 601), (1, 9600), (0, 300)),
    ]
    tall = (2, 1, 40, 33000, 3, (1, 0), (1, 40), (0, 0))  # > 65535 rows (once)
    for dtype in _plan_filter.FFT_DTYPES:
        for boundary in ("fill", "wrap", "symm"):
            first = dtype == "float32" and boundary == "wrap"
            for B, H, W, di, dj, rs, ext, org in geometries + [tall] * first:
                src = random_values(rng, (B, H, W), dtype)
                dst = env.xp.full((B, di, dj), np.nan, dtype=dtype)
                for launch in _plan_filter.plan_fft_gather(
                        env.xp.asarray(src), dst, row_step=rs, extent=ext,
                        origin=org, boundary=boundary):  # fmt: skip
                    env.device.launch(launch)
                want = fft_gather_reference(src, di, dj, rs, ext, org, boundary)
                np.testing.assert_array_equal(env.asnumpy(dst), want)


def body_fft_crop(env: Env) -> None:
    """``fft_crop`` (the 2-D FFT path's epilogue, cuda/fft_crop.cu) bit for bit
    against the NumPy backend's epilogue (the window, then add_fill_correction on
    NumPy): every dtype, zero and non-zero (complex) fills, one kernel and one per
    image, all four border blocks, columns over several blocks, more rows than grid
    y (once), float32 subnormals; the tables by ``fft_fill_tables`` (and on their
    own, bit for bit). On the GPU this checks that nvcc rounds every
    operation of the correction as NumPy does (explicit __dadd_rn/__dmul_rn: no FMA
    contraction) and keeps subnormals."""
    from gpuconv._padding import add_fill_correction, fill_tables, fill_value

    rng = np.random.default_rng(29)
    geometries = [  # (B, H, W, Bk, KH, KW, pad_top, pad_left, OH, OW), (oy, ox)
        ((2, 37, 2100, 2, 7, 6, 3, 2, 37, 2100), (5, 9)),
        ((3, 20, 30, 1, 25, 9, 24, 8, 44, 38), (0, 1)),
    ]
    tall = ((1, 66000, 3, 1, 3, 3, 1, 1, 66000, 3), (1, 1))  # > 65535 rows (once)
    for dtype in _plan_filter.FFT_DTYPES:
        fills = (0.0, 2.5) if np.dtype(dtype).kind == "f" else (0.0, 1.5 - 2.0j)
        for fill in fills:
            first = dtype == "float32" and fill != 0
            for geometry, (oy, ox) in geometries + [tall] * first:
                B, H, W, Bk, KH, KW, pt, pl, OH, OW = geometry
                fp = problem(*geometry, "fill", fill, dtype)
                y = random_values(rng, (B, oy + OH + 3, ox + OW + 2), dtype)
                k = random_values(rng, (Bk, KH, KW), dtype)
                yd, kd = env.xp.asarray(y), env.xp.asarray(k)
                wide = fill_value(fp)
                tables = (None if wide is None else
                          _gpu_filter.device_fill_tables(env.device, kd, dtype))
                out = env.xp.full((B, OH, OW), np.nan, dtype=dtype)
                for launch in _plan_filter.plan_fft_crop_fp(
                        fp, yd, out, (oy, ox), tables, wide):  # fmt: skip
                    env.device.launch(launch)
                want = np.ascontiguousarray(y[:, oy : oy + OH, ox : ox + OW])
                want = add_fill_correction(want, k, fp)
                np.testing.assert_array_equal(env.asnumpy(out), want)
    # float32 subnormals, copied and corrected: kept (no float32 arithmetic for
    # -ftz=true to flush, the conversions explicit non-.ftz cvt: a plain cast would
    # flush both the 2e-39 read and the subnormal result)
    fp = problem(1, 6, 7, 1, 3, 3, 1, 1, 6, 7, "fill", 3e-39, "float32")
    y = np.full((1, 6, 7), 2e-39, np.float32)
    k = np.full((1, 3, 3), 0.25, np.float32)
    out = env.xp.empty((1, 6, 7), dtype="float32")
    tables = _gpu_filter.device_fill_tables(env.device, env.xp.asarray(k), "float32")
    for launch in _plan_filter.plan_fft_crop_fp(fp, env.xp.asarray(y), out, (0, 0),
                                                tables, fill_value(fp)):  # fmt: skip
        env.device.launch(launch)
    want = add_fill_correction(y.copy(), k, fp)
    assert 0 < want[0, 0, 0] < np.finfo(np.float32).tiny  # a subnormal
    np.testing.assert_array_equal(env.asnumpy(out), want)
    # fft_fill_tables: NumPy's tables bit for bit (sequential sums; CuPy's own sum
    # and cumsum would round differently), long rows, 10 decades, signed zeros,
    # subnormal taps
    for dtype in _plan_filter.FFT_DTYPES:
        for bk, kh, kw in ((2, 1, 30), (3, 17, 11), (1, 40, 1)):
            k = random_values(rng, (bk, kh, kw), dtype)
            k = (k * 10.0 ** rng.integers(-5, 6, k.shape)).astype(dtype)
            k.flat[:: max(1, k.size // 3)] = -0.0
            k.flat[1::5] = 1e-40  # a float32 subnormal tap (a normal float64)
            got = _gpu_filter.device_fill_tables(env.device, env.xp.asarray(k), dtype)
            for g, w in zip(got, fill_tables(k, np, dtype), strict=True):
                np.testing.assert_array_equal(env.asnumpy(g), w)
                g = env.asnumpy(g)
                np.testing.assert_array_equal(np.signbit(g.real), np.signbit(w.real))


def body_fft_spectrum_product(env: Env) -> None:
    """``fft_spectrum_product`` (cuda/fft_spectrum_product.cu) against
    ``spec * (a @ g)`` in complex128 by NumPy: both dtypes, tiles +-1, the largest
    rank, every batch pattern, a shared kernel over a stack (several images per
    block, the last block with fewer) and a kernel per image; the factors never
    written; the same bits twice and on another grid (one row of blocks striding
    over the row tiles, one layer over the images); then the 2-D FFT path through
    it against the direct NumPy op."""
    rng = np.random.default_rng(29)
    tu, tv, rmax = _plan_filter.FS_TU, _plan_filter.FS_TV, _plan_filter.FS_MAX_RANK

    def cvalues(shape, dtype):
        v = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
        return v.astype(dtype)

    for dtype in _plan_filter.SPECTRUM_DTYPES:
        for (B, U, V, R), (ba, bg) in (
            ((1, tu + 1, tv - 1, rmax), (1, 1)),
            ((3, 2 * tu - 1, 3 * tv + 1, 7), (1, 3)),
            ((2, 40, 33, 16), (2, 1)),
            ((2, 9, 70, 1), (2, 2)),
            # a stack: FS_TARGET_BLOCKS blocks exist with 2 images per block
            ((2101, 17, 21, 5), (1, 1)),
        ):
            spec = cvalues((B, U, V), dtype)
            a, g = cvalues((ba, U, R), dtype), cvalues((bg, R, V), dtype)
            # (host copies first: on the NumPy env of _dry_run, asarray does not
            # copy, and the in-place product would overwrite `spec` itself)
            da, dg = env.xp.asarray(a.copy()), env.xp.asarray(g.copy())
            outs = []
            for again in range(3):
                out = env.xp.asarray(spec.copy())
                (launch,) = _plan_filter.plan_fft_spectrum_product(out, da, dg,
                                                                   2.0**-10)
                if B > 1000:
                    assert int(launch.args[10]) > 1  # several images per block
                if again == 2:  # grid y and z of 1: the blocks stride over both
                    per = np.int32(B if ba == bg == 1 else 1)
                    args = launch.args[:10] + (per,) + launch.args[11:]
                    launch = dataclasses.replace(
                        launch, grid=(launch.grid[0], 1, 1), args=args)
                env.device.launch(launch)
                outs.append(env.asnumpy(out))
            np.testing.assert_array_equal(outs[0], outs[1])  # deterministic
            np.testing.assert_array_equal(outs[0], outs[2])  # whatever the grid
            np.testing.assert_array_equal(env.asnumpy(da), a)
            np.testing.assert_array_equal(env.asnumpy(dg), g)
            ref = spec.astype(np.complex128) * 2.0**-10 * (
                a.astype(np.complex128) @ g.astype(np.complex128))
            assert_close(outs[0], ref, dtype=dtype, terms=R + 1,
                         scale=float(np.abs(ref).max()))  # fmt: skip
    for dtype in ("float32", "complex128"):
        for (h, w, kh, kw, b, bk) in ((61, 66, 3, 7, 2, 1), (90, 80, 6, 2, 3, 3)):
            fp = scipy_problem(h, w, kh, kw, "same", "symm", 0, dtype, B=b, Bk=bk)
            sh, sw = _plan_filter.fft_grid(fp)[:2]
            assert _gpu_filter.kernel_dft_cheaper(kh, kw, sh, sw, dtype[0] != "c")
            x = random_values(rng, (b, h, w), dtype)
            k = random_values(rng, (bk, kh, kw), dtype)
            check_against_numpy(op(env, x, k, fp, "fft"), x, k, fp, fft=True)


# ---------------------------------------------------------------------------------
# the gpu tests
# ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cuda_env():
    import cupy

    from gpuconv._kernels import CupyDevice

    return Env(cupy, CupyDevice(), cupy.asnumpy)


@pytest.fixture
def poisoned(monkeypatch):
    monkeypatch.setattr(_gpu_filter, "POISON_OUTPUTS", True)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_awkward_grid(cuda_env, poisoned, dtype):
    body_awkward_grid(cuda_env, dtype)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_full_range_values(cuda_env, poisoned, dtype):
    body_full_range_values(cuda_env, dtype)


@pytest.mark.gpu
def test_pipelined(cuda_env, poisoned, monkeypatch):
    body_pipelined(cuda_env, monkeypatch)


@pytest.mark.gpu
def test_nan_inf(cuda_env, poisoned):
    body_nan_inf(cuda_env)


@pytest.mark.gpu
def test_poisoned_outputs(cuda_env):
    body_poisoned_outputs(cuda_env)


@pytest.mark.gpu
def test_many_batches(cuda_env):
    body_many_batches(cuda_env)


@pytest.mark.gpu
def test_fft_fill_value(cuda_env):
    body_fft_fill_value(cuda_env)


@pytest.mark.gpu
def test_separable_and_dft_spectrum(cuda_env, poisoned):
    body_separable_and_dft_spectrum(cuda_env)


@pytest.mark.gpu
def test_fft_gather(cuda_env):
    body_fft_gather(cuda_env)


@pytest.mark.gpu
def test_fft_crop(cuda_env):
    body_fft_crop(cuda_env)


@pytest.mark.gpu
def test_fft_spectrum_product(cuda_env):
    body_fft_spectrum_product(cuda_env)


@pytest.mark.gpu
def test_flush_to_zero(cuda_env):
    body_flush_to_zero(cuda_env)


@pytest.mark.gpu
def test_public_api_layouts(poisoned):
    """CuPy inputs of every layout through the public API, never modified."""
    import cupy
    import scipy.signal as ss

    import gpuconv

    rng = np.random.default_rng(1)
    base = random_values(rng, (70, 90), "float64", small_int=True)
    wbase = random_values(rng, (6, 5), "float64", small_int=True)
    views = {
        "c": lambda a, xp: a,
        "fortran": lambda a, xp: xp.asfortranarray(a),
        "strided": lambda a, xp: a[::2, ::3],
        "negative": lambda a, xp: a[::-1, ::-1],
        "transposed": lambda a, xp: a.T,
        "offset": lambda a, xp: a[1:, 1:],
    }
    for vname, view in views.items():
        for wname, wview in views.items():
            x, w = view(base, np), wview(wbase, np)
            dx = view(cupy.asarray(base), cupy)
            dw = wview(cupy.asarray(wbase), cupy)
            x0, w0 = dx.copy(), dw.copy()
            for fn in ("convolve2d", "correlate2d"):
                for mode, boundary in [
                    ("same", "symm"),
                    ("full", "fill"),
                    ("valid", "wrap"),
                ]:
                    got = getattr(gpuconv, fn)(dx, dw, mode, boundary, 2,
                                               method="direct")  # fmt: skip
                    assert isinstance(got, cupy.ndarray), (vname, wname)
                    want = getattr(ss, fn)(x, w, mode, boundary, 2)
                    np.testing.assert_array_equal(cupy.asnumpy(got), want)
            assert bool((dx == x0).all()) and bool((dw == w0).all())


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["uint8", "int32", "complex64", "float32"])
def test_public_api_dtypes_and_stacks(poisoned, dtype):
    import cupy
    import scipy.signal as ss

    import gpuconv

    rng = np.random.default_rng(2)
    imgs = random_values(rng, (2, 3, 45, 67), dtype)
    kers = random_values(rng, (3, 5, 4), dtype)
    got = gpuconv.convolve2d(cupy.asarray(imgs), cupy.asarray(kers), "same", "symm",
                             axes=(-2, -1))  # fmt: skip
    got = cupy.asnumpy(got)
    for i in range(2):
        for c in range(3):
            want = ss.convolve2d(imgs[i, c], kers[c], "same", "symm")
            assert got.dtype == want.dtype
            if np.dtype(dtype).kind in "iu":
                np.testing.assert_array_equal(got[i, c], want)
            else:
                assert_close(got[i, c], want, terms=20)
    # the 'valid' swap (kernel larger than the image) and SciPy's complex quirk
    a = random_values(rng, (4, 5), dtype)
    b = random_values(rng, (9, 8), dtype)
    got = cupy.asnumpy(gpuconv.correlate2d(cupy.asarray(a), cupy.asarray(b), "valid"))
    want = ss.correlate2d(a, b, "valid")
    if np.dtype(dtype).kind in "iu":
        np.testing.assert_array_equal(got, want)
    else:
        assert_close(got, want, terms=20)


@pytest.mark.gpu
@pytest.mark.parametrize("fn", ["convolve", "correlate"])
def test_public_1d(poisoned, fn):
    import cupy

    import gpuconv

    rng = np.random.default_rng(4)
    for dtype in ("float64", "complex128", "int64", "bool", "float32"):
        for n, m in [(1000, 31), (31, 1000), (5000, 1), (17, 17)]:
            if dtype == "bool":
                a, v = rng.random(n) < 0.3, rng.random(m) < 0.3
            else:
                a = random_values(rng, (n,), dtype, small_int=True)
                v = random_values(rng, (m,), dtype, small_int=True)
            for mode in MODES:
                for method in ("auto", "direct"):
                    got = getattr(gpuconv, fn)(cupy.asarray(a), cupy.asarray(v), mode,
                                               method=method)  # fmt: skip
                    want = getattr(np, fn)(a, v, mode)
                    assert got.dtype == want.dtype
                    if method == "direct" or np.dtype(dtype).kind in "iub":
                        np.testing.assert_array_equal(cupy.asnumpy(got), want)
                    else:
                        assert_close(cupy.asnumpy(got), want, terms=min(n, m))


@pytest.mark.gpu
def test_auto_takes_fft_for_large_kernels(monkeypatch):
    import cupy

    import gpuconv

    calls = []
    real = _gpu_filter.correlate2d_fft

    def spy(*args, **kw):
        calls.append(args[2])
        return real(*args, **kw)

    monkeypatch.setattr(_gpu_filter, "correlate2d_fft", spy)
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2048, 2048)).astype(np.float32)
    w = rng.standard_normal((63, 63)).astype(np.float32)
    got = cupy.asnumpy(gpuconv.convolve2d(cupy.asarray(x), cupy.asarray(w), "same"))
    assert len(calls) == 1
    fp = scipy_problem(
        2048, 2048, 63, 63, "same", "fill", 0, "float32", correlate=False
    )
    want = numpy_backend(x[None], np.ascontiguousarray(w[::-1, ::-1])[None], fp)[0]
    assert_close(got, want, terms=63 * 63 * 16, scale=float(np.abs(want).max()))
    # integers never take it
    calls.clear()
    xi = rng.integers(-5, 5, (512, 512)).astype(np.int32)
    wi = rng.integers(-5, 5, (63, 63)).astype(np.int32)
    gpuconv.convolve2d(cupy.asarray(xi), cupy.asarray(wi), "same")
    assert not calls


@pytest.mark.gpu
def test_past_2_31_elements():
    """A (1, 46400, 46400) float32 problem (2.15e9 elements): 64-bit offsets. The
    last rows are checked against the same filter on a slice of the image."""
    import cupy

    h = w = 46400
    need = 2 * h * w * 4 + (1 << 30)
    free, _ = cupy.cuda.Device().mem_info
    if free < need:
        pytest.skip(
            f"needs {need / 2**30:.1f} GiB of free GPU memory, {free / 2**30:.1f}"
        )
    rng = np.random.default_rng(8)
    k = random_values(rng, (1, 3, 3), "float32", small_int=True)
    x = cupy.random.default_rng(1).random((1, h, w), dtype=cupy.float32)
    x *= 7  # integer values -3..3, in place (no temporary of this size)
    cupy.floor(x, out=x)
    x -= 3
    fp = scipy_problem(h, w, 3, 3, "same", "symm", 0, "float32")
    dk = cupy.asarray(k)
    rows = 40
    tail = cupy.asnumpy(x[:, h - rows :, :])
    fs = scipy_problem(rows, w, 3, 3, "same", "symm", 0, "float32")
    want = ref_correlate(tail, k, fs)[:, 1:, :]  # row 0 of the slice sees its border
    for m in ("tiled", "naive"):
        out = _gpu_filter.correlate2d(x, dk, fp, m)
        got = cupy.asnumpy(out[:, h - rows + 1 :, :])
        del out
        np.testing.assert_array_equal(got, want)


def _emulated_env():  # pragma: no cover - a dry run of the bodies without a GPU
    """``python -c 'from tests.test_gpu_filter import _dry_run; _dry_run()'``."""
    from gpuconv._emulate import EmulatedDevice

    return Env(np, EmulatedDevice(sanitize=False), np.asarray)


def _dry_run() -> None:  # pragma: no cover
    env = _emulated_env()
    for dtype in ALL_DTYPES:
        body_awkward_grid(env, dtype)
        body_full_range_values(env, dtype)
    body_nan_inf(env)
    body_poisoned_outputs(env)
    body_many_batches(env)
    body_fft_fill_value(env)
    body_fft_gather(env)
    body_fft_crop(env)
    body_fft_spectrum_product(env)
    # (body_flush_to_zero is GPU-only: the emulator computes with the host's FPU)
    print("dry run: ok")
