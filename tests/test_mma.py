"""The tensor-core device API (``cuda/mma.cuh``) on its own, emulated, against a NumPy
model written from the PTX ISA, bit for bit.

The model (:func:`mma_model`) places each lane's fragment registers into the A, B
and C matrices with the layouts of the PTX ISA's "Matrix fragments for
mma.m16n8k8" (.tf32) and "mma.m16n8k16" (.f16) figures, reads a .tf32 register's top
19 bits, and accumulates the exact products into C in float32 in increasing k (the
rules ``cuda/mma.cuh`` documents as our model of the tensor core). Random distinct
values in every register make any layout slip change the result. ``to_tf32`` is
compared with :func:`gpuconv._precision.round_tf32` (itself checked against the
definition of ``cvt.rna`` in ``tests/test_precision.py``) and the float16
conversions with NumPy's.

Test kernels: ``tests/emu_kernels/mma_probe.cu`` (also compiled with nvcc for sm_80
and sm_90 here, marker ``nvcc``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from gpuconv import _emulate
from gpuconv._emulate import EmulatedDevice, EmulationError
from gpuconv._launch import Launch
from gpuconv._precision import round_tf32
from tests._emu_helpers import EMULATED

KDIR = Path(__file__).parent / "emu_kernels"
SOURCE = "mma_probe.cu"
NAMES = ("tf32_round_probe", "half_probe", "mma_probe<false>", "mma_probe<true>",
         "ldmatrix_probe<false>", "ldmatrix_probe<true>", "cp_async_probe",
         "cp_async_align_probe")


# ---------------------------------------------------------------------------------
# the NumPy model of the fragment layouts (PTX ISA), g = lane // 4, t = lane % 4


def _lanes():
    lane = np.arange(32)
    return lane // 4, lane % 4


def a_positions(f16: bool):
    """(lane, register, half) -> (row, k) of A: arrays of shape (32, 4, halves)."""
    g, t = _lanes()
    r = np.arange(4)[None, :, None]
    g, t = g[:, None, None], t[:, None, None]
    if f16:
        h = np.arange(2)[None, None, :]
        return g + 8 * (r % 2) + 0 * h, 2 * t + h + 8 * (r // 2)
    return g + 8 * (r % 2), t + 4 * (r // 2)


def b_positions(f16: bool):
    """(lane, register, half) -> (k, col) of B: arrays of shape (32, 2, halves)."""
    g, t = _lanes()
    r = np.arange(2)[None, :, None]
    g, t = g[:, None, None], t[:, None, None]
    if f16:
        h = np.arange(2)[None, None, :]
        return 2 * t + h + 8 * r, g + 0 * h
    return t + 4 * r, g + 0 * r


def c_positions():
    """(lane, register) -> (row, col) of C and D: arrays of shape (32, 4)."""
    g, t = _lanes()
    r = np.arange(4)[None, :]
    return g[:, None] + 8 * (r // 2), 2 * t[:, None] + r % 2


def _operand_values(regs: np.ndarray, f16: bool) -> np.ndarray:
    """Register bits (uint32) -> the values the tensor core multiplies: (..., halves)
    float32."""
    if f16:
        halves = np.stack([regs & 0xFFFF, regs >> 16], axis=-1).astype(np.uint16)
        return halves.view(np.float16).astype(np.float32)
    return (regs & np.uint32(0xFFFFE000)).view(np.float32)[..., None]


def mma_model(a, b, c, f16: bool) -> np.ndarray:
    """D per lane (32, 4) float32 of one warp's mma from its registers."""
    K = 16 if f16 else 8
    A = np.full((16, K), np.nan, np.float32)
    B = np.full((K, 8), np.nan, np.float32)
    C = np.full((16, 8), np.nan, np.float32)
    ar, ak = a_positions(f16)
    A[ar, ak] = _operand_values(a, f16)
    bk, bc = b_positions(f16)
    B[bk, bc] = _operand_values(b, f16)
    cr, cc = c_positions()
    C[cr, cc] = c
    assert not (np.isnan(A).any() or np.isnan(B).any() or np.isnan(C).any())
    D = C.copy()
    for k in range(K):  # float32 ops; every product is exact in float32
        D = D + A[:, k : k + 1] * B[k : k + 1, :]
    return D[cr, cc]


# ---------------------------------------------------------------------------------
# emulated runs

pytestmark = EMULATED


@pytest.fixture(scope="module")
def dev():
    d = EmulatedDevice(sanitize=False, kernels={SOURCE: NAMES}, source_dir=KDIR)
    d.prepare()
    return d


def _run(dev, kernel, grid, block, args):
    dev.launch(Launch(SOURCE, kernel, grid, block, 0, tuple(args)))


def _random_fragments(rng, warps: int, f16: bool):
    if f16:
        def halves(n):
            v = rng.standard_normal(n * 2).astype(np.float16)
            return v.view(np.uint16).astype(np.uint32).reshape(n, 2)

        ah = halves(warps * 32 * 4)
        a = (ah[:, 0] | (ah[:, 1] << 16)).astype(np.uint32).reshape(warps, 32, 4)
        bh = halves(warps * 32 * 2)
        b = (bh[:, 0] | (bh[:, 1] << 16)).astype(np.uint32).reshape(warps, 32, 2)
    else:
        # raw float32 bits: the mma must ignore the low 13 bits of a .tf32 register
        a = rng.standard_normal((warps, 32, 4)).astype(np.float32).view(np.uint32)
        b = rng.standard_normal((warps, 32, 2)).astype(np.float32).view(np.uint32)
    c = rng.standard_normal((warps, 32, 4)).astype(np.float32)
    return a, b, c


@pytest.mark.parametrize("f16", [False, True], ids=["tf32", "f16"])
def test_mma_matches_the_ptx_layout_model_bit_for_bit(dev, f16):
    rng = np.random.default_rng(1 + f16)
    warps = 3  # two warps in one block, one in another
    a, b, c = _random_fragments(rng, warps, f16)
    d = np.full((warps, 32, 4), np.nan, np.float32)
    _run(dev, f"mma_probe<{str(f16).lower()}>", (1, 1, 1), (32 * warps, 1, 1),
         (a, b, c, d))
    for w in range(warps):
        want = mma_model(a[w], b[w], c[w], f16)
        np.testing.assert_array_equal(d[w].view(np.uint32), want.view(np.uint32))


@pytest.mark.parametrize("order", ["ascending", "descending"])
def test_mma_under_asan_in_both_thread_orders(order):
    """The lanes read each other's fragments on their fiber stacks: clean under
    ASan/UBSan whichever lane runs first."""
    d = EmulatedDevice(kernels={SOURCE: NAMES}, source_dir=KDIR, thread_order=order)
    rng = np.random.default_rng(9)
    for f16 in (False, True):
        a, b, c = _random_fragments(rng, 2, f16)
        out = np.full((2, 32, 4), np.nan, np.float32)
        _run(d, f"mma_probe<{str(f16).lower()}>", (2, 1, 1), (32, 1, 1), (a, b, c, out))
        for w in range(2):
            want = mma_model(a[w], b[w], c[w], f16)
            np.testing.assert_array_equal(out[w].view(np.uint32), want.view(np.uint32))


def test_mma_layout_slip_would_be_caught():
    """The model itself is sensitive: swapping two A registers changes D."""
    rng = np.random.default_rng(5)
    a, b, c = _random_fragments(rng, 1, False)
    slipped = a[0].copy()
    slipped[:, [1, 2]] = slipped[:, [2, 1]]
    assert not np.array_equal(mma_model(a[0], b[0], c[0], False),
                              mma_model(slipped, b[0], c[0], False))


def test_mma_needs_the_whole_warp(dev):
    a = np.zeros((1, 32, 4), np.uint32)
    b = np.zeros((1, 32, 2), np.uint32)
    c = np.zeros((1, 32, 4), np.float32)
    d = np.zeros((1, 32, 4), np.float32)
    with pytest.raises(EmulationError, match="all 32 lanes"):
        _run(dev, "mma_probe<false>", (1, 1, 1), (16, 1, 1), (a, b, c, d))


def test_to_tf32_is_cvt_rna(dev):
    rng = np.random.default_rng(3)
    bits = rng.integers(0, 2**32, size=20_000, dtype=np.uint64).astype(np.uint32)
    ties = (np.float32(1.0).view(np.uint32) + np.arange(0, 1 << 14, 0x800)).astype(
        np.uint32)
    x = np.concatenate([bits, ties, np.array([0x7F7FFFFF, 0x80000001, 0x7FC00001],
                                             np.uint32)]).view(np.float32)
    y = np.zeros(x.size, np.uint32)
    _run(dev, "tf32_round_probe", (8, 1, 1), (256, 1, 1), (x, y, np.int64(x.size)))
    np.testing.assert_array_equal(y, round_tf32(x).view(np.uint32))


def test_half_conversions_match_numpy(dev):
    rng = np.random.default_rng(4)
    x = np.concatenate([
        rng.standard_normal(4000) * 10.0 ** rng.integers(-9, 6, 4000),
        [65504, 65519.99, 65520, 1e6, -1e6, 2.0**-24, 2.0**-25, 3 * 2.0**-26,
         2.0**-14 * (1 - 2.0**-11), np.inf, -np.inf, 0.0, -0.0],
    ]).astype(np.float32)
    # ties of float16 rounding, normal and subnormal
    ties = (np.arange(1, 2000, dtype=np.float32) + np.float32(0.5)) * np.float32(
        2.0**-24)
    x = np.concatenate([x, ties, ties * 1024]).astype(np.float32)
    hin = rng.integers(0, 2**16, size=x.size, dtype=np.uint32).astype(np.uint16)
    h = np.zeros(x.size, np.uint16)
    back = np.zeros(x.size, np.float32)
    _run(dev, "half_probe", (4, 1, 1), (256, 1, 1), (x, h, hin, back, np.int64(x.size)))
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(h, x.astype(np.float16).view(np.uint16))
    want = hin.view(np.float16).astype(np.float32)
    nan = np.isnan(want)
    np.testing.assert_array_equal(np.isnan(back), nan)
    np.testing.assert_array_equal(back[~nan], want[~nan])
    # NaN: NumPy's rule, bit for bit (sign, the payload's top 10 bits, 0x7C01 where
    # those are 0; signalling NaNs stay signalling), the rule written out here too
    payload = np.concatenate([
        [0x400000, 0x400001, 0x000001, 0x001FFF, 0x002000, 0x200000, 0x7FFFFF,
         0x3FE000],
        rng.integers(1, 1 << 23, size=200),
    ]).astype(np.uint32)
    nan_bits = np.concatenate([0x7F800000 | payload, 0xFF800000 | payload]).astype(
        np.uint32)
    xn = nan_bits.view(np.float32)
    hn = np.zeros(xn.size, np.uint16)
    _run(dev, "half_probe", (1, 1, 1), (256, 1, 1),
         (xn, hn, hin[:xn.size], back[:xn.size], np.int64(xn.size)))
    rule = ((nan_bits >> 16) & 0x8000) | 0x7C00 | ((nan_bits & 0x7FFFFF) >> 13)
    rule = np.where(rule & 0x3FF, rule, rule | 1).astype(np.uint16)
    np.testing.assert_array_equal(hn, rule)
    np.testing.assert_array_equal(hn, xn.astype(np.float16).view(np.uint16))


# ---------------------------------------------------------------------------------
# ldmatrix and cp.async (the NHWC pipeline's loads)


def ldmatrix_model(words: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """ldmatrix.x4 (PTX ISA, "Warp-level matrix load instruction: ldmatrix", .b16,
    no .trans) at 32-bit granularity: lane l receives in register j the word l % 4
    of the row named by lane 8j + l // 4. words (64, 4) uint32, rows (32,) -> (32,
    4)."""
    lane = np.arange(32)
    j = np.arange(4)
    return words[rows[8 * j[None, :] + lane[:, None] // 4], (lane % 4)[:, None]]


def ldmatrix_trans_model(words: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """ldmatrix.x4.trans (.b16): lane l receives in register j the 16-bit elements
    at column l // 4 of the rows named by lanes 8j + 2(l % 4) (low half) and
    8j + 2(l % 4) + 1 (high half)."""
    halves = words.view(np.uint16).reshape(64, 8)
    lane = np.arange(32)[:, None]
    j = np.arange(4)[None, :]
    lo = halves[rows[8 * j + 2 * (lane % 4)], lane // 4].astype(np.uint32)
    hi = halves[rows[8 * j + 2 * (lane % 4) + 1], lane // 4].astype(np.uint32)
    return lo | (hi << 16)


@pytest.mark.parametrize("trans", [False, True], ids=["plain", "trans"])
@pytest.mark.parametrize("order", ["ascending", "descending"])
def test_ldmatrix_matches_the_ptx_model(order, trans):
    d = EmulatedDevice(kernels={SOURCE: NAMES}, source_dir=KDIR, thread_order=order)
    rng = np.random.default_rng(11)
    words = rng.integers(0, 2**32, size=(64, 4), dtype=np.uint64).astype(np.uint32)
    rows = rng.permutation(64)[:32].astype(np.int32)
    out = np.zeros((32, 4), np.uint32)
    _run(d, f"ldmatrix_probe<{str(trans).lower()}>", (1, 1, 1), (32, 1, 1),
         (words, rows, out))
    model = ldmatrix_trans_model if trans else ldmatrix_model
    np.testing.assert_array_equal(out, model(words, rows))
    if trans:  # k-major B (rows k, columns n): b[0..1] of m16n8k16.f16, 2 n blocks
        B = np.arange(16 * 16, dtype=np.uint16).reshape(16, 16)  # [k][n]
        blocks = np.stack([B[kb * 8:kb * 8 + 8, nb * 8:nb * 8 + 8]
                           for nb in range(2) for kb in range(2)])  # j = 2nb + kb
        lane = np.arange(32)
        words16 = blocks.reshape(32, 8).view(np.uint32)  # 32 rows of 16 bytes
        got = ldmatrix_trans_model(np.concatenate([words16, words16]), np.arange(32))
        g, t = lane // 4, lane % 4

        def pair(k, n):
            return B[k, n].astype(np.uint32) | (B[k + 1, n].astype(np.uint32) << 16)

        want = np.stack([pair(2 * t, g), pair(2 * t + 8, g), pair(2 * t, g + 8),
                         pair(2 * t + 8, g + 8)], 1)
        np.testing.assert_array_equal(got, want)
    # the fragments of m16n8k8.tf32: matrices (rows 0-7 | 8-15) x (words 0-3 | 4-7)
    # of a 16 x 8 A tile stored as 16-word rows give a[0..3] (g = l // 4, t = l % 4)
    tile = np.arange(16 * 8, dtype=np.uint32).reshape(16, 8)
    lane = np.arange(32)
    src = np.stack([tile[:, :4], tile[:, 4:]])  # (word half, row, 4)
    flat = src.reshape(32, 4)  # row index: half * 16 + row
    mrows = (lane // 8 // 2) * 16 + (lane // 8 % 2) * 8 + lane % 8
    got = ldmatrix_model(np.concatenate([flat, flat]), mrows)
    g, t = lane // 4, lane % 4
    want = np.stack([tile[g, t], tile[g + 8, t], tile[g, t + 4], tile[g + 8, t + 4]], 1)
    np.testing.assert_array_equal(got, want)


def test_ldmatrix_needs_the_whole_warp(dev):
    words = np.zeros((64, 4), np.uint32)
    rows = np.zeros(32, np.int32)
    with pytest.raises(EmulationError, match="all 32 lanes"):
        _run(dev, "ldmatrix_probe<false>", (1, 1, 1), (16, 1, 1),
             (words, rows, np.zeros((32, 4), np.uint32)))


def _cp_async_buffers(rng):
    src = rng.integers(1, 2**32, size=(128, 4), dtype=np.uint64).astype(np.uint32)
    init = rng.integers(1, 2**32, size=(64, 4), dtype=np.uint64).astype(np.uint32)
    seen = [np.zeros((64, 4), np.uint32) for _ in range(3)]
    return src, init, seen


def test_cp_async_lands_at_its_wait_and_zero_fills(dev):
    """cp.async, emulated deferred: a slot read before the wait still holds the old
    bytes; wait<1> lands group 0 (zeros where the copy was predicated off); wait<0>
    lands group 1."""
    src, init, (early, seen1, seen0) = _cp_async_buffers(np.random.default_rng(2))
    _run(dev, "cp_async_probe", (1, 1, 1), (64, 1, 1),
         (src, init, early, seen1, seen0, np.int32(1), np.int32(0)))
    np.testing.assert_array_equal(early, init)
    zero = (np.arange(64) % 3 == 0)[:, None]
    np.testing.assert_array_equal(seen1, np.where(zero, 0, src[:64]))
    np.testing.assert_array_equal(seen0, src[64:])


def test_cp_async_eager_lands_at_the_issue():
    """EmulatedDevice(cp_async='eager'): the copies land when issued (the earliest a
    GPU may), so the slot read right after the issues already holds them."""
    eager = EmulatedDevice(sanitize=False, cp_async="eager",
                           kernels={SOURCE: NAMES}, source_dir=KDIR)
    src, init, (early, seen1, seen0) = _cp_async_buffers(np.random.default_rng(4))
    _run(eager, "cp_async_probe", (1, 1, 1), (64, 1, 1),
         (src, init, early, seen1, seen0, np.int32(1), np.int32(0)))
    zero = (np.arange(64) % 3 == 0)[:, None]
    np.testing.assert_array_equal(early, np.where(zero, 0, src[:64]))
    np.testing.assert_array_equal(seen1, early)
    np.testing.assert_array_equal(seen0, src[64:])
    with pytest.raises(ValueError, match="cp_async must be"):
        EmulatedDevice(cp_async="early")
    with pytest.raises(ValueError, match="warp_schedule must be"):
        EmulatedDevice(warp_schedule="random")


def test_cp_async_left_in_flight_is_reported(dev):
    src, init, (early, seen1, seen0) = _cp_async_buffers(np.random.default_rng(3))
    with pytest.raises(EmulationError, match="cp.async copies not waited for"):
        _run(dev, "cp_async_probe", (1, 1, 1), (64, 1, 1),
             (src, init, early, seen1, seen0, np.int32(1), np.int32(1)))


@pytest.mark.parametrize("ok", [True, False])
def test_cp_async_checks_alignment(dev, ok):
    """A cp.async address not 16-byte aligned (shared or global, the zero fill's
    global address too) faults on a GPU; the emulator reports it instead of copying
    (its deferred memcpy would not care). Aligned offsets copy / zero-fill."""
    src = np.arange(64, dtype=np.uint8)
    a = -src.ctypes.data % 16  # the first 16-byte aligned offset
    out = np.zeros(8, np.uint32)
    _run(dev, "cp_async_align_probe", (1, 1, 1), (1, 1, 1),
         (src, out, np.int32(16), np.int32(a + 16), np.int32(ok)))
    want = src[a + 16:a + 32].view(np.uint32) if ok else np.zeros(4, np.uint32)
    np.testing.assert_array_equal(out, np.concatenate([np.full(4, 2**32 - 1), want]))
    for dst_off, src_off, what in ((8, a, "shared"), (0, a + 4, "global")):
        with pytest.raises(EmulationError, match=f"{what} .* not 16-byte aligned"):
            _run(dev, "cp_async_align_probe", (1, 1, 1), (1, 1, 1),
                 (src, np.zeros(8, np.uint32), np.int32(dst_off), np.int32(src_off),
                  np.int32(ok)))


# ---------------------------------------------------------------------------------
# valid CUDA for the tensor-core architectures


@pytest.mark.nvcc
@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not on PATH")
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_probe_kernels_compile_with_nvcc(tmp_path, arch):
    refs = ",\n".join(f"    (const void*)&{n}" for n in NAMES)
    tu = tmp_path / "instances.cu"
    tu.write_text(f'#include "{SOURCE}"\nconst void* instances[] = {{\n{refs}\n}};\n')
    cuda_dir = _emulate.runtime_header().parent
    cmd = [
        "nvcc", "-cubin", f"-arch={arch}", "-std=c++17", "-Xptxas", "-v",
        f"-I{KDIR}", f"-I{cuda_dir}", str(tu), "-o", str(tmp_path / "out.cubin"),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    entries = re.findall(r"Compiling entry function '([\w$]+)'", proc.stderr)
    assert len(entries) == len(NAMES)
    if shutil.which("cuobjdump") is None:
        return  # the SASS check needs cuobjdump (the nvidia-cuda-cuobjdump wheel)
    sass = subprocess.run(["cuobjdump", "-sass", str(tmp_path / "out.cubin")],
                          capture_output=True, text=True)
    if sass.returncode == 0:  # the tensor-core instructions are there
        assert "HMMA.1688.F32.TF32" in sass.stdout
        assert "HMMA.16816.F32" in sass.stdout
        assert "LDSM.16.M88.4" in sass.stdout and "LDGSTS" in sass.stdout
