"""The one place that picks the arithmetic precision of the conv2d products.

``precision`` says how the multiplications of a convolution may be carried out on
float32 data (float64 is never affected):

``'highest'`` (the default)
    Full float32 products with float32 accumulation: today's FMA kernels and the
    NumPy backend, results unchanged.
``'tf32'``
    The operands of every product (``x``/``w`` in the forward pass, ``gy``/``w``
    and ``gy``/``x`` in the gradients) are first rounded to TF32 as the GPU's
    ``cvt.rna.tf32.f32`` does: to 10 explicit mantissa bits (float32's exponent),
    round to nearest with ties away from zero. The products of two TF32 values
    are exact in float32; they are accumulated in float32 on the GPU (on tensor
    cores through ``mma.sync``, or by the FP32 kernels on operands rounded first by
    ``cuda/convert.cu``, whichever measured faster for the layer) and in float64 by
    the NumPy backend, so the two backends
    differ only by float32 summation error. A bias is added unrounded and the bias
    gradient is summed from the unrounded ``gy``. complex64 problems are rounded
    part by part (they are four real float32 passes).

Priority, highest first (the rules of :func:`gpuconv.use_backend`):

1. the ``precision=`` keyword of a public function (``None`` means: not given);
2. the innermost :func:`use_precision` context;
3. the environment variable ``GPUCONV_PRECISION``;
4. ``'highest'``.

float16 inputs are computed with float32 accumulation whatever the precision (on
the GPU on tensor cores or by the FP32 kernels on the widened operands: a product of
two float16 values is exact in float32), and rounded once to float16 at the end.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

PRECISIONS = ("highest", "tf32")
ENV_VAR = "GPUCONV_PRECISION"

_context_precision: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "gpuconv_precision", default=None
)

#: TF32 keeps the top 19 bits of a float32 (sign, 8 exponent, 10 mantissa bits).
TF32_DROPPED_BITS = 13
_TF32_HALF = np.uint32(1 << (TF32_DROPPED_BITS - 1))
_TF32_MASK = np.uint32((0xFFFFFFFF << TF32_DROPPED_BITS) & 0xFFFFFFFF)
_EXP_MASK = np.uint32(0x7F800000)


def _check_name(name: object, where: str) -> str:
    """``name`` if it is a precision: ``TypeError`` for a non-string,
    ``ValueError`` (listing the accepted values) for an unknown string."""
    if not isinstance(name, str):
        raise TypeError(
            f"{where} must be None, 'highest' or 'tf32', got "
            f"{type(name).__name__} {name!r}"
        )
    if name not in PRECISIONS:
        raise ValueError(
            f"{where} must be one of 'highest' or 'tf32' (or None for the default), "
            f"got {name!r}"
        )
    return str(name)


def select_precision(precision: str | None = None) -> str:
    """The precision a call runs with: the keyword, else the innermost
    :func:`use_precision`, else ``$GPUCONV_PRECISION``, else ``'highest'``.

    Examples
    --------
    >>> from gpuconv._precision import select_precision
    >>> select_precision("tf32")
    'tf32'
    """
    if precision is not None:
        return _check_name(precision, "precision")
    ctx = _context_precision.get()
    if ctx is not None:
        return ctx
    env = os.environ.get(ENV_VAR)
    if env:
        return _check_name(env.strip().lower(), ENV_VAR)
    return "highest"


@contextlib.contextmanager
def use_precision(name: str | None) -> Iterator[None]:
    """Run the conv2d calls inside the ``with`` block at precision ``name``.

    Parameters
    ----------
    name : {'highest', 'tf32', None}
        ``None`` restores the default (``$GPUCONV_PRECISION``, else
        ``'highest'``) inside the block. An explicit ``precision=`` keyword still
        wins.

    Examples
    --------
    >>> import numpy as np
    >>> import gpuconv
    >>> x = np.full((1, 1, 1, 1), 1 + 2.0**-12, np.float32)
    >>> w = np.ones((1, 1, 1, 1), np.float32)
    >>> with gpuconv.use_precision("tf32"):
    ...     float(gpuconv.conv2d(x, w)[0, 0, 0, 0])  # x rounded to 10 mantissa bits
    1.0
    >>> float(gpuconv.conv2d(x, w)[0, 0, 0, 0]) == 1 + 2.0**-12
    True
    """
    if name is not None:
        _check_name(name, "use_precision name")
    token = _context_precision.set(name)
    try:
        yield
    finally:
        _context_precision.reset(token)


def applies_tf32(precision: str, dtype: Any) -> bool:
    """True when ``precision`` rounds operands of compute dtype ``dtype``
    (float32 and complex64 only)."""
    return precision == "tf32" and np.dtype(dtype) in (
        np.dtype(np.float32), np.dtype(np.complex64)
    )


def round_tf32(a: Any) -> Any:
    """``a`` (float32 or complex64, NumPy or CuPy) rounded to TF32 exactly as
    ``cvt.rna.tf32.f32`` (as ptxas implements it for sm_80/sm_90): round to nearest
    on the 13 dropped mantissa bits, ties away from zero, on the float32 bit pattern
    (so subnormals round in place and a value past the largest TF32 number becomes
    inf), then clear them; inf stays inf, a NaN stays NaN unless its payload lies
    only in the 13 low bits (then inf, as on the GPU; NumPy's NaN is unaffected).
    Returns a new C-contiguous array; ``a`` is never modified.

    Examples
    --------
    >>> import numpy as np
    >>> from gpuconv._precision import round_tf32
    >>> x = np.array([1 + 2.0**-11, 1 + 3 * 2.0**-11, -(1 + 2.0**-11), 1 + 2.0**-12],
    ...              np.float32)
    >>> round_tf32(x).tolist()  # ties away from zero; below half rounds down
    [1.0009765625, 1.001953125, -1.0009765625, 1.0]
    """
    xp = np if isinstance(a, np.ndarray) else _array_module(a)
    if np.dtype(a.dtype) == np.complex64:
        a = xp.ascontiguousarray(a)
        return round_tf32(a.view(np.float32)).view(np.complex64)
    if np.dtype(a.dtype) != np.float32:
        raise TypeError(f"round_tf32 takes float32 or complex64, got {a.dtype}")
    u = xp.ascontiguousarray(a).view(np.uint32)
    r = xp.where((u & _EXP_MASK) == _EXP_MASK, u, u + _TF32_HALF) & _TF32_MASK
    return xp.ascontiguousarray(r).view(np.float32)


def _array_module(a: Any) -> Any:
    from gpuconv import _backend

    if _backend.is_cupy_array(a):
        return _backend.cupy_module() or __import__("cupy")
    return np
