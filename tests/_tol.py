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
- A reduction summed in another order by the peer (CuPy's tree ``sum`` against
  NumPy's pairwise sum, e.g. the bias gradient ``gy.sum(axis=(0, 2, 3))`` of an
  empty-input problem whose output is not empty) is a reordered sum of ``terms``
  values: the same table applies (measured 2 ulp apart for 50 float32 terms).
- FFT paths: the error is relative to the largest output, not to each
  output (an FFT spreads error evenly); callers pass ``scale=max|ref|``.
- Element-wise bounds (:func:`assert_within_bound`): where one tolerance for the
  whole output is too loose (a large fill value dominates the border, so
  ``max|ref|`` says nothing about the interior), each element is held to
  ``BOUND_EPS * eps(dtype) * bound`` with ``bound`` the direct sum's own error
  scale at that element, ``sum |k| |ext(x)|``, plus the FFT's global term
  ``sum |k| * max |x|``. Measured: the direct sum stays below 8 eps, the FFT paths
  below 6 eps (both including the float64 reference's own rounding).
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


def _fail_beyond(bad, err, limit, actual, desired, what: str) -> None:
    """The element-wise bounds' failure: how many elements are ``bad`` and the worst
    one (largest ``err / limit``)."""
    if not bad.any():
        return
    ratio = np.where(bad, err / np.maximum(limit, 1e-300), 0)
    worst = np.unravel_index(int(np.argmax(ratio)), err.shape)
    raise AssertionError(
        f"{int(bad.sum())} of {err.size} elements exceed {what}; "
        f"worst at {worst}: error {err[worst]:.3g}, limit {limit[worst]:.3g}, "
        f"actual {actual[worst]!r}, desired {desired[worst]!r}"
    )


#: Multiple of the dtype's epsilon allowed per element by :func:`assert_within_bound`.
BOUND_EPS = 64


def assert_within_bound(actual, desired, bound, dtype) -> None:
    """``|actual - desired| <= BOUND_EPS * eps(dtype) * bound`` for every element
    (``bound``: a non-negative per-element error scale, broadcast to the shape)."""
    actual = np.asarray(actual)
    desired = np.asarray(desired)
    assert actual.shape == desired.shape
    eps = float(np.finfo(np.dtype(dtype)).eps)
    err = np.abs(actual.astype(np.complex128) - desired)
    limit = BOUND_EPS * eps * np.broadcast_to(np.asarray(bound, np.float64), err.shape)
    _fail_beyond(~(err <= limit), err, limit, actual, desired,
                 f"{BOUND_EPS} eps x bound")


# ---------------------------------------------------------------------------------
# Tensor-core precisions: rigorous element-wise bounds (never flaky, still tight
# enough that one wrong or missing tap, of size ~|x||w|, exceeds them).
#
# A product of two operands each rounded with relative error <= u_op is off by at
# most (2 u_op + u_op^2) |x||w|; summing n exact products (plus the bias) in a
# precision of unit roundoff u_acc, in any order, adds at most gamma_n |x||w| summed,
# gamma_n = n u_acc / (1 - n u_acc) (Higham, Accuracy and Stability of Numerical
# Algorithms, eq. 3.4). With S = sum |x||w| (the convolution of |x| and |w|, in
# float64) the error of each element is at most
#     (2 u_op + u_op^2 + gamma_{n+1}(u_acc)) * S + u_out * |y| + atol_out
# where u_out is the unit roundoff of a final rounding to the output dtype (float16:
# 2^-11, plus its subnormal spacing 2^-24 / 2 as atol_out).
#   TF32 operands: rounded to nearest (cvt.rna) to 10 explicit mantissa bits, so
#     u_op = 2^-11; accumulation float32, u_acc = 2^-24. For 3x3x64 terms the bound is
#     about 1.0e-3 * S: the TF32 rounding dominates, as on any tensor core.
#   float16 operands are exact (u_op = 0): their products are exact in float32, so
#     only the float32 summation (gamma_n(2^-24) S) and the final float16 rounding
#     remain.
#   Against the NumPy backend's TF32 model (the same rounded operands, exact products,
#     float64 accumulation) u_op = 0 too: the bound is the float32 summation alone,
#     which catches a kernel that truncates instead of rounding.
# The float64 reference's own error (gamma_n(2^-53) S) is added for completeness.

TF32_UNIT = 2.0**-11
FP32_UNIT = 2.0**-24
FP16_UNIT = 2.0**-11
FP16_HALF_SUBNORMAL = 2.0**-25


def gamma(n: int, unit: float) -> float:
    """Higham's ``gamma_n = n u / (1 - n u)``: the relative bound of an n-term sum."""
    nu = n * unit
    assert nu < 1, "too many terms for a meaningful bound"
    return nu / (1 - nu)


def assert_products_within(
    actual, desired, abs_sum, terms: int, *, operand_unit: float = 0.0,
    accumulate_unit: float = FP32_UNIT, output_unit: float = 0.0,
    output_atol: float = 0.0,
) -> None:
    """Every element within the bound above. ``abs_sum`` is ``S`` (broadcast),
    ``terms`` the products per element (the bias counts as one more)."""
    actual = np.asarray(actual, dtype=np.float64)
    desired = np.asarray(desired, dtype=np.float64)
    assert actual.shape == desired.shape, (actual.shape, desired.shape)
    n = terms + 1
    coeff = (2 * operand_unit + operand_unit**2 + gamma(n, accumulate_unit)
             + gamma(n, 2.0**-53))
    limit = coeff * np.asarray(abs_sum, np.float64) + output_unit * np.abs(desired)
    limit = limit + output_atol
    same_nan = np.isnan(actual) & np.isnan(desired)
    err = np.abs(actual - desired)
    _fail_beyond(~((err <= limit) | same_nan), err, limit, actual, desired,
                 "the product bound")


# ---------------------------------------------------------------------------------
# Winograd (algorithm='winograd', cuda/conv2d_winograd.cu): not a reordered direct sum.
# Each transformed value is a float sum of a few operands with coefficients +-1 and
# +-1/2 (exact scalings). Counted in the kernels, the longest chain of roundings a
# product meets (Higham's gamma argument on the whole chain: every rounding of a value
# bounded by u times the same expression on absolute values, (1+t_a)(1+t_b) within
# gamma_{a+b}, second-order terms included):
#   F(2x2, 3x3), forward and input gradient: the input transform B^T d B rounds twice
#   (one addition per dimension), the filter transform G g G^T four times (two per
#   dimension), the 16 GEMMs sum Ci products (gamma_Ci: the product's rounding
#   included; any order, split-K too: a chain of Ci terms at most), the output
#   transform A^T M A four times (two per dimension), the bias one: Ci + 11.
#   F(3x3, 2x2), weight gradient: B^T d B twice, the gy tile A t A^T twice (one per
#   dimension), the GEMMs sum P tile products (split-K, reduced in order: P at most),
#   the 3x3 output G^T M G four times: P + 8.
#   A padding mode's input gradient is then folded: a sum of F padded gradients (F at
#   most (1 + pt + pb)(1 + pl + pr), pads larger than the image) adds F - 1
#   (``fold_terms``).
# WINOGRAD_DEPTH = 12 covers both passes (one to spare forward, two for the input
# gradient, four for the weight gradient). So, per output,
#     |error| <= gamma_{Ci + WINOGRAD_DEPTH + F - 1}(u) * W_abs
# with W_abs = |A^T| sum_c (|G||g||G^T|) (.) (|B^T||d||B|) |A| + |bias|: Winograd on
# absolute values (tests/ref_conv.winograd_f23(..., absolute=True), folded alike).
# W_abs >= the direct sum's sum |x||w| (each term of the expansion with |coefficients|),
# so the float64 reference's own error, gamma_n(2^-53) sum |x||w| for its n terms
# (``reference_terms``: C/groups*9 + 1 forward, K/groups*9*F input gradient, N*OH*OW
# weight gradient), is within gamma_n(2^-53) * W_abs. W_abs is a few times the
# direct sum's scale (the transforms add up to 4 operands per value), the known
# accuracy cost of Winograd (Lavin and Gray 2016; Barabasz et al., "Error analysis and
# improving the accuracy of Winograd convolution", 2020). WINOGRAD_SAFETY is slack
# for the float64 rounding of W_abs itself (of order 1e-15 relative); the bound is
# otherwise rigorous (no underflow assumed). Tight enough: a coefficient of a transform
# off by 2e-4 fails the float32 cases, any wrong tap or sign fails both dtypes.
WINOGRAD_DEPTH = 12
#: F(4x4, 3x3) (algorithm='winograd4'): its transforms take up to 3 roundings per
#: dimension for the input (B^T rows of 3-4 terms, a 5x multiple), 4 for the filter
#: (G's 1/6, 1/12, 1/24 are rounded coefficients, then a product and 2 additions),
#: 4 for the output (A^T rows of 5 terms; 2, 4, 8 are exact); its weight gradient
#: (F(3x3, 4x4)) 3 for the gy tile and 6 for G^T M G: at most 25 with the product and
#: the bias, 32 here. Its W_abs is larger too (|B^T| and |A^T| hold 4, 5 and 8):
#: 75-265x sum |x||w| on random data, where the actual float32 error stays near the
#: direct sum's.
WINOGRAD_DEPTHS = {"winograd": WINOGRAD_DEPTH, "winograd4": 32}
WINOGRAD_SAFETY = 2.0


def assert_winograd_within(actual, desired, w_abs, reduction: int, dtype,
                           variant: str = "winograd", *, fold_terms: int = 1,
                           reference_terms: int | None = None) -> None:
    """Every element of a Winograd result within the bound above (``w_abs``:
    ``W_abs`` per element, ``reduction``: the terms ``Ci`` (or ``P``) summed per
    GEMM, ``variant``: ``'winograd'`` or ``'winograd4'``, ``fold_terms``: the most
    padded gradients a fold sums into one pixel, ``reference_terms``: the products
    the float64 ``desired`` summed per element; default: as many as the kernels'
    chain)."""
    unit = float(np.finfo(np.dtype(dtype)).eps) / 2
    depth = reduction + WINOGRAD_DEPTHS[variant] + fold_terms - 1
    ref_terms = depth if reference_terms is None else reference_terms
    coeff = WINOGRAD_SAFETY * (gamma(depth, unit) + gamma(ref_terms, 2.0**-53))
    actual = np.asarray(actual, dtype=np.float64)
    desired = np.asarray(desired, dtype=np.float64)
    assert actual.shape == desired.shape, (actual.shape, desired.shape)
    limit = coeff * np.asarray(w_abs, np.float64)
    err = np.abs(actual - desired)
    _fail_beyond(~(err <= limit), err, limit, actual, desired, "the Winograd bound")


#: Comparisons of Winograd results with the direct sum at the public API (float16,
#: complex, conv2d_backward), where the element-wise bound above is not at hand:
#: the table's rule with ``terms`` times this (its square root, 12, covers the 2.5-11x
#: larger error scale of the transformed magnitudes).
WINOGRAD_TERMS_SCALE = 144
