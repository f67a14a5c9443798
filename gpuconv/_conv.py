"""Public conv2d API: forward, backward, the torch.nn.grad helpers and the dense matrix.

Each function validates everything (:func:`gpuconv._conv_args.normalize_conv2d`)
before touching data, picks the backend in the one place that does
(:func:`gpuconv._backend.select_backend`), handles empty problems itself and hands
the backend a non-empty problem and arrays of ``problem.compute_dtype`` (float16
data goes to the CUDA backend as float16: :func:`_op_dtype`).
"""

from __future__ import annotations

import dataclasses
import functools
import numbers
from typing import Any, NamedTuple

import numpy as np

from gpuconv import _backend
from gpuconv._conv_args import (
    Conv2dProblem,
    _shape_of,
    check_algorithm,
    check_int64,
    check_needs,
    normalize_conv2d,
)
from gpuconv._padding import pad_index
from gpuconv._plan_cache import LRU, UNCACHED, Uncacheable, arg_key, array_key
from gpuconv._precision import applies_tf32, round_tf32, select_precision

__all__ = [
    "Conv2dGrads",
    "conv2d",
    "conv2d_backward",
    "conv2d_grad_input",
    "conv2d_grad_weight",
    "conv2d_matrix",
]


class Conv2dGrads(NamedTuple):
    """Gradients of :func:`conv2d`; ``None`` for what was not asked for.

    Returned by :func:`conv2d_backward` (and by ``gpuconv.dask.conv2d_backward``).

    Attributes
    ----------
    gx : array or None
        Gradient with respect to the input ``x`` (shape of ``x``).
    gw : array or None
        Gradient with respect to the weight ``w`` (shape of ``w``).
    gb : array or None
        Gradient with respect to the bias, shape ``(K,)``.

    Examples
    --------
    >>> import numpy as np
    >>> import gpuconv
    >>> x = np.arange(9.0).reshape(1, 1, 3, 3); w = np.ones((1, 1, 2, 2))
    >>> g = gpuconv.conv2d_backward(np.ones((1, 1, 2, 2)), x, w, needs=("weight",))
    >>> g.gx is None and g.gb is None
    True
    >>> g.gw[0, 0]
    array([[ 8., 12.],
           [20., 24.]])
    >>> gx, gw, gb = gpuconv.conv2d_backward(np.ones((1, 1, 2, 2)), x, w)
    >>> gb
    array([4.])
    """

    gx: Any
    gw: Any
    gb: Any


def _arrays(*arrays: Any, kind: Any = False) -> list[Any]:
    """CuPy arrays stay; everything else becomes a NumPy array (never copied
    needlessly, never modified). ``kind``: their ``array_kind`` if known."""
    if kind is False:
        kind = _backend.array_kind(*arrays)
    if kind == "cupy":
        return list(arrays)
    return [a if a is None or type(a) is np.ndarray else np.asarray(a) for a in arrays]


#: Validated conv2d calls (:mod:`gpuconv._plan_cache`): the key is the function,
#: the arrays' types, shapes and dtypes and every other argument except
#: ``backend``; the value what the checks return for them. Every new argument of
#: the public functions must go into the key.
_CALLS = LRU("conv2d calls")


def _call_key(
    fn: str, arrays: tuple[Any, ...], args: tuple[Any, ...], needs: Any = None
) -> Any:
    try:
        nk = None if needs is None else _needs_key(needs)
        return (fn, tuple(map(array_key, arrays)), tuple(map(arg_key, args)), nk)
    except (Uncacheable, AttributeError):
        return UNCACHED


def _xp(name: str) -> Any:
    return _backend.cupy_module() if name == "cuda" else np


def _dtypes(*arrays: Any) -> list[np.dtype]:
    return [np.dtype(a.dtype) for a in arrays if a is not None]


def _cast(a: Any, dtype: np.dtype) -> Any:
    return a if a is None or a.dtype == dtype else a.astype(dtype)


def _batched(a: Any, p: Conv2dProblem) -> Any:
    return a if p.batched else a[None]


def _conj(a: Any, p: Conv2dProblem) -> Any:
    return a.conj() if p.compute_dtype.kind == "c" else a


def _with_precision(p: Conv2dProblem, precision: str | None) -> Conv2dProblem:
    """``p`` carrying the precision of the call (keyword, context, environment:
    :func:`gpuconv._precision.select_precision`)."""
    prec = select_precision(precision)
    return p if prec == p.precision else _replace_precision(p, prec)


@functools.lru_cache(maxsize=256)
def _replace_precision(p: Conv2dProblem, precision: str) -> Conv2dProblem:
    # memoised: dataclasses.replace costs more than the rest of a cached call
    return dataclasses.replace(p, precision=precision)


def _tf32_host(name: str, p: Conv2dProblem) -> bool:
    """True when this call rounds its operands to TF32 here, before the backend:
    the NumPy backend (the CUDA backend's ops round in their kernels or
    themselves, see :mod:`gpuconv._gpu_conv`)."""
    return name == "numpy" and applies_tf32(p.precision, p.compute_dtype)


def _rounded(a: Any) -> Any:
    return None if a is None else round_tf32(a)


def _op_dtype(name: str, p: Conv2dProblem) -> np.dtype:
    """The dtype of the data arrays (not the bias) handed to the backend's ops:
    ``p.compute_dtype``, except float16 data on the CUDA backend, which its ops
    take as is (the tensor cores read float16; their FP32-kernel paths widen it
    themselves), saving a conversion pass each way."""
    if name == "cuda" and np.dtype(p.dtype) == np.float16 and not p.empty:
        return np.dtype(np.float16)
    return p.compute_dtype


def conv2d(
    x: Any,
    w: Any,
    bias: Any = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, ...] | str = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    *,
    algorithm: str = "auto",
    backend: str | None = None,
    precision: str | None = None,
) -> Any:
    """2-D convolution of deep learning (a cross-correlation), NCHW.

    ``y[n, k, i, j] = bias[k] + sum_{c, a, b} xp[n, g*Cg + c, i*sh + a*dh,
    j*sw + b*dw] * w[k, c, a, b]`` where ``g = k // (K/groups)`` and ``xp`` is
    ``x`` extended by ``padding`` with ``padding_mode``. The kernel is not
    flipped (use :func:`convolve2d` for a true convolution).

    Parameters
    ----------
    x : array_like, shape ``(N, C, H, W)`` or ``(C, H, W)``
        Input (unbatched inputs give unbatched outputs).
    w : array_like, shape ``(K, C/groups, KH, KW)``
        Filters.
    bias : array_like, shape ``(K,)``, optional
        Added to each output channel.
    stride : int or (int, int), optional
        Step between output samples, ``>= 1``.
    padding : int, (int, int), (int, int, int, int), {'valid', 'same'}, optional
        ``p`` pads all sides; ``(ph, pw)`` pads top/bottom by ``ph`` and
        left/right by ``pw``; ``(top, bottom, left, right)`` is asymmetric.
        ``'same'`` keeps the size for stride 1 (total pad ``dilation*(k-1)``, the
        extra row/column at the bottom/right, as PyTorch); with stride > 1 it
        gives ``ceil(H/stride)`` outputs (TensorFlow's rule).
    dilation : int or (int, int), optional
        Spacing between kernel taps, ``>= 1``.
    groups : int, optional
        Number of channel groups; ``C`` and ``K`` must be divisible by it.
    padding_mode : {'zeros', 'reflect', 'replicate', 'circular', 'symmetric'}
        How the border is extended (PyTorch's names and results; ``'symmetric'``
        repeats the edge pixel, as ``np.pad``'s ``'symmetric'``).
    algorithm : {'auto', 'naive', 'tiled', 'tiled_regblock', 'winograd', \
'winograd4'}, optional
        The CUDA kernel variant (ignored by the NumPy backend). ``'winograd'``:
        Winograd's minimal filtering for 3x3 filters of stride and dilation 1
        (F(2x2, 3x3) for the forward pass and the input gradient, F(3x3, 2x2)
        for the weight gradient; any padding; not under
        ``precision='tf32'``), what ``'auto'`` runs elsewhere; its rounding error
        is a few times the direct sum's, and a NaN or inf can spread to the other
        outputs of its 2x2 tile (docs/cuda.md). ``'winograd4'``: the same with
        4x4 tiles (F(4x4, 3x3): fewer multiplications, a larger error bound).
    backend : {None, 'numpy', 'cuda'}, optional
        Where to compute; by default the array type decides (see
        docs/backends.md).
    precision : {None, 'highest', 'tf32'}, optional
        ``'highest'``: full float32 products. ``'tf32'``: the float32 (and
        complex64) operands ``x`` and ``w`` are rounded to TF32 (10 mantissa bits,
        as ``cvt.rna.tf32.f32``) and the exact products accumulated in float32 (on
        the GPU: tensor cores; the NumPy backend rounds the same way and
        accumulates in float64). float64 is never affected. ``None``: the
        innermost :func:`use_precision`, else ``$GPUCONV_PRECISION``, else
        ``'highest'``.

    Returns
    -------
    y : ndarray, shape ``(N, K, OH, OW)`` (or ``(K, OH, OW)``)
        ``OH = (H + pad_top + pad_bottom - dilation*(KH-1) - 1)//stride + 1``.
        dtype: ``np.result_type(x, w, bias)``; float16 is accumulated in float32.

    Raises
    ------
    ValueError
        Wrong shapes or values (message names the argument and accepted values).
    TypeError
        Integer, bool or other non-float dtypes; wrongly typed arguments; NumPy
        and CuPy arrays mixed.

    Notes
    -----
    With no input channels (``C == 0``, so ``w`` is ``(K, 0, KH, KW)``) every
    output is an empty sum: the result has shape ``(N, K, OH, OW)`` and holds the
    bias (zeros without one), the mathematically correct value. PyTorch (2.13)
    returns shape ``(N, 0, OH, OW)`` there instead.

    Examples
    --------
    >>> import numpy as np
    >>> import gpuconv
    >>> x = np.arange(16.0).reshape(1, 1, 4, 4)
    >>> w = np.ones((1, 1, 2, 2))
    >>> gpuconv.conv2d(x, w)[0, 0]
    array([[10., 14., 18.],
           [26., 30., 34.],
           [42., 46., 50.]])
    >>> gpuconv.conv2d(x, w, padding="same").shape
    (1, 1, 4, 4)
    >>> gpuconv.conv2d(np.ones((1, 0, 4, 4)), np.ones((2, 0, 3, 3)),
    ...                bias=np.array([1.0, -1.0]))[0, :, 0]  # C = 0: the bias
    array([[ 1.,  1.],
           [-1., -1.]])
    """
    kind = _backend.array_kind(x, w, bias)
    x, w, bias = _arrays(x, w, bias, kind=kind)
    key = _call_key("conv2d", (x, w, bias),
                    (stride, padding, dilation, groups, padding_mode, algorithm))
    call = _CALLS.get(key)
    if call is None:
        p = normalize_conv2d(
            _shape_of(x, "x"), _shape_of(w, "w"), _dtypes(x, w, bias),
            stride=stride, padding=padding, dilation=dilation, groups=groups,
            padding_mode=padding_mode,
            bias_shape=None if bias is None else _shape_of(bias, "bias"),
        )
        algorithm = check_algorithm(algorithm)
        _CALLS.put(key, (p, algorithm))
    else:
        p, algorithm = call
    p = _with_precision(p, precision)
    name = _backend.select_backend(x, w, bias, backend=backend)
    (x, w, bias), back = _backend.to_backend(name, x, w, bias)
    xp = _xp(name)
    if p.empty:
        y = xp.zeros(p.y_shape, dtype=p.compute_dtype)
        if bias is not None:
            y += bias.astype(p.compute_dtype).reshape(1, -1, 1, 1)
    else:
        ops = _backend.backend_ops(name)
        odt = _op_dtype(name, p)
        xc, wc = _cast(x, odt), _cast(w, odt)
        if _tf32_host(name, p):
            xc, wc = _rounded(xc), _rounded(wc)
        y = ops.conv2d_forward(
            _batched(xc, p), wc, _cast(bias, p.compute_dtype), p, algorithm,
        )
    if y.dtype != p.dtype:
        y = y.astype(p.dtype)
    return back(y if p.batched else y[0])


def _backward(
    gy: Any, x: Any, w: Any, p: Conv2dProblem, needs: tuple[str, ...], name: str,
    algorithm: str,
) -> Conv2dGrads:
    """Shared by :func:`conv2d_backward` and the two torch-style helpers; ``x`` or
    ``w`` may be ``None`` when the gradient needing it is not asked for."""
    xp = _xp(name)
    ops = _backend.backend_ops(name)
    cd = p.compute_dtype
    odt = _op_dtype(name, p)
    gy = _batched(_cast(gy, odt), p)
    # TF32 on the NumPy backend: the products' operands rounded, the bias gradient
    # summed from the unrounded gy
    tf32 = _tf32_host(name, p) and not p.empty
    gy_op = _rounded(gy) if tf32 else gy
    w_op, x_op = _cast(w, odt), _cast(x, odt)
    if tf32:
        w_op = _rounded(w_op) if "input" in needs else w_op
        x_op = _rounded(x_op) if "weight" in needs else x_op
    gx = gw = gb = None
    if "input" in needs:
        if p.empty:
            gx = xp.zeros(p.x_shape, dtype=cd)
        else:
            gx = ops.conv2d_backward_input(gy_op, _conj(w_op, p), p, algorithm)
        gx = gx if gx.dtype == p.dtype else gx.astype(p.dtype)
        gx = gx if p.batched else gx[0]
    want_bias = "bias" in needs
    if "weight" in needs:
        if p.empty:
            gw = xp.zeros(p.w_shape, dtype=cd)
            gb = gy.sum(axis=(0, 2, 3)) if want_bias else None
        else:
            gw, gb = ops.conv2d_backward_weight(
                gy_op, _conj(_batched(x_op, p), p), p, algorithm, want_bias and not tf32
            )
            if want_bias and tf32:
                gb = ops.conv2d_backward_bias(gy, p)
        gw = gw if gw.dtype == p.dtype else gw.astype(p.dtype)
    elif want_bias:
        gb = gy.sum(axis=(0, 2, 3)) if p.empty else ops.conv2d_backward_bias(gy, p)
    if gb is not None:
        gb = gb if gb.dtype == p.dtype else gb.astype(p.dtype)
    return Conv2dGrads(gx, gw, gb)


def _check_gy(gy: Any, p: Conv2dProblem) -> None:
    want = p.user_shape(p.y_shape)
    if tuple(gy.shape) != want:
        raise ValueError(
            f"gy must have the output shape {want} of this convolution, got "
            f"{tuple(gy.shape)}"
        )


def conv2d_backward(
    gy: Any,
    x: Any,
    w: Any,
    *,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, ...] | str = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    needs: tuple[str, ...] | list[str] = ("input", "weight", "bias"),
    algorithm: str = "auto",
    backend: str | None = None,
    precision: str | None = None,
) -> Conv2dGrads:
    """Gradients of :func:`conv2d` with respect to input, weight and bias.

    Parameters
    ----------
    gy : array_like
        Gradient of the loss with respect to ``y = conv2d(x, w, ...)``, shape of ``y``.
    x, w : array_like
        The forward inputs.
    stride, padding, dilation, groups, padding_mode
        As in :func:`conv2d`.
    needs : sequence of {'input', 'weight', 'bias'}, optional
        Which gradients to compute; the others are returned as ``None``.
    algorithm, backend, precision
        As in :func:`conv2d` (``'tf32'`` rounds ``gy``, ``x`` and ``w`` as the
        operands of the gradients' products; the bias gradient sums the unrounded
        ``gy``).

    Returns
    -------
    Conv2dGrads
        Named tuple ``(gx, gw, gb)``: shapes of ``x``, ``w`` and ``(K,)``.

    Notes
    -----
    ``gx`` is the transposed convolution of ``gy`` folded back through the
    padding: with ``'reflect'``, ``'replicate'``, ``'circular'`` and
    ``'symmetric'`` the gradient of each border pixel is added to the pixel it
    copied. For complex inputs the gradients follow PyTorch's convention
    (``gx`` uses ``conj(w)``, ``gw`` uses ``conj(x)``). Results are deterministic:
    the same inputs give bit-identical gradients.

    Examples
    --------
    >>> import numpy as np
    >>> import gpuconv
    >>> x = np.ones((1, 1, 3, 3)); w = np.ones((1, 1, 2, 2))
    >>> gy = np.ones((1, 1, 2, 2))
    >>> g = gpuconv.conv2d_backward(gy, x, w)
    >>> g.gx[0, 0]
    array([[1., 2., 1.],
           [2., 4., 2.],
           [1., 2., 1.]])
    >>> g.gw[0, 0], g.gb
    (array([[4., 4.],
           [4., 4.]]), array([4.]))
    """
    kind = _backend.array_kind(gy, x, w)
    gy, x, w = _arrays(gy, x, w, kind=kind)
    key = _call_key(
        "conv2d_backward", (gy, x, w),
        (stride, padding, dilation, groups, padding_mode, algorithm), needs,
    )
    call = _CALLS.get(key)
    if call is None:
        p = normalize_conv2d(
            _shape_of(x, "x"), _shape_of(w, "w"), _dtypes(gy, x, w), stride=stride,
            padding=padding, dilation=dilation, groups=groups,
            padding_mode=padding_mode, fn="conv2d_backward",
        )
        _check_gy(gy, p)
        needs = check_needs(needs)
        algorithm = check_algorithm(algorithm)
        _CALLS.put(key, (p, needs, algorithm))
    else:
        p, needs, algorithm = call
    p = _with_precision(p, precision)
    name = _backend.select_backend(gy, x, w, backend=backend)
    (gy, x, w), back = _backend.to_backend(name, gy, x, w)
    g = _backward(gy, x, w, p, needs, name, algorithm)
    return Conv2dGrads(*(None if a is None else back(a) for a in g))


def _needs_key(needs: Any) -> Any:
    """``needs`` as a key: a string or a tuple/list of exact strings (else not
    cached)."""
    if type(needs) is str:
        return needs
    if type(needs) in (tuple, list) and all(type(n) is str for n in needs):
        return ("needs", *needs)
    raise Uncacheable("needs")


def _shape_arg(shape: Any, what: str) -> tuple[int, ...]:
    try:
        items = tuple(shape)
    except TypeError:
        raise TypeError(f"{what} must be a sequence of ints, got {shape!r}") from None
    if any(isinstance(s, bool) or not isinstance(s, numbers.Integral) for s in items):
        raise TypeError(f"{what} must be a sequence of ints, got {shape!r}")
    out = tuple(check_int64(int(s), what) for s in items)
    if any(s < 0 for s in out):
        raise ValueError(f"{what} must not have negative sizes, got {out}")
    return out


def conv2d_grad_input(
    input_shape: tuple[int, ...],
    w: Any,
    gy: Any,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, ...] | str = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    *,
    algorithm: str = "auto",
    backend: str | None = None,
    precision: str | None = None,
) -> Any:
    """Gradient of :func:`conv2d` with respect to its input.

    The same as ``torch.nn.grad.conv2d_input`` (and the same argument order).

    Parameters
    ----------
    input_shape : tuple of int
        Shape of ``x``, ``(N, C, H, W)`` or ``(C, H, W)``.
    w, gy : array_like
        Weight and the gradient of the output.
    stride, padding, dilation, groups, padding_mode, algorithm, backend, precision
        As in :func:`conv2d`.

    Returns
    -------
    gx : ndarray of shape ``input_shape``

    Examples
    --------
    >>> import numpy as np
    >>> import gpuconv
    >>> gpuconv.conv2d_grad_input((1, 1, 3), np.ones((1, 1, 1, 2)), np.ones((1, 1, 2)))
    array([[[1., 2., 1.]]])
    """
    kind = _backend.array_kind(w, gy)
    w, gy = _arrays(w, gy, kind=kind)
    key = _call_key("conv2d_grad_input", (w, gy),
                    (input_shape, stride, padding, dilation, groups, padding_mode,
                     algorithm))
    call = _CALLS.get(key)
    if call is None:
        shape = _shape_arg(input_shape, "input_shape")
        p = normalize_conv2d(
            shape, _shape_of(w, "w"), _dtypes(w, gy), stride=stride,
            padding=padding, dilation=dilation, groups=groups,
            padding_mode=padding_mode, fn="conv2d_grad_input",
        )
        _check_gy(gy, p)
        algorithm = check_algorithm(algorithm)
        _CALLS.put(key, (p, algorithm))
    else:
        p, algorithm = call
    p = _with_precision(p, precision)
    name = _backend.select_backend(w, gy, backend=backend)
    (w, gy), back = _backend.to_backend(name, w, gy)
    return back(_backward(gy, None, w, p, ("input",), name, algorithm).gx)


def conv2d_grad_weight(
    x: Any,
    weight_shape: tuple[int, ...],
    gy: Any,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, ...] | str = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    *,
    algorithm: str = "auto",
    backend: str | None = None,
    precision: str | None = None,
) -> Any:
    """Gradient of :func:`conv2d` with respect to its weight.

    The same as ``torch.nn.grad.conv2d_weight`` (and the same argument order).

    Parameters
    ----------
    x : array_like
        The forward input.
    weight_shape : tuple of int
        ``(K, C/groups, KH, KW)``.
    gy : array_like
        Gradient of the output.
    stride, padding, dilation, groups, padding_mode, algorithm, backend, precision
        As in :func:`conv2d`.

    Returns
    -------
    gw : ndarray of shape ``weight_shape``

    Examples
    --------
    >>> import numpy as np
    >>> import gpuconv
    >>> gpuconv.conv2d_grad_weight(np.ones((1, 1, 3)), (1, 1, 1, 2), np.ones((1, 1, 2)))
    array([[[[2., 2.]]]])
    """
    kind = _backend.array_kind(x, gy)
    x, gy = _arrays(x, gy, kind=kind)
    key = _call_key("conv2d_grad_weight", (x, gy),
                    (weight_shape, stride, padding, dilation, groups, padding_mode,
                     algorithm))
    call = _CALLS.get(key)
    if call is None:
        shape = _shape_arg(weight_shape, "weight_shape")
        p = normalize_conv2d(
            _shape_of(x, "x"), shape, _dtypes(x, gy), stride=stride,
            padding=padding, dilation=dilation, groups=groups,
            padding_mode=padding_mode, fn="conv2d_grad_weight",
        )
        _check_gy(gy, p)
        algorithm = check_algorithm(algorithm)
        _CALLS.put(key, (p, algorithm))
    else:
        p, algorithm = call
    p = _with_precision(p, precision)
    name = _backend.select_backend(x, gy, backend=backend)
    (x, gy), back = _backend.to_backend(name, x, gy)
    return back(_backward(gy, x, None, p, ("weight",), name, algorithm).gw)


MATRIX_MAX_ELEMENTS = 1 << 26


def conv2d_matrix(
    input_shape: tuple[int, ...],
    w: Any,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, ...] | str = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
) -> Any:
    """The dense matrix of :func:`conv2d` for one image.

    ``conv2d(x, w, ...).ravel() == conv2d_matrix(x.shape, w, ...) @ x.ravel()``:
    a convolution is a fully connected layer with most connections removed and
    the rest sharing weights. Built directly from the index arithmetic (not by
    calling :func:`conv2d`), so it doubles as an independent oracle.

    For small sizes only: the matrix has ``K*OH*OW x C*H*W`` entries, and more
    than ``2**26`` raises ``ValueError``.

    Parameters
    ----------
    input_shape : tuple of int
        ``(C, H, W)`` or ``(1, C, H, W)``.
    w : array_like, shape ``(K, C/groups, KH, KW)``
    stride, padding, dilation, groups, padding_mode
        As in :func:`conv2d`.

    Returns
    -------
    M : ndarray, shape ``(K*OH*OW, C*H*W)``
        dtype of ``w``, which must be float16, float32, float64, complex64 or
        complex128 (an integer or bool ``w`` raises ``TypeError``, as in
        :func:`conv2d`).

    Examples
    --------
    >>> import numpy as np
    >>> import gpuconv
    >>> M = gpuconv.conv2d_matrix((1, 3, 3), np.ones((1, 1, 2, 2)))
    >>> M.shape
    (4, 9)
    >>> M[0]
    array([1., 1., 0., 1., 1., 0., 0., 0., 0.])
    """
    shape = _shape_arg(input_shape, "input_shape")
    if len(shape) == 4 and shape[0] != 1:
        raise ValueError(
            f"conv2d_matrix is for one image: input_shape must be (C, H, W) or "
            f"(1, C, H, W), got {shape}"
        )
    (w,) = _arrays(w)
    back = _backend.cupy_module().asarray if _backend.array_kind(w) == "cupy" else None
    w_host = w.get() if back is not None else w
    p = normalize_conv2d(
        shape, _shape_of(w_host, "w"), _dtypes(w_host), stride=stride,
        padding=padding, dilation=dilation, groups=groups, padding_mode=padding_mode,
        fn="conv2d_matrix",
    )
    rows, cols = p.K * p.OH * p.OW, p.C * p.H * p.W
    if rows * cols > MATRIX_MAX_ELEMENTS:
        raise ValueError(
            f"conv2d_matrix would have {rows} x {cols} = {rows * cols} entries; it is "
            f"meant for small sizes (at most {MATRIX_MAX_ELEMENTS})"
        )
    M = np.zeros((rows, cols), dtype=p.dtype)
    pt, pb, pl, pr = p.padding
    ih = pad_index(p.H, pt, pb, p.padding_mode)
    iw = pad_index(p.W, pl, pr, p.padding_mode)
    (sh, sw), (dh, dw) = p.stride, p.dilation
    oh = np.arange(p.OH)[:, None]
    ow = np.arange(p.OW)[None, :]
    out_pix = (oh * p.OW + ow).ravel()
    for k in range(p.K):
        g = k // p.Kg
        for c in range(p.Cg):
            cin = g * p.Cg + c
            for a in range(p.KH):
                src_h = ih[oh * sh + a * dh]
                for b in range(p.KW):
                    src_w = iw[ow * sw + b * dw]
                    ok = ((src_h >= 0) & (src_w >= 0)).ravel()
                    col = (cin * p.H * p.W + src_h * p.W + src_w).ravel()
                    np.add.at(
                        M, (k * p.OH * p.OW + out_pix[ok], col[ok]), w_host[k, c, a, b]
                    )
    return back(M) if back is not None else M
