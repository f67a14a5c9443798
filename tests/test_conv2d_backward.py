"""conv2d gradients on the NumPy backend against independent oracles.

Oracles: the naive float64 loops of ``tests/ref_conv.py``, float64 central
finite differences of ``<conv2d(x, w, b), g>``, the adjoint identity
``vdot(y, g) == vdot(x, gx) == vdot(w, gw)`` (Hermitian for complex), and
``gb == gy`` summed.
"""

from __future__ import annotations

import numpy as np
import pytest

import gpuconv
from gpuconv import _cpu_conv
from gpuconv._conv_args import normalize_conv2d
from tests._conv2d_cases import (
    GEOMETRY_IDS,
    MODES,
    backend_path,  # noqa: F401  (fixture)
    geometry,
    random_array,
)
from tests._tol import assert_close, tol
from tests.ref_conv import (
    conv2d_grad_bias_ref,
    conv2d_grad_input_ref,
    conv2d_grad_weight_ref,
)

_REF_CACHE: dict = {}


def _grad_terms(x_shape, w_shape, gy_shape):
    """Products summed into one entry of gx (upper bound, folding included) and
    of gw/gb."""
    K, _, KH, KW = w_shape
    return K * KH * KW * 4, int(np.prod(gy_shape)) // gy_shape[1]


def _case(case_id, mode, dtype=np.float64, seed=1):
    key = (case_id, mode, np.dtype(dtype).name, seed)
    if key not in _REF_CACHE:
        _, xs, ws, kw = geometry(case_id)
        rng = np.random.default_rng(seed)
        x = random_array(rng, xs, dtype)
        w = random_array(rng, ws, dtype)
        y = gpuconv.conv2d(x, w, padding_mode=mode, **kw)
        gy = random_array(rng, y.shape, dtype)
        refs = (
            conv2d_grad_input_ref(xs, w, gy, padding_mode=mode, **kw),
            conv2d_grad_weight_ref(x, ws, gy, padding_mode=mode, **kw),
            conv2d_grad_bias_ref(gy),
        )
        _REF_CACHE[key] = (x, w, gy, kw, refs)
    return _REF_CACHE[key]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case_id", GEOMETRY_IDS)
@pytest.mark.usefixtures("backend_path")
def test_gradients_match_naive_reference(case_id, mode):
    x, w, gy, kw, (rx, rw, rb) = _case(case_id, mode)
    g = gpuconv.conv2d_backward(gy, x, w, padding_mode=mode, **kw)
    tx, tw = _grad_terms(x.shape, w.shape, gy.shape)
    assert (
        g.gx.shape == x.shape and g.gw.shape == w.shape and g.gb.shape == (w.shape[0],)
    )
    assert_close(g.gx, rx, terms=tx)
    assert_close(g.gw, rw, terms=tw)
    assert_close(g.gb, rb, terms=tw)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case_id", GEOMETRY_IDS)
def test_exact_window_path_matches_reference(case_id, mode):
    """The path taken when w or x hold NaN/inf, checked here on finite data."""
    x, w, gy, kw, (rx, rw, _) = _case(case_id, mode)
    p = normalize_conv2d(x.shape, w.shape, [x.dtype], padding_mode=mode, **kw)
    tx, tw = _grad_terms(x.shape, w.shape, gy.shape)
    assert_close(_cpu_conv._backward_input_windows(gy, w, p), rx, terms=tx)
    assert_close(_cpu_conv._backward_weight_windows(gy, x, p), rw, terms=tw)


FD_CASES = [
    "stride-2x3",
    "dilation-2x1",
    "groups2",
    "asym-4tuple",
    "even-4x2-same",
    "same-stride2",
    "same-stride-even-dil",
    "kernel>input",
    "pad>image",
    "stride-dil-groups",
]


def _central_differences(f, a, h):
    """d f / d a by central differences (f is linear in a: exact up to rounding)."""
    out = np.empty(a.shape)
    flat = a.reshape(-1)
    for i in range(flat.size):
        keep = flat[i]
        flat[i] = keep + h
        up = f()
        flat[i] = keep - h
        down = f()
        flat[i] = keep
        out.reshape(-1)[i] = (up - down) / (2 * h)
    return out


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case_id", FD_CASES)
def test_gradients_match_finite_differences(case_id, mode, rng):
    _, xs, ws, kw = geometry(case_id)
    x = random_array(rng, xs)
    w = random_array(rng, ws)
    b = random_array(rng, (ws[0],))
    g_out = random_array(rng, gpuconv.conv2d(x, w, padding_mode=mode, **kw).shape)

    def loss():
        return float(np.sum(gpuconv.conv2d(x, w, b, padding_mode=mode, **kw) * g_out))

    h = 0.5  # the loss is linear in each argument: any step is exact but rounding
    scale = (
        float(np.sum(np.abs(gpuconv.conv2d(x, w, b, padding_mode=mode, **kw) * g_out)))
        / h
    )
    g = gpuconv.conv2d_backward(g_out, x, w, padding_mode=mode, **kw)
    for fd, got in (
        (_central_differences(loss, x, h), g.gx),
        (_central_differences(loss, w, h), g.gw),
        (_central_differences(loss, b, h), g.gb),
    ):
        np.testing.assert_allclose(
            got, fd, **tol("float64", terms=g_out.size, scale=scale)
        )


@pytest.mark.parametrize("dtype", ["float64", "complex128", "float32", "complex64"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "case_id", ["3x3-pad1", "stride-dil-groups", "same-stride-even-dil", "pad>image"]
)
def test_adjoint_identity(case_id, mode, dtype, rng):
    """vdot(conv(x, w), g) == vdot(x, gx) == vdot(w, gw); Hermitian for complex."""
    _, xs, ws, kw = geometry(case_id)
    x = random_array(rng, xs, dtype)
    w = random_array(rng, ws, dtype)
    y = gpuconv.conv2d(x, w, padding_mode=mode, **kw)
    g = random_array(rng, y.shape, dtype)
    grads = gpuconv.conv2d_backward(g, x, w, padding_mode=mode, **kw)
    lhs = np.vdot(y.astype(np.complex128), g)
    scale = float(np.sum(np.abs(y) * np.abs(g)))
    for a, ga in ((x, grads.gx), (w, grads.gw)):
        rhs = np.vdot(a.astype(np.complex128), ga)
        np.testing.assert_allclose(rhs, lhs, **tol(dtype, terms=g.size, scale=scale))


@pytest.mark.parametrize("mode", ["zeros", "symmetric"])
def test_bias_gradient_is_gy_summed(mode, rng):
    x = random_array(rng, (3, 2, 5, 6))
    w = random_array(rng, (4, 2, 2, 3))
    gy = random_array(rng, (3, 4, 4, 3))
    g = gpuconv.conv2d_backward(
        gy, x, w, stride=(1, 2), padding=(0, 1), padding_mode=mode
    )
    assert_close(g.gb, gy.sum(axis=(0, 2, 3)), terms=36)
    only = gpuconv.conv2d_backward(
        gy, x, w, stride=(1, 2), padding=(0, 1), padding_mode=mode, needs=("bias",)
    )
    assert only.gx is None and only.gw is None
    np.testing.assert_array_equal(only.gb, g.gb)


NAMES = ("input", "weight", "bias")


def test_needs_subsets_and_torch_style_helpers(rng):
    x = random_array(rng, (2, 4, 7, 6))
    w = random_array(rng, (6, 2, 3, 2))
    kw = dict(
        stride=(2, 1),
        padding=(1, 0, 2, 1),
        dilation=(1, 2),
        groups=2,
        padding_mode="reflect",
    )
    y = gpuconv.conv2d(x, w, **kw)
    gy = random_array(rng, y.shape)
    full = gpuconv.conv2d_backward(gy, x, w, **kw)
    for needs in [("input",), ("weight",), ("bias",), ("input", "bias"), ()]:
        part = gpuconv.conv2d_backward(gy, x, w, needs=needs, **kw)
        for name, got, want in zip(NAMES, part, full, strict=True):
            if name in needs:
                np.testing.assert_array_equal(got, want)
            else:
                assert got is None
    gx = gpuconv.conv2d_grad_input(
        x.shape,
        w,
        gy,
        kw["stride"],
        kw["padding"],
        kw["dilation"],
        kw["groups"],
        kw["padding_mode"],
    )
    gw = gpuconv.conv2d_grad_weight(
        x,
        w.shape,
        gy,
        kw["stride"],
        kw["padding"],
        kw["dilation"],
        kw["groups"],
        kw["padding_mode"],
    )
    np.testing.assert_array_equal(gx, full.gx)
    np.testing.assert_array_equal(gw, full.gw)
    assert isinstance(full, gpuconv.Conv2dGrads) and full._fields == ("gx", "gw", "gb")


@pytest.mark.parametrize("mode", ["zeros", "circular"])
def test_unbatched_backward(mode, rng):
    x = random_array(rng, (3, 6, 5))
    w = random_array(rng, (2, 3, 3, 2))
    gy = random_array(
        rng, gpuconv.conv2d(x, w, stride=2, padding=1, padding_mode=mode).shape
    )
    g = gpuconv.conv2d_backward(gy, x, w, stride=2, padding=1, padding_mode=mode)
    g4 = gpuconv.conv2d_backward(
        gy[None], x[None], w, stride=2, padding=1, padding_mode=mode
    )
    assert g.gx.shape == x.shape
    np.testing.assert_array_equal(g.gx, g4.gx[0])
    np.testing.assert_array_equal(g.gw, g4.gw)
    np.testing.assert_array_equal(g.gb, g4.gb)
    assert_close(
        g.gx, conv2d_grad_input_ref(x.shape, w, gy, 2, 1, padding_mode=mode), terms=24
    )
    gx = gpuconv.conv2d_grad_input(x.shape, w, gy, 2, 1, padding_mode=mode)
    np.testing.assert_array_equal(gx, g.gx)


@pytest.mark.parametrize(
    "x_shape,w_shape",
    [
        ((0, 2, 5, 5), (3, 2, 3, 3)),
        ((2, 0, 5, 5), (3, 0, 3, 3)),
        ((2, 2, 5, 5), (0, 2, 3, 3)),
    ],
    ids=["N=0", "C=0", "K=0"],
)
@pytest.mark.parametrize("mode", ["zeros", "reflect"])
def test_empty_backward(x_shape, w_shape, mode, rng):
    x = random_array(rng, x_shape)
    w = random_array(rng, w_shape)
    y = gpuconv.conv2d(x, w, padding=1, padding_mode=mode)
    gy = random_array(rng, y.shape)
    g = gpuconv.conv2d_backward(gy, x, w, padding=1, padding_mode=mode)
    assert g.gx.shape == x.shape and g.gw.shape == w.shape
    assert not g.gx.any() and not g.gw.any()
    np.testing.assert_array_equal(g.gb, gy.sum(axis=(0, 2, 3)))


DTYPES = [
    ("float16", "float16", "float16"),
    ("float32", "float32", "float32"),
    ("complex64", "complex64", "complex64"),
    ("complex128", "complex128", "complex128"),
    ("float32", "float64", "float64"),
    ("float16", "float32", "float32"),
    ("float32", "complex128", "complex128"),
]


@pytest.mark.parametrize("mode", ["zeros", "replicate"])
@pytest.mark.parametrize("dts", DTYPES, ids=lambda d: "-".join(d))
@pytest.mark.parametrize("case_id", ["3x3-pad1", "stride-dil-groups"])
def test_backward_dtypes(case_id, dts, mode, rng):
    """gy and x of the first dtype, w of the second; gradients of the result type."""
    first, second, out = dts
    _, xs, ws, kw = geometry(case_id)
    x = random_array(rng, xs, first)
    w = random_array(rng, ws, second)
    gy = random_array(rng, gpuconv.conv2d(x, w, padding_mode=mode, **kw).shape, first)
    g = gpuconv.conv2d_backward(gy, x, w, padding_mode=mode, **kw)
    assert g.gx.dtype == g.gw.dtype == g.gb.dtype == np.dtype(out)
    tx, tw = _grad_terms(xs, ws, gy.shape)
    assert_close(
        g.gx, conv2d_grad_input_ref(xs, w, gy, padding_mode=mode, **kw), terms=tx
    )
    assert_close(
        g.gw, conv2d_grad_weight_ref(x, ws, gy, padding_mode=mode, **kw), terms=tw
    )
    assert_close(g.gb, conv2d_grad_bias_ref(gy), terms=tw)


def test_float16_gradients_accumulate_in_float32():
    x = np.ones((1, 1, 1, 4096), dtype=np.float16)
    w = np.ones((1, 1, 1, 1), dtype=np.float16)
    gy = np.ones((1, 1, 1, 4096), dtype=np.float16)
    g = gpuconv.conv2d_backward(gy, x, w)
    assert g.gw.dtype == np.float16 and g.gw[0, 0, 0, 0] == 4096
    assert g.gb[0] == 4096


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("where", ["gy", "w", "x", "w-inf", "x-inf"])
def test_nan_inf_placement_in_gradients(where, mode, rng):
    """Only real products enter a gradient: the NaN/inf mask is the naive loop's."""
    x = random_array(rng, (2, 2, 6, 7))
    w = random_array(rng, (4, 1, 3, 2))
    kw = dict(
        stride=(2, 1),
        padding=(1, 2, 0, 1),
        dilation=(1, 2),
        groups=2,
        padding_mode=mode,
    )
    gy = random_array(rng, gpuconv.conv2d(x, w, **kw).shape)
    if where == "gy":
        gy[0, 1, 0, 0] = np.nan
        gy[1, 3, -1, -1] = np.inf
    elif where == "w":
        w[2, 0, 2, 1] = np.nan
    elif where == "x":
        x[0, 0, 0, 0] = np.nan
        x[1, 1, 5, 6] = np.nan  # never read by a real product (stride 2 skips row 5)
    elif where == "w-inf":
        w[1, 0, 0, 0] = np.inf
        gy[0, 0, 1, 1] = 0.0
    elif where == "x-inf":
        x[0, 1, 2, 3] = -np.inf
    with np.errstate(all="ignore"):
        rx = conv2d_grad_input_ref(x.shape, w, gy, **kw)
        rw = conv2d_grad_weight_ref(x, w.shape, gy, **kw)
    g = gpuconv.conv2d_backward(gy, x, w, **kw)
    for got, ref in ((g.gx, rx), (g.gw, rw)):
        np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
        np.testing.assert_array_equal(np.isposinf(got), np.isposinf(ref))
        np.testing.assert_array_equal(np.isneginf(got), np.isneginf(ref))
        assert_close(got, ref, terms=100)


@pytest.mark.parametrize("nonfinite", [False, True])
def test_backward_is_deterministic(nonfinite, rng):
    x = random_array(rng, (3, 20, 11, 9), np.float32)
    w = random_array(rng, (24, 10, 3, 3), np.float32)
    if nonfinite:
        x[0, 0, 0, 0] = np.nan
        w[0, 0, 0, 0] = np.inf
    kw = dict(stride=2, padding=1, groups=2, padding_mode="reflect")
    gy = random_array(rng, gpuconv.conv2d(x, w, **kw).shape, np.float32)
    a = gpuconv.conv2d_backward(gy, x, w, **kw)
    b = gpuconv.conv2d_backward(gy.copy(), x.copy(), w.copy(), **kw)
    for u, v in zip(a, b, strict=False):
        assert u.tobytes() == v.tobytes()
