"""The float16 output of the tensor-core kernels (``cuda/conv2d_mma.cu``, ``OutT =
unsigned short``), emulated on the CPU.

Where a float16 result is final in the epilogue (the forward pass, the input
gradient of a zero-padded problem, one split: ``gpuconv._plan_conv.mma_out_dtype``)
the kernel rounds the FP32 accumulator plus bias once, to nearest even, and the op
returns float16. That must be bit for bit what the float32-output instance's result
cast by NumPy gives (the old path: float32 accumulators, then the API's one
rounding). Checked here on strides 1 and 2, groups, sizes one off the 64-tile both
ways, both gathers (element and channel-inner), bias, NaN/inf inputs, results that
overflow float16 and results in its subnormal range; split-K and the padding modes'
input gradient keep the float32 path; ``out=`` float16 on every path; the public
API passes the float16 result through without a copy.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import gpuconv
from gpuconv import _gpu_conv, _plan_conv
from tests._cuda_conv_cases import problem, random_inputs
from tests._emu_helpers import EMULATED, prepared_device

pytestmark = [*EMULATED, pytest.mark.usefixtures("poisoned_conv_outputs")]

SOURCES = ("conv2d_mma.cu", "conv2d_pad.cu", "conv2d_backward_weight.cu",
           "conv2d_forward.cu", "conv2d_backward_input.cu", "convert.cu")
PASSES = ("forward", "backward_input")

# (id, x shape, w shape, conv2d keywords): every one zero-padded, one split
CASES = [
    ("bias_3x3", (2, 8, 9, 10), (12, 8, 3, 3), {"padding": 1}),
    ("stride2", (2, 5, 11, 13), (7, 5, 3, 2), {"stride": 2, "padding": 1}),
    ("groups", (2, 6, 7, 8), (9, 2, 3, 3), {"groups": 3, "padding": 1}),
    # forward M = 63 pixels, 63 channels: one short of the 64 x 64 tile; the input
    # gradient's M = 63 too
    ("tile_minus1", (1, 4, 7, 9), (63, 4, 3, 3), {"padding": 1}),
    # M = 65 pixels, 65 input channels (the input gradient's N): one over
    ("tile_plus1", (1, 65, 5, 13), (5, 65, 3, 3), {"padding": 1}),
    # C/groups = 32, K/groups = 64: both channel-inner slab gathers
    ("slab", (1, 32, 6, 7), (64, 32, 3, 3), {"padding": 1}),
]
CASE_IDS = [c[0] for c in CASES]


@pytest.fixture(scope="module")
def dev():
    return prepared_device(SOURCES)



def _problem(case):
    _, xs, ws, kw = case
    return problem(xs, ws, np.float16, kw)


def _inputs(p, seed):
    x, w, b, gy = random_inputs(np.random.default_rng(seed), p, np.float16)
    return x, w, b.astype(np.float32), gy  # the API hands the bias as float32


def _op(pass_name, p, x, w, b, gy, dev, out=None, algorithm="mma"):
    if pass_name == "forward":
        return _gpu_conv.conv2d_forward(x, w, b, p, algorithm, device=dev, out=out)
    return _gpu_conv.conv2d_backward_input(gy, w, p, algorithm, device=dev, out=out)


def _shape(pass_name, p):
    return p.y_shape if pass_name == "forward" else p.x_shape


def _launched(dev, n0):
    return [k for _, k, *_ in dev.launches[n0:]]


def _old(pass_name, p, x, w, b, gy, dev):
    """The float32-output instance's result (out=float32 forces it), as the API
    rounded it: NumPy's float32 -> float16 cast."""
    out = np.full(_shape(pass_name, p), np.nan, np.float32)
    n0 = len(dev.launches)
    got = _op(pass_name, p, x, w, b, gy, dev, out=out)
    mma = [k for k in _launched(dev, n0) if "_mma<" in k]
    assert mma and all(not k.endswith(", unsigned short>") for k in mma), mma
    with np.errstate(over="ignore", invalid="ignore"):
        return got.astype(np.float16)


def _assert_bits(got, want):
    assert got.dtype == want.dtype == np.float16
    np.testing.assert_array_equal(got.view(np.uint16), want.view(np.uint16))


def _special(p, x, w, gy):
    """NaN and inf inputs; a few outputs overflowing float16 (not float32); one
    image in float16's subnormal range (2^-14 and below)."""
    x, w, gy = x.copy(), w.copy(), gy.copy()
    x[0, 0, 1, 2] = np.nan
    x[-1, -1, -1, -2] = np.inf
    gy[0, 0, 0, 1] = -np.inf
    gy[-1, -1, -2, -1] = np.nan
    x[0, :, 3:5, 3:5] = 250.0  # times w up to ~3 x 250, summed: past 65504
    gy[0, :, 3:5, 3:5] = 250.0
    w[0] *= np.float16(100.0)
    if x.shape[0] > 1:  # inputs ~2^-18: sums in the float16 subnormal range
        x[1] *= np.float16(2.0**-18)
        gy[1] *= np.float16(2.0**-18)
    return x, w, gy


@pytest.mark.parametrize("pass_name", PASSES)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_float16_epilogue_equals_the_cast_float32_result(case, pass_name, dev):
    p = _problem(case)
    x, w, b, gy = _inputs(p, seed=41)
    assert _plan_conv.mma_out_dtype(p, pass_name, "f16") == np.float16
    n0 = len(dev.launches)
    got = _op(pass_name, p, x, w, b, gy, dev)
    mma = [k for k in _launched(dev, n0) if "_mma<" in k]
    assert len(mma) == 1 and mma[0].endswith(", unsigned short>"), mma
    assert not np.isnan(got).any(), "an output element was never written"
    _assert_bits(got, _old(pass_name, p, x, w, b, gy, dev))
    # the cached plan replayed on new buffers, and a float16 out= (same instance)
    out = np.full(_shape(pass_name, p), np.nan, np.float16)
    n0 = len(dev.launches)
    again = _op(pass_name, p, -x, w, b, -gy, dev, out=out)
    assert again is out
    assert [k for k in _launched(dev, n0) if "_mma<" in k] == mma
    _assert_bits(again, _old(pass_name, p, -x, w, b, -gy, dev))


@pytest.mark.parametrize("pass_name", PASSES)
@pytest.mark.parametrize("case_id", ["bias_3x3", "stride2", "tile_plus1"])
def test_nan_inf_overflow_and_subnormal_results(case_id, pass_name, dev):
    p = _problem(CASES[CASE_IDS.index(case_id)])
    x, w, b, gy = _inputs(p, seed=43)
    x, w, gy = _special(p, x, w, gy)
    b = b * np.float32(2.0**-18)  # keeps image 1's results subnormal
    got = _op(pass_name, p, x, w, b, gy, dev)
    want = _old(pass_name, p, x, w, b, gy, dev)
    _assert_bits(got, want)
    assert np.isnan(got).any() and np.isinf(got).any()
    if p.N > 1:
        tiny = np.abs(got[1].astype(np.float32))
        assert ((tiny > 0) & (tiny < 2.0**-14)).any()  # float16 subnormals


def test_split_k_and_folds_keep_the_float32_path(dev, monkeypatch):
    """Split-K (forced) and the padding modes' input gradient: the op returns the
    float32 result (the API rounds it once); with a float16 ``out`` it rounds it
    into ``out`` itself, the same bits. A padding mode's forward pass writes
    float16 (the padded copy is only its input)."""
    monkeypatch.setattr(_plan_conv, "MMA_MIN_SPLIT_SLABS", 1)
    p = _problem(CASES[CASE_IDS.index("slab")])
    x, w, b, gy = _inputs(p, seed=47)
    for pass_name in PASSES:
        assert _plan_conv.mma_out_dtype(p, pass_name, "f16") == np.float32
        n0 = len(dev.launches)
        got = _op(pass_name, p, x, w, b, gy, dev)
        assert got.dtype == np.float32
        assert "conv2d_backward_weight_reduce<float>" in _launched(dev, n0)
        want = _old(pass_name, p, x, w, b, gy, dev)
        out = np.full(_shape(pass_name, p), np.nan, np.float16)
        assert _op(pass_name, p, x, w, b, gy, dev, out=out) is out
        _assert_bits(out, want)
        _assert_bits(got.astype(np.float16), want)
    monkeypatch.undo()
    q = problem((2, 3, 7, 8), (4, 3, 3, 4), np.float16,
                {"padding": (2, 1, 3, 0), "padding_mode": "reflect"})
    x, w, b, gy = _inputs(q, seed=53)
    assert _plan_conv.mma_out_dtype(q, "forward", "f16") == np.float16
    assert _plan_conv.mma_out_dtype(q, "backward_input", "f16") == np.float32
    y = _op("forward", q, x, w, b, gy, dev)
    _assert_bits(y, _old("forward", q, x, w, b, gy, dev))
    gx = _op("backward_input", q, x, w, b, gy, dev)
    assert gx.dtype == np.float32
    want = _old("backward_input", q, x, w, b, gy, dev)
    out = np.full(q.x_shape, np.nan, np.float16)
    _op("backward_input", q, x, w, b, gy, dev, out=out)
    _assert_bits(out, want)


def test_other_paths_unchanged(dev):
    """TF32, the FP32 kernels, the weight gradient: float32 as before; a float16
    ``out`` of the FP32 kernels gets their float32 result rounded once; a float16
    ``out`` of a float32 problem is a ValueError naming the accepted dtype."""
    case = CASES[CASE_IDS.index("bias_3x3")]
    p = _problem(case)
    x, w, b, gy = _inputs(p, seed=59)
    gw, _ = _gpu_conv.conv2d_backward_weight(gy, x, p, "mma", False, device=dev)
    assert gw.dtype == np.float32
    y32 = _op("forward", p, x, w, b, gy, dev, algorithm="tiled_regblock")
    assert y32.dtype == np.float32
    out = np.full(p.y_shape, np.nan, np.float16)
    _op("forward", p, x, w, b, gy, dev, out=out, algorithm="tiled_regblock")
    _assert_bits(out, y32.astype(np.float16))
    t = dataclasses.replace(problem(case[1], case[2], np.float32, case[3]),
                            precision="tf32")
    x32, w32 = x.astype(np.float32), w.astype(np.float32)
    assert _op("forward", t, x32, w32, b, None, dev).dtype == np.float32
    with pytest.raises(ValueError, match="dtype float32, got"):
        _op("forward", t, x32, w32, b, None, dev,
            out=np.zeros(t.y_shape, np.float16))
    with pytest.raises(ValueError, match="dtype float32 or float16, got"):
        _op("forward", p, x, w, b, None, dev, out=np.zeros(p.y_shape, np.float64))


def test_public_api_passes_the_float16_result_through(dev, monkeypatch):
    """``gpuconv.conv2d`` / ``conv2d_grad_input`` on float16 data return the op's
    float16 array itself (no ``astype``), equal to the float32 path's rounding."""
    from gpuconv import _backend

    results = []

    def bind(fn):
        def call(*a):
            r = fn(*a, device=dev)
            results.append(r)
            return r
        return staticmethod(call)

    names = ("conv2d_forward", "conv2d_backward_input")
    ops = type("EmulatedOps", (), {n: bind(getattr(_gpu_conv, n)) for n in names})
    monkeypatch.setattr(_backend, "backend_ops", lambda name: ops)
    monkeypatch.setattr(_gpu_conv, "mma_preferred", lambda *a: True)
    case = CASES[CASE_IDS.index("groups")]
    p = _problem(case)
    x, w, b, gy = _inputs(p, seed=61)
    y = gpuconv.conv2d(x, w, b.astype(np.float16), **case[3])
    assert y is results[-1] and y.dtype == np.float16
    gx = gpuconv.conv2d_grad_input(x.shape, w, gy, **case[3])
    assert gx is results[-1] and gx.dtype == np.float16
    b16 = b.astype(np.float16).astype(np.float32)
    _assert_bits(y, _old("forward", p, x, w, b16, gy, dev))
    _assert_bits(gx, _old("backward_input", p, x, w, b16, gy, dev))


def test_sanitized(dev):
    """The float16-output instances under ASan/UBSan (threads in descending
    order): the same bits as the unsanitized run."""
    from gpuconv._emulate import EmulatedDevice

    d = EmulatedDevice(thread_order="descending")
    for case_id in ("tile_plus1", "slab"):
        p = _problem(CASES[CASE_IDS.index(case_id)])
        x, w, b, gy = _inputs(p, seed=67)
        for pass_name in PASSES:
            n0 = len(d.launches)
            got = _op(pass_name, p, x, w, b, gy, d)
            assert _launched(d, n0)[-1].endswith(", unsigned short>")
            _assert_bits(got, _op(pass_name, p, x, w, b, gy, dev))
