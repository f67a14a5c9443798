"""Border extension as index maps, shared by every backend and every API family.

A padded axis of length ``before + n + after`` is described by an integer index map
``idx``: position ``p`` of the padded axis reads source element ``idx[p]``, or the
fill value where ``idx[p] == -1``. Index maps are built once per call (never per
tap); gradients fold back through the same map (see :func:`fold_matrix`).

Mode names (all APIs map onto these; see the README's boundary table):

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
