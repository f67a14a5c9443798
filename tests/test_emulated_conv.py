"""The CUDA conv2d kernels, executed on the CPU emulation harness, against NumPy.

Every launch is planned by ``gpuconv._plan_conv`` and run by
``gpuconv._emulate.EmulatedDevice`` exactly as ``CupyDevice`` would run it on a GPU
(see ``gpuconv/_emulate.py``). The grid of awkward shapes is
``tests/_cuda_conv_cases.py``. Every output is poisoned with NaN before the launch
(``out=`` buffers, and ``POISON_OUTPUTS`` for the temporaries the ops allocate), so
an element a kernel forgets to write fails the comparison.

Tiers: the main grid runs on the fast (``-O2``, in-process) build; a subset runs on
the ASan/UBSan build in both thread orders (a missing barrier shows up as poison in
one of them).
"""

from __future__ import annotations

import numpy as np
import pytest

from gpuconv import _gpu_conv, _plan_conv
from gpuconv._emulate import EmulatedDevice
from gpuconv._kernels import CONV_REGBLOCK_TILES
from tests._cuda_conv_cases import (
    CASE_IDS,
    CASES,
    PASSES,
    REAL_DTYPES,
    VARIANTS,
    as_dtype,
    layouts,
    problem,
    random_inputs,
    reference,
    run_op,
    spy_choose_algorithm,
    terms,
)
from tests._emu_helpers import EMULATED, prepared_device
from tests._tol import assert_close

pytestmark = [*EMULATED, pytest.mark.usefixtures("poisoned_conv_outputs")]

CONV_SOURCES = ("conv2d_forward.cu", "conv2d_backward_input.cu", "conv2d_pad.cu")


@pytest.fixture(scope="module")
def dev():
    return prepared_device(CONV_SOURCES)



_run = run_op  # one op into a NaN-poisoned out buffer (tests/_cuda_conv_cases.py)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", REAL_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("pass_name", PASSES)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_matches_numpy_backend(case, pass_name, dtype, variant, dev):
    _, xs, ws, kw = case
    p = problem(xs, ws, dtype, kw)
    rng = np.random.default_rng(7)
    x, w, b, gy = random_inputs(rng, p, dtype)
    got = _run(pass_name, p, variant, x, w, b, gy, dev)
    want = reference(pass_name, p, x, w, b, gy)
    assert got.dtype == np.dtype(dtype)
    assert not np.isnan(got).any(), "an output element was never written"
    assert_close(got, want, dtype=dtype, terms=terms(pass_name, p))
    launched = {k for _, k, *_ in dev.launches[-3:]}
    assert any(f"_{variant}<" in k for k in launched)


@pytest.mark.parametrize("dtype", REAL_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("pass_name", PASSES)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_variants_bit_identical_on_integers(case, pass_name, dtype, dev):
    """naive, tiled and tiled_regblock agree bit for bit, and equal the float64
    NumPy result exactly, on small-integer inputs (every partial sum is an integer
    below 2^24, so exact in any order: this holds whatever the accumulation order)."""
    _, xs, ws, kw = case
    p = problem(xs, ws, dtype, kw)
    x, w, b, gy = random_inputs(np.random.default_rng(3), p, dtype, integer=True)
    results = [_run(pass_name, p, v, x, w, b, gy, dev) for v in VARIANTS]
    want = reference(pass_name, p, x, w, b, gy)
    for v, r in zip(VARIANTS, results, strict=True):
        np.testing.assert_array_equal(r, want.astype(dtype), err_msg=v)


@pytest.mark.parametrize("pass_name", PASSES)
@pytest.mark.parametrize("case_id", ["everything", "reflect", "regblock_fwd_tails"])
def test_variants_bit_identical_on_random_floats(case_id, pass_name, dev):
    """naive and tiled accumulate in the same order (c|k, kh, kw, one fma each;
    padded taps as fma(0, w, acc)), so they agree bit for bit on any finite input.
    tiled_regblock sums in slices (channel chunks of 8, then taps, then channels:
    implicit_gemm.cuh), so it agrees to rounding, and bit for bit with itself from
    run to run."""
    _, xs, ws, kw = CASES[CASE_IDS.index(case_id)]
    p = problem(xs, ws, np.float32, kw)
    x, w, b, gy = random_inputs(np.random.default_rng(11), p, np.float32)
    naive = _run(pass_name, p, "naive", x, w, b, gy, dev)
    np.testing.assert_array_equal(_run(pass_name, p, "tiled", x, w, b, gy, dev), naive)
    fast = _run(pass_name, p, "tiled_regblock", x, w, b, gy, dev)
    np.testing.assert_array_equal(
        _run(pass_name, p, "tiled_regblock", x, w, b, gy, dev), fast)
    assert_close(fast, naive, dtype=np.float32, terms=terms(pass_name, p))


def _all_tiles():
    return [(np.dtype(dt).name, t) for dt in REAL_DTYPES
            for t in CONV_REGBLOCK_TILES[_plan_conv.ctype_of(dt)]]


@pytest.mark.parametrize("dtype_tile", _all_tiles(), ids=lambda dt: f"{dt[0]}-{dt[1]}")
@pytest.mark.parametrize("pass_name", PASSES)
def test_every_regblock_tile(dtype_tile, pass_name, dev, monkeypatch):
    """Each registered tile shape runs (forced), on cases with tails in M and NG."""
    dtype, tile = dtype_tile
    monkeypatch.setattr(_plan_conv, "regblock_tile", lambda *a, **k: tile)
    for case_id in ("regblock_fwd_tails", "regblock_dgrad_tails", "everything"):
        _, xs, ws, kw = CASES[CASE_IDS.index(case_id)]
        p = problem(xs, ws, dtype, kw)
        x, w, b, gy = random_inputs(np.random.default_rng(12), p, dtype)
        got = _run(pass_name, p, "tiled_regblock", x, w, b, gy, dev)
        want = reference(pass_name, p, x, w, b, gy)
        assert_close(got, want, dtype=dtype, terms=terms(pass_name, p))
        suffix = ", ".join(map(str, tile))
        assert any(k.endswith((suffix + ">", suffix + ", true>"))
                   for _, k, *_ in dev.launches[-5:])


@pytest.mark.parametrize("layout", ["F", "strided", "negative"])
@pytest.mark.parametrize("pass_name", PASSES)
def test_noncontiguous_inputs(layout, pass_name, dev):
    _, xs, ws, kw = CASES[CASE_IDS.index("everything")]
    p = problem(xs, ws, np.float64, kw)
    x, w, b, gy = random_inputs(np.random.default_rng(5), p, np.float64)
    args = [layouts(a, layout) for a in (x, w, b, gy)]
    before = [a.copy() for a in args]
    for variant in VARIANTS:
        want = _run(pass_name, p, variant, x, w, b, gy, dev)
        got = _run(pass_name, p, variant, *args, dev)
        np.testing.assert_array_equal(got, want)
    for a, c in zip(args, before, strict=True):
        np.testing.assert_array_equal(a, c)  # inputs never modified


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128],
                         ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("pass_name", PASSES)
@pytest.mark.parametrize("case_id", ["groups", "symmetric"])
def test_complex_decomposes_into_real_kernels(case_id, pass_name, dtype, dev):
    _, xs, ws, kw = CASES[CASE_IDS.index(case_id)]
    p = problem(xs, ws, dtype, kw)
    x, w, b, gy = random_inputs(np.random.default_rng(9), p, dtype)
    got = _run(pass_name, p, "auto", x, w, b, gy, dev)
    want = reference(pass_name, p, x, w, b, gy)
    assert got.dtype == np.dtype(dtype)
    assert_close(got, want, dtype=dtype, terms=terms(pass_name, p))


@pytest.mark.parametrize("variant", VARIANTS)
def test_nan_and_inf_propagate_like_numpy(variant, dev):
    """NaN/inf in x (forward) and in gy (input gradient) at a corner, a border and
    the interior reach exactly the outputs NumPy puts them in."""
    _, xs, ws, kw = CASES[CASE_IDS.index("everything")]
    p = problem(xs, ws, np.float64, kw)
    x, w, b, gy = random_inputs(np.random.default_rng(1), p, np.float64)
    x[0, 0, 0, 0] = np.nan
    x[1, 3, 6, -1] = np.inf
    x[1, 1, 5, 4] = -np.inf
    gy[0, 0, 0, 0] = np.nan
    gy[1, 5, -1, 2] = np.inf
    for pass_name in PASSES:
        got = _run(pass_name, p, variant, x, w, b, gy, dev)
        want = reference(pass_name, p, x, w, b, gy)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_array_equal(np.isposinf(got), np.isposinf(want))
        np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want))
        fin = np.isfinite(want)
        assert_close(got[fin], want[fin], terms=terms(pass_name, p))


@pytest.mark.parametrize("pass_name", PASSES)
@pytest.mark.parametrize("case_id", ["one_by_one", "depthwise_strided", "basic3x3"])
def test_auto_follows_choose_algorithm(case_id, pass_name, dev, monkeypatch):
    """'auto' runs exactly the variant choose_algorithm returns (spied)."""
    calls = spy_choose_algorithm(monkeypatch)
    _, xs, ws, kw = CASES[CASE_IDS.index(case_id)]
    p = problem(xs, ws, np.float32, kw)
    x, w, b, gy = random_inputs(np.random.default_rng(2), p, np.float32)
    n0 = len(dev.launches)
    _run(pass_name, p, "auto", x, w, b, gy, dev)
    assert len(calls) == 1 and calls[0][0] == pass_name
    kernels = [k for _, k, *_ in dev.launches[n0:]]
    assert any(f"conv2d_{pass_name}_{calls[0][1]}<" in k for k in kernels), kernels


def test_many_images_and_channels_use_a_1d_grid(dev):
    """N*C = 65536 (and N*K): grids stay 1-D, never above 65535 in y or z."""
    p = problem((65536, 1, 1, 2), (1, 1, 1, 2), np.float32, {})
    x, w, b, gy = random_inputs(np.random.default_rng(4), p, np.float32, integer=True)
    for pass_name in PASSES:
        want = reference(pass_name, p, x, w, b, gy).astype(np.float32)
        for variant in ("naive", "tiled_regblock"):
            got = _run(pass_name, p, variant, x, w, b, gy, dev)
            np.testing.assert_array_equal(got, want)
            grid = dev.launches[-1][2]
            assert grid[1] == grid[2] == 1


def test_out_buffer_is_checked(dev):
    p = problem((1, 1, 4, 4), (1, 1, 2, 2), np.float32, {})
    x, w, b, _ = random_inputs(np.random.default_rng(0), p, np.float32)
    with pytest.raises(ValueError, match="shape"):
        _gpu_conv.conv2d_forward(x, w, b, p, "naive", device=dev,
                                 out=np.empty((1, 1, 3, 4), np.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        _gpu_conv.conv2d_forward(x, w, b, p, "naive", device=dev,
                                 out=np.empty((1, 1, 3, 6), np.float32)[..., ::2])


def test_tiled_rejects_a_tile_beyond_shared_memory(dev):
    p = problem((1, 1, 200, 200), (1, 1, 7, 7), np.float64, {"dilation": 30})
    x, w, b, gy = random_inputs(np.random.default_rng(0), p, np.float64)
    with pytest.raises(ValueError, match="shared memory"):
        _run("forward", p, "tiled", x, w, b, gy, dev)
    assert _plan_conv.choose_algorithm(p, "forward") == "naive"


#: Input gradients of few input channels per group (``_plan_conv.dgrad_col2im``):
#: the stem's shape scaled down; stride, dilation, groups and asymmetric padding;
#: K/groups off the chunk of 8 with an even kernel; a kernel larger than the input;
#: padding modes (folded after col2im; circular pads larger than the input).
COL2IM_CASES = {
    "stem": ((2, 3, 13, 11), (8, 3, 7, 7), {"stride": 2, "padding": 3}),
    "groups_dilation": ((2, 4, 9, 10), (16, 2, 3, 3),
                        {"stride": (2, 3), "dilation": (2, 1), "groups": 2,
                         "padding": (1, 0, 2, 1)}),
    "odd_chunk_even_kernel": ((1, 3, 8, 9), (11, 3, 4, 2),
                              {"stride": 3, "padding": (0, 2, 1, 0)}),
    "kernel_gt_input": ((1, 2, 3, 4), (9, 2, 5, 6), {"padding": (2, 2, 3, 3)}),
    "reflect_strided": ((2, 3, 7, 8), (10, 3, 3, 4),
                        {"padding": (2, 1, 3, 0), "padding_mode": "reflect",
                         "stride": 2}),
    "circular_gt_input_dilated": ((1, 2, 4, 5), (8, 2, 3, 3),
                                  {"padding": 3, "padding_mode": "circular",
                                   "dilation": 2}),
}


@pytest.mark.parametrize("dtype", REAL_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("case_id", list(COL2IM_CASES))
def test_dgrad_col2im(case_id, dtype, dev, monkeypatch):
    """The input gradient's col2im plan (column GEMM + gather) against float64, bit
    for bit from run to run, exact on small integers, and against the phases plan
    it replaces (forced by a zero workspace cap)."""
    xs, ws, kw = COL2IM_CASES[case_id]
    p = problem(xs, ws, dtype, kw)
    assert _plan_conv.dgrad_col2im(_gpu_conv.kernel_problem(p))
    x, w, b, gy = random_inputs(np.random.default_rng(21), p, dtype)
    n0 = len(dev.launches)
    got = _run("backward_input", p, "tiled_regblock", x, w, b, gy, dev)
    kernels = [k for _, k, *_ in dev.launches[n0:]]
    assert any(k.startswith("conv2d_forward_tiled_regblock<") for k in kernels)
    assert any(k.startswith("conv2d_backward_input_col2im<") for k in kernels)
    want = reference("backward_input", p, x, w, b, gy)
    assert_close(got, want, dtype=dtype, terms=terms("backward_input", p))
    np.testing.assert_array_equal(
        _run("backward_input", p, "tiled_regblock", x, w, b, gy, dev), got)
    xi, wi, bi, gyi = random_inputs(np.random.default_rng(22), p, dtype, integer=True)
    exact = reference("backward_input", p, xi, wi, bi, gyi).astype(dtype)
    np.testing.assert_array_equal(
        _run("backward_input", p, "tiled_regblock", xi, wi, bi, gyi, dev), exact)
    monkeypatch.setattr(_plan_conv, "COL2IM_MAX_BYTES", 0)
    _gpu_conv._PLANS.clear()  # the cap is not part of a plan's key
    n0 = len(dev.launches)
    phases = _run("backward_input", p, "tiled_regblock", x, w, b, gy, dev)
    assert not any("col2im" in k for _, k, *_ in dev.launches[n0:])
    assert_close(phases, want, dtype=dtype, terms=terms("backward_input", p))
    _gpu_conv._PLANS.clear()


@pytest.mark.parametrize("order", ["ascending", "descending"])
def test_dgrad_col2im_sanitized(order):
    """ASan/UBSan build, both thread orders: the column GEMM (w read transposed) and
    the col2im gather stay in bounds (stride, dilation, groups, asymmetric pads,
    K/groups off the chunk, a padding mode folded after)."""
    d = EmulatedDevice(sanitize=True, thread_order=order)
    for case_id in ("groups_dilation", "odd_chunk_even_kernel", "reflect_strided"):
        xs, ws, kw = COL2IM_CASES[case_id]
        p = problem(xs, ws, np.float32, kw)
        x, w, b, gy = random_inputs(np.random.default_rng(23), p, np.float32)
        n0 = len(d.launches)
        got = _run("backward_input", p, "tiled_regblock", x, w, b, gy, d)
        assert any(k.startswith("conv2d_backward_input_col2im<")
                   for _, k, *_ in d.launches[n0:])
        assert_close(got, reference("backward_input", p, x, w, b, gy),
                     dtype=np.float32, terms=terms("backward_input", p))


SANITIZED = ["tile_plus1", "regblock_fwd_tails", "everything", "symmetric_pad_gt_input",
             "split_k_fwd"]


@pytest.mark.parametrize("order", ["ascending", "descending"])
@pytest.mark.parametrize("case_id", SANITIZED)
def test_sanitized_subset(case_id, order):
    """ASan/UBSan build, shared memory poisoned at every block start, threads run in
    both orders: out-of-bounds accesses, integer overflow and missing barriers
    fail here."""
    d = EmulatedDevice(sanitize=True, thread_order=order)
    _, xs, ws, kw = CASES[CASE_IDS.index(case_id)]
    for dtype in REAL_DTYPES:
        p = problem(xs, ws, dtype, kw)
        x, w, b, gy = random_inputs(np.random.default_rng(6), p, dtype)
        for pass_name in PASSES:
            want = reference(pass_name, p, x, w, b, gy)
            for variant in VARIANTS:
                got = _run(pass_name, p, variant, x, w, b, gy, d)
                assert_close(got, want, dtype=dtype, terms=terms(pass_name, p))


def test_backward_weight_through_the_planner(dev):
    """The weight-gradient op (padding and complex handling here; kernels and plan
    in cuda/conv2d_backward_weight.cu and _plan_conv.plan_conv2d_backward_weight)."""
    from gpuconv import _cpu_conv

    for case_id in ("everything", "reflect"):
        _, xs, ws, kw = CASES[CASE_IDS.index(case_id)]
        p = problem(xs, ws, np.float64, kw)
        x, w, b, gy = random_inputs(np.random.default_rng(8), p, np.float64)
        gw, gb = _gpu_conv.conv2d_backward_weight(gy, x, p, "auto", True, device=dev)
        rw, rb = _cpu_conv.conv2d_backward_weight(gy, x, as_dtype(p, np.float64),
                                                  "auto", True)
        assert_close(gw, rw, terms=p.N * p.OH * p.OW)
        assert_close(gb, rb, terms=p.N * p.OH * p.OW)


def test_docstring_examples_run():
    import doctest

    result = doctest.testmod(_gpu_conv, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


#: Output planes of a multiple of 4 pixels (the epilogue's 16-byte stores): tails in
#: M (tile of 128 rows) and in the output channels, bias, float64, split-K (a 4x4
#: image with 64 channels), the stride-1 input gradient.
DENSE_CASES = {
    "tails": ((3, 5, 8, 6), (33, 5, 3, 3), {"padding": 1}),
    "split_k": ((2, 64, 4, 4), (16, 64, 3, 3), {"padding": 1}),
    "one_by_one": ((2, 24, 6, 10), (40, 24, 1, 1), {}),
}


@pytest.mark.parametrize("dtype", REAL_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("pass_name", PASSES)
@pytest.mark.parametrize("case_id", list(DENSE_CASES))
def test_dense_epilogue_stores_match_the_scalar_path(case_id, pass_name, dtype, dev):
    """tiled_regblock's 16-byte epilogue stores (an output plane of a multiple of 4
    pixels, a 16-byte aligned buffer) give the bits of the element-wise stores (an
    `out` buffer one element off alignment takes those) and the reference's values;
    no element is left unwritten (NaN-poisoned outputs)."""
    xs, ws, kw = DENSE_CASES[case_id]
    p = problem(xs, ws, dtype, kw)
    x, w, b, gy = random_inputs(np.random.default_rng(31), p, dtype)
    shape = p.y_shape if pass_name == "forward" else p.x_shape
    size = int(np.prod(shape))
    results = []
    for offset in (0, 1):  # 1: the buffer is 4 or 8 bytes past a 16-byte boundary
        base = np.full(size + 8, np.nan, dtype=dtype)
        start = (-base.ctypes.data % 16) // base.itemsize + offset
        out = base[start:start + size].reshape(shape)
        assert (out.ctypes.data % 16 == 0) == (offset == 0)
        if pass_name == "forward":
            got = _gpu_conv.conv2d_forward(x, w, b, p, "tiled_regblock", device=dev,
                                           out=out)
        else:
            got = _gpu_conv.conv2d_backward_input(gy, w, p, "tiled_regblock",
                                                  device=dev, out=out)
        assert not np.isnan(got).any()
        results.append(got.copy())
    np.testing.assert_array_equal(results[0], results[1])
    want = reference(pass_name, p, x, w, b, gy)
    assert_close(results[0], want, dtype=dtype, terms=terms(pass_name, p))
