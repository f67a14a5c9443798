"""Routes of ``algorithm='auto'`` to the NHWC kernels, emulated on the CPU: the
decision of ``gpuconv.choose_algorithm`` is the one the ops take where the
problem as the kernels see it differs from the user's (a non-zero padding mode:
the input gradient's GEMM rows are the padded input's pixels); the NHWC input
gradient's NaN from an infinite weight on the padded taps (as ``tiled_regblock``).

Small integers: every product and partial sum is exact in float16, TF32 and
float32, so the results equal the float64 NumPy backend's (rounded once to the
result's dtype).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import gpuconv
from gpuconv import _gpu_conv, _plan_conv
from tests._cuda_conv_cases import problem, random_inputs
from tests._emu_helpers import EMULATED, prepared_device

pytestmark = [*EMULATED, pytest.mark.usefixtures("poisoned_conv_outputs")]

SOURCES = ("conv2d_forward.cu", "conv2d_backward_input.cu", "conv2d_mma.cu",
           "conv2d_pad.cu", "convert.cu")


@pytest.fixture(scope="module")
def dev():
    return prepared_device(SOURCES)


@pytest.mark.parametrize("dtype,precision", [("float16", None), ("float32", "tf32")])
def test_tensor_core_choice_on_the_padded_problem(dtype, precision, dev, monkeypatch):
    """A reflect-padded stride-1 input gradient whose 5 x 5 input has fewer GEMM
    rows (25) than the NHWC pipeline's floor (lowered to 40 here) and whose padded
    7 x 7 input has more (49): ``choose_algorithm`` decides on the padded problem
    ('mma_nhwc'), and so does the op (it decided on the unpadded one and ran the
    FP32 kernels)."""
    monkeypatch.setattr(_plan_conv, "NHWC_MIN_PIXELS", 40)
    xs, ws, kw = (1, 32, 5, 5), (32, 32, 3, 3), {"padding": 1,
                                                 "padding_mode": "reflect"}
    p = problem(xs, ws, dtype, kw, bias=False)
    if precision is not None:
        p = dataclasses.replace(p, precision=precision)
    _, w, _, gy = random_inputs(np.random.default_rng(3), p, dtype, integer=True)
    assert gpuconv.choose_algorithm(xs, ws, "backward_input", dtype=dtype,
                                    precision=precision, **kw) == "mma_nhwc"
    n0 = len(dev.launches)
    got = _gpu_conv.conv2d_backward_input(gy, w, p, "auto", device=dev)
    launched = [k for _, k, *_ in dev.launches[n0:]]
    assert any(k.startswith("conv2d_forward_mma_nhwc<") for k in launched), launched
    want = gpuconv.conv2d_grad_input(xs, w.astype(np.float64), gy.astype(np.float64),
                                     backend="numpy", **kw)
    np.testing.assert_array_equal(got, want.astype(got.dtype))


def test_infinite_weight_in_the_nhwc_input_gradient(dev):
    """The NHWC input gradient is the forward pass of the zero-padded ``gy``: an
    infinite weight gives ``0*inf = NaN`` on the padded taps, exactly where
    ``tiled_regblock``'s does (docs/cuda.md, Determinism), and NaN/inf everywhere
    the NumPy backend has them."""
    xs, ws, kw = (3, 20, 9, 7), (72, 20, 3, 3), {"padding": 1}
    p = problem(xs, ws, "float32", kw, bias=False)
    _, w, _, gy = random_inputs(np.random.default_rng(5), p, "float32")
    w[3, 5, 0, 0] = np.inf
    w[70, 19, 2, 1] = np.nan
    n0 = len(dev.launches)
    got = _gpu_conv.conv2d_backward_input(gy, w, p, "nhwc", device=dev)
    assert any(k.startswith("conv2d_forward_nhwc<float, ")
               for _, k, *_ in dev.launches[n0:])
    sliced = _gpu_conv.conv2d_backward_input(gy, w, p, "tiled_regblock", device=dev)
    want = gpuconv.conv2d_grad_input(xs, w.astype(np.float64), gy.astype(np.float64),
                                     backend="numpy", **kw)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(sliced))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    assert (np.isnan(got) >= np.isnan(want)).all()
    assert np.isnan(got).sum() > np.isnan(want).sum()  # the padded taps
