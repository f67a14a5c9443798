"""``fft_gather`` (cuda/fft_gather.cu), the pass in front of the FFT filter paths, on
the CPU emulation harness: against ``numpy.pad`` (an independent reference for the
boundary rules), bit for bit (a copy), in both geometries (2-D zero padding and
1-D overlap-save segments), every dtype, every boundary, extents that cut the
image, origins past its edges, more rows than grid y, NaN/inf passed through;
the planner's refusals; ASan/UBSan in both thread orders. The FFT paths' results
are tested with the filter ops (tests/test_emulated_filter*.py)."""

from __future__ import annotations

import numpy as np
import pytest

from gpuconv import _plan_filter
from gpuconv._emulate import EmulatedDevice
from gpuconv._plan_filter import (
    FFT_DTYPES,
    MAX_GRID_YZ,
    fft_gather_name,
    plan_fft_gather,
    plan_fft_pad2d,
    plan_fft_segments,
)
from tests._emu_helpers import EMULATED, prepared_device
from tests._filter_cases import Shaped, problem
from tests._filter_cases import fft_gather_reference as reference

pytestmark = EMULATED


@pytest.fixture(scope="module")
def dev():
    return prepared_device(["fft_gather.cu"])


def values(rng, shape, dtype):
    a = rng.standard_normal(shape)
    if np.dtype(dtype).kind == "c":
        a = a + 1j * rng.standard_normal(shape)
    return a.astype(dtype)


def gather(dev, src, shape, **geometry):
    dst = np.full(shape, np.nan, src.dtype)  # every element must be written
    for launch in plan_fft_gather(src, dst, **geometry):
        dev.launch(launch)
    return dst


# (B, H, W, DI, DJ, row_step, extent, origin): 2-D pads (the image at the origin;
# a window from (-pad_top, -pad_left), cut by the extent; an extent past the image;
# columns over one block: 1024 per block), 1-D segments (from before the signal,
# overlapping, a tail of zeros), one row, one column
GEOMETRIES = [
    (2, 5, 7, 9, 12, (1, 0), (5, 7), (0, 0)),
    (2, 5, 7, 11, 13, (1, 0), (9, 10), (2, 1)),
    (1, 3, 4, 10, 1100, (1, 0), (9, 1050), (3, 5)),
    (1, 6, 6, 8, 8, (1, 0), (3, 4), (-1, -2)),
    (3, 1, 50, 6, 16, (0, 11), (1, 55), (0, 3)),
    (1, 1, 5, 4, 9, (0, 3), (1, 12), (0, 4)),
    (2, 1, 3000, 3, 2049, (0, 1025), (1, 3020), (0, 20)),
    (1, 1, 1, 1, 5, (1, 0), (1, 1), (0, 0)),
]


@pytest.mark.parametrize("dtype", FFT_DTYPES)
@pytest.mark.parametrize("boundary", ["fill", "wrap", "symm"])
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=range(len(GEOMETRIES)))
def test_gather_against_numpy_pad(dev, dtype, boundary, geometry):
    B, H, W, di, dj, rs, ext, org = geometry
    rng = np.random.default_rng(hash((dtype, boundary, geometry)) % 2**32)
    src = values(rng, (B, H, W), dtype)
    keep = src.copy()
    got = gather(dev, src, (B, di, dj), row_step=rs, extent=ext, origin=org,
                 boundary=boundary)  # fmt: skip
    want = reference(src, di, dj, rs, ext, org, boundary)
    np.testing.assert_array_equal(got, want)  # a copy: exact, no NaN left
    np.testing.assert_array_equal(src, keep)  # the input is never written


def test_more_rows_than_grid_y(dev):
    """B * DI > 65535 rows: grid y strides over them."""
    src = values(np.random.default_rng(1), (2, 1, 40), "float32")
    di = MAX_GRID_YZ // 2 + 7
    got = gather(dev, src, (2, di, 3), row_step=(1, 0), extent=(1, 40),
                 origin=(0, 0), boundary="wrap")  # fmt: skip
    (launch,) = plan_fft_gather(src, got.copy(), row_step=(1, 0), extent=(1, 40),
                                origin=(0, 0), boundary="wrap")  # fmt: skip
    assert launch.grid[1] == MAX_GRID_YZ < 2 * di
    np.testing.assert_array_equal(got[:, 0], src[:, 0, :3])
    assert not got[:, 1:].any()


def test_nan_and_inf_pass_through(dev):
    src = values(np.random.default_rng(2), (1, 4, 5), "float64")
    src[0, 0, 0], src[0, 3, 4], src[0, 1, 2] = np.nan, np.inf, -np.inf
    got = gather(dev, src, (1, 8, 9), row_step=(1, 0), extent=(8, 9),
                 origin=(2, 2), boundary="symm")  # fmt: skip
    want = reference(src, 8, 9, (1, 0), (8, 9), (2, 2), "symm")
    np.testing.assert_array_equal(got, want)
    assert np.isnan(got).sum() == np.isnan(want).sum() > 1


def test_the_two_geometries_of_the_fft_paths(dev):
    """plan_fft_pad2d and plan_fft_segments: what the FFT paths launch."""
    rng = np.random.default_rng(3)
    # 2-D, 'same' 5x4 with 'wrap': the window (OH+KH-1, OW+KW-1) from (-2, -1)
    fp = problem(1, 6, 7, 1, 5, 4, 2, 1, 6, 7, "wrap", 0.0, "float32")
    x = values(rng, (1, 6, 7), "float32")
    xpad = np.full((1, 12, 12), np.nan, np.float32)
    for launch in plan_fft_pad2d(fp, x, xpad, pad=True):
        dev.launch(launch)
    want = reference(x, 12, 12, (1, 0), (10, 10), (2, 1), "wrap")
    np.testing.assert_array_equal(xpad, want)
    np.testing.assert_array_equal(want[0, :10, :10],
                                  np.pad(x[0], ((2, 2), (1, 2)), mode="wrap"))
    # pad False: the image at the origin, zeros elsewhere
    for launch in plan_fft_pad2d(fp, x, xpad, pad=False):
        dev.launch(launch)
    np.testing.assert_array_equal(xpad[0, :6, :7], x[0])
    assert not xpad[0, 6:].any() and not xpad[0, :, 7:].any()
    # 1-D segments of L = 16 starting L - KW + 1 = 12 apart, 'symm', pad_left 3
    fp = problem(2, 1, 30, 1, 1, 5, 0, 3, 1, 30, "symm", 0.0, "complex64")
    x = values(rng, (2, 1, 30), "complex64")
    segs = np.full((2, 3, 16), np.nan, np.complex64)
    for launch in plan_fft_segments(fp, x, segs):
        dev.launch(launch)
    padded = np.concatenate(
        [np.pad(x[:, 0], ((0, 0), (3, 1)), mode="symmetric"),
         np.zeros((2, 3 * 12 + 4 - 34), np.complex64)], axis=1)  # fmt: skip
    for s in range(3):
        np.testing.assert_array_equal(segs[:, s], padded[:, 12 * s : 12 * s + 16])


def test_planner_refusals():
    a = np.zeros((1, 2, 3), np.float32)
    geo = {"row_step": (1, 0), "extent": (2, 3), "origin": (0, 0), "boundary": "fill"}
    with pytest.raises(TypeError, match="fft_gather copies one of"):
        plan_fft_gather(a, np.zeros((1, 2, 3), np.float64), **geo)
    with pytest.raises(TypeError, match="fft_gather copies one of"):
        plan_fft_gather(a.astype(np.int32), np.zeros((1, 2, 3), np.int32), **geo)
    with pytest.raises(ValueError, match="C-contiguous"):
        plan_fft_gather(a, np.zeros((1, 3, 4), np.float32)[:, :2, :3], **geo)
    with pytest.raises(ValueError, match=r"src \(B, H, W\)"):
        plan_fft_gather(a, np.zeros((2, 2, 3), np.float32), **geo)
    with pytest.raises(ValueError, match="boundary must be one of"):
        plan_fft_gather(a, np.zeros((1, 2, 3), np.float32),
                        **{**geo, "boundary": "reflect"})  # fmt: skip
    assert plan_fft_gather(a, np.zeros((1, 0, 3), np.float32), **geo) == []
    (launch,) = plan_fft_gather(a, np.zeros((1, 2, 3), np.float32), **geo)
    assert launch.kernel == fft_gather_name("float32") == "fft_gather<float>"
    assert launch.source == _plan_filter.SOURCE_FFT_GATHER


def test_planner_refuses_rows_the_grid_stride_would_overflow():
    """The kernel strides over rows in int (``row += gridDim.y``): within
    MAX_GRID_YZ of 2**31 - 1 rows the last step would overflow (a negative row,
    writes before dst), so the planner refuses those row counts too."""
    geo = {"row_step": (1, 0), "extent": (1, 1), "origin": (0, 0), "boundary": "fill"}
    src = Shaped((1, 1, 1))
    ok = _plan_filter.INT32_MAX - MAX_GRID_YZ
    (launch,) = plan_fft_gather(src, Shaped((1, ok, 1)), **geo)
    assert launch.grid[1] == MAX_GRID_YZ
    for rows in (ok + 1, _plan_filter.INT32_MAX - 1, _plan_filter.INT32_MAX):
        with pytest.raises(ValueError, match="int32 limits"):
            plan_fft_gather(src, Shaped((1, rows, 1)), **geo)


@pytest.mark.parametrize("order", ["ascending", "descending"])
def test_sanitized(order):
    d = EmulatedDevice(thread_order=order)
    d.prepare(["fft_gather.cu"])
    for i in (1, 4, 6):
        B, H, W, di, dj, rs, ext, org = GEOMETRIES[i]
        for dtype, boundary in (("float32", "symm"), ("complex128", "wrap")):
            src = values(np.random.default_rng(i), (B, H, W), dtype)
            got = gather(d, src, (B, di, dj), row_step=rs, extent=ext, origin=org,
                         boundary=boundary)  # fmt: skip
            want = reference(src, di, dj, rs, ext, org, boundary)
            np.testing.assert_array_equal(got, want)


def test_random_geometries(dev):
    """Seeded random geometries (a review's fuzzing, kept small): both row steps,
    extents cutting the window or past it, origins before and far past the image
    (several periods of wrap/symm), columns over one block, every dtype and
    boundary; bit for bit against numpy.pad."""
    rng = np.random.default_rng(2026_12_05)
    for _ in range(200):
        dtype = FFT_DTYPES[int(rng.integers(len(FFT_DTYPES)))]
        boundary = ("fill", "wrap", "symm")[int(rng.integers(3))]
        B, W = int(rng.integers(1, 4)), int(rng.integers(1, 40))
        wide = rng.random() < 0.2  # over one block of 1024 columns
        dj = int(rng.integers(1, 1300 if wide else 50))
        if rng.random() < 0.5:  # 2-D pads
            H, di, rs = int(rng.integers(1, 9)), int(rng.integers(1, 20)), (1, 0)
            ext = (int(rng.integers(0, di + 4)), int(rng.integers(0, dj + 4)))
            org = (int(rng.integers(-3, 12)), int(rng.integers(-3, 40)))
        else:  # 1-D segments
            H, di, rs = 1, int(rng.integers(1, 8)), (0, int(rng.integers(1, 40)))
            ext = (1, int(rng.integers(0, di * rs[1] + dj + 4)))
            org = (0, int(rng.integers(-3, 60)))
        src = values(rng, (B, H, W), dtype)
        got = gather(dev, src, (B, di, dj), row_step=rs, extent=ext, origin=org,
                     boundary=boundary)  # fmt: skip
        want = reference(src, di, dj, rs, ext, org, boundary)
        what = f"{dtype} {boundary} {src.shape} {di} {dj} {rs} {ext} {org}"
        np.testing.assert_array_equal(got, want, err_msg=what)
