"""Naive loop references for the filter API, independent of gpuconv.

Direct transcriptions of the definitions, one output and one tap at a time, in
Python arithmetic: float64/complex128 for floating inputs, exact Python integers
reduced modulo ``2**bits`` for integer inputs (what C/NumPy wrap-around gives),
``any(a and b)`` for booleans. Slow: for small shapes only.

- :func:`ref_filter2d`: ``scipy.signal.convolve2d``/``correlate2d`` (modes, the
  boundary extensions written out from their patterns, fillvalue, the 'valid'
  swap and correlate2d's reversed result).
- :func:`ref_filter1d`: ``numpy.convolve``/``numpy.correlate`` from the formulas
  ``(a * v)[n] = sum_m a[m] v[n - m]`` and ``c[k] = sum_n a[n + k] conj(v[n])``.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _extend_index(i: int, n: int, boundary: str) -> int | None:
    """Source index of position ``i`` of an axis of length ``n`` (None: fill)."""
    if 0 <= i < n:
        return i
    if boundary == "fill":
        return None
    if boundary == "wrap":  # ...abcd|abcd|abcd...
        return i % n
    q = i % (2 * n)  # symm: ...dcba|abcd|dcba...
    return q if q < n else 2 * n - 1 - q


def _exact(values: Any, dtype: np.dtype) -> np.ndarray:
    """Python numbers -> an array of ``dtype`` (integers wrapped modulo 2**bits)."""
    if dtype.kind in "iu":
        bits = 8 * dtype.itemsize
        wrapped = [int(v) % (1 << bits) for v in values.ravel()]
        if dtype.kind == "i":
            wrapped = [v - (1 << bits) if v >= 1 << (bits - 1) else v for v in wrapped]
        return np.array(wrapped, dtype=object).reshape(values.shape).astype(dtype)
    return values.astype(dtype)


def _py(a: np.ndarray) -> np.ndarray:
    """Elements as Python numbers (int, float or complex), object array."""
    if a.dtype.kind in "iub":
        return np.array([int(v) for v in a.ravel()], dtype=object).reshape(a.shape)
    if a.dtype.kind == "c":
        return np.array([complex(v) for v in a.ravel()], dtype=object).reshape(a.shape)
    return np.array([float(v) for v in a.ravel()], dtype=object).reshape(a.shape)


def ref_filter2d(
    in1: Any,
    in2: Any,
    mode: str = "full",
    boundary: str = "fill",
    fillvalue: Any = 0,
    *,
    convolve: bool = True,
) -> np.ndarray:
    """SciPy's convolve2d (``convolve=True``) or correlate2d by loops.

    ``boundary`` takes the canonical names 'fill', 'wrap', 'symm'. The result dtype
    is ``np.result_type(in1, in2)`` (the values computed in float64/complex128 or
    exact integers).
    """
    in1, in2 = np.asarray(in1), np.asarray(in2)
    dtype = np.result_type(in1, in2)
    swapped = False
    if mode == "valid" and not (
        in1.shape[0] >= in2.shape[0] and in1.shape[1] >= in2.shape[1]
    ):
        in1, in2 = in2, in1
        swapped = True
    H, W = in1.shape
    KH, KW = in2.shape
    x, k = _py(in1), _py(in2)
    if dtype.kind in "iu":
        fill = int(np.array(fillvalue).astype(dtype))
    elif dtype.kind == "c":
        fill = complex(fillvalue)
    else:
        fill = float(np.array(fillvalue).astype(dtype))
    if not convolve and dtype.kind == "c":
        k = np.vectorize(lambda z: z.conjugate(), otypes=[object])(k)
    if mode == "full":
        OH, OW, oh, ow = H + KH - 1, W + KW - 1, 0, 0
    elif mode == "same":
        OH, OW = H, W
        # index into the full result: convolve (KH-1)//2, correlate KH//2
        oh, ow = ((KH - 1) // 2, (KW - 1) // 2) if convolve else (KH // 2, KW // 2)
    else:
        OH, OW, oh, ow = H - KH + 1, W - KW + 1, KH - 1, KW - 1
    out = np.empty((max(OH, 0), max(OW, 0)), dtype=object)
    for i in range(OH):
        for j in range(OW):
            fi, fj = i + oh, j + ow  # position in the full result
            s = 0
            for a in range(KH):
                for c in range(KW):
                    if convolve:  # full[fi] = sum_a x[fi - a] k[a]
                        p, q = fi - a, fj - c
                    else:  # full[fi] = sum_a x[fi + a - (KH-1)] conj(k[a])
                        p, q = fi + a - (KH - 1), fj + c - (KW - 1)
                    ip = _extend_index(p, H, boundary)
                    iq = _extend_index(q, W, boundary)
                    v = fill if ip is None or iq is None else x[ip, iq]
                    s = s + v * k[a, c]
            out[i, j] = s
    res = _exact(out, dtype)
    if swapped and not convolve:
        res = res[::-1, ::-1]
    return res


def ref_filter1d(
    a: Any, v: Any, mode: str = "full", *, convolve: bool = True
) -> np.ndarray:
    """numpy.convolve (``convolve=True``) or numpy.correlate by loops."""
    a = np.atleast_1d(np.asarray(a))
    v = np.atleast_1d(np.asarray(v))
    dtype = np.result_type(a, v)
    M, N = len(a), len(v)
    x, y = _py(a), _py(v)
    if convolve:
        # full: n in [0, M + N - 1); same: centred window of max(M, N); valid: overlap
        full = [
            sum((x[m] * y[n - m] for m in range(M) if 0 <= n - m < N), 0)
            for n in range(M + N - 1)
        ]
        L, S = max(M, N), min(M, N)
        if mode == "full":
            res = full
        elif mode == "same":
            start = (S - 1) // 2
            res = full[start : start + L]
        else:
            res = full[S - 1 : L]
    else:
        if dtype.kind == "c":
            y = np.array([complex(z).conjugate() for z in y], dtype=object)
        # c[k] = sum_n a[n + k] conj(v[n]), k from -(N-1) to M-1
        lags = range(-(N - 1), M)
        full = [
            sum((x[n + k] * y[n] for n in range(N) if 0 <= n + k < M), 0) for k in lags
        ]
        L, S = max(M, N), min(M, N)
        if mode == "full":
            res = full
        elif mode == "valid":
            # the lags where the shorter sequence lies inside the longer one
            res = full[N - 1 : M] if M >= N else full[M - 1 : N]
        else:
            # 'same': NumPy centres the shorter input with S // 2 samples of
            # padding before it; when v is the longer one it correlates
            # (conj(v), a) and reverses, which shifts the window (derivation:
            # out'[i] = c[M // 2 - i] reversed gives c[i - (N - 1 - M // 2)]).
            start = (N - 1) // 2 if M >= N else M // 2
            res = full[start : start + L]
    out = np.array(res, dtype=object)
    if dtype == np.bool_:
        return np.array([bool(t) for t in out], dtype=bool)
    return _exact(out, dtype)
