"""``fft_crop`` (cuda/fft_crop.cu), the pass after the 2-D FFT path's inverse
transform, on the CPU emulation harness: the output window copied out and a
non-zero fill value's correction added, bit for bit against the NumPy backend's
epilogue (a slice, then ``gpuconv._padding.add_fill_correction`` on NumPy), which
is itself checked against a naive sum of the taps outside the image. Every dtype,
zero and non-zero fills (real, and complex on complex dtypes), kernels larger than
the image, 1x1, even and odd kernels, pads where every border block appears and
where none does, one kernel for all images and one per image, more rows than grid
y, NaN/inf passed through, inputs unchanged; the whole FFT path against its old
epilogue; the planner's refusals; ASan/UBSan in both thread orders."""

from __future__ import annotations

import numpy as np
import pytest

from gpuconv import _gpu_filter, _plan_filter
from gpuconv._emulate import EmulatedDevice
from gpuconv._padding import (
    add_fill_correction,
    fill_correction_regions,
    fill_interior,
    fill_tables,
    fill_value,
)
from gpuconv._plan_filter import (
    FFT_DTYPES,
    fft_crop_name,
    fft_fill_tables_name,
    plan_fft_crop,
    plan_fft_crop_fp,
    plan_fft_fill_tables,
)
from tests._emu_helpers import EMULATED, prepared_device
from tests._filter_cases import Shaped, problem, random_values

pytestmark = EMULATED


@pytest.fixture(scope="module")
def dev():
    return prepared_device(["fft_crop.cu", "fft_gather.cu"])


# (B, H, W, Bk, KH, KW, pad_top, pad_left, OH, OW) and the window's origin in
# y (oy, ox) with y (B, oy + OH + 2, ox + OW + 3): 'same' 3x3 (all four border
# blocks), an even kernel with one kernel per image and no left band, a kernel
# larger than the image ('full': no interior at all), 1x1 and 'valid' (no border
# block: a copy even with a fill), 'full' 5x5 with three images and kernels,
# columns over one block (1024 per block), a one-column output, a left band only
GEOMETRIES = [
    ((2, 7, 9, 1, 3, 3, 1, 1, 7, 9), (1, 2)),
    ((2, 6, 5, 2, 4, 2, 2, 0, 6, 5), (0, 0)),
    ((1, 3, 4, 1, 6, 7, 5, 6, 8, 10), (3, 1)),
    ((2, 5, 6, 1, 1, 1, 0, 0, 5, 6), (2, 2)),
    ((1, 8, 9, 1, 3, 4, 0, 0, 6, 6), (0, 3)),
    ((3, 6, 7, 3, 5, 5, 4, 4, 10, 11), (1, 0)),
    ((1, 3, 1100, 1, 3, 5, 1, 2, 3, 1100), (1, 4)),
    ((2, 4, 1, 1, 2, 3, 1, 2, 5, 1), (0, 1)),
    ((1, 5, 6, 1, 3, 3, 0, 2, 3, 6), (2, 0)),
]

FILLS = {  # per dtype kind: zero, and non-zero (a large one, a complex one)
    "f": (0.0, 2.5, -3.0e6),
    "c": (0.0, 1.5, 2.0 - 3.0j),
}


def case(rng, geometry, dtype, fill, boundary="fill"):
    (B, H, W, Bk, KH, KW, pt, pl, OH, OW), (oy, ox) = geometry
    fp = problem(B, H, W, Bk, KH, KW, pt, pl, OH, OW, boundary, fill, dtype)
    y = random_values(rng, (B, oy + OH + 2, ox + OW + 3), dtype)
    k = random_values(rng, (Bk, KH, KW), dtype)
    return fp, y, k, (oy, ox)


def reference(fp, y, k, origin):
    """The NumPy backend's epilogue: the window, then add_fill_correction."""
    oy, ox = origin
    out = np.ascontiguousarray(y[:, oy : oy + fp.OH, ox : ox + fp.OW])
    return add_fill_correction(out, k, fp)


def crop(dev, fp, y, k, origin):
    """fft_crop's output (poisoned first: every element must be written), its
    tables made on the device by fft_fill_tables."""
    fill = fill_value(fp)
    tables = None if fill is None else _gpu_filter.device_fill_tables(dev, k, fp.dtype)
    out = np.full((fp.B, fp.OH, fp.OW), np.nan, fp.dtype)
    for launch in plan_fft_crop_fp(fp, y, out, origin, tables, fill):
        dev.launch(launch)
    return out


@pytest.mark.parametrize("dtype", FFT_DTYPES)
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=range(len(GEOMETRIES)))
def test_crop_against_numpy(dev, dtype, geometry):
    rng = np.random.default_rng(hash((dtype, geometry)) % 2**32)
    for fill in FILLS[np.dtype(dtype).kind]:
        fp, y, k, origin = case(rng, geometry, dtype, fill)
        keep = (y.copy(), k.copy())
        got = crop(dev, fp, y, k, origin)
        want = reference(fp, y, k, origin)
        np.testing.assert_array_equal(got, want, err_msg=f"fill {fill}")
        np.testing.assert_array_equal(y, keep[0])  # the inputs are never written
        np.testing.assert_array_equal(k, keep[1])
        assert not np.isnan(got).any()


def test_the_reference_adds_the_taps_outside_the_image():
    """add_fill_correction (the reference) against a naive float64 sum: output
    (i, j) gains fill times the taps that land outside the image."""
    rng = np.random.default_rng(5)
    for geometry in GEOMETRIES[:6]:
        for fill in (2.5, 2.0 - 3.0j):
            dtype = "complex128" if isinstance(fill, complex) else "float64"
            fp, y, k, origin = case(rng, geometry, dtype, fill)
            got = reference(fp, y, k, origin)
            oy, ox = origin
            want = y[:, oy : oy + fp.OH, ox : ox + fp.OW].copy()
            kb = np.broadcast_to(k, (fp.B, fp.KH, fp.KW))
            a = np.arange(fp.KH)[:, None]
            c = np.arange(fp.KW)[None, :]
            for i in range(fp.OH):
                for j in range(fp.OW):
                    r, s = i + a - fp.pad_top, j + c - fp.pad_left
                    outside = (r < 0) | (r >= fp.H) | (s < 0) | (s >= fp.W)
                    want[:, i, j] += fill * (kb * outside).sum(axis=(1, 2))
            np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13)


def test_zero_fill_and_other_boundaries_are_a_copy_that_reads_no_table(dev):
    """No correction: the tables are null pointers (the emulator would fault on a
    read) and the output is the window, bit for bit."""
    rng = np.random.default_rng(6)
    for boundary, fill in (("fill", 0.0), ("fill", -0.0), ("wrap", 7.0), ("symm", 0)):
        fp, y, k, origin = case(rng, GEOMETRIES[0], "float32", fill, boundary)
        assert fill_value(fp) is None
        out = np.empty((fp.B, fp.OH, fp.OW), np.float32)
        (launch,) = plan_fft_crop_fp(fp, y, out, origin, None, None)
        assert launch.args[9:13] == (None,) * 4
        np.testing.assert_array_equal(crop(dev, fp, y, k, origin),
                                      reference(fp, y, k, origin))  # fmt: skip


def test_the_geometries_cover_every_border_block():
    """GEOMETRIES has each of fill_correction_regions' four blocks, all four at
    once, none, and an output without interior."""
    seen = set()
    for (_, H, W, _, KH, KW, pt, pl, OH, OW), _ in GEOMETRIES:
        r0, r1, c0, c1 = fill_interior(H, W, KH, KW, pt, pl, OH, OW)
        blocks = {name for name, there in (
            ("top", r0 > 0), ("bottom", r1 < OH), ("left", r1 > r0 and c0 > 0),
            ("right", r1 > r0 and c1 < OW), ("no interior", r1 == r0 or c1 == c0),
        ) if there}  # fmt: skip
        regions = fill_correction_regions(H, W, KH, KW, pt, pl, OH, OW)
        assert len(regions) == len(blocks - {"no interior"})
        seen |= blocks | {len(regions)}
    assert {0, 1, 4, "top", "bottom", "left", "right", "no interior"} <= seen


def test_more_rows_than_grid_y(dev, monkeypatch):
    """B * OH rows over a grid y of 5 (MAX_GRID_YZ lowered): grid y strides over
    them, with the corrections."""
    monkeypatch.setattr(_plan_filter, "MAX_GRID_YZ", 5)
    rng = np.random.default_rng(7)
    for dtype, fill in (("float32", 2.5), ("complex128", 1.0 + 2.0j)):
        fp, y, k, origin = case(rng, GEOMETRIES[5], dtype, fill)
        out = np.empty((fp.B, fp.OH, fp.OW), dtype)
        tables = fill_tables(k, np, fp.dtype)
        (launch,) = plan_fft_crop_fp(fp, y, out, origin, tables, fill_value(fp))
        assert launch.grid[1] == 5 < fp.B * fp.OH
        np.testing.assert_array_equal(crop(dev, fp, y, k, origin),
                                      reference(fp, y, k, origin))  # fmt: skip


def test_nan_and_inf_pass_through(dev):
    """NaN/inf in y stay where they are, in the interior and on the border (where
    the correction adds to them), as in the reference; a NaN fill makes every
    border output NaN."""
    rng = np.random.default_rng(8)
    for dtype in ("float64", "complex64"):
        fp, y, k, origin = case(rng, GEOMETRIES[0], dtype, 2.5)
        oy, ox = origin
        y[0, oy + 3, ox + 4] = np.nan  # interior
        y[1, oy, ox + 2] = np.inf  # top band
        y[0, oy + 4, ox + fp.OW - 1] = -np.inf  # right band
        got = crop(dev, fp, y, k, origin)
        want = reference(fp, y, k, origin)
        np.testing.assert_array_equal(got, want)
        assert np.isnan(got[0, 3, 4]) and np.isinf(got[1, 0, 2])
    fp, y, k, origin = case(rng, GEOMETRIES[0], "float32", np.nan)
    got = crop(dev, fp, y, k, origin)
    np.testing.assert_array_equal(got, reference(fp, y, k, origin))
    assert np.isnan(got[:, 0]).all() and not np.isnan(got[:, 1:-1, 1:-1]).any()


def test_single_precision_subnormals_are_kept(dev):
    """float32/complex64 subnormals in y, in the taps and in the fill value, and
    corrected outputs that round to a subnormal: NumPy's bits (the conversions are
    explicit non-.ftz PTX on a GPU, where CuPy's -ftz=true would flush them;
    tests/test_nvcc.py checks the PTX)."""
    rng = np.random.default_rng(13)
    tiny = float(np.finfo(np.float32).tiny)
    for dtype in ("float32", "complex64"):
        fp, y, k, origin = case(rng, GEOMETRIES[0], dtype, 3e-39)
        y[...] = y * 2e-39
        k[0, 0, :] = np.array([1e-40, -3e-41, 0.25], np.float32)
        got = crop(dev, fp, y, k, origin)
        want = reference(fp, y, k, origin)
        np.testing.assert_array_equal(got, want)
        sub = (want.real != 0) & (np.abs(want.real) < tiny)
        assert sub.sum() > 10
        for g, w in zip(_gpu_filter.device_fill_tables(dev, k, dtype),
                        fill_tables(k, np, dtype), strict=True):  # fmt: skip
            np.testing.assert_array_equal(g, w)


def awkward_values(rng, shape, dtype):
    """Values over 12 decades with signed zeros, float32-subnormal magnitudes and
    integers mixed in."""
    real = np.float64 if np.dtype(dtype) in (np.float64, np.complex128) else np.float32

    def part():
        v = rng.standard_normal(shape) * 10.0 ** rng.integers(-6, 7, shape)
        u = rng.random(shape)
        v[u < 0.05] = -0.0
        v[(u >= 0.05) & (u < 0.08)] = 2e-39 * rng.choice([-1.0, 1.0])
        v[u >= 0.9] = np.round(v[u >= 0.9])
        return v.astype(real)

    v = part() + 1j * part() if np.dtype(dtype).kind == "c" else part()
    return np.asarray(v, dtype).copy()


def test_random_problems_against_numpy(dev):
    """Seeded random epilogues, bit for bit against the NumPy backend's: any pads
    (negative ones and ones beyond the kernel: empty or clipped interiors), outputs
    of any size against the image (one row, one column, over one block of 1024
    columns), kernels with a side over FT_THREADS (the table threads stride), one
    kernel or one per image, real and complex fills (subnormal, huge, -0.0).
    (A 50,000-case run of the same generator found no difference.)"""
    rng = np.random.default_rng(14)
    fills = (2.5, -3e6, 1e-40, 0.1, -0.0, 1e30, 2 - 3j, -0.0 - 1j)
    for _ in range(120):
        dtype = FFT_DTYPES[rng.integers(4)]
        B = int(rng.integers(1, 4))
        Bk = int(rng.choice([1, B]))
        KH, KW = (int(v) for v in rng.integers(1, 10, 2))
        if rng.random() < 0.08:  # a long kernel side
            KH, KW = ((int(rng.integers(129, 200)), 2) if rng.random() < 0.5 else
                      (2, int(rng.integers(129, 200))))  # fmt: skip
        H, W = (int(v) for v in rng.integers(1, 14, 2))
        pt, pl = int(rng.integers(-2, KH + 3)), int(rng.integers(-2, KW + 3))
        OH, OW = (int(v) for v in rng.integers(1, 16, 2))
        if rng.random() < 0.05:
            OW = int(rng.integers(1020, 1030))
        fill = fills[rng.integers(6 if np.dtype(dtype).kind == "f" else 8)]
        fp = problem(B, H, W, Bk, KH, KW, pt, pl, OH, OW, "fill", fill, dtype)
        oy, ox = (int(v) for v in rng.integers(0, 3, 2))
        y = awkward_values(rng, (B, oy + OH + 1, ox + OW + 2), dtype)
        k = awkward_values(rng, (Bk, KH, KW), dtype)
        got = crop(dev, fp, y, k, (oy, ox))
        want = reference(fp, y, k, (oy, ox))
        assert got.tobytes() == want.tobytes(), fp


def test_random_public_calls_against_scipy(dev, monkeypatch):
    """Seeded random gpuconv.convolve2d/correlate2d calls with a non-zero fill and
    method='fft' through the CUDA ops on the emulator (gather, transforms, product,
    fft_fill_tables, fft_crop), every element within the direct sum's own bound of
    SciPy in float64/complex128; Fortran-ordered and flipped inputs, never modified.
    (A 20,000-case run found none outside.)"""
    import scipy.signal as ss

    import gpuconv
    from tests._emu_helpers import route_numpy_to
    from tests._tol import assert_within_bound

    d = EmulatedDevice(sanitize=False)
    d.prepare(["fft_crop.cu", "fft_gather.cu", "fft_spectrum_product.cu"])
    route_numpy_to(d, monkeypatch)
    monkeypatch.setattr(_gpu_filter, "POISON_OUTPUTS", True)
    rng = np.random.default_rng(15)
    for _ in range(40):
        dtype = np.dtype(FFT_DTYPES[rng.integers(4)])
        H, W, KH, KW = (int(v) for v in rng.integers(1, 20, 4))
        mode = ("full", "same", "valid")[rng.integers(3)]
        if mode == "valid" and (H - KH) * (W - KW) < 0:
            mode = "same"
        x = random_values(rng, (H, W), dtype)
        k = random_values(rng, (KH, KW), dtype)
        x = np.asfortranarray(x) if rng.random() < 0.3 else x
        k = k[::-1, ::-1] if rng.random() < 0.3 else k
        fills = (2.5, -1e4, 1e8, 0.1) + ((2 - 3j, 1j) if dtype.kind == "c" else ())
        fill = fills[rng.integers(len(fills))]
        conv = bool(rng.random() < 0.5)
        keep = (x.copy(), k.copy())
        n = len(d.launches)
        ours, theirs = ((gpuconv.convolve2d, ss.convolve2d) if conv else
                        (gpuconv.correlate2d, ss.correlate2d))  # fmt: skip
        got = ours(x, k, mode, "fill", fill, method="fft")
        assert [nm for _, nm, *_ in d.launches[n:]][-1].startswith("fft_crop<")
        np.testing.assert_array_equal(x, keep[0])
        np.testing.assert_array_equal(k, keep[1])
        wide = np.complex128 if dtype.kind == "c" else np.float64
        f = np.asarray(fill).astype(dtype).astype(wide)[()]
        want = theirs(x.astype(wide), k.astype(wide), mode, "fill", f)
        ax, ak = np.abs(x).astype(np.float64), np.abs(k).astype(np.float64)
        bound = theirs(ax, ak, mode, "fill", abs(f))
        small, big = (ax, ak) if ax.size <= ak.size else (ak, ax)
        bound = bound + small.sum() * big.max()  # the FFT's global term
        assert got.dtype == dtype
        assert_within_bound(got, want, bound, dtype)


def test_the_fft_path_matches_its_old_epilogue(dev, monkeypatch):
    """correlate2d_fft on the emulator (NumPy's transforms, fft_gather, fft_crop)
    gives the bits of the same path with its old epilogue (the window copied, then
    add_fill_correction), twice with other kernels and images (the cached plan
    binds each call's y, out and tables)."""
    rng = np.random.default_rng(9)

    def old_crop(device, fp, y, k, origin):
        return reference(fp, y, k, origin)

    for dtype, fill, boundary, Bk in (("float32", 2.5, "fill", 1),
                                      ("complex64", 1.0 - 2.0j, "fill", 2),
                                      ("float64", 0.0, "fill", 2),
                                      ("complex128", 0.0, "symm", 1)):  # fmt: skip
        fp = problem(2, 11, 13, Bk, 4, 3, 2, 1, 11, 13, boundary, fill, dtype)
        for _ in range(2):
            x = random_values(rng, (2, 11, 13), dtype)
            k = random_values(rng, (Bk, 4, 3), dtype)
            n = len(dev.launches)
            got = _gpu_filter.correlate2d(x, k, fp, "fft", device=dev)
            ran = [name.split("<")[0] for _, name, *_ in dev.launches[n:]]
            assert ran.count("fft_crop") == 1
            with monkeypatch.context() as m:
                m.setattr(_gpu_filter, "_crop", old_crop)
                want = _gpu_filter.correlate2d(x, k, fp, "fft", device=dev)
            np.testing.assert_array_equal(got, want)


def test_crop_takes_a_wide_or_strided_inverse(dev):
    """_crop casts an inverse in the wide type (NumPy 1's transforms of single
    precision) and copies a strided one first; the result is the reference's."""
    rng = np.random.default_rng(11)
    for dtype, fill in (("float32", 2.5), ("complex64", 1.0 - 2.0j)):
        fp, y, k, origin = case(rng, GEOMETRIES[0], dtype, fill)
        wide = y.astype(np.complex128 if dtype == "complex64" else np.float64)
        want = reference(fp, y, k, origin)
        np.testing.assert_array_equal(_gpu_filter._crop(dev, fp, wide, k, origin),
                                      want)  # fmt: skip
        strided = np.zeros((fp.B, y.shape[1], 2 * y.shape[2]), dtype)[:, :, ::2]
        strided[...] = y
        np.testing.assert_array_equal(_gpu_filter._crop(dev, fp, strided, k, origin),
                                      want)  # fmt: skip


def test_planner_refusals():
    y = np.zeros((2, 6, 7), np.float32)
    out = np.zeros((2, 4, 5), np.float32)
    k = np.ones((1, 3, 3), np.float32)
    tables = fill_tables(k)
    fill = np.float64(2.0)
    geo = {"origin": (1, 1), "image": (4, 5), "pads": (1, 1)}
    with pytest.raises(TypeError, match="fft_crop copies one of"):
        plan_fft_crop(y, out.astype(np.float64), **geo)
    with pytest.raises(TypeError, match="fft_crop copies one of"):
        plan_fft_crop(y.astype(np.int32), out.astype(np.int32), **geo)
    with pytest.raises(ValueError, match="C-contiguous"):
        plan_fft_crop(y, np.zeros((2, 4, 6), np.float32)[:, :, :5], **geo)
    with pytest.raises(ValueError, match=r"y \(B, sh, sw\)"):
        plan_fft_crop(y, out[:1], **geo)
    with pytest.raises(ValueError, match="not inside y"):
        plan_fft_crop(y, out, **{**geo, "origin": (3, 1)})
    with pytest.raises(ValueError, match="not inside y"):
        plan_fft_crop(y, out, **{**geo, "origin": (0, -1)})
    with pytest.raises(ValueError, match="together"):
        plan_fft_crop(y, out, tables=tables, **geo)
    with pytest.raises(ValueError, match="Bk 1 or 2"):
        plan_fft_crop(y, out, tables=fill_tables(np.ones((3, 3, 3))), fill=fill,
                      **geo)  # fmt: skip
    with pytest.raises(ValueError, match="Bk 1 or 2"):
        plan_fft_crop(y, out, tables=tables[:3] + (np.zeros((1, 4, 3)),), fill=fill,
                      **geo)  # fmt: skip
    with pytest.raises(TypeError, match="float64"):
        plan_fft_crop(y, out, tables=tables, fill=np.float32(2), **geo)
    with pytest.raises(TypeError, match="complex128"):
        plan_fft_crop(y.astype(np.complex64), out.astype(np.complex64),
                      tables=tables, fill=np.complex128(2), **geo)  # fmt: skip
    with pytest.raises(ValueError, match="image is empty"):
        plan_fft_crop(y, out, tables=tables, fill=fill,
                      **{**geo, "image": (0, 5)})  # fmt: skip
    assert plan_fft_crop(y, np.zeros((2, 0, 5), np.float32), **geo) == []
    (launch,) = plan_fft_crop(y, out, tables=tables, fill=fill, **geo)
    assert launch.kernel == fft_crop_name("float32") == "fft_crop<float>"
    assert launch.source == _plan_filter.SOURCE_FFT_CROP
    ok = _plan_filter.INT32_MAX - _plan_filter.MAX_GRID_YZ
    (launch,) = plan_fft_crop(Shaped((1, ok, 1)), Shaped((1, ok, 1)), origin=(0, 0))
    assert launch.grid[1] == _plan_filter.MAX_GRID_YZ
    for rows in (ok + 1, _plan_filter.INT32_MAX):
        with pytest.raises(ValueError, match="int32 limits"):
            plan_fft_crop(Shaped((1, rows, 1)), Shaped((1, rows, 1)), origin=(0, 0))


def awkward_kernels(rng, dtype):
    """Kernel stacks for the tables: one tap, one row, one column, rows longer than
    NumPy's pairwise block (8), magnitudes over 10 decades, signed zeros."""
    for bk, kh, kw in ((1, 1, 1), (2, 1, 30), (1, 40, 1), (3, 17, 11), (2, 9, 9)):
        k = random_values(rng, (bk, kh, kw), dtype)
        k = (k * 10.0 ** rng.integers(-5, 6, k.shape)).astype(dtype)
        k.flat[:: max(1, k.size // 3)] = -0.0
        yield k


@pytest.mark.parametrize("dtype", FFT_DTYPES)
def test_fill_tables_kernel_against_numpy(dev, dtype):
    """fft_fill_tables gives gpuconv._padding.fill_tables bit for bit (signs of
    zero included): every sum the same sequential run."""
    rng = np.random.default_rng(11)
    for k in awkward_kernels(rng, dtype):
        k0 = k.copy()
        got = _gpu_filter.device_fill_tables(dev, k, dtype)
        np.testing.assert_array_equal(k, k0)
        for g, w in zip(got, fill_tables(k, np, dtype), strict=True):
            assert g.dtype == w.dtype and g.shape == w.shape
            np.testing.assert_array_equal(g, w)
            np.testing.assert_array_equal(np.signbit(g.real), np.signbit(w.real))
            np.testing.assert_array_equal(np.signbit(g.imag), np.signbit(w.imag))


def test_fill_tables_nan_inf_and_a_strided_kernel(dev, monkeypatch):
    """NaN/inf taps propagate as NumPy's sums do; a flipped (negative-stride) view
    is read as its values; more kernels than grid x (the blocks stride)."""
    monkeypatch.setattr(_plan_filter, "FT_MAX_GRID", 2)
    rng = np.random.default_rng(12)
    k = random_values(rng, (5, 4, 6), "float64")
    k[1, 2, 3], k[3, 0, 0] = np.nan, np.inf
    view = k[:, ::-1, ::-1]
    (launch,) = plan_fft_fill_tables(np.ascontiguousarray(view),
                                     *fill_tables(view, np))  # fmt: skip
    assert launch.grid[0] == 2 and launch.kernel == fft_fill_tables_name("float64")
    with np.errstate(invalid="ignore"):
        want = fill_tables(view, np)
        got = _gpu_filter.device_fill_tables(dev, view, "float64")
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)


def test_fill_tables_planner_refusals():
    k = np.zeros((2, 3, 4), np.float32)
    good = fill_tables(k, np)
    with pytest.raises(TypeError, match="fft_fill_tables sums one of"):
        plan_fft_fill_tables(k.astype(np.int32), *good)
    with pytest.raises(ValueError, match="tables"):
        plan_fft_fill_tables(k, good[0], good[1], good[2], good[3][:, :, :4].copy())
    with pytest.raises(ValueError, match="tables"):
        plan_fft_fill_tables(k, *fill_tables(k, np, "complex64"))
    with pytest.raises(ValueError, match="C-contiguous"):
        plan_fft_fill_tables(k[:, ::-1], *good)
    with pytest.raises(ValueError, match=r"\(Bk, KH, KW\)"):
        plan_fft_fill_tables(k[:, :0], *fill_tables(k[:, :0], np))


@pytest.mark.parametrize("order", ["ascending", "descending"])
def test_sanitized(order):
    d = EmulatedDevice(thread_order=order)
    d.prepare(["fft_crop.cu"])
    rng = np.random.default_rng(10)
    for i in (0, 2, 5, 6):
        for dtype, fill in (("float32", 2.5), ("complex128", 1.0 - 2.0j),
                            ("float64", 0.0)):  # fmt: skip
            fp, y, k, origin = case(rng, GEOMETRIES[i], dtype, fill)
            np.testing.assert_array_equal(crop(d, fp, y, k, origin),
                                          reference(fp, y, k, origin))  # fmt: skip
