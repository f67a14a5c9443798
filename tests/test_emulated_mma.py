"""The tensor-core conv2d kernels (``cuda/conv2d_mma.cu``), emulated on the CPU, on the
awkward-case grid of ``tests/_cuda_conv_cases.py``.

Every output is NaN-poisoned before the launch. Each result is held to the
element-wise product bounds of ``tests/_tol.py``:

- ``precision='tf32'`` against the NumPy backend's TF32 model (the same operands
  rounded by ``cvt.rna``, exact products, float64 sums): float32 summation error
  only, which a kernel truncating instead of rounding would exceed; and against the
  float64 result of the unrounded data: the TF32 bound (2^-10 relative per product
  plus the float32 sum);
- float16 data against float64: the float32 summation bound (the op returns the
  float32 accumulators); through the public API, plus the one float16 rounding.

The ops are called with ``algorithm='mma'`` (the op-level value forcing the tensor
cores; ``'auto'`` takes them only where ``gpuconv._plan_conv.mma_preferred`` says
they measured faster, see tests/test_mma_dispatch.py and the SIMT route's tests in
tests/test_emulated_tensor_simt.py). Also: every registered tile (forced),
small-integer data (exact: the mma kernels equal the FP32 kernels bit for bit), the
routing rules (explicit algorithms run the FP32 kernels on TF32-rounded operands),
NaN propagation, and an ASan/UBSan subset in both thread orders.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import gpuconv
from gpuconv import _gpu_conv, _plan_conv
from gpuconv._emulate import EmulatedDevice
from gpuconv._kernels import CONV_MMA_TILES
from gpuconv._precision import round_tf32
from tests._cuda_conv_cases import CASE_IDS, CASES, problem, random_inputs, terms
from tests._emu_helpers import EMULATED, prepared_device
from tests._tol import FP16_HALF_SUBNORMAL, FP16_UNIT, TF32_UNIT, assert_products_within

pytestmark = [*EMULATED, pytest.mark.usefixtures("poisoned_conv_outputs")]

SOURCES = ("conv2d_mma.cu", "conv2d_pad.cu", "conv2d_forward.cu",
           "conv2d_backward_weight.cu",
           "conv2d_backward_input.cu", "convert.cu")
PASSES = ("forward", "backward_input", "backward_weight")
KINDS = ("tf32", "f16")


@pytest.fixture(scope="module")
def dev():
    return prepared_device(SOURCES)



def _problem(case, kind):
    _, xs, ws, kw = case
    dtype = np.float16 if kind == "f16" else np.float32
    p = problem(xs, ws, dtype, kw)
    return dataclasses.replace(p, precision="tf32" if kind == "tf32" else "highest")


def _inputs(p, kind, seed=7, integer=False):
    dtype = np.float16 if kind == "f16" else np.float32
    x, w, b, gy = random_inputs(np.random.default_rng(seed), p, dtype, integer=integer)
    return x, w, b, gy


def _op(pass_name, p, x, w, b, gy, dev, algorithm="mma"):
    """The CUDA op on float32 buffers (what the API hands it: float16 data in
    float32), output poisoned."""
    f = np.float32
    if pass_name == "forward":
        out = np.full(p.y_shape, np.nan, f)
        return _gpu_conv.conv2d_forward(x.astype(f), w.astype(f), b.astype(f), p,
                                        algorithm, device=dev, out=out)
    if pass_name == "backward_weight":
        out = np.full(p.w_shape, np.nan, f)
        gw, _ = _gpu_conv.conv2d_backward_weight(gy.astype(f), x.astype(f), p,
                                                 algorithm, False, device=dev, out=out)
        return gw
    out = np.full(p.x_shape, np.nan, f)
    return _gpu_conv.conv2d_backward_input(gy.astype(f), w.astype(f), p, algorithm,
                                           device=dev, out=out)


def _wide(pass_name, p, x, w, b, gy, absolute=False):
    """float64 NumPy-backend result (of |.| with ``absolute``: the bound's S)."""
    f = (lambda a: np.abs(a.astype(np.float64))) if absolute else (
        lambda a: a.astype(np.float64))
    kw = dict(stride=p.stride, padding=p.padding, dilation=p.dilation,
              groups=p.groups, padding_mode=p.padding_mode)
    if pass_name == "forward":
        return gpuconv.conv2d(f(x), f(w), f(b), backend="numpy", **kw)
    if pass_name == "backward_weight":
        return gpuconv.conv2d_grad_weight(f(x), w.shape, f(gy), backend="numpy", **kw)
    return gpuconv.conv2d_grad_input(x.shape, f(w), f(gy), backend="numpy", **kw)


def _terms(pass_name, p):
    return p.N * p.OH * p.OW if pass_name == "backward_weight" else terms(pass_name, p)


def _check(pass_name, p, kind, got, x, w, b, gy):
    n = _terms(pass_name, p)
    if pass_name == "backward_input" and p.padding_mode != "zeros":
        # the fold adds the gradients of up to 3 x 3 border copies of a pixel (the
        # grid's pads reach at most 2 image sizes); S sums their |terms| already
        n *= 9
    if kind == "tf32":
        xr, wr, gyr = round_tf32(x), round_tf32(w), round_tf32(gy)
        model = _wide(pass_name, p, xr, wr, b, gyr)
        s_model = _wide(pass_name, p, xr, wr, b, gyr, absolute=True)
        assert_products_within(got, model, s_model, n)  # float32 summation only
        ref = _wide(pass_name, p, x, w, b, gy)
        s = _wide(pass_name, p, x, w, b, gy, absolute=True)
        assert_products_within(got, ref, s, n, operand_unit=TF32_UNIT)
    else:
        ref = _wide(pass_name, p, x, w, b, gy)
        s = _wide(pass_name, p, x, w, b, gy, absolute=True)
        # the op returns the float32 accumulators (the API rounds to float16)
        assert_products_within(got, ref, s, n)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("pass_name", PASSES)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_mma_within_the_product_bounds(case, pass_name, kind, dev):
    p = _problem(case, kind)
    x, w, b, gy = _inputs(p, kind)
    n0 = len(dev.launches)
    got = _op(pass_name, p, x, w, b, gy, dev)
    assert not np.isnan(got).any(), "an output element was never written"
    launched = [k for _, k, *_ in dev.launches[n0:]]
    assert any(k.startswith(f"conv2d_{pass_name}_mma<") for k in launched), launched
    _check(pass_name, p, kind, got, x, w, b, gy)


# C/groups a multiple of the slab (32): the forward's channel-inner gather
SLAB_CASES = [
    ("slab_basic", (2, 32, 7, 9), (20, 32, 3, 3), {"padding": 1, "stride": (2, 1)}),
    ("slab_groups", (1, 64, 6, 5), (6, 32, 2, 3),
     {"groups": 2, "padding": (1, 0, 2, 1), "dilation": 2}),
    ("slab_kernel_gt_input", (1, 32, 3, 2), (3, 32, 5, 4), {"padding": (2, 2)}),
    ("slab_reflect", (2, 64, 5, 6), (70, 64, 3, 3),
     {"padding": 1, "padding_mode": "reflect"}),
    # K/groups a multiple of 32 too: the input gradient's channel-inner gather
    ("slab_dgrad", (2, 20, 6, 7), (64, 20, 3, 2), {"padding": (1, 2, 0, 1),
                                                 "dilation": (2, 1)}),
    ("slab_dgrad_groups", (1, 6, 5, 5), (64, 3, 3, 3), {"groups": 2, "padding": 1}),
    ("slab_dgrad_strided", (1, 4, 9, 8), (32, 4, 3, 3), {"stride": 2, "padding": 1}),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("pass_name", PASSES)
@pytest.mark.parametrize("case", SLAB_CASES, ids=[c[0] for c in SLAB_CASES])
def test_slab_gather_cases(case, pass_name, kind, dev):
    p = _problem(case, kind)
    x, w, b, gy = _inputs(p, kind, seed=17)
    got = _op(pass_name, p, x, w, b, gy, dev)
    assert not np.isnan(got).any()
    _check(pass_name, p, kind, got, x, w, b, gy)
    xi, wi, bi, gyi = _inputs(p, kind, seed=19, integer=True)
    np.testing.assert_array_equal(_op(pass_name, p, xi, wi, bi, gyi, dev),
                                  _wide(pass_name, p, xi, wi, bi, gyi))


@pytest.mark.parametrize("tile", CONV_MMA_TILES, ids=str)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("pass_name", PASSES)
def test_every_mma_tile(tile, kind, pass_name, dev, monkeypatch):
    """Each registered tile (forced) on cases with tails in M, NG and KR."""
    monkeypatch.setattr(_plan_conv, "mma_tile", lambda *a, **k: tile)
    case_id = "regblock_dgrad_tails" if pass_name == "backward_input" else (
        "regblock_fwd_tails")
    p = _problem(CASES[CASE_IDS.index(case_id)], kind)
    x, w, b, gy = _inputs(p, kind, seed=3)
    n0 = len(dev.launches)
    got = _op(pass_name, p, x, w, b, gy, dev)
    assert any(f"mma<{'float' if kind == 'tf32' else 'unsigned short'}, "
               f"{', '.join(map(str, tile))}>" in k
               for _, k, *_ in dev.launches[n0:])
    assert not np.isnan(got).any()
    _check(pass_name, p, kind, got, x, w, b, gy)


@pytest.mark.parametrize("min_slabs", [1, 2])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("pass_name", ["forward", "backward_input"])
@pytest.mark.parametrize("case_id",
                         ["slab_basic", "slab_dgrad", "regblock_dgrad_tails"])
def test_split_k(case_id, pass_name, kind, min_slabs, dev, monkeypatch):
    """Forward and input gradient cut into split-K slices (forced: every slab or
    every two slabs a split, balanced with remainders), the workspace slices added
    in split order by the reduce: within the bounds, the bias added once, exact on
    integers, bit-identical run after run."""
    monkeypatch.setattr(_plan_conv, "MMA_MIN_SPLIT_SLABS", min_slabs)
    cases = SLAB_CASES + [CASES[CASE_IDS.index("regblock_dgrad_tails")]]
    p = _problem(next(c for c in cases if c[0] == case_id), kind)
    slabs = -(-_plan_conv.gemm_shape(p, pass_name)[2] // _plan_conv.MMA_SLAB[kind])
    assert slabs // min_slabs >= 2 or case_id == "regblock_dgrad_tails"
    x, w, b, gy = _inputs(p, kind, seed=23)
    n0 = len(dev.launches)
    got = _op(pass_name, p, x, w, b, gy, dev)
    launched = [k for _, k, *_ in dev.launches[n0:]]
    assert any(k.startswith(f"conv2d_{pass_name}_mma<") for k in launched), launched
    split = any(k.startswith("conv2d_backward_weight_reduce<float>") for k in launched)
    assert split == (slabs // min_slabs >= 2)
    assert not np.isnan(got).any()
    _check(pass_name, p, kind, got, x, w, b, gy)
    np.testing.assert_array_equal(_op(pass_name, p, x, w, b, gy, dev), got)
    xi, wi, bi, gyi = _inputs(p, kind, seed=29, integer=True)
    np.testing.assert_array_equal(_op(pass_name, p, xi, wi, bi, gyi, dev),
                                  _wide(pass_name, p, xi, wi, bi, gyi))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("pass_name", PASSES)
@pytest.mark.parametrize("case_id", ["everything", "groups", "reflect", "stride"])
def test_integers_are_exact_and_equal_the_fp32_kernels(case_id, pass_name, kind, dev):
    """Small integers are exact in TF32 and float16 and every partial sum is exact
    in float32: the mma kernels, the FP32 kernels and float64 agree exactly."""
    p = _problem(CASES[CASE_IDS.index(case_id)], kind)
    x, w, b, gy = _inputs(p, kind, seed=5, integer=True)
    got = _op(pass_name, p, x, w, b, gy, dev)
    fp32 = _op(pass_name, p, x, w, b, gy, dev, algorithm="tiled_regblock")
    np.testing.assert_array_equal(got, fp32)
    np.testing.assert_array_equal(got, _wide(pass_name, p, x, w, b, gy))


def test_deterministic(dev):
    p = _problem(CASES[CASE_IDS.index("regblock_dgrad_tails")], "tf32")
    x, w, b, gy = _inputs(p, "tf32")
    for pass_name in PASSES:
        a = _op(pass_name, p, x, w, b, gy, dev)
        c = _op(pass_name, p, x, w, b, gy, dev)
        np.testing.assert_array_equal(a.view(np.uint32), c.view(np.uint32))


def test_nan_and_inf_propagate(dev):
    p = _problem(CASES[CASE_IDS.index("basic3x3")], "tf32")
    x, w, b, gy = _inputs(p, "tf32")
    x[0, 1, 4, 5] = np.nan
    x[1, 0, 2, 2] = np.inf
    got = _op("forward", p, x, w, b, gy, dev)
    want = _wide("forward", p, x, w, b, gy)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))


def test_routing(dev):
    """'mma' -> the tensor cores; 'auto' -> where mma_preferred says so (not this
    small case: the FP32 kernels on converted operands); an explicit algorithm ->
    the FP32 kernels on TF32-rounded operands (the bias gradient from the unrounded
    gy); float64 never rounds, and 'mma' on it is a ValueError."""
    case = CASES[CASE_IDS.index("basic3x3")]
    p = _problem(case, "tf32")
    x, w, b, gy = _inputs(p, "tf32")
    n0 = len(dev.launches)
    got = _op("forward", p, x, w, b, gy, dev, algorithm="tiled_regblock")
    assert all("_mma<" not in k for _, k, *_ in dev.launches[n0:])
    hi = dataclasses.replace(p, precision="highest")
    want = _op("forward", hi, round_tf32(x), round_tf32(w), b, gy, dev,
               algorithm="tiled_regblock")
    np.testing.assert_array_equal(got, want)
    gw, gb = _gpu_conv.conv2d_backward_weight(gy, x, p, "tiled_regblock", True,
                                              device=dev)
    gw_hi, gb_hi = _gpu_conv.conv2d_backward_weight(round_tf32(gy), round_tf32(x), hi,
                                                    "tiled_regblock", False, device=dev)
    np.testing.assert_array_equal(gw, gw_hi)
    np.testing.assert_array_equal(gb, _gpu_conv.conv2d_backward_bias(gy, hi,
                                                                     device=dev))
    assert gb_hi is None
    n0 = len(dev.launches)
    gw, gb = _gpu_conv.conv2d_backward_weight(gy, x, p, "mma", True, device=dev)
    launched = [k for _, k, *_ in dev.launches[n0:]]
    assert any(k.startswith("conv2d_backward_weight_mma<float") for k in launched)
    np.testing.assert_array_equal(gb, _gpu_conv.conv2d_backward_bias(gy, hi,
                                                                     device=dev))
    assert not _plan_conv.mma_preferred(p, "backward_weight")
    n0 = len(dev.launches)
    gw, gb = _gpu_conv.conv2d_backward_weight(gy, x, p, "auto", True, device=dev)
    launched = [k for _, k, *_ in dev.launches[n0:]]
    assert all("_mma<" not in k for k in launched), launched
    assert "convert_round_tf32" in launched, launched
    algo = _plan_conv.choose_algorithm(p, "backward_weight")
    gw_auto, _ = _gpu_conv.conv2d_backward_weight(round_tf32(gy), round_tf32(x), hi,
                                                  algo, False, device=dev)
    np.testing.assert_array_equal(gw, gw_auto)
    np.testing.assert_array_equal(gb, _gpu_conv.conv2d_backward_bias(gy, hi,
                                                                     device=dev))
    _, xs, ws, kw = case
    p64 = dataclasses.replace(problem(xs, ws, np.float64, kw), precision="tf32")
    x64, w64, b64 = x.astype(np.float64), w.astype(np.float64), b.astype(np.float64)
    n0 = len(dev.launches)
    y64 = _gpu_conv.conv2d_forward(x64, w64, b64, p64, "auto", device=dev)
    assert all("_mma<" not in k for _, k, *_ in dev.launches[n0:])
    with pytest.raises(ValueError, match="algorithm='mma'"):
        _gpu_conv.conv2d_forward(x64, w64, b64, p64, "mma", device=dev)
    np.testing.assert_allclose(y64, _wide("forward", p64, x64, w64, b64, None),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("order", ["ascending", "descending"])
def test_sanitized_subset(order):
    d = EmulatedDevice(thread_order=order)
    for kind in KINDS:
        for pass_name, case in (("forward", CASES[CASE_IDS.index("everything")]),
                                ("forward", SLAB_CASES[1]),
                                ("backward_input", CASES[CASE_IDS.index("replicate")]),
                                ("backward_weight", CASES[CASE_IDS.index("groups")])):
            p = _problem(case, kind)
            x, w, b, gy = _inputs(p, kind, seed=11)
            got = _op(pass_name, p, x, w, b, gy, d)
            assert not np.isnan(got).any()
            _check(pass_name, p, kind, got, x, w, b, gy)


@pytest.fixture
def api_on_emulator(dev, monkeypatch):
    """The public API with the NumPy backend's ops replaced by the CUDA ops on the
    emulated device (as tests/test_emulated_api.py does)."""
    from gpuconv import _backend

    names = ("conv2d_forward", "conv2d_backward_input", "conv2d_backward_weight",
             "conv2d_backward_bias")
    def bind(fn):
        return staticmethod(lambda *a: fn(*a, device=dev))

    ops = type("EmulatedOps", (), {n: bind(getattr(_gpu_conv, n)) for n in names})
    real = _backend.backend_ops
    monkeypatch.setattr(_backend, "backend_ops",
                        lambda name: ops if name == "numpy" else real(name))
    return dev


def test_public_api_float16_and_tf32(api_on_emulator, monkeypatch):
    """The API's 'auto' reaches the tensor cores (the dispatch rule forced to say
    so for this small case)."""
    monkeypatch.setattr(_gpu_conv, "mma_preferred", lambda *a: True)
    dev = api_on_emulator
    _, xs, ws, kw = CASES[CASE_IDS.index("everything")]
    p = _problem(CASES[CASE_IDS.index("everything")], "f16")
    x, w, b, gy = _inputs(p, "f16", seed=2)
    n0 = len(dev.launches)
    y = gpuconv.conv2d(x, w, b, **kw)
    assert y.dtype == np.float16
    assert any("conv2d_forward_mma<unsigned short" in k for _, k, *_ in
               dev.launches[n0:])
    ref = _wide("forward", p, x, w, b, gy)
    s = _wide("forward", p, x, w, b, gy, absolute=True)
    assert_products_within(y, ref, s, terms("forward", p), output_unit=FP16_UNIT,
                           output_atol=FP16_HALF_SUBNORMAL)
    gx = gpuconv.conv2d_grad_input(x.shape, w, gy, **kw)
    assert gx.dtype == np.float16
    ref = _wide("backward_input", p, x, w, b, gy)
    s = _wide("backward_input", p, x, w, b, gy, absolute=True)
    assert_products_within(gx, ref, s, terms("backward_input", p),
                           output_unit=FP16_UNIT, output_atol=FP16_HALF_SUBNORMAL)
    # tf32 through the API: with the context, the keyword and the environment
    x32, w32, b32 = x.astype(np.float32), w.astype(np.float32), b.astype(np.float32)
    with gpuconv.use_precision("tf32"):
        n0 = len(dev.launches)
        y1 = gpuconv.conv2d(x32, w32, b32, **kw)
        assert any("conv2d_forward_mma<float" in k for _, k, *_ in dev.launches[n0:])
    y2 = gpuconv.conv2d(x32, w32, b32, precision="tf32", **kw)
    np.testing.assert_array_equal(y1, y2)
    n0 = len(dev.launches)
    gpuconv.conv2d(x32, w32, b32, **kw)  # highest: the FP32 kernels
    assert all("_mma<" not in k for _, k, *_ in dev.launches[n0:])


@pytest.mark.parametrize("kind", KINDS)
def test_weight_gradient_split_k(kind, dev):
    """A long reduction (N*OH*OW = 4*16*16) is split over blocks; the reduce kernel
    adds the slices in split order: within the bound and bit-identical on a rerun."""
    case = ("split", (4, 3, 16, 16), (5, 3, 3, 3), {"padding": 1})
    p = _problem(case, kind)
    x, w, b, gy = _inputs(p, kind, seed=13)
    n0 = len(dev.launches)
    got = _op("backward_weight", p, x, w, b, gy, dev)
    launched = [k for _, k, *_ in dev.launches[n0:]]
    assert any(k.startswith("conv2d_backward_weight_mma<") for k in launched)
    assert "conv2d_backward_weight_reduce<float>" in launched, launched
    assert (dev.launches[n0][2][0] if "mma" in dev.launches[n0][1] else
            dev.launches[n0 + 1][2][0]) > 1  # several split blocks
    _check("backward_weight", p, kind, got, x, w, b, gy)
    again = _op("backward_weight", p, x, w, b, gy, dev)
    np.testing.assert_array_equal(got.view(np.uint32), again.view(np.uint32))
    # a replayed (cached) plan binds the new buffers: -gy gives exactly -gw
    negated = _op("backward_weight", p, x, w, b, -gy, dev)
    np.testing.assert_array_equal(negated, -got)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("pass_name", PASSES)
@pytest.mark.parametrize("case_id", ["everything", "reflect"])
def test_cached_plans_bind_new_buffers(case_id, pass_name, kind, dev):
    """The second call of a problem replays its cached launch plan: with negated
    data it must give exactly the negated result (as the first call)."""
    p = _problem(CASES[CASE_IDS.index(case_id)], kind)
    x, w, b, gy = _inputs(p, kind, seed=29)
    first = _op(pass_name, p, x, w, 0 * b, gy, dev)
    second = _op(pass_name, p, -x, w, 0 * b, gy, dev)
    if pass_name == "forward":
        np.testing.assert_array_equal(second, -first)
    else:  # the input gradient ignores x, the weight gradient is linear in it
        np.testing.assert_array_equal(second, first if pass_name == "backward_input"
                                      else -first)


@pytest.fixture
def cuda_api_on_emulator(dev, monkeypatch):
    """The public API taking its CUDA-backend path (backend name 'cuda': float16
    data handed to the ops as float16) with the ops on the emulated device; the
    ops' inputs' dtypes are recorded."""
    from gpuconv import _backend, _conv

    seen: list[str] = []
    names = ("conv2d_forward", "conv2d_backward_input", "conv2d_backward_weight",
             "conv2d_backward_bias")

    def bind(fn):
        def call(*a):
            seen.append(str(a[0].dtype))
            return fn(*a, device=dev)
        return staticmethod(call)

    ops = type("EmulatedOps", (), {n: bind(getattr(_gpu_conv, n)) for n in names})
    monkeypatch.setattr(_backend, "select_backend", lambda *a, backend=None: "cuda")
    monkeypatch.setattr(_backend, "to_backend", lambda name, *a: (list(a), lambda v: v))
    monkeypatch.setattr(_backend, "backend_ops", lambda name: ops)
    monkeypatch.setattr(_conv, "_xp", lambda name: np)
    return seen


@pytest.mark.parametrize("algorithm", ["auto", "tiled_regblock"])
@pytest.mark.parametrize("case_id", ["everything", "reflect"])
def test_float16_reaches_the_cuda_ops_as_float16(case_id, algorithm,
                                                 cuda_api_on_emulator):
    seen = cuda_api_on_emulator
    _, xs, ws, kw = CASES[CASE_IDS.index(case_id)]
    p = _problem(CASES[CASE_IDS.index(case_id)], "f16")
    x, w, b, gy = _inputs(p, "f16", seed=23)
    opts = dict(kw, algorithm=algorithm)
    y = gpuconv.conv2d(x, w, b, **opts)
    g = gpuconv.conv2d_backward(gy, x, w, **opts)
    # precision='tf32' on float16 data: nothing to round (float16 fits TF32)
    gx_t = gpuconv.conv2d_grad_input(x.shape, w, gy, precision="tf32", **opts)
    assert set(seen) == {"float16"}, seen
    np.testing.assert_array_equal(gx_t, g.gx)
    for pass_name, got in (("forward", y), ("backward_input", g.gx),
                           ("backward_weight", g.gw)):
        assert got.dtype == np.float16
        n = _terms(pass_name, p) * (9 if pass_name == "backward_input" else 1)
        assert_products_within(got, _wide(pass_name, p, x, w, b, gy),
                               _wide(pass_name, p, x, w, b, gy, absolute=True), n,
                               output_unit=FP16_UNIT, output_atol=FP16_HALF_SUBNORMAL)
    ref_gb = gy.astype(np.float64).sum(axis=(0, 2, 3))
    np.testing.assert_allclose(g.gb, ref_gb, rtol=2e-3, atol=1e-2)


def test_planner_and_registry_agree_on_the_mma_passes():
    from gpuconv import _kernels

    assert _plan_conv._MMA_PASSES == _kernels.MMA_PASSES
