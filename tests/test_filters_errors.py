"""Bad input to the filter API: exception type and exact message, before any work.

Each row: the call, the expected exception type and message, and (where SciPy or
NumPy define the error) the same call on SciPy/NumPy, which must raise the same
type with the same text. Every call runs with the backend's entry points replaced
by a trap, so an error raised after work started fails the test.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from scipy import signal

import gpuconv
from gpuconv import _backend, _cpu, _cpu_filter
from gpuconv._filter_args import (
    BOUNDARY_MSG,
    FILL_CAST_MSG,
    FILL_EMPTY_MSG,
    FILL_SIZE_MSG,
    ITEMSIZE_MSG,
    METHOD_MSG,
    MODE_MSG,
    NEGATIVE_MSG,
    TYPE_2D_MSG,
    VALID_MSG,
)

A = np.ones((3, 3))
K = np.ones((2, 2))
I8 = np.ones((3, 3), np.int8)
U8 = np.ones((3, 3), np.uint8)
c2, r2 = gpuconv.convolve2d, gpuconv.correlate2d
sc2, sr2 = signal.convolve2d, signal.correlate2d
c1, r1 = gpuconv.convolve, gpuconv.correlate
choose = gpuconv.choose_method
DIM = "convolve2d inputs must both be 2-D arrays"
LONG_SEQ = (
    "setting an array element with a sequence. The requested array would exceed "
    "the maximum number of dimension of 1."
)

# (id, ours, SciPy/NumPy equivalent or None, exception, message)
pytestmark = pytest.mark.filterwarnings(
    "ignore:Casting complex values:numpy.exceptions.ComplexWarning",
    "ignore:invalid value encountered in cast:RuntimeWarning",
)

CASES = [
    # ---- convolve2d / correlate2d: SciPy's errors ----------------------------------
    (
        "2d-1d-input",
        lambda: c2(np.ones(3), K),
        lambda: sc2(np.ones(3), K),
        ValueError,
        DIM,
    ),
    (
        "2d-3d-input",
        lambda: c2(A, np.ones((1, 2, 2))),
        lambda: sc2(A, np.ones((1, 2, 2))),
        ValueError,
        DIM,
    ),
    (
        "2d-scalar",
        lambda: r2(3.0, K),
        lambda: sr2(3.0, K),
        ValueError,
        "correlate2d inputs must both be 2-D arrays",
    ),
    ("2d-none", lambda: c2(None, K), lambda: sc2(None, K), ValueError, DIM),
    (
        "2d-mode-case",
        lambda: c2(A, K, "SAME"),
        lambda: sc2(A, K, "SAME"),
        ValueError,
        MODE_MSG,
    ),
    ("2d-mode-int", lambda: r2(A, K, 1), lambda: sr2(A, K, 1), ValueError, MODE_MSG),
    (
        "2d-mode-list",
        lambda: c2(A, K, ["full"]),
        lambda: sc2(A, K, ["full"]),
        TypeError,
        "unhashable type: 'list'",
    ),
    (
        "2d-boundary",
        lambda: c2(A, K, boundary="nearest"),
        lambda: sc2(A, K, boundary="nearest"),
        ValueError,
        BOUNDARY_MSG,
    ),
    (
        "2d-boundary-reflect",
        lambda: r2(A, K, boundary="reflect"),
        lambda: sr2(A, K, boundary="reflect"),
        ValueError,
        "Incorrect boundary value.",
    ),
    (
        "2d-valid-shapes",
        lambda: c2(np.ones((3, 5)), np.ones((4, 2)), "valid"),
        lambda: sc2(np.ones((3, 5)), np.ones((4, 2)), "valid"),
        ValueError,
        VALID_MSG,
    ),
    (
        "2d-valid-shapes-rev",
        lambda: r2(np.ones((4, 2)), np.ones((3, 5)), "valid"),
        lambda: sr2(np.ones((4, 2)), np.ones((3, 5)), "valid"),
        ValueError,
        VALID_MSG,
    ),
    (
        "2d-fill-complex",
        lambda: c2(A, K, fillvalue=1j),
        lambda: sc2(A, K, fillvalue=1j),
        ValueError,
        FILL_CAST_MSG,
    ),
    (
        "2d-fill-size",
        lambda: c2(A, K, fillvalue=[1, 2]),
        lambda: sc2(A, K, fillvalue=[1, 2]),
        ValueError,
        FILL_SIZE_MSG,
    ),
    (
        "2d-fill-empty",
        lambda: r2(A, K, fillvalue=[]),
        lambda: sr2(A, K, fillvalue=[]),
        ValueError,
        FILL_EMPTY_MSG,
    ),
    (
        "2d-fill-nan-int",
        lambda: c2(I8, I8, fillvalue=np.nan),
        lambda: sc2(I8, I8, fillvalue=np.nan),
        ValueError,
        FILL_CAST_MSG,
    ),
    (
        "2d-fill-neg-uint",
        lambda: c2(U8, U8, fillvalue=-1),
        lambda: sc2(U8, U8, fillvalue=-1),
        ValueError,
        FILL_CAST_MSG,
    ),
    (
        "2d-fill-unsafe-array",
        lambda: c2(A.astype("f4"), K.astype("f4"), fillvalue=np.array(1.5)),
        lambda: sc2(A.astype("f4"), K.astype("f4"), fillvalue=np.array(1.5)),
        ValueError,
        FILL_CAST_MSG,
    ),
    (
        "2d-fill-string",
        lambda: c2(A, K, fillvalue="abc"),
        lambda: sc2(A, K, fillvalue="abc"),
        ValueError,
        "complex() arg is a malformed string",
    ),
    (
        "2d-fill-dict",
        lambda: c2(A, K, fillvalue={}),
        lambda: sc2(A, K, fillvalue={}),
        TypeError,
        "must be real number, not dict",
    ),
    (
        "2d-float16",
        lambda: c2(A.astype(np.float16), K.astype(np.int8)),
        lambda: sc2(A.astype(np.float16), K.astype(np.int8)),
        ValueError,
        TYPE_2D_MSG,
    ),
    (
        "2d-bool",
        lambda: r2(A > 0, K > 0),
        lambda: sr2(A > 0, K > 0),
        ValueError,
        TYPE_2D_MSG,
    ),
    (
        "2d-object",
        lambda: c2(A.astype(object), K),
        lambda: sc2(A.astype(object), K),
        ValueError,
        TYPE_2D_MSG,
    ),
    (
        "2d-datetime",
        lambda: c2(A.astype("m8[s]"), K.astype("m8[s]")),
        lambda: sc2(A.astype("m8[s]"), K.astype("m8[s]")),
        ValueError,
        TYPE_2D_MSG,
    ),
    (
        "2d-string",
        lambda: c2(np.array([["a"]]), K),
        lambda: sc2(np.array([["a"]]), K),
        ValueError,
        ITEMSIZE_MSG,
    ),
    (
        "2d-negative-dims",
        lambda: c2(np.ones((0, 3)), np.ones((0, 2))),
        lambda: sc2(np.ones((0, 3)), np.ones((0, 2))),
        ValueError,
        NEGATIVE_MSG,
    ),
    (
        "2d-order-fill-before-type",
        lambda: c2(A.astype(np.float16), K > 0, fillvalue=[]),
        lambda: sc2(A.astype(np.float16), K > 0, fillvalue=[]),
        ValueError,
        FILL_EMPTY_MSG,
    ),
    (
        "2d-method",
        lambda: c2(A, K, method="fast"),
        lambda: signal.convolve(A, K, method="fast"),
        ValueError,
        METHOD_MSG,
    ),
    # ---- convolve2d / correlate2d: gpuconv's own ------------------------------------
    (
        "2d-fft-int",
        lambda: c2(I8, I8, method="fft"),
        None,
        ValueError,
        "convolve2d: method='fft' is not available for int8 data (integer and boolean "
        "results must stay exact); use method='direct' or 'auto'",
    ),
    (
        "2d-axes-length",
        lambda: c2(np.ones((2, 3, 3)), K, axes=(0,)),
        None,
        ValueError,
        "axes must name exactly two axes of in1 (the filtered H and W axes), "
        "got 1: (0,)",
    ),
    (
        "2d-axes-repeat",
        lambda: r2(np.ones((2, 3, 3)), K, axes=(1, -2)),
        None,
        ValueError,
        "axes must name two distinct axes of in1, got (1, -2)",
    ),
    (
        "2d-axes-range",
        lambda: c2(np.ones((2, 3, 3)), K, axes=(0, 3)),
        None,
        ValueError,
        "axis 3 in axes=(0, 3) is out of range for in1 with 3 dimensions",
    ),
    (
        "2d-axes-type",
        lambda: c2(np.ones((2, 3, 3)), K, axes=(0, "1")),
        None,
        TypeError,
        "axes must be ints, got (0, '1')",
    ),
    (
        "2d-axes-not-seq",
        lambda: c2(np.ones((2, 3, 3)), K, axes=5),
        None,
        TypeError,
        "axes must be a pair of ints (the two filtered axes of in1), got 5",
    ),
    (
        "2d-axes-in1-1d",
        lambda: c2(np.ones(3), K, axes=(0, 1)),
        None,
        ValueError,
        "convolve2d with axes needs in1 with at least 2 dimensions, got 1-D input of "
        "shape (3,)",
    ),
    (
        "2d-axes-in2-1d",
        lambda: c2(A, np.ones(2), axes=(0, 1)),
        None,
        ValueError,
        "convolve2d with axes needs in2 with at least 2 dimensions "
        "(a kernel or a stack "
        "of kernels), got shape (2,)",
    ),
    (
        "2d-axes-in2-deeper",
        lambda: r2(A, np.ones((1, 2, 2)), axes=(0, 1)),
        None,
        ValueError,
        "correlate2d with axes: in2 has more dimensions (3) than in1 (2)",
    ),
    (
        "2d-axes-broadcast",
        lambda: c2(np.ones((4, 3, 5, 5)), np.ones((2, 2, 2)), axes=(2, 3)),
        None,
        ValueError,
        "in1 and in2 stacks cannot be broadcast together: batch shapes (4, 3) and (2,) "
        "(the dimensions other than the filtered axes must be equal or 1)",
    ),
    (
        "2d-wrap-empty",
        lambda: c2(np.ones((0, 3)), K, boundary="wrap"),
        None,
        ValueError,
        "convolve2d: boundary 'wrap' cannot extend an empty image of shape (0, 3) to a "
        "non-empty output (SciPy crashes on this input); use boundary='fill'",
    ),
    (
        "2d-backend-name",
        lambda: c2(A, K, backend="gpu"),
        None,
        ValueError,
        "backend must be one of 'numpy' or 'cuda' (or None for automatic), got 'gpu'",
    ),
    (
        "2d-backend-type",
        lambda: c2(A, K, backend=1),
        None,
        TypeError,
        "backend must be None, 'numpy' or 'cuda', got int 1",
    ),
    (
        "1d-backend-type",
        lambda: r1([1.0, 2.0], [1.0], backend=b"numpy"),
        None,
        TypeError,
        "backend must be None, 'numpy' or 'cuda', got bytes b'numpy'",
    ),
    # ---- convolve / correlate: NumPy's errors -------------------------------------
    (
        "1d-a-empty",
        lambda: c1([], [1]),
        lambda: np.convolve([], [1]),
        ValueError,
        "a cannot be empty",
    ),
    (
        "1d-v-empty",
        lambda: c1([1], []),
        lambda: np.convolve([1], []),
        ValueError,
        "v cannot be empty",
    ),
    (
        "1d-empty-before-mode",
        lambda: c1([], [1], "x"),
        lambda: np.convolve([], [1], "x"),
        ValueError,
        "a cannot be empty",
    ),
    (
        "1d-mode-string",
        lambda: c1([1, 2], [1], "x"),
        lambda: np.convolve([1, 2], [1], "x"),
        ValueError,
        "mode must be one of 'valid', 'same', or 'full' (got 'x')",
    ),
    (
        "1d-mode-case",
        lambda: r1([1, 2], [1], "SAME"),
        lambda: np.correlate([1, 2], [1], "SAME"),
        ValueError,
        "Use one of 'valid', 'same', or 'full' for convolve/correlate mode",
    ),
    (
        "1d-mode-int",
        lambda: c1([1, 2], [1], 3),
        lambda: np.convolve([1, 2], [1], 3),
        ValueError,
        "integer convolve/correlate mode must be 0, 1, or 2",
    ),
    (
        "1d-mode-float",
        lambda: c1([1, 2], [1], 1.0),
        lambda: np.convolve([1, 2], [1], 1.0),
        TypeError,
        "convolve/correlate mode not understood",
    ),
    (
        "1d-mode-bool",
        lambda: r1([1, 2], [1], True),
        lambda: np.correlate([1, 2], [1], True),
        TypeError,
        "convolve/correlate mode not understood",
    ),
    (
        "1d-mode-none",
        lambda: r1([1, 2], [1], None),
        lambda: np.correlate([1, 2], [1], None),
        TypeError,
        "convolve/correlate mode not understood",
    ),
    (
        "1d-convolve-2d",
        lambda: c1(np.ones((2, 2)), [1]),
        lambda: np.convolve(np.ones((2, 2)), [1]),
        ValueError,
        "object too deep for desired array",
    ),
    (
        "1d-string",
        lambda: c1(np.array(["a"]), np.array(["a"])),
        lambda: np.convolve(np.array(["a"]), np.array(["a"])),
        ValueError,
        ITEMSIZE_MSG,
    ),
    (
        "1d-corr-a-empty",
        lambda: r1([], [1]),
        lambda: np.correlate([], [1]),
        ValueError,
        "first array argument cannot be empty",
    ),
    (
        "1d-corr-v-empty",
        lambda: r1([1], []),
        lambda: np.correlate([1], []),
        ValueError,
        "second array argument cannot be empty",
    ),
    (
        "1d-corr-mode-before-empty",
        lambda: r1([], [1], "x"),
        lambda: np.correlate([], [1], "x"),
        ValueError,
        "mode must be one of 'valid', 'same', or 'full' (got 'x')",
    ),
    (
        "1d-corr-scalar",
        lambda: r1(3, [1, 2]),
        lambda: np.correlate(3, [1, 2]),
        ValueError,
        "object of too small depth for desired array",
    ),
    (
        "1d-corr-nested",
        lambda: r1([[1, 2]], [1]),
        lambda: np.correlate([[1, 2]], [1]),
        ValueError,
        LONG_SEQ,
    ),
    (
        "1d-corr-2d-array",
        lambda: r1([1, 2], np.ones((2, 2))),
        lambda: np.correlate([1, 2], np.ones((2, 2))),
        ValueError,
        "object too deep for desired array",
    ),
    # ---- convolve / correlate: gpuconv's own ----------------------------------------
    (
        "1d-object",
        lambda: c1(np.array([1, 2], object), [1]),
        None,
        TypeError,
        "convolve does not support dtype object "
        "(gpuconv computes bool, integer, floating "
        "and complex inputs; numpy.convolve handles object and timedelta arrays)",
    ),
    (
        "1d-fft-bool",
        lambda: r1([True], [False], method="fft"),
        None,
        ValueError,
        "correlate: method='fft' is not available for bool data (integer and boolean "
        "results must stay exact); use method='direct' or 'auto'",
    ),
    ("1d-method", lambda: r1([1.0], [1.0], method=None), None, ValueError, METHOD_MSG),
    # ---- choose_method -----------------------------------------------------------
    (
        "choose-mode",
        lambda: choose(A, K, "x"),
        lambda: sc2(A, K, "x"),
        ValueError,
        MODE_MSG,
    ),
    (
        "choose-dims",
        lambda: choose(np.ones((2, 2, 2)), K),
        lambda: sc2(np.ones((2, 2, 2)), K),
        ValueError,
        DIM,
    ),
    (
        "choose-boundary",
        lambda: choose(A, K, boundary="x"),
        lambda: sc2(A, K, boundary="x"),
        ValueError,
        BOUNDARY_MSG,
    ),
    (
        "choose-1d-empty",
        lambda: choose(np.ones(0), np.ones(3)),
        lambda: np.convolve(np.ones(0), np.ones(3)),
        ValueError,
        "a cannot be empty",
    ),
    (
        "choose-1d-mode",
        lambda: choose(np.ones(4), np.ones(3), 7),
        lambda: np.convolve(np.ones(4), np.ones(3), 7),
        ValueError,
        "integer convolve/correlate mode must be 0, 1, or 2",
    ),
    (
        "choose-valid",
        lambda: choose(np.ones((3, 5)), np.ones((4, 2)), "valid"),
        lambda: sc2(np.ones((3, 5)), np.ones((4, 2)), "valid"),
        ValueError,
        VALID_MSG,
    ),
    (
        "choose-axes",
        lambda: choose(np.ones((2, 3, 3)), K, axes=(2, 2)),
        None,
        ValueError,
        "axes must name two distinct axes of in1, got (2, 2)",
    ),
]


@pytest.fixture
def trap(monkeypatch):
    """Any work (moving arrays to a backend, a backend op, the NumPy kernels) fails."""

    def boom(*args, **kwargs):
        raise AssertionError("work started before the argument error was raised")

    monkeypatch.setattr(_backend, "to_backend", boom)
    monkeypatch.setattr(_cpu, "correlate2d", boom)
    for name in ("correlate2d", "extend", "_direct", "_fft"):
        monkeypatch.setattr(_cpu_filter, name, boom)


def test_table_is_large_and_covers_every_function():
    assert len(CASES) >= 40
    names = {case[0].split("-")[0] for case in CASES}
    assert names == {"2d", "1d", "choose"}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_error(case, trap):
    _, ours, theirs, exc, msg = case
    with pytest.raises(exc) as info:
        ours()
    assert type(info.value) is exc
    assert str(info.value) == msg
    if theirs is not None:
        with pytest.raises(Exception) as ref:
            theirs()
        assert type(ref.value) is exc, ref.value
        assert str(ref.value) == msg


def test_cuda_without_cupy_is_runtime_error():
    reason = _backend.cuda_unavailable_reason()
    if reason is None:
        pytest.skip("a GPU is available here")
    for call in (
        lambda: c2(A, K, backend="cuda"),
        lambda: c1([1.0], [1.0], backend="cuda"),
    ):
        with pytest.raises(
            RuntimeError, match=re.escape("backend 'cuda' is not available")
        ):
            call()


def test_valid_error_before_mode_error_like_scipy(trap):
    """SciPy checks the 'valid' sizes before the mode; gpuconv keeps that order."""
    with pytest.raises(ValueError, match=re.escape(BOUNDARY_MSG)):
        c2(A, K, "full", boundary="x", fillvalue=[])
    with pytest.raises(ValueError, match=re.escape(MODE_MSG)):
        c2(A, K, "x", boundary="x")
