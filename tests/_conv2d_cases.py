"""Small conv2d geometries shared by the NumPy-backend conv2d tests, and the
fixture that picks the backend's internal path.

Each case is ``(id, x_shape, w_shape, kwargs)``; together they cover odd and even
kernels, 1x1, a kernel larger than the input (padding makes it valid), prime
sizes, stride, dilation, groups (incl. depthwise), asymmetric padding, 'same'
with stride 1 and > 1, pads larger than the image and 1-pixel axes.
"""

from __future__ import annotations

import numpy as np
import pytest

from gpuconv import _cpu_conv, _cpu_gemm

MODES = ("zeros", "reflect", "replicate", "circular", "symmetric")

GEOMETRIES = [
    ("3x3-pad1", (2, 3, 6, 7), (4, 3, 3, 3), dict(padding=1)),
    ("even-2x2", (2, 2, 5, 6), (3, 2, 2, 2), dict()),
    ("even-4x2-same", (1, 2, 6, 5), (3, 2, 4, 2), dict(padding="same")),
    ("1x1", (3, 4, 5, 5), (2, 4, 1, 1), dict()),
    ("1x1-stride2-pad1", (1, 3, 7, 6), (2, 3, 1, 1), dict(stride=2, padding=1)),
    ("kernel>input", (1, 2, 3, 2), (2, 2, 5, 4), dict(padding=(2, 1))),
    ("prime", (1, 3, 7, 11), (5, 3, 3, 5), dict(padding=(1, 2))),
    ("stride-2x3", (2, 2, 9, 10), (3, 2, 3, 2), dict(stride=(2, 3), padding=1)),
    ("dilation-2x1", (1, 2, 8, 7), (2, 2, 3, 3), dict(dilation=(2, 1), padding=(2, 1))),
    ("groups2", (2, 4, 6, 5), (6, 2, 3, 3), dict(groups=2, padding=1)),
    ("depthwise", (1, 3, 6, 6), (6, 1, 3, 3), dict(groups=3, padding=1)),
    ("asym-4tuple", (1, 2, 5, 6), (2, 2, 3, 3), dict(padding=(0, 2, 1, 3))),
    ("same-stride2", (1, 2, 7, 8), (2, 2, 3, 3), dict(padding="same", stride=2)),
    (
        "same-stride-even-dil",
        (1, 2, 9, 7),
        (2, 2, 4, 2),
        dict(padding="same", stride=(2, 3), dilation=(1, 2)),
    ),
    ("same-dilation2", (1, 2, 7, 7), (2, 2, 3, 2), dict(padding="same", dilation=2)),
    (
        "stride-dil-groups",
        (2, 4, 9, 8),
        (4, 2, 3, 2),
        dict(stride=2, dilation=(1, 2), groups=2, padding=(1, 2)),
    ),
    ("pad>image", (1, 1, 3, 2), (1, 1, 3, 3), dict(padding=4)),
    ("1-pixel-rows", (1, 2, 1, 5), (2, 2, 1, 3), dict(padding=(0, 1))),
    ("1-pixel-image-pad", (1, 1, 1, 1), (2, 1, 3, 2), dict(padding=(1, 1, 1, 0))),
]

GEOMETRY_IDS = [g[0] for g in GEOMETRIES]


def geometry(case_id):
    return next(g for g in GEOMETRIES if g[0] == case_id)


# Which internal path of the NumPy backend computes. 'default' as shipped (these
# small shapes have C/groups < 16: taps stacked); 'per-tap' forces one GEMM per
# tap on the frame; 'per-tap-numpy' also forces NumPy's matmul + add instead of
# BLAS beta=1; 'per-tap-blocks' forces blocks of a few frame rows (block edges
# inside and across images); 'windows' forces one GEMM per tap on copied
# windows; and 'stacked-chunks' forces chunks of a few columns.
PATHS = (
    "default",
    "per-tap",
    "per-tap-numpy",
    "per-tap-blocks",
    "windows",
    "stacked-chunks",
)


@pytest.fixture(params=PATHS)
def backend_path(request, monkeypatch):
    if request.param.startswith("per-tap") or request.param == "windows":
        monkeypatch.setattr(_cpu_conv, "_STACK_BELOW", 0)
    if request.param == "per-tap-blocks":
        monkeypatch.setattr(_cpu_conv, "_CHUNK_BYTES", 1500)
    never = {k: float("inf") for k in _cpu_conv._WINDOWS_ABOVE}
    always = {k: -1.0 for k in _cpu_conv._WINDOWS_ABOVE}
    windows = always if request.param == "windows" else never
    monkeypatch.setattr(_cpu_conv, "_WINDOWS_ABOVE", windows)
    if request.param == "per-tap-numpy":
        _cpu_gemm._load()
        monkeypatch.setitem(_cpu_gemm._state, "funcs", None)
    if request.param == "stacked-chunks":
        monkeypatch.setattr(_cpu_conv, "_STACK_BELOW", 1 << 30)
        monkeypatch.setattr(_cpu_conv, "_CHUNK_BYTES", 200)
    return request.param


def random_array(rng, shape, dtype=np.float64):
    """Standard normal data of ``dtype`` (complex: independent real/imag parts)."""
    dt = np.dtype(dtype)
    a = rng.standard_normal(shape)
    if dt.kind == "c":
        a = a + 1j * rng.standard_normal(shape)
    return a.astype(dt)


def conv_terms(w_shape) -> int:
    """Products summed into one forward output (for the tolerance table)."""
    _, Cg, KH, KW = w_shape
    return Cg * KH * KW
