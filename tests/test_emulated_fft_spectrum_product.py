"""``fft_spectrum_product`` (cuda/fft_spectrum_product.cu), the 2-D FFT path's
product with the kernel's spectrum computed on the fly from its two DFT factors,
on the CPU emulation harness.

Kernel level: against ``spec * (a @ g)`` evaluated in complex128 by NumPy (an
independent reference), both dtypes, ranks 1 to FS_MAX_RANK, sizes at a tile -1,
+0, +1, every batch pattern of the factors (shared, per image, mixed), a shared
kernel over images split across grid z (several images per block) and grid z
striding, NaN/inf in the spectrum, the factors never written, bit-identical results
whatever the grid; the planner's refusals; ASan/UBSan in both thread orders.
Path level: the public 2-D FFT path through it (both factor orders, every
boundary, kernel stacks) against the float64 reference of the filter problem, and
its launch sequence.
"""

from __future__ import annotations

import numpy as np
import pytest

from gpuconv import _gpu_filter, _plan_filter
from gpuconv._emulate import EmulatedDevice
from gpuconv._plan_filter import (
    FS_MAX_RANK,
    FS_TU,
    FS_TV,
    MAX_GRID_YZ,
    SPECTRUM_DTYPES,
    fft_spectrum_product_name,
    plan_fft_spectrum_product,
)
from tests._emu_helpers import EMULATED, prepared_device
from tests._filter_cases import Shaped, random_values, ref_correlate, scipy_problem
from tests._tol import assert_close, assert_within_bound

pytestmark = EMULATED


@pytest.fixture(scope="module")
def dev():
    return prepared_device(["fft_spectrum_product.cu", "fft_gather.cu", "fft_crop.cu"])


def values(rng, shape, dtype):
    a = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
    return a.astype(dtype)


def product(dev, spec, a, g, scale=1.0):
    """``(spec * scale) * (a @ g)`` by the kernel (on a copy of ``spec``); the
    factors must come back unchanged."""
    out = spec.copy()
    a0, g0 = a.copy(), g.copy()
    for launch in plan_fft_spectrum_product(out, a, g, scale):
        dev.launch(launch)
    np.testing.assert_array_equal(a, a0)
    np.testing.assert_array_equal(g, g0)
    return out


def reference(spec, a, g, scale=1.0):
    return spec.astype(np.complex128) * scale * (a.astype(np.complex128) @ g.astype(
        np.complex128))  # fmt: skip


def check(got, spec, a, g, scale=1.0):
    ref = reference(spec, a, g, scale)
    R = a.shape[-1]
    assert_close(got, ref, dtype=spec.dtype, terms=R + 1,
                 scale=float(np.abs(ref).max()))  # fmt: skip


# (B, U, V, R): a tile -1/+0/+1 in each direction (FS_TU rows, FS_TV columns), one
# element, rank 1 and the largest rank, odd sizes
SHAPES = [
    (1, FS_TU - 1, FS_TV - 1, 3),
    (2, FS_TU, FS_TV, 1),
    (1, FS_TU + 1, FS_TV + 1, FS_MAX_RANK),
    (3, 1, 1, 2),
    (2, 70, 37, 15),
    (1, 5, 100, 31),
]


@pytest.mark.parametrize("dtype", SPECTRUM_DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=range(len(SHAPES)))
@pytest.mark.parametrize("batch", ["shared", "a", "g", "both"])
def test_against_numpy(dev, dtype, shape, batch):
    B, U, V, R = shape
    rng = np.random.default_rng(hash((dtype, shape, batch)) % 2**32)
    Ba = B if batch in ("a", "both") else 1
    Bg = B if batch in ("g", "both") else 1
    spec = values(rng, (B, U, V), dtype)
    a, g = values(rng, (Ba, U, R), dtype), values(rng, (Bg, R, V), dtype)
    scale = 1.0 / (U * V + 7)  # (the inverse's 1/n: not a power of two)
    check(product(dev, spec, a, g, scale), spec, a, g, scale)


def test_shared_kernel_over_many_images(dev, monkeypatch):
    """One kernel for a stack: several images per block (per > 1, a last block
    with fewer), and grid z striding over the image groups; every grid gives the
    same bits."""
    rng = np.random.default_rng(5)
    B, U, V, R = 13, 40, 33, 6
    spec = values(rng, (B, U, V), "complex64")
    a, g = values(rng, (1, U, R), "complex64"), values(rng, (1, R, V), "complex64")
    results, pers = [], set()
    for target, grid_z in ((1, MAX_GRID_YZ), (8, MAX_GRID_YZ), (10**6, 2), (8, 2)):
        monkeypatch.setattr(_plan_filter, "FS_TARGET_BLOCKS", target)
        monkeypatch.setattr(_plan_filter, "MAX_GRID_YZ", grid_z)
        (launch,) = plan_fft_spectrum_product(spec.copy(), a, g)
        per = int(launch.args[10])
        pers.add(per)
        assert launch.grid[2] == min(-(-B // per), grid_z)
        results.append(product(dev, spec, a, g))
        check(results[-1], spec, a, g)
    assert 1 in pers and max(pers) > 1  # one and several images per block
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])  # bit-identical


def test_kernel_per_image_strides_over_grid_z(dev, monkeypatch):
    """Bk = B: one image per block iteration, grid z smaller than B."""
    monkeypatch.setattr(_plan_filter, "MAX_GRID_YZ", 2)
    rng = np.random.default_rng(6)
    spec = values(rng, (5, 9, 40), "complex128")
    a, g = values(rng, (1, 9, 4), "complex128"), values(rng, (5, 4, 40), "complex128")
    (launch,) = plan_fft_spectrum_product(spec.copy(), a, g)
    assert launch.grid[2] == 2 and int(launch.args[10]) == 1
    check(product(dev, spec, a, g), spec, a, g)


def test_grid_y_strides_over_row_tiles(dev, monkeypatch):
    """More row tiles than grid y (a tall spectrum): the blocks stride over them,
    a shared kernel's tile recomputed per row tile, several images per block."""
    monkeypatch.setattr(_plan_filter, "MAX_GRID_YZ", 2)
    monkeypatch.setattr(_plan_filter, "FS_TARGET_BLOCKS", 4)
    rng = np.random.default_rng(10)
    B, U, V, R = 5, 5 * FS_TU + 3, FS_TV + 2, 3
    spec = values(rng, (B, U, V), "complex64")
    a, g = values(rng, (1, U, R), "complex64"), values(rng, (1, R, V), "complex64")
    (launch,) = plan_fft_spectrum_product(spec.copy(), a, g)
    assert launch.grid[1] == 2 and int(launch.args[10]) > 1
    check(product(dev, spec, a, g), spec, a, g)


def cshaped(shape):
    """A complex64 :class:`tests._filter_cases.Shaped`."""
    return Shaped(shape, "complex64")


def test_planner_int32_limits():
    """Rows up to INT32_MAX - FS_TU (grid y strides); beyond, a ValueError."""
    top = _plan_filter.INT32_MAX - FS_TU
    (launch,) = plan_fft_spectrum_product(cshaped((1, top, 1)), cshaped((1, top, 2)),
                                          cshaped((1, 2, 1)))  # fmt: skip
    assert launch.grid[1] == MAX_GRID_YZ
    with pytest.raises(ValueError, match="int32 limits"):
        plan_fft_spectrum_product(cshaped((1, top + 1, 1)), cshaped((1, top + 1, 2)),
                                  cshaped((1, 2, 1)))  # fmt: skip


def test_nan_and_inf_propagate(dev):
    rng = np.random.default_rng(7)
    spec = values(rng, (1, 6, 7), "complex128")
    spec[0, 1, 2] = np.nan
    spec[0, 4, 5] = complex(np.inf, 0)
    a, g = values(rng, (1, 6, 2), "complex128"), values(rng, (1, 2, 7), "complex128")
    got = product(dev, spec, a, g)
    with np.errstate(invalid="ignore"):
        ref = reference(spec, a, g)
    np.testing.assert_array_equal(np.isfinite(got), np.isfinite(ref))
    fin = np.isfinite(ref)
    assert_close(got[fin], ref[fin], dtype="complex128", terms=3,
                 scale=float(np.abs(ref[fin]).max()))  # fmt: skip


def test_deterministic(dev):
    rng = np.random.default_rng(8)
    spec = values(rng, (2, 50, 45), "complex64")
    a, g = values(rng, (2, 50, 9), "complex64"), values(rng, (1, 9, 45), "complex64")
    np.testing.assert_array_equal(product(dev, spec, a, g), product(dev, spec, a, g))


def test_planner_refusals():
    c = np.zeros((2, 4, 5), np.complex64)
    a, g = np.zeros((1, 4, 3), np.complex64), np.zeros((1, 3, 5), np.complex64)
    with pytest.raises(TypeError, match="fft_spectrum_product multiplies one of"):
        plan_fft_spectrum_product(c.real.copy(), a, g)
    with pytest.raises(TypeError, match="fft_spectrum_product multiplies one of"):
        plan_fft_spectrum_product(c, a.astype(np.complex128), g)
    with pytest.raises(ValueError, match=r"spec \(B, U, V\) \*= a"):
        plan_fft_spectrum_product(c, np.zeros((1, 4, 2), np.complex64), g)
    with pytest.raises(ValueError, match=r"spec \(B, U, V\) \*= a"):
        plan_fft_spectrum_product(c, np.zeros((3, 4, 3), np.complex64), g)
    with pytest.raises(ValueError, match="must be 3-D"):
        plan_fft_spectrum_product(c[0], a, g)
    with pytest.raises(ValueError, match="C-contiguous"):
        plan_fft_spectrum_product(np.zeros((2, 4, 10), np.complex64)[:, :, ::2], a, g)
    big = FS_MAX_RANK + 1
    with pytest.raises(ValueError, match=rf"rank R must be in 1\.\.{FS_MAX_RANK}"):
        plan_fft_spectrum_product(c, np.zeros((1, 4, big), np.complex64),
                                  np.zeros((1, big, 5), np.complex64))  # fmt: skip
    with pytest.raises(ValueError, match="rank R"):
        plan_fft_spectrum_product(c, np.zeros((1, 4, 0), np.complex64),
                                  np.zeros((1, 0, 5), np.complex64))  # fmt: skip
    assert plan_fft_spectrum_product(c[:0], a, g) == []
    (launch,) = plan_fft_spectrum_product(c, a, g)
    assert launch.kernel == fft_spectrum_product_name("complex64")
    assert launch.kernel == "fft_spectrum_product<gc_complex64>"
    assert launch.source == _plan_filter.SOURCE_FFT_SPECTRUM


@pytest.mark.parametrize("order", ["ascending", "descending"])
def test_sanitized(order, monkeypatch):
    """ASan/UBSan; the shared kernel's stack with all its images in one block."""
    monkeypatch.setattr(_plan_filter, "FS_TARGET_BLOCKS", 1)
    d = EmulatedDevice(thread_order=order)
    d.prepare(["fft_spectrum_product.cu"])
    for dtype, (B, U, V, R), (Ba, Bg) in (
        ("complex64", (2, FS_TU + 1, FS_TV + 1, FS_MAX_RANK), (1, 2)),
        ("complex128", (3, 7, 5, 2), (3, 1)),
        ("complex64", (4, 3, 40, 5), (1, 1)),
    ):
        rng = np.random.default_rng(B * U)
        spec = values(rng, (B, U, V), dtype)
        a, g = values(rng, (Ba, U, R), dtype), values(rng, (Bg, R, V), dtype)
        check(product(d, spec, a, g), spec, a, g)


# ---------------------------------------------------------------------------------
# the 2-D FFT path through it
# ---------------------------------------------------------------------------------
def kernels_since(dev, n):
    return [name.split("<")[0] for _, name, *_ in dev.launches[n:]]


@pytest.mark.parametrize("dtype", ["float32", "float64", "complex64", "complex128"])
@pytest.mark.parametrize("boundary,fill", [("fill", 0), ("fill", 2.5), ("wrap", 0),
                                           ("symm", 0)])  # fmt: skip
def test_fft_path(dev, dtype, boundary, fill):
    """Both factor orders (KH <= KW: F_h shared; KH > KW: F_w shared), one kernel
    and a kernel per image, 'same' and 'full'; the FFT path launches the gather and
    the product and nothing else of its own."""
    rng = np.random.default_rng(hash((dtype, boundary, fill)) % 2**32)
    h, w = 61, 66
    for (kh, kw), bk, mode in (((3, 7), 1, "same"), ((6, 2), 2, "full"),
                               ((1, 5), 2, "same"), ((4, 1), 1, "full")):  # fmt: skip
        fp = scipy_problem(h, w, kh, kw, mode, boundary, fill, dtype, B=2, Bk=bk)
        sh, sw = _plan_filter.fft_grid(fp)[:2]
        assert _gpu_filter.kernel_dft_cheaper(kh, kw, sh, sw, dtype[0] != "c")
        x = random_values(rng, (2, h, w), dtype)
        k = random_values(rng, (bk, kh, kw), dtype)
        x0, k0 = x.copy(), k.copy()
        n = len(dev.launches)
        out = _gpu_filter.correlate2d(x, k, fp, "fft", device=dev)
        tables = ["fft_fill_tables"] if fill else []  # (a non-zero fill's tables)
        assert kernels_since(dev, n) == ["fft_gather", "fft_spectrum_product",
                                         *tables, "fft_crop"]  # fmt: skip
        np.testing.assert_array_equal(x, x0)
        np.testing.assert_array_equal(k, k0)
        ref = ref_correlate(x, k, fp)
        assert out.shape == ref.shape and out.dtype == np.dtype(dtype)
        assert_close(out, ref, dtype=dtype, terms=kh * kw,
                     scale=float(np.abs(ref).max()))  # fmt: skip


def test_fft_path_large_kernel_takes_the_full_transform(dev):
    """A kernel side over FS_MAX_RANK on both axes: the kernel's spectrum by a
    full-size transform, no product launch."""
    rng = np.random.default_rng(9)
    kh = kw = FS_MAX_RANK + 1
    fp = scipy_problem(40, 40, kh, kw, "same", "fill", 0, "float32")
    x = random_values(rng, (1, 40, 40), "float32")
    k = random_values(rng, (1, kh, kw), "float32")
    n = len(dev.launches)
    out = _gpu_filter.correlate2d(x, k, fp, "fft", device=dev)
    assert kernels_since(dev, n) == ["fft_gather", "fft_crop"]
    ref = ref_correlate(x, k, fp)
    assert_close(out, ref, dtype="float32", terms=kh * kw,
                 scale=float(np.abs(ref).max()))  # fmt: skip


def test_spectrum_product_plan_cache(dev):
    """``_gpu_filter.spectrum_product`` replays a cached plan only for calls the
    planner would plan the same way: one array passed as both factors (ambiguous
    slots) is never cached for distinct factors, and a factor dtype or layout the
    planner refuses is refused on a cache hit too (never read as another type);
    the batch patterns of equal shapes never share a plan."""
    rng = np.random.default_rng(11)
    n = 4  # U = R = V: `a` fits both factor slots
    spec = values(rng, (1, n, n), "complex64")
    a = values(rng, (1, n, n), "complex64")
    out = spec.copy()
    _gpu_filter.spectrum_product(dev, out, a, a)
    check(out, spec, a, a)
    a2, g2 = values(rng, (1, n, n), "complex64"), values(rng, (1, n, n), "complex64")
    out = spec.copy()
    _gpu_filter.spectrum_product(dev, out, a2, g2)
    check(out, spec, a2, g2)

    spec = values(rng, (2, 9, 7), "complex64")
    a, g = values(rng, (1, 9, 3), "complex64"), values(rng, (1, 3, 7), "complex64")
    _gpu_filter.spectrum_product(dev, spec.copy(), a, g)  # (plan cached)
    with pytest.raises(TypeError, match="fft_spectrum_product multiplies one of"):
        _gpu_filter.spectrum_product(dev, spec.copy(), a.astype(np.complex128),
                                     g.astype(np.complex128))  # fmt: skip
    wide = values(rng, (1, 9, 6), "complex64")
    with pytest.raises(ValueError, match="C-contiguous"):
        _gpu_filter.spectrum_product(dev, spec.copy(), wide[:, :, ::2], g)

    for _ in range(2):  # interleaved: every pattern on its own plan
        for ba, bg in ((1, 1), (2, 1), (1, 2), (2, 2)):
            a = values(rng, (ba, 9, 3), "complex64")
            g = values(rng, (bg, 3, 7), "complex64")
            out = spec.copy()
            _gpu_filter.spectrum_product(dev, out, a, g)
            check(out, spec, a, g)


def _side(rng, tile, hi):
    """A size near a tile multiple (+-1), tiny, or anywhere below ``hi``."""
    kind = rng.integers(0, 3)
    if kind == 0:
        return int(rng.integers(1, 4))
    if kind == 1:
        return int(max(1, tile * rng.integers(1, 3) + rng.integers(-1, 2)))
    return int(rng.integers(1, hi))


def test_random_problems(dev, monkeypatch):
    """Seeded random problems (sizes around the tiles, every rank, every batch
    pattern, both dtypes): each element within 64 eps of ``|spec| (|a| @ |g|)`` of
    the complex128 product (the sum's own error scale: a wrong or missing term of
    a small element fails too), the factors unchanged, and the same bits on two
    other grids (several images per block, grid y and z striding)."""
    rng = np.random.default_rng(2912)
    for _ in range(100):
        dtype = SPECTRUM_DTYPES[rng.integers(0, 2)]
        B = int(rng.choice([1, 2, 3, 7]))
        U, V = _side(rng, FS_TU, 80), _side(rng, FS_TV, 80)
        R = int(rng.choice([1, 2, FS_MAX_RANK, rng.integers(1, FS_MAX_RANK + 1)]))
        pattern = rng.integers(0, 4)
        Ba, Bg = (B if pattern & 1 else 1), (B if pattern & 2 else 1)
        spec = values(rng, (B, U, V), dtype)
        a, g = values(rng, (Ba, U, R), dtype), values(rng, (Bg, R, V), dtype)
        got = product(dev, spec, a, g)
        c16 = np.complex128
        ref = spec.astype(c16) * (a.astype(c16) @ g.astype(c16))
        bound = np.abs(spec) * (np.abs(a).astype(float) @ np.abs(g).astype(float))
        assert_within_bound(got, ref, bound, dtype)
        for target, grid_yz in ((1, 2), (int(rng.integers(2, 40)), 3)):
            with monkeypatch.context() as m:
                m.setattr(_plan_filter, "FS_TARGET_BLOCKS", target)
                m.setattr(_plan_filter, "MAX_GRID_YZ", grid_yz)
                np.testing.assert_array_equal(product(dev, spec, a, g), got)


def test_random_fft_path(dev):
    """Seeded random 2-D FFT problems through the fused product as the CUDA
    backend calls it (kernel stacks of 1 or B, flipped and Fortran-ordered kernel
    views, complex correlation with ``conj_kernel``, both factor orders, every
    boundary, non-zero fills) against the float64 reference; a kernel side over
    FS_MAX_RANK puts the other side in the rank."""
    rng = np.random.default_rng(2913)
    orders = set()
    for _ in range(24):
        dtype = ("float32", "float64", "complex64", "complex128")[rng.integers(0, 4)]
        kh, kw = int(rng.integers(1, 9)), int(rng.integers(1, 9))
        if rng.random() < 0.2:  # one side over the largest rank
            big = FS_MAX_RANK + 1
            kh, kw = (big, kw) if rng.random() < 0.5 else (kh, big)
        h = int(rng.integers(8 * max(kh, kw), 8 * max(kh, kw) + 20))
        w = int(rng.integers(8 * max(kh, kw), 8 * max(kh, kw) + 20))
        b = int(rng.integers(1, 4))
        bk = b if rng.random() < 0.5 else 1
        mode = ("full", "same", "valid")[rng.integers(0, 3)]
        boundary = ("fill", "wrap", "symm")[rng.integers(0, 3)]
        fill = 0 if rng.random() < 0.5 else 1.5
        fp = scipy_problem(h, w, kh, kw, mode, boundary, fill, dtype, B=b, Bk=bk)
        x = random_values(rng, (b, h, w), dtype)
        k = random_values(rng, (bk, kh, kw), dtype)
        view = k[:, ::-1, ::-1] if rng.random() < 0.5 else np.asfortranarray(k)
        conj = dtype[0] == "c" and rng.random() < 0.5
        sh, sw = _plan_filter.fft_grid(fp)[:2]
        fused = _gpu_filter.kernel_dft_cheaper(kh, kw, sh, sw, dtype[0] != "c")
        n = len(dev.launches)
        out = _gpu_filter.correlate2d(x, view, fp, "fft", device=dev,
                                      conj_kernel=conj)  # fmt: skip
        assert ("fft_spectrum_product" in kernels_since(dev, n)) == fused
        orders.add((kh <= kw, fused))
        ref = ref_correlate(x, view.conj() if conj else view, fp)
        assert_close(out, ref, dtype=dtype, terms=kh * kw,
                     scale=float(np.abs(ref).max()))  # fmt: skip
    assert {(True, True), (False, True)} <= orders  # both factor orders fused


def test_fused_choice_always_plans():
    """Whenever ``kernel_dft_cheaper`` takes the fused product, the product plans
    (never a ValueError where the full-size transform would have worked): random
    shapes up to the int32 limits, the edges of the planner's limits, an empty
    kernel side (never fused: no rank)."""
    rng = np.random.default_rng(2914)
    top = _plan_filter.INT32_MAX
    cases = [(1, 1, top - FS_TU + 1, 8, True), (1, 1, 8, 2 * (top - FS_TV), True),
             (1, 1, 8, top - FS_TV + 1, False), (0, 5, 100, 100, True)]  # fmt: skip
    for _ in range(300):
        side = [int(2 ** rng.uniform(0, 31.5)) for _ in range(2)]
        kh, kw = (int(rng.choice([1, 3, FS_MAX_RANK, FS_MAX_RANK + 1, t]))
                  for t in rng.integers(1, 2**20, 2))  # fmt: skip
        cases.append((kh, kw, side[0], side[1], bool(rng.integers(0, 2))))
    for kh, kw, sh, sw, real in cases:
        if not _gpu_filter.kernel_dft_cheaper(kh, kw, sh, sw, real):
            continue
        assert min(kh, kw) >= 1
        nv = sw // 2 + 1 if real else sw
        R = min(kh, kw)
        for B in (1, _plan_filter.INT32_MAX):
            (launch,) = plan_fft_spectrum_product(
                cshaped((B, sh, nv)), cshaped((1, sh, R)), cshaped((B, R, nv)))
            assert launch.grid[1] <= MAX_GRID_YZ and launch.grid[2] <= MAX_GRID_YZ


def test_tiny_float32_kernel_keeps_its_precision(dev):
    """The inverse's 1/n applied to the image's spectrum before the product, not to
    the kernel: a float32 kernel of taps near 1e-37 (below 1.2e-38 * n once
    scaled) keeps float32 precision relative to the largest output (scaling the
    kernel first gave ~4e-5 on the emulator), and a large image times a kernel of
    large sum does not overflow before the end."""
    rng = np.random.default_rng(13)
    h, w, kh, kw = 150, 260, 15, 15
    fp = scipy_problem(h, w, kh, kw, "same", "fill", 0, "float32")
    sh, sw = _plan_filter.fft_grid(fp)[:2]
    assert _gpu_filter.kernel_dft_cheaper(kh, kw, sh, sw, True)
    x = random_values(rng, (1, h, w), "float32")
    for k_scale, x_scale in ((1e-37, 1.0), (1e3, 1e30 / (sh * sw) ** 0.5)):
        k = (random_values(rng, (1, kh, kw), "float64") * k_scale).astype(np.float32)
        xs = (x * np.float32(x_scale)).astype(np.float32)
        out = _gpu_filter.correlate2d(xs, k, fp, "fft", device=dev)
        ref = ref_correlate(xs.astype(np.float64), k.astype(np.float64), fp)
        assert np.isfinite(out).all()
        err = float(np.abs(out - ref).max() / np.abs(ref).max())
        assert err < 2e-6, (k_scale, x_scale, err)
