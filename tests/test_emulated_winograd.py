"""algorithm='winograd' (Winograd F(2x2, 3x3)) and 'winograd4' (F(4x4, 3x3)),
cuda/conv2d_winograd.cu, on the CPU emulation harness.

References: the float64 direct sum (the NumPy backend) within the Winograd error
bound of ``tests/_tol.py`` (element-wise, from Winograd on absolute values), and a
float64 NumPy Winograd (``tests/ref_conv.winograd_f23``) that is itself checked
against the direct sum. Outputs are poisoned with NaN before every launch.
"""

from __future__ import annotations

import numpy as np
import pytest

from gpuconv import _gpu_conv, _plan_conv
from gpuconv._emulate import EmulatedDevice
from gpuconv._padding import fold_matrix
from gpuconv._plan_conv import padded_problem
from tests._cuda_conv_cases import problem, random_inputs, reference, run_op
from tests._emu_helpers import EMULATED, prepared_device
from tests._tol import assert_winograd_within
from tests.ref_conv import (
    pad_input,
    winograd_f23,
    winograd_f32_wgrad,
    winograd_transposed_filter,
)

pytestmark = [*EMULATED, pytest.mark.usefixtures("poisoned_conv_outputs")]

SOURCES = ("conv2d_forward.cu", "conv2d_backward_input.cu",
           "conv2d_backward_weight.cu", "conv2d_pad.cu", "conv2d_winograd.cu",
           "conv2d_mma.cu", "convert.cu")
#: The transforms each pass launches (conv2d_winograd_<step><T, M>).
WINOGRAD_KERNELS = {
    "forward": ("weight", "input", "output"),
    "backward_input": ("weight", "input", "output"),
    "backward_weight": ("input", "wgrad_gy", "wgrad_output"),
}
PASSES = ("forward", "backward_input", "backward_weight")
VARIANTS = ("winograd", "winograd4")
TILE = {"winograd": 2, "winograd4": 4}

#: 3x3 stride-1 problems: odd outputs (a partial last tile), no padding,
#: asymmetric pads with groups, a 1x2 image, depthwise, many channels on a small
#: image (split-K in the 16 GEMMs), a padding mode (padded first; the input gradient
#: folded back; circular pads larger than the image), pads over 2 (the input
#: gradient's transposed padding 2 - pad < 0).
CASES = {
    "basic": ((2, 5, 8, 8), (6, 5, 3, 3), {"padding": 1}),
    "odd_tails": ((2, 3, 9, 11), (4, 3, 3, 3), {"padding": 1}),
    "valid": ((1, 4, 7, 6), (3, 4, 3, 3), {}),
    "asym_groups": ((1, 4, 7, 6), (6, 2, 3, 3), {"padding": (2, 0, 1, 2), "groups": 2}),
    "tiny_image": ((1, 3, 1, 2), (2, 3, 3, 3), {"padding": 1}),
    "depthwise": ((2, 4, 6, 5), (4, 1, 3, 3), {"padding": 1, "groups": 4}),
    "split_k": ((1, 264, 3, 3), (40, 264, 3, 3), {"padding": 1}),
    "reflect": ((2, 3, 7, 8), (4, 3, 3, 3),
                {"padding": (2, 1, 1, 0), "padding_mode": "reflect"}),
    "pads_over_2": ((2, 3, 3, 4), (4, 3, 3, 3), {"padding": (3, 5, 0, 4)}),
    # circular pads larger than a 2x1 image, depthwise: the fold sums up to 15 terms
    "circular_gt_image": ((1, 2, 2, 1), (2, 1, 3, 3),
                          {"padding": 2, "padding_mode": "circular", "groups": 2}),
}
DTYPES = (np.float32, np.float64)


@pytest.fixture(scope="module")
def dev():
    return prepared_device(SOURCES)



_run = run_op  # one op into a NaN-poisoned out buffer (tests/_cuda_conv_cases.py)


def _bound(pass_name, p, x, w, b, gy, variant="winograd"):
    """The arguments of ``assert_winograd_within`` but the arrays and dtype:
    ``w_abs`` (Winograd on absolute values, per output), ``reduction`` (the terms of
    one GEMM), ``variant``, ``fold_terms`` and ``reference_terms``, on the kernels'
    geometry (padding modes: padded input, gradient folded back with the padding's
    0/1 matrices)."""
    kp = padded_problem(p) if _plan_conv.needs_padding_copy(p) else p
    pt, pb, pl, pr = p.padding
    if pass_name == "backward_weight":  # the reduction: the 2x2 tiles of gy
        src = x if kp is p else pad_input(x, (pt, pb, pl, pr), p.padding_mode)
        m = TILE[variant]
        wa = winograd_f32_wgrad(src, gy, kp.padding[0], kp.padding[2], p.groups,
                                absolute=True, m=m)
        return {"w_abs": wa, "reduction": p.N * -(-p.OH // m) * -(-p.OW // m),
                "variant": variant, "reference_terms": p.N * p.OH * p.OW}
    if pass_name == "forward":
        src = x
        if kp is not p:
            src = pad_input(x, (pt, pb, pl, pr), p.padding_mode)
        pad = kp.padding
        wa = winograd_f23(src, w, pad[0], pad[2], p.OH, p.OW, p.groups, absolute=True,
                          m=TILE[variant])
        return {"w_abs": wa + np.abs(b).reshape(1, -1, 1, 1), "reduction": p.Cg,
                "variant": variant, "reference_terms": p.Cg * 9 + 1}
    wt = winograd_transposed_filter(w, p.groups)
    wa = winograd_f23(gy, wt, 2 - kp.padding[0], 2 - kp.padding[2], kp.H, kp.W,
                      p.groups, absolute=True, m=TILE[variant])
    fold = 1
    if kp is not p:
        fh = fold_matrix(p.H, pt, pb, p.padding_mode, np.float64)
        fw = fold_matrix(p.W, pl, pr, p.padding_mode, np.float64)
        wa = np.einsum("ih,nchw,wj->ncij", fh.T, wa, fw)
        fold = int(fh.sum(axis=0).max() * fw.sum(axis=0).max())
    return {"w_abs": wa, "reduction": p.Kg, "variant": variant, "fold_terms": fold,
            "reference_terms": p.Kg * 9 * fold}


def test_numpy_winograd_equals_the_direct_sum():
    """The float64 model of the kernels (ref_conv.winograd_f23) is the correlation,
    for both passes' geometry, and its absolute version bounds |x| * |w|."""
    rng = np.random.default_rng(0)
    for xs, ws, kw in CASES.values():
        p = problem(xs, ws, np.float64, kw)
        if _plan_conv.needs_padding_copy(p):
            continue
        x, w, _, gy = random_inputs(rng, p, np.float64)
        pt, _, pl, _ = p.padding
        y = winograd_f23(x, w, pt, pl, p.OH, p.OW, p.groups)
        np.testing.assert_allclose(y, reference("forward", p, x, w, None, gy),
                                   rtol=1e-12, atol=1e-12)
        gx = winograd_f23(gy, winograd_transposed_filter(w, p.groups), 2 - pt, 2 - pl,
                          p.H, p.W, p.groups)
        np.testing.assert_allclose(gx, reference("backward_input", p, x, w, None, gy),
                                   rtol=1e-12, atol=1e-12)
        gw = winograd_f32_wgrad(x, gy, pt, pl, p.groups)
        np.testing.assert_allclose(gw, reference("backward_weight", p, x, w, None, gy),
                                   rtol=1e-12, atol=1e-12)
        for m in (2, 4):  # the F(4x4, 3x3) model as well
            np.testing.assert_allclose(
                winograd_f23(x, w, pt, pl, p.OH, p.OW, p.groups, m=m),
                reference("forward", p, x, w, None, gy), rtol=1e-11, atol=1e-11)
            np.testing.assert_allclose(
                winograd_f32_wgrad(x, gy, pt, pl, p.groups, m=m),
                reference("backward_weight", p, x, w, None, gy), rtol=1e-11, atol=1e-11)
        ax, aw, agy = np.abs(x), np.abs(w), np.abs(gy)
        direct_abs = reference("forward", p, ax, aw, None, gy)
        assert np.all(winograd_f23(x, w, pt, pl, p.OH, p.OW, p.groups, absolute=True)
                      >= direct_abs - 1e-12)
        # the other passes' W_abs bound their direct sums too (the reference term)
        gx_abs = winograd_f23(gy, winograd_transposed_filter(w, p.groups), 2 - pt,
                              2 - pl, p.H, p.W, p.groups, absolute=True)
        assert np.all(gx_abs >= reference("backward_input", p, x, aw, None, agy)
                      - 1e-12)
        gw_abs = winograd_f32_wgrad(x, gy, pt, pl, p.groups, absolute=True)
        assert np.all(gw_abs >= reference("backward_weight", p, ax, w, None, agy)
                      - 1e-12)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("pass_name", PASSES)
@pytest.mark.parametrize("case_id", list(CASES))
def test_winograd_within_its_bound(case_id, pass_name, dtype, variant, dev):
    xs, ws, kw = CASES[case_id]
    p = problem(xs, ws, dtype, kw)
    assert _plan_conv.winograd_applies(_gpu_conv.kernel_problem(p), pass_name, variant)
    x, w, b, gy = random_inputs(np.random.default_rng(5), p, dtype)
    n0 = len(dev.launches)
    got = _run(pass_name, p, variant, x, w, b, gy, dev)
    kernels = [k for _, k, *_ in dev.launches[n0:]]
    ctype = "float" if np.dtype(dtype) == np.float32 else "double"
    assert all(f"conv2d_winograd_{step}<{ctype}, {TILE[variant]}>" in kernels
               for step in WINOGRAD_KERNELS[pass_name]), kernels
    if case_id == "split_k" and pass_name == "forward":  # 264 channels, 1 tile
        assert f"conv2d_forward_split_reduce<{ctype}>" in kernels
    assert got.dtype == np.dtype(dtype)
    assert not np.isnan(got).any(), "an output element was never written"
    want = reference(pass_name, p, x, w, b, gy)
    assert_winograd_within(got, want, dtype=dtype,
                           **_bound(pass_name, p, x, w, b, gy, variant))
    np.testing.assert_array_equal(_run(pass_name, p, variant, x, w, b, gy, dev), got)


FALLBACKS = [
    ((1, 3, 9, 9), (4, 3, 3, 3), {"padding": 1, "stride": 2}),
    ((1, 3, 9, 9), (4, 3, 3, 3), {"padding": 2, "dilation": 2}),
    ((1, 3, 9, 9), (4, 3, 5, 5), {"padding": 2}),
]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("pass_name", ["forward", "backward_input", "backward_weight"])
def test_winograd_falls_back_to_auto(pass_name, variant, dev):
    """Where Winograd does not apply (stride 2, dilation 2, a 5x5 filter,
    precision='tf32'), 'winograd' runs what 'auto' runs, bit for bit."""
    import dataclasses

    probs = [problem(xs, ws, np.float32, kw) for xs, ws, kw in FALLBACKS]
    tf32 = problem((1, 8, 6, 6), (8, 8, 3, 3), np.float32, {"padding": 1})
    probs.append(dataclasses.replace(tf32, precision="tf32"))
    for p in probs:
        kp = _gpu_conv.kernel_problem(p)
        assert not _plan_conv.winograd_applies(kp, pass_name, variant)
        x, w, b, gy = random_inputs(np.random.default_rng(6), p, np.float32)
        n0 = len(dev.launches)
        if pass_name == "backward_weight":
            got = _gpu_conv.conv2d_backward_weight(gy, x, p, variant, False,
                                                   device=dev)[0]
        else:
            got = _run(pass_name, p, variant, x, w, b, gy, dev)
        assert not any("winograd" in k for _, k, *_ in dev.launches[n0:])
        if pass_name == "backward_weight":
            want = _gpu_conv.conv2d_backward_weight(gy, x, p, "auto", False,
                                                    device=dev)[0]
        else:
            want = _run(pass_name, p, "auto", x, w, b, gy, dev)
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype, precision", [(np.float16, None),
                                              (np.float32, "tf32")])
def test_winograd_falls_back_to_the_tensor_cores_as_auto(dtype, precision, dev):
    """Where Winograd does not apply and 'auto' takes the tensor cores (a 1x1
    float16 input gradient of 64 channels; the same in TF32), 'winograd' and
    'winograd4' run them too: the same kernels, the same bits (and result dtype)."""
    import dataclasses

    p = problem((1, 64, 2, 3), (8, 64, 1, 1), dtype, {})
    p = dataclasses.replace(p, precision=precision)
    assert _plan_conv.mma_preferred(p, "backward_input")
    _, w, _, gy = random_inputs(np.random.default_rng(10), p, dtype)
    got = {}
    for algorithm in ("auto", *VARIANTS):
        n0 = len(dev.launches)
        got[algorithm] = _gpu_conv.conv2d_backward_input(gy, w, p, algorithm,
                                                         device=dev)
        kernels = [k.split("<")[0] for _, k, *_ in dev.launches[n0:]]
        assert "conv2d_backward_input_mma" in kernels, (algorithm, kernels)
    for variant in VARIANTS:
        assert got[variant].dtype == got["auto"].dtype
        np.testing.assert_array_equal(got[variant], got["auto"])


@pytest.mark.parametrize("variant", VARIANTS)
def test_weight_gradient_route_is_part_of_the_plan(variant, dev, monkeypatch):
    """The weight gradient decides Winograd (and so whether the bias gradient is
    fused) before its plan is looked up: a replayed plan of the other route must not
    be taken. Here the workspace cap changes between two calls of one problem; the
    second (no longer Winograd) still writes the bias gradient."""
    p = problem((1, 2, 5, 4), (3, 2, 3, 3), np.float32, {"padding": 1})
    x, _, _, gy = random_inputs(np.random.default_rng(11), p, np.float32)
    want_gw = reference("backward_weight", p, x, None, None, gy)
    want_gb = gy.astype(np.float64).sum(axis=(0, 2, 3))
    for cap in (_plan_conv.WINOGRAD_MAX_BYTES, 0, _plan_conv.WINOGRAD_MAX_BYTES):
        monkeypatch.setattr(_plan_conv, "WINOGRAD_MAX_BYTES", cap)
        n0 = len(dev.launches)
        gw, gb = _gpu_conv.conv2d_backward_weight(gy, x, p, variant, True,
                                                  device=dev)
        wino = any(k.startswith("conv2d_winograd_") and
                   k.endswith(f", {TILE[variant]}>") for _, k, *_ in dev.launches[n0:])
        assert wino == (cap > 0)
        np.testing.assert_allclose(gw, want_gw, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(gb, want_gb, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("variant", VARIANTS)
def test_non_finite_inputs_stay_in_their_tiles(variant, dev):
    """A NaN or inf reaches (at most) the outputs of the 2x2 tiles whose 4x4 patches
    hold it, as NaN or inf (cuDNN's Winograd behaves alike); every other output is
    within the bound, and every output the direct sum makes non-finite is
    non-finite."""
    p = problem((1, 2, 10, 10), (3, 2, 3, 3), np.float32, {"padding": 1})
    x, w, b, gy = random_inputs(np.random.default_rng(7), p, np.float32)
    x[0, 0, 4, 4] = np.nan
    x[0, 1, 8, 1] = np.inf
    got = _run("forward", p, variant, x, w, b, gy, dev)
    want = reference("forward", p, x, w, b, gy)
    assert np.all(~np.isfinite(got[~np.isfinite(want)]))
    m = TILE[variant]
    touched = np.zeros(p.y_shape, bool)
    for h, wd in ((4, 4), (8, 1)):  # input pixel -> tiles whose patch holds it
        for ty in range(-(-p.OH // m)):
            for tx in range(-(-p.OW // m)):
                if (m * ty - 1 <= h < m * ty + m + 1
                        and m * tx - 1 <= wd < m * tx + m + 1):
                    touched[:, :, m * ty:m * ty + m, m * tx:m * tx + m] = True
    assert np.isfinite(got[~touched]).all()
    xf = np.where(np.isfinite(x), x, 0).astype(np.float32)
    bound = _bound("forward", p, xf, w, b, gy, variant)
    bound["w_abs"] = bound["w_abs"][~touched]
    assert_winograd_within(got[~touched], want[~touched], dtype=np.float32, **bound)


@pytest.mark.parametrize("variant", VARIANTS)
def test_float16_data_runs_winograd_on_float32(variant, dev):
    """float16 operands are widened (exact) and transformed in float32; the op's
    float32 result is within the bound of the widened operands."""
    p = problem((2, 4, 6, 7), (5, 4, 3, 3), np.float16, {"padding": 1})
    x, w, b, gy = random_inputs(np.random.default_rng(8), p, np.float16)
    for pass_name in PASSES:
        got = _run(pass_name, p, variant, x, w, b.astype(np.float32), gy, dev)
        x32, w32, b32, gy32 = (a.astype(np.float32) for a in (x, w, b, gy))
        want = reference(pass_name, p, x32, w32, b32, gy32)
        assert_winograd_within(got, want, dtype=np.float32,
                               **_bound(pass_name, p, x32, w32, b32, gy32, variant))


@pytest.mark.parametrize("order", ["ascending", "descending"])
def test_sanitized(order):
    """ASan/UBSan build, both thread orders: the transforms and the GEMM between them
    stay in bounds (odd tiles, asymmetric pads, groups; split-K; pads over 2)."""
    d = EmulatedDevice(sanitize=True, thread_order=order)
    for case_id, variant in (("asym_groups", "winograd"), ("split_k", "winograd"),
                             ("odd_tails", "winograd4"), ("pads_over_2", "winograd"),
                             ("pads_over_2", "winograd4")):
        xs, ws, kw = CASES[case_id]
        p = problem(xs, ws, np.float32, kw)
        x, w, b, gy = random_inputs(np.random.default_rng(9), p, np.float32)
        for pass_name in PASSES:
            got = _run(pass_name, p, variant, x, w, b, gy, d)
            assert_winograd_within(got, reference(pass_name, p, x, w, b, gy),
                                   dtype=np.float32,
                                   **_bound(pass_name, p, x, w, b, gy, variant))
