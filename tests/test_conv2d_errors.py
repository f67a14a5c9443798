"""Bad input to the conv2d family: the right exception type and message, raised
before any work (the backend ops are replaced by functions that fail the test
if called). PyTorch's message texts where PyTorch has one, as ValueError/TypeError
instead of its RuntimeError."""

from __future__ import annotations

import re

import numpy as np
import pytest

import gpuconv
from gpuconv import _cpu, _cpu_conv

x4 = np.ones((1, 3, 5, 5))
w4 = np.ones((4, 3, 3, 3))
gy4 = np.ones((1, 4, 3, 3))

C2D = gpuconv.conv2d
BWD = gpuconv.conv2d_backward
GIN = gpuconv.conv2d_grad_input
GWT = gpuconv.conv2d_grad_weight
MAT = gpuconv.conv2d_matrix

DTYPE_MSG = "supports float16, float32, float64, complex64 and complex128 inputs"

# (id, function, args, kwargs, exception type, message regex)
CASES = [
    # ---- conv2d: shapes
    (
        "x-2d",
        C2D,
        (np.ones((5, 5)), w4),
        {},
        ValueError,
        r"Expected 3D \(unbatched\) or 4D \(batched\) input to conv2d, but got input "
        r"of size: \[5, 5\]",
    ),
    (
        "x-5d",
        C2D,
        (np.ones((1, 1, 3, 5, 5)), w4),
        {},
        ValueError,
        r"Expected 3D \(unbatched\) or 4D \(batched\) input to conv2d, but got input "
        r"of size: \[1, 1, 3, 5, 5\]",
    ),
    ("x-scalar", C2D, (1.0, w4), {}, ValueError, r"input of size: \[\]"),
    ("x-none", C2D, (None, w4), {}, TypeError, r"x must be an array, got NoneType"),
    (
        "w-3d",
        C2D,
        (x4, np.ones((4, 3, 3))),
        {},
        ValueError,
        r"conv2d expects a 4-D weight \(K, C/groups, KH, KW\), got weight of size "
        r"\[4, 3, 3\]",
    ),
    (
        "w-zero-kernel",
        C2D,
        (x4, np.ones((4, 3, 0, 3))),
        {},
        ValueError,
        r"kernel size must be positive",
    ),
    (
        "channels",
        C2D,
        (np.ones((1, 7, 5, 3)), np.ones((5, 3, 2, 2))),
        {},
        ValueError,
        re.escape(
            "Given groups=1, weight of size [5, 3, 2, 2], expected input"
            "[1, 7, 5, 3] to have 3 channels, but got 7 channels instead"
        ),
    ),
    (
        "groups-C",
        C2D,
        (np.ones((1, 6, 5, 5)), np.ones((4, 3, 2, 2))),
        {"groups": 4},
        ValueError,
        re.escape(
            "Given groups=4, weight of size [4, 3, 2, 2], expected input"
            "[1, 6, 5, 5] to have 12 channels, but got 6 channels instead"
        ),
    ),
    (
        "groups-K",
        C2D,
        (np.ones((1, 6, 5, 5)), np.ones((5, 3, 2, 2))),
        {"groups": 2},
        ValueError,
        re.escape(
            "Given groups=2, expected weight to be divisible by 2 at dimension 0, "
            "but got weight of size [5, 3, 2, 2] instead"
        ),
    ),
    (
        "kernel>input",
        C2D,
        (np.ones((1, 3, 2, 2)), w4),
        {},
        ValueError,
        re.escape(
            "Calculated padded input size per channel: (2 x 2). Kernel size: "
            "(3 x 3). Kernel size can't be greater than actual input size"
        ),
    ),
    (
        "dilated-kernel>input",
        C2D,
        (x4, w4),
        {"dilation": (1, 4), "padding": 1},
        ValueError,
        re.escape(
            "Calculated padded input size per channel: (7 x 7). Kernel size: (3 x 9)."
        ),
    ),
    (
        "padding-2**62",
        C2D,
        (x4, w4),
        {"padding": 2**62},
        ValueError,
        r"conv2d: the padded input \(1 x 3 x \d+ x \d+\) or the output .* is too "
        r"large to address",
    ),
    # ---- ints that do not fit in int64 (an OverflowError deep inside before)
    *[
        (
            f"{name}-10**30",
            C2D,
            (np.ones((1, 3, 5, 5)), np.ones((2, 3, 3, 3))),
            {name: 10**30},
            ValueError,
            rf"{name} must fit in a 64-bit signed integer \(\|{name}\| < 2\*\*63\), "
            r"got 1000000000000000000000000000000",
        )
        for name in ("stride", "dilation", "padding", "groups")
    ],
    (
        "stride-pair-2**63",
        BWD,
        (gy4, x4, w4),
        {"stride": (1, 2**63)},
        ValueError,
        r"stride must fit in a 64-bit signed integer",
    ),
    (
        "padding-4-minus-2**64",
        C2D,
        (x4, w4),
        {"padding": (0, 0, -(2**64), 0)},
        ValueError,
        r"padding must fit in a 64-bit signed integer",
    ),
    (
        "gin-shape-2**63",
        GIN,
        ((1, 3, 2**63, 5), w4, gy4),
        {},
        ValueError,
        r"input_shape must fit in a 64-bit signed integer",
    ),
    (
        "gwt-shape-10**30",
        GWT,
        (x4, (4, 3, 10**30, 3), gy4),
        {},
        ValueError,
        r"weight_shape must fit in a 64-bit signed integer",
    ),
    (
        "bias-size",
        C2D,
        (x4, w4, np.ones(3)),
        {},
        ValueError,
        re.escape(
            "Given weight of size [4, 3, 3, 3], expected bias to be 1-dimensional "
            "with 4 elements, but got bias of size [3] instead"
        ),
    ),
    (
        "bias-2d",
        C2D,
        (x4, w4, np.ones((4, 1))),
        {},
        ValueError,
        r"expected bias to be 1-dimensional with 4 elements, but got bias of size "
        r"\[4, 1\]",
    ),
    # ---- conv2d: stride, dilation, groups, padding values and types
    (
        "stride-0",
        C2D,
        (x4, w4),
        {"stride": 0},
        ValueError,
        r"non-positive stride is not supported",
    ),
    (
        "stride-neg",
        C2D,
        (x4, w4),
        {"stride": (1, -1)},
        ValueError,
        r"non-positive stride is not supported",
    ),
    (
        "stride-float",
        C2D,
        (x4, w4),
        {"stride": 1.5},
        TypeError,
        r"stride must be an int or a tuple of ints, got 1\.5",
    ),
    (
        "stride-3",
        C2D,
        (x4, w4),
        {"stride": (1, 1, 1)},
        ValueError,
        re.escape(
            "expected stride to be a single integer value or a list of 2 values "
            "to match the convolution dimensions, but got stride=[1, 1, 1]"
        ),
    ),
    (
        "dilation-0",
        C2D,
        (x4, w4),
        {"dilation": 0},
        ValueError,
        r"dilation should be greater than zero",
    ),
    (
        "dilation-str",
        C2D,
        (x4, w4),
        {"dilation": "2"},
        TypeError,
        r"dilation must be an int or a tuple of ints, got '2'",
    ),
    (
        "groups-0",
        C2D,
        (x4, w4),
        {"groups": 0},
        ValueError,
        r"non-positive groups is not supported",
    ),
    (
        "groups-float",
        C2D,
        (x4, w4),
        {"groups": 1.0},
        TypeError,
        r"groups must be an int",
    ),
    (
        "groups-bool",
        C2D,
        (x4, w4),
        {"groups": True},
        TypeError,
        r"groups must be an int",
    ),
    (
        "padding-neg",
        C2D,
        (x4, w4),
        {"padding": -1},
        ValueError,
        r"negative padding is not supported",
    ),
    (
        "padding-neg-4",
        C2D,
        (x4, w4),
        {"padding": (0, 1, -1, 0)},
        ValueError,
        r"negative padding is not supported",
    ),
    (
        "padding-3",
        C2D,
        (x4, w4),
        {"padding": (1, 2, 3)},
        ValueError,
        r"expected padding to be a single integer value, a list of 2 values .* but got "
        r"padding=\[1, 2, 3\]",
    ),
    (
        "padding-string",
        C2D,
        (x4, w4),
        {"padding": "full"},
        ValueError,
        r"Invalid padding string 'full', should be one of 'valid' or 'same'",
    ),
    (
        "padding-float",
        C2D,
        (x4, w4),
        {"padding": 1.0},
        TypeError,
        r"padding must be an int or a tuple of ints, got 1\.0",
    ),
    (
        "padding-bool",
        C2D,
        (x4, w4),
        {"padding": True},
        TypeError,
        r"padding must be an int or a tuple of ints, got True",
    ),
    (
        "padding-none",
        C2D,
        (x4, w4),
        {"padding": None},
        TypeError,
        r"padding must be an int or a tuple of ints, got None",
    ),
    (
        "padding-mode",
        C2D,
        (x4, w4),
        {"padding_mode": "mirror"},
        ValueError,
        r"padding_mode must be one of 'zeros', 'reflect', 'replicate', 'circular', "
        r"'symmetric', got 'mirror'",
    ),
    (
        "padding-mode-none",
        C2D,
        (x4, w4),
        {"padding_mode": None},
        ValueError,
        r"padding_mode must be one of .* got None",
    ),
    (
        "padding-mode-empty-input",
        C2D,
        (np.ones((1, 3, 0, 5)), w4),
        {"padding": 2, "padding_mode": "reflect"},
        ValueError,
        r"padding_mode='reflect' needs a non-empty input to extend",
    ),
    (
        "algorithm",
        C2D,
        (x4, w4),
        {"algorithm": "fast"},
        ValueError,
        r"algorithm must be one of 'auto', 'naive', 'tiled', 'tiled_regblock', "
        r"'winograd', 'winograd4', got 'fast'",
    ),
    (
        "backend",
        C2D,
        (x4, w4),
        {"backend": "gpu"},
        ValueError,
        r"backend must be one of 'numpy' or 'cuda' \(or None for automatic\), "
        r"got 'gpu'",
    ),
    (
        "backend-type",
        C2D,
        (x4, w4),
        {"backend": 1},
        TypeError,
        r"backend must be None, 'numpy' or 'cuda', got int 1",
    ),
    # ---- conv2d: dtypes
    (
        "int-x",
        C2D,
        (np.ones((1, 3, 5, 5), dtype=np.int64), w4),
        {},
        TypeError,
        r"conv2d " + DTYPE_MSG + r", got int64",
    ),
    (
        "bool-w",
        C2D,
        (x4, np.ones((4, 3, 3, 3), dtype=bool)),
        {},
        TypeError,
        r"conv2d " + DTYPE_MSG + r", got bool",
    ),
    (
        "int-bias",
        C2D,
        (x4, w4, np.ones(4, dtype=np.int32)),
        {},
        TypeError,
        r"got int32 \(inputs: float64, float64, int32\)",
    ),
    (
        "object-x",
        C2D,
        (np.ones((1, 3, 5, 5), dtype=object), w4),
        {},
        TypeError,
        r"got object",
    ),
    ("string-x", C2D, (np.full((1, 3, 5, 5), "a"), w4), {}, TypeError, r"got <U1"),
    (
        "longdouble-x",
        C2D,
        (np.ones((1, 3, 5, 5), dtype=np.longdouble), w4),
        {},
        TypeError,
        DTYPE_MSG,
    ),
    # ---- conv2d_backward
    (
        "bwd-gy-shape",
        BWD,
        (np.ones((1, 4, 2, 3)), x4, w4),
        {},
        ValueError,
        re.escape(
            "gy must have the output shape (1, 4, 3, 3) of this convolution, "
            "got (1, 4, 2, 3)"
        ),
    ),
    (
        "bwd-gy-unbatched",
        BWD,
        (np.ones((4, 3, 3)), x4, w4),
        {},
        ValueError,
        r"gy must have the output shape \(1, 4, 3, 3\)",
    ),
    (
        "bwd-needs-name",
        BWD,
        (gy4, x4, w4),
        {"needs": ("input", "hessian")},
        ValueError,
        r"needs entries must be 'input', 'weight' or 'bias', got 'hessian'",
    ),
    (
        "bwd-needs-none",
        BWD,
        (gy4, x4, w4),
        {"needs": None},
        TypeError,
        r"needs must be a sequence of names",
    ),
    (
        "bwd-needs-int",
        BWD,
        (gy4, x4, w4),
        {"needs": 3},
        TypeError,
        r"needs must be a sequence of names",
    ),
    (
        "bwd-int-gy",
        BWD,
        (gy4.astype(np.int8), x4, w4),
        {},
        TypeError,
        r"conv2d_backward " + DTYPE_MSG + r", got int8",
    ),
    (
        "bwd-x-2d",
        BWD,
        (gy4, np.ones((5, 5)), w4),
        {},
        ValueError,
        r"input to conv2d_backward, but got input of size: \[5, 5\]",
    ),
    (
        "bwd-stride-0",
        BWD,
        (gy4, x4, w4),
        {"stride": 0},
        ValueError,
        r"non-positive stride is not supported",
    ),
    (
        "bwd-algorithm",
        BWD,
        (gy4, x4, w4),
        {"algorithm": None},
        ValueError,
        r"algorithm must be one of",
    ),
    (
        "bwd-backend",
        BWD,
        (gy4, x4, w4),
        {"backend": "tpu"},
        ValueError,
        r"backend must be one of 'numpy' or 'cuda'",
    ),
    # ---- conv2d_grad_input
    (
        "gin-shape-float",
        GIN,
        ((1, 3.5, 5, 5), w4, gy4),
        {},
        TypeError,
        r"input_shape must be a sequence of ints, got \(1, 3\.5, 5, 5\)",
    ),
    (
        "gin-shape-int",
        GIN,
        (5, w4, gy4),
        {},
        TypeError,
        r"input_shape must be a sequence of ints, got 5",
    ),
    (
        "gin-shape-negative",
        GIN,
        ((1, 3, -5, 5), w4, gy4),
        {},
        ValueError,
        r"input_shape must not have negative sizes, got \(1, 3, -5, 5\)",
    ),
    (
        "gin-shape-5d",
        GIN,
        ((1, 1, 3, 5, 5), w4, gy4),
        {},
        ValueError,
        r"input to conv2d_grad_input, but got input of size: \[1, 1, 3, 5, 5\]",
    ),
    (
        "gin-gy-shape",
        GIN,
        ((1, 3, 6, 5), w4, gy4),
        {},
        ValueError,
        r"gy must have the output shape \(1, 4, 4, 3\) of this convolution, got "
        r"\(1, 4, 3, 3\)",
    ),
    (
        "gin-channels",
        GIN,
        ((1, 2, 5, 5), w4, gy4),
        {},
        ValueError,
        r"to have 3 channels, but got 2 channels instead",
    ),
    # ---- conv2d_grad_weight
    (
        "gwt-shape-3",
        GWT,
        (x4, (4, 3, 3), gy4),
        {},
        ValueError,
        r"conv2d_grad_weight expects a 4-D weight",
    ),
    (
        "gwt-shape-str",
        GWT,
        (x4, "abcd", gy4),
        {},
        TypeError,
        r"weight_shape must be a sequence of ints, got 'abcd'",
    ),
    (
        "gwt-kernel-0",
        GWT,
        (x4, (4, 3, 0, 3), gy4),
        {},
        ValueError,
        r"kernel size must be positive",
    ),
    (
        "gwt-complex-bool",
        GWT,
        (x4.astype(bool), (4, 3, 3, 3), gy4),
        {},
        TypeError,
        r"conv2d_grad_weight " + DTYPE_MSG + r", got bool",
    ),
    (
        "gwt-padding-mode",
        GWT,
        (x4, (4, 3, 3, 3), gy4),
        {"padding_mode": "edge"},
        ValueError,
        r"padding_mode must be one of",
    ),
    # ---- conv2d_matrix
    (
        "mat-batch-2",
        MAT,
        ((2, 3, 5, 5), w4),
        {},
        ValueError,
        re.escape(
            "conv2d_matrix is for one image: input_shape must be (C, H, W) or "
            "(1, C, H, W), got (2, 3, 5, 5)"
        ),
    ),
    (
        "mat-too-large",
        MAT,
        ((3, 300, 300), w4),
        {"padding": 1},
        ValueError,
        r"conv2d_matrix would have 360000 x 270000 = 97200000000 entries; it is meant "
        r"for small sizes",
    ),
    (
        "mat-int-w",
        MAT,
        ((3, 5, 5), w4.astype(np.int16)),
        {},
        TypeError,
        r"conv2d_matrix " + DTYPE_MSG + r", got int16",
    ),
    (
        "mat-shape-2d",
        MAT,
        ((5, 5), w4),
        {},
        ValueError,
        r"Expected 3D \(unbatched\) or 4D \(batched\) input to conv2d_matrix",
    ),
    (
        "mat-padding-mode",
        MAT,
        ((3, 5, 5), w4),
        {"padding_mode": "wrap"},
        ValueError,
        r"padding_mode must be one of",
    ),
    (
        "mat-dilation",
        MAT,
        ((3, 5, 5), w4),
        {"dilation": -2},
        ValueError,
        r"dilation should be greater than zero",
    ),
]


@pytest.fixture
def no_work(monkeypatch):
    """Every backend op fails the test if it is reached."""

    def fail(*args, **kwargs):
        raise AssertionError("a backend op ran before the arguments were checked")

    names = (
        "conv2d_forward",
        "conv2d_backward_input",
        "conv2d_backward_weight",
        "conv2d_backward_bias",
    )
    for name in names:
        monkeypatch.setattr(_cpu_conv, name, fail)
        monkeypatch.setattr(_cpu, name, fail)
    monkeypatch.setattr(_cpu_conv, "gemm", fail)


def test_table_is_large():
    assert len(CASES) >= 40
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_raises_before_any_work(case, no_work):
    _, fn, args, kwargs, exc, msg = case
    with pytest.raises(exc, match=msg):
        fn(*args, **kwargs)


def test_no_work_fixture_is_effective(no_work):
    """The fixture really intercepts a valid call (so the table above means it)."""
    with pytest.raises(AssertionError, match="a backend op ran"):
        gpuconv.conv2d(x4, w4)
    with pytest.raises(AssertionError, match="a backend op ran"):
        gpuconv.conv2d_backward(gy4, x4, w4)


@pytest.mark.parametrize("stride", [2**62, 2**63 - 1, (2**63 - 1, 1), (3, 2**40)])
def test_huge_valid_stride_leaves_one_output(stride):
    """A stride that fits in int64 but passes the last kernel position is valid: one
    output row/column, the same result (forward and gradients) as the smallest such
    stride, and the problem's stride is clamped so that 32-bit kernels accept it."""
    from gpuconv._conv_args import normalize_conv2d
    from gpuconv._plan_conv import check_extents

    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 6, 7))
    w = rng.standard_normal((2, 3, 3, 2))
    sh, sw = stride if isinstance(stride, tuple) else (stride, stride)
    small = (min(sh, 4), min(sw, 6))  # 6 - 3 + 1 and 7 - 2 + 1: just one position
    y = gpuconv.conv2d(x, w, stride=stride)
    want = gpuconv.conv2d(x, w, stride=small)
    np.testing.assert_array_equal(y, want)
    assert y.shape[2] == 1 or sh < 4
    assert y.shape[3] == 1 or sw < 6
    gy = rng.standard_normal(y.shape)
    got = gpuconv.conv2d_backward(gy, x, w, stride=stride)
    ref = gpuconv.conv2d_backward(gy, x, w, stride=small)
    for a, b in zip(got, ref, strict=True):
        np.testing.assert_array_equal(a, b)
    p = normalize_conv2d(x.shape, w.shape, [x.dtype], stride=stride)
    assert p.stride == small
    check_extents(p)  # the CUDA planner's 32-bit limits: no ValueError


@pytest.mark.parametrize("layout", ["fortran", "readonly"])
def test_valid_unusual_inputs_are_accepted(layout):
    """Not errors: unusual but valid arguments (numpy integers as sizes, lists)."""
    x = np.asfortranarray(x4) if layout == "fortran" else x4.copy()
    x.flags.writeable = layout != "readonly"
    y = gpuconv.conv2d(
        x,
        w4.tolist(),
        stride=np.int64(1),
        padding=[np.int32(1)],
        dilation=(1,),
        groups=np.uint8(1),
    )
    assert y.shape == (1, 4, 5, 5)
