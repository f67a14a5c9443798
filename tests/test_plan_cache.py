"""The plan caches (``gpuconv._plan_cache``) never serve a plan for another problem.

The public API runs with its CUDA ops on the CPU emulation harness (as in
``test_emulated_api.py``), so that the validated-call cache of the API and the launch
plans of the CUDA ops are both exercised. Calls that differ from a base call in one
argument each (shape, dtype, strides, buffer alignment, mode, boundary, fill value,
axes, method, stride, padding, dilation, groups, padding mode, algorithm, bias,
needs) are interleaved with the base call, each at least twice (so each is replayed
from the cache after other problems were planned), and every result is compared
with the NumPy backend's. Also: a bad argument is refused exactly as before after
a valid call of the same shapes was cached; values-dependent decisions (an FFT only
over finite data) are taken per call; contiguous inputs reach the kernels without a
copy; the caches stay bounded.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import gpuconv
from gpuconv import _gpu_conv, _gpu_filter, _plan_cache
from tests._emu_helpers import EMULATED, prepared_device, route_numpy_to
from tests._tol import assert_close

pytestmark = EMULATED


@pytest.fixture(scope="module")
def dev():
    return prepared_device(["conv2d_forward.cu", "conv2d_backward_input.cu",
                            "conv2d_backward_weight.cu", "conv2d_pad.cu",
                            "filter2d.cu"])


@pytest.fixture
def router(dev, monkeypatch):
    r = route_numpy_to(dev, monkeypatch)
    monkeypatch.setattr(_gpu_conv, "POISON_OUTPUTS", True)
    monkeypatch.setattr(_gpu_filter, "POISON_OUTPUTS", True)
    assert _plan_cache.enabled()
    return r


def _interleave(base, variants):
    """base, v1, base, v2, ..., then every variant again (replayed)."""
    order = []
    for v in variants:
        order += [base, v]
    return order + list(variants) + [base]


def _on_device(router, fn, *args, **kw):
    """``fn(*args, **kw)``, asserting that it reached the emulated CUDA ops (else
    the comparison with :meth:`Router.numpy` would compare NumPy with itself)."""
    n0 = len(router.calls)
    got = fn(*args, **kw)
    assert len(router.calls) > n0, "the call did not reach the emulated CUDA ops"
    return got


def _check(router, fn, args, kw, dtype, terms):
    got = _on_device(router, fn, *args, **kw)
    want = router.numpy(fn, *args, **kw)
    if isinstance(got, tuple):
        for g, w in zip(got, want, strict=True):
            assert (g is None) == (w is None)
            if g is not None:
                assert g.shape == w.shape and g.dtype == w.dtype
                assert_close(g, w, dtype, terms=terms, scale=np.abs(w).max())
    else:
        assert got.shape == want.shape and got.dtype == want.dtype
        assert_close(got, want, dtype, terms=terms, scale=np.abs(want).max())


# ---------------------------------------------------------------------------------
# conv2d and its gradients


def _conv_calls(rng):
    def arr(*shape, dtype=np.float32):
        return rng.standard_normal(shape).astype(dtype)

    x, w, b = arr(2, 4, 9, 10), arr(6, 4, 3, 3), arr(6)
    xf = np.asfortranarray(x)
    xs = arr(2, 4, 9, 20)[..., ::2]  # strided view, same shape as x
    base = ("base", (x, w, b), {"padding": 1})
    variants = [
        ("shape", (arr(2, 4, 11, 10), w, b), {"padding": 1}),
        ("dtype", (x.astype(np.float64), w.astype(np.float64), b.astype(np.float64)),
         {"padding": 1}),
        ("fortran", (xf, w, b), {"padding": 1}),
        ("strided", (xs, w, b), {"padding": 1}),
        ("no_bias", (x, w, None), {"padding": 1}),
        ("stride", (x, w, b), {"padding": 1, "stride": 2}),
        ("padding_tuple", (x, w, b), {"padding": (1, 2)}),
        ("padding_same", (x, w, b), {"padding": "same"}),
        ("padding_asym", (x, w, b), {"padding": (1, 0, 2, 1)}),
        ("dilation", (x, w, b), {"padding": 1, "dilation": 2}),
        ("groups", (x, arr(6, 2, 3, 3), b), {"padding": 1, "groups": 2}),
        ("reflect", (x, w, b), {"padding": 1, "padding_mode": "reflect"}),
        ("circular", (x, w, b), {"padding": 1, "padding_mode": "circular"}),
        ("naive", (x, w, b), {"padding": 1, "algorithm": "naive"}),
        ("tiled", (x, w, b), {"padding": 1, "algorithm": "tiled"}),
        ("regblock", (x, w, b), {"padding": 1, "algorithm": "tiled_regblock"}),
        ("unbatched", (x[0], w, b), {"padding": 1}),
        ("float16", (x.astype(np.float16), w.astype(np.float16), None),
         {"padding": 1}),
        ("complex", (x.astype(np.complex64), w.astype(np.complex64), None),
         {"padding": 1}),
    ]
    return base, variants


def test_conv2d_interleaved_calls_each_get_their_own_plan(router, dev):
    base, variants = _conv_calls(np.random.default_rng(0))
    for _name, args, kw in _interleave(base, variants):
        dt = np.result_type(*[a for a in args if a is not None])
        _check(router, gpuconv.conv2d, args, kw, dt, terms=4 * 9)
    info = _plan_cache.info()
    assert info["conv2d calls"]["hits"] >= len(variants) + 1
    assert info["conv2d plans"]["hits"] >= len(variants)


def test_conv2d_backward_interleaved_calls(router, dev):
    rng = np.random.default_rng(1)
    base, variants = _conv_calls(rng)
    calls = []
    for name, (x, w, b), kw in [base, *variants]:
        y = router.numpy(gpuconv.conv2d, x, w, b, **kw)
        gy = rng.standard_normal(y.shape).astype(y.dtype)
        calls.append((name, (gy, x, w), kw))
    x, w = base[1][0], base[1][1]
    gy0 = calls[0][1][0]
    calls += [
        ("needs_input", (gy0, x, w), {"padding": 1, "needs": ("input",)}),
        ("needs_weight", (gy0, x, w), {"padding": 1, "needs": ["weight"]}),
        ("needs_bias", (gy0, x, w), {"padding": 1, "needs": "bias"}),
        ("needs_wb", (gy0, x, w), {"padding": 1, "needs": ("weight", "bias")}),
    ]
    for _name, args, kw in _interleave(calls[0], calls[1:]):
        dt = np.result_type(*args)
        _check(router, gpuconv.conv2d_backward, args, kw, dt, terms=2 * 9 * 10 * 6)


def test_contiguous_inputs_reach_the_kernels_without_a_copy(router, dev):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 4, 9, 10)).astype(np.float32)
    w = rng.standard_normal((6, 4, 3, 3)).astype(np.float32)
    for _ in range(2):  # planned, then replayed
        n0 = len(dev.launches)
        seen = []
        real = dev.launch

        def spy(launch, seen=seen, real=real):
            seen.append(launch)
            return real(launch)

        dev.launch = spy
        try:
            gpuconv.conv2d(x, w, padding=1)
        finally:
            del dev.launch
        assert len(dev.launches) > n0
        assert any(a is x for a in seen[0].args) and any(a is w for a in seen[0].args)


def test_bad_arguments_are_refused_after_a_cached_call(router, dev):
    x = np.ones((1, 2, 5, 5), np.float32)
    w = np.ones((3, 2, 3, 3), np.float32)
    gpuconv.conv2d(x, w, stride=1)
    gpuconv.conv2d(x, w, stride=1)
    for bad, exc in ((True, TypeError), (1.0, TypeError), (np.float64(1), TypeError),
                     (0, ValueError)):
        with pytest.raises(exc):
            gpuconv.conv2d(x, w, stride=bad)
    with pytest.raises(ValueError, match="algorithm must be one of"):
        gpuconv.conv2d(x, w, algorithm="fast")
    with pytest.raises(ValueError, match="needs entries"):
        gpuconv.conv2d_backward(np.ones((1, 3, 3, 3), np.float32), x, w,
                                needs=("input", "inputs"))
    a = np.ones((6, 6))
    gpuconv.convolve2d(a, np.ones((3, 3)), boundary="fill", fillvalue=0)
    with pytest.raises(ValueError, match="fillvalue"):
        gpuconv.convolve2d(a, np.ones((3, 3)), boundary="fill", fillvalue=[1, 2])
    with pytest.raises(ValueError, match="Acceptable mode flags"):
        gpuconv.convolve2d(a, np.ones((3, 3)), mode=True)


# ---------------------------------------------------------------------------------
# filters


def _filter_calls(rng):
    def arr(*shape, dtype=np.float32):
        return rng.standard_normal(shape).astype(dtype)

    a, k = arr(20, 24), arr(3, 3)
    base = ("base", gpuconv.convolve2d, (a, k), {"mode": "same"})
    offset = arr(20 * 24 + 1)[1:].reshape(20, 24)  # 4 bytes off the allocation
    variants = [
        ("shape", gpuconv.convolve2d, (arr(21, 24), k), {"mode": "same"}),
        ("kernel", gpuconv.convolve2d, (a, arr(5, 5)), {"mode": "same"}),
        ("even_kernel", gpuconv.convolve2d, (a, arr(4, 2)), {"mode": "same"}),
        ("dtype", gpuconv.convolve2d, (a.astype(np.float64), k.astype(np.float64)),
         {"mode": "same"}),
        ("int", gpuconv.convolve2d, ((a * 4).astype(np.int32),
                                     (k * 4).astype(np.int32)), {"mode": "same"}),
        ("complex", gpuconv.convolve2d, (a.astype(np.complex64), k), {"mode": "same"}),
        ("transposed", gpuconv.convolve2d, (arr(24, 20).T, k), {"mode": "same"}),
        ("misaligned", gpuconv.convolve2d, (offset, k), {"mode": "same"}),
        ("full", gpuconv.convolve2d, (a, k), {"mode": "full"}),
        ("valid", gpuconv.convolve2d, (a, k), {"mode": "valid"}),
        ("valid_swap", gpuconv.convolve2d, (k, a), {"mode": "valid"}),
        ("wrap", gpuconv.convolve2d, (a, k), {"mode": "same", "boundary": "wrap"}),
        ("symm", gpuconv.convolve2d, (a, k), {"mode": "same", "boundary": "symm"}),
        ("fill_1", gpuconv.convolve2d, (a, k), {"mode": "same", "fillvalue": 1}),
        ("fill_2.5", gpuconv.convolve2d, (a, k), {"mode": "same", "fillvalue": 2.5}),
        ("fill_-0.0", gpuconv.convolve2d, (a, k), {"mode": "full", "fillvalue": -0.0}),
        ("fill_np", gpuconv.convolve2d, (a, k),
         {"mode": "same", "fillvalue": np.float32(3)}),
        ("correlate", gpuconv.correlate2d, (a, k), {"mode": "same"}),
        ("direct", gpuconv.convolve2d, (a, k), {"mode": "same", "method": "direct"}),
        ("fft", gpuconv.convolve2d, (a, k), {"mode": "same", "method": "fft"}),
        ("axes", gpuconv.convolve2d, (arr(2, 20, 3, 24), k),
         {"mode": "same", "axes": (1, 3)}),
        ("axes_stack", gpuconv.convolve2d, (arr(3, 20, 24), arr(3, 3, 3)),
         {"mode": "same", "axes": (-2, -1)}),
        ("convolve_1d", gpuconv.convolve, (arr(30), arr(4)), {"mode": "same"}),
        ("correlate_1d", gpuconv.correlate, (arr(30), arr(4)), {"mode": "full"}),
    ]
    return base, variants


def _vector_flags_match_alignment(dev):
    """Replayed tiled filter launches use 128-bit accesses only on buffers that
    are 16-byte aligned (flags: bit 0 the image, bit 1 the output)."""
    real = dev.launch

    def spy(launch):
        if launch.kernel.startswith("filter2d_tiled"):
            in1, out, flags = launch.args[0], launch.args[2], int(launch.args[-1])
            if flags & 1:
                assert in1.__array_interface__["data"][0] % 16 == 0
            if flags & 2:
                assert out.__array_interface__["data"][0] % 16 == 0
        return real(launch)

    return spy


def test_filters_interleaved_calls_each_get_their_own_plan(router, dev, monkeypatch):
    base, variants = _filter_calls(np.random.default_rng(3))
    monkeypatch.setattr(dev, "launch", _vector_flags_match_alignment(dev))
    for name, fn, args, kw in _interleave(base, variants):
        got = _on_device(router, fn, *args, **kw)
        want = router.numpy(fn, *args, **kw)
        assert got.shape == want.shape and got.dtype == want.dtype, name
        if np.dtype(got.dtype).kind in "iu":
            np.testing.assert_array_equal(got, want, err_msg=name)
        else:
            assert_close(got, want, terms=25, scale=np.abs(want).max())
    assert _plan_cache.info()["filter2d calls"]["hits"] >= len(variants) + 1
    assert _plan_cache.info()["filter2d plans"]["hits"] >= len(variants)


def _filter1d_calls(rng):
    def arr(n, dtype=np.float32):
        return rng.standard_normal(n).astype(dtype)

    a, v = arr(30), arr(4)
    base = ("base", gpuconv.convolve, (a, v), {"mode": "same"})
    variants = [
        ("length", gpuconv.convolve, (arr(31), v), {"mode": "same"}),
        ("kernel_length", gpuconv.convolve, (a, arr(5)), {"mode": "same"}),
        ("dtype", gpuconv.convolve, (a.astype(np.float64), v.astype(np.float64)),
         {"mode": "same"}),
        ("int", gpuconv.convolve, ((a * 4).astype(np.int32), (v * 4).astype(np.int32)),
         {"mode": "same"}),
        ("complex", gpuconv.convolve, (a.astype(np.complex64), v), {"mode": "same"}),
        ("full", gpuconv.convolve, (a, v), {"mode": "full"}),
        ("valid", gpuconv.convolve, (a, v), {"mode": "valid"}),
        ("mode_int", gpuconv.convolve, (a, v), {"mode": 0}),
        ("mode_np_int", gpuconv.convolve, (a, v), {"mode": np.int64(2)}),
        ("swapped", gpuconv.convolve, (v, a), {"mode": "same"}),
        ("strided", gpuconv.convolve, (arr(60)[::2], v), {"mode": "same"}),
        ("reversed", gpuconv.convolve, (a[::-1], v[::-1]), {"mode": "same"}),
        ("list", gpuconv.convolve, (a.tolist(), v), {"mode": "same"}),
        ("scalar", gpuconv.convolve, (np.float32(2.0), v), {"mode": "same"}),
        ("direct", gpuconv.convolve, (a, v), {"mode": "same", "method": "direct"}),
        ("fft", gpuconv.convolve, (a, v), {"mode": "same", "method": "fft"}),
        ("correlate", gpuconv.correlate, (a, v), {"mode": "same"}),
        ("correlate_valid", gpuconv.correlate, (a, v), {}),
        ("correlate_swapped", gpuconv.correlate, (v, a), {"mode": "same"}),
        ("correlate_complex", gpuconv.correlate,
         (a.astype(np.complex64), (v + 1j * v).astype(np.complex64)),
         {"mode": "full"}),
        ("correlate_swapped_complex", gpuconv.correlate,
         (v.astype(np.complex128), (a - 2j * a)), {"mode": "valid"}),
    ]
    return base, variants


def test_filters1d_interleaved_calls_each_get_their_own_plan(router, dev):
    """gpuconv.convolve/correlate: one argument differs from the base call each."""
    base, variants = _filter1d_calls(np.random.default_rng(7))
    for name, fn, args, kw in _interleave(base, variants):
        got = _on_device(router, fn, *args, **kw)
        want = router.numpy(fn, *args, **kw)
        assert got.shape == want.shape and got.dtype == want.dtype, name
        if np.dtype(got.dtype).kind in "iu":
            np.testing.assert_array_equal(got, want, err_msg=name)
        else:
            assert_close(got, want, terms=30, scale=np.abs(want).max())
        # and NumPy's own result (an independent reference)
        ref = getattr(np, fn.__name__)(
            *args, **{k: x for k, x in kw.items() if k != "method"})
        assert got.shape == ref.shape and got.dtype == ref.dtype, name
        assert_close(got, ref, terms=30, scale=np.abs(ref).max())
    info = _plan_cache.info()["filter1d calls"]
    assert info["hits"] >= len(variants) + 1
    # one entry per call but 'strided' and 'reversed' (the base's validated call:
    # strides are the launch plan's business) and 'mode_np_int' (never cached)
    assert info["size"] == len(variants) + 1 - 3


def _raised(fn, *args, **kw):
    try:
        out = fn(*args, **kw)
    except Exception as e:
        return type(e), str(e)
    return "ok", out.shape, out.dtype  # convolve takes a scalar


def test_filters1d_bad_arguments_are_refused_after_a_cached_call(router, dev):
    """Each bad call raises what it raises with the caches off, also after a valid
    call of the same arrays was cached."""
    a, v = np.ones(8), np.ones(3)
    ai, vi = a.astype(np.int64), v.astype(np.int64)
    bad = [((a, v), {"mode": m}) for m in ("bad", 3, -1, True, 1.0, np.int64(7))]
    bad += [((a, v), {"mode": "same", "method": "fast"}),
            ((ai, vi), {"method": "fft"}),
            ((np.float64(1), v), {}), ((a, np.ones((2, 3))), {}),
            ((a, np.ones(0)), {}), ((a.astype(object), v), {})]
    for fn in (gpuconv.convolve, gpuconv.correlate):
        old = _plan_cache.set_enabled(False)
        try:
            want = [_raised(fn, *args, **kw) for args, kw in bad]
        finally:
            _plan_cache.set_enabled(old)
        for mode in ("same", 1, "valid", 0):
            fn(a, v, mode=mode)
            fn(ai, vi, mode=mode, method="direct")
        fn(np.ones(1), v)
        got = [_raised(fn, *args, **kw) for args, kw in bad]
        assert got == want
        assert sum(w[0] == "ok" for w in want) == (fn is gpuconv.convolve)


def test_fft_is_refused_per_call_for_non_finite_data(router, dev, monkeypatch):
    """The FFT choice of method='auto' depends on the values (finite or not): a
    cached problem must still check them on every call."""
    from gpuconv import _plan_filter

    monkeypatch.setattr(_plan_filter, "fft_seconds", lambda fp: 0.0)  # FFT wins
    rng = np.random.default_rng(4)
    a = rng.standard_normal((16, 16)).astype(np.float32)
    k = rng.standard_normal((5, 5)).astype(np.float32)
    bad = a.copy()
    bad[3, 4] = np.nan
    for x in (a, bad, a, bad):
        got = gpuconv.convolve2d(x, k, mode="same")
        want = router.numpy(gpuconv.convolve2d, x, k, mode="same", method="direct")
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        ok = ~np.isnan(want)
        assert_close(got[ok], want[ok], terms=25, scale=np.abs(want[ok]).max())


# ---------------------------------------------------------------------------------
# the cache itself


def test_arg_keys_tell_apart_what_the_checks_tell_apart():
    k = _plan_cache.arg_key
    assert k(1) != k(1.0) and k(1) != k(True) and k(0.0) != k(-0.0)
    assert k(1j) != k(complex(1, -0.0)) or k(1j) == k(1j)
    assert k((1, 2)) == (1, 2)
    for v in ([1, 2], (1, True), (1, 2.0), np.int64(1), np.float32(0), object()):
        with pytest.raises(_plan_cache.Uncacheable):
            k(v)


def test_lru_is_bounded_and_can_be_switched_off(monkeypatch):
    c = _plan_cache.LRU("test", maxsize=3)
    try:
        for i in range(5):
            c.put(i, str(i))
        assert len(c) == 3 and c.get(0) is None and c.get(4) == "4"
        c.get(2)
        c.put(5, "5")  # evicts 3, the least recently used
        assert c.get(3) is None and c.get(2) == "2"
        c.put([1], "unhashable")  # never stored
        assert c.get([1]) is None and len(c) == 3
        monkeypatch.setattr(_plan_cache, "_ENABLED", False)
        assert c.get(2) is None
    finally:
        _plan_cache._CACHES.remove(c)


def test_uncached_results_are_the_cached_ones(router, dev):
    """Bit for bit: caching changes only the host path, not the launches."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 4, 9, 10)).astype(np.float32)
    w = rng.standard_normal((6, 4, 3, 3)).astype(np.float32)
    gy = rng.standard_normal((2, 6, 9, 10)).astype(np.float32)
    a = rng.standard_normal((20, 24))

    def run():
        return (gpuconv.conv2d(x, w, padding=1, padding_mode="reflect"),
                *gpuconv.conv2d_backward(gy, x, w, padding=1),
                gpuconv.convolve2d(a, a[:3, :3], boundary="symm"))

    cached = [run() for _ in range(2)][-1]
    old = _plan_cache.set_enabled(False)
    try:
        uncached = run()
    finally:
        _plan_cache.set_enabled(old)
    for c, u in zip(cached, uncached, strict=True):
        np.testing.assert_array_equal(c, u)


def test_grad_helpers_interleaved(router, dev):
    """torch-style helpers: the shape argument is part of the key."""
    rng = np.random.default_rng(6)
    w = rng.standard_normal((6, 4, 3, 3)).astype(np.float32)
    gy = rng.standard_normal((2, 6, 9, 10)).astype(np.float32)
    x1 = rng.standard_normal((2, 4, 9, 10)).astype(np.float32)
    x2 = rng.standard_normal((2, 4, 10, 11)).astype(np.float32)  # same gy, 'valid'
    calls = [
        (gpuconv.conv2d_grad_input, ((2, 4, 9, 10), w, gy), {"padding": 1}),
        (gpuconv.conv2d_grad_input, ((2, 4, 10, 11), w, gy),
         {"padding": (1, 0, 1, 0)}),
        (gpuconv.conv2d_grad_input, ((2, 4, 9, 10), w, gy),
         {"padding": 1, "algorithm": "naive"}),
        (gpuconv.conv2d_grad_input, ((2, 4, 11, 12), w, gy), {}),
        (gpuconv.conv2d_grad_weight, (x1, (6, 4, 3, 3), gy), {"padding": 1}),
        (gpuconv.conv2d_grad_weight, (x2, (6, 4, 2, 2), gy), {}),
        (gpuconv.conv2d_grad_weight, (x1, (6, 2, 3, 3), gy),
         {"padding": 1, "groups": 2}),
    ]
    for fn, args, kw in calls + calls[::-1] + calls:
        _check(router, fn, args, kw, np.float32, terms=2 * 9 * 10 * 6)
    assert _plan_cache.info()["conv2d calls"]["hits"] >= len(calls)
    with pytest.raises(TypeError, match="input_shape must be a sequence of ints"):
        gpuconv.conv2d_grad_input((2, 4, 9.0, 10), w, gy, padding=1)


def test_cupy_device_bind_launches_with_the_replayed_arguments(monkeypatch):
    """``CupyDevice.bind`` (the GPU's replay path, no GPU needed here): the kernel
    handle is looked up once, each call launches it with the plan's geometry and
    the new buffers in their slots."""
    from gpuconv import _kernels
    from gpuconv._launch import Launch

    calls, lookups = [], []

    def fake_get_function(source, kernel):
        lookups.append((source, kernel))
        return lambda grid, block, args, shared_mem: calls.append(
            (grid, block, args, shared_mem))

    monkeypatch.setattr(_kernels, "get_function", fake_get_function)
    dev = object.__new__(_kernels.CupyDevice)  # no CuPy needed for bind
    a, b, out = np.zeros(4), np.ones(4), np.empty(4)
    launch = Launch("filter2d.cu", "filter2d_naive<float>", (2, 1, 1), (32, 1, 1), 16,
                    (a, b, out, np.int32(4)))
    plan = _plan_cache.LaunchPlan(dev, [launch], 3, buffers=(a, b, out))
    assert plan.reusable and plan.steps[0][1][:3] == (None, None, None)
    a2, b2, out2 = np.zeros(4), np.ones(4), np.empty(4)
    plan.run((a2, b2, out2))
    plan.run((a, b, out))
    assert lookups == [("filter2d.cu", "filter2d_naive<float>")]
    (g, blk, args, smem), (_, _, args_again, _) = calls
    assert (g, blk, smem) == ((2, 1, 1), (32, 1, 1), 16)
    assert args[0] is a2 and args[1] is b2 and args[2] is out2
    assert args[3] == np.int32(4) and type(args[3]) is np.int32
    assert args_again[0] is a and args_again[2] is out
    # one object in two roles: slots are ambiguous, the plan is not reusable
    assert not _plan_cache.LaunchPlan(dev, [launch], 3, buffers=(a, a, out)).reusable


def test_default_cuda_device_is_one_object():
    """The CUDA ops' default device is part of their plan keys: a new object per
    call made every filter call miss its plan on the H200 (~100 µs of planning per
    call, 2026-12-04). Both families share one CupyDevice (CuPy imports without a
    GPU; nothing is launched here)."""
    try:
        import cupy  # noqa: F401
    except ImportError:
        if os.environ.get("GPUCONV_CI"):  # CI installs CuPy: there it must run
            raise
        pytest.skip("CuPy is not installed (extra 'cuda')")
    from gpuconv import _kernels

    a, b = _gpu_filter._default_device(), _gpu_filter._default_device()
    assert a is b is _gpu_conv.default_device() is _kernels.cupy_device()
    assert isinstance(a, _kernels.CupyDevice)
