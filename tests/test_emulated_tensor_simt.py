"""The SIMT route of the tensor-core precisions, emulated on the CPU:
``cuda/convert.cu`` and the FP32 kernels on converted operands.

Under ``precision='tf32'`` (float32 data) and for float16 data, ``algorithm='auto'``
runs the mma kernels only where they measured faster
(``gpuconv._plan_conv.mma_preferred``, tests/test_mma_dispatch.py); elsewhere, and for
every explicit FP32 variant, the operands of the pass are converted into temporaries
(``convert_round_tf32``: TF32 as ``cvt.rna.tf32.f32``; ``convert_half_to_float``:
float16 bits widened) and the FP32 kernels run on them. Products of two TF32 or two
float16 values are exact in float32, so the result is the tensor-core model's up to
float32 summation order. Checked here:

- the two kernels against NumPy bit for bit (special values, random bit patterns,
  all 65536 float16 patterns), under ASan/UBSan;
- every pass x {tf32, float16 handed over as float16} on awkward shapes (stride,
  dilation, groups, padding modes, tails, kernel larger than the input): the launches
  are the convert kernels plus FP32 kernels (no mma), the result is within the same
  bounds as the mma kernels' (tests/_tol.py through ``test_emulated_mma._check``),
  equals the FP32 kernels on operands converted by NumPy bit for bit, is
  bit-identical run after run (a replayed plan binds the new buffers), and the inputs
  are not modified.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from gpuconv import _gpu_conv, _plan_conv
from gpuconv._emulate import EmulatedDevice
from gpuconv._precision import round_tf32
from tests._cuda_conv_cases import CASE_IDS, CASES
from tests._emu_helpers import EMULATED, prepared_device
from tests.test_emulated_mma import SOURCES, _check, _inputs, _problem

pytestmark = [*EMULATED, pytest.mark.usefixtures("poisoned_conv_outputs")]

PASSES = ("forward", "backward_input", "backward_weight")
KINDS = ("tf32", "f16")
SIMT_CASES = ("stride", "dilation", "groups", "everything", "reflect", "circular",
              "regblock_fwd_tails", "kernel_gt_input", "one_by_one",
              "few_channel_strided")


@pytest.fixture(scope="module")
def dev():
    return prepared_device(SOURCES)



def _launch(dev, kernel, *args):
    from gpuconv._launch import Launch

    total = int(args[1].size)
    dev.launch(Launch(source="convert.cu", kernel=kernel, grid=(3, 1, 1),
                      block=(64, 1, 1), shared_mem=0,
                      args=(*args, np.int64(total))))


def _special_floats(rng):
    bits = [0x00000000, 0x80000000, 0x00000001, 0x80001000, 0x00001000, 0x00000FFF,
            0x007FFFFF, 0x00800000, 0x3F800000, 0x3F801000, 0x3F803000, 0x3F800FFF,
            0xBF801000, 0x7F7FFFFF, 0x7F7FF000, 0x7F7FEFFF, 0xFF7FFFFF, 0x7F800000,
            0xFF800000, 0x7FC00000, 0x7F800001, 0x7F801000, 0xFFFFFFFF, 0x477FF000]
    rand = rng.integers(0, 2**32, size=5000, dtype=np.uint64).astype(np.uint32)
    return np.concatenate([np.array(bits, np.uint32), rand]).view(np.float32)


@pytest.mark.parametrize("sanitize", [False, True], ids=["fast", "asan"])
def test_convert_kernels_bit_for_bit(sanitize, dev):
    d = dev if not sanitize else EmulatedDevice(sanitize=True)
    x = _special_floats(np.random.default_rng(1))
    x_before = x.copy()
    out = np.full(x.shape, np.nan, np.float32)
    _launch(d, "convert_round_tf32", x, out)
    np.testing.assert_array_equal(out.view(np.uint32), round_tf32(x).view(np.uint32))
    np.testing.assert_array_equal(x.view(np.uint32), x_before.view(np.uint32))
    # every float16 bit pattern (the ASan run: a sample)
    h = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    if sanitize:
        h = np.ascontiguousarray(h[::7])
    wide = np.full(h.shape, np.nan, np.float32)
    _launch(d, "convert_half_to_float", h, wide)
    np.testing.assert_array_equal(wide.view(np.uint32),
                                  h.view(np.float16).astype(np.float32).view(np.uint32))


def test_plan_convert_edges():
    f2 = np.zeros(2, np.float32)
    with pytest.raises(ValueError, match="kind must be one of"):
        _plan_conv.plan_convert("bf16", f2, f2.copy())
    with pytest.raises(ValueError, match="elements"):
        _plan_conv.plan_convert("tf32", np.zeros(3, np.float32), f2)
    assert _plan_conv.plan_convert("f16", np.zeros(0, np.uint16),
                                   np.zeros(0, np.float32)) == []


def _run(pass_name, p, x, w, b, gy, dev, algorithm):
    """The CUDA op as the CUDA backend calls it: float16 data as float16 (the bias
    cast to the compute dtype, float32)."""
    if pass_name == "forward":
        return _gpu_conv.conv2d_forward(x, w, b.astype(np.float32), p, algorithm,
                                        device=dev)
    if pass_name == "backward_weight":
        return _gpu_conv.conv2d_backward_weight(gy, x, p, algorithm, False,
                                                device=dev)[0]
    return _gpu_conv.conv2d_backward_input(gy, w, p, algorithm, device=dev)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("pass_name", PASSES)
@pytest.mark.parametrize("case_id", SIMT_CASES)
def test_simt_route(case_id, pass_name, kind, dev):
    p = _problem(CASES[CASE_IDS.index(case_id)], kind)
    assert not _plan_conv.mma_preferred(p, pass_name)  # small: auto takes SIMT
    x, w, b, gy = _inputs(p, kind, seed=31)
    kept = [a.copy() for a in (x, w, b, gy)]
    n0 = len(dev.launches)
    got = _run(pass_name, p, x, w, b, gy, dev, "auto")
    launched = [k for _, k, *_ in dev.launches[n0:]]
    assert all("_mma<" not in k for k in launched), launched
    conv = "convert_round_tf32" if kind == "tf32" else "convert_half_to_float"
    assert launched.count(conv) == 2, launched
    assert got.dtype == np.float32 and not np.isnan(got).any()
    _check(pass_name, p, kind, got, x, w, b, gy)
    # the FP32 kernels of the same variant on operands converted by NumPy: the same
    # bits (conversion is exact, the sums run in the same order)
    algo = _plan_conv.choose_algorithm(_gpu_conv.kernel_problem(p), pass_name)
    hi = dataclasses.replace(p, precision="highest")
    cv = (round_tf32 if kind == "tf32" else lambda a: a.astype(np.float32))
    want = _run(pass_name, hi, cv(x), cv(w), b.astype(np.float32), cv(gy), dev, algo)
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
    # run after run (the cached plan, new buffers): bit-identical; -gy -> -result
    again = _run(pass_name, p, x.copy(), w.copy(), b, gy.copy(), dev, "auto")
    np.testing.assert_array_equal(again.view(np.uint32), got.view(np.uint32))
    if pass_name != "forward":
        neg = _run(pass_name, p, x, w, b, -gy, dev, "auto")
        np.testing.assert_array_equal(neg, -got)
    for a, k in zip((x, w, b, gy), kept, strict=True):
        np.testing.assert_array_equal(a, k)  # inputs never modified


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("algorithm", ["naive", "tiled", "tiled_regblock"])
def test_forced_variants_convert_too(algorithm, kind, dev):
    p = _problem(CASES[CASE_IDS.index("everything")], kind)
    x, w, b, gy = _inputs(p, kind, seed=37)
    for pass_name in PASSES:
        n0 = len(dev.launches)
        got = _run(pass_name, p, x, w, b, gy, dev, algorithm)
        launched = [k for _, k, *_ in dev.launches[n0:]]
        assert any(k.startswith("convert_") for k in launched), launched
        assert any(f"_{algorithm}<" in k for k in launched), launched
        _check(pass_name, p, kind, got, x, w, b, gy)


@pytest.mark.parametrize("kind", KINDS)
def test_bias_gradient_sums_the_unconverted_gy(kind, dev):
    p = _problem(CASES[CASE_IDS.index("groups")], kind)
    x, w, b, gy = _inputs(p, kind, seed=41)
    gy = gy + np.asarray(2.0**-12, gy.dtype) if kind == "tf32" else gy
    gw, gb = _gpu_conv.conv2d_backward_weight(gy, x, p, "auto", True, device=dev)
    want = _gpu_conv.conv2d_backward_bias(gy, p, device=dev)
    np.testing.assert_array_equal(gb, want)
    gw0, _ = _gpu_conv.conv2d_backward_weight(gy, x, p, "auto", False, device=dev)
    np.testing.assert_array_equal(gw, gw0)
