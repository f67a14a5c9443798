"""The stand-in CuPy's FFTs (``gpuconv._null_device``): ``cupy.fft`` and
``cupyx.scipy.fft`` follow CuPy's code path (``cupy/fft/_fft.py``) in what they
allocate and copy, with NumPy's values, and ``count_device_ops`` reports the
steps and the bytes they move (a proxy of the device memory traffic).

References: ``numpy.fft`` for the values (the tolerance table's FFT rule: relative
to the largest output), CuPy's source for the dtypes, copies and signatures, and
hand-computed byte counts.
"""

from __future__ import annotations

import numpy as np
import pytest

from gpuconv._null_device import DeviceArray, count_device_ops, make_cupy, make_cupyx
from tests._tol import assert_close

cp = make_cupy()
cpx = make_cupyx()["cupyx.scipy.fft"]
MODULES = {"cupy.fft": cp.fft, "cupyx.scipy.fft": cpx}

# (function, keyword arguments, input shape); inverse real transforms get a
# Hermitian-length input like any complex array (NumPy ignores the same parts)
CASES = [
    ("fft", {}, (17,)),
    ("fft", {"n": 24}, (3, 17)),  # padded, batched
    ("fft", {"n": 9, "axis": 0}, (12, 5)),  # cropped, not the last axis
    ("ifft", {"norm": "ortho"}, (4, 10)),
    ("ifft", {"n": 16, "axis": -2, "norm": "forward"}, (5, 6, 3)),
    ("rfft", {}, (2, 16)),
    ("rfft", {"n": 21}, (16,)),
    ("rfft", {"n": 10, "axis": 0}, (13, 4)),
    ("irfft", {}, (3, 9)),
    ("irfft", {"n": 15}, (9,)),  # odd output: input cropped to 8
    ("irfft", {"n": 30, "axis": 0}, (9, 2)),  # input padded to 16
    ("fft2", {}, (6, 10)),
    ("fft2", {"s": (8, 7)}, (3, 6, 10)),  # batched, padded and cropped
    ("fft2", {"axes": (0, 2)}, (4, 3, 5)),  # not adjacent: the 1-D path
    ("ifft2", {"s": (5, 12), "axes": (-1, -2)}, (6, 10)),
    ("rfft2", {}, (2, 8, 9)),
    ("rfft2", {"s": (12, 16)}, (2, 8, 9)),
    ("rfft2", {"axes": (0, 1)}, (6, 10, 3)),  # batch along the last axis
    ("irfft2", {}, (2, 8, 5)),
    ("irfft2", {"s": (8, 11)}, (2, 8, 5)),
    ("fftn", {}, (4, 5, 6)),
    ("fftn", {"s": (3, 8), "axes": (1, 2)}, (2, 4, 5)),
    ("ifftn", {"axes": (0, 1)}, (4, 5, 2)),
    ("rfftn", {}, (4, 6, 5)),
    ("rfftn", {"s": (6, 6, 8)}, (4, 6, 5)),
    ("irfftn", {}, (3, 4, 5)),
    ("irfftn", {"s": (4, 6), "axes": (0, 2)}, (3, 4, 5)),  # not adjacent
]


def _input(rng, shape, dtype):
    x = rng.standard_normal(shape)
    if np.dtype(dtype).kind == "c":
        x = x + 1j * rng.standard_normal(shape)
    return x.astype(dtype)


# every case in single and double precision, real and complex (a real forward
# transform of complex data is a cast that drops the imaginary part: not here)
VALUE_CASES = [
    (name, kwargs, shape, dtype)
    for name, kwargs, shape in CASES
    for dtype in ("float32", "float64", "complex64", "complex128")
    if not (name.startswith("rfft") and dtype.startswith("complex"))
]


@pytest.mark.parametrize("module", list(MODULES))
@pytest.mark.parametrize("name,kwargs,shape,dtype", VALUE_CASES, ids=str)
def test_values_and_dtypes_are_numpys_and_cupys(module, name, kwargs, shape, dtype):
    rng = np.random.default_rng(len(name) * 100 + len(shape))
    x = _input(rng, shape, dtype)
    got = getattr(MODULES[module], name)(cp.asarray(x), **kwargs)
    if "s" in kwargs and "axes" not in kwargs:  # NumPy 2's deprecation: explicit
        kwargs = {**kwargs, "axes": tuple(range(-len(kwargs["s"]), 0))}
    ref = getattr(np.fft, name)(x.astype(np.complex128 if "complex" in dtype
                                         else np.float64), **kwargs)
    assert isinstance(got, DeviceArray)
    assert got.shape == ref.shape
    single = dtype in ("float32", "complex64")
    # CuPy's _output_dtype: single precision stays single; a C2R output is real
    want = {(True, True): np.float32, (True, False): np.complex64,
            (False, True): np.float64, (False, False): np.complex128}
    assert got.dtype == want[single, name.startswith("irfft")]
    assert_close(got, ref, got.dtype, scale=float(np.abs(ref).max()))


@pytest.mark.parametrize(
    "name,dtype,want",
    [("fft", np.int16, np.complex128), ("fft", np.float16, np.complex64),
     ("rfft", np.int64, np.complex128), ("rfft", np.float16, np.complex64),
     ("irfft", np.int32, np.float64), ("irfft", np.float32, np.float32),
     ("irfft", np.float16, np.float16),  # _compat_caster: result_type(f2, 1.0)
     ("fft2", np.bool_, np.complex128), ("rfft2", np.uint8, np.complex128),
     ("irfft2", np.float16, np.float32), ("irfftn", np.float64, np.float64)],
)
def test_other_input_dtypes_are_cast_as_cupy_casts(name, dtype, want):
    x = cp.asarray(np.arange(12).reshape(3, 4).astype(dtype))
    with count_device_ops() as ops:
        got = getattr(cp.fft, name)(x)
    assert got.dtype == want
    assert ops.passes[0][0] == "astype"  # the cast is a device pass of its own
    ref = getattr(np.fft, name)(np.asarray(x).astype(np.float64))
    assert_close(got, ref, want, scale=float(np.abs(ref).max()))


def _labels(ops):
    return [label for label, _ in ops.passes]


def test_a_view_is_copied_before_a_1d_transform():
    """``_exec_fft`` copies an input with a base (a slice, even a contiguous one,
    a reshape, a strided view) or a non-contiguous one; a base-less C-contiguous
    real input is transformed as it is."""
    x = cp.asarray(np.ones((6, 16), np.float32))
    for view in (x[1:], x[:, ::2], x.reshape(96)):
        with count_device_ops() as ops:
            cp.fft.rfft(view)
        assert _labels(ops) == ["copy", "R2C 1-D"], ops.passes
        assert ops.passes[0][1] == 2 * view.nbytes
    with count_device_ops() as ops:
        cp.fft.rfft(x)
    assert _labels(ops) == ["R2C 1-D"]
    assert ops.allocs == [(6, 9)]  # the output only


def test_c2r_input_copy_and_overwrite_x():
    """CuPy keeps a C2R transform's input by copying it, unless ``overwrite_x``
    (``cupyx.scipy.fft`` only); the inverse's ``norm='backward'`` is a pass."""
    x = cp.asarray(np.ones((4, 9), np.complex64))
    with count_device_ops() as ops:
        cp.fft.irfft(x)
    assert _labels(ops) == ["c2r-copy", "C2R 1-D", "norm"]
    with count_device_ops() as ops:
        cpx.irfft(x, overwrite_x=True)
    assert _labels(ops) == ["C2R 1-D", "norm"]
    with count_device_ops() as ops:
        cpx.irfft(x, overwrite_x=True, norm="forward")  # no scaling of the inverse
    assert _labels(ops) == ["C2R 1-D"]
    assert ops.allocs == [(4, 16)]
    with count_device_ops() as ops:
        cpx.irfft(x[1:], overwrite_x=True)  # a view is copied all the same
    assert _labels(ops) == ["copy", "C2R 1-D", "norm"]
    with count_device_ops() as ops:  # the n-D plan: contiguity, not the base
        cpx.irfft2(x.reshape(2, 2, 9), overwrite_x=True)
    assert _labels(ops) == ["C2R 2-D", "norm"]
    with count_device_ops() as ops:
        cp.fft.irfft2(x.reshape(2, 2, 9))
    assert _labels(ops) == ["c2r-copy", "C2R 2-D", "norm"]


def test_c2c_overwrite_x_transforms_in_place():
    x = cp.asarray(np.arange(8.0).astype(np.complex128))
    ref = np.fft.fft(np.asarray(x))
    with count_device_ops() as ops:
        y = cpx.fft(x, overwrite_x=True)
    assert ops.allocs == [] and _labels(ops) == ["C2C 1-D"]
    assert np.shares_memory(y, x)  # CuPy's result is the input's memory
    assert_close(y, ref, np.complex128, scale=float(np.abs(ref).max()))


def test_a_convolution_without_hidden_passes():
    """What a caller can avoid: a base-less contiguous input at the transform size
    (no pad, no copy), ``overwrite_x=True`` on the C2R (no input copy), the
    forward transform unscaled (``norm='backward'``) and the inverse unscaled
    (``norm='forward'``; the 1/n folded elsewhere): one pass per plan. Scaling the
    forward transform (``norm='forward'``) costs a pass of its own."""
    x = cp.asarray(np.ones((2, 8, 10), np.float32))
    with count_device_ops() as ops:
        spec = cpx.rfft2(x)
        y = cpx.irfft2(spec, s=(8, 10), overwrite_x=True, norm="forward")
    assert _labels(ops) == ["R2C 2-D", "C2R 2-D"]
    assert ops.allocs == [(2, 8, 6), (2, 8, 10)]
    assert_close(y, 80 * np.asarray(x), np.float32)  # unscaled: n * x
    with count_device_ops() as ops:
        cpx.rfft2(x, norm="forward")
    assert _labels(ops) == ["R2C 2-D", "norm"]


def test_padding_is_a_zeros_and_a_copy_per_padded_axis():
    """``_cook_shape``: each padded axis allocates zeros and copies the data in; a
    cropped axis is a view (then copied by the 1-D path, made contiguous by the n-D
    path)."""
    x = cp.asarray(np.ones((2, 8, 9), np.float32))
    with count_device_ops() as ops:
        cp.fft.rfft2(x, s=(12, 16))
    assert _labels(ops) == ["pad", "pad", "R2C 2-D"]
    assert ops.allocs == [(2, 12, 9), (2, 12, 16), (2, 12, 9)]
    with count_device_ops() as ops:
        cp.fft.rfft2(x, s=(4, 9))
    assert _labels(ops) == ["contiguous", "R2C 2-D"]
    with count_device_ops() as ops:
        cp.fft.rfft(x, n=5)
    assert _labels(ops) == ["copy", "R2C 1-D"]


def test_which_plan_cupy_picks():
    """``_default_fft_func`` (n-D plans enabled): adjacent axes including the
    first or last use one n-D plan; other axes, 1-D inputs and F-ordered real
    transforms go one axis at a time, each off the last axis swapped and copied."""
    x = cp.asarray(np.ones((4, 5, 6), np.complex64))
    with count_device_ops() as ops:
        cp.fft.fftn(x, axes=(0, 1))
    assert _labels(ops) == ["C2C 2-D"]
    with count_device_ops() as ops:
        cp.fft.fftn(x, axes=(0, 2))
    assert _labels(ops) == ["copy", "C2C 1-D", "copy", "C2C 1-D"]
    f = cp.asarray(np.asfortranarray(np.ones((6, 5), np.float64)))
    with count_device_ops() as ops:
        got = cp.fft.rfft2(f)
    assert _labels(ops) == ["copy", "R2C 1-D", "copy", "C2C 1-D"]
    assert_close(got, np.fft.rfft2(np.asarray(f)), np.complex128, scale=30.0)


def test_signatures_are_cupys():
    x = cp.asarray(np.ones(8, np.float32))
    with pytest.raises(TypeError):
        cp.fft.rfft(x, workers=2)  # SciPy's, not CuPy's
    with pytest.raises(TypeError):
        cp.fft.irfft(x, overwrite_x=True)  # cupyx.scipy.fft only
    with pytest.raises(TypeError):
        cpx.rfft(x, workers=2)
    with pytest.raises(TypeError):
        cpx.rfft2(x.reshape(2, 4), None, (-2, -1), None, False, None)  # plan: kw only
    with pytest.raises(TypeError, match="must be a cupy.ndarray"):
        cp.fft.rfft(np.ones(8))
    with pytest.raises(TypeError, match="must be a cupy.ndarray"):
        cpx.fft2(np.ones((2, 2)))
    with pytest.raises(NotImplementedError, match="plan=None"):
        cpx.fft(x, plan=object())
    with pytest.raises(ValueError, match="Invalid norm value"):
        cp.fft.fft(x, norm="none")
    with pytest.raises(ValueError, match="Invalid number of FFT data points"):
        cp.fft.fft(cp.asarray(np.ones(0, np.complex64)))
    with pytest.raises(RuntimeError, match="CUFFT_INVALID_SIZE"):  # a plan of size 0
        cp.fft.irfft(cp.asarray(np.ones(1, np.complex64)))
    assert cpx.fftn(x, 4).shape == (4,)  # cupyx takes a scalar s
    assert cp.fft.fftfreq(4).tolist() == np.fft.fftfreq(4).tolist()  # NumPy's


def test_traffic_counter_by_hand():
    """``rfft(x, n=8)`` of a float32 (4, 6) array, then ``irfft`` of the result,
    then elementwise operations and a copy, in bytes."""
    x = cp.asarray(np.ones((4, 6), np.float32))  # 96 B
    with count_device_ops() as ops:
        y = cp.fft.rfft(x, n=8)
    # pad: zeros (4, 8) float32 written (128) + 96 read + 96 written = 320;
    # R2C: 128 read + (4, 5) complex64 written (160) = 288; no scaling forward
    assert ops.passes == [("pad", 320), ("R2C 1-D", 288)]
    assert ops.allocs == [(4, 8), (4, 5)] and ops.alloc_bytes == 288
    assert ops.elementwise == [] and ops.written_bytes == 0
    assert ops.fft_bytes == ops.bytes_moved == 608
    with count_device_ops() as ops:
        z = cp.fft.irfft(y, n=8)  # (4, 8) float32: 128 B
        w = z + 1  # 128 read, 128 written
        w *= z  # in place: 256 read, 128 written
        w[:, :2] = 0  # a scalar into (4, 2): 32 written
        c = w.copy()  # another allocation: 128 written (its read not seen)
    # c2r-copy 2 * 160; C2R 160 read + 128 written; norm 2 * 128 (its in-place
    # division is the step's, not an elementwise pass)
    assert ops.passes == [("c2r-copy", 320), ("C2R 1-D", 288), ("norm", 256)]
    assert ops.elementwise == [("add", 256), ("multiply", 384), ("setitem", 32)]
    assert ops.written_bytes == c.nbytes == 128
    assert ops.bytes_moved == 320 + 288 + 256 + 256 + 384 + 32 + 128
    assert ops.allocs == [(4, 5), (4, 8), (4, 8), (4, 8)]  # copy, out, w, c
    assert_close(z, np.ones((4, 8)) * (np.arange(8) < 6), np.float32)
    assert_close(c, np.where(np.arange(8) < 2, 0, (z + 1) * z), np.float32)


def test_fft_traffic_proxy_script_quick(tmp_path, capsys):
    """``bench/fft_traffic_proxy.py --quick``: one row per FFT-path call with its
    FFT steps and bytes, JSON rows, and the stand-in gone after."""
    import importlib.util
    import json
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "bench" / "fft_traffic_proxy.py"
    spec = importlib.util.spec_from_file_location("_test_fft_traffic_proxy", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "rows.json"
    assert mod.main(["--quick", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    rows = json.loads(out.read_text())["rows"]
    assert [r["op"] for r in rows] == ["convolve2d", "convolve2d", "convolve"]
    for r in rows:
        assert r["case"] in text
        assert r["fft_steps"] == len(r["passes"]) > 0  # the FFT path ran
        assert r["bytes_moved"] == (r["fft_bytes"] + r["elementwise_bytes"]
                                    + r["other_bytes"] + r["kernel_bytes"]) > 0
        assert r["kernel_bytes"] >= r["xy_bytes"] / 2  # (the gather reads x)
        assert r["fft_bytes"] == sum(n for _, n in r["passes"])
    assert getattr(sys.modules.get("cupy"), "__version__", None) != "0+dry-run"


def test_empty_counts_as_an_allocation():
    """The stand-in's ``empty``/``empty_like`` are device arrays and count as
    allocations (uninitialised, as CuPy's: the emulated dry run's kernels must
    write every element they own)."""
    with count_device_ops() as ops:
        a = cp.empty((3, 4), np.float32)
        b = cp.empty_like(a, dtype=np.complex64)
    assert isinstance(a, DeviceArray) and isinstance(b, DeviceArray)
    assert b.dtype == np.complex64
    assert ops.allocs == [(3, 4), (3, 4)] and ops.written_bytes == 48 + 96


@pytest.mark.parametrize("dtype", ["float32", "complex64"])
def test_gpuconvs_fft_paths_have_no_hidden_passes(dtype):
    """gpuconv's FFT paths on the stand-in CuPy (null device: the launches are
    counted, not run): the transforms' only device steps are the transforms
    themselves (no CuPy pad of the image, no copy of a view, no C2R input copy, no
    normalisation pass; the 1-D kernel's own zero pad is the one pad left), between
    our own launches: fft_gather before; in 2-D the product with the kernel's
    spectrum is one fft_spectrum_product launch (no spectrum-sized array operation:
    the spectrum is never written) and fft_crop copies the window out after the
    inverse (no CuPy copy either; with a fill value's correction). What the docs'
    traffic tables rest on."""
    import gpuconv
    from gpuconv._null_device import NullDevice, null_cuda

    class Named(NullDevice):  # the launches' kernel names, too
        def __init__(self, xp):
            super().__init__(xp)
            self.kernels = []

        def launch(self, launch):
            super().launch(launch)
            self.kernels.append(launch.kernel.split("<")[0])

    real = dtype == "float32"
    fwd, inv = ("R2C", "C2R") if real else ("C2C", "C2C")
    # (null device: the gather does not run, the transforms read whatever the
    # uninitialised memory holds)
    with null_cuda(Named) as dev, np.errstate(all="ignore"):
        sp = dev.xp
        rng = np.random.default_rng(3)
        x = sp.asarray(rng.standard_normal((300, 280)).astype(dtype))
        k = sp.asarray(rng.standard_normal((9, 9)).astype(dtype))
        s = sp.asarray(rng.standard_normal(20000).astype(dtype))
        v = sp.asarray(rng.standard_normal(301).astype(dtype))
        two_d = ["fft_gather", "fft_spectrum_product", "fft_crop"]
        for call, want, ours in (
            (lambda: gpuconv.convolve2d(x, k, "same", method="fft"),
             [f"{fwd} 2-D", f"{inv} 2-D"], two_d),
            (lambda: gpuconv.convolve2d(x, k, "same", "symm", method="fft"),
             [f"{fwd} 2-D", f"{inv} 2-D"], two_d),
            (lambda: gpuconv.convolve2d(x, k, "same", "fill", 1.5, method="fft"),
             [f"{fwd} 2-D", f"{inv} 2-D"], two_d),
            (lambda: gpuconv.convolve(s, v, "same", method="fft"),
             [f"{fwd} 1-D", "pad", f"{fwd} 1-D", f"{inv} 1-D"], ["fft_gather"]),
        ):  # fmt: skip
            call()  # (plans made)
            n = len(dev.kernels)
            with count_device_ops() as ops:
                call()
            assert _labels(ops) == want, ops.passes
            assert dev.kernels[n:] == ours
            if ours == two_d:  # no array operation anywhere near the spectrum's size
                spectrum = 4 * x.size  # (bytes of half the complex spectrum, at least)
                largest = max(b for _, b in ops.elementwise)
                assert largest < spectrum / 4, ops.elementwise
