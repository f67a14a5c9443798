"""The filter kernels read their taps through a strided kernel view (issue 16).

``filter2d_naive``, ``filter2d_tiled`` and ``filter1d_tiled`` take the kernel as a
base pointer and signed element strides (``cuda/filter_common.cuh``, "kernel view")
and conjugate the taps themselves (flag bit 3), so the CUDA path of the public API
passes the flipped kernel of a convolution (``k[:, ::-1, ::-1]``), any strided user
kernel and a complex correlation's kernel without a copy. Checked here:

- the device operations per steady-state public call, counted on the stand-in CuPy
  (:func:`gpuconv._null_device.count_device_ops`): one launch and one allocation
  (the output), no kernel copy and no conjugated copy (on the main branch before
  this change a convolution copied its flipped kernel: two allocations);
- the op on the emulated kernels with strided, negative-stride, Fortran-ordered,
  zero-stride (broadcast), read-only and misaligned (copied) kernel views, with and
  without conjugation: bit-identical to the same op on the materialised kernel and
  exact against the float64 reference; a subset under ASan/UBSan (the emulator
  copies a view's memory extent, so a read outside the view is reported);
- the public API on the stand-in CuPy with the emulated kernels (the CUDA path,
  kernels passed as views): every boundary and mode, even/odd kernels, 1x1,
  kernels larger than the image, float/complex/integer/bool, ``axes=`` stacks with
  per-image kernels, Fortran-ordered, negative-stride and read-only images and
  kernels, against SciPy and NumPy; inputs never modified;
- the emulator's check of ``Launch.views``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.signal as ss

import gpuconv
from gpuconv import _gpu_filter, _plan_cache, _plan_filter
from gpuconv._null_device import count_device_ops, null_cuda
from tests._emu_helpers import EMULATED, prepared_device
from tests._filter_cases import (
    BOUNDARIES,
    MODES,
    random_values,
    ref_correlate,
    scipy_problem,
)


# ---------------------------------------------------------------------------------
# device operations per steady-state call (null device: no emulator needed)
# ---------------------------------------------------------------------------------
def _layout(a, layout):
    """``a`` (a stand-in CuPy array) in a memory layout with the same values."""
    if layout == "C":
        return a
    if layout == "F":
        return a.T.copy().T
    if layout == "reversed":  # a negative-stride view of a reversed copy
        idx = (slice(None, None, -1),) * a.ndim
        return a[idx].copy()[idx]
    raise ValueError(layout)


CALLS_2D = [
    ("convolve2d", "float32"),
    ("correlate2d", "float32"),
    ("convolve2d", "complex64"),
    ("correlate2d", "complex64"),
    ("convolve2d", "int32"),
]


@pytest.mark.parametrize("layout", ["C", "F", "reversed"])
@pytest.mark.parametrize("fn,dtype", CALLS_2D + [("convolve", "float32"),
                                                 ("correlate", "float32"),
                                                 ("correlate", "complex64")])
def test_steady_state_call_copies_no_kernel(rng, fn, dtype, layout):
    """A repeated call re-uses its plans, launches one kernel and allocates only its
    output: the flipped (convolution), conjugated (complex correlation) or strided
    kernel is read in place."""
    one_d = fn in ("convolve", "correlate")
    with null_cuda() as dev:
        cp = dev.xp
        x = cp.asarray(random_values(rng, (300,) if one_d else (40, 50), dtype))
        k = cp.asarray(random_values(rng, (7,) if one_d else (3, 4), dtype))
        k = _layout(k, layout)
        call = getattr(gpuconv, fn)
        call(x, k, mode="same")  # plans
        call(x, k, mode="same")
        info0 = _plan_cache.info()["filter2d plans"]
        n0 = dev.launches
        with count_device_ops() as ops:
            out = call(x, k, mode="same")
        info1 = _plan_cache.info()["filter2d plans"]
        assert dev.launches - n0 == 1  # the filter kernel, nothing else
        assert info1["hits"] == info0["hits"] + 1
        assert info1["misses"] == info0["misses"]
        # one allocation: the output (no copy of the kernel, no conjugated copy)
        assert len(ops.allocs) == 1, ops.allocs
        assert int(np.prod(ops.allocs[0])) == out.size


def test_device_op_counter_sees_copies():
    """The counter itself: a copy, a cast and an elementwise result are
    allocations; reshapes, slices and broadcasts are views."""
    with null_cuda() as dev:
        cp = dev.xp
        a = cp.asarray(np.ones((4, 6), np.complex64))
        with count_device_ops() as ops:
            cp.ascontiguousarray(a[:, ::-1])
            a.conj()
            a.astype(np.complex128)
            cp.empty((2, 3), np.float32)
            a.reshape(24)
            a[1:, ::2]
            cp.broadcast_to(a[:1], (3, 6))
        assert ops.allocs == [(4, 6), (4, 6), (4, 6), (2, 3)]
        assert ops.views >= 3


# ---------------------------------------------------------------------------------
# the op on the emulated kernels with kernel views
# ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dev():
    if EMULATED[-1].name == "skip":
        pytest.skip(EMULATED[-1].kwargs["reason"])
    return prepared_device(["filter2d.cu", "filter1d.cu"])


def _views(k, B):
    """``{name: view}``: arrays equal to ``k (Bk, KH, KW)`` in other layouts."""
    bk, kh, kw = k.shape
    out = {"C": k.copy()}
    out["flipped"] = k[:, ::-1, ::-1].copy()[:, ::-1, ::-1]
    out["F"] = np.asfortranarray(k)
    big = np.zeros((bk, 2 * kh + 1, 3 * kw + 2), k.dtype)
    big[:, 1::2, 2::3][:, :kh, :kw] = k
    out["strided"] = big[:, 1::2, 2::3][:, :kh, :kw]
    rev = np.zeros((bk, 2 * kh, kw + 1), k.dtype)
    rev[:, ::-2, -1:0:-1] = k
    out["reversed_strided"] = rev[:, ::-2, -1:0:-1]
    ro = k[:, ::-1, ::-1].copy()[:, ::-1, ::-1]
    ro.flags.writeable = False
    out["read_only"] = ro
    raw = np.zeros(k.nbytes + k.itemsize, np.uint8)  # one byte off an element
    mis = raw[1 : 1 + k.nbytes].view(k.dtype).reshape(k.shape)
    mis[...] = k
    out["misaligned"] = mis
    if bk == 1 and B > 1:
        out["broadcast"] = np.broadcast_to(k, (B, kh, kw))  # batch stride 0
    for name, v in out.items():
        np.testing.assert_array_equal(v[:1], k[:1], err_msg=name)
    return out


# (algorithm, dtype, (B, H, W), (Bk, KH, KW), mode, boundary)
OP_CASES = [
    ("naive", "float32", (2, 9, 11), (2, 4, 5), "same", "symm"),
    ("naive", "complex64", (1, 8, 7), (1, 3, 2), "full", "fill"),
    ("tiled", "float64", (2, 20, 24), (1, 4, 6), "same", "wrap"),  # runtime size
    ("tiled", "complex128", (1, 18, 13), (1, 3, 5), "full", "symm"),
    ("tiled", "int16", (2, 17, 19), (2, 5, 2), "valid", "fill"),
    ("tiled", "float32", (2, 20, 24), (1, 3, 3), "same", "fill"),  # cp.async
    ("tiled", "float32", (1, 20, 40), (1, 5, 5), "same", "symm"),  # register-staged
    ("tiled", "float64", (1, 21, 17), (1, 9, 9), "full", "wrap"),  # cp.async, f64
    ("filter1d", "float32", (2, 1, 300), (1, 1, 13), "same", "fill"),
    ("filter1d", "complex64", (2, 1, 100), (2, 1, 7), "full", "wrap"),
    ("filter1d", "int64", (1, 1, 90), (1, 1, 40), "valid", "symm"),
]


def _spy(dev, monkeypatch):
    seen = []
    real = dev.launch

    def launch(launch):
        seen.append(launch)
        return real(launch)

    monkeypatch.setattr(dev, "launch", launch)
    return seen


@pytest.mark.emulated
@pytest.mark.parametrize("alg,dtype,xs,ks,mode,boundary", OP_CASES)
def test_op_reads_kernel_views(dev, rng, monkeypatch, alg, dtype, xs, ks, mode,
                               boundary):  # fmt: skip
    """Every kernel view gives the result of the materialised kernel, bit for bit,
    and the exact reference; only a misaligned view is copied; conjugation by the
    flag equals correlating with the conjugated copy."""
    monkeypatch.setattr(_gpu_filter, "POISON_OUTPUTS", True)
    B, H, W = xs
    bk, kh, kw = ks
    fp = scipy_problem(H, W, kh, kw, mode, boundary, 2, dtype, B=B, Bk=bk)
    x = random_values(rng, xs, dtype, small_int=True)
    k = random_values(rng, ks, dtype, small_int=True)
    method = "direct" if alg == "filter1d" else alg
    conjs = (False, True) if np.dtype(dtype).kind == "c" else (False,)
    seen = _spy(dev, monkeypatch)
    for conj in conjs:
        dense = np.conj(k) if conj else k
        want = _gpu_filter.correlate2d(x, dense.copy(), fp, method, device=dev)
        np.testing.assert_array_equal(want, ref_correlate(x, dense, fp))
        for name, view in _views(k, B).items():
            kv = view
            if name == "broadcast":
                dense_b = np.broadcast_to(dense, view.shape)
                fpb = dataclasses.replace(fp, Bk=B)
                want_b = ref_correlate(x, dense_b, fpb)
            else:
                fpb, want_b = fp, want
            before = np.array(kv)
            del seen[:]
            got = _gpu_filter.correlate2d(x, kv, fpb, method, device=dev,
                                          conj_kernel=conj)  # fmt: skip
            np.testing.assert_array_equal(got, want_b, err_msg=f"{name} conj={conj}")
            np.testing.assert_array_equal(kv, before)
            (launch,) = seen
            kernel_name = launch.kernel
            assert kernel_name.startswith(
                {"naive": "filter2d_naive", "tiled": "filter2d_tiled",
                 "filter1d": "filter1d_tiled"}[alg])  # fmt: skip
            # the launch reads the view itself, except a misaligned one (copied)
            assert np.shares_memory(launch.args[1], kv) == (name != "misaligned")
            assert (int(launch.args[-1]) & _plan_filter.FLAG_CONJ_KERNEL) == (
                _plan_filter.FLAG_CONJ_KERNEL if conj else 0)


@pytest.mark.emulated
def test_kernel_views_under_sanitizers(rng, monkeypatch):
    """Negative-stride and strided kernel views under ASan/UBSan: the runner copies
    the view's memory extent exactly, so a tap read outside the view would be a
    heap-buffer-overflow report."""
    from gpuconv._emulate import EmulatedDevice

    if EMULATED[-1].name == "skip":
        pytest.skip(EMULATED[-1].kwargs["reason"])
    sdev = EmulatedDevice(sanitize=True)
    monkeypatch.setattr(_gpu_filter, "POISON_OUTPUTS", True)
    for alg, dtype, xs, ks, mode, boundary in (OP_CASES[0], OP_CASES[3], OP_CASES[5],
                                               OP_CASES[9]):  # fmt: skip
        B, H, W = xs
        bk, kh, kw = ks
        fp = scipy_problem(H, W, kh, kw, mode, boundary, 1, dtype, B=B, Bk=bk)
        x = random_values(rng, xs, dtype, small_int=True)
        k = random_values(rng, ks, dtype, small_int=True)
        method = "direct" if alg == "filter1d" else alg
        conj = np.dtype(dtype).kind == "c"
        want = ref_correlate(x, np.conj(k) if conj else k, fp)
        views = _views(k, B)
        for name in ("flipped", "reversed_strided"):
            got = _gpu_filter.correlate2d(x, views[name], fp, method, device=sdev,
                                          conj_kernel=conj)  # fmt: skip
            np.testing.assert_array_equal(got, want, err_msg=f"{alg} {name}")


@pytest.mark.emulated
@pytest.mark.parametrize("method", ["fft", "separable", "auto"])
@pytest.mark.parametrize("dtype", ["float64", "complex128"])
def test_materialising_paths_take_kernel_views(dev, rng, method, dtype):
    """The FFT, separable (rank-1) and 'auto' paths read a flipped, conjugated
    kernel view correctly (they materialise what they need)."""
    from tests._tol import assert_close

    fp = scipy_problem(12, 13, 5, 4, "same", "symm", 0, dtype, B=2)
    x = random_values(rng, (2, 12, 13), dtype)
    u, v = random_values(rng, (5,), dtype), random_values(rng, (4,), dtype)
    k = np.outer(u, v)[None]  # rank 1: the separable passes run
    conjs = (False, True) if np.dtype(dtype).kind == "c" else (False,)
    for conj in conjs:
        want = ref_correlate(x, np.conj(k) if conj else k, fp)
        view = _views(k, 2)["flipped"]
        n0 = len(dev.launches)
        got = _gpu_filter.correlate2d(x, view, fp, method, device=dev,
                                      conj_kernel=conj)  # fmt: skip
        assert_close(got, want, dtype=dtype, terms=20)
        if method != "auto":  # two 1-D passes, or the FFT's gather and crop
            ran = [name.split("<")[0] for _, name, *_ in dev.launches[n0:]]
            ran = [m for m in ran if m != "fft_spectrum_product"]  # (if fused)
            assert ran == {"fft": ["fft_gather", "fft_crop"],
                           "separable": ["filter2d_tiled"] * 2}[method]  # fmt: skip


def test_planner_checks_the_kernel_view():
    fp = scipy_problem(6, 6, 3, 3, "same", "fill", 0, "float32")
    x = np.zeros((1, 6, 6), np.float32)
    out = np.zeros_like(x)
    k = np.arange(9, dtype=np.float32).reshape(1, 3, 3)
    (launch,) = _plan_filter.plan_filter(fp, x, k[:, ::-1, ::-1], out, "naive")
    assert launch.views == (1,)
    assert [int(a) for a in launch.args[12:15]] == [0, -3, -1]  # ks_b, ks_r, ks_c
    (launch,) = _plan_filter.plan_filter(fp, x, np.asfortranarray(k), out, "tiled")
    assert [int(a) for a in launch.args[12:15]] == [0, 1, 3]
    raw = np.zeros(k.nbytes + 1, np.uint8)
    mis = raw[1:].view(np.float32).reshape(k.shape)
    assert not _plan_filter.kernel_view_ok(mis)
    with pytest.raises(ValueError, match="element-aligned"):
        _plan_filter.plan_filter(fp, x, mis, out, "naive")


@pytest.mark.emulated
def test_emulator_checks_launch_views(dev):
    """Only the positions a launch lists in ``views`` may be strided, and only for
    read-only parameters."""
    fp = scipy_problem(6, 6, 3, 3, "same", "fill", 0, "float32")
    x = np.zeros((1, 6, 6), np.float32)
    k = np.ones((1, 3, 3), np.float32)[:, ::-1, ::-1]
    (launch,) = _plan_filter.plan_filter(fp, x, k, np.zeros_like(x), "naive")
    dev.launch(launch)
    with pytest.raises(TypeError, match="not C-contiguous"):
        dev.launch(dataclasses.replace(launch, views=()))
    with pytest.raises(TypeError, match="read-only"):
        dev.launch(dataclasses.replace(launch, views=(1, 2)))


# ---------------------------------------------------------------------------------
# the public API's CUDA path (stand-in CuPy) on the emulated kernels
# ---------------------------------------------------------------------------------
class _EmulatedOnStandIn:
    name = "emulated"

    def __init__(self, cp, emu):
        self.xp, self._emu, self.launches = cp, emu, 0

    def launch(self, launch):
        self.launches += 1
        self._emu.launch(launch)


@pytest.fixture
def cuda_path(dev):
    """The stand-in CuPy installed, the CUDA op's launches on the emulator."""
    with null_cuda(lambda cp: _EmulatedOnStandIn(cp, dev)) as d:
        yield d


LAYOUTS = ("C", "F", "reversed", "read_only")


def _on_device(cp, a, layout):
    d = cp.asarray(a)
    if layout == "read_only":
        d = _layout(d, "reversed")
        d.flags.writeable = False
        return d
    return _layout(d, layout)


@pytest.mark.emulated
@pytest.mark.parametrize("fn", ["convolve2d", "correlate2d"])
@pytest.mark.parametrize("dtype", ["float64", "complex128", "int32", "uint8"])
def test_public_2d_api_with_kernel_views(cuda_path, rng, fn, dtype):
    cp = cuda_path.xp
    ours, theirs = getattr(gpuconv, fn), getattr(ss, fn)
    shapes = [((9, 12), (3, 4)), ((5, 6), (7, 3)), ((4, 4), (5, 6)), ((6, 7), (1, 1)),
              ((8, 8), (4, 4)), ((20, 20), (3, 3))]  # fmt: skip
    i = 0
    for (h, w), (kh, kw) in shapes:
        x = random_values(rng, (h, w), dtype, small_int=True)
        ker = random_values(rng, (kh, kw), dtype, small_int=True)
        for mode in MODES:
            if mode == "valid" and not ((h >= kh and w >= kw) or (h <= kh and w <= kw)):
                continue
            for boundary in BOUNDARIES:
                xd = _on_device(cp, x, LAYOUTS[i % 4])
                kd = _on_device(cp, ker, LAYOUTS[(i // 4 + i) % 4])
                i += 1
                x0, k0 = np.array(xd), np.array(kd)
                got = ours(xd, kd, mode, boundary, 3, method="direct")
                want = theirs(x, ker, mode, boundary, 3)
                assert got.dtype == want.dtype
                np.testing.assert_array_equal(np.asarray(got), want,
                                              err_msg=f"{mode} {boundary}")  # fmt: skip
                np.testing.assert_array_equal(np.array(xd), x0)
                np.testing.assert_array_equal(np.array(kd), k0)
    assert cuda_path.launches >= i


@pytest.mark.emulated
@pytest.mark.parametrize("dtype", ["float32", "complex64"])
def test_public_stacks_with_per_image_kernels(cuda_path, rng, dtype):
    """``axes=`` stacks, one kernel per image (Bk = B), the kernel stack a
    negative-stride and a Fortran-ordered view."""
    cp = cuda_path.xp
    x = random_values(rng, (3, 10, 2, 12), dtype, small_int=True)
    k = random_values(rng, (3, 4, 2, 3), dtype, small_int=True)
    for fn in ("convolve2d", "correlate2d"):
        for layout in ("reversed", "F"):
            xd, kd = cp.asarray(x), _layout(cp.asarray(k), layout)
            got = np.asarray(getattr(gpuconv, fn)(xd, kd, "same", "symm",
                                                  axes=(1, 3)))  # fmt: skip
            for a in range(3):
                for c in range(2):
                    want = getattr(ss, fn)(x[a, :, c], k[a, :, c], "same", "symm")
                    np.testing.assert_array_equal(got[a, :, c], want)


@pytest.mark.emulated
@pytest.mark.parametrize("dtype", ["float64", "complex128", "int64", "bool"])
def test_public_1d_api_with_kernel_views(cuda_path, rng, dtype):
    cp = cuda_path.xp
    i = 0
    for m, n in [(30, 4), (4, 30), (7, 7), (1, 5), (40, 1)]:
        if dtype == "bool":
            a = rng.integers(0, 2, m).astype(bool)
            v = rng.integers(0, 2, n).astype(bool)
        else:
            a = random_values(rng, (m,), dtype, small_int=True)
            v = random_values(rng, (n,), dtype, small_int=True)
        for fn in ("convolve", "correlate"):
            for mode in ("full", "same", "valid"):
                ad = _on_device(cp, a, LAYOUTS[i % 4])
                vd = _on_device(cp, v, LAYOUTS[(i + 1) % 4])
                i += 1
                got = getattr(gpuconv, fn)(ad, vd, mode)
                want = getattr(np, fn)(a, v, mode)
                assert got.dtype == want.dtype
                np.testing.assert_array_equal(
                    np.asarray(got), want, err_msg=f"{fn} {m} {n} {mode}"
                )
                np.testing.assert_array_equal(np.array(ad), a)
                np.testing.assert_array_equal(np.array(vd), v)


def test_fft_steady_state_reuses_the_dft_matrices(rng, cuda_path):
    """The FFT path's small-kernel spectrum (F_h @ k @ F_w) builds its DFT matrices
    once per size and device: a repeated call takes both from the cache and
    allocates nothing for them (each build was ~7 array operations). (The stand-in
    CuPy with the launches on the emulator: the path's fft_gather must run for the
    two results to be equal.)"""
    import sys

    cp = sys.modules["cupy"]
    x = cp.asarray(random_values(rng, (300, 280), "float32"))
    k = cp.asarray(random_values(rng, (9, 9), "float32"))
    first = gpuconv.convolve2d(x, k, mode="same", method="fft")
    dft_shapes = {key[3:5] for key in _gpu_filter._DFT._d}  # (rows, cols)
    assert len(dft_shapes) == 2  # F_h and F_w: the kernel's spectrum by DFT
    info0 = _plan_cache.info()["filter DFT matrices"]
    with count_device_ops() as ops:
        again = gpuconv.convolve2d(x, k, mode="same", method="fft")
    info1 = _plan_cache.info()["filter DFT matrices"]
    assert info1["hits"] == info0["hits"] + 2 and info1["misses"] == info0["misses"]
    assert not dft_shapes & set(ops.allocs), ops.allocs
    np.testing.assert_array_equal(cp.asnumpy(again), cp.asnumpy(first))


def test_fft_paths_never_read_the_inverse_transforms_input(rng, cuda_path, monkeypatch):
    """cuFFT's complex-to-real inverse may overwrite its input, and the FFT paths let
    it (``overwrite_x=True``: no copy of the product): here the stand-in's C2R
    transforms poison their input with NaN as they run, and the paths' results
    (2-D and segmented 1-D, real and complex, the 'auto' FFT with its finiteness
    check read from the spectrum) still match SciPy's/NumPy's."""
    import sys

    from gpuconv import _null_device
    from tests._tol import assert_close

    transform, poisoned = _null_device._transform, []

    def c2r_overwrites(a, out, direction, value_type, axes):
        transform(a, out, direction, value_type, axes)
        if value_type == "C2R":
            np.asarray(a)[...] = np.nan
            poisoned.append(a.shape)

    monkeypatch.setattr(_null_device, "_transform", c2r_overwrites)
    monkeypatch.setattr(_plan_filter, "fft_seconds", lambda fp: 0.0)  # auto: FFT
    cp = sys.modules["cupy"]
    for dtype in ("float32", "complex64"):
        x = random_values(rng, (40, 37), dtype)
        k = random_values(rng, (5, 6), dtype)
        for method in ("fft", "auto"):
            n = len(cuda_path._emu.launches)
            got = gpuconv.convolve2d(cp.asarray(x), cp.asarray(k), "same", "symm",
                                     method=method)  # fmt: skip
            ran = [name for _, name, *_ in cuda_path._emu.launches[n:]]
            ctype = _plan_filter.CTYPES[dtype]
            ran = [m for m in ran if not m.startswith("fft_spectrum_product")]
            assert ran == [f"fft_gather<{ctype}>", f"fft_crop<{ctype}>"]  # no fallback
            want = ss.convolve2d(x.astype(np.complex128), k, "same", "symm")
            assert_close(np.asarray(got), want, dtype, terms=30,
                         scale=float(np.abs(want).max()))  # fmt: skip
        a = random_values(rng, 5000, dtype)  # two segments of 4096 (301 taps)
        v = random_values(rng, 301, dtype)
        got = gpuconv.convolve(cp.asarray(a), cp.asarray(v), "same", method="fft")
        want = np.convolve(a.astype(np.complex128), v, "same")
        assert_close(np.asarray(got), want, dtype, terms=301,
                     scale=float(np.abs(want).max()))  # fmt: skip
    assert len(poisoned) == 3  # the real dtype's three inverses
