"""Border extension as index maps, shared by every backend and every API family.

A padded axis of length ``before + n + after`` is described by an integer index map
``idx``: position ``p`` of the padded axis reads source element ``idx[p]``, or the
fill value where ``idx[p] == -1``. Index maps are built once per call (never per
tap); gradients fold back through the same map (see :func:`fold_matrix`).

Mode names (all APIs map onto these; see docs/semantics.md, "Border names"):

==============  =============  ==============  ===============  ==========
gpuconv         pattern        SciPy signal    np.pad           PyTorch
==============  =============  ==============  ===============  ==========
``'zeros'``     ``00|abcd``    ``fill``        ``constant``     ``zeros``
``'reflect'``   ``dcb|abcd``   --              ``reflect``      ``reflect``
``'replicate'`` ``aaa|abcd``   --              ``edge``         ``replicate``
``'circular'``  ``bcd|abcd``   ``wrap``        ``wrap``         ``circular``
``'symmetric'`` ``dcba|abcd``  ``symm``        ``symmetric``    --
==============  =============  ==============  ===============  ==========

Pads of any size are defined (the pattern repeats, as ``np.pad`` does), so a
kernel larger than the image works in every mode. ``'reflect'`` on an axis of
length 1 repeats the single element (as ``np.pad``).
"""

from __future__ import annotations

import numpy as np

PADDING_MODES = ("zeros", "reflect", "replicate", "circular", "symmetric")


def pad_index(n: int, before: int, after: int, mode: str) -> np.ndarray:
    """Index map of an axis of length ``n`` padded by ``before``/``after``.

    Parameters
    ----------
    n : int
        Source length (``n >= 0``; ``n == 0`` only with ``mode='zeros'``).
    before, after : int
        Non-negative pad sizes.
    mode : str
        One of :data:`PADDING_MODES`.

    Returns
    -------
    numpy.ndarray of int64, shape ``(before + n + after,)``
        Source index of each padded position, ``-1`` for a zero.

    Examples
    --------
    >>> pad_index(4, 3, 2, "symmetric").tolist()
    [2, 1, 0, 0, 1, 2, 3, 3, 2]
    >>> pad_index(3, 2, 2, "zeros").tolist()
    [-1, -1, 0, 1, 2, -1, -1]
    """
    p = np.arange(-before, n + after, dtype=np.int64)
    if mode == "zeros":
        return np.where((p >= 0) & (p < n), p, -1)
    if n <= 0:
        raise ValueError(f"padding mode {mode!r} needs a non-empty axis to extend")
    if mode == "replicate":
        return np.clip(p, 0, n - 1)
    if mode == "circular":
        return np.mod(p, n)
    if mode == "symmetric":
        period = 2 * n
        q = np.mod(p, period)
        return np.where(q < n, q, period - 1 - q)
    if mode == "reflect":
        if n == 1:
            return np.zeros_like(p)
        period = 2 * (n - 1)
        q = np.mod(p, period)
        return np.where(q < n, q, period - q)
    raise ValueError(
        f"padding_mode must be one of {', '.join(repr(m) for m in PADDING_MODES)}, "
        f"got {mode!r}"
    )


def fold_matrix(n: int, before: int, after: int, mode: str, dtype) -> np.ndarray:
    """The 0/1 matrix ``P`` of shape ``(before + n + after, n)`` with ``x_pad = P @ x``.

    The gradient of a padding is its transpose: ``g_x = P.T @ g_pad`` folds the
    border gradient back onto the pixels that the border copied.
    """
    idx = pad_index(n, before, after, mode)
    P = np.zeros((idx.size, n), dtype=dtype)
    rows = np.nonzero(idx >= 0)[0]
    P[rows, idx[rows]] = 1
    return P


def fill_interior(
    H: int, W: int, KH: int, KW: int, pad_top: int, pad_left: int, OH: int, OW: int
) -> tuple[int, int, int, int]:
    """The ``(r0, r1, c0, c1)`` block of outputs that read only image pixels.

    An output ``(i, j)`` of ``out[i, j] = sum_{a, c} ext[i + a - pad_top,
    j + c - pad_left] * k[a, c]`` reads only image pixels when every kernel row and
    column lands inside the image: ``pad_top <= i <= H + pad_top - KH`` and likewise
    for columns; clipped to the output (``0 <= r0 <= r1 <= OH``, ``0 <= c0 <= c1 <=
    OW``; an empty block when no output does).

    >>> fill_interior(10, 10, 3, 3, 1, 1, 10, 10)
    (1, 9, 1, 9)
    """
    r0 = min(max(pad_top, 0), OH)
    r1 = max(min(H + pad_top - KH + 1, OH), r0)
    c0 = min(max(pad_left, 0), OW)
    c1 = max(min(W + pad_left - KW + 1, OW), c0)
    return r0, r1, c0, c1


def fill_correction_regions(
    H: int, W: int, KH: int, KW: int, pad_top: int, pad_left: int, OH: int, OW: int
) -> list[tuple[int, int, int, int]]:
    """The ``(r0, r1, c0, c1)`` output blocks where a correlation reads the border.

    Everything outside :func:`fill_interior`'s block: the top and bottom bands on
    all columns, the left and right bands of the middle rows, as at most four
    disjoint blocks.

    >>> fill_correction_regions(10, 10, 3, 3, 1, 1, 10, 10)
    [(0, 1, 0, 10), (9, 10, 0, 10), (1, 9, 0, 1), (1, 9, 9, 10)]
    """
    r0, r1, c0, c1 = fill_interior(H, W, KH, KW, pad_top, pad_left, OH, OW)
    blocks = [(0, r0, 0, OW), (r1, OH, 0, OW), (r0, r1, 0, c0), (r0, r1, c1, OW)]
    return [b for b in blocks if b[1] > b[0] and b[3] > b[2]]


def fill_value(fp) -> np.generic | None:
    """The fill value a correction adds, in the wide type (float64, or complex128
    for complex ``fp.dtype``) after a cast to ``fp.dtype``; ``None`` when there is
    nothing to add (``fp.boundary != 'fill'`` or the cast value is 0).

    >>> from gpuconv._filter_args import FilterProblem
    >>> def fp(v, dt):
    ...     return FilterProblem(1, 2, 2, 1, 2, 2, 1, 1, 2, 2, "fill", v, np.dtype(dt))
    >>> fill_value(fp(2.5, "float32")), fill_value(fp(-0.0, "float32"))
    (np.float64(2.5), None)
    >>> fill_value(fp(1 + 2j, "complex64"))
    np.complex128(1+2j)
    """
    dt = np.dtype(fp.dtype)
    if fp.boundary != "fill":
        return None
    fill = np.asarray(fp.fillvalue).astype(dt).reshape(-1)[0]
    if fill == 0:
        return None
    return np.dtype(np.complex128 if dt.kind == "c" else np.float64).type(fill)


def fill_tables(k, xp=np, dtype=None):
    """The summed-area tables of the kernels ``k (Bk, KH, KW)`` that
    :func:`add_fill_correction` reads ``s_out`` from, in float64 (complex128 for
    complex ``k``), C-contiguous: ``(above, below, left, right)`` with ``above[b,
    a]`` the taps of rows ``< a``, ``below[b, a]`` those of rows ``>= a`` (both
    ``(Bk, KH + 1)``), ``left[b, a, c]`` those of rows ``< a`` and columns ``< c``,
    ``right[b, a, c]`` those of rows ``< a`` and columns ``>= c`` (both ``(Bk, KH +
    1, KW + 1)``), complex when ``dtype`` (default ``k.dtype``) is. The FFT path's
    ``fft_crop`` kernel reads the same tables.

    >>> above, below, left, right = fill_tables(np.arange(1.0, 5.0).reshape(1, 2, 2))
    >>> above[0].tolist(), below[0].tolist(), right[0, 2].tolist()
    ([0.0, 3.0, 10.0], [10.0, 7.0, 0.0], [10.0, 6.0, 0.0])
    """
    Bk, KH, KW = k.shape
    kind = np.dtype(k.dtype if dtype is None else dtype).kind
    wide = np.dtype(np.complex128 if kind == "c" else np.float64)
    kw = k.astype(wide)
    rowsum = kw.sum(axis=2)  # (Bk, KH)
    above = xp.zeros((Bk, KH + 1), dtype=wide)  # above[a]: taps of rows < a
    above[:, 1:] = xp.cumsum(rowsum, axis=1)
    below = xp.zeros((Bk, KH + 1), dtype=wide)  # below[a]: taps of rows >= a
    below[:, :KH] = xp.cumsum(rowsum[:, ::-1], axis=1)[:, ::-1]
    left = xp.zeros((Bk, KH + 1, KW + 1), dtype=wide)  # rows < a, columns < c
    left[:, 1:, 1:] = xp.cumsum(xp.cumsum(kw, axis=1), axis=2)
    right = xp.zeros((Bk, KH + 1, KW + 1), dtype=wide)  # rows < a, columns >= c
    right[:, 1:, :KW] = xp.cumsum(xp.cumsum(kw[:, :, ::-1], axis=2)[:, :, ::-1], axis=1)
    return above, below, left, right


def times_fill(fill, s, xp=np):
    """``fill * s`` in the wide type, each product rounded on its own: for complex
    ``(fr*sr - fi*si, fr*si + fi*sr)`` (NumPy's own complex product contracts to
    FMAs where the CPU has them, so its last bit depends on the machine; this one
    does not, and the ``fft_crop`` kernel computes the same)."""
    if np.dtype(s.dtype).kind != "c":
        return fill * s
    fr, fi = np.float64(fill.real), np.float64(fill.imag)
    p = xp.empty(s.shape, dtype=s.dtype)
    p.real = fr * s.real - fi * s.imag
    p.imag = fr * s.imag + fi * s.real
    return p


def add_fill_correction(out, k, fp, xp=np):
    """Turn a correlation of the zero-extended image into the fill-extended one.

    By linearity ``corr(ext_fill(x), k) = corr(ext_0(x), k) + fill * s_out``, where
    ``s_out(i, j) = sum(k) - s_in(i, j)`` and ``s_in(i, j)`` is the sum of the
    kernel taps that land inside the image for output ``(i, j)``: a rectangle of
    ``k`` (rows ``a0 <= a < a1`` with ``0 <= i + a - pad_top < H``, columns
    ``c0 <= c < c1`` likewise). ``s_out`` is read from summed-area tables of ``k``
    in float64/complex128 (:func:`fill_tables`) as the taps above ``a0`` plus those
    below ``a1`` (row prefix and suffix sums) plus the rows ``a0..a1`` left of
    ``c0`` and right of ``c1`` (2-D prefix sums from the left and from the right
    corner), so each output gets its correction in O(1) with a rounding error
    relative to the taps that read the fill value only (never to all of ``k``), and
    only the border blocks of :func:`fill_correction_regions` are touched
    (``s_out = 0`` elsewhere). Per output, in the wide type: ``s_out = above[a0] +
    below[a1]``, ``s_out += left[a1, q0] - left[a0, q0]``, ``s_out += right[a1, q1]
    - right[a0, q1]`` (``q0``, ``q1`` the columns' ``c0``, ``c1``), then ``out +
    fill * s_out`` (:func:`times_fill`) rounded once to ``fp.dtype``; the CUDA FFT
    path's ``fft_crop`` kernel (``cuda/fft_crop.cu``) evaluates exactly this. The
    FFT paths use this so that the transform only ever sees the zero-extended
    image: an FFT's error is relative to the largest value it transforms, and a
    large fill value would otherwise swamp every output.

    Parameters
    ----------
    out : array, shape ``(B, OH, OW)``, dtype ``fp.dtype``
        ``corr(ext_0(x), k)``; corrected in place (each corrected element is
        summed in float64/complex128 and rounded once) and returned.
    k : array, shape ``(Bk, KH, KW)``
        The kernels of ``fp`` (on the same device as ``out``).
    fp : FilterProblem
        The problem; nothing is done unless ``fp.boundary == 'fill'`` and the
        fill value (cast to ``fp.dtype``) is not 0 (:func:`fill_value`).
    xp : module
        The array module of ``out`` and ``k`` (NumPy, CuPy).

    Examples
    --------
    >>> from gpuconv._filter_args import FilterProblem
    >>> fp = FilterProblem(1, 2, 2, 1, 2, 2, 1, 1, 2, 2, "fill", 5.0, np.dtype("f8"))
    >>> zero_ext = np.array([[[1.0, 3.0], [4.0, 10.0]]])  # x = [[1, 2], [3, 4]]
    >>> add_fill_correction(zero_ext, np.ones((1, 2, 2)), fp)[0]
    array([[16., 13.],
           [14., 10.]])
    """
    fill = fill_value(fp)
    if fill is None:
        return out
    dt = np.dtype(fp.dtype)
    _, KH, KW = k.shape
    pt, pl = fp.pad_top, fp.pad_left
    above, below, left, right = fill_tables(k, xp, dt)
    for r0, r1, c0, c1 in fill_correction_regions(
        fp.H, fp.W, KH, KW, pt, pl, fp.OH, fp.OW
    ):
        i = np.arange(r0, r1)
        j = np.arange(c0, c1)
        a0 = xp.asarray(np.clip(pt - i, 0, KH))
        a1 = xp.asarray(np.clip(fp.H + pt - i, 0, KH))
        q0 = xp.asarray(np.clip(pl - j, 0, KW))
        q1 = xp.asarray(np.clip(fp.W + pl - j, 0, KW))
        s_out = (above[:, a0] + below[:, a1])[:, :, None]  # (Bk, r1 - r0, 1)
        s_out = s_out + (left[:, a1, :] - left[:, a0, :])[:, :, q0]
        s_out = s_out + (right[:, a1, :] - right[:, a0, :])[:, :, q1]
        block = out[:, r0:r1, c0:c1]
        out[:, r0:r1, c0:c1] = (block + times_fill(fill, s_out, xp)).astype(dt)
    return out
