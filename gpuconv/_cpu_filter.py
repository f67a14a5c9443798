"""The NumPy backend's filter op: one padded 2-D correlation of a stack of images.

``correlate2d(in1 (B, H, W), k (Bk, KH, KW), fp, method) -> out (B, OH, OW)``
computes (:class:`gpuconv._filter_args.FilterProblem`)

``out[b, i, j] = sum_{a, c} ext(in1)[b, i+a-pad_top, j+c-pad_left] * k[bk, a, c]``

in ``fp.dtype`` by one of two methods, with no Python loop over pixels:

``'direct'``
    Shift-and-add. ``ext`` (the input extended by the boundary rule) is built once
    (the fill value, or ``gpuconv._padding.pad_index`` maps for wrap/symm; the
    input itself in 'valid' mode), then every kernel tap is one multiply-add of a
    shifted view of ``ext`` over the whole stack, into a preallocated accumulator.
    The output is processed in blocks of about :data:`BLOCK_BYTES` (several small
    images, rows of one image, or pieces of a long row) so that the accumulator,
    the product buffer and the input rows stay in the L2 cache across all taps.
    float32 stays float32; integers compute in their own dtype and wrap exactly as
    SciPy/NumPy do (sums and products modulo 2^n); booleans count in int64 and
    compare with 0 (NumPy's OR of ANDs). Taps of 0 are skipped only when that
    cannot change the result (integers, or a finite ``ext``: ``0 * inf = nan`` is
    kept); taps of +1/-1 are one add/subtract; a separable (rank-1) float kernel
    over finite data is two 1-D passes (``KH + KW`` taps instead of ``KH*KW``).
``'fft'``
    ``rfft2``/``irfft2`` for real data, ``fft2``/``ifft2`` for complex
    (:func:`fft_module`: ``scipy.fft`` when installed, else ``numpy.fft``) on
    ``ext``, at 5-smooth sizes ``>= ext`` (linear correlation, no wrap-around), in
    the input precision (float32 stays float32). Float and complex dtypes only.
    With ``boundary='fill'`` the FFT sees the zero-extended image and the fill
    value's contribution, ``fill * (sum(k) - taps inside the image)``, is added
    exactly afterwards (:func:`gpuconv._padding.add_fill_correction`), so the
    error does not grow with ``|fillvalue|``. An
    FFT spreads a NaN or inf over the whole output: the cost model (:func:`choose`)
    never picks it for non-finite inputs.

:func:`choose` resolves ``method='auto'`` with the cost model of
:func:`estimate_seconds` (the model behind ``gpuconv.choose_method``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from gpuconv._filter_args import FilterProblem
from gpuconv._padding import add_fill_correction, pad_index

#: Target size of one block of output (and of the product buffer), bytes: with the
#: input rows they need, two blocks stay in a 1 MiB L2 cache.
BLOCK_BYTES = 256 * 1024

# ---- cost model constants (see gpuconv.choose_method for how they were measured) ----
#: seconds per multiply-add of one kernel tap on one output pixel, per dtype class
#: (integers up to 4 bytes, 8-byte integers, float32, float64, complex64/128).
DIRECT_TAP_S = {
    "i4": 0.51e-9,
    "i8": 1.1e-9,
    "f4": 0.42e-9,
    "f8": 0.78e-9,
    "c8": 0.84e-9,
    "c16": 1.9e-9,
}
#: seconds of NumPy call overhead per tap and block (two ufunc calls).
DIRECT_CALL_S = 1.3e-6
#: seconds per ``P log2 P`` unit of one 2-D transform of ``P`` points (rfft2 for
#: real data), per dtype class.
FFT_UNIT_S = {"f4": 0.30e-9, "f8": 0.54e-9, "c8": 0.50e-9, "c16": 0.96e-9}
#: fixed overhead of the FFT path (plans, temporaries), seconds.
FFT_FIXED_S = 30e-6
#: 'auto' takes the FFT only where the model says it saves at least this much over
#: the direct sum. Below that the FFT's gain is within the model's error and small
#: in absolute terms, while the direct sum gives SciPy's exact result on
#: integer-valued data (every image and kernel up to 16x16, every mode: a direct
#: cost of at most ~0.8 ms by the model), and keeps NumPy's NaN/inf pattern.
FFT_MIN_GAIN_S = 1e-3


def correlate2d(in1: Any, k: Any, fp: FilterProblem, method: str = "direct") -> Any:
    """The padded 2-D correlation described by ``fp``, on the CPU.

    Parameters
    ----------
    in1 : numpy.ndarray, shape ``(B, H, W)``, dtype ``fp.dtype``
        Images (any strides; never modified).
    k : numpy.ndarray, shape ``(Bk, KH, KW)``, dtype ``fp.dtype``
        Kernel(s), already flipped/conjugated; ``Bk`` is 1 or ``B``.
    fp : FilterProblem
        A validated, non-empty problem.
    method : {'direct', 'fft', 'auto'}
        ``'auto'`` asks :func:`choose`. ``'fft'`` needs a float or complex dtype.

    Returns
    -------
    numpy.ndarray, shape ``(B, OH, OW)``, dtype ``fp.dtype``

    Examples
    --------
    >>> import numpy as np
    >>> from gpuconv._filter_args import FilterProblem
    >>> fp = FilterProblem(1, 3, 3, 1, 2, 2, 0, 0, 2, 2, "fill", 0.0, np.dtype("f8"))
    >>> correlate2d(np.arange(9.0).reshape(1, 3, 3), np.ones((1, 2, 2)), fp)[0]
    array([[ 8., 12.],
           [20., 24.]])
    """
    dt = np.dtype(fp.dtype)
    if dt == np.bool_:
        i8 = np.dtype(np.int64)
        fp64 = _replace_dtype(fp, i8, np.int64(bool(fp.fillvalue)))
        out = correlate2d(in1.astype(i8), k.astype(i8), fp64, "direct")
        return out != 0
    if method == "auto":
        method = choose(fp, in1, k)
    if method not in ("direct", "fft"):
        raise ValueError(f"method must be 'direct', 'fft' or 'auto', got {method!r}")
    if method == "fft" and dt.kind not in "fc":
        raise ValueError(f"method='fft' needs float or complex data, not {dt}")
    # IEEE results (0 * inf = nan, overflow to inf) without NumPy's warnings, as
    # SciPy's and NumPy's own C loops give them.
    with np.errstate(all="ignore"):
        if method == "direct":
            return _direct(extend(in1, fp), k, fp)
        # the FFT only ever sees the zero-extended image: a fill value is added
        # afterwards, exactly, by linearity (an FFT's error is relative to the
        # largest value it transforms, so a large fill would swamp every output)
        fp0 = _zero_fill(fp)
        out = _fft(extend(in1, fp0), k, fp0)
        return add_fill_correction(out, k, fp)


def _zero_fill(fp: FilterProblem) -> FilterProblem:
    if fp.boundary != "fill":
        return fp
    import dataclasses

    return dataclasses.replace(fp, fillvalue=np.zeros((), fp.dtype)[()])


def _replace_dtype(fp: FilterProblem, dt: np.dtype, fill: Any) -> FilterProblem:
    import dataclasses

    return dataclasses.replace(fp, dtype=dt, fillvalue=fill)


def extend(in1: Any, fp: FilterProblem) -> np.ndarray:
    """``ext(in1)``: shape ``(B, OH + KH - 1, OW + KW - 1)``, built once.

    The input is copied into the middle, and the border is the fill value or is
    gathered from the input through ``pad_index`` maps (rows, then columns: the
    maps are separable). With no padding ('valid') the input itself is returned
    (a C-contiguous copy only if it had other strides).
    """
    dt = np.dtype(fp.dtype)
    pt, pb, pl, pr = fp.pad_top, fp.pad_bottom, fp.pad_left, fp.pad_right
    H, W = fp.H, fp.W
    if pt == pb == pl == pr == 0:
        return np.ascontiguousarray(in1, dtype=dt)
    EH, EW = fp.OH + fp.KH - 1, fp.OW + fp.KW - 1
    ext = np.empty((fp.B, EH, EW), dtype=dt)
    ext[:, pt : pt + H, pl : pl + W] = in1
    if fp.boundary == "fill":
        fill = np.asarray(fp.fillvalue, dtype=dt)
        ext[:, :pt] = fill
        ext[:, pt + H :] = fill
        ext[:, pt : pt + H, :pl] = fill
        ext[:, pt : pt + H, pl + W :] = fill
        return ext
    mode = fp.pad_mode
    ci = pad_index(W, pl, pr, mode)
    ri = pad_index(H, pt, pb, mode)
    mid = ext[:, pt : pt + H]
    if pl:
        mid[:, :, :pl] = mid[:, :, pl + ci[:pl]]
    if pr:
        mid[:, :, pl + W :] = mid[:, :, pl + ci[pl + W :]]
    if pt:
        ext[:, :pt] = ext[:, pt + ri[:pt]]
    if pb:
        ext[:, pt + H :] = ext[:, pt + ri[pt + H :]]
    return ext


def _blocks(B: int, OH: int, OW: int, itemsize: int):
    """``(b0, b1, r0, r1, c0, c1)`` blocks of a ``(B, OH, OW)`` output of about
    BLOCK_BYTES each: several whole small images, rows of one image, or (rows
    longer than a block, e.g. long 1-D signals) pieces of one row."""
    target = max(1, BLOCK_BYTES // itemsize)
    per_image = OH * OW
    if OW > target:
        for b in range(B):
            for r in range(OH):
                for c0 in range(0, OW, target):
                    yield b, b + 1, r, r + 1, c0, min(OW, c0 + target)
    elif per_image >= target:
        rows = max(1, target // max(OW, 1))
        for b in range(B):
            for r0 in range(0, OH, rows):
                yield b, b + 1, r0, min(OH, r0 + rows), 0, OW
    else:
        nb = max(1, target // max(per_image, 1))
        for b0 in range(0, B, nb):
            yield b0, min(B, b0 + nb), 0, OH, 0, OW


def rank1_factors(kk: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """``(u, v)`` with ``outer(u, v) == kk`` to within 2 ulp of ``max|kk|``, or None.

    ``u`` is the column and ``v`` the row through the largest tap ``p``, divided by
    ``p``: exact for kernels such as boxes and binomials, a few ulp for Gaussians.

    >>> rank1_factors(np.array([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0]]))
    (array([2., 4.]), array([0.5, 1. , 0.5]))
    >>> rank1_factors(np.eye(2)) is None
    True
    """
    dt = kk.dtype
    if dt.kind not in "fc" or kk.size == 0:
        return None
    a0, c0 = np.unravel_index(int(np.argmax(np.abs(kk))), kk.shape)
    p = kk[a0, c0]
    if p == 0 or not np.isfinite(p):
        return None
    u = kk[:, c0].copy()
    v = (kk[a0, :] / p).astype(dt)
    with np.errstate(all="ignore"):
        err = np.abs(np.multiply.outer(u, v) - kk).max()
    if not err <= 2 * np.finfo(dt).eps * abs(p):
        return None
    return u, v


def _separable(KH: int, KW: int) -> bool:
    """Two 1-D passes (KH + KW taps and one intermediate) beat KH*KW taps."""
    return KH > 1 and KW > 1 and KH * KW > KH + KW + 2


def _direct(ext: np.ndarray, k: np.ndarray, fp: FilterProblem) -> np.ndarray:
    dt = np.dtype(fp.dtype)
    k = np.ascontiguousarray(k, dtype=dt)
    finite: list[bool] = []

    def ext_finite() -> bool:  # read the data at most once, and only when it helps
        if not finite:
            finite.append(dt.kind in "iu" or bool(np.isfinite(ext).all()))
        return finite[0]

    if fp.Bk == 1 and _separable(fp.KH, fp.KW):
        uv = rank1_factors(k[0])
        if uv is not None and ext_finite():
            u, v = uv
            EW = fp.OW + fp.KW - 1
            mid = _shift_add(ext, u.reshape(1, -1, 1), fp.B, fp.OH, EW, True)
            return _shift_add(mid, v.reshape(1, 1, -1), fp.B, fp.OH, fp.OW, False)
    skip_zeros = fp.Bk == 1 and bool((k[0] == 0).any()) and ext_finite()
    return _shift_add(ext, k, fp.B, fp.OH, fp.OW, skip_zeros)


def _shift_add(
    src: np.ndarray, k: np.ndarray, B: int, OH: int, OW: int, skip_zeros: bool
) -> np.ndarray:
    """``out[b, i, j] = sum_{a, c} src[b, i + a, j + c] * k[bk, a, c]``: one
    multiply-add of a shifted view per tap, block by block (see BLOCK_BYTES).

    Zero taps are skipped only with ``skip_zeros`` (integer or finite ``src``:
    otherwise ``0 * inf = nan`` must reach the output, as in NumPy).
    """
    dt = src.dtype
    _, KH, KW = k.shape
    taps = [(a, c) for a in range(KH) for c in range(KW)]
    shared = k.shape[0] == 1
    kv = k[0]
    if shared and skip_zeros:
        taps = [(a, c) for a, c in taps if kv[a, c] != 0]
    out = np.empty((B, OH, OW), dtype=dt)
    if not taps:  # an all-zero kernel over finite or integer data
        out[...] = 0
        return out
    # x * 1 == x exactly for real data (inf and nan included); not for complex,
    # where (1 + 0j) * (1 + inf j) = nan + inf j (0 * inf), as in SciPy and NumPy.
    unit_taps = shared and dt.kind in "iuf"
    one = dt.type(1)
    minus_one = dt.type(-1) if dt.kind != "u" else None
    tmp_full = None
    for b0, b1, r0, r1, c0, c1 in _blocks(B, OH, OW, dt.itemsize):
        acc = out[b0:b1, r0:r1, c0:c1]
        if tmp_full is None:
            tmp_full = np.empty(acc.size, dtype=dt)
        tmp = tmp_full[: acc.size].reshape(acc.shape)
        first = True
        for a, c in taps:
            view = src[b0:b1, r0 + a : r1 + a, c0 + c : c1 + c]
            w = kv[a, c] if shared else k[b0:b1, a, c].reshape(-1, 1, 1)
            if first:
                if unit_taps and w == one:
                    acc[...] = view
                else:
                    np.multiply(view, w, out=acc)
                first = False
            elif unit_taps and w == one:
                np.add(acc, view, out=acc)
            elif unit_taps and minus_one is not None and w == minus_one:
                np.subtract(acc, view, out=acc)
            else:
                np.multiply(view, w, out=tmp)
                np.add(acc, tmp, out=acc)
    return out


def next_fast_len(n: int) -> int:
    """The smallest ``2^a 3^b 5^c >= n`` (sizes pocketfft transforms fastest).

    >>> [next_fast_len(n) for n in (1, 7, 97, 1025)]
    [1, 8, 100, 1080]
    """
    if n <= 6:
        return max(n, 1)
    best = 1 << (n - 1).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            q = -(-n // p35)
            p2 = 1 << (q - 1).bit_length()
            best = min(best, p2 * p35)
            p35 *= 3
        p5 *= 5
    return best


def fft_shape(fp: FilterProblem) -> tuple[int, int]:
    """The transform size of the FFT path: 5-smooth, ``>= ext`` in both axes (so the
    circular correlation equals the linear one on every output)."""
    return (
        next_fast_len(fp.OH + fp.KH - 1),
        next_fast_len(fp.OW + fp.KW - 1),
    )


#: Most bytes of spectra the FFT path holds at once (larger stacks go in chunks).
FFT_CHUNK_BYTES = 256 * 1024 * 1024


_FFT_MODULE: list[Any] = []


def fft_module() -> Any:
    """``scipy.fft`` when SciPy is installed, else ``numpy.fft`` (same API here).

    Both are pocketfft, but NumPy 2.4's single-precision *forward* transforms are
    several times slower than its double-precision ones (measured on the dev
    machine: ``rfft2`` of 1080x1080 float32 74 ms with NumPy, 4.4 ms with SciPy),
    so SciPy's is used whenever it is importable.
    """
    if not _FFT_MODULE:
        try:
            import scipy.fft as mod
        except ImportError:  # pragma: no cover - scipy is in every test environment
            mod = np.fft
        _FFT_MODULE.append(mod)
    return _FFT_MODULE[0]


def _fft(ext: np.ndarray, k: np.ndarray, fp: FilterProblem) -> np.ndarray:
    dt = np.dtype(fp.dtype)
    KH, KW, OH, OW = fp.KH, fp.KW, fp.OH, fp.OW
    s = fft_shape(fp)
    complex_data = dt.kind == "c"
    f = fft_module()
    fwd, inv = (f.fft2, f.ifft2) if complex_data else (f.rfft2, f.irfft2)
    # correlation with k == convolution with k reversed
    kf = np.ascontiguousarray(k[:, ::-1, ::-1], dtype=dt)
    K = fwd(kf, s=s)
    spec_bytes = 2 * dt.itemsize * s[0] * (s[1] if complex_data else s[1] // 2 + 1)
    chunk = max(1, FFT_CHUNK_BYTES // max(spec_bytes, 1))
    out = np.empty((fp.B, OH, OW), dtype=dt)
    for b0 in range(0, fp.B, chunk):
        b1 = min(fp.B, b0 + chunk)
        X = fwd(ext[b0:b1], s=s)
        X *= K if fp.Bk == 1 else K[b0:b1]
        y = inv(X, s=s)
        out[b0:b1] = y[:, KH - 1 : KH - 1 + OH, KW - 1 : KW - 1 + OW]
    return out


# --------------------------------------------------------------------------------------
# cost model
# --------------------------------------------------------------------------------------


def _n_blocks(B: int, OH: int, OW: int, itemsize: int) -> int:
    target = max(1, BLOCK_BYTES // itemsize)
    if OW > target:
        return B * OH * -(-OW // target)
    if OH * OW >= target:
        return B * -(-OH // max(1, target // max(OW, 1)))
    return -(-B // max(1, target // max(OH * OW, 1)))


def _cost_class(dt: np.dtype) -> str:
    if dt.kind == "c":
        return "c16" if dt.itemsize >= 16 else "c8"
    if dt.kind == "f":
        return "f8" if dt.itemsize >= 8 else "f4"
    return "i8" if dt.itemsize >= 8 else "i4"


def estimate_seconds(fp: FilterProblem, k: Any = None) -> tuple[float, float]:
    """Modelled seconds of ``(direct, fft)`` for ``fp`` on the NumPy backend.

    ``direct = B*OH*OW*T * DIRECT_TAP_S + n_blocks*T * DIRECT_CALL_S`` with ``T``
    the taps (``KH*KW``, or ``KH + KW + 2`` when ``k`` is given and is one
    separable kernel); ``fft = (2*B + Bk) * P*log2(P) * FFT_UNIT_S + FFT_FIXED_S``
    with ``P = PH*PW`` the transform size (:func:`fft_shape`). The FFT estimate is
    ``inf`` where the FFT is not available (integers, booleans, long double).

    >>> import numpy as np
    >>> from gpuconv._filter_args import FilterProblem
    >>> fp = FilterProblem(1, 1024, 1024, 1, 3, 3, 1, 1, 1024, 1024, "fill", 0.0,
    ...                    np.dtype("f4"))
    >>> d, f = estimate_seconds(fp)
    >>> d < f
    True
    """
    dt = np.dtype(fp.dtype)
    cls = _cost_class(dt)
    taps = fp.KH * fp.KW
    if (
        k is not None
        and fp.Bk == 1
        and _separable(fp.KH, fp.KW)
        and rank1_factors(np.asarray(k).reshape(fp.KH, fp.KW)) is not None
    ):
        taps = fp.KH + fp.KW + 2
    blocks = _n_blocks(fp.B, fp.OH, fp.OW, dt.itemsize)
    direct = fp.B * fp.OH * fp.OW * taps * DIRECT_TAP_S[cls]
    direct += blocks * taps * DIRECT_CALL_S
    if dt.kind not in "fc" or dt.itemsize > (8 if dt.kind == "f" else 16):
        return direct, math.inf
    ph, pw = fft_shape(fp)
    n = ph * pw
    fft = (2 * fp.B + fp.Bk) * n * math.log2(max(n, 2)) * FFT_UNIT_S[cls]
    return direct, fft + FFT_FIXED_S


def _finite(a: Any) -> bool:
    a = np.asarray(a)
    return a.dtype.kind not in "fc" or bool(np.isfinite(a).all())


def fft_allowed(fp: FilterProblem, in1: Any = None, k: Any = None) -> bool:
    """Whether ``'auto'`` may take the FFT at all: float32/64 or complex64/128 data
    (not integers or booleans, whose results must stay exact, nor long double),
    and no NaN or infinity in ``in1``, ``k`` or a fill value that is read (the FFT
    would spread them over the whole output; the direct method keeps NumPy's NaN
    mask)."""
    dt = np.dtype(fp.dtype)
    if dt.kind not in "fc" or dt.itemsize > (8 if dt.kind == "f" else 16):
        return False
    pads = fp.pad_top or fp.pad_left or fp.pad_bottom or fp.pad_right
    if fp.boundary == "fill" and pads and not _finite(fp.fillvalue):
        return False
    return (in1 is None or _finite(in1)) and (k is None or _finite(k))


def choose(fp: FilterProblem, in1: Any = None, k: Any = None) -> str:
    """``'direct'`` or ``'fft'`` for ``fp`` by :func:`estimate_seconds`: the FFT
    only where it is modelled to save at least :data:`FFT_MIN_GAIN_S` (so small
    problems are always direct, exact on integer-valued data as SciPy's are), and
    never where :func:`fft_allowed` says no (checked only when the model prefers
    the FFT, since the finiteness check reads the data).

    >>> import numpy as np
    >>> from gpuconv._filter_args import FilterProblem
    >>> tiny = FilterProblem(1, 3, 3, 1, 6, 6, 5, 5, 8, 8, "wrap", 0.0, np.dtype("f8"))
    >>> choose(tiny)  # the FFT would be faster, by microseconds
    'direct'
    """
    direct, fft = estimate_seconds(fp, k)
    if fft + FFT_MIN_GAIN_S < direct and fft_allowed(fp, in1, k):
        return "fft"
    return "direct"
