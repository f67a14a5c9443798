"""Placeholder: NumPy conv2d backend (being written)."""

from __future__ import annotations


def conv2d_forward(x, w, bias, p, algorithm):
    raise NotImplementedError("not written yet")


conv2d_backward_input = conv2d_backward_weight = conv2d_backward_bias = conv2d_forward
