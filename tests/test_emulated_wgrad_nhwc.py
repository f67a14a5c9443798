"""The FP32 weight gradient on NHWC operands (op-level ``algorithm='nhwc'``:
``conv2d_backward_weight_nhwc`` of ``cuda/conv2d_backward_weight.cu`` after two
unrounded ``conv2d_nhwc_pack_input`` launches), emulated on the CPU with its
cp.async copies landing only at their wait.

Held to the float32 product bound of ``tests/_tol.py`` against the float64 NumPy
backend (its own summation order: pixels in increasing order within a split, splits
added in order), exact on small integers, bit-identical on a rerun; split-K forced;
slabs of 16 pixels crossing image boundaries; groups, stride, dilation, padding
modes; the bias gradient apart; where the channel counts do not allow it (C/groups
or K/groups not a multiple of 4, float64) ``'nhwc'`` runs what ``'auto'`` runs; an
ASan/UBSan subset in both thread orders.
"""

from __future__ import annotations

import numpy as np
import pytest

from gpuconv import _gpu_conv, _plan_conv
from gpuconv._emulate import EmulatedDevice
from tests._cuda_conv_cases import run_wgrad, wgrad_inputs, wide_wgrad
from tests._emu_helpers import EMULATED, prepared_device
from tests._tol import assert_products_within

pytestmark = [*EMULATED, pytest.mark.usefixtures("poisoned_conv_outputs")]

SOURCES = ("conv2d_backward_weight.cu", "conv2d_mma.cu", "conv2d_pad.cu",
           "convert.cu", "conv2d_forward.cu", "conv2d_backward_input.cu")

CASES = [
    # N*OH*OW = 189: the slabs of 16 pixels cross images, a tail slab
    ("tails", (3, 64, 9, 7), (96, 64, 3, 3), {"padding": 1}),
    ("strided", (2, 32, 7, 9), (20, 32, 3, 3), {"padding": 1, "stride": (2, 1)}),
    ("groups_dilated", (1, 8, 6, 5), (8, 4, 3, 2),
     {"groups": 2, "dilation": 2, "padding": (1, 0, 2, 1)}),
    ("kernel_gt_input", (1, 4, 3, 2), (4, 4, 5, 4), {"padding": (2, 2)}),
    ("one_by_one", (2, 12, 5, 4), (8, 12, 1, 1), {}),
    ("reflect", (2, 16, 5, 6), (12, 16, 3, 3), {"padding": 1,
                                                "padding_mode": "reflect"}),
    # K/groups = 48: the 64-row tile (tails: 128 rows, the others 32)
    ("bm64", (2, 8, 6, 7), (48, 8, 3, 3), {"padding": 1}),
    # taps dy = dx = -4 and 4 never meet a 3 x 4 image (offset 0, always zero)
    ("far_taps", (1, 4, 3, 4), (4, 4, 3, 3), {"padding": 4, "dilation": 4}),
    # K/groups = 3 and C/groups = 3: the fallback to 'auto'
    ("fallback", (2, 3, 8, 8), (3, 3, 3, 3), {"padding": 1}),
]
IDS = [c[0] for c in CASES]


@pytest.fixture(scope="module")
def dev():
    return prepared_device(SOURCES)


_inputs = wgrad_inputs
_wide = wide_wgrad


def _run(p, x, gy, dev, with_bias=False, algorithm="nhwc"):
    return run_wgrad(p, x, gy, dev, algorithm, with_bias)


def _ran_nhwc(launched):
    return any(k.startswith("conv2d_backward_weight_nhwc<float, ") for k in launched)


def _applies(p):
    p0 = _plan_conv.padded_problem(p) if _plan_conv.needs_padding_copy(p) else p
    return _plan_conv.wgrad_nhwc_applies(p0)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_within_the_product_bound(case, dev):
    p, kw, x, gy = _inputs(case, 5)
    gw, _, launched = _run(p, x, gy, dev)
    assert _ran_nhwc(launched) == _applies(p), launched
    assert not np.isnan(gw).any()
    assert_products_within(gw, _wide(x, p.w_shape, gy, kw),
                           _wide(x, p.w_shape, gy, kw, absolute=True),
                           p.N * p.OH * p.OW)
    again, _, _ = _run(p, x, gy, dev)
    np.testing.assert_array_equal(again.view(np.uint32), gw.view(np.uint32))
    p, kw, xi, gyi = _inputs(case, 7, integer=True)
    exact, _, _ = _run(p, xi, gyi, dev)
    np.testing.assert_array_equal(exact, _wide(xi, p.w_shape, gyi, kw))


def test_the_grid_is_not_vacuous():
    hits = [_applies(_inputs(c, 0)[0]) for c in CASES]
    assert sum(hits) == len(CASES) - 1 and not hits[-1]
    tiles = {_plan_conv.wgrad_nhwc_bm(_inputs(c, 0)[0]) for c in CASES[:-1]}
    assert tiles == {32, 64, 128}


@pytest.mark.parametrize("case_id", ["tails", "strided"])
def test_split_k(case_id, dev, monkeypatch):
    """As many splits as slabs (forced), added in order by the reduce kernel."""
    monkeypatch.setattr(_plan_conv, "split_count", lambda work, *a: work)
    p, kw, x, gy = _inputs(CASES[IDS.index(case_id)], 11)
    gw, _, launched = _run(p, x, gy, dev)
    assert "conv2d_backward_weight_reduce<float>" in launched, launched
    assert_products_within(gw, _wide(x, p.w_shape, gy, kw),
                           _wide(x, p.w_shape, gy, kw, absolute=True),
                           p.N * p.OH * p.OW)
    p, kw, xi, gyi = _inputs(CASES[IDS.index(case_id)], 13, integer=True)
    exact, _, _ = _run(p, xi, gyi, dev)
    np.testing.assert_array_equal(exact, _wide(xi, p.w_shape, gyi, kw))


def test_bias_gradient_apart_and_float64_falls_back(dev):
    p, kw, x, gy = _inputs(CASES[IDS.index("tails")], 17)
    gw, gb, launched = _run(p, x, gy, dev, with_bias=True)
    assert _ran_nhwc(launched)
    np.testing.assert_array_equal(gb, _gpu_conv.conv2d_backward_bias(gy, p,
                                                                     device=dev))
    p64, kw, x64, gy64 = _inputs(CASES[IDS.index("tails")], 17, dtype=np.float64)
    gw64, _, launched = _run(p64, x64, gy64, dev)
    assert not _ran_nhwc(launched)
    auto, _, _ = _run(p64, x64, gy64, dev, algorithm="auto")
    np.testing.assert_array_equal(gw64, auto)


def test_tf32_operands_rounded_before_the_pack(dev):
    """precision='tf32' on the FP32 kernels: the operands are rounded (convert.cu)
    and then packed unrounded: the same bits as 'nhwc' on pre-rounded data."""
    import dataclasses

    from gpuconv._precision import round_tf32

    p, kw, x, gy = _inputs(CASES[IDS.index("tails")], 19)
    t = dataclasses.replace(p, precision="tf32")
    got, _, launched = _run(t, x, gy, dev)
    assert "convert_round_tf32" in launched and any("nhwc" in k for k in launched)
    want, _, _ = _run(p, round_tf32(x), round_tf32(gy), dev)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("order", ["ascending", "descending"])
def test_sanitized_subset(order):
    d = EmulatedDevice(thread_order=order)
    for case_id in ("tails", "groups_dilated", "reflect", "bm64", "far_taps"):
        p, kw, x, gy = _inputs(CASES[IDS.index(case_id)], 23)
        gw, _, launched = _run(p, x, gy, d)
        assert _ran_nhwc(launched)
        assert_products_within(gw, _wide(x, p.w_shape, gy, kw),
                               _wide(x, p.w_shape, gy, kw, absolute=True),
                               p.N * p.OH * p.OW)


def test_nan_and_inf_propagate_like_numpy(dev):
    """NaN/inf in x and in gy (a corner, a border, the interior) reach exactly the
    weights the NumPy backend puts them in (a padded tap: gy * 0)."""
    p, kw, x, gy = _inputs(CASES[IDS.index("tails")], 29)
    x[0, 0, 0, 0] = np.nan
    x[1, 60, 8, -1] = np.inf
    gy[2, 5, 4, 3] = -np.inf
    gw, _, launched = _run(p, x, gy, dev)
    assert _ran_nhwc(launched)
    want = _wide(x, p.w_shape, gy, kw)
    np.testing.assert_array_equal(np.isnan(gw), np.isnan(want))
    np.testing.assert_array_equal(np.isposinf(gw), np.isposinf(want))
    np.testing.assert_array_equal(np.isneginf(gw), np.isneginf(want))
    assert np.isnan(want).any() and np.isinf(want).any()
