"""The CUDA weight- and bias-gradient kernels on the CPU emulation harness.

Every launch is planned by ``gpuconv._plan_conv.plan_conv2d_backward_weight`` /
``plan_conv2d_backward_bias`` and run by ``gpuconv._emulate.EmulatedDevice`` through
the backend ops ``gpuconv._gpu_conv.conv2d_backward_weight`` /
``conv2d_backward_bias`` (the public API has no ``device=``; the op is what it calls,
and it handles the padding modes and complex decomposition). References: the NumPy
backend in float64, exact sums on small-integer inputs, and the adjoint identity
``<conv2d(x, w), gy> = <w, gw>``.

Outputs are poisoned with NaN before every launch (``out=`` buffers, and
``POISON_OUTPUTS`` for the split-K workspaces the ops allocate), so an element a
kernel forgets to write fails. The split count and the regblock tile are forced
through ``_plan_conv.split_count`` / ``_plan_conv.wgrad_regblock_tile`` where a case
needs a particular plan. Tiers: the grid runs on the fast in-process build; a subset
runs on the ASan/UBSan build in both thread orders.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

from gpuconv import _cpu_conv, _gpu_conv, _plan_conv
from gpuconv._emulate import EmulatedDevice
from gpuconv._kernels import CONV_WGRAD_REGBLOCK_TILES
from tests._cuda_conv_cases import (
    CASES,
    REAL_DTYPES,
    VARIANTS,
    as_dtype,
    layouts,
    problem,
    random_inputs,
    spy_choose_algorithm,
)
from tests._emu_helpers import EMULATED, prepared_device
from tests._tol import assert_close

pytestmark = [*EMULATED, pytest.mark.usefixtures("poisoned_conv_outputs")]

SOURCES = ("conv2d_backward_weight.cu", "conv2d_pad.cu", "conv2d_mma.cu")

# Shapes aimed at the weight gradient's own tiles, besides the shared grid.
WGRAD_CASES = [
    # GEMM rows K/groups = 33 (32 + 1), columns C*KH*KW = 130 (128 + 2)
    ("wgrad_tails", (2, 13, 6, 7), (33, 13, 2, 5), {"padding": (1, 0, 2, 2)}),
    # rows 65 (64 + 1), columns 63 (64 - 1), stride 2
    ("wgrad_tails_b", (1, 7, 9, 9), (65, 7, 3, 3), {"padding": 1, "stride": 2}),
    # 16 x 17 = 272 taps: the tiled kernel needs two tap blocks
    ("many_taps", (1, 1, 20, 20), (2, 1, 16, 17), {"padding": (1, 0, 0, 0)}),
    # N*OH*OW = 768: the planner splits the reduction by itself (6 and 3 splits)
    ("auto_split", (3, 4, 16, 16), (5, 4, 3, 3), {"padding": 1}),
    # C and K multiples of 4, GEMM 36 x 72: the NHWC GEMM's 64-row tile (under
    # 'auto' only past WGRAD_NHWC_MIN_MACS)
    ("wgrad_nhwc", (2, 8, 7, 9), (36, 8, 3, 3), {"padding": 1}),
]
ALL_CASES = CASES + WGRAD_CASES
ALL_IDS = [c[0] for c in ALL_CASES]


def case(case_id):
    return ALL_CASES[ALL_IDS.index(case_id)]


@pytest.fixture(scope="module")
def dev():
    return prepared_device(SOURCES)



def force_splits(monkeypatch, splits):
    monkeypatch.setattr(_plan_conv, "split_count", lambda *a, **k: splits)


@contextlib.contextmanager
def splits_forced(monkeypatch, splits):
    """Within the block, every plan splits its reduction ``splits`` times (``None``:
    the planner's choice)."""
    with monkeypatch.context() as m:
        if splits is not None:
            m.setattr(_plan_conv, "split_count", lambda *a, **k: splits)
        yield


def run_wgrad(p, variant, gy, x, dev, with_bias=True):
    """The weight-gradient op into NaN-poisoned ``out=`` buffers."""
    gw = np.full(p.w_shape, np.nan, dtype=p.compute_dtype)
    gb = np.full((p.K,), np.nan, dtype=p.compute_dtype) if with_bias else None
    rw, rb = _gpu_conv.conv2d_backward_weight(
        gy, x, p, variant, with_bias, device=dev, out=gw, out_bias=gb
    )
    assert rw is gw and rb is gb
    return rw, rb


def run_bias(p, gy, dev):
    gb = np.full((p.K,), np.nan, dtype=p.compute_dtype)
    assert _gpu_conv.conv2d_backward_bias(gy, p, device=dev, out=gb) is gb
    return gb


def reference(p, x, gy, with_bias=True):
    """The NumPy backend's ``(gw, gb)`` in float64 (complex128 for complex)."""
    wide = np.complex128 if np.dtype(p.compute_dtype).kind == "c" else np.float64
    return _cpu_conv.conv2d_backward_weight(
        gy.astype(wide), x.astype(wide), as_dtype(p, wide), "auto", with_bias
    )


def terms(p):
    return p.N * p.OH * p.OW


def inputs(case_id, dtype, seed, integer=False):
    _, xs, ws, kw = case(case_id)
    p = problem(xs, ws, dtype, kw)
    x, _, _, gy = random_inputs(np.random.default_rng(seed), p, dtype, integer=integer)
    return p, x, gy


def kernels_since(dev, n0):
    return [k for _, k, *_ in dev.launches[n0:]]


# ---------------------------------------------------------------------------------
# against the NumPy backend


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", REAL_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("case_id", ALL_IDS)
def test_matches_numpy_backend(case_id, dtype, variant, dev):
    p, x, gy = inputs(case_id, dtype, 7)
    n0 = len(dev.launches)
    gw, gb = run_wgrad(p, variant, gy, x, dev)
    rw, rb = reference(p, x, gy)
    assert gw.dtype == gb.dtype == np.dtype(dtype)
    assert not np.isnan(gw).any(), "a gw element was never written"
    assert not np.isnan(gb).any(), "a gb element was never written"
    assert_close(gw, rw, dtype=dtype, terms=terms(p))
    assert_close(gb, rb, dtype=dtype, terms=terms(p))
    assert any(f"conv2d_backward_weight_{variant}<" in k
               for k in kernels_since(dev, n0))


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("case_id",
                         ["everything", "auto_split", "reflect", "many_taps"])
def test_without_bias(case_id, variant, dev):
    """``with_bias=False`` returns no gb, and gw is bit-identical to the fused run."""
    p, x, gy = inputs(case_id, np.float32, 17)
    gw, gb = run_wgrad(p, variant, gy, x, dev, with_bias=False)
    assert gb is None
    gw_fused, _ = run_wgrad(p, variant, gy, x, dev, with_bias=True)
    np.testing.assert_array_equal(gw, gw_fused)


def test_adjoint_identity(dev):
    """``<conv2d(x, w), gy> == <w, gw>`` for every w: gw is the gradient of the
    forward pass (checked in float64 against the NumPy forward, not the NumPy
    weight gradient)."""
    p, x, gy = inputs("everything", np.float64, 21)
    w = np.random.default_rng(22).standard_normal(p.w_shape)
    y = _cpu_conv.conv2d_forward(x, w, None, p, "auto")
    for variant in VARIANTS:
        gw, gb = run_wgrad(p, variant, gy, x, dev)
        np.testing.assert_allclose(np.vdot(w, gw), np.vdot(y, gy), rtol=1e-12)
        np.testing.assert_allclose(gb, gy.sum(axis=(0, 2, 3)), rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------
# exactness, summation order, determinism


@pytest.mark.parametrize("dtype", REAL_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("case_id", ALL_IDS)
def test_variants_bit_identical_on_integers(case_id, dtype, dev, monkeypatch):
    """On small-integer inputs every partial sum is exact, so every variant and every
    split count gives the exact float64 result, bit for bit."""
    p, x, gy = inputs(case_id, dtype, 3, integer=True)
    rw, rb = reference(p, x, gy)
    runs = [(v, None) for v in VARIANTS] + [("tiled", 2), ("tiled_regblock", 3)]
    for variant, splits in runs:
        with splits_forced(monkeypatch, splits):
            gw, gb = run_wgrad(p, variant, gy, x, dev)
        msg = f"{variant}, splits {splits}"
        np.testing.assert_array_equal(gw, rw.astype(dtype), err_msg=msg)
        np.testing.assert_array_equal(gb, rb.astype(dtype), err_msg=msg)


@pytest.mark.parametrize("case_id", ["everything", "wgrad_tails", "reflect"])
def test_naive_and_unsplit_regblock_sum_in_the_same_order(case_id, dev, monkeypatch):
    """With one split, tiled_regblock accumulates gw over n, oh, ow in the naive order
    (one fma each, padded taps as fma(gy, 0, acc)): bit-identical on random floats.
    Its bias sums every BK-th term per thread, then the BK partial sums: within
    rounding of naive's sequential sum."""
    p, x, gy = inputs(case_id, np.float32, 11)
    want = run_wgrad(p, "naive", gy, x, dev)
    force_splits(monkeypatch, 1)
    n0 = len(dev.launches)
    got = run_wgrad(p, "tiled_regblock", gy, x, dev)
    assert len(kernels_since(dev, n0)) == 1 + (p.padding_mode != "zeros")  # no reduce
    np.testing.assert_array_equal(got[0], want[0])
    assert_close(got[1], want[1], dtype=np.float32, terms=terms(p))


@pytest.mark.parametrize("variant", VARIANTS)
def test_two_runs_are_bit_identical(variant, dev):
    """Deterministic: no atomics; the split-K partial sums are reduced in a fixed
    order, so a second run reproduces the first bit for bit."""
    p, x, gy = inputs("auto_split", np.float32, 5)
    n0 = len(dev.launches)
    first = run_wgrad(p, variant, gy, x, dev)
    if variant != "naive":  # the case is big enough for the planner to split
        assert any("_reduce<" in k for k in kernels_since(dev, n0))
    second = run_wgrad(p, variant, gy, x, dev)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("splits", [2, 3, 7, 10**6])
@pytest.mark.parametrize("variant", ["tiled", "tiled_regblock"])
def test_forced_split_counts(variant, splits, dev, monkeypatch):
    """Any split count (more than the reduction has slices included: the planner
    caps it) gives the right result through the workspace and the reduce launch."""
    force_splits(monkeypatch, splits)
    for case_id, dtype in (("auto_split", np.float32), ("everything", np.float64),
                           ("depthwise_strided", np.float64)):
        p, x, gy = inputs(case_id, dtype, 13)
        n0 = len(dev.launches)
        gw, gb = run_wgrad(p, variant, gy, x, dev)
        rw, rb = reference(p, x, gy)
        assert_close(gw, rw, dtype=dtype, terms=terms(p))
        assert_close(gb, rb, dtype=dtype, terms=terms(p))
        assert kernels_since(dev, n0)[-1].startswith("conv2d_backward_weight_reduce<")


def _all_tiles():
    return [(np.dtype(dt).name, t) for dt in REAL_DTYPES
            for t in CONV_WGRAD_REGBLOCK_TILES[_plan_conv.ctype_of(dt)]]


@pytest.mark.parametrize("dtype_tile", _all_tiles(), ids=lambda dt: f"{dt[0]}-{dt[1]}")
def test_every_regblock_tile(dtype_tile, dev, monkeypatch):
    """Each registered tile (forced) on cases with row and column tails, split
    once and twice."""
    dtype, tile = dtype_tile
    monkeypatch.setattr(_plan_conv, "wgrad_regblock_tile", lambda *a, **k: tile)
    for case_id, splits in (("wgrad_tails", 1), ("wgrad_tails_b", 2), ("groups", 2)):
        force_splits(monkeypatch, splits)
        p, x, gy = inputs(case_id, dtype, 12)
        n0 = len(dev.launches)
        gw, gb = run_wgrad(p, "tiled_regblock", gy, x, dev)
        rw, rb = reference(p, x, gy)
        assert_close(gw, rw, dtype=dtype, terms=terms(p))
        assert_close(gb, rb, dtype=dtype, terms=terms(p))
        main = [k for k in kernels_since(dev, n0) if "_tiled_regblock<" in k]
        assert main == [f"conv2d_backward_weight_tiled_regblock<"
                        f"{_plan_conv.ctype_of(dtype)}, {', '.join(map(str, tile))}>"]


# ---------------------------------------------------------------------------------
# the bias-only op


@pytest.mark.parametrize("splits", [None, 1, 3, 8])
@pytest.mark.parametrize("case_id", ["one_by_one", "tile_plus1", "auto_split",
                                     "regblock_fwd_tails"])
def test_bias_only_op(case_id, splits, dev, monkeypatch):
    """``gb = gy.sum(axis=(0, 2, 3))``: N = 1 and N = 3, one and several slices."""
    if splits is not None:
        force_splits(monkeypatch, splits)
    for dtype in REAL_DTYPES:
        p, _, gy = inputs(case_id, dtype, 4)
        n0 = len(dev.launches)
        gb = run_bias(p, gy, dev)
        want = gy.astype(np.float64).sum(axis=(0, 2, 3))
        assert gb.dtype == np.dtype(dtype)
        assert_close(gb, want, dtype=dtype, terms=terms(p))
        ks = kernels_since(dev, n0)
        assert ks[0].startswith("conv2d_backward_bias_partial<")
        assert len(ks) == (2 if (splits or 1) > 1 else 1)
        p, _, gyi = inputs(case_id, dtype, 4, integer=True)
        np.testing.assert_array_equal(
            run_bias(p, gyi, dev), gyi.astype(np.float64).sum(axis=(0, 2, 3))
        )


def test_bias_only_op_twice_is_bit_identical(dev, monkeypatch):
    force_splits(monkeypatch, 5)
    p, _, gy = inputs("auto_split", np.float32, 9)
    np.testing.assert_array_equal(run_bias(p, gy, dev), run_bias(p, gy, dev))


# ---------------------------------------------------------------------------------
# inputs: layouts, NaN/inf, complex


@pytest.mark.parametrize("layout", ["F", "strided", "negative"])
def test_noncontiguous_inputs_are_read_not_modified(layout, dev):
    p, x, gy = inputs("everything", np.float64, 5)
    want = run_wgrad(p, "naive", gy, x, dev)
    args = [layouts(a, layout) for a in (gy, x)]
    before = [a.copy() for a in args]
    for variant in VARIANTS:
        got = run_wgrad(p, variant, *args, dev)
        for a, b in zip(got, want, strict=True):
            assert_close(a, b, terms=terms(p))
    for a, c in zip(args, before, strict=True):
        np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("variant", VARIANTS)
def test_nan_and_inf_propagate_like_numpy(variant, dev):
    """NaN/inf in x (corner, border, interior) and gy reach exactly the gw/gb
    elements where the NumPy backend has them (a padded tap times gy = inf is NaN
    there too: zero padding is a real 0 in the product)."""
    p, x, gy = inputs("everything", np.float64, 1)
    x[0, 0, 0, 0] = np.nan
    x[1, 3, 6, -1] = np.inf
    x[1, 1, 5, 4] = -np.inf
    gy[0, 2, 0, 0] = np.inf
    gy[1, 5, -1, 2] = np.nan
    gw, gb = run_wgrad(p, variant, gy, x, dev)
    rw, rb = reference(p, x, gy)
    for got, want in ((gw, rw), (gb, rb)):
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_array_equal(np.isposinf(got), np.isposinf(want))
        np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want))
        fin = np.isfinite(want)
        assert_close(got[fin], want[fin], terms=terms(p))
    assert np.isnan(gw).any() and np.isfinite(gw).any()


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128],
                         ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("case_id", ["groups", "symmetric"])
def test_complex_decomposes_into_real_kernels(case_id, dtype, dev):
    p, x, gy = inputs(case_id, dtype, 9)
    for variant in ("auto", "tiled"):
        gw, gb = run_wgrad(p, variant, gy, x, dev)
        rw, rb = reference(p, x, gy)
        assert gw.dtype == gb.dtype == np.dtype(dtype)
        assert_close(gw, rw, dtype=dtype, terms=terms(p))
        assert_close(gb, rb, dtype=dtype, terms=terms(p))
    gb = run_bias(p, gy, dev)
    assert_close(gb, gy.astype(np.complex128).sum(axis=(0, 2, 3)), dtype=dtype,
                 terms=terms(p))


# ---------------------------------------------------------------------------------
# planning decisions through the op


@pytest.mark.parametrize("case_id,want", [("basic3x3", "tiled"),
                                          ("depthwise_strided", "tiled"),
                                          ("regblock_dgrad_tails", "tiled"),
                                          ("wgrad_tails", "tiled_regblock"),
                                          ("wgrad_nhwc", "nhwc")])
def test_auto_follows_choose_algorithm(case_id, want, dev, monkeypatch):
    """'auto' runs exactly the variant choose_algorithm returns (spied); the NHWC
    case with the GEMM-size floor lowered (it holds 0.3 M multiply-adds)."""
    monkeypatch.setattr(_plan_conv, "WGRAD_NHWC_MIN_MACS", 1)
    calls = spy_choose_algorithm(monkeypatch)
    p, x, gy = inputs(case_id, np.float32, 2)
    n0 = len(dev.launches)
    run_wgrad(p, "auto", gy, x, dev)
    assert calls == [("backward_weight", want)]
    assert any(f"conv2d_backward_weight_{want}<" in k for k in kernels_since(dev, n0))


def test_tiled_beyond_shared_memory_is_refused_and_auto_runs_naive(dev):
    p = problem((1, 1, 200, 200), (1, 1, 7, 7), np.float64, {"dilation": 30})
    x, _, _, gy = random_inputs(np.random.default_rng(0), p, np.float64)
    with pytest.raises(ValueError, match="shared memory"):
        run_wgrad(p, "tiled", gy, x, dev)
    assert _plan_conv.choose_algorithm(p, "backward_weight") == "naive"
    n0 = len(dev.launches)
    gw, gb = run_wgrad(p, "auto", gy, x, dev)
    assert kernels_since(dev, n0) == ["conv2d_backward_weight_naive<double>"]
    rw, rb = reference(p, x, gy)
    assert_close(gw, rw, terms=terms(p))


def test_many_images_use_a_1d_grid(dev):
    """N = 65536 images (R = 65536 terms): the split-K grid stays 1-D and the
    reduction is exact on integers."""
    p = problem((65536, 1, 1, 2), (1, 1, 1, 2), np.float32, {})
    x, _, _, gy = random_inputs(np.random.default_rng(4), p, np.float32, integer=True)
    rw, rb = reference(p, x, gy)
    for variant in ("naive", "tiled_regblock"):
        n0 = len(dev.launches)
        gw, gb = run_wgrad(p, variant, gy, x, dev)
        np.testing.assert_array_equal(gw, rw.astype(np.float32))
        np.testing.assert_array_equal(gb, rb.astype(np.float32))
        for _, _, grid, *_ in dev.launches[n0:]:
            assert grid[1] == grid[2] == 1
    np.testing.assert_array_equal(run_bias(p, gy, dev), rb.astype(np.float32))


def test_out_buffers_are_checked(dev):
    p, x, gy = inputs("basic3x3", np.float32, 0)
    with pytest.raises(ValueError, match="shape"):
        _gpu_conv.conv2d_backward_weight(gy, x, p, "naive", False, device=dev,
                                         out=np.empty((1, 2, 3, 3), np.float32))
    with pytest.raises(ValueError, match="dtype"):
        _gpu_conv.conv2d_backward_weight(gy, x, p, "naive", True, device=dev,
                                         out_bias=np.empty(p.K, np.float64))


# ---------------------------------------------------------------------------------
# sanitizers


SANITIZED = ["wgrad_tails", "everything", "auto_split", "symmetric_pad_gt_input"]


@pytest.mark.parametrize("order", ["ascending", "descending"])
def test_sanitized_subset(order, monkeypatch):
    """ASan/UBSan build, shared memory poisoned at every block start, threads run in
    both orders: out-of-bounds accesses, integer overflow and missing barriers fail
    here. Every variant, both dtypes, with the planner's splits and forced to 2."""
    d = EmulatedDevice(sanitize=True, thread_order=order)
    for case_id in SANITIZED:
        for dtype in REAL_DTYPES:
            p, x, gy = inputs(case_id, dtype, 6)
            rw, rb = reference(p, x, gy)
            for variant in VARIANTS:
                for splits in (None, 2):
                    with splits_forced(monkeypatch, splits):
                        gw, gb = run_wgrad(p, variant, gy, x, d)
                    assert_close(gw, rw, dtype=dtype, terms=terms(p))
                    assert_close(gb, rb, dtype=dtype, terms=terms(p))
            gb = run_bias(p, gy, d)
            assert_close(gb, rb, dtype=dtype, terms=terms(p))
