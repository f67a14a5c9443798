"""gpuconv: 2-D and 1-D convolution, forward and backward, on NumPy or on CUDA.

Public API
----------
convolve2d, correlate2d
    ``scipy.signal.convolve2d``/``correlate2d`` semantics, plus ``axes=`` stacks.
convolve, correlate
    ``numpy.convolve``/``numpy.correlate`` semantics (1-D).
choose_method
    The NumPy backend's direct/FFT cost model for ``convolve2d``.
choose_algorithm
    The CUDA conv2d kernel variant that ``algorithm='auto'`` runs.
conv2d, conv2d_backward, conv2d_grad_input, conv2d_grad_weight, conv2d_matrix
    Deep-learning convolution (NCHW cross-correlation) and its gradients.
use_backend, info
    Backend choice and the report of what is available.
use_precision
    Scoped default of ``precision=`` (``'highest'`` or ``'tf32'``) of the conv2d
    functions.
"""

from __future__ import annotations

__version__ = "0.1.0"

from gpuconv._backend import info, use_backend
from gpuconv._conv import (
    Conv2dGrads,
    conv2d,
    conv2d_backward,
    conv2d_grad_input,
    conv2d_grad_weight,
    conv2d_matrix,
)
from gpuconv._filters import (
    choose_method,
    convolve,
    convolve2d,
    correlate,
    correlate2d,
)
from gpuconv._gpu_conv import choose_algorithm
from gpuconv._precision import use_precision

__all__ = [
    "Conv2dGrads",
    "__version__",
    "choose_algorithm",
    "choose_method",
    "conv2d",
    "conv2d_backward",
    "conv2d_grad_input",
    "conv2d_grad_weight",
    "conv2d_matrix",
    "convolve",
    "convolve2d",
    "correlate",
    "correlate2d",
    "info",
    "use_backend",
    "use_precision",
]
