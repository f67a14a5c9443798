"""Self-tests of the CPU emulation harness (``gpuconv._emulate``, ``emu_runtime.h``).

The harness must bite: kernels in ``tests/emu_kernels/`` with planted bugs (an
off-by-one global read, shared-memory overruns, a signed 32-bit index overflow,
missing ``__syncthreads``, barriers in divergent code, a deadlocked shuffle, a hang)
are each reported, every time, pointing at the planted line; correct kernels that
use static and dynamic shared memory, barriers, every warp intrinsic and atomics give
exact results. Also: argument checking, the build cache, unsupported CUDA
constructs failing to compile, and (marker ``nvcc``) the test kernels being valid
CUDA for sm_90.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest

from gpuconv import _emulate
from gpuconv._emulate import (
    EmulatedDevice,
    EmulationBuildError,
    EmulationError,
    build_library,
    library_path,
)
from gpuconv._launch import Launch

KDIR = Path(__file__).parent / "emu_kernels"
HARNESS = "harness_kernels.cu"
BUGS = "planted_bugs.cu"
HARNESS_NAMES = (
    "stencil_static<float>",
    "box_sum<float, 0>",
    "box_sum<float, 1>",
    "box_sum<float, 2>",
    "block_sum<double>",
    "histogram",
    "warp_probe<float>",
    "index_probe",
    "math_probe",
    "hello",
    "shared_peek<double>",
    "shared_peek_int",
)
BUG_NAMES = (
    "oob_tail_read<float>",
    "oob_static_shared<float>",
    "oob_dynamic_shared<float>",
    "int_index_overflow",
    "early_exit_barrier<float>",
    "branch_barriers",
    "shfl_deadlock",
    "shfl_bad_width",
    "spin_forever",
)
REGISTRY = {HARNESS: HARNESS_NAMES, BUGS: BUG_NAMES}

i32 = np.int32


def planted_line(tag: str) -> int:
    """Line number of the `PLANTED: <tag>` comment in planted_bugs.cu."""
    for no, line in enumerate((KDIR / BUGS).read_text().splitlines(), 1):
        if f"PLANTED: {tag}" in line:
            return no
    raise AssertionError(f"no PLANTED: {tag} in {BUGS}")


def at(tag: str) -> str:
    return f"{BUGS}:{planted_line(tag)}"


@pytest.fixture(scope="module")
def dev():
    d = EmulatedDevice(kernels=REGISTRY, source_dir=KDIR)
    d.prepare()  # both sources, built in parallel
    return d


@pytest.fixture(scope="module")
def fast():
    return EmulatedDevice(
        sanitize=False, kernels={HARNESS: HARNESS_NAMES}, source_dir=KDIR
    )


def run(d, kernel, grid, block, args, smem=0):
    src = HARNESS if kernel in HARNESS_NAMES else BUGS
    d.launch(Launch(src, kernel, grid, block, smem, tuple(args)))


def run_error(d, kernel, grid, block, args, smem=0) -> str:
    """The message of the ``EmulationError`` the launch must raise."""
    with pytest.raises(EmulationError) as exc:
        run(d, kernel, grid, block, args, smem)
    return str(exc.value)


# ---------------------------------------------------------------------------------
# reference helpers


def box_ref(x):
    C, H, W = x.shape
    xp = np.pad(x.astype(np.float64), ((0, 0), (1, 1), (1, 1)))
    return sum(
        xp[:, dr : dr + H, dq : dq + W].sum(0) for dr in range(3) for dq in range(3)
    )


def run_box(d, skip, x, block=(8, 4)):
    C, H, W = x.shape
    bx, by = block
    y = np.full((H, W), np.nan, np.float32)
    grid = (-(-W // bx), -(-H // by), 1)
    smem = (bx + 2) * (by + 2) * 4
    run(
        d,
        f"box_sum<float, {skip}>",
        grid,
        (bx, by, 1),
        (x, y, i32(C), i32(H), i32(W)),
        smem,
    )
    return y


# ---------------------------------------------------------------------------------
# correct kernels give exact results

pytestmark = pytest.mark.emulated


@pytest.mark.parametrize("n", [1, 31, 32, 33, 100])
def test_stencil_static_shared(dev, n):
    x = np.arange(1, n + 1, dtype=np.float32)
    y = np.full(n, np.nan, np.float32)
    run(dev, "stencil_static<float>", (-(-n // 32), 1, 1), (32, 1, 1), (x, y, i32(n)))
    expect = x + np.r_[0, x[:-1]] + np.r_[x[1:], 0]
    np.testing.assert_array_equal(y, expect)


@pytest.mark.parametrize("order", ["ascending", "descending"])
@pytest.mark.parametrize("shape", [(1, 1, 1), (2, 4, 8), (3, 5, 9), (2, 13, 21)])
def test_box_sum_dynamic_shared(shape, order):
    d = EmulatedDevice(kernels=REGISTRY, source_dir=KDIR, thread_order=order)
    x = np.random.default_rng(1).integers(-4, 5, shape).astype(np.float32)
    np.testing.assert_array_equal(run_box(d, 0, x), box_ref(x))


@pytest.mark.parametrize(
    "grid,block", [((3, 1, 1), (96, 1, 1)), ((2, 1, 1), (256, 1, 1))]
)
def test_block_sum_shuffles_and_atomics(dev, grid, block):
    x = np.random.default_rng(2).integers(-1000, 1000, 1001).astype(np.float64)
    out = np.zeros(1)
    run(dev, "block_sum<double>", grid, block, (x, np.int64(x.size), out))
    assert out[0] == x.sum()


def test_histogram_int_atomics_and_cas(dev):
    rng = np.random.default_rng(3)
    v = rng.integers(0, 1000, 5000).astype(np.int32)
    f = rng.standard_normal(5000).astype(np.float32)
    hist = np.zeros(37, np.uint32)
    vmax = np.array([-1], np.int32)
    fmax = np.array([-np.inf], np.float32)
    run(
        dev,
        "histogram",
        (3, 1, 1),
        (128, 1, 1),
        (v, f, i32(v.size), hist, i32(37), vmax, fmax),
    )
    np.testing.assert_array_equal(hist, np.bincount(v % 37, minlength=37))
    assert vmax[0] == v.max()
    assert fmax[0] == f.max()


def _check_warp_probe(d):
    """Run ``warp_probe`` on ``d`` and check every intrinsic's result."""
    x = np.random.default_rng(4).integers(-5, 6, 64).astype(np.float32)
    x[40] = 150  # warp 1 has a value > 100
    x[7] = -2000  # warp 0 has a value <= -1000
    o = np.full(64 * 8, np.nan, np.float32)
    io = np.full(64 * 16, -7, np.int32)
    run(d, "warp_probe<float>", (1, 1, 1), (64, 1, 1), (x, o, io))
    o = o.reshape(64, 8)
    io = io.reshape(64, 16)
    for w in range(2):
        v = x[32 * w : 32 * w + 32]
        ow, iw = o[32 * w : 32 * w + 32], io[32 * w : 32 * w + 32]
        lanes = np.arange(32)
        np.testing.assert_array_equal(ow[:, 0], np.full(32, v[3]))
        np.testing.assert_array_equal(ow[:, 1], v[(lanes + 5) % 32])
        np.testing.assert_array_equal(ow[:, 2], v[lanes // 16 * 16])
        np.testing.assert_array_equal(ow[:, 3], np.cumsum(v))
        seg = v.reshape(4, 8).sum(1)  # lane 0 of each 8-lane segment holds its sum
        np.testing.assert_array_equal(ow[::8, 4], seg)
        np.testing.assert_array_equal(ow[:, 5], np.full(32, v.sum()))
        np.testing.assert_array_equal(ow[:, 6], np.r_[v[1:], v[31]])
        np.testing.assert_array_equal(ow[:, 7], np.r_[v[0], v[:-1]])
        ballot = np.uint32(sum(1 << i for i in range(32) if v[i] > 0)).view(np.int32)
        assert (iw[:, 0] == ballot).all()
        assert (iw[:, 1] == int((v > 100).any())).all()
        assert (iw[:, 2] == int((v > -1000).all())).all()
        assert (iw[:, 6] == 16).all()
        assert (iw[:16, 7] == sum(1 << i for i in range(16) if i % 3 == 0)).all()
        assert (iw[16:, 7] == -1).all()
        assert (iw[:, 8] == lanes.sum()).all()
        assert (iw[:, 9] == 31).all()
        np.testing.assert_array_equal(iw[:, 10], lanes ^ 1)
        assert (iw[:, 11] == 1).all()
    assert (io[:, 3] == (x > 0).sum()).all()
    assert (io[:, 4] == int((x > 0).all())).all()
    assert (io[:, 5] == int((x > 0).any())).all()


def test_warp_intrinsics(dev):
    _check_warp_probe(dev)


def test_fast_in_process_mode_gives_the_same_results(fast):
    _check_warp_probe(fast)
    xb = np.random.default_rng(5).integers(-4, 5, (3, 11, 17)).astype(np.float32)
    np.testing.assert_array_equal(run_box(fast, 0, xb), box_ref(xb))
    assert not np.array_equal(run_box(fast, 1, xb), box_ref(xb))


def test_fast_mode_in_a_runner():
    d = EmulatedDevice(
        sanitize=False,
        in_process=False,
        kernels={HARNESS: HARNESS_NAMES},
        source_dir=KDIR,
    )
    xb = np.random.default_rng(6).integers(-4, 5, (2, 9, 10)).astype(np.float32)
    np.testing.assert_array_equal(run_box(d, 0, xb), box_ref(xb))


def test_thread_and_block_indices(dev):
    grid, block = (3, 2, 2), (4, 3, 2)
    out = np.full(12 * 24, -1, np.int64)
    run(dev, "index_probe", grid, block, (out,))
    expect = [
        ((((bz * 100 + by) * 100 + bx) * 100 + tz) * 100 + ty) * 100 + tx
        for bz in range(2)
        for by in range(2)
        for bx in range(3)
        for tz in range(2)
        for ty in range(3)
        for tx in range(4)
    ]
    np.testing.assert_array_equal(out, expect)


def test_math_intrinsics(dev):
    n = 37
    x = np.r_[np.linspace(-2, 2, 36), 0.25, 0.35, -0.25, 0.05].astype(np.float32)
    fo = np.full(n * 8, np.nan, np.float32)
    io = np.full(n * 4, -7, np.int32)
    # x4 aliases x (a float4 view of the same buffer): one region in the runner
    run(dev, "math_probe", (2, 1, 1), (32, 1, 1), (x, x, i32(n), fo, io))
    a = x[:n]
    fo, io = fo.reshape(n, 8), io.reshape(n, 4)
    a64 = a.astype(np.float64)
    np.testing.assert_array_equal(fo[:, 0], a)
    np.testing.assert_array_equal(fo[:, 1], (a64 * 3 + 0.5).astype(np.float32))
    np.testing.assert_array_equal(fo[:, 2], (a64 * a64 - 1).astype(np.float32))
    np.testing.assert_array_equal(fo[:, 3], np.minimum(a, np.float32(0.25)))
    np.testing.assert_array_equal(fo[:, 4], np.maximum(a, np.float32(-0.25)))
    np.testing.assert_allclose(fo[:, 5], 1 / np.sqrt(np.abs(a64) + 1), rtol=3e-7)
    np.testing.assert_array_equal(fo[:, 6], a)
    np.testing.assert_array_equal(fo[:, 7], np.clip(a, 0, 1))
    ten = a * np.float32(10)
    np.testing.assert_array_equal(io[:, 0], np.rint(ten))
    np.testing.assert_array_equal(io[:, 1], np.trunc(ten))
    np.testing.assert_array_equal(io[:, 2], np.floor(ten))
    i = np.arange(n)
    np.testing.assert_array_equal(io[:, 3], np.minimum(i, 7) + np.maximum(-i, -3))


def test_device_printf_reaches_stderr(dev, capfd):
    run(dev, "hello", (2, 1, 1), (32, 1, 1), (i32(7),))
    err = capfd.readouterr().err
    assert "hello from block 0, tag 7" in err
    assert "hello from block 1, tag 7" in err


def test_launch_log(dev):
    n0 = len(dev.launches)
    run(dev, "hello", (1, 1, 1), (32, 1, 1), (i32(1),))
    assert dev.launches[n0:] == [(HARNESS, "hello", (1, 1, 1), (32, 1, 1), 0)]


# ---------------------------------------------------------------------------------
# missing barriers: wrong every time, in both schedules


@pytest.mark.parametrize("mode", ["sanitized", "fast"])
def test_shared_memory_is_poisoned_at_every_block_start(dev, fast, mode):
    d = dev if mode == "sanitized" else fast
    out = np.zeros((3, 2, 64))
    run(d, "shared_peek<double>", (3, 1, 1), (64, 1, 1), (out,), smem=64 * 8)
    assert np.isnan(out).all()  # static (template) and dynamic, in every block
    assert (out.view(np.uint64) == np.uint64(2**64 - 1)).all()  # all bytes 0xFF
    iout = np.zeros((3, 64), np.int32)
    run(d, "shared_peek_int", (3, 1, 1), (64, 1, 1), (iout,))
    assert (iout == -1).all()


def test_poison_can_be_turned_off():
    d = EmulatedDevice(kernels=REGISTRY, source_dir=KDIR, poison_shared=False)
    iout = np.zeros((2, 64), np.int32)
    run(d, "shared_peek_int", (2, 1, 1), (64, 1, 1), (iout,))
    assert (iout[1] == 1).all()  # the second block sees what the first one left


@pytest.mark.parametrize("order", ["ascending", "descending"])
@pytest.mark.parametrize("skip", [1, 2])
def test_missing_syncthreads_is_caught_every_time(skip, order):
    d = EmulatedDevice(kernels=REGISTRY, source_dir=KDIR, thread_order=order)
    x = np.random.default_rng(7).integers(-4, 5, (3, 13, 21)).astype(np.float32)
    ref = box_ref(x)
    np.testing.assert_array_equal(run_box(d, 0, x), ref)  # the correct version passes
    runs = [run_box(d, skip, x) for _ in range(3)]
    for y in runs:
        assert (y != ref).sum() > 10  # many outputs wrong, not one by luck
        np.testing.assert_array_equal(y, runs[0])  # deterministic: the same every time
    if skip == 1:
        # read-after-write race: a neighbour's cell is read before it is stored, and
        # reads the poison (NaN) the harness filled shared memory with
        assert np.isnan(runs[0]).any()


# ---------------------------------------------------------------------------------
# sanitizers


def test_planted_out_of_bounds_global_read(dev):
    n = 100
    x = np.arange(n, dtype=np.float32)
    y = np.zeros(n, np.float32)
    msg = run_error(dev, "oob_tail_read<float>", (4, 1, 1), (32, 1, 1), (x, y, i32(n)))
    assert "heap-buffer-overflow" in msg
    assert "READ of size 4" in msg
    assert "0 bytes to the right of 400-byte region" in msg  # x[n], just past x
    assert at("oob_tail_read") in msg
    assert "oob_tail_read<float> (grid (4, 1, 1), block (32, 1, 1)" in msg


def test_out_of_bounds_into_an_adjacent_array_is_caught(dev):
    # x and y are neighbours in one NumPy allocation: x[n] *is* y[0] in host memory,
    # but each argument gets its own heap block in the runner, as on a GPU
    n = 64
    buf = np.arange(2 * n, dtype=np.float32)
    x, y = buf[:n], buf[n:]
    with pytest.raises(EmulationError, match="heap-buffer-overflow"):
        run(dev, "oob_tail_read<float>", (2, 1, 1), (32, 1, 1), (x, y, i32(n)))


def test_runner_recovers_after_a_sanitizer_report(dev):
    x = np.arange(40, dtype=np.float32)
    with pytest.raises(EmulationError):
        run(dev, "oob_tail_read<float>", (2, 1, 1), (32, 1, 1), (x, x.copy(), i32(40)))
    y = np.full(40, np.nan, np.float32)
    run(dev, "stencil_static<float>", (2, 1, 1), (32, 1, 1), (x, y, i32(40)))
    np.testing.assert_array_equal(y, x + np.r_[0, x[:-1]] + np.r_[x[1:], 0])


def test_planted_static_shared_overrun(dev):
    x = np.arange(128, dtype=np.float32)
    msg = run_error(dev, "oob_static_shared<float>",
                    (2, 1, 1), (64, 1, 1), (x, x.copy(), i32(128)))
    assert "index 64 out of bounds" in msg or "global-buffer-overflow" in msg
    assert at("oob_static_shared") in msg


def test_planted_dynamic_shared_overrun(dev):
    x = np.arange(128, dtype=np.float32)
    msg = run_error(dev, "oob_dynamic_shared<float>",
                    (2, 1, 1), (64, 1, 1), (x, x.copy(), i32(128)), smem=64 * 4)
    assert "heap-buffer-overflow" in msg
    assert "0 bytes to the right of 256-byte region" in msg
    assert at("oob_dynamic_shared") in msg


def test_planted_signed_index_overflow(dev):
    x = np.arange(64, dtype=np.float32)
    y = np.zeros(64, np.float32)
    # a small stride is fine...
    run(dev, "int_index_overflow", (2, 1, 1), (32, 1, 1), (x, y, i32(64), i32(3)))
    np.testing.assert_array_equal(y, x[(np.arange(64) * 3) % 64])
    # ...2**30 overflows int at i = 2 (no allocation anywhere near 2**31 needed)
    msg = run_error(dev, "int_index_overflow",
                    (2, 1, 1), (32, 1, 1), (x, y, i32(64), i32(2**30)))
    assert "signed integer overflow" in msg
    assert "cannot be represented in type 'int'" in msg
    assert at("int_index_overflow") in msg


def test_misaligned_vector_load(dev):
    # x4 (a float4*) points 4 bytes into the buffer: a 16-byte load off its alignment
    buf = np.arange(41, dtype=np.float32)
    fo = np.zeros(37 * 8, np.float32)
    io = np.zeros(37 * 4, np.int32)
    msg = run_error(dev, "math_probe",
                    (2, 1, 1), (32, 1, 1), (buf[:40], buf[1:], i32(37), fo, io))
    assert "misaligned address" in msg
    assert "requires 16 byte alignment" in msg


# ---------------------------------------------------------------------------------
# divergence, deadlocks, hangs: errors, never a hang


def test_early_exit_before_syncthreads(dev):
    x = np.arange(100, dtype=np.float32)
    msg = run_error(dev, "early_exit_barrier<float>",
                    (4, 1, 1), (32, 1, 1), (x, x.copy(), i32(100)))
    assert "__syncthreads in divergent code" in msg
    assert "block (3,0,0)" in msg  # the tail block: 100 = 3*32 + 4
    assert "threads 4-31 exited" in msg
    barrier = planted_line("early_exit_barrier") + 2
    assert f"{BUGS}:{barrier}" in msg
    # the same kernel on a size without a tail is fine
    y = np.zeros(96, np.float32)
    run(dev, "early_exit_barrier<float>", (3, 1, 1), (32, 1, 1), (x[:96], y, i32(96)))
    assert y[0] == x[0] + x[1]


def test_barriers_in_two_branches(dev):
    y = np.zeros(64, np.float32)
    msg = run_error(dev, "branch_barriers", (1, 1, 1), (64, 1, 1), (y,))
    assert "different barriers" in msg
    assert f"{BUGS}:{planted_line('branch_barriers (first')}" in msg
    assert f"{BUGS}:{planted_line('branch_barriers (second')}" in msg


def test_shuffle_deadlock_is_reported(dev):
    lib = dev.library(BUGS)
    x = np.ones(64, np.float32)
    msg = run_error(dev, "shfl_deadlock", (1, 1, 1), (64, 1, 1), (x, x.copy()))
    assert "deadlock" in msg
    assert "threads 0-15 wait at __shfl_down_sync(mask 0xffffffff)" in msg
    assert f"threads 16-31 wait at __syncthreads ({KDIR / BUGS}:" in msg
    # a synchronisation error is not a crash: the same runner goes on
    pid = lib._proc.pid
    with pytest.raises(EmulationError, match="width 3 is not a power of two"):
        run(dev, "shfl_bad_width", (1, 1, 1), (32, 1, 1), (x, x.copy()))
    assert lib._proc.pid == pid


def test_hang_times_out():
    d = EmulatedDevice(kernels=REGISTRY, source_dir=KDIR, timeout=1.0)
    with pytest.raises(EmulationError, match="timed out after 1.0 s"):
        run(d, "spin_forever", (1, 1, 1), (1, 1, 1), (np.zeros(1, np.int32),))


# ---------------------------------------------------------------------------------
# arguments are checked against the kernel's parameter types


@pytest.mark.parametrize(
    "args,match",
    [
        (
            (np.zeros(4, "f"), np.zeros(4, "f"), np.int64(4)),
            "must be np.int32, not np.int64",
        ),
        ((np.zeros(4, "d"), np.zeros(4, "f"), i32(4)), "must be an array of float32"),
        ((np.zeros(4, "f"), np.zeros(4, "f")), "takes 3 arguments"),
        ((np.zeros(8, "f")[::2], np.zeros(4, "f"), i32(4)), "not C-contiguous"),
        ((np.zeros(4, "f"), np.zeros(4, "f"), np.float32(4)), "must be np.int32"),
        ((np.zeros(4, "f"), [0.0] * 4, i32(4)), "must be a numpy.ndarray or None"),
    ],
)
def test_argument_types_are_checked(dev, args, match):
    with pytest.raises(TypeError, match=match):
        run(dev, "stencil_static<float>", (1, 1, 1), (32, 1, 1), args)


def test_equivalent_scalar_types_are_accepted(dev):
    x = np.arange(1001, dtype=np.float64)
    out = np.zeros(1)
    # long long n: np.longlong is a distinct class from np.int64 on Linux, same type
    run(dev, "block_sum<double>", (1, 1, 1), (64, 1, 1), (x, np.longlong(x.size), out))
    assert out[0] == x.sum()


def test_read_only_buffers(dev):
    x = np.arange(8, dtype=np.float32)
    x.flags.writeable = False
    y = np.zeros(8, np.float32)
    run(
        dev, "stencil_static<float>", (1, 1, 1), (32, 1, 1), (x, y, i32(8))
    )  # const: fine
    assert y[1] == 3
    with pytest.raises(TypeError, match="read-only"):
        run(dev, "stencil_static<float>", (1, 1, 1), (32, 1, 1), (y, x, i32(8)))
    np.testing.assert_array_equal(x, np.arange(8))


def test_launch_errors(dev):
    x = np.zeros(4, np.float32)
    with pytest.raises(KeyError, match="not registered"):
        run(dev, "stencil_static<double>", (1, 1, 1), (32, 1, 1), (x, x, i32(4)))
    with pytest.raises(EmulationError, match="dynamic shared memory"):
        run(
            dev,
            "stencil_static<float>",
            (1, 1, 1),
            (32, 1, 1),
            (x, x, i32(4)),
            48 * 1024 + 1,
        )
    with pytest.raises(TypeError, match="Python int"):
        run(dev, "stencil_static<float>", (1, 1, 1), (32, 1, 1), (x, x, 4))
    with pytest.raises(ValueError, match="thread_order"):
        EmulatedDevice(thread_order="random")
    with pytest.raises(ValueError, match="in-process"):
        EmulatedDevice(sanitize=True, in_process=True)


# ---------------------------------------------------------------------------------
# build: cache, concurrency, unsupported constructs

TINY = """\
#include "common.cuh"
#include "tiny.cuh"
template <typename T>
__global__ void tiny(T* y) { y[threadIdx.x] = T(TINY_VALUE); }
"""


def _tiny_source(tmp_path: Path, value: int = 1) -> Path:
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    (src / "tiny.cu").write_text(TINY)
    (src / "tiny.cuh").write_text(f"#define TINY_VALUE {value}\n")
    shutil.copy(_emulate.runtime_header().parent / "common.cuh", src / "common.cuh")
    return src


def test_build_cache_is_reused_and_keyed_on_headers(tmp_path, monkeypatch):
    src = _tiny_source(tmp_path)
    cache = tmp_path / "cache"
    names = ("tiny<float>",)
    lib = build_library(src / "tiny.cu", names, sanitize=False, cache=cache)
    assert lib.exists() and lib.parent == cache
    mtime = lib.stat().st_mtime_ns

    def no_compiler(cmd, what):
        raise AssertionError("the second build must not compile")

    monkeypatch.setattr(_emulate, "_run_compiler", no_compiler)
    assert build_library(src / "tiny.cu", names, sanitize=False, cache=cache) == lib
    assert lib.stat().st_mtime_ns == mtime
    # an edited header, another name list or other flags: another library
    (src / "tiny.cuh").write_text("#define TINY_VALUE 2\n")
    assert library_path(src / "tiny.cu", names, sanitize=False, cache=cache) != lib
    assert library_path(src / "tiny.cu", names + ("tiny<double>",), cache=cache) != lib
    assert library_path(src / "tiny.cu", names, sanitize=True, cache=cache) != lib


def test_concurrent_builds_compile_once(tmp_path, monkeypatch):
    src = _tiny_source(tmp_path, 3)
    cache = tmp_path / "cache"
    calls = []
    real = _emulate._run_compiler

    def counting(cmd, what):
        calls.append(what)
        real(cmd, what)

    monkeypatch.setattr(_emulate, "_run_compiler", counting)
    results = []

    def build():
        results.append(
            build_library(
                src / "tiny.cu", ("tiny<float>",), sanitize=False, cache=cache
            )
        )

    threads = [threading.Thread(target=build) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert len(set(results)) == 1 and results[0].exists()
    assert not list(cache.glob(".build-*"))  # no temporary left behind
    d = EmulatedDevice(
        sanitize=False, kernels={"tiny.cu": ("tiny<float>",)}, source_dir=src
    )
    monkeypatch.setenv("GPUCONV_EMU_CACHE", str(cache))
    y = np.zeros(5, np.float32)
    d.launch(Launch("tiny.cu", "tiny<float>", (1, 1, 1), (5, 1, 1), 0, (y,)))
    np.testing.assert_array_equal(y, np.full(5, 3))
    assert len(calls) == 1


def test_old_builds_are_pruned(tmp_path):
    import os

    def fake(name, age):
        f = tmp_path / name
        f.write_text("x")
        os.utime(f, (1e9 - age, 1e9 - age))

    for age in range(9):
        h = f"{age:020x}"
        fake(f"conv-asan-{h}.so", age)
        fake(f"conv-asan-{h}.cpp", age)
        fake(f"conv-asan-{h}.so.lock", age)
    fake("conv-fast-" + "f" * 20 + ".so", 100)  # another mode: untouched
    fake("conv2-asan-" + "e" * 20 + ".so", 100)  # another source: untouched
    _emulate._prune(tmp_path / f"conv-asan-{0:020x}.so", keep=3)
    left = sorted(p.name for p in tmp_path.iterdir())
    kept = [
        f"conv-asan-{a:020x}{s}" for a in range(3) for s in (".cpp", ".so", ".so.lock")
    ]
    assert left == sorted(
        [*kept, "conv-fast-" + "f" * 20 + ".so", "conv2-asan-" + "e" * 20 + ".so"]
    )


def test_debug_build(tmp_path, monkeypatch):
    src = _tiny_source(tmp_path, 4)
    monkeypatch.setenv("GPUCONV_EMU_CACHE", str(tmp_path / "cache"))
    names = ("tiny<double>",)
    fast_lib = library_path(src / "tiny.cu", names, sanitize=False)
    debug_lib = library_path(src / "tiny.cu", names, sanitize=False, debug=True)
    assert debug_lib != fast_lib and "-fast-debug-" in debug_lib.name
    d = EmulatedDevice(
        sanitize=False, debug=True, kernels={"tiny.cu": names}, source_dir=src
    )
    y = np.zeros(3)
    d.launch(Launch("tiny.cu", "tiny<double>", (1, 1, 1), (3, 1, 1), 0, (y,)))
    np.testing.assert_array_equal(y, [4, 4, 4])
    assert debug_lib.exists() and not fast_lib.exists()


UNSUPPORTED = """\
#include "common.cuh"
__constant__ float c_w[4];
__global__ void uses_constant(float* y) { y[0] = c_w[0]; }
__global__ void uses_extern_shared(float* y) {
    extern __shared__ float s_dyn[];
    y[0] = s_dyn[0];
}
__global__ void uses_legacy_shuffle(float* y) { y[0] = __shfl_down(y[0], 1); }
"""


def test_unsupported_constructs_fail_to_compile(tmp_path):
    src = _tiny_source(tmp_path)
    (src / "unsupported.cu").write_text(UNSUPPORTED)
    names = ("uses_constant", "uses_extern_shared", "uses_legacy_shuffle")
    with pytest.raises(EmulationBuildError) as exc:
        build_library(
            src / "unsupported.cu", names, sanitize=False, cache=tmp_path / "c"
        )
    msg = str(exc.value)
    for line in (2, 5, 8):
        assert f"unsupported.cu:{line}:" in msg
    assert "GPUCONV_DYNAMIC_SHARED" in msg  # the hint for extern __shared__


# ---------------------------------------------------------------------------------
# the test kernels are valid CUDA too


@pytest.mark.nvcc
@pytest.mark.parametrize("source", [HARNESS, BUGS])
def test_test_kernels_compile_with_nvcc(tmp_path, source):
    refs = ",\n".join(f"    (const void*)&{n}" for n in REGISTRY[source])
    tu = tmp_path / "instances.cu"
    tu.write_text(f'#include "{source}"\nconst void* instances[] = {{\n{refs}\n}};\n')
    cmd = [
        "nvcc", "-cubin", "-arch=sm_90", "-std=c++17", "-Xptxas", "-v",
        f"-I{KDIR}", f"-I{_emulate.runtime_header().parent}", str(tu),
        "-o", str(tmp_path / "out.cubin"),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    entries = re.findall(r"Compiling entry function '([\w$]+)'", proc.stderr)
    assert len(entries) == len(REGISTRY[source])
