"""The awkward-case grid of the CUDA conv2d kernels, shared by the emulated tests
(``test_emulated_conv.py``, CPU) and the GPU tests (``test_gpu_conv.py``).

Each case is ``(id, x_shape, w_shape, conv2d keyword arguments)``. Together they
cover: output sizes at the ``tiled`` tile (32 x 8) plus and minus one; GEMM rows and
columns at the ``tiled_regblock`` tiles (64/128 rows, 32/64/128 columns) plus and
minus one, with tiles that straddle images; even and odd kernels, 1x1, a kernel
larger than the input; stride, dilation, groups (and depthwise), asymmetric
padding, ``'same'``; every padding mode, including pads larger than the image.
"""

from __future__ import annotations

import dataclasses

import numpy as np

import gpuconv
from gpuconv import _cpu_conv, _gpu_conv, _plan_conv
from gpuconv._conv_args import Conv2dProblem, normalize_conv2d

VARIANTS = ("naive", "tiled", "tiled_regblock")
REAL_DTYPES = (np.float32, np.float64)
PASSES = ("forward", "backward_input")

CASES: list[tuple[str, tuple[int, ...], tuple[int, ...], dict]] = [
    ("basic3x3", (2, 3, 9, 10), (4, 3, 3, 3), {"padding": 1}),
    ("tile_plus1", (1, 2, 9, 33), (3, 2, 3, 3), {"padding": 1}),
    ("tile_minus1", (1, 2, 7, 31), (3, 2, 3, 3), {"padding": 1}),
    ("even_kernel_same", (2, 2, 8, 7), (3, 2, 2, 4), {"padding": "same"}),
    ("one_by_one", (3, 5, 6, 7), (9, 5, 1, 1), {}),
    ("kernel_gt_input", (1, 2, 3, 2), (2, 2, 5, 4), {"padding": (2, 2)}),
    ("stride", (2, 3, 11, 13), (4, 3, 3, 2), {"stride": (2, 3), "padding": 1}),
    ("dilation", (1, 2, 12, 9), (3, 2, 3, 3), {"dilation": (2, 3), "padding": (2, 1)}),
    ("groups", (2, 6, 7, 8), (9, 2, 3, 3), {"groups": 3, "padding": 1}),
    ("depthwise_strided", (2, 4, 9, 9), (4, 1, 3, 3),
     {"groups": 4, "padding": 1, "stride": 2}),
    ("asym_pad", (1, 3, 6, 9), (2, 3, 3, 4), {"padding": (2, 0, 1, 3)}),
    # forward GEMM: M = 3*7*8 = 168 (> 128 + 1, tiles straddle images), NG = 33
    ("regblock_fwd_tails", (3, 5, 6, 7), (33, 5, 2, 2), {"padding": (1, 0, 0, 1)}),
    # input-gradient GEMM: M = 2*8*8 = 128 +- tails per image, NG = 65, KR = 5*9
    ("regblock_dgrad_tails", (2, 65, 8, 8), (5, 65, 3, 3), {"padding": 1}),
    # tiled_regblock split-K (few blocks, many slices; tail channel chunks): forward
    # 5 chunks (last of 5 channels) x 9 taps in 2 splits; input gradient 9 chunks
    # (last of 6) x 9 taps in 5 splits
    ("split_k_fwd", (2, 37, 5, 6), (24, 37, 3, 3), {"padding": 1, "stride": (1, 2)}),
    ("split_k_dgrad", (1, 20, 6, 5), (70, 20, 3, 3), {"padding": 1}),
    # a stem-like strided input gradient of 3 channels (tiled_regblock: 4 output
    # phases, the narrow 128 x 16 tile)
    ("few_channel_strided", (1, 3, 11, 12), (40, 3, 7, 7), {"stride": 2, "padding": 3}),
    ("everything", (2, 4, 13, 12), (6, 2, 3, 2),
     {"stride": (3, 2), "dilation": (2, 2), "groups": 2, "padding": (1, 2, 0, 1)}),
    ("reflect", (2, 3, 7, 8), (4, 3, 3, 4),
     {"padding": (2, 1, 3, 0), "padding_mode": "reflect"}),
    ("replicate", (2, 3, 7, 8), (4, 3, 3, 4),
     {"padding": (2, 1, 3, 0), "padding_mode": "replicate", "stride": 2}),
    ("circular", (1, 2, 5, 6), (3, 2, 3, 3),
     {"padding": (1, 2, 2, 1), "padding_mode": "circular", "dilation": 2}),
    ("symmetric", (2, 2, 6, 5), (2, 2, 2, 3),
     {"padding": 2, "padding_mode": "symmetric"}),
    ("circular_pad_gt_input", (1, 2, 3, 2), (2, 1, 5, 5),
     {"padding": 4, "padding_mode": "circular", "groups": 2}),
    ("symmetric_pad_gt_input", (1, 1, 2, 3), (2, 1, 4, 3),
     {"padding": (5, 3, 4, 4), "padding_mode": "symmetric"}),
]

CASE_IDS = [c[0] for c in CASES]


def problem(x_shape, w_shape, dtype, kwargs, bias: bool = True) -> Conv2dProblem:
    """The validated problem of a case (what the public API would build)."""
    return normalize_conv2d(
        x_shape, w_shape, [np.dtype(dtype)],
        bias_shape=(w_shape[0],) if bias else None, **kwargs,
    )


def as_dtype(p: Conv2dProblem, dtype) -> Conv2dProblem:
    dt = np.dtype(dtype)
    return dataclasses.replace(p, dtype=dt, compute_dtype=dt)


def random_inputs(rng, p: Conv2dProblem, dtype, integer: bool = False):
    """``(x, w, bias, gy)`` of ``dtype``: standard normal, or small integers in
    [-3, 3] (every partial sum then exact in float32 and float64)."""
    shapes = (p.x_shape, p.w_shape, (p.K,), p.y_shape)
    dt = np.dtype(dtype)
    out = []
    for s in shapes:
        if integer:
            a = rng.integers(-3, 4, size=s).astype(dt)
        elif dt.kind == "c":
            a = (rng.standard_normal(s) + 1j * rng.standard_normal(s)).astype(dt)
        else:
            a = rng.standard_normal(s).astype(dt)
        out.append(a)
    return tuple(out)


def reference(pass_name: str, p: Conv2dProblem, x, w, bias, gy):
    """The NumPy backend's result in float64 (complex128 for complex inputs)."""
    wide = np.complex128 if np.dtype(p.compute_dtype).kind == "c" else np.float64
    q = as_dtype(p, wide)
    if pass_name == "forward":
        return _cpu_conv.conv2d_forward(
            x.astype(wide), w.astype(wide), None if bias is None else bias.astype(wide),
            q, "auto",
        )
    if pass_name == "backward_weight":
        return _cpu_conv.conv2d_backward_weight(gy.astype(wide), x.astype(wide), q,
                                                "auto", False)[0]
    return _cpu_conv.conv2d_backward_input(gy.astype(wide), w.astype(wide), q, "auto")


def api_pass(pass_name: str, x, w, b, gy, kw, algorithm="auto", backend=None):
    """One pass of the public API: ``y``, ``gx``, ``gw`` or (``'bias'``) ``gb``."""
    opts = dict(kw, algorithm=algorithm, backend=backend)
    if pass_name == "forward":
        return gpuconv.conv2d(x, w, b, **opts)
    if pass_name == "backward_input":
        return gpuconv.conv2d_grad_input(tuple(x.shape), w, gy, **opts)
    if pass_name == "backward_weight":
        return gpuconv.conv2d_grad_weight(x, tuple(w.shape), gy, **opts)
    return gpuconv.conv2d_backward(gy, x, w, needs=("bias",), **opts).gb


def spy_choose_algorithm(monkeypatch) -> list[tuple[str, str]]:
    """Spy on ``_plan_conv.choose_algorithm``: the returned list collects the
    ``(pass name, variant chosen)`` of every decision."""
    calls: list[tuple[str, str]] = []
    real = _plan_conv.choose_algorithm

    def spy(p, name):
        calls.append((name, real(p, name)))
        return calls[-1][1]

    monkeypatch.setattr(_plan_conv, "choose_algorithm", spy)
    return calls


def run_op(pass_name: str, p: Conv2dProblem, algorithm: str, x, w, bias, gy, dev):
    """One CUDA backend op on ``dev`` into a NaN-poisoned ``out`` buffer (an element
    a kernel forgets to write stays NaN): ``y``, ``gx`` or ``gw`` (no bias gradient)."""
    if pass_name == "backward_weight":
        out = np.full(p.w_shape, np.nan, dtype=p.compute_dtype)
        return _gpu_conv.conv2d_backward_weight(gy, x, p, algorithm, False,
                                                device=dev, out=out)[0]
    if pass_name == "forward":
        out = np.full(p.y_shape, np.nan, dtype=p.compute_dtype)
        return _gpu_conv.conv2d_forward(x, w, bias, p, algorithm, device=dev, out=out)
    out = np.full(p.x_shape, np.nan, dtype=p.compute_dtype)
    return _gpu_conv.conv2d_backward_input(gy, w, p, algorithm, device=dev, out=out)


def terms(pass_name: str, p: Conv2dProblem) -> int:
    """Products summed into one output element (for the tolerance)."""
    if pass_name == "forward":
        return p.Cg * p.KH * p.KW
    return p.Kg * p.KH * p.KW


def layouts(a: np.ndarray, layout: str, xp=np):
    """``a`` (any xp array) in a non-contiguous layout with the same values."""
    if layout == "C":
        return a
    if layout == "F":
        return xp.asfortranarray(a)
    if layout == "strided":
        big = xp.zeros(tuple(2 * s for s in a.shape), dtype=a.dtype)
        view = big[tuple(slice(None, None, 2) for _ in a.shape)]
        view[...] = a
        return view
    if layout == "negative":
        flipped = xp.ascontiguousarray(a[..., ::-1])
        return flipped[..., ::-1]
    raise ValueError(layout)


# --- the weight-gradient kernel test files (tests/test_emulated_wgrad_*.py) -------


def wgrad_inputs(case, seed, integer=False, dtype=np.float32):
    """``(p, kwargs, x, gy)`` of a ``(id, x_shape, w_shape, kwargs)`` case."""
    _, xs, ws, kw = case
    p = problem(xs, ws, dtype, kw)
    x, _, _, gy = random_inputs(np.random.default_rng(seed), p, dtype, integer=integer)
    return p, kw, x, gy


def run_wgrad(p: Conv2dProblem, x, gy, dev, algorithm: str, with_bias=False):
    """``(gw, gb, kernels launched)`` of the weight-gradient op on ``dev``."""
    n0 = len(dev.launches)
    gw, gb = _gpu_conv.conv2d_backward_weight(gy, x, p, algorithm, with_bias,
                                              device=dev)
    return gw, gb, [k for _, k, *_ in dev.launches[n0:]]


def wide_wgrad(x, w_shape, gy, kw, absolute=False):
    """The float64 NumPy backend's weight gradient (of ``|x|`` and ``|gy|`` with
    ``absolute``: the magnitudes of the product bound)."""
    f = (lambda a: np.abs(a.astype(np.float64))) if absolute else (
        lambda a: a.astype(np.float64))
    return gpuconv.conv2d_grad_weight(f(x), w_shape, f(gy), backend="numpy", **kw)
