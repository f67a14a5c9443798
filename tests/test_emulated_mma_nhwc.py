"""The NHWC tensor-core pipeline (``algorithm='mma_nhwc'``, op level:
``conv2d_forward_mma_nhwc``, ``conv2d_backward_weight_mma_nhwc`` and their operand
packs in ``cuda/conv2d_mma.cu``),
emulated on the CPU: cp.async copies land only at their wait (``cuda/emu_runtime.h``),
so a stage read before its data arrived would read stale or poisoned words.

Each result is held to the element-wise product bounds of ``tests/_tol.py`` as in
``tests/test_emulated_mma.py`` (TF32: against the model of rounded operands and
against the unrounded float64 result), small integers exactly; the forward pass,
the stride-1 input gradient (the forward kernel on ``gy`` with the flipped weights)
and the weight gradient,
every registered tile, split-K, the float16 epilogue (bit for bit the cast float32
result), NaN/inf, the padding modes, an ASan/UBSan subset in both thread orders, and
the copies landing at their issue instead, warps run one at a time
(``cp_async='eager'``, ``warp_schedule='serial'``: a stage overwritten while another
warp still reads it would show), in both thread orders.
Where :func:`gpuconv._plan_conv.nhwc_applies` does not hold, ``'mma_nhwc'`` runs
the other mma kernels (checked too).
"""

from __future__ import annotations

import numpy as np
import pytest

from gpuconv import _gpu_conv, _plan_conv
from gpuconv._emulate import EmulatedDevice
from gpuconv._kernels import CONV_MMA_TILES
from tests._cuda_conv_cases import problem
from tests._emu_helpers import EMULATED, prepared_device
from tests.test_emulated_mma import (
    KINDS,
    SOURCES,
    _check,
    _inputs,
    _op,
    _problem,
    _wide,
)

pytestmark = [*EMULATED, pytest.mark.usefixtures("poisoned_conv_outputs")]

NHWC_PASSES = ("forward", "backward_input", "backward_weight")

# (id, x shape, w shape, keywords): channel counts that are multiples of the slab
# (16 TF32 / 32 float16 channels) where the pipeline should run
NHWC_CASES = [
    # C/groups = 32: forward; stride 2: the input gradient takes the other kernels
    ("strided", (2, 32, 7, 9), (20, 32, 3, 3), {"padding": 1, "stride": (2, 1)}),
    # groups, dilation, asymmetric padding; K/groups = 3
    ("groups_dilated", (1, 64, 6, 5), (6, 32, 2, 3),
     {"groups": 2, "padding": (1, 0, 2, 1), "dilation": 2}),
    ("kernel_gt_input", (1, 32, 3, 2), (3, 32, 5, 4), {"padding": (2, 2)}),
    # M and N tails (189 pixels, 96 output channels), 18 / 36 slabs over 9 taps:
    # the stages wrap many times; both passes
    ("tails", (3, 64, 9, 7), (96, 64, 3, 3), {"padding": 1}),
    # the input gradient only (C/groups = 20): dilation and asymmetric padding
    ("dgrad_dilated", (2, 20, 6, 7), (64, 20, 3, 2),
     {"padding": (1, 2, 0, 1), "dilation": (2, 1)}),
    ("dgrad_groups", (1, 6, 5, 5), (64, 3, 3, 3), {"groups": 2, "padding": 1}),
    # 1x1 with padding 1: the input gradient's flipped problem crops (padding -1)
    ("crop", (1, 32, 5, 4), (32, 32, 1, 1), {"padding": 1}),
    # padding modes: the padded copy, then the zero-padded pipeline (and the fold)
    ("reflect", (2, 32, 5, 6), (32, 32, 3, 3),
     {"padding": 1, "padding_mode": "reflect"}),
    ("circular", (1, 64, 4, 5), (64, 64, 3, 3),
     {"padding": (2, 1), "padding_mode": "circular"}),
]
IDS = [c[0] for c in NHWC_CASES]


@pytest.fixture(scope="module")
def dev():
    return prepared_device(SOURCES)


def _expected(p, pass_name, kind):
    """Whether the pipeline runs for this pass (on the zero-padded problem)."""
    p0 = _plan_conv.padded_problem(p) if _plan_conv.needs_padding_copy(p) else p
    return _plan_conv.nhwc_applies(p0, pass_name, kind)


def _run(pass_name, p, kind, dev, x, w, b, gy, **kw):
    n0 = len(dev.launches)
    got = _op(pass_name, p, x, w, b, gy, dev, algorithm="mma_nhwc", **kw)
    launched = [k for _, k, *_ in dev.launches[n0:]]
    return got, launched


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("pass_name", NHWC_PASSES)
@pytest.mark.parametrize("case", NHWC_CASES, ids=IDS)
def test_nhwc_within_the_product_bounds(case, pass_name, kind, dev):
    p = _problem(case, kind)
    x, w, b, gy = _inputs(p, kind, seed=31)
    got, launched = _run(pass_name, p, kind, dev, x, w, b, gy)
    nhwc = any("_mma_nhwc<" in k for k in launched)
    assert nhwc == _expected(p, pass_name, kind), launched
    if nhwc:
        packs = ("input", "gy") if pass_name == "backward_weight" else (
            "input", "weight")
        for what in packs:
            assert launched.count(f"conv2d_nhwc_pack_{what}<{_ctype(kind)}>") == 1
    else:
        assert any(k.startswith(f"conv2d_{pass_name}_mma<") for k in launched)
    assert not np.isnan(got).any(), "an output element was never written"
    _check(pass_name, p, kind, got, x, w, b, gy)
    xi, wi, bi, gyi = _inputs(p, kind, seed=37, integer=True)
    exact, _ = _run(pass_name, p, kind, dev, xi, wi, bi, gyi)
    np.testing.assert_array_equal(exact, _wide(pass_name, p, xi, wi, bi, gyi))


def _ctype(kind):
    return "float" if kind == "tf32" else "unsigned short"


def test_every_case_runs_the_pipeline_somewhere():
    """The grid is not vacuous: each case takes the pipeline for at least one pass,
    and both passes take it on several."""
    hits = {c[0]: [ps for ps in NHWC_PASSES for kind in KINDS
                   if _expected(_problem(c, kind), ps, kind)] for c in NHWC_CASES}
    assert all(hits.values()), hits
    assert sum("backward_input" in h for h in hits.values()) >= 5
    assert sum("forward" in h for h in hits.values()) >= 5


@pytest.mark.parametrize("tile", CONV_MMA_TILES, ids=str)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("pass_name", NHWC_PASSES)
def test_every_tile(tile, kind, pass_name, dev, monkeypatch):
    monkeypatch.setattr(_plan_conv, "mma_tile", lambda *a, **k: tile)
    p = _problem(NHWC_CASES[IDS.index("tails")], kind)
    x, w, b, gy = _inputs(p, kind, seed=3)
    got, launched = _run(pass_name, p, kind, dev, x, w, b, gy)
    kernel = "backward_weight" if pass_name == "backward_weight" else "forward"
    name = f"conv2d_{kernel}_mma_nhwc<{_ctype(kind)}, {', '.join(map(str, tile))}"
    assert any(k.startswith(name) for k in launched), launched
    assert not np.isnan(got).any()
    _check(pass_name, p, kind, got, x, w, b, gy)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("pass_name", NHWC_PASSES)
def test_split_k(kind, pass_name, dev, monkeypatch):
    """Split-K (forced: every two slabs a split; the weight gradient: as many splits
    as slabs), the slices added in split order: within the bounds, the bias once,
    exact on integers, bit-identical reruns."""
    monkeypatch.setattr(_plan_conv, "MMA_MIN_SPLIT_SLABS", 2)
    monkeypatch.setattr(_plan_conv, "split_count", lambda work, *a: work)
    p = _problem(NHWC_CASES[IDS.index("tails")], kind)
    x, w, b, gy = _inputs(p, kind, seed=23)
    got, launched = _run(pass_name, p, kind, dev, x, w, b, gy)
    assert any("_mma_nhwc<" in k for k in launched), launched
    assert "conv2d_backward_weight_reduce<float>" in launched, launched
    _check(pass_name, p, kind, got, x, w, b, gy)
    again, _ = _run(pass_name, p, kind, dev, x, w, b, gy)
    np.testing.assert_array_equal(again.view(np.uint32), got.view(np.uint32))
    xi, wi, bi, gyi = _inputs(p, kind, seed=29, integer=True)
    exact, _ = _run(pass_name, p, kind, dev, xi, wi, bi, gyi)
    np.testing.assert_array_equal(exact, _wide(pass_name, p, xi, wi, bi, gyi))


@pytest.mark.parametrize("pass_name", ["forward", "backward_input"])
def test_float16_epilogue_equals_the_cast_float32_result(pass_name, dev):
    """float16 data, no out: the kernel rounds the FP32 accumulator plus bias once
    (the instance writing float16 bits); bit for bit the float32 instance's result
    cast by NumPy. The cached plan replays on new buffers."""
    p = _problem(NHWC_CASES[IDS.index("tails")], "f16")
    rng = np.random.default_rng(41)
    from tests._cuda_conv_cases import random_inputs

    x, w, b, gy = random_inputs(rng, p, np.float16)
    b = b.astype(np.float32)
    assert _plan_conv.mma_out_dtype(p, pass_name, "f16") == np.float16

    def op(xx, gg, out=None):
        n0 = len(dev.launches)
        if pass_name == "forward":
            r = _gpu_conv.conv2d_forward(xx, w, b, p, "mma_nhwc", device=dev, out=out)
        else:
            r = _gpu_conv.conv2d_backward_input(gg, w, p, "mma_nhwc", device=dev,
                                                out=out)
        return r, [k for _, k, *_ in dev.launches[n0:]]

    got, launched = op(x, gy)
    mma = [k for k in launched if k.startswith("conv2d_forward_mma_nhwc<")]
    assert len(mma) == 1 and mma[0].endswith(", unsigned short>"), launched
    assert got.dtype == np.float16 and not np.isnan(got).any()
    shape = p.y_shape if pass_name == "forward" else p.x_shape
    f32, launched = op(x, gy, out=np.full(shape, np.nan, np.float32))
    assert not any(k.endswith(", unsigned short>") for k in launched
                   if "mma_nhwc" in k), launched
    np.testing.assert_array_equal(got.view(np.uint16),
                                  f32.astype(np.float16).view(np.uint16))
    neg, _ = op(-x, -gy)
    want = -got if pass_name == "backward_input" else None
    if want is None:  # the bias does not change sign: compare with the cast
        want = op(-x, -gy, out=np.full(shape, np.nan, np.float32))[0].astype(np.float16)
    np.testing.assert_array_equal(neg.view(np.uint16), want.view(np.uint16))


def test_nan_and_inf_propagate(dev):
    p = _problem(NHWC_CASES[IDS.index("tails")], "tf32")
    x, w, b, gy = _inputs(p, "tf32")
    x[0, 1, 4, 5] = np.nan
    x[1, 0, 2, 2] = np.inf
    gy[2, 3, 1, 1] = -np.inf
    gy[0, 5, 6, 0] = np.nan
    for pass_name in NHWC_PASSES:
        got, _ = _run(pass_name, p, "tf32", dev, x, w, b, gy)
        want = _wide(pass_name, p, x, w, b, gy)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_array_equal(np.isinf(got), np.isinf(want))


def test_routing(dev):
    """'mma_nhwc' is op-level: 'auto' never takes it; on float64 it is a
    ValueError naming it; the planner refuses a problem it does not apply to."""
    case = NHWC_CASES[IDS.index("tails")]
    p = _problem(case, "f16")
    x, w, b, gy = _inputs(p, "f16")
    n0 = len(dev.launches)
    _op("forward", p, x, w, b, gy, dev, algorithm="auto")
    assert all("nhwc" not in k for _, k, *_ in dev.launches[n0:])
    _, xs, ws, kw = case
    p64 = problem(xs, ws, np.float64, kw)
    with pytest.raises(ValueError, match="algorithm='mma_nhwc'"):
        _gpu_conv.conv2d_forward(x.astype(np.float64), w.astype(np.float64), None, p64,
                                 "mma_nhwc", device=dev)
    strided = _problem(NHWC_CASES[IDS.index("strided")], "f16")
    with pytest.raises(ValueError, match="nhwc_applies"):
        _plan_conv.plan_conv2d_mma_nhwc(strided, "backward_input", "f16", None, None,
                                        None, alloc=lambda s, d: np.empty(s, d))


def test_nhwc_problem_is_the_input_gradient():
    """The flipped forward problem computes conv2d_grad_input (float64, NumPy
    backend): the identity the input gradient's pipeline rests on."""
    import gpuconv

    rng = np.random.default_rng(8)
    for _, xs, ws, kw in NHWC_CASES:
        p = problem(xs, ws, np.float64, kw)
        if tuple(p.stride) != (1, 1) or _plan_conv.needs_padding_copy(p):
            continue
        q = _plan_conv.nhwc_problem(p, "backward_input")
        w = rng.standard_normal(p.w_shape)
        gy = rng.standard_normal(p.y_shape)
        g, kg, cg = p.groups, p.Kg, p.Cg
        wf = w.reshape(g, kg, cg, p.KH, p.KW).transpose(0, 2, 1, 3, 4)[..., ::-1, ::-1]
        wf = wf.reshape(p.C, kg, p.KH, p.KW)
        pt, pb, pl, pr = q.padding
        gyp = gy  # negative padding: crop, positive: zeros
        gyp = np.pad(gyp, ((0, 0), (0, 0), (max(pt, 0), max(pb, 0)),
                           (max(pl, 0), max(pr, 0))))
        gyp = gyp[:, :, max(-pt, 0):gyp.shape[2] - max(-pb, 0),
                  max(-pl, 0):gyp.shape[3] - max(-pr, 0)]
        got = gpuconv.conv2d(gyp, np.ascontiguousarray(wf), dilation=p.dilation,
                             groups=g, backend="numpy")
        want = gpuconv.conv2d_grad_input(p.x_shape, w, gy, backend="numpy", **{
            k: v for k, v in kw.items()})
        assert q.y_shape == p.x_shape
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("order", ["ascending", "descending"])
def test_sanitized_subset(order):
    d = EmulatedDevice(thread_order=order)
    for kind in KINDS:
        for pass_name, case_id in (("forward", "groups_dilated"),
                                   ("backward_input", "dgrad_groups"),
                                   ("backward_input", "crop"),
                                   ("backward_weight", "strided"),
                                   ("backward_weight", "groups_dilated")):
            p = _problem(NHWC_CASES[IDS.index(case_id)], kind)
            x, w, b, gy = _inputs(p, kind, seed=11)
            got, launched = _run(pass_name, p, kind, d, x, w, b, gy)
            assert any("mma_nhwc" in k for k in launched), launched
            assert not np.isnan(got).any()
            _check(pass_name, p, kind, got, x, w, b, gy)


@pytest.mark.parametrize("order", ["ascending", "descending"])
def test_copies_landing_at_the_issue(order):
    """cp.async copies landing as early as a GPU may (at the issue), one warp
    running to its barrier before the next starts: a stage refilled before every
    warp is done reading it (a load issued ahead of the barrier) would corrupt the
    sums. The "tails" case wraps the stages many times;
    every pass, both kinds, both thread orders."""
    d = EmulatedDevice(sanitize=False, thread_order=order, cp_async="eager",
                       warp_schedule="serial")
    d.prepare(SOURCES)
    for kind in KINDS:
        for pass_name in NHWC_PASSES:
            p = _problem(NHWC_CASES[IDS.index("tails")], kind)
            x, w, b, gy = _inputs(p, kind, seed=13)
            got, launched = _run(pass_name, p, kind, d, x, w, b, gy)
            assert any("mma_nhwc" in k for k in launched), launched
            assert not np.isnan(got).any()
            _check(pass_name, p, kind, got, x, w, b, gy)
