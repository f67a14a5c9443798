"""The NumPy backend: every op a backend implements, on the CPU.

Ops receive validated, non-empty problems (``gpuconv._conv_args.Conv2dProblem``,
``gpuconv._filter_args.FilterProblem``) and arrays already in the compute dtype.
"""

from __future__ import annotations

from gpuconv._cpu_conv import (  # noqa: F401
    conv2d_backward_bias,
    conv2d_backward_input,
    conv2d_backward_weight,
    conv2d_forward,
)
from gpuconv._cpu_filter import correlate2d  # noqa: F401
