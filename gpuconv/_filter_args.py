"""The convolve2d/correlate2d/convolve/correlate argument normaliser.

The public filter functions (``gpuconv._filters``) reduce every call (mode,
boundary, fillvalue, flips, conjugation, the 'valid' swap, ``axes`` stacks) to one
:class:`FilterProblem`, a padded 2-D cross-correlation of a stack of images with
one kernel or a stack of kernels, which is all a backend implements:

``out[b, i, j] = sum_{a, c} ext(in1)[b, i + a - pad_top, j + c - pad_left] * k[bk, a, c]``

with ``bk = b`` when ``Bk == B`` and ``bk = 0`` when ``Bk == 1``; ``ext`` extends
``in1`` beyond its edges by ``boundary``: ``'fill'`` (the constant ``fillvalue``),
``'wrap'`` (periodic, ``gpuconv._padding`` mode ``'circular'``) or ``'symm'``
(mirror with the edge repeated, mode ``'symmetric'``). Kernels are already
flipped (true convolution) or conjugated (complex correlation) by the caller.
"""

from __future__ import annotations

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
