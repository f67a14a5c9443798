"""The convolve2d/correlate2d/convolve/correlate argument normaliser.

The public filter functions (``gpuconv._filters``) reduce every call (mode,
boundary, fillvalue, flips, conjugation, the 'valid' swap, ``axes`` stacks) to one
:class:`FilterProblem`, a padded 2-D cross-correlation of a stack of images with
one kernel or a stack of kernels, which is all a backend implements:

``out[b, i, j] = sum_{a, c} ext(in1)[b, i+a-pad_top, j+c-pad_left] * k[bk, a, c]``

with ``bk = b`` when ``Bk == B`` and ``bk = 0`` when ``Bk == 1``; ``ext`` extends
``in1`` beyond its edges by ``boundary``: ``'fill'`` (the constant ``fillvalue``),
``'wrap'`` (periodic, ``gpuconv._padding`` mode ``'circular'``) or ``'symm'``
(mirror with the edge repeated, mode ``'symmetric'``). Kernels are already
flipped (true convolution) or conjugated (complex correlation) by the caller.

Everything here is pure shape/dtype logic: it runs (and every argument is checked,
with SciPy's and NumPy's exception types and texts) before any array is copied,
cast or handed to a backend. The reduction rules:

==================  ==========================  =====================  =============
call                kernel given to the backend  ``pad_top`` ('same')   ``OH`` ('same')
==================  ==========================  =====================  =============
``convolve2d``      ``in2[::-1, ::-1]``          ``KH // 2``            ``H``
``correlate2d``     ``conj(in2)``                ``(KH - 1) // 2``      ``H``
``convolve`` (1-D)  ``v[::-1]``                  ``N // 2``             ``max(M, N)``
``correlate`` (1-D) ``conj(v)``                  ``N // 2``             ``max(M, N)``
==================  ==========================  =====================  =============

'full' has ``pad_top = KH - 1`` and ``OH = H + KH - 1``; 'valid' has ``pad_top = 0``
and ``OH = H - KH + 1`` (for 1-D, ``N`` is the length of the shorter input after
NumPy's swap). So for even kernels convolve2d's 'same' puts the extra row/column of
padding at the top/left (its output is ``full[(KH-1)//2 :][:H]``) and correlate2d's at
the bottom/right (like PyTorch's 'same'), exactly as SciPy does.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any

import numpy as np

BOUNDARY_TO_PAD_MODE = {"fill": "zeros", "wrap": "circular", "symm": "symmetric"}


@dataclass(frozen=True)
class FilterProblem:
    """A validated padded 2-D correlation of ``in1 (B, H, W)`` with ``k (Bk, KH, KW)``.

    ``pad_bottom = OH + KH - 1 - H - pad_top`` and
    ``pad_right = OW + KW - 1 - W - pad_left`` are never negative.
    """

    B: int
    H: int
    W: int
    Bk: int
    KH: int
    KW: int
    pad_top: int
    pad_left: int
    OH: int
    OW: int
    boundary: str
    fillvalue: Any
    dtype: np.dtype

    @property
    def pad_bottom(self) -> int:
        return self.OH + self.KH - 1 - self.H - self.pad_top

    @property
    def pad_right(self) -> int:
        return self.OW + self.KW - 1 - self.W - self.pad_left

    @property
    def pad_mode(self) -> str:
        """The :mod:`gpuconv._padding` mode name of ``boundary``."""
        return BOUNDARY_TO_PAD_MODE[self.boundary]


# --------------------------------------------------------------------------------------
# SciPy's and NumPy's messages (checked against scipy 1.17.1 and numpy 2.4.6)
# --------------------------------------------------------------------------------------

MODE_MSG = "Acceptable mode flags are 'valid', 'same', or 'full'."
BOUNDARY_MSG = (
    "Acceptable boundary flags are 'fill', 'circular' (or 'wrap'), and "
    "'symmetric' (or 'symm')."
)
VALID_MSG = (
    "For 'valid' mode, one must be at least as large as the other in every dimension"
)
FILL_CAST_MSG = (
    "could not cast `fillvalue` directly to the output type (it was first "
    "converted to complex)."
)
FILL_SIZE_MSG = "`fillvalue` must be scalar or an array with one element."
FILL_EMPTY_MSG = "`fillvalue` cannot be an empty array."
TYPE_2D_MSG = "convolve2d not available for this type."
ITEMSIZE_MSG = "data type must provide an itemsize"
NEGATIVE_MSG = "negative dimensions are not allowed"
METHOD_MSG = "Acceptable method flags are 'auto', 'direct', or 'fft'."

#: SciPy's ``_modedict``; looked up the same way so that unhashable modes raise
#: SciPy's ``TypeError`` too.
_MODES_2D = {"valid": 0, "same": 1, "full": 2}
#: SciPy's ``_boundarydict`` mapped onto the canonical names. ``'reflect'`` is in
#: SciPy's table but its C core rejects it ("Incorrect boundary value.").
_BOUNDARIES = {
    "fill": "fill",
    "pad": "fill",
    "wrap": "wrap",
    "circular": "wrap",
    "symm": "symm",
    "symmetric": "symm",
    "reflect": None,
}
_MODES_1D = ("valid", "same", "full")
METHODS = ("auto", "direct", "fft")


def check_mode_2d(mode: Any) -> str:
    """SciPy's mode check for ``convolve2d``/``correlate2d`` (case-sensitive).

    >>> check_mode_2d("same")
    'same'
    """
    try:
        _MODES_2D[mode]
    except KeyError as e:
        raise ValueError(MODE_MSG) from e
    return mode


def check_boundary(boundary: Any) -> str:
    """SciPy's boundary check; returns the canonical name ``'fill'``, ``'wrap'`` or
    ``'symm'``.

    >>> check_boundary("circular"), check_boundary("symmetric"), check_boundary("pad")
    ('wrap', 'symm', 'fill')
    """
    try:
        name = _BOUNDARIES[boundary]
    except KeyError as e:
        raise ValueError(BOUNDARY_MSG) from e
    if name is None:  # SciPy: the dict accepts it, the C core does not
        raise ValueError("Incorrect boundary value.")
    return name


def check_method(method: Any) -> str:
    """``'auto'``, ``'direct'`` or ``'fft'`` (else scipy.signal.convolve's text)."""
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(METHOD_MSG)
    return method


def check_mode_1d(mode: Any) -> str:
    """NumPy's ``convolve``/``correlate`` mode converter: a string or 0/1/2.

    >>> check_mode_1d(1), check_mode_1d("full")
    ('same', 'full')
    """
    if isinstance(mode, str):
        if mode in _MODES_1D:
            return mode
        if mode[:1] in ("v", "V", "s", "S", "f", "F"):
            raise ValueError(
                "Use one of 'valid', 'same', or 'full' for convolve/correlate mode"
            )
        raise ValueError(
            f"mode must be one of 'valid', 'same', or 'full' (got {mode!r})"
        )
    if isinstance(mode, (bool, np.bool_)):
        raise TypeError("convolve/correlate mode not understood")
    try:
        number = operator.index(mode)
    except TypeError:
        raise TypeError("convolve/correlate mode not understood") from None
    if not -(2**31) <= number < 2**31:
        raise TypeError("convolve/correlate mode not understood")
    if number not in (0, 1, 2):
        raise ValueError("integer convolve/correlate mode must be 0, 1, or 2")
    return _MODES_1D[number]


# --------------------------------------------------------------------------------------
# dtypes and the fill value
# --------------------------------------------------------------------------------------


def result_dtype_2d(dt1: np.dtype, dt2: np.dtype) -> np.dtype:
    """Output dtype of convolve2d/correlate2d, checked like SciPy's C core.

    String dtypes raise SciPy's "data type must provide an itemsize"; bool,
    float16, object, datetime/timedelta and structured dtypes raise
    "convolve2d not available for this type." (SciPy raises that last one only
    after the fill value and output shape checks: see :func:`normalize_filter2d`).
    Returns ``None`` for the second group so that the caller can defer the error.
    """
    if dt1.kind in "US" or dt2.kind in "US":
        raise ValueError(ITEMSIZE_MSG)
    try:
        return np.result_type(dt1, dt2)
    except TypeError:
        return None  # type: ignore[return-value]


def supported_2d(dt: np.dtype | None) -> bool:
    """True for the dtypes SciPy's convolve2d computes in: integers, float32/64,
    longdouble and the complex types (not bool, float16, object, datetime)."""
    return (
        dt is not None
        and (dt.kind in "iu" or (dt.kind in "fc" and dt != np.float16))
        and dt.fields is None
    )


def cast_fillvalue(fillvalue: Any, dtype: np.dtype) -> Any:
    """SciPy's conversion of ``fillvalue`` to the output dtype; a NumPy scalar.

    Like SciPy's C core (``PyArray_FromObject``): a NumPy array must cast safely,
    anything else is converted as ``np.array(fillvalue, dtype)`` would (so 2.5
    becomes 2 for integers); when that fails, the value is converted to complex
    (its errors propagate) and "could not cast `fillvalue` directly to the output
    type" is raised. Empty and multi-element values are rejected.

    >>> cast_fillvalue(2.5, np.dtype(np.int8))
    np.int8(2)
    """
    try:
        if isinstance(fillvalue, np.ndarray):
            afill = fillvalue.astype(dtype, casting="safe")
        else:
            afill = np.array(fillvalue, dtype=dtype)
    except Exception:
        if isinstance(fillvalue, np.ndarray):
            fillvalue.astype(np.complex128, casting="safe")
        else:
            np.array(fillvalue, dtype=np.complex128)
        raise ValueError(FILL_CAST_MSG) from None
    if afill.size != 1:
        raise ValueError(FILL_EMPTY_MSG if afill.size == 0 else FILL_SIZE_MSG)
    return afill.reshape(())[()]


# --------------------------------------------------------------------------------------
# geometry
# --------------------------------------------------------------------------------------


def output_length(n: int, k: int, mode: str) -> int:
    """SciPy's output size along one axis (negative sizes are the caller's error).

    >>> [output_length(5, 3, m) for m in ("full", "same", "valid")]
    [7, 5, 3]
    """
    if mode == "full":
        return n + k - 1
    if mode == "same":
        return n
    return n - k + 1


def pad_before(k: int, mode: str, *, convolve: bool) -> int:
    """Rows (or columns) of ``ext`` before the input, for the backend kernel.

    convolve2d flips the kernel, so its 'same' window ``full[(k-1)//2:]`` starts
    ``k - 1 - (k-1)//2 = k // 2`` before the input; correlate2d's starts
    ``(k - 1) // 2`` before it (the extra padding of even kernels goes at the end).

    >>> pad_before(4, "same", convolve=True), pad_before(4, "same", convolve=False)
    (2, 1)
    """
    if mode == "full":
        return k - 1
    if mode == "same":
        return k // 2 if convolve else (k - 1) // 2
    return 0


def valid_swap_needed(
    mode: str, shape1: tuple[int, ...], shape2: tuple[int, ...]
) -> bool:
    """SciPy's ``_inputs_swap_needed`` over the filtered sizes ``(H, W)``.

    >>> valid_swap_needed("valid", (2, 2), (3, 3))
    True
    >>> valid_swap_needed("full", (2, 2), (3, 3))
    False
    """
    if mode != "valid":
        return False
    ok1 = all(a >= b for a, b in zip(shape1, shape2, strict=True))
    ok2 = all(b >= a for a, b in zip(shape1, shape2, strict=True))
    if not (ok1 or ok2):
        raise ValueError(VALID_MSG)
    return not ok1


def normalize_axes(axes: Any, ndim: int) -> tuple[int, int]:
    """Two distinct axes of an ``ndim``-dimensional ``in1``, made non-negative.

    >>> normalize_axes((-2, -1), 4), normalize_axes([0, 2], 3)
    ((2, 3), (0, 2))
    """
    try:
        items = list(axes)
    except TypeError:
        raise TypeError(
            f"axes must be a pair of ints (the two filtered axes of in1), got {axes!r}"
        ) from None
    if len(items) != 2:
        raise ValueError(
            f"axes must name exactly two axes of in1 (the filtered H and W axes), "
            f"got {len(items)}: {axes!r}"
        )
    out = []
    for a in items:
        if isinstance(a, (bool, np.bool_)):
            raise TypeError(f"axes must be ints, got {axes!r}")
        try:
            a = operator.index(a)
        except TypeError:
            raise TypeError(f"axes must be ints, got {axes!r}") from None
        if not -ndim <= a < ndim:
            raise ValueError(
                f"axis {a} in axes={tuple(items)!r} is out of range for in1 with "
                f"{ndim} dimensions"
            )
        out.append(a % ndim)
    if out[0] == out[1]:
        raise ValueError(
            f"axes must name two distinct axes of in1, got {tuple(items)!r}"
        )
    return out[0], out[1]


@dataclass(frozen=True)
class Filter2dPlan:
    """Everything the API layer does around the backend op for one filter call.

    Attributes
    ----------
    problem : FilterProblem
        What the backend computes. ``problem.B`` is ``prod(batch)`` and
        ``problem.Bk`` is 1 (one kernel for all) or ``problem.B``.
    swap : bool
        Roles swapped ('valid' with in2 larger, or NumPy's longer-second-input
        rule): ``in2`` is the image and ``in1`` the kernel.
    flip : bool
        The kernel is reversed along both axes (true convolution).
    conj_kernel, conj_image : bool
        Conjugate the kernel (correlation of complex data) or, for NumPy's swapped
        correlate, the image (``correlate(conj(v), a)``).
    reverse : bool
        The result is reversed along both filtered axes (a swapped correlation).
    image_batch, kernel_batch : tuple of int
        Batch shapes of the image and kernel stacks (filtered axes last).
    batch : tuple of int
        Their broadcast: the batch shape of the output.
    out_shape : tuple of int
        ``batch + (OH, OW)`` (``(OW,)`` for 1-D calls).
    dtype : numpy.dtype
        Output dtype (``np.result_type`` of the inputs).
    empty : str or None
        ``None`` for a problem the backend computes; ``'empty'`` (no output
        element), ``'zeros'`` (empty kernel: every sum is empty, so 0) or
        ``'fill'`` (empty image, non-empty kernel: every tap reads the fill
        value, so each output is ``sum(fillvalue * k)``, as SciPy computes).
    """

    problem: FilterProblem
    swap: bool
    flip: bool
    conj_kernel: bool
    conj_image: bool
    reverse: bool
    image_batch: tuple[int, ...]
    kernel_batch: tuple[int, ...]
    batch: tuple[int, ...]
    out_shape: tuple[int, ...]
    dtype: np.dtype
    empty: str | None


def _broadcast(b1: tuple[int, ...], b2: tuple[int, ...]) -> tuple[int, ...]:
    try:
        return tuple(int(s) for s in np.broadcast_shapes(b1, b2))
    except ValueError:
        raise ValueError(
            f"in1 and in2 stacks cannot be broadcast together: batch shapes {b1} and "
            f"{b2} (the dimensions other than the filtered axes must be equal or 1)"
        ) from None


def _empty_kind(
    B: int,
    H: int,
    W: int,
    Bk: int,
    KH: int,
    KW: int,
    OH: int,
    OW: int,
    boundary: str,
    fn: str,
) -> str | None:
    if B * OH * OW == 0:
        return "empty"
    if Bk * KH * KW == 0:
        return "zeros"
    if H * W == 0:
        if boundary != "fill":
            raise ValueError(
                f"{fn}: boundary {boundary!r} cannot extend an empty image of shape "
                f"({H}, {W}) to a non-empty output (SciPy crashes on this input); "
                f"use boundary='fill'"
            )
        return "fill"
    return None


def normalize_filter2d(
    shape1: tuple[int, ...],
    shape2: tuple[int, ...],
    dt1: np.dtype,
    dt2: np.dtype,
    mode: Any,
    boundary: Any,
    fillvalue: Any,
    *,
    convolve: bool,
) -> Filter2dPlan:
    """Check a convolve2d/correlate2d call and reduce it to a :class:`Filter2dPlan`.

    Parameters
    ----------
    shape1, shape2 : tuple of int
        Shapes with the filtered axes already moved last: ``(*batch1, H, W)`` and
        ``(*batch2, KH, KW)`` (``len >= 2``; the API checked the dimensions).
    dt1, dt2 : numpy.dtype
        The input dtypes.
    mode, boundary, fillvalue
        As given by the caller.
    convolve : bool
        True for convolve2d (kernel flipped), False for correlate2d.

    Notes
    -----
    The checks run in SciPy's order: the 'valid' swap, mode, boundary, string
    dtypes, ``'reflect'``, the fill value (only for ``boundary='fill'``), output
    size, dtype support; then gpuconv's own (stacks must broadcast; wrap/symm
    cannot extend an empty image). The 'valid' swap is decided on the filtered
    sizes and swaps whole stacks, so a stacked call equals SciPy called on each
    slice.

    Examples
    --------
    >>> import numpy as np
    >>> f8 = np.dtype(np.float64)
    >>> p = normalize_filter2d((5, 6), (2, 2), f8, f8, "same", "symm", 0, convolve=True)
    >>> p.problem.pad_top, p.problem.OH, p.problem.boundary
    (1, 5, 'symm')
    """
    fn = "convolve2d" if convolve else "correlate2d"
    hw1, hw2 = tuple(shape1[-2:]), tuple(shape2[-2:])
    swap = valid_swap_needed(mode, hw1, hw2)
    check_mode_2d(mode)
    try:
        name = _BOUNDARIES[boundary]
    except KeyError as e:
        raise ValueError(BOUNDARY_MSG) from e
    dtype = result_dtype_2d(dt1, dt2)
    if name is None:
        raise ValueError("Incorrect boundary value.")
    fill = None
    if name == "fill" and dtype is not None:
        fill = cast_fillvalue(fillvalue, dtype)
    (H, W), (KH, KW) = (hw2, hw1) if swap else (hw1, hw2)
    img_batch, ker_batch = (
        (tuple(shape2[:-2]), tuple(shape1[:-2]))
        if swap
        else (tuple(shape1[:-2]), tuple(shape2[:-2]))
    )
    OH, OW = output_length(H, KH, mode), output_length(W, KW, mode)
    if OH < 0 or OW < 0:
        raise ValueError(NEGATIVE_MSG)
    if not supported_2d(dtype):
        raise ValueError(TYPE_2D_MSG)
    if fill is None:
        fill = np.zeros((), dtype)[()]
    batch = _broadcast(img_batch, ker_batch)
    B = int(np.prod(batch, dtype=np.int64))
    Bk = 1 if int(np.prod(ker_batch, dtype=np.int64)) == 1 else B
    empty = _empty_kind(B, H, W, Bk, KH, KW, OH, OW, name, fn)
    fp = FilterProblem(
        B=B,
        H=H,
        W=W,
        Bk=Bk,
        KH=KH,
        KW=KW,
        pad_top=pad_before(KH, mode, convolve=convolve),
        pad_left=pad_before(KW, mode, convolve=convolve),
        OH=OH,
        OW=OW,
        boundary=name,
        fillvalue=fill,
        dtype=dtype,
    )
    # correlate2d's swap: SciPy correlates in2 with conj(in1) and reverses the
    # result without conjugating it (SciPy's quirk, kept: api.md b.2).
    return Filter2dPlan(
        problem=fp,
        swap=swap,
        flip=convolve,
        conj_kernel=not convolve and dtype.kind == "c",
        conj_image=False,
        reverse=swap and not convolve,
        image_batch=img_batch,
        kernel_batch=ker_batch,
        batch=batch,
        out_shape=batch + (OH, OW),
        dtype=dtype,
        empty=empty,
    )


# --------------------------------------------------------------------------------------
# NumPy's 1-D convolve/correlate
# --------------------------------------------------------------------------------------


def check_dtype_1d(dt: np.dtype, fn: str) -> None:
    """Bool, integer, floating and complex dtypes; NumPy's text for strings."""
    if dt.kind in "US":
        raise ValueError(ITEMSIZE_MSG)
    if dt.kind not in "biufc" or dt.fields is not None:
        raise TypeError(
            f"{fn} does not support dtype {dt} (gpuconv computes bool, integer, "
            f"floating and complex inputs; numpy.{fn} handles object and "
            f"timedelta arrays)"
        )


def compute_dtype_1d(dtype: np.dtype) -> np.dtype:
    """What the backend computes a 1-D problem in: float16 in float32 (NumPy also
    accumulates half in float), everything else in its own dtype."""
    return np.dtype(np.float32) if dtype == np.float16 else dtype


def normalize_filter1d(
    n1: int, n2: int, dtype: np.dtype, mode: str, *, convolve: bool
) -> Filter2dPlan:
    """Reduce ``numpy.convolve``/``numpy.correlate`` of lengths ``n1``, ``n2``
    (both ``>= 1``, mode already checked) to a ``(1, 1, n)`` problem.

    NumPy swaps when the second input is longer: convolve just swaps (it is
    commutative); correlate computes ``correlate(conj(v), a)`` with the shorter
    ``a`` as kernel and returns it reversed, which gives the same
    ``c[k] = sum_n a[n + k] * conj(v[n])`` (NumPy's documented result).
    """
    swap = n2 > n1
    n, m = (n2, n1) if swap else (n1, n2)
    if mode == "valid":
        pad, out = 0, n - m + 1
    elif mode == "same":
        pad, out = m // 2, n
    else:
        pad, out = m - 1, n + m - 1
    cd = compute_dtype_1d(dtype)
    fp = FilterProblem(
        B=1,
        H=1,
        W=n,
        Bk=1,
        KH=1,
        KW=m,
        pad_top=0,
        pad_left=pad,
        OH=1,
        OW=out,
        boundary="fill",
        fillvalue=np.zeros((), cd)[()],
        dtype=cd,
    )
    cplx = not convolve and dtype.kind == "c"
    return Filter2dPlan(
        problem=fp,
        swap=swap,
        flip=convolve,
        conj_kernel=cplx and not swap,
        conj_image=cplx and swap,
        reverse=swap and not convolve,
        image_batch=(),
        kernel_batch=(),
        batch=(),
        out_shape=(out,),
        dtype=dtype,
        empty=None,
    )
