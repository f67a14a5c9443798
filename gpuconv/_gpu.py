"""The CUDA backend: every backend op, on CuPy arrays with gpuconv's own kernels.

Same op signatures as :mod:`gpuconv._cpu`. Importing this module imports CuPy.
"""

from __future__ import annotations

from gpuconv._gpu_conv import (  # noqa: F401
    conv2d_backward_bias,
    conv2d_backward_input,
    conv2d_backward_weight,
    conv2d_forward,
)
from gpuconv._gpu_filter import correlate2d  # noqa: F401
