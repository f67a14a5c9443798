"""Placeholder: the SciPy/NumPy filter API (being written)."""

from __future__ import annotations


def _todo(*args, **kwargs):
    raise NotImplementedError("not written yet")


convolve2d = correlate2d = convolve = correlate = choose_method = _todo
