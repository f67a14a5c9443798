"""The SciPy/NumPy filter API: convolve2d, correlate2d, convolve, correlate and
choose_method.

Each function checks every argument first (:mod:`gpuconv._filter_args`, with
SciPy's and NumPy's exception types and texts), picks the backend in the one place
that does (:func:`gpuconv._backend.select_backend`), handles empty problems itself
and hands the backend one padded 2-D correlation of a stack of images
(:class:`~gpuconv._filter_args.FilterProblem`), with the kernel already flipped
(convolution) or conjugated (complex correlation). The CUDA backend gets the flipped
kernel as a view and the conjugation as ``conj_kernel=True`` (its kernels read the
taps through strides and conjugate them: no copy per call); the NumPy backend gets a
C-contiguous, conjugated kernel. 1-D calls are ``(1, 1, n)`` problems, so every
backend gets them for free.

Where 'same' puts the extra row/column of an even kernel (as SciPy/NumPy do):

=====================  =========================================  ===================
function               'same' is this window of the 'full' result  extra input padding
=====================  =========================================  ===================
``convolve2d``         ``full[(KH-1)//2 :][:H]``                  top/left
``correlate2d``        ``full[KH//2 :][:H]``                      bottom/right
``convolve`` (1-D)     ``full[(N-1)//2 :][:max(M, N)]``           start
``correlate`` (1-D)    ``full[(N-1)//2 :][:M]`` (M >= N)          start
=====================  =========================================  ===================

(``N`` the shorter length. NumPy's correlate with the longer second input computes
the swapped problem and reverses it.) So ``convolve2d(x, w, 'same') ==
correlate2d(x, w[::-1, ::-1], 'same')`` only for odd kernel sizes, and correlate2d's
'same' is one sample off ``numpy.correlate``'s for even kernels (SciPy gh-1968).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from gpuconv import _backend
from gpuconv._filter_args import (
    Filter2dPlan,
    FilterProblem,
    check_dtype_1d,
    check_method,
    check_mode_1d,
    normalize_axes,
    normalize_filter1d,
    normalize_filter2d,
)
from gpuconv._plan_cache import LRU, UNCACHED, Uncacheable, arg_key, array_key

__all__ = ["choose_method", "convolve", "convolve2d", "correlate", "correlate2d"]


def _arrays(*arrays: Any, kind: Any = False) -> list[Any]:
    """NumPy arrays (never copied needlessly, never modified); when a CuPy array is
    among them, CuPy arrays (lists and scalars beside it are moved to the device;
    NumPy arrays beside it are a TypeError from ``array_kind``). ``kind``: their
    ``array_kind`` when the caller has it."""
    if kind is False:
        kind = _backend.array_kind(*arrays)
    if kind == "cupy":
        cupy = _backend.require_cupy()
        return [a if _backend.is_cupy_array(a) else cupy.asarray(a) for a in arrays]
    return [a if type(a) is np.ndarray else np.asarray(a) for a in arrays]


def _xp(name: str) -> Any:
    return _backend.cupy_module() if name == "cuda" else np


def _check_fft_dtype(method: str, dtype: np.dtype, fn: str) -> None:
    if method == "fft" and dtype.kind not in "fc":
        raise ValueError(
            f"{fn}: method='fft' is not available for {dtype} data (integer and "
            f"boolean results must stay exact); use method='direct' or 'auto'"
        )


# --------------------------------------------------------------------------------------
# 2-D
# --------------------------------------------------------------------------------------


def _prepare2d(
    in1: Any, in2: Any, mode: Any, boundary: Any, fillvalue: Any, axes: Any, fn: str
) -> tuple[Filter2dPlan, tuple[int, int] | None, bool]:
    """Validate a 2-D call; return the plan, the normalised axes and whether in2
    uses the same axes (same ndim as in1)."""
    if axes is None:
        if not in1.ndim == in2.ndim == 2:
            raise ValueError(f"{fn} inputs must both be 2-D arrays")
        s1, s2 = tuple(in1.shape), tuple(in2.shape)
        ax, same_axes = None, False
    else:
        if in1.ndim < 2:
            raise ValueError(
                f"{fn} with axes needs in1 with at least 2 dimensions, got "
                f"{in1.ndim}-D input of shape {tuple(in1.shape)}"
            )
        ax = normalize_axes(axes, in1.ndim)
        if in2.ndim < 2:
            raise ValueError(
                f"{fn} with axes needs in2 with at least 2 dimensions (a kernel or "
                f"a stack of kernels), got shape {tuple(in2.shape)}"
            )
        if in2.ndim > in1.ndim:
            raise ValueError(
                f"{fn} with axes: in2 has more dimensions ({in2.ndim}) than in1 "
                f"({in1.ndim})"
            )
        same_axes = in2.ndim == in1.ndim
        s1 = _moved_shape(in1.shape, ax)
        s2 = _moved_shape(in2.shape, ax) if same_axes else tuple(in2.shape)
    plan = normalize_filter2d(
        s1,
        s2,
        np.dtype(in1.dtype),
        np.dtype(in2.dtype),
        mode,
        boundary,
        fillvalue,
        convolve=fn == "convolve2d",
    )
    return plan, ax, same_axes


def _moved_shape(shape: tuple[int, ...], ax: tuple[int, int]) -> tuple[int, ...]:
    rest = tuple(s for i, s in enumerate(shape) if i not in ax)
    return rest + (shape[ax[0]], shape[ax[1]])


def _stacks(
    xp: Any,
    in1: Any,
    in2: Any,
    plan: Filter2dPlan,
    ax: Any,
    same_axes: bool,
    view: bool = False,
) -> tuple[Any, Any]:
    """The backend's ``(B, H, W)`` image stack and ``(Bk, KH, KW)`` kernel stack, in
    the output dtype, kernel flipped/conjugated.

    ``view`` (the CUDA backend, whose kernels read the kernel through its strides
    and conjugate it themselves): the kernel is the flipped *view*, never copied
    nor conjugated here; the caller passes ``plan.conj_kernel`` to the op."""
    fp = plan.problem
    if ax is not None:
        in1 = xp.moveaxis(in1, ax, (-2, -1))
        if same_axes:
            in2 = xp.moveaxis(in2, ax, (-2, -1))
    image, kernel = (in2, in1) if plan.swap else (in1, in2)
    dt = plan.dtype
    if plan.batch:
        image = xp.broadcast_to(image, plan.batch + (fp.H, fp.W))
    image = image.reshape(fp.B, fp.H, fp.W)
    if fp.Bk == 1:
        kernel = kernel.reshape(1, fp.KH, fp.KW)
    else:
        kernel = xp.broadcast_to(kernel, plan.batch + (fp.KH, fp.KW))
        kernel = kernel.reshape(fp.B, fp.KH, fp.KW)
    if image.dtype != dt:
        image = image.astype(dt)
    if kernel.dtype != dt:
        kernel = kernel.astype(dt)
    if plan.conj_image:
        image = image.conj()
    if plan.flip:
        kernel = kernel[:, ::-1, ::-1]
    if view:
        return image, kernel
    if plan.conj_kernel:
        kernel = kernel.conj()
    if not kernel.flags.c_contiguous:
        kernel = xp.ascontiguousarray(kernel)
    return image, kernel


def _empty_result(xp: Any, kernel: Any, plan: Filter2dPlan) -> Any:
    fp = plan.problem
    shape = (fp.B, fp.OH, fp.OW)
    if plan.empty in ("empty", "zeros"):
        return xp.zeros(shape, dtype=plan.dtype)
    # 'fill': an empty image; every tap of every output reads the fill value
    fill = xp.asarray(fp.fillvalue, dtype=plan.dtype)
    with np.errstate(all="ignore"):  # 0 * inf = nan, as the taps would give
        sums = (kernel * fill).sum(axis=(1, 2), dtype=plan.dtype).astype(plan.dtype)
    return xp.broadcast_to(sums.reshape(-1, 1, 1), shape).copy()


def _run(
    name: str, image: Any, kernel: Any, fp: FilterProblem, method: str,
    conj: bool = False,
) -> Any:
    """The backend op; ``conj`` (CUDA only: :func:`_stacks` with ``view``)
    correlates with the conjugated kernel."""
    ops = _backend.backend_ops(name)
    if name == "numpy" and method == "auto":
        from gpuconv._cpu_filter import choose

        method = choose(fp, image, kernel)
    if conj:
        return ops.correlate2d(image, kernel, fp, method, conj_kernel=True)
    return ops.correlate2d(image, kernel, fp, method)


#: Validated 2-D filter calls (:mod:`gpuconv._plan_cache`): the key is the function,
#: the arrays' types, shapes and dtypes and every other argument but ``backend``;
#: the value what :func:`_prepare2d` and the method checks return for them.
_CALLS_2D = LRU("filter2d calls")


def _filter2d(
    in1: Any,
    in2: Any,
    mode: Any,
    boundary: Any,
    fillvalue: Any,
    axes: Any,
    method: Any,
    backend: str | None,
    fn: str,
) -> Any:
    kind = _backend.array_kind(in1, in2)
    in1, in2 = _arrays(in1, in2, kind=kind)
    try:
        key: Any = (fn, array_key(in1), array_key(in2), arg_key(mode),
                    arg_key(boundary), arg_key(fillvalue), arg_key(axes),
                    arg_key(method))
    except Uncacheable:
        key = UNCACHED
    call = _CALLS_2D.get(key)
    if call is None:
        plan, ax, same_axes = _prepare2d(
            in1, in2, mode, boundary, fillvalue, axes, fn
        )
        method = check_method(method)
        _check_fft_dtype(method, plan.dtype, fn)
        _CALLS_2D.put(key, (plan, ax, same_axes, method))
    else:
        plan, ax, same_axes, method = call
    name = _backend.select_backend(in1, in2, backend=backend)
    (in1, in2), back = _backend.to_backend(name, in1, in2)
    xp = _xp(name)
    view = name == "cuda"  # the kernels read the flipped view (no copy, no conj)
    image, kernel = _stacks(xp, in1, in2, plan, ax, same_axes, view)
    fp = plan.problem
    if plan.empty is not None:
        if view and plan.conj_kernel:
            kernel = kernel.conj()
        out = _empty_result(xp, kernel, plan)
    else:
        out = _run(name, image, kernel, fp, method, view and plan.conj_kernel)
    out = out.reshape(plan.out_shape)
    if plan.reverse:
        out = out[..., ::-1, ::-1]
    if ax is not None:
        out = xp.moveaxis(out, (-2, -1), ax)
    return back(out)


_PARAMS_2D = """
    in1 : array_like
        First input (the image, or a stack of images with ``axes``).
    in2 : array_like
        Second input (the kernel, or a stack of kernels with ``axes``).
    mode : {'full', 'valid', 'same'}, optional
        ``'full'``: the whole linear result, ``(H + KH - 1, W + KW - 1)``.
        ``'valid'``: only outputs that need no padding, ``(H - KH + 1, W - KW + 1)``;
        one input must be at least as large as the other in both filtered
        dimensions, and the inputs are swapped when in2 is the larger (SciPy's rule,
        also for stacks: whole stacks swap, so a stacked call equals SciPy on each
        slice). ``'same'``: the size of in1, centred on the full result (for
        even kernels see the offset rule above).
    boundary : {'fill', 'wrap', 'symm'}, optional
        How in1 is extended: ``'fill'`` (alias ``'pad'``) with ``fillvalue``,
        ``'wrap'`` (alias ``'circular'``) periodically, ``'symm'`` (alias
        ``'symmetric'``) mirrored with the edge repeated (``dcba|abcd``). Kernels
        larger than in1 are fine in every boundary (the pattern repeats).
    fillvalue : scalar, optional
        Value of the padding for ``boundary='fill'``, cast to the output dtype as
        SciPy casts it (``2.5`` becomes ``2`` for integer data).
    axes : (int, int), optional
        gpuconv's extension: the two axes of in1 to filter along (any two distinct
        axes, negative allowed); all other axes are a stack. in2 is one 2-D kernel,
        a stack with the same number of dimensions as in1 (filtered along the same
        ``axes``), or a stack ``(..., KH, KW)`` with fewer dimensions (kernel axes
        last); the stack dimensions broadcast (equal or 1). The result keeps the
        filtered axes where they were in in1. Without ``axes`` both inputs must be
        2-D, as in SciPy.
    method : {'auto', 'direct', 'fft'}, optional
        ``'auto'`` asks the backend's cost model (:func:`choose_method` for the
        NumPy backend; it never picks ``'fft'`` for integer data or non-finite
        input). ``'fft'`` is refused for integer data and spreads NaN/inf over the
        whole output, as any FFT convolution does.
    backend : {None, 'numpy', 'cuda'}, optional
        Where to compute; by default the array type decides (see
        :func:`gpuconv.use_backend`). ``'cuda'`` with NumPy inputs copies them to
        the GPU and returns NumPy.
"""

_RETURNS_2D = """
    Returns
    -------
    out : ndarray
        dtype ``np.result_type(in1, in2)``: integers stay integers and wrap on
        overflow (int8 with int8 gives int8), as in SciPy.

    Raises
    ------
    ValueError
        SciPy's errors, with SciPy's texts: inputs not 2-D (without ``axes``), bad
        ``mode``/``boundary``/``method``, the 'valid' size rule, a ``fillvalue``
        that does not cast or has not exactly one element, dtypes SciPy does not
        compute in (bool, float16, object, datetime: "convolve2d not available for
        this type."). gpuconv's own: bad ``axes``, stacks that do not broadcast,
        ``method='fft'`` with integer data, ``'wrap'``/``'symm'`` of an empty in1
        into a non-empty output (SciPy crashes there).
    TypeError
        NumPy and CuPy arrays mixed; ``axes`` not ints.
    RuntimeError
        ``backend='cuda'`` without CuPy or a device.

    Notes
    -----
    Empty inputs follow SciPy's formulas: the output shape is the mode's size
    formula ("negative dimensions are not allowed" when it is negative), an empty
    kernel gives zeros, and an empty in1 with ``boundary='fill'`` gives
    ``sum(fillvalue * kernel)`` everywhere (e.g. ``(0, 3)`` with a ``(2, 2)`` kernel,
    'full', gives a ``(1, 4)`` array of zeros).

    NaN and inf reach exactly the outputs whose window reads them, as in SciPy
    (``0 * inf = nan``: zero taps are skipped only over finite data), with
    ``method='auto'`` or ``'direct'``. For complex values with an infinite part and
    a NaN or second infinite part, products follow NumPy's textbook complex
    multiplication (SciPy's C99 complex arithmetic may recover an infinity there).
"""


def convolve2d(
    in1: Any,
    in2: Any,
    mode: str = "full",
    boundary: str = "fill",
    fillvalue: Any = 0,
    *,
    axes: tuple[int, int] | None = None,
    method: str = "auto",
    backend: str | None = None,
) -> Any:
    """Convolve two 2-D arrays (``scipy.signal.convolve2d``), or stacks of them.

    ``out[i, j] = sum_{a, c} in1ext[i - a + o_h, j - c + o_w] * in2[a, c]`` with
    ``in1ext`` the extension of in1 by ``boundary`` and ``o_h`` = 0 ('full'),
    ``(KH - 1) // 2`` ('same': an even kernel's extra row of padding goes at the
    top, its extra column at the left) or ``KH - 1`` ('valid'); ``o_w`` likewise.

    Parameters
    ----------
    @PARAMS_2D@
    @RETURNS_2D@
    Examples
    --------
    >>> import numpy as np
    >>> import gpuconv
    >>> x = np.arange(12.0).reshape(3, 4)
    >>> gpuconv.convolve2d(x, [[1, -1]], mode="same")
    array([[0., 1., 1., 1.],
           [4., 1., 1., 1.],
           [8., 1., 1., 1.]])
    >>> gpuconv.convolve2d(x, np.ones((2, 2)), mode="valid", boundary="symm")
    array([[10., 14., 18.],
           [26., 30., 34.]])

    A stack of 5 RGB images, one 3x3 kernel per colour channel:

    >>> imgs = np.ones((5, 3, 32, 32), np.float32)
    >>> kernels = np.ones((3, 3, 3), np.float32)
    >>> gpuconv.convolve2d(imgs, kernels, mode="same", axes=(-2, -1)).shape
    (5, 3, 32, 32)
    """
    return _filter2d(
        in1, in2, mode, boundary, fillvalue, axes, method, backend, "convolve2d"
    )


def correlate2d(
    in1: Any,
    in2: Any,
    mode: str = "full",
    boundary: str = "fill",
    fillvalue: Any = 0,
    *,
    axes: tuple[int, int] | None = None,
    method: str = "auto",
    backend: str | None = None,
) -> Any:
    """Cross-correlate two 2-D arrays (``scipy.signal.correlate2d``), or stacks.

    ``out[i, j] = sum_{a, c} in1ext[i + a - o_h, j + c - o_w] * conj(in2[a, c])``
    with ``in1ext`` the extension of in1 by ``boundary`` and ``o_h`` = ``KH - 1``
    ('full'), ``(KH - 1) // 2`` ('same': an even kernel's extra row of padding goes
    at the bottom, its extra column at the right, as in PyTorch and one sample off
    ``scipy.signal.correlate``'s 'same') or 0 ('valid'); ``o_w`` likewise. When
    'valid' swaps the inputs the result is ``correlate2d(in2, in1)`` reversed along
    both axes, and for complex data not conjugated (SciPy's behaviour, kept).

    Parameters
    ----------
    @PARAMS_2D@
    @RETURNS_2D@
    Examples
    --------
    >>> import numpy as np
    >>> import gpuconv
    >>> x = np.zeros((1, 7)); x[0, 3] = 1
    >>> gpuconv.correlate2d(x, [[1, 2]], mode="same")
    array([[0., 0., 2., 1., 0., 0., 0.]])
    >>> gpuconv.correlate2d([[1]], [[2j]])
    array([[0.-2.j]])
    """
    return _filter2d(
        in1, in2, mode, boundary, fillvalue, axes, method, backend, "correlate2d"
    )


def _fill_doc(doc: str | None) -> str | None:
    if doc is None:  # python -OO
        return None
    params = _PARAMS_2D.lstrip("\n") + "\n"
    returns = _RETURNS_2D.lstrip("\n") + "\n"
    doc = doc.replace("    @PARAMS_2D@\n", params)
    return doc.replace("    @RETURNS_2D@\n", returns)


convolve2d.__doc__ = _fill_doc(convolve2d.__doc__)
correlate2d.__doc__ = _fill_doc(correlate2d.__doc__)


# --------------------------------------------------------------------------------------
# 1-D
# --------------------------------------------------------------------------------------


def _too_deep(a: Any, original: Any) -> ValueError:
    if isinstance(original, (list, tuple)):
        return ValueError(
            "setting an array element with a sequence. The requested array would "
            "exceed the maximum number of dimension of 1."
        )
    return ValueError("object too deep for desired array")


def _prepare1d(
    a: Any, v: Any, mode: Any, fn: str, originals: tuple[Any, Any] | None = None
) -> tuple[Any, Any, Filter2dPlan]:
    """Validate a 1-D call of the arrays ``a``, ``v`` (:func:`_arrays` of the
    caller's ``originals``, which only shape the text of one error); return them
    (0-d made 1-D for convolve) and the plan."""
    a0, v0 = (a, v) if originals is None else originals
    if fn == "convolve":
        # numpy.convolve: array(ndmin=1), emptiness, then the C core's checks
        if a.ndim == 0:
            a = a.reshape(1)
        if v.ndim == 0:
            v = v.reshape(1)
        if a.shape[0] == 0:
            raise ValueError("a cannot be empty")
        if v.shape[0] == 0:
            raise ValueError("v cannot be empty")
        mode = check_mode_1d(mode)
        if a.ndim > 1:
            raise _too_deep(a, a0)
        if v.ndim > 1:
            raise _too_deep(v, v0)
    else:
        mode = check_mode_1d(mode)
        for x, x0 in ((a, a0), (v, v0)):
            if x.ndim == 0:
                raise ValueError("object of too small depth for desired array")
            if x.ndim > 1:
                raise _too_deep(x, x0)
        if a.shape[0] == 0:
            raise ValueError("first array argument cannot be empty")
        if v.shape[0] == 0:
            raise ValueError("second array argument cannot be empty")
    dt1, dt2 = np.dtype(a.dtype), np.dtype(v.dtype)
    check_dtype_1d(dt1, fn)
    check_dtype_1d(dt2, fn)
    dtype = np.result_type(dt1, dt2)
    plan = normalize_filter1d(
        a.shape[0], v.shape[0], dtype, mode, convolve=fn == "convolve"
    )
    return a, v, plan


#: Validated 1-D calls, as :data:`_CALLS_2D`: the key is the function, the arrays'
#: types, shapes and dtypes (after :func:`_arrays`), ``mode`` and ``method``; the
#: value the plan and the checked method.
_CALLS_1D = LRU("filter1d calls")


def _filter1d(a0: Any, v0: Any, mode: Any, method: Any, backend: Any, fn: str) -> Any:
    kind = _backend.array_kind(a0, v0)
    a, v = _arrays(a0, v0, kind=kind)
    try:
        key: Any = (fn, array_key(a), array_key(v), arg_key(mode), arg_key(method))
    except Uncacheable:
        key = UNCACHED
    call = _CALLS_1D.get(key)
    if call is None:
        a, v, plan = _prepare1d(a, v, mode, fn, originals=(a0, v0))
        method = check_method(method)
        _check_fft_dtype(method, plan.dtype, fn)
        _CALLS_1D.put(key, (plan, method))
    else:
        plan, method = call
        if a.ndim == 0:  # convolve's scalars (correlate refuses them: never cached)
            a = a.reshape(1)
        if v.ndim == 0:
            v = v.reshape(1)
    name = _backend.select_backend(a, v, backend=backend)
    (a, v), back = _backend.to_backend(name, a, v)
    xp = _xp(name)
    fp = plan.problem
    cd = fp.dtype
    image, kernel = (v, a) if plan.swap else (a, v)
    image = image.astype(cd, copy=False)
    kernel = kernel.astype(cd, copy=False)
    if plan.conj_image:
        image = image.conj()
    if plan.flip:
        kernel = kernel[::-1]
    kernel = kernel.reshape(1, 1, -1)
    view = name == "cuda"  # as in _filter2d: the kernels read the reversed view
    if not view:
        if plan.conj_kernel:
            kernel = kernel.conj()
        kernel = xp.ascontiguousarray(kernel)
    out = _run(
        name, image.reshape(1, 1, -1), kernel, fp, method, view and plan.conj_kernel
    )
    out = out.reshape(plan.out_shape)
    if plan.reverse:
        out = out[::-1]
    return back(out.astype(plan.dtype, copy=False))


def convolve(
    a: Any,
    v: Any,
    mode: str | int = "full",
    *,
    method: str = "auto",
    backend: str | None = None,
) -> Any:
    """Discrete linear convolution of two 1-D sequences (``numpy.convolve``).

    ``out[n] = sum_m a[m] * v[n - m]``. When v is longer than a, the two are
    swapped first (convolution is commutative).

    Parameters
    ----------
    a : array_like, shape ``(M,)``
        First sequence (a scalar counts as one element, as in NumPy).
    v : array_like, shape ``(N,)``
        Second sequence.
    mode : {'full', 'valid', 'same'} or {0, 1, 2}, optional
        ``'full'`` (2): length ``M + N - 1``. ``'same'`` (1): length ``max(M, N)``,
        centred (the extra sample of an even shorter input goes at the start).
        ``'valid'`` (0): length ``max(M, N) - min(M, N) + 1``.
    method : {'auto', 'direct', 'fft'}, optional
        As for :func:`convolve2d`.
    backend : {None, 'numpy', 'cuda'}, optional
        As for :func:`convolve2d`.

    Returns
    -------
    out : ndarray
        dtype ``np.result_type(a, v)`` (bool gives bool, int8 wraps, float16
        accumulates in float32 like NumPy).

    Raises
    ------
    ValueError
        NumPy's texts: "a cannot be empty", "v cannot be empty", bad mode strings
        and integers, inputs with more than one dimension.
    TypeError
        NumPy's "convolve/correlate mode not understood" for non-int modes;
        object/datetime/timedelta dtypes (NumPy computes those, gpuconv does not).

    Examples
    --------
    >>> import gpuconv
    >>> gpuconv.convolve([1, 2, 3], [0, 1, 0.5])
    array([0. , 1. , 2.5, 4. , 1.5])
    >>> gpuconv.convolve([1, 2, 3], [0, 1, 0.5], "same")
    array([1. , 2.5, 4. ])
    >>> gpuconv.convolve([1, 2, 3], [0, 1, 0.5], 0)
    array([2.5])
    """
    return _filter1d(a, v, mode, method, backend, "convolve")


def correlate(
    a: Any,
    v: Any,
    mode: str | int = "valid",
    *,
    method: str = "auto",
    backend: str | None = None,
) -> Any:
    """Cross-correlation of two 1-D sequences (``numpy.correlate``).

    ``c[k] = sum_n a[n + k] * conj(v[n])``. When v is longer than a the result is
    the same sum (NumPy computes it swapped, reversed and conjugated), so
    ``correlate(v, a)`` is ``correlate(a, v)`` reversed and conjugated.

    Parameters
    ----------
    a, v : array_like, 1-D
        Input sequences (0-d inputs are an error, as in NumPy).
    mode : {'valid', 'same', 'full'} or {0, 1, 2}, optional
        As in :func:`convolve`; the default is ``'valid'``. For 'same' with an even
        shorter input the extra sample of padding goes at the start, as NumPy puts
        it: output ``i`` of ``correlate(a, v, 'same')`` with ``len(v) == 2`` reads
        ``a[i - 1]`` and ``a[i]``, i.e. the 'full' result from ``(N - 1) // 2`` on
        (when ``v`` is the longer input NumPy computes the swapped problem and
        reverses it, so there it is at the end).
    method : {'auto', 'direct', 'fft'}, optional
        As for :func:`convolve2d`.
    backend : {None, 'numpy', 'cuda'}, optional
        As for :func:`convolve2d`.

    Returns
    -------
    out : ndarray
        dtype ``np.result_type(a, v)``.

    Raises
    ------
    ValueError
        NumPy's texts: "first array argument cannot be empty", "second array
        argument cannot be empty", bad modes, 0-d or multi-dimensional inputs.
    TypeError
        As for :func:`convolve`.

    Examples
    --------
    >>> import gpuconv
    >>> gpuconv.correlate([1, 2, 3], [0, 1, 0.5])
    array([3.5])
    >>> gpuconv.correlate([1, 2, 3], [0, 1, 0.5], "full")
    array([0.5, 2. , 3.5, 3. , 0. ])
    >>> gpuconv.correlate([1, 2, 3], [1j, 2], "full")
    array([2.+0.j, 4.-1.j, 6.-2.j, 0.-3.j])
    >>> gpuconv.correlate([1, 2, 3], [1, 10], "same")  # padding at the start
    array([10, 21, 32])
    """
    return _filter1d(a, v, mode, method, backend, "correlate")


# --------------------------------------------------------------------------------------
# method choice
# --------------------------------------------------------------------------------------


def choose_method(
    in1: Any,
    in2: Any,
    mode: str | int = "full",
    boundary: str = "fill",
    fillvalue: Any = 0,
    *,
    axes: tuple[int, int] | None = None,
    measure: bool = False,
) -> str | tuple[str, dict[str, float]]:
    """The method ``method='auto'`` uses on the NumPy backend: 'direct' or 'fft'.

    Like ``scipy.signal.choose_conv_method``. Two 1-D inputs are judged as
    :func:`convolve` (NumPy's modes); anything else as :func:`convolve2d` with the
    same ``mode``, ``boundary``, ``fillvalue`` and ``axes`` (and the same errors).
    correlate/correlate2d cost the same as their convolutions.

    Parameters
    ----------
    in1, in2 : array_like
        The inputs of the call.
    mode, boundary, fillvalue, axes
        As for :func:`convolve2d` (or :func:`convolve` for two 1-D inputs).
    measure : bool, optional
        Time both methods on these inputs (best of a few runs) and return the
        faster with the times.

    Returns
    -------
    method : str
        ``'direct'`` or ``'fft'``.
    times : dict, only with ``measure=True``
        Seconds per method; only ``'direct'`` is timed for integer and boolean
        data.

    Notes
    -----
    The cost model (constants in :mod:`gpuconv._cpu_filter`), fitted on the 2-core
    AMD EPYC (Zen 4) development machine with NumPy 2.4 / SciPy 1.17: both paths
    were timed on 1024x1024 images, float32/float64/complex64/complex128, kernels
    3x3 to 31x31, interleaved (best of 5), and the per-unit constants set so that
    the model's crossover falls where the measured one does:

    - direct (shift-and-add): ``B*OH*OW*T * t_tap + n_blocks*T * t_call`` with
      ``T = KH*KW`` taps (``KH + KW + 2`` for a separable, rank-1 kernel),
      ``t_tap`` = 0.42 ns (float32), 0.78 ns (float64), 0.84 ns (complex64),
      1.9 ns (complex128) per multiply-add and ``t_call`` = 1.3 us per tap and
      block of 256 KiB (NumPy call overhead);
    - FFT: ``(2*B + Bk) * P*log2(P) * t_fft + 30 us`` with ``P = PH*PW`` the
      5-smooth transform size ``>= (OH + KH - 1, OW + KW - 1)`` and ``t_fft``
      = 0.30 ns (float32), 0.54 ns (float64), 0.50 ns (complex64), 0.96 ns
      (complex128).

    The crossover for a 1024x1024 float32 image in 'same' mode is at 7x7 kernels
    (6x6 for complex128), where both paths measured within 5 % of each other.

    'fft' is returned only where the model says it saves at least 1 ms
    (``FFT_MIN_GAIN_S``): small problems (every image and kernel up to 16x16) stay
    direct, which on integer-valued float data gives SciPy's exact result.
    'fft' is never returned for integer or boolean data (results stay exact), for
    long double, nor when in1, in2 or the fill value (if any padding reads it)
    contain NaN or infinity: an FFT spreads them over the whole output, while the
    direct method keeps NumPy's NaN mask (``0 * inf = nan`` included). A finite
    non-zero fill value does not rule the FFT out: the transform sees the
    zero-extended image and the fill's share, ``fill * (sum(k) - taps inside the
    image)``, is added exactly afterwards, so the FFT's error does not grow with
    ``|fillvalue|``.

    Examples
    --------
    >>> import numpy as np
    >>> import gpuconv
    >>> x = np.zeros((1024, 1024), np.float32)
    >>> gpuconv.choose_method(x, np.ones((3, 3), np.float32), "same")
    'direct'
    >>> gpuconv.choose_method(x, np.ones((31, 31), np.float32), "same")
    'fft'
    >>> gpuconv.choose_method(x.astype(np.int32), np.ones((31, 31), np.int32))
    'direct'
    """
    from gpuconv import _cpu_filter

    a, b = _arrays(in1, in2)
    if axes is None and a.ndim == 1 and b.ndim == 1:
        a, b, plan = _prepare1d(a, b, mode, "convolve")
        (a, b), _ = _backend.to_backend("numpy", a, b)
        fp = plan.problem
        image, kernel = (b, a) if plan.swap else (a, b)
        image = image.astype(fp.dtype, copy=False).reshape(1, 1, -1)
        kernel = np.ascontiguousarray(kernel[::-1].astype(fp.dtype).reshape(1, 1, -1))
    else:
        plan, ax, same_axes = _prepare2d(
            a, b, mode, boundary, fillvalue, axes, "convolve2d"
        )
        (a, b), _ = _backend.to_backend("numpy", a, b)
        image, kernel = _stacks(np, a, b, plan, ax, same_axes)
        fp = plan.problem
    if plan.empty is not None:
        chosen = "direct"
        return (chosen, {"direct": 0.0}) if measure else chosen
    chosen = _cpu_filter.choose(fp, image, kernel)
    if not measure:
        return chosen
    times = {"direct": _best_time(_cpu_filter.correlate2d, image, kernel, fp, "direct")}
    if np.dtype(fp.dtype).kind in "fc":
        times["fft"] = _best_time(_cpu_filter.correlate2d, image, kernel, fp, "fft")
        if _cpu_filter.fft_allowed(fp, image, kernel):
            chosen = min(times, key=times.__getitem__)
    return chosen, times


def _best_time(f: Any, *args: Any, repeat: int = 3, budget: float = 2.0) -> float:
    best = float("inf")
    start = time.perf_counter()
    for _ in range(repeat):
        t0 = time.perf_counter()
        f(*args)
        best = min(best, time.perf_counter() - t0)
        if time.perf_counter() - start > budget:
            break
    return best
