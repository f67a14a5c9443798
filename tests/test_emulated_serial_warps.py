"""Every kernel family once more with the other end of GPU timing: one warp runs to
its barrier before the next starts (``warp_schedule='serial'``) and ``cp.async``
copies land at their issue (``cp_async='eager'``), in both thread orders.

A kernel whose threads are ordered only by ``__syncthreads`` and (for the
tensor-core kernels) warp-wide operations computes the same bits under any
schedule: the result must equal the default (lockstep, deferred copies) emulator's
bit for bit. A missing barrier (a shared tile overwritten while another warp still
reads it, a stage refilled too early) changes the bits under one of the two, so
this is a race detector for the conv2d (FP32, Winograd, col2im, the NCHW and NHWC
tensor-core kernels, the FP32 NHWC kernels, the unfolded weight gradient) and
filter (2-D and 1-D) kernels on representative awkward cases; the per-family test
files hold them to their references.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from gpuconv import _gpu_conv, _gpu_filter
from gpuconv._emulate import EmulatedDevice
from tests._cuda_conv_cases import CASE_IDS, CASES, problem, random_inputs
from tests._emu_helpers import EMULATED, prepared_device
from tests._filter_cases import problem as filter_problem
from tests._filter_cases import random_values

pytestmark = EMULATED

CONV_SOURCES = ("conv2d_forward.cu", "conv2d_backward_input.cu",
                "conv2d_backward_weight.cu", "conv2d_pad.cu", "conv2d_mma.cu",
                "conv2d_winograd.cu", "convert.cu")
FILTER_SOURCES = ("filter2d.cu", "filter1d.cu")


@pytest.fixture(scope="module")
def lockstep():
    return prepared_device(CONV_SOURCES + FILTER_SOURCES)


@pytest.fixture(scope="module", params=["ascending", "descending"])
def serial(request):
    d = EmulatedDevice(sanitize=False, thread_order=request.param,
                       warp_schedule="serial", cp_async="eager")
    d.prepare(CONV_SOURCES + FILTER_SOURCES)
    return d


def _conv(pass_name, p, algorithm, x, w, b, gy, dev):
    if pass_name == "forward":
        return _gpu_conv.conv2d_forward(x, w, b, p, algorithm, device=dev)
    if pass_name == "backward_input":
        return _gpu_conv.conv2d_backward_input(gy, w, p, algorithm, device=dev)
    return _gpu_conv.conv2d_backward_weight(gy, x, p, algorithm, True, device=dev)[0]


def _same_bits(a, b):
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(a.view(np.uint8), b.view(np.uint8))


# (case of tests/_cuda_conv_cases.py or an explicit one, precision, algorithms)
NHWC_TAILS = ("nhwc_tails", (3, 64, 9, 7), (96, 64, 3, 3), {"padding": 1})
CONV_RUNS = [
    ("everything", "highest", ("tiled", "tiled_regblock")),
    ("regblock_dgrad_tails", "highest", ("tiled_regblock",)),
    ("basic3x3", "highest", ("winograd", "winograd4")),
    ("few_channel_strided", "highest", ("tiled_regblock",)),
    ("everything", "tf32", ("mma",)),
    ("regblock_dgrad_tails", "f16", ("mma",)),
    (NHWC_TAILS, "tf32", ("mma_nhwc",)),
    (NHWC_TAILS, "f16", ("mma_nhwc",)),
    # the FP32 NHWC kernels (op level 'nhwc', cp.async): 128-wide tiles, then the
    # 64-wide forward and 64-row weight-gradient tiles with a channel tail
    (NHWC_TAILS, "highest", ("nhwc",)),
    (("nhwc_narrow", (2, 20, 7, 9), (40, 20, 3, 3), {"padding": 1}), "highest",
     ("nhwc",)),
    # the weight gradient along the pixels (op level 'unfold', cp.async): the stem's
    # geometry, two row tiles and three column tiles with tails
    (("unfold_stem", (2, 3, 16, 16), (70, 3, 7, 7), {"stride": 2, "padding": 3}),
     "highest", ("unfold",)),
]


@pytest.mark.parametrize(
    ("case", "precision", "algorithms"), CONV_RUNS,
    ids=[f"{c if isinstance(c, str) else c[0]}-{pr}" for c, pr, _ in CONV_RUNS])
@pytest.mark.parametrize("pass_name", ["forward", "backward_input",
                                       "backward_weight"])
def test_conv_kernels_schedule_independent(case, precision, algorithms, pass_name,
                                           lockstep, serial):
    _, xs, ws, kw = CASES[CASE_IDS.index(case)] if isinstance(case, str) else case
    dtype = np.float16 if precision == "f16" else np.float32
    p = problem(xs, ws, dtype, kw)
    if precision == "tf32":
        p = dataclasses.replace(p, precision="tf32")
    x, w, b, gy = random_inputs(np.random.default_rng(3), p, dtype)
    x, w, gy = (a.astype(np.float32) for a in (x, w, gy))
    b = b.astype(np.float32)
    for algorithm in algorithms:
        n0 = len(serial.launches)
        got = _conv(pass_name, p, algorithm, x, w, b, gy, serial)
        assert len(serial.launches) > n0
        if algorithm in ("nhwc", "mma_nhwc"):  # every pass of these cases applies
            assert any("_nhwc<" in k for _, k, *_ in serial.launches[n0:])
        if algorithm == "unfold" and pass_name == "backward_weight":
            assert any("_unfold<" in k for _, k, *_ in serial.launches[n0:])
        _same_bits(got, _conv(pass_name, p, algorithm, x, w, b, gy, lockstep))


# (B, H, W, Bk, KH, KW, pt, pl, OH, OW, boundary, dtype): 2-D tiles off by one, a
# stack, the 1-D kernel (H = KH = 1)
FILTER_RUNS = [
    (1, 37, 70, 1, 3, 3, 1, 1, 37, 70, "fill", "float32"),
    (2, 33, 41, 1, 5, 4, 2, 1, 33, 41, "symm", "float64"),
    (3, 17, 19, 3, 7, 7, 3, 3, 17, 19, "wrap", "float32"),
    (2, 1, 1000, 1, 1, 31, 0, 15, 1, 1000, "fill", "float32"),
    (1, 1, 517, 1, 1, 300, 0, 150, 1, 517, "fill", "float64"),
]


@pytest.mark.parametrize("run", FILTER_RUNS,
                         ids=[f"run{i}" for i in range(len(FILTER_RUNS))])
def test_filter_kernels_schedule_independent(run, lockstep, serial):
    *geom, boundary, dtype = run
    fp = filter_problem(*geom, boundary, 0, dtype)
    rng = np.random.default_rng(9)
    x = random_values(rng, (fp.B, geom[1], geom[2]), dtype)
    k = random_values(rng, (geom[3], geom[4], geom[5]), dtype)
    n0 = len(serial.launches)
    got = _gpu_filter.correlate2d(x, k, fp, "direct", device=serial)
    assert len(serial.launches) > n0
    _same_bits(got, _gpu_filter.correlate2d(x, k, fp, "direct", device=lockstep))


@pytest.mark.parametrize("dtype,ks", [("float32", 3), ("float64", 5)])
def test_filter_pipelined_schedule_independent(dtype, ks, lockstep, serial,
                                               monkeypatch):  # fmt: skip
    """The persistent, double-buffered ``filter2d_tiled_pipelined``: 2 warps per
    block, a grid of 2 blocks walking ~10 tiles each (the buffer refilled while the
    other is read), interior and border tiles; eager copies and one warp at a time
    against deferred copies in lockstep, and both against naive."""
    from gpuconv import _plan_cache, _plan_filter

    monkeypatch.setattr(_plan_filter, "DEFAULT_SMEM_PER_SM", 1)  # 1 block per SM
    monkeypatch.setattr(_plan_filter, "DEFAULT_SM_COUNT", 2)
    _plan_cache.clear()
    fp = filter_problem(1, 70, 83, 1, ks, ks, ks // 2, ks // 2, 70, 83, "wrap", 0,
                        dtype)  # fmt: skip
    rng = np.random.default_rng(11)
    x = random_values(rng, (1, 70, 83), dtype)
    k = random_values(rng, (1, ks, ks), dtype)
    got = _gpu_filter.correlate2d(x, k, fp, "tiled", device=serial, block=(16, 4),
                                  pipelined=True)  # fmt: skip
    assert "pipelined" in serial.launches[-1][1] and serial.launches[-1][2][0] == 2
    _same_bits(got, _gpu_filter.correlate2d(x, k, fp, "tiled", device=lockstep,
                                            block=(16, 4), pipelined=True))
    _same_bits(got, _gpu_filter.correlate2d(x, k, fp, "naive", device=lockstep))
