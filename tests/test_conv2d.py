"""conv2d forward on the NumPy backend against independent oracles.

Oracles: the naive float64 loop in ``tests/ref_conv.py`` (its own padding via
``np.pad``), ``scipy.signal.correlate2d`` per channel (zeros padding), PyTorch
when it is importable, and properties (linearity, group decomposition).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import gpuconv
from gpuconv import _cpu_conv
from tests._conv2d_cases import (
    GEOMETRY_IDS,
    MODES,
    backend_path,  # noqa: F401  (fixture)
    conv_terms,
    geometry,
    random_array,
)
from tests._tol import assert_close
from tests.ref_conv import conv2d_ref, resolve_padding

_REF_CACHE: dict = {}


def _case_data(case_id, mode, dtype=np.float64, seed=0):
    """Inputs and the float64 reference output of one geometry (cached)."""
    key = (case_id, mode, np.dtype(dtype).name, seed)
    if key not in _REF_CACHE:
        _, xs, ws, kw = geometry(case_id)
        rng = np.random.default_rng(seed)
        x = random_array(rng, xs, dtype)
        w = random_array(rng, ws, dtype)
        b = random_array(rng, (ws[0],), dtype)
        ref = conv2d_ref(x, w, b, padding_mode=mode, **kw)
        _REF_CACHE[key] = (x, w, b, kw, ref)
    return _REF_CACHE[key]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case_id", GEOMETRY_IDS)
@pytest.mark.usefixtures("backend_path")
def test_forward_matches_naive_reference(case_id, mode):
    x, w, b, kw, ref = _case_data(case_id, mode)
    y = gpuconv.conv2d(x, w, b, padding_mode=mode, **kw)
    assert y.shape == ref.shape and y.dtype == np.float64
    assert_close(y, ref, terms=conv_terms(w.shape))


@pytest.mark.parametrize("case_id", GEOMETRY_IDS)
def test_forward_matches_scipy_correlate2d(case_id):
    """Zeros padding: per (n, k) the sum over the group's channels of
    scipy.signal.correlate2d on the padded image with the dilated kernel,
    sampled every stride."""
    signal = pytest.importorskip("scipy.signal")
    x, w, b, kw, _ = _case_data(case_id, "zeros")
    y = gpuconv.conv2d(x, w, None, **kw)
    N, C, H, W = x.shape
    K, Cg, KH, KW = w.shape
    stride = kw.get("stride", 1)
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    dil = kw.get("dilation", 1)
    dh, dw = (dil, dil) if isinstance(dil, int) else dil
    t, bo, le, r = resolve_padding(
        kw.get("padding", 0), (KH, KW), (sh, sw), (dh, dw), (H, W)
    )
    xp = np.pad(x, ((0, 0), (0, 0), (t, bo), (le, r)))
    wd = np.zeros((K, Cg, dh * (KH - 1) + 1, dw * (KW - 1) + 1))
    wd[:, :, ::dh, ::dw] = w
    Kg = K // kw.get("groups", 1)
    out = np.zeros((N, K) + y.shape[2:])
    for n in range(N):
        for k in range(K):
            c0 = (k // Kg) * Cg
            full = sum(
                signal.correlate2d(xp[n, c0 + c], wd[k, c], mode="valid")
                for c in range(Cg)
            )
            out[n, k] = full[::sh, ::sw][: y.shape[2], : y.shape[3]]
    assert_close(y, out, terms=conv_terms(w.shape))


DTYPE_CASES = [
    # (x dtype, w dtype, bias dtype, expected output dtype)
    ("float16", "float16", "float16", "float16"),
    ("float32", "float32", "float32", "float32"),
    ("float64", "float64", None, "float64"),
    ("complex64", "complex64", "complex64", "complex64"),
    ("complex128", "complex128", None, "complex128"),
    ("float32", "float64", None, "float64"),
    ("float64", "float32", "float32", "float64"),
    ("float16", "float32", None, "float32"),
    ("float32", "complex64", None, "complex64"),
    ("float16", "complex128", "float64", "complex128"),
]


@pytest.mark.parametrize("mode", ["zeros", "reflect"])
@pytest.mark.parametrize("case_id", ["3x3-pad1", "even-4x2-same", "stride-dil-groups"])
@pytest.mark.parametrize("dts", DTYPE_CASES, ids=lambda d: "-".join(map(str, d)))
def test_forward_dtypes(dts, case_id, mode, rng):
    xd, wd, bd, out = dts
    _, xs, ws, kw = geometry(case_id)
    x = random_array(rng, xs, xd)
    w = random_array(rng, ws, wd)
    b = None if bd is None else random_array(rng, (ws[0],), bd)
    y = gpuconv.conv2d(x, w, b, padding_mode=mode, **kw)
    assert y.dtype == np.dtype(out)
    assert y.dtype == np.result_type(*(a for a in (x, w, b) if a is not None))
    # the reference sees the same (exactly representable) input values
    assert_close(y, conv2d_ref(x, w, b, padding_mode=mode, **kw), terms=conv_terms(ws))


def test_float16_accumulates_in_float32():
    """4096 products of 1: a float16 accumulator stops at 2048, float32 does not."""
    x = np.ones((1, 1, 1, 4096), dtype=np.float16)
    w = np.ones((1, 1, 1, 4096), dtype=np.float16)
    y = gpuconv.conv2d(x, w)
    assert y.dtype == np.float16
    assert y[0, 0, 0, 0] == 4096


def test_float32_is_computed_in_float32(monkeypatch, rng):
    seen = []
    real = _cpu_conv.gemm

    def spy(a, b, c, accumulate, tmp=None):
        seen.append((a.dtype, b.dtype, c.dtype))
        return real(a, b, c, accumulate, tmp)

    monkeypatch.setattr(_cpu_conv, "gemm", spy)
    x = random_array(rng, (2, 3, 6, 6), np.float32)
    w = random_array(rng, (4, 3, 3, 3), np.float32)
    y = gpuconv.conv2d(x, w, padding=1)
    gpuconv.conv2d_backward(np.ones_like(y), x, w, padding=1)
    x16, w16 = x.astype(np.float16), w.astype(np.float16)
    gpuconv.conv2d(x16, w16, padding=1)
    assert seen and all(d == (np.float32,) * 3 for d in seen)


@pytest.mark.parametrize("N", [0, 1, 3])
def test_batch_sizes(N, rng):
    x = random_array(rng, (N, 2, 5, 4))
    w = random_array(rng, (3, 2, 2, 3))
    b = random_array(rng, (3,))
    y = gpuconv.conv2d(x, w, b, padding=(1, 0))
    assert y.shape == (N, 3, 6, 2)
    if N:
        assert_close(y, conv2d_ref(x, w, b, padding=(1, 0)), terms=12)


@pytest.mark.parametrize("mode", MODES)
def test_zero_channels_give_bias(mode):
    """C = 0: every output is the empty sum plus the bias, shape (N, K, OH, OW):
    the mathematically correct result (documented in conv2d's Notes). PyTorch 2.13
    differs: it returns shape (N, 0, OH, OW)."""
    x = np.zeros((2, 0, 4, 4))
    w = np.zeros((3, 0, 3, 3))
    b = np.array([1.0, -2.0, 3.5])
    y = gpuconv.conv2d(x, w, b, padding=1, padding_mode=mode)
    assert y.shape == (2, 3, 4, 4)
    np.testing.assert_array_equal(y, np.broadcast_to(b.reshape(1, 3, 1, 1), y.shape))


def test_empty_image_with_padding_is_all_padding(rng):
    """H = 0 but zero padding makes outputs: every window holds only zeros."""
    w = random_array(rng, (2, 1, 3, 1))
    b = np.array([0.5, -1.0])
    y = gpuconv.conv2d(np.zeros((1, 1, 0, 4)), w, b, padding=(2, 2, 0, 0))
    assert y.shape == (1, 2, 2, 4)
    np.testing.assert_array_equal(y, np.broadcast_to(b.reshape(1, 2, 1, 1), y.shape))


def test_zero_output_channels(rng):
    y = gpuconv.conv2d(random_array(rng, (2, 3, 5, 5)), np.zeros((0, 3, 3, 3)))
    assert y.shape == (2, 0, 3, 3)


@pytest.mark.parametrize("mode", ["zeros", "circular"])
def test_unbatched_input(mode, rng):
    x = random_array(rng, (3, 6, 5))
    w = random_array(rng, (2, 3, 3, 2))
    b = random_array(rng, (2,))
    y = gpuconv.conv2d(x, w, b, stride=2, padding=1, padding_mode=mode)
    y4 = gpuconv.conv2d(x[None], w, b, stride=2, padding=1, padding_mode=mode)
    assert y.shape == y4.shape[1:]
    np.testing.assert_array_equal(y, y4[0])
    assert_close(y, conv2d_ref(x, w, b, 2, 1, padding_mode=mode), terms=18)


def _layouts(a):
    """The same values in other memory layouts: Fortran, strided, negative strides,
    read-only."""
    f = np.asfortranarray(a)
    big = np.zeros(tuple(2 * s + 1 for s in a.shape), dtype=a.dtype)
    strided = big[tuple(slice(1, None, 2) for _ in a.shape)]
    strided[...] = a
    flip = (slice(None, None, -1),) * a.ndim
    rev = np.ascontiguousarray(a[flip])[flip]
    ro = a.copy()
    ro.flags.writeable = False
    swapped = a.astype(a.dtype.newbyteorder())
    raw = np.zeros(a.nbytes + 1, dtype=np.uint8)
    unaligned = np.frombuffer(raw.data, dtype=a.dtype, count=a.size, offset=1)
    unaligned = unaligned.reshape(a.shape)
    unaligned[...] = a
    return {
        "fortran": f,
        "strided": strided,
        "negative": rev,
        "readonly": ro,
        "byteswapped": swapped,
        "unaligned": unaligned,
    }


@pytest.mark.parametrize(
    "layout", ["fortran", "strided", "negative", "readonly", "byteswapped", "unaligned"]
)
@pytest.mark.parametrize("mode", ["zeros", "reflect"])
@pytest.mark.parametrize(
    "shapes",
    [
        ((2, 4, 7, 6), (4, 2, 3, 2), dict(stride=(2, 1), padding=(1, 2, 0, 1))),
        ((2, 32, 7, 6), (6, 16, 3, 2), dict(stride=(2, 1), padding=(1, 2, 0, 1))),
        ((2, 4, 7, 6), (6, 2, 1, 1), dict()),
    ],
    ids=["stacked", "per-tap", "pointwise"],
)
def test_layouts_give_identical_results_and_inputs_are_untouched(
    shapes, layout, mode, rng
):
    xs, ws, kw = shapes
    x = random_array(rng, xs)
    w = random_array(rng, ws)
    b = random_array(rng, ws[:1])
    kw = dict(kw, groups=2, padding_mode=mode)
    gy = random_array(rng, gpuconv.conv2d(x, w, **kw).shape)
    want = gpuconv.conv2d(x, w, b, **kw)
    want_g = gpuconv.conv2d_backward(gy, x, w, **kw)
    xl, wl, bl, gyl = (_layouts(a)[layout] for a in (x, w, b, gy))
    copies = [a.copy() for a in (xl, wl, bl, gyl)]
    y = gpuconv.conv2d(xl, wl, bl, **kw)
    g = gpuconv.conv2d_backward(gyl, xl, wl, **kw)
    np.testing.assert_array_equal(y, want)
    for got, exp in zip(g, want_g, strict=False):
        np.testing.assert_array_equal(got, exp)
    for a, c in zip((xl, wl, bl, gyl), copies, strict=False):
        np.testing.assert_array_equal(a, c)


def _nan_masks_equal(y, ref):
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref))
    np.testing.assert_array_equal(np.isposinf(y), np.isposinf(ref))
    np.testing.assert_array_equal(np.isneginf(y), np.isneginf(ref))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "where",
    ["x-corner", "x-border", "x-interior", "x-inf-pair", "w-nan", "w-inf", "bias-nan"],
)
def test_nan_inf_placement_matches_numpy(where, mode, rng):
    x = random_array(rng, (2, 2, 6, 7))
    w = random_array(rng, (3, 2, 3, 2))
    b = random_array(rng, (3,))
    if where == "x-corner":
        x[0, 0, 0, 0] = np.nan
        x[1, 1, -1, -1] = np.inf
    elif where == "x-border":
        x[0, 1, 0, 3] = -np.inf
        x[1, 0, 4, -1] = np.nan
    elif where == "x-interior":
        x[0, 0, 3, 3] = np.inf
    elif where == "x-inf-pair":  # inf - inf = nan where both enter one window
        x[0, 0, 2, 2] = np.inf
        x[0, 1, 2, 3] = -np.inf
    elif where == "w-nan":
        w[1, 0, 2, 1] = np.nan
    elif where == "w-inf":
        w[0, 1, 0, 0] = np.inf
        x[0, 1, 1, 1] = 0.0  # 0 * inf = nan
    elif where == "bias-nan":
        b[2] = np.nan
    kw = dict(stride=(1, 2), padding=(2, 1), dilation=(1, 2), padding_mode=mode)
    with np.errstate(all="ignore"):
        ref = conv2d_ref(x, w, b, **kw)
    y = gpuconv.conv2d(x, w, b, **kw)
    _nan_masks_equal(y, ref)
    assert_close(y, ref, terms=12)


def test_deterministic(rng):
    x = random_array(rng, (3, 20, 11, 9), np.float32)
    w = random_array(rng, (24, 20, 3, 3), np.float32)
    kw = dict(stride=2, padding=1, padding_mode="reflect")
    y1 = gpuconv.conv2d(x, w, **kw)
    y2 = gpuconv.conv2d(x.copy(), w.copy(), **kw)
    assert y1.tobytes() == y2.tobytes()


# ---------------------------------------------------------------- 'same' padding


def test_same_even_kernel_puts_the_extra_pad_at_bottom_right():
    """PyTorch's 'same' for a correlation with k = [1, 2] (and [1, 2, 3, 4]) on
    an impulse at index 3 of 7: the table of notes/api.md b.1."""
    x = np.zeros((1, 1, 1, 7))
    x[..., 3] = 1
    y2 = gpuconv.conv2d(x, np.array([1.0, 2.0]).reshape(1, 1, 1, 2), padding="same")
    y4 = gpuconv.conv2d(x, np.arange(1.0, 5.0).reshape(1, 1, 1, 4), padding="same")
    np.testing.assert_array_equal(y2.ravel(), [0, 0, 2, 1, 0, 0, 0])
    np.testing.assert_array_equal(y4.ravel(), [0, 4, 3, 2, 1, 0, 0])
    # the same thing in the vertical direction, and as explicit pads
    xt = x.transpose(0, 1, 3, 2)
    w = np.arange(1.0, 5.0).reshape(1, 1, 4, 1)
    np.testing.assert_array_equal(
        gpuconv.conv2d(xt, w, padding="same"),
        gpuconv.conv2d(xt, w, padding=(1, 2, 0, 0)),
    )


@pytest.mark.parametrize("size", [5, 6, 7, 8])
@pytest.mark.parametrize(
    "k,s,d", [(3, 2, 1), (4, 2, 1), (2, 3, 1), (3, 2, 2), (1, 2, 1)]
)
def test_same_with_stride_follows_tensorflow(size, k, s, d, rng):
    x = random_array(rng, (1, 1, size, size + 1))
    w = random_array(rng, (1, 1, k, k))
    y = gpuconv.conv2d(x, w, stride=s, dilation=d, padding="same")
    assert y.shape[2:] == (-(-size // s), -(-(size + 1) // s))
    pads = []
    for n in (size, size + 1):
        out = -(-n // s)
        total = max((out - 1) * s + d * (k - 1) + 1 - n, 0)
        pads += [total // 2, total - total // 2]
    np.testing.assert_array_equal(
        y, gpuconv.conv2d(x, w, stride=s, dilation=d, padding=tuple(pads))
    )


# ---------------------------------------------------------------- properties


@st.composite
def geometries(draw):
    groups = draw(st.integers(1, 3))
    Cg = draw(st.integers(1, 2))
    Kg = draw(st.integers(1, 2))
    KH, KW = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    pads = tuple(draw(st.integers(0, 3)) for _ in range(4))
    H = draw(st.integers(max(1, dh * (KH - 1) + 1 - pads[0] - pads[1]), 9))
    W = draw(st.integers(max(1, dw * (KW - 1) + 1 - pads[2] - pads[3]), 9))
    N = draw(st.integers(1, 2))
    mode = draw(st.sampled_from(MODES))
    seed = draw(st.integers(0, 2**16))
    return dict(
        x_shape=(N, groups * Cg, H, W),
        w_shape=(groups * Kg, Cg, KH, KW),
        kw=dict(
            stride=(sh, sw),
            dilation=(dh, dw),
            padding=pads,
            groups=groups,
            padding_mode=mode,
        ),
        seed=seed,
    )


@given(geometries())
def test_property_matches_reference(g):
    rng = np.random.default_rng(g["seed"])
    x = random_array(rng, g["x_shape"])
    w = random_array(rng, g["w_shape"])
    y = gpuconv.conv2d(x, w, **g["kw"])
    assert_close(y, conv2d_ref(x, w, **g["kw"]), terms=conv_terms(w.shape))


@given(geometries())
def test_property_linear_in_x_and_w(g):
    rng = np.random.default_rng(g["seed"])
    x1, x2 = (random_array(rng, g["x_shape"]) for _ in range(2))
    w1, w2 = (random_array(rng, g["w_shape"]) for _ in range(2))
    a, c = 0.75, -1.5
    kw = g["kw"]
    t = conv_terms(g["w_shape"])
    lhs = gpuconv.conv2d(a * x1 + c * x2, w1, **kw)
    assert_close(
        lhs,
        a * gpuconv.conv2d(x1, w1, **kw) + c * gpuconv.conv2d(x2, w1, **kw),
        terms=t,
    )
    lhs = gpuconv.conv2d(x1, a * w1 + c * w2, **kw)
    assert_close(
        lhs,
        a * gpuconv.conv2d(x1, w1, **kw) + c * gpuconv.conv2d(x1, w2, **kw),
        terms=t,
    )


@given(geometries())
def test_property_groups_are_independent_convolutions(g):
    """A grouped conv equals the per-group convs concatenated (output and grads)."""
    rng = np.random.default_rng(g["seed"])
    x = random_array(rng, g["x_shape"])
    w = random_array(rng, g["w_shape"])
    kw = dict(g["kw"])
    G = kw.pop("groups")
    y = gpuconv.conv2d(x, w, groups=G, **kw)
    grads = gpuconv.conv2d_backward(np.ones_like(y), x, w, groups=G, **kw)
    Cg, Kg = x.shape[1] // G, w.shape[0] // G
    parts = [(x[:, i * Cg : (i + 1) * Cg], w[i * Kg : (i + 1) * Kg]) for i in range(G)]
    ys = [gpuconv.conv2d(xi, wi, **kw) for xi, wi in parts]
    assert_close(y, np.concatenate(ys, axis=1), terms=conv_terms(w.shape))
    gs = [
        gpuconv.conv2d_backward(np.ones_like(yi), xi, wi, **kw)
        for (xi, wi), yi in zip(parts, ys, strict=False)
    ]
    t = conv_terms(w.shape) * w.shape[0]
    m = y.size // y.shape[1]  # products in one weight-gradient entry
    assert_close(grads.gx, np.concatenate([gi.gx for gi in gs], axis=1), terms=t)
    assert_close(grads.gw, np.concatenate([gi.gw for gi in gs], axis=0), terms=m)
    assert_close(grads.gb, np.concatenate([gi.gb for gi in gs]), terms=m)


# ---------------------------------------------------------------- PyTorch


TORCH_CASES = [
    ("3x3-pad1", (2, 3, 6, 7), (4, 3, 3, 3), dict(padding=1)),
    (
        "stride-dil-groups",
        (2, 4, 9, 8),
        (4, 2, 3, 2),
        dict(stride=2, dilation=(1, 2), groups=2, padding=(1, 2)),
    ),
    ("even-same", (1, 2, 6, 5), (3, 2, 4, 2), dict(padding="same")),
    (
        "wide-channels",
        (2, 20, 6, 5),
        (18, 20, 3, 2),
        dict(padding=(2, 1), stride=(1, 2)),
    ),
]


# torch's reflect/replicate/circular pads do not take complex tensors
TORCH_MODES_DTYPES = [
    (m, d)
    for d in ("float64", "float32", "complex128")
    for m in ("zeros", "reflect", "replicate", "circular")
    if d != "complex128" or m == "zeros"
]


@pytest.mark.parametrize("mode,dtype", TORCH_MODES_DTYPES)
@pytest.mark.parametrize("case", TORCH_CASES, ids=[c[0] for c in TORCH_CASES])
def test_matches_pytorch(case, mode, dtype, rng):
    """Forward and all three gradients against torch (nn.Conv2d's padding_mode
    semantics: F.pad with the mode, then a conv with padding 0)."""
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    F = torch.nn.functional
    _, xs, ws, kw = case
    x = random_array(rng, xs, dtype)
    w = random_array(rng, ws, dtype)
    b = random_array(rng, (ws[0],), dtype)
    stride, dilation, groups = (
        kw.get("stride", 1),
        kw.get("dilation", 1),
        kw.get("groups", 1),
    )
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    dh, dw = (dilation, dilation) if isinstance(dilation, int) else dilation
    t, bo, le, r = resolve_padding(
        kw.get("padding", 0), ws[2:], (sh, sw), (dh, dw), xs[2:]
    )
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    bt = torch.tensor(b, requires_grad=True)
    xpt = F.pad(xt, (le, r, t, bo), mode="constant" if mode == "zeros" else mode)
    yt = F.conv2d(xpt, wt, bt, stride, 0, dilation, groups)
    gy = random_array(rng, tuple(yt.shape), dtype)
    yt.backward(torch.tensor(gy))
    y = gpuconv.conv2d(x, w, b, padding_mode=mode, **kw)
    g = gpuconv.conv2d_backward(gy, x, w, padding_mode=mode, **kw)
    terms = conv_terms(ws)
    assert_close(y, yt.detach().numpy(), terms=terms)
    assert_close(g.gx, xt.grad.numpy(), terms=terms * ws[0])
    assert_close(g.gw, wt.grad.numpy(), terms=int(np.prod(gy.shape)) // ws[0])
    assert_close(g.gb, bt.grad.numpy(), terms=int(np.prod(gy.shape)) // ws[0])
