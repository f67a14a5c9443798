"""The tensor-core path on a real GPU (marker ``gpu``; skipped without one, and on
devices older than compute capability 8.0).

- ``cuda/mma.cuh`` alone (``tests/emu_kernels/mma_probe.cu``): ``to_tf32`` equals
  ``cvt.rna`` as modelled (:func:`gpuconv._precision.round_tf32`) bit for bit; the
  mma equals the NumPy PTX-layout model of ``tests/test_mma.py`` within float32
  summation error over its K terms (NVIDIA does not specify the order and rounding
  inside one mma; the emulator's bits define our model, the hardware must be within
  ``gamma_{K+1}(2^-24) * (|c| + sum |a||b|)`` of it);
- ``ldmatrix_x4`` and the cp.async pipeline of ``cuda/common.cuh`` against their
  models; the NHWC pipeline (``algorithm='mma_nhwc'``) within the bounds;
- conv2d forward and input gradient with ``precision='tf32'`` and float16 through
  the public API on CuPy arrays, within the bounds of ``tests/_tol.py``: on the mma
  kernels (the dispatch rule ``mma_preferred`` forced to take them on these small
  cases) and, on a few awkward cases, on the SIMT route (``cuda/convert.cu`` and the
  FP32 kernels), which must also equal the FP32 kernels on operands converted by
  NumPy bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest

import gpuconv
from gpuconv import _gpu_conv
from gpuconv._precision import round_tf32
from tests._cuda_conv_cases import CASE_IDS, CASES, api_pass, problem, random_inputs
from tests._cuda_conv_cases import terms as n_terms
from tests._tol import (
    FP16_HALF_SUBNORMAL,
    FP16_UNIT,
    FP32_UNIT,
    TF32_UNIT,
    assert_products_within,
    gamma,
)
from tests.test_mma import KDIR, _operand_values, _random_fragments, mma_model

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def cp():
    import cupy

    if int(cupy.cuda.Device().compute_capability) < 80:
        pytest.skip("tensor-core kernels need compute capability 8.0 or newer")
    return cupy


@pytest.fixture(scope="module")
def probe(cp):
    from gpuconv._kernels import source_dir

    return cp.RawModule(
        code=(KDIR / "mma_probe.cu").read_text(),
        options=("--std=c++17", f"-I{source_dir()}"),
        name_expressions=["tf32_round_probe", "mma_probe<false>", "mma_probe<true>",
                          "ldmatrix_probe<false>", "ldmatrix_probe<true>",
                          "cp_async_probe"],
    )


def test_ldmatrix_and_cp_async_on_the_gpu(cp, probe):
    """ldmatrix.x4 (and .trans) equal the PTX models of tests/test_mma.py; cp.async
    lands (zeros where predicated off) by its wait_group: group 0 after wait_group
    1, group 1 after wait_group 0."""
    from tests.test_mma import _cp_async_buffers, ldmatrix_model, ldmatrix_trans_model

    rng = np.random.default_rng(12)
    words = rng.integers(0, 2**32, size=(64, 4), dtype=np.uint64).astype(np.uint32)
    rows = rng.permutation(64)[:32].astype(np.int32)
    for trans, model in ((False, ldmatrix_model), (True, ldmatrix_trans_model)):
        out = cp.zeros((32, 4), cp.uint32)
        probe.get_function(f"ldmatrix_probe<{str(trans).lower()}>")(
            (1,), (32,), (cp.asarray(words), cp.asarray(rows), out))
        np.testing.assert_array_equal(cp.asnumpy(out), model(words, rows))
    src, init, seen = _cp_async_buffers(rng)
    d = [cp.asarray(a) for a in (src, init, *seen)]
    probe.get_function("cp_async_probe")((1,), (64,), (*d, np.int32(0), np.int32(0)))
    zero = (np.arange(64) % 3 == 0)[:, None]
    np.testing.assert_array_equal(cp.asnumpy(d[3]), np.where(zero, 0, src[:64]))
    np.testing.assert_array_equal(cp.asnumpy(d[4]), src[64:])


def test_to_tf32_on_the_gpu(cp, probe):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 2**32, 100_000, dtype=np.uint64).astype(np.uint32).view(
        np.float32)
    dx = cp.asarray(x)
    dy = cp.zeros(x.size, cp.uint32)
    probe.get_function("tf32_round_probe")((64,), (256,), (dx, dy, np.int64(x.size)))
    np.testing.assert_array_equal(cp.asnumpy(dy), round_tf32(x).view(np.uint32))


@pytest.mark.parametrize("f16", [False, True], ids=["tf32", "f16"])
def test_mma_on_the_gpu_is_within_fp32_summation_of_the_model(cp, probe, f16):
    rng = np.random.default_rng(1)
    warps = 8
    a, b, c = _random_fragments(rng, warps, f16)
    d = cp.zeros((warps, 32, 4), cp.float32)
    probe.get_function(f"mma_probe<{str(f16).lower()}>")(
        (2,), (32 * warps // 2,), (cp.asarray(a), cp.asarray(b), cp.asarray(c), d))
    got = cp.asnumpy(d)
    K = 16 if f16 else 8
    for w in range(warps):
        want = mma_model(a[w], b[w], c[w], f16)
        # scale: |c| + sum |a||b| per output, from the model on absolute values
        abs_a = np.abs(_operand_values(a[w], f16))
        abs_b = np.abs(_operand_values(b[w], f16))
        ua = np.zeros_like(a[w])
        ub = np.zeros_like(b[w])
        if f16:
            def pack(v):
                h = v.astype(np.float16).view(np.uint16).astype(np.uint32)
                return h[..., 0] | (h[..., 1] << 16)
            ua, ub = pack(abs_a), pack(abs_b)
        else:
            ua = abs_a[..., 0].view(np.uint32)
            ub = abs_b[..., 0].view(np.uint32)
        scale = mma_model(ua, ub, np.abs(c[w]), f16)
        limit = gamma(K + 1, FP32_UNIT) * scale
        assert (np.abs(got[w] - want) <= limit).all(), (w, np.abs(got[w] - want).max())


def _assert_within_the_bounds(got, pass_name, p, kind, kw, x, w, b, gy, *,
                              half: bool = True):
    """``got`` against the float64 NumPy backend within the bounds of tests/_tol.py:
    the TF32 operand bound, or float32 summation (plus one float16 rounding when
    ``half``: a float16 result); the padding modes' folds add up to 9 border copies."""
    def wide(f):
        return api_pass(pass_name, *(f(a) for a in (x, w, b, gy)), kw,
                        backend="numpy")

    ref = wide(lambda a: a.astype(np.float64))
    s = wide(lambda a: np.abs(a.astype(np.float64)))
    n = (p.N * p.OH * p.OW if pass_name == "backward_weight"
         else n_terms(pass_name, p)) * (9 if p.padding_mode != "zeros" else 1)
    if kind == "tf32":
        assert_products_within(got, ref, s, n, operand_unit=TF32_UNIT)
    elif half:
        assert_products_within(got, ref, s, n, output_unit=FP16_UNIT,
                               output_atol=FP16_HALF_SUBNORMAL)
    else:
        assert_products_within(got, ref, s, n)


@pytest.mark.parametrize("kind", ["tf32", "f16"])
@pytest.mark.parametrize("pass_name", ["forward", "backward_input"])
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_conv_on_tensor_cores_within_the_bounds(case, pass_name, kind, cp,
                                                monkeypatch):
    monkeypatch.setattr(_gpu_conv, "mma_preferred", lambda *a: True)
    _, xs, ws, kw = case
    dtype = np.float16 if kind == "f16" else np.float32
    p = problem(xs, ws, dtype, kw)
    x, w, b, gy = random_inputs(np.random.default_rng(7), p, dtype)
    prec = "tf32" if kind == "tf32" else "highest"
    assert gpuconv.choose_algorithm(xs, ws, pass_name, dtype=dtype, precision=prec,
                                    **kw) == "mma"
    dx, dw, db, dgy = (cp.asarray(a) for a in (x, w, b, gy))
    got = cp.asnumpy(api_pass(pass_name, dx, dw, db, dgy, dict(kw, precision=prec)))
    assert got.dtype == dtype and not np.isnan(got).any()
    _assert_within_the_bounds(got, pass_name, p, kind, kw, x, w, b, gy)


def _nhwc_params():
    """(case, pass, kind) where the NHWC pipeline runs (its fallback elsewhere is
    the emulated tests' business)."""
    import dataclasses

    from gpuconv import _plan_conv
    from tests.test_emulated_mma_nhwc import NHWC_CASES

    cases = NHWC_CASES + [("resnet_like", (4, 64, 28, 28), (128, 64, 3, 3),
                           {"padding": 1})]
    params = []
    for case in cases:
        for pass_name in ("forward", "backward_input", "backward_weight"):
            for kind in ("tf32", "f16"):
                p = problem(case[1], case[2],
                            np.float16 if kind == "f16" else np.float32, case[3])
                p = dataclasses.replace(p, precision="tf32") if kind == "tf32" else p
                p0 = (_plan_conv.padded_problem(p)
                      if _plan_conv.needs_padding_copy(p) else p)
                if _plan_conv.nhwc_applies(p0, pass_name, kind):
                    params.append(pytest.param(
                        case, pass_name, kind, id=f"{case[0]}-{pass_name}-{kind}"))
    return params


@pytest.mark.parametrize(("case", "pass_name", "kind"), _nhwc_params())
def test_nhwc_pipeline_within_the_bounds(case, pass_name, kind, cp):
    """algorithm='mma_nhwc' (op level) on the GPU: cp.async, ldmatrix(.trans), the
    packs, the flipped input gradient and the weight gradient, within the bounds of
    tests/_tol.py (the float32 accumulators of the op; float16 where the epilogue
    rounds), NaN-free, the same bits on a rerun."""
    from gpuconv import _plan_conv

    _, xs, ws, kw = case
    dtype = np.float16 if kind == "f16" else np.float32
    p = problem(xs, ws, dtype, kw)
    if kind == "tf32":
        import dataclasses

        p = dataclasses.replace(p, precision="tf32")
    x, w, b, gy = random_inputs(np.random.default_rng(17), p, dtype)
    b = b.astype(np.float32)
    dx, dw, db, dgy = (cp.asarray(a) for a in (x, w, b, gy))
    def run():
        if pass_name == "forward":
            return _gpu_conv.conv2d_forward(dx, dw, db, p, "mma_nhwc")
        if pass_name == "backward_weight":
            return _gpu_conv.conv2d_backward_weight(dgy, dx, p, "mma_nhwc", False)[0]
        return _gpu_conv.conv2d_backward_input(dgy, dw, p, "mma_nhwc")

    got = cp.asnumpy(run()).astype(np.float64)
    assert not np.isnan(got).any()
    np.testing.assert_array_equal(cp.asnumpy(run()).astype(np.float64), got)
    _assert_within_the_bounds(
        got, pass_name, p, kind, kw, x, w, b, gy,
        half=_plan_conv.mma_out_dtype(p, pass_name, "f16") == np.float16)


SIMT_CASE_IDS = ["everything", "reflect", "few_channel_strided", "regblock_dgrad_tails"]


@pytest.mark.parametrize("kind", ["tf32", "f16"])
@pytest.mark.parametrize("pass_name", ["forward", "backward_input", "backward_weight"])
@pytest.mark.parametrize("case_id", SIMT_CASE_IDS)
def test_conv_on_the_simt_route_within_the_bounds(case_id, pass_name, kind, cp):
    """'auto' on these small cases: convert.cu + the FP32 kernels (not mma)."""
    _, xs, ws, kw = CASES[CASE_IDS.index(case_id)]
    dtype = np.float16 if kind == "f16" else np.float32
    p = problem(xs, ws, dtype, kw)
    x, w, b, gy = random_inputs(np.random.default_rng(11), p, dtype)
    prec = "tf32" if kind == "tf32" else "highest"
    assert gpuconv.choose_algorithm(xs, ws, pass_name, dtype=dtype, precision=prec,
                                    **kw) != "mma"
    dx, dw, db, dgy = (cp.asarray(a) for a in (x, w, b, gy))
    got = cp.asnumpy(api_pass(pass_name, dx, dw, db, dgy, dict(kw, precision=prec)))
    assert got.dtype == dtype and not np.isnan(got).any()
    # the FP32 kernels on operands converted by NumPy: the same bits
    cv = round_tf32 if kind == "tf32" else (lambda a: a.astype(np.float32))
    pre = [cp.asarray(cv(a)) for a in (x, w)] + [cp.asarray(b.astype(np.float32)),
                                                 cp.asarray(cv(gy))]
    want = cp.asnumpy(api_pass(pass_name, *pre, kw)).astype(dtype)
    np.testing.assert_array_equal(got, want)
    _assert_within_the_bounds(got, pass_name, p, kind, kw, x, w, b, gy)


@pytest.mark.parametrize("pass_name", ["forward", "backward_input"])
@pytest.mark.parametrize("case_id", ["everything", "regblock_dgrad_tails", "stride"])
def test_float16_epilogue_equals_the_rounded_float32_result(case_id, pass_name, cp):
    """The float16-output kernels (the epilogue's cvt.rn.f16.f32) against the
    float32-output ones (``out=`` float32 forces them) rounded by CuPy's cast: the
    same bits (NaN-free data: NaN payloads are the hardware's)."""
    _, xs, ws, kw = CASES[CASE_IDS.index(case_id)]
    p = problem(xs, ws, np.float16, kw)
    x, w, b, gy = random_inputs(np.random.default_rng(13), p, np.float16)
    dx, dw, dgy = (cp.asarray(a) for a in (x, w, gy))
    db = cp.asarray(b.astype(np.float32))
    shape = p.y_shape if pass_name == "forward" else p.x_shape
    out32 = cp.full(shape, np.nan, np.float32)
    if pass_name == "forward":
        got = _gpu_conv.conv2d_forward(dx, dw, db, p, "mma")
        old = _gpu_conv.conv2d_forward(dx, dw, db, p, "mma", out=out32)
    else:
        got = _gpu_conv.conv2d_backward_input(dgy, dw, p, "mma")
        old = _gpu_conv.conv2d_backward_input(dgy, dw, p, "mma", out=out32)
    assert got.dtype == np.float16 and old.dtype == np.float32
    np.testing.assert_array_equal(cp.asnumpy(got).view(np.uint16),
                                  cp.asnumpy(old.astype(np.float16)).view(np.uint16))
