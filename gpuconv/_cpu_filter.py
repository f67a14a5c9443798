"""Placeholder: NumPy filter backend (being written)."""

from __future__ import annotations


def correlate2d(in1, k, fp):
    raise NotImplementedError("not written yet")
