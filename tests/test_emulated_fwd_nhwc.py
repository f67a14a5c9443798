"""The FP32 forward pass and stride-1 input gradient on NHWC operands
(``conv2d_forward_nhwc`` of ``cuda/conv2d_forward.cu`` after the unrounded
``conv2d_nhwc_pack_input`` / ``conv2d_nhwc_pack_weight`` launches; ``'auto'`` where
``fwd_nhwc_preferred``, the op-level ``algorithm='nhwc'`` wherever it applies),
emulated on the CPU with its cp.async copies landing only at their wait.

Held to the float32 product bound of ``tests/_tol.py`` against the float64 NumPy
backend (its own summation order: slab by slab, taps then blocks of 16 channels,
then the splits in order and the bias), exact on small integers, bit-identical on a
rerun; both tile widths (64 and 128 output channels), channel counts off the slab
(a zero chunk past C/groups), rows past M, split-K forced, groups, dilation,
asymmetric and negative (cropping) padding of the input gradient, padding modes,
the bias; where it does not apply (C/groups or K/groups not a multiple of 4, a
strided input gradient, float64) ``'nhwc'`` runs what ``'auto'`` runs; an ASan/UBSan
subset in both thread orders.
"""

from __future__ import annotations

import numpy as np
import pytest

import gpuconv
from gpuconv import _gpu_conv, _plan_conv
from gpuconv._emulate import EmulatedDevice
from tests._cuda_conv_cases import problem, random_inputs
from tests._emu_helpers import EMULATED, prepared_device
from tests._tol import assert_products_within

pytestmark = [*EMULATED, pytest.mark.usefixtures("poisoned_conv_outputs")]

SOURCES = ("conv2d_forward.cu", "conv2d_backward_input.cu", "conv2d_mma.cu",
           "conv2d_pad.cu", "convert.cu")

CASES = [
    # M = 3*9*7 = 189 pixels: a second, partial row tile; C = 20: a slab of 16
    # channels and one of 4 (three zero chunks); K = 72 > 64: the 128-wide tile
    ("tails", (3, 20, 9, 7), (72, 20, 3, 3), {"padding": 1}),
    # 64-wide tile, asymmetric padding, dilation
    ("dilated", (2, 8, 7, 9), (12, 8, 3, 2), {"padding": (2, 0, 1, 1),
                                               "dilation": (2, 1)}),
    ("groups", (1, 16, 6, 5), (24, 8, 3, 3), {"groups": 2, "padding": 1}),
    ("kernel_gt_input", (1, 4, 3, 2), (4, 4, 5, 4), {"padding": (2, 2)}),
    # pads beyond the kernel: the input gradient's problem crops gy (its padding
    # (-2, 0, 2, 0), nhwc_problem)
    ("crop", (2, 8, 6, 5), (12, 8, 2, 3), {"padding": (3, 1, 0, 2)}),
    ("one_by_one", (2, 12, 5, 4), (8, 12, 1, 1), {}),
    ("reflect", (2, 16, 5, 6), (12, 16, 3, 3), {"padding": 1,
                                                "padding_mode": "reflect"}),
    # forward only: the stride (the input gradient then runs what 'auto' runs)
    ("strided", (2, 8, 9, 8), (16, 8, 3, 3), {"padding": 1, "stride": 2}),
    # C/groups = K/groups = 3: neither pass applies
    ("fallback", (2, 3, 8, 8), (3, 3, 3, 3), {"padding": 1}),
]
IDS = [c[0] for c in CASES]
PASSES = ("forward", "backward_input")


@pytest.fixture(scope="module")
def dev():
    return prepared_device(SOURCES)


def _inputs(case, seed, integer=False, dtype=np.float32):
    _, xs, ws, kw = case
    p = problem(xs, ws, dtype, kw)
    x, w, b, gy = random_inputs(np.random.default_rng(seed), p, dtype, integer=integer)
    return p, kw, x, w, b, gy


def _run(pass_name, p, x, w, b, gy, dev, algorithm="nhwc"):
    n0 = len(dev.launches)
    if pass_name == "forward":
        got = _gpu_conv.conv2d_forward(x, w, b, p, algorithm, device=dev)
    else:
        got = _gpu_conv.conv2d_backward_input(gy, w, p, algorithm, device=dev)
    return got, [k for _, k, *_ in dev.launches[n0:]]


def _ran_nhwc(launched):
    return any(k.startswith("conv2d_forward_nhwc<float, ") for k in launched)


def _applies(p, pass_name):
    p0 = _plan_conv.padded_problem(p) if _plan_conv.needs_padding_copy(p) else p
    return _plan_conv.fwd_nhwc_applies(p0, pass_name)


def _wide(pass_name, p, x, w, b, gy, kw, absolute=False):
    f = (lambda a: np.abs(a.astype(np.float64))) if absolute else (
        lambda a: a.astype(np.float64))
    if pass_name == "forward":
        return gpuconv.conv2d(f(x), f(w), f(b), backend="numpy", **kw)
    return gpuconv.conv2d_grad_input(p.x_shape, f(w), f(gy), backend="numpy", **kw)


def _terms(pass_name, p):
    if pass_name == "forward":
        return p.Cg * p.KH * p.KW
    return p.Kg * p.KH * p.KW


def _check(pass_name, p, kw, x, w, b, gy, got):
    assert_products_within(got, _wide(pass_name, p, x, w, b, gy, kw),
                           _wide(pass_name, p, x, w, b, gy, kw, absolute=True),
                           _terms(pass_name, p))


@pytest.mark.parametrize("pass_name", PASSES)
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_within_the_product_bound(case, pass_name, dev):
    p, kw, x, w, b, gy = _inputs(case, 5)
    got, launched = _run(pass_name, p, x, w, b, gy, dev)
    assert _ran_nhwc(launched) == _applies(p, pass_name), launched
    assert not np.isnan(got).any()
    _check(pass_name, p, kw, x, w, b, gy, got)
    again, _ = _run(pass_name, p, x, w, b, gy, dev)
    np.testing.assert_array_equal(again.view(np.uint32), got.view(np.uint32))
    p, kw, xi, wi, bi, gyi = _inputs(case, 7, integer=True)
    exact, _ = _run(pass_name, p, xi, wi, bi, gyi, dev)
    np.testing.assert_array_equal(exact, _wide(pass_name, p, xi, wi, bi, gyi, kw))


def test_the_grid_is_not_vacuous():
    hits = {(c[0], s): _applies(_inputs(c, 0)[0], s) for c in CASES for s in PASSES}
    assert sum(hits.values()) == 2 * len(CASES) - 3
    assert not hits[("fallback", "forward")]
    assert not hits[("strided", "backward_input")]
    widths = set()
    for c in CASES:
        for s in PASSES:
            if hits[(c[0], s)]:
                q = _plan_conv.nhwc_problem(_inputs(c, 0)[0], s)
                widths.add(64 if q.Kg <= 64 else 128)
    assert widths == {64, 128}


@pytest.mark.parametrize("pass_name", PASSES)
@pytest.mark.parametrize("case_id", ["tails", "groups"])
def test_split_k(case_id, pass_name, dev, monkeypatch):
    """Many splits (forced), added in order with the bias by split_reduce."""
    monkeypatch.setattr(_plan_conv, "split_count", lambda work, *a: work)
    p, kw, x, w, b, gy = _inputs(CASES[IDS.index(case_id)], 11)
    got, launched = _run(pass_name, p, x, w, b, gy, dev)
    assert "conv2d_forward_split_reduce<float>" in launched, launched
    _check(pass_name, p, kw, x, w, b, gy, got)
    p, kw, xi, wi, bi, gyi = _inputs(CASES[IDS.index(case_id)], 13, integer=True)
    exact, _ = _run(pass_name, p, xi, wi, bi, gyi, dev)
    np.testing.assert_array_equal(exact, _wide(pass_name, p, xi, wi, bi, gyi, kw))


def test_float64_and_auto_fall_back(dev, monkeypatch):
    p, kw, x, w, b, gy = _inputs(CASES[0], 17, dtype=np.float64)
    got, launched = _run("forward", p, x, w, b, gy, dev)
    assert not _ran_nhwc(launched)
    auto, _ = _run("forward", p, x, w, b, gy, dev, algorithm="auto")
    np.testing.assert_array_equal(got, auto)
    # 'auto' takes it from FWD_NHWC_MIN_MACS and FWD_NHWC_MIN_COLS on (lowered here:
    # the case is small)
    p, kw, x, w, b, gy = _inputs(CASES[0], 17)
    _, launched = _run("forward", p, x, w, b, gy, dev, algorithm="auto")
    assert not _ran_nhwc(launched)
    monkeypatch.setattr(_plan_conv, "FWD_NHWC_MIN_MACS", 1)
    monkeypatch.setattr(_plan_conv, "FWD_NHWC_MIN_COLS", 1)
    fresh = prepared_device(SOURCES)  # the plans are kept per device
    got, launched = _run("forward", p, x, w, b, gy, fresh, algorithm="auto")
    assert _ran_nhwc(launched)
    forced, _ = _run("forward", p, x, w, b, gy, dev)
    np.testing.assert_array_equal(got, forced)


def test_tf32_operands_rounded_before_the_pack(dev):
    """precision='tf32' on the FP32 kernels: the operands are rounded (convert.cu)
    and then packed unrounded: the same bits as 'nhwc' on pre-rounded data."""
    import dataclasses

    from gpuconv._precision import round_tf32

    p, kw, x, w, b, gy = _inputs(CASES[0], 19)
    t = dataclasses.replace(p, precision="tf32")
    for pass_name in PASSES:
        got, launched = _run(pass_name, t, x, w, b, gy, dev)
        assert "convert_round_tf32" in "".join(launched) and _ran_nhwc(launched)
        want, _ = _run(pass_name, p, round_tf32(x), round_tf32(w), b, round_tf32(gy),
                       dev)
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("order", ["ascending", "descending"])
def test_sanitized_subset(order):
    d = EmulatedDevice(thread_order=order)
    for case_id, pass_name in (("tails", "forward"), ("dilated", "backward_input"),
                               ("reflect", "backward_input"),
                               ("kernel_gt_input", "forward")):
        p, kw, x, w, b, gy = _inputs(CASES[IDS.index(case_id)], 23)
        got, launched = _run(pass_name, p, x, w, b, gy, d)
        assert _ran_nhwc(launched)
        _check(pass_name, p, kw, x, w, b, gy, got)


def test_nan_and_inf_propagate_like_numpy(dev):
    """NaN/inf in x (forward) and in gy (input gradient) at a corner, a border and
    the interior reach exactly the outputs the NumPy backend puts them in."""
    p, kw, x, w, b, gy = _inputs(CASES[IDS.index("tails")], 29)
    x[0, 0, 0, 0] = np.nan
    x[1, 17, 8, -1] = np.inf
    x[2, 3, 4, 3] = -np.inf
    gy[0, 0, 0, 0] = np.nan
    gy[1, 70, -1, 2] = np.inf
    gy[2, 5, 4, 3] = -np.inf
    for pass_name in PASSES:
        got, launched = _run(pass_name, p, x, w, b, gy, dev)
        assert _ran_nhwc(launched)
        want = _wide(pass_name, p, x, w, b, gy, kw)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_array_equal(np.isposinf(got), np.isposinf(want))
        np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want))
        assert np.isnan(want).any() and np.isinf(want).any()


@pytest.mark.parametrize("layout", ["F", "strided", "negative"])
def test_public_api_in_any_layout(layout, monkeypatch):
    """The public calls (routed to the emulated kernels, the NHWC floors lowered
    so that 'auto' takes all three NHWC kernels on a small layer) give the same bits
    for inputs in any layout, read-only too, and leave them unchanged."""
    from tests._cuda_conv_cases import layouts
    from tests._emu_helpers import route_numpy_to

    d = prepared_device(SOURCES + ("conv2d_backward_weight.cu",))
    router = route_numpy_to(d, monkeypatch)
    monkeypatch.setattr(_plan_conv, "FWD_NHWC_MIN_MACS", 1)
    monkeypatch.setattr(_plan_conv, "FWD_NHWC_MIN_COLS", 1)
    monkeypatch.setattr(_plan_conv, "WGRAD_NHWC_MIN_MACS", 1)
    p, kw, x, w, b, gy = _inputs(CASES[IDS.index("tails")], 31)
    n0 = len(d.launches)
    want_y = gpuconv.conv2d(x, w, b, **kw)
    want = gpuconv.conv2d_backward(gy, x, w, needs=("input", "weight", "bias"), **kw)
    launched = [k for _, k, *_ in d.launches[n0:]]
    assert _ran_nhwc(launched) and any(
        k.startswith("conv2d_backward_weight_nhwc<float, ") for k in launched)
    lx, lw, lb, lgy = (layouts(a, layout) for a in (x, w, b, gy))
    before = [a.copy() for a in (lx, lw, lb, lgy)]
    for a in (lx, lw, lb, lgy):
        a.flags.writeable = False
    np.testing.assert_array_equal(gpuconv.conv2d(lx, lw, lb, **kw), want_y)
    got = gpuconv.conv2d_backward(lgy, lx, lw, needs=("input", "weight", "bias"), **kw)
    for name in ("gx", "gw", "gb"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name))
    for a, kept in zip((lx, lw, lb, lgy), before, strict=True):
        np.testing.assert_array_equal(a, kept)
    assert "conv2d_backward_weight" in router.calls
