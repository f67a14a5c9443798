"""The one tolerance table of the test suite, per dtype.

Each entry is ``(rtol, atol_per_term)``; comparisons use
``atol = atol_per_term * sqrt(terms) * scale`` where ``terms`` is the number of
products summed into one output (``C/groups*KH*KW`` for conv2d, ``KH*KW`` for a
filter, ``N*OH*OW`` for a weight gradient) and ``scale`` the typical magnitude
of the reference (max |ref|, at least 1). Why these numbers:

- float64: unit roundoff 1.1e-16; a sum of n terms of random sign has error
  ~ sqrt(n)*u*|terms|. 1e-12 leaves 10^4 of headroom for reordering (BLAS,
  FFT) while still catching any wrong tap (an error of order 1).
- float32: u = 6e-8; same reasoning with 100x headroom (FMA contraction and FTZ on
  the GPU, BLAS blocking on the CPU): 5e-6 per sqrt(term). CuPy uses 5e-4 flat for
  convolve2d and Chainer 5e-4/5e-3; ours is tighter because it scales.
- float16 (computed in float32, rounded once at the end): dominated by the final
  rounding, 2^-11 = 4.9e-4 relative; 1e-3 relative plus a small absolute term.
- complex: the same as their real component dtype.
- FFT paths: the error is relative to the largest output, not to each
  output (an FFT spreads error evenly); callers pass ``scale=max|ref|``.
Integer dtypes and integer-valued float inputs whose partial sums are exactly
representable are compared exactly (rtol = atol = 0).
"""

from __future__ import annotations

import numpy as np

TOL: dict[str, tuple[float, float]] = {
    "float16": (1e-3, 1e-3),
    "float32": (1e-5, 5e-6),
    "float64": (1e-12, 1e-13),
    "complex64": (1e-5, 5e-6),
    "complex128": (1e-12, 1e-13),
}


def tol(dtype, terms: int = 1, scale: float = 1.0) -> dict[str, float]:
    """``rtol``/``atol`` keyword arguments for ``np.testing.assert_allclose``."""
    dt = np.dtype(dtype)
    if dt.kind in "iub":
        return {"rtol": 0.0, "atol": 0.0}
    rtol, atol = TOL[dt.name]
    return {"rtol": rtol, "atol": atol * max(terms, 1) ** 0.5 * max(scale, 1.0)}


def assert_close(
    actual, desired, dtype=None, terms: int = 1, scale: float | None = None
):
    """``assert_allclose`` with the table's tolerance for ``dtype`` (default:
    actual's)."""
    actual = np.asarray(actual)
    desired = np.asarray(desired)
    dt = np.dtype(dtype) if dtype is not None else actual.dtype
    if scale is None:
        finite = np.abs(desired[np.isfinite(desired)]) if desired.size else desired
        scale = float(finite.max()) if finite.size else 1.0
    np.testing.assert_allclose(actual, desired, **tol(dt, terms, scale), equal_nan=True)
