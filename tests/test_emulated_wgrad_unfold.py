"""The FP32 weight gradient along the pixels on the width-unfolded x (op-level
``algorithm='unfold'``, and what ``'auto'`` runs for the few-channel layers:
``conv2d_unfold_width`` then ``conv2d_backward_weight_unfold`` of
``cuda/conv2d_backward_weight.cu``), emulated on the CPU with its cp.async copies
landing only at their wait.

Held to the float32 product bound of ``tests/_tol.py`` against the float64 NumPy
backend, exact on small integers, bit-identical on a rerun and, with one split, to
the ``naive`` kernel (the same summation order: pixels in increasing order); split-K
forced; 64 x 64 tiles with row and column tails; chunks of 4 pixels crossing output
rows and images; stride, dilation, groups, padding (the unfold's zeros) and padding
modes; where it does not apply (OW not a multiple of 4, float64) ``'unfold'`` runs
what ``'auto'`` runs; NaN/inf; an ASan/UBSan subset in both thread orders and a race
check with one warp at a time.
"""

from __future__ import annotations

import numpy as np
import pytest

import gpuconv
from gpuconv import _gpu_conv, _plan_conv
from gpuconv._emulate import EmulatedDevice
from tests._cuda_conv_cases import problem, run_wgrad, wgrad_inputs, wide_wgrad
from tests._emu_helpers import EMULATED, prepared_device
from tests._tol import assert_products_within

pytestmark = [*EMULATED, pytest.mark.usefixtures("poisoned_conv_outputs")]

SOURCES = ("conv2d_backward_weight.cu", "conv2d_pad.cu", "convert.cu")

CASES = [
    # the RGB stem's geometry, small: 7x7 stride 2 pad 3, 147 columns (3 column
    # tiles, the last one 19 wide), K = 8 (row tail)
    ("stem", (2, 3, 16, 16), (8, 3, 7, 7), {"stride": 2, "padding": 3}),
    # K = 70: two row tiles; OW = 4: every chunk is a whole output row, and the
    # slabs of 16 pixels cross rows and images (N*OH*OW = 3*5*4 = 60: a tail slab)
    ("rows_and_images", (3, 1, 5, 4), (70, 1, 3, 3), {"padding": 1}),
    # dilation and asymmetric padding: OW = 7 + 2 + 1 - 2 = 8
    ("dilated", (2, 2, 9, 7), (5, 2, 3, 2),
     {"dilation": (2, 2), "padding": (1, 0, 2, 1)}),
    # groups: 2 groups of 3 channels, 4 output channels each
    ("groups", (1, 6, 10, 12), (8, 3, 3, 3), {"groups": 2, "padding": 1}),
    # a kernel larger than the image (taps that never meet it)
    ("kernel_gt_input", (1, 2, 3, 4), (4, 2, 5, 5), {"padding": 2}),
    # stride 3 with rows the taps skip; 1x1 kernel
    ("strided_1x1", (2, 3, 11, 12), (6, 3, 1, 1), {"stride": 3}),
    ("reflect", (2, 3, 7, 8), (5, 3, 3, 3), {"padding": 1, "padding_mode": "reflect"}),
    # OW = 7: no 16-byte chunks of pixels, the fallback to 'auto'
    ("fallback", (2, 3, 9, 9), (3, 3, 3, 3), {}),
]
IDS = [c[0] for c in CASES]


@pytest.fixture(scope="module")
def dev():
    return prepared_device(SOURCES)


_inputs = wgrad_inputs
_wide = wide_wgrad


def _run(p, x, gy, dev, with_bias=False, algorithm="unfold"):
    return run_wgrad(p, x, gy, dev, algorithm, with_bias)


def _ran_unfold(launched):
    return "conv2d_backward_weight_unfold<float>" in launched


def _applies(p):
    p0 = _plan_conv.padded_problem(p) if _plan_conv.needs_padding_copy(p) else p
    return _plan_conv.wgrad_unfold_applies(p0)


def _check(p, kw, x, gy, gw):
    assert not np.isnan(gw).any()
    assert_products_within(gw, _wide(x, p.w_shape, gy, kw),
                           _wide(x, p.w_shape, gy, kw, absolute=True),
                           p.N * p.OH * p.OW)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_within_the_product_bound(case, dev):
    p, kw, x, gy = _inputs(case, 5)
    x0, gy0 = x.copy(), gy.copy()
    gw, _, launched = _run(p, x, gy, dev)
    assert _ran_unfold(launched) == _applies(p), launched
    _check(p, kw, x, gy, gw)
    np.testing.assert_array_equal(x, x0)  # inputs never modified
    np.testing.assert_array_equal(gy, gy0)
    again, _, _ = _run(p, x, gy, dev)
    np.testing.assert_array_equal(again.view(np.uint32), gw.view(np.uint32))
    p, kw, xi, gyi = _inputs(case, 7, integer=True)
    exact, _, _ = _run(p, xi, gyi, dev)
    np.testing.assert_array_equal(exact, _wide(xi, p.w_shape, gyi, kw))


def test_the_grid_is_not_vacuous():
    hits = [_applies(_inputs(c, 0)[0]) for c in CASES]
    assert sum(hits) == len(CASES) - 1 and not hits[-1]
    # row and column tails, several tiles of each
    stem = _inputs(CASES[0], 0)[0]
    assert stem.Cg * stem.KH * stem.KW == 147 and stem.K % 64 != 0
    assert _inputs(CASES[1], 0)[0].K == 70


@pytest.mark.parametrize("case_id", ["stem", "rows_and_images", "groups"])
def test_one_split_matches_naive_bit_for_bit(case_id, dev):
    """One split sums the pixels in the naive kernel's order, one fma each."""
    p, kw, x, gy = _inputs(CASES[IDS.index(case_id)], 9)
    gw, _, launched = _run(p, x, gy, dev)
    assert _ran_unfold(launched)
    assert "conv2d_backward_weight_reduce<float>" not in launched  # one split
    naive, _, _ = _run(p, x, gy, dev, algorithm="naive")
    np.testing.assert_array_equal(gw.view(np.uint32), naive.view(np.uint32))


@pytest.mark.parametrize("case_id", ["stem", "rows_and_images"])
def test_split_k(case_id, dev, monkeypatch):
    """As many splits as slabs (forced), added in order by the reduce kernel."""
    monkeypatch.setattr(_plan_conv, "split_count", lambda work, *a: work)
    p, kw, x, gy = _inputs(CASES[IDS.index(case_id)], 11)
    gw, _, launched = _run(p, x, gy, dev)
    assert _ran_unfold(launched)
    assert "conv2d_backward_weight_reduce<float>" in launched, launched
    _check(p, kw, x, gy, gw)
    p, kw, xi, gyi = _inputs(CASES[IDS.index(case_id)], 13, integer=True)
    exact, _, _ = _run(p, xi, gyi, dev)
    np.testing.assert_array_equal(exact, _wide(xi, p.w_shape, gyi, kw))


def test_bias_gradient_apart_and_float64_falls_back(dev):
    p, kw, x, gy = _inputs(CASES[0], 17)
    gw, gb, launched = _run(p, x, gy, dev, with_bias=True)
    assert _ran_unfold(launched)
    np.testing.assert_array_equal(gb, _gpu_conv.conv2d_backward_bias(gy, p,
                                                                     device=dev))
    p64, kw, x64, gy64 = _inputs(CASES[0], 17, dtype=np.float64)
    gw64, _, launched = _run(p64, x64, gy64, dev)
    assert not _ran_unfold(launched)
    auto, _, _ = _run(p64, x64, gy64, dev, algorithm="auto")
    np.testing.assert_array_equal(gw64, auto)


def test_tf32_and_float16_operands_converted_before_the_unfold(dev):
    """precision='tf32' and float16 data on the FP32 kernels (the SIMT route):
    the operands are converted first (convert.cu), then unfolded: the same bits as
    'unfold' on operands converted by NumPy."""
    import dataclasses

    from gpuconv._precision import round_tf32

    p, kw, x, gy = _inputs(CASES[0], 37)
    t = dataclasses.replace(p, precision="tf32")
    got, _, launched = _run(t, x, gy, dev)
    assert "convert_round_tf32" in " ".join(launched) and _ran_unfold(launched)
    want, _, _ = _run(p, round_tf32(x), round_tf32(gy), dev)
    np.testing.assert_array_equal(got, want)
    p16, kw, x16, gy16 = _inputs(CASES[0], 37, dtype=np.float16)
    got16, _, launched = _run(p16, x16, gy16, dev)
    assert _ran_unfold(launched)
    want16, _, _ = _run(p, x16.astype(np.float32), gy16.astype(np.float32), dev)
    np.testing.assert_array_equal(got16, want16)  # the op's float32 result


def test_auto_takes_it_for_the_stem_only():
    """'auto' runs it for the few-channel layers above the size floor (the stem),
    not where the NHWC kernel applies, not for small problems."""
    from gpuconv._conv_args import normalize_conv2d

    def choose(xs, ws, **kw):
        p = normalize_conv2d(xs, ws, [np.float32], **kw)
        return _plan_conv.choose_algorithm(p, "backward_weight")

    assert choose((16, 3, 224, 224), (64, 3, 7, 7), stride=2, padding=3) == "unfold"
    assert choose((32, 3, 224, 224), (64, 3, 7, 7), stride=2, padding=3) == "unfold"
    assert choose((16, 64, 56, 56), (64, 64, 3, 3), padding=1) == "nhwc"
    assert choose((2, 3, 16, 16), (8, 3, 7, 7), stride=2, padding=3) != "unfold"
    # OW = 110: no chunks of 4 pixels
    assert choose((16, 3, 222, 222), (64, 3, 7, 7), stride=2, padding=2) != "unfold"


@pytest.mark.parametrize("layout", ["F", "negative"])
def test_public_api_in_any_layout(layout, monkeypatch):
    """The public call (routed to the emulated kernels, the size floor lowered so
    that 'auto' takes the kernel) gives the same bits for inputs in any layout,
    read-only too, and leaves them unchanged."""
    from tests._cuda_conv_cases import layouts
    from tests._emu_helpers import route_numpy_to

    d = prepared_device(SOURCES)
    router = route_numpy_to(d, monkeypatch)
    monkeypatch.setattr(_plan_conv, "WGRAD_UNFOLD_MIN_MACS", 1)
    # the stem's geometry with 16 output channels ('auto' takes the GEMM kernels
    # from REGBLOCK_MIN_COLS rows on)
    p, kw, x, gy = _inputs(("stem16", (2, 3, 16, 16), (16, 3, 7, 7), CASES[0][3]), 31)
    w = np.zeros(p.w_shape, np.float32)
    n0 = len(d.launches)
    want = gpuconv.conv2d_backward(gy, x, w, needs=("weight", "bias"), **kw)
    assert _ran_unfold([k for _, k, *_ in d.launches[n0:]])
    assert "conv2d_backward_weight" in router.calls
    _check(p, kw, x, gy, want.gw)
    lx, lgy = layouts(x, layout), layouts(gy, layout)
    before = [a.copy() for a in (lx, lgy)]
    for a in (lx, lgy):
        a.flags.writeable = False
    got = gpuconv.conv2d_backward(lgy, lx, w, needs=("weight", "bias"), **kw)
    np.testing.assert_array_equal(got.gw, want.gw)
    np.testing.assert_array_equal(got.gb, want.gb)
    for a, kept in zip((lx, lgy), before, strict=True):
        np.testing.assert_array_equal(a, kept)


@pytest.mark.parametrize("order", ["ascending", "descending"])
def test_sanitized_subset(order):
    d = EmulatedDevice(thread_order=order)
    for case_id in ("stem", "rows_and_images", "dilated", "kernel_gt_input"):
        p, kw, x, gy = _inputs(CASES[IDS.index(case_id)], 23)
        gw, _, launched = _run(p, x, gy, d)
        assert _ran_unfold(launched)
        _check(p, kw, x, gy, gw)


def test_nan_and_inf_propagate_like_numpy(dev):
    """NaN/inf in x and in gy (a corner, a border, the interior) reach exactly the
    weights the NumPy backend puts them in (a padded tap: gy * 0)."""
    p, kw, x, gy = _inputs(CASES[0], 29)
    x[0, 0, 0, 0] = np.nan
    x[1, 2, 8, -1] = np.inf
    gy[1, 5, 4, 3] = -np.inf
    gw, _, launched = _run(p, x, gy, dev)
    assert _ran_unfold(launched)
    want = _wide(x, p.w_shape, gy, kw)
    np.testing.assert_array_equal(np.isnan(gw), np.isnan(want))
    np.testing.assert_array_equal(np.isposinf(gw), np.isposinf(want))
    np.testing.assert_array_equal(np.isneginf(gw), np.isneginf(want))
    assert np.isnan(want).any() and np.isinf(want).any()


def test_gy_off_a_16_byte_boundary_takes_tiled_regblock(dev):
    """gy read in place by 16-byte copies: a gy view starting 4 bytes past a
    16-byte boundary runs tiled_regblock (a plan of its own), with the same result
    up to rounding, and the aligned gy still runs 'unfold'."""
    p, kw, x, gy = _inputs(CASES[0], 41)
    buf = np.zeros(gy.size + 8, np.float32)
    start = next(i for i in range(1, 5) if (buf[i:].ctypes.data % 16) == 4)
    odd = buf[start:start + gy.size].reshape(gy.shape)
    odd[...] = gy
    assert odd.flags.c_contiguous and odd.ctypes.data % 16 == 4
    got, _, launched = _run(p, x, odd, dev)
    assert not _ran_unfold(launched)
    assert any("tiled_regblock" in k for k in launched), launched
    _check(p, kw, x, gy, got)
    aligned, _, launched = _run(p, x, gy.copy(), dev)
    assert _ran_unfold(launched)
    _check(p, kw, x, gy, aligned)


@pytest.mark.parametrize("dtype, precision, mode", [
    ("complex64", "highest", "zeros"),
    ("complex64", "tf32", "reflect"),
    ("float16", "highest", "circular"),
    ("float32", "tf32", "replicate"),
])
def test_choose_algorithm_names_what_auto_runs(dtype, precision, mode, monkeypatch):
    """gpuconv.choose_algorithm (public, shapes only) names the kernel 'auto' runs
    for the weight gradient in the other routes too: complex (four real passes),
    tf32 and float16 on the FP32 kernels (operands converted first), the padding
    modes (the padded problem); exact on small integers (complex: both parts; the
    op is the pure correlation, the API passes conj(x))."""
    import dataclasses

    monkeypatch.setattr(_plan_conv, "WGRAD_UNFOLD_MIN_MACS", 1)
    d = prepared_device(SOURCES)  # its own plans (the size floor is lowered)
    xs, ws = (2, 3, 16, 16), (16, 3, 7, 7)
    kw = {"stride": 2, "padding": 3, "padding_mode": mode}
    assert gpuconv.choose_algorithm(xs, ws, "backward_weight", dtype=dtype,
                                    precision=precision, **kw) == "unfold"
    p = dataclasses.replace(problem(xs, ws, dtype, kw), precision=precision)
    rng = np.random.default_rng(43)

    def ints(shape):
        a = rng.integers(-3, 4, size=shape).astype(dtype)
        if np.dtype(dtype).kind == "c":
            a = a + 1j * rng.integers(-3, 4, size=shape).astype(dtype)
        return a

    x, gy = ints(p.x_shape), ints(p.y_shape)
    gw, _, launched = _run(p, x, gy, d, algorithm="auto")
    assert _ran_unfold(launched), launched
    wide = np.complex128 if np.dtype(dtype).kind == "c" else np.float64
    want = gpuconv.conv2d_grad_weight(np.conj(x).astype(wide), p.w_shape,
                                      gy.astype(wide), backend="numpy", **kw)
    np.testing.assert_array_equal(gw, want)
