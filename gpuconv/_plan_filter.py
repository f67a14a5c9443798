"""Launch planner and algorithm choice of the filter family (``cuda/filter2d.cu``).

Plain Python, no CuPy: from a :class:`~gpuconv._filter_args.FilterProblem` and the
buffers it returns the :class:`~gpuconv._launch.Launch` records that
:class:`gpuconv._kernels.CupyDevice` runs on the GPU and
``gpuconv._emulate.EmulatedDevice`` runs on the CPU.

Algorithms
----------
``'naive'``
    ``filter2d_naive<T>``: one thread per output, any kernel size.
``'tiled'``
    ``filter2d_tiled<T, KH, KW, RY>``: shared-memory tile plus halo, register blocks.
    Compile-time kernel sizes 3, 5, 7, 9 (square) for float32/float64, the runtime-size
    path (``KH = KW = 0``) for every other shape and dtype; ``RY = 4`` for images,
    ``RY = 1`` for short outputs (``OH < 16``, e.g. 1-D signals); the compile-time
    instances run ``RY = 2`` at 3x3 and 5x5, ``RY = 4`` at 7x7 and 9x9
    (:data:`RY_SPECIALISED`). Used whenever its
    shared memory fits the 48 KiB every device grants without an opt-in.
``'fft'``
    cuFFT through ``cupy.fft`` (see :mod:`gpuconv._gpu_filter`); float and complex only.
``'filter1d'``, ``'fft1d'``
    1-D problems (``B x 1 x W`` signals, one ``1 x KW`` kernel row):
    ``filter1d_tiled<T>`` of ``cuda/filter1d.cu`` (:func:`plan_filter1d`) and the
    segmented (overlap-save) FFT; :func:`choose_filter1d` decides between them.

:func:`choose_algorithm` makes the ``'auto'`` decision from the cost model below.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any

import numpy as np

from gpuconv._filter_args import FilterProblem
from gpuconv._launch import Launch, device_address
from gpuconv._padding import fill_interior

SOURCE = "filter2d.cu"

#: C type name of each dtype in the kernel name expressions (cuda/filter_common.cuh).
CTYPES: dict[str, str] = {
    "int8": "gc_int8",
    "uint8": "gc_uint8",
    "int16": "gc_int16",
    "uint16": "gc_uint16",
    "int32": "gc_int32",
    "uint32": "gc_uint32",
    "int64": "gc_int64",
    "uint64": "gc_uint64",
    "float32": "float",
    "float64": "double",
    "complex64": "gc_complex64",
    "complex128": "gc_complex128",
}

#: dtypes with compile-time kernel-size instances, and those sizes (square kernels).
SPECIALISED_DTYPES = ("float32", "float64")
SPECIALISED_SIZES = (3, 5, 7, 9)

BOUNDARY_CODES = {"fill": 0, "wrap": 1, "symm": 2}

#: Dynamic shared memory every CUDA device grants without an opt-in attribute.
MAX_SHARED_MEM = 48 * 1024
#: ``CW`` of filter2d.cu: tap chunk of the runtime-size path.
TAP_CHUNK = 4
#: Output rows per thread of the image and the short-output instances.
RY_IMAGE, RY_SHORT = 4, 1
#: Output rows per thread of the compile-time kernel-size instances, per kernel
#: size. The tap loop reads each of a thread's RY + KH - 1 tile rows once for all
#: the (output row, kernel row) pairs it feeds, so shared-memory traffic per output
#: falls as ``(RY + KH - 1) / RY`` (9x9: 5 -> 3 row reads per output row at RY = 4),
#: at the price of registers: RY = 4 keeps 3 resident blocks of 256 threads per SM
#: in float32 (80 registers) and 2 in float64 (up to 128; with 80 ptxas spills),
#: RY = 2 4-5. By the SASS proxy (``bench/filter_sass_proxy.py``; docs/performance.md,
#: "SASS proxy of the tiled filter kernels"): 3x3 and 5x5 are DRAM-bound (8 or 16
#: bytes per output take longer than their taps), so they keep RY = 2 and more
#: resident blocks; 7x7 and 9x9 take RY = 4 (float64: shared memory was their bound,
#: 1.3-2x the DRAM time; float32 9x9: issue-bound, with shared loads at 74 % of the
#: issue time). Not yet timed on a GPU: ``bench/filter_kernel_time.py`` times the
#: other RY beside each (:data:`RY_ALTERNATIVES`, rows ``ryN``).
RY_SPECIALISED: dict[int, int] = {3: 2, 5: 2, 7: 4, 9: 4}
#: Other ``RY`` registered per compile-time kernel size (float32 and float64), never
#: planned: ``tiled_config(..., ry_override=)`` reaches them, so that
#: ``bench/filter_kernel_time.py`` times the planner's choice against them on a GPU.
RY_ALTERNATIVES: dict[int, tuple[int, ...]] = {5: (4,), 7: (2,), 9: (2,)}
#: Interior-tile staging of the compile-time instances (float32/float64, square
#: k = 3, 5, 7, 9): ``(dtype name, k)`` pairs listed here use the register-staged
#: loader (128-bit loads, 3 per thread per round, kernel flag bit 2); all others
#: stage the whole tile + halo with cp.async, every copy in flight at once (one DRAM
#: latency per tile). Measured on the H200 at 491e4e5
#: (bench/results/cuda-h200-2026-12-04-491e4e5-filter-kernel-time.json, kernel
#: time at 4096² / 8192²): cp.async is faster on 12 of the 16 pairs (every float64
#: one, by 4-16 %; float32 3x3 and 9x9), register-staged on float32 5x5 (72.7 vs
#: 74.3 us, 228.7 vs 239.1 us) and 7x7 (90.6 vs 95.2 us, 296.3 vs 325.8 us).
#: Read when a launch is planned: set it before the first call of a problem (plans
#: are cached).
REGISTER_STAGED: frozenset[tuple[str, int]] = frozenset(
    {("float32", 5), ("float32", 7)}
)
#: The persistent, double-buffered variant ``filter2d_tiled_pipelined<T, k, k, RY>``
#: (RY of :data:`RY_SPECIALISED`) registered for these ``(dtype name, k)`` pairs: the
#: DRAM-bound compile-time cases (issue 16). Never planned: ``plan_filter(...,
#: pipelined=True)`` reaches it (tests, ``bench/filter_kernel_time.py`` rows
#: ``pipelined``), until a GPU run says whether it is the faster.
PIPELINED: frozenset[tuple[str, int]] = frozenset(
    {("float32", 3), ("float32", 5), ("float64", 3), ("float64", 5)}
)
#: SMs and shared memory per SM the pipelined grid is sized for when the caller
#: does not say (an H100/H200: 132 SMs, 228 KiB, 1 KiB reserved per block).
DEFAULT_SM_COUNT = 132
DEFAULT_SMEM_PER_SM = 228 * 1024
SMEM_RESERVED_PER_BLOCK = 1024
#: Below this many output rows the ``RY = 1`` instance is used.
SHORT_OH = 16
#: ``TILE_MAX_THREADS`` of filter2d.cu: the ``__launch_bounds__`` of filter2d_tiled.
TILE_MAX_THREADS = 256
#: Grid limits of y and z (the kernels loop over the rest).
MAX_GRID_YZ = 65535
#: The largest ``int`` kernel argument.
INT32_MAX = 2**31 - 1


def rx(itemsize: int) -> int:
    """Outputs per thread in x of ``filter2d_tiled`` (``TileTraits::RX``)."""
    return 8 if itemsize == 4 else (2 if itemsize == 16 else 4)


def naive_name(dtype: Any) -> str:
    return f"filter2d_naive<{CTYPES[np.dtype(dtype).name]}>"


def tiled_name(dtype: Any, kh: int, kw: int, ry: int) -> str:
    return f"filter2d_tiled<{CTYPES[np.dtype(dtype).name]}, {kh}, {kw}, {ry}>"


def pipelined_name(dtype: Any, kh: int, kw: int, ry: int) -> str:
    return f"filter2d_tiled_pipelined<{CTYPES[np.dtype(dtype).name]}, {kh}, {kw}, {ry}>"


def kernel_names() -> tuple[str, ...]:
    """Every instance of ``filter2d.cu`` gpuconv launches (the KERNELS entry)."""
    names: list[str] = []
    for dt in CTYPES:
        names.append(naive_name(dt))
        if dt in SPECIALISED_DTYPES:
            names += [
                tiled_name(dt, s, s, ry)
                for s in SPECIALISED_SIZES
                for ry in (RY_SPECIALISED[s], *RY_ALTERNATIVES.get(s, ()))
            ]
            names += [
                pipelined_name(dt, s, s, RY_SPECIALISED[s])
                for s in SPECIALISED_SIZES
                if (dt, s) in PIPELINED
            ]
        names.append(tiled_name(dt, 0, 0, RY_IMAGE))
        names.append(tiled_name(dt, 0, 0, RY_SHORT))
    return tuple(names)


def _round_up(x: int, m: int) -> int:
    return (x + m - 1) // m * m


def _pow2_ceil(n: int) -> int:
    return 1 << max(0, (int(n) - 1).bit_length())


def tiled_smem_bytes(
    itemsize: int,
    block: tuple[int, int],
    ry: int,
    kh: int,
    kw: int,
    compile_time: bool = False,
) -> int:
    """Dynamic shared memory of one ``filter2d_tiled`` block (layout in filter2d.cu).

    ``compile_time``: a compile-time kernel-size instance, whose weight rows are
    padded to whole 16-byte vectors (``gcf::weight_pitch``).
    """
    bx, by = block
    tw, th = bx * rx(itemsize), by * ry
    rows = th + kh - 1
    pitch = _round_up(tw + kw + TAP_CHUNK + 4, 4)
    kwp = _round_up(kw, max(1, 16 // itemsize)) if compile_time else kw
    return (
        _round_up(kh * kwp * itemsize, 16)
        + rows * pitch * itemsize
        + 4 * (rows + pitch)
    )


def pipelined_smem_bytes(
    itemsize: int, block: tuple[int, int], ry: int, kh: int, kw: int
) -> int:
    """Dynamic shared memory of one ``filter2d_tiled_pipelined`` block: two buffers,
    each the padded weights and the tile + halo of ``filter2d_tiled`` (no index
    maps: its border tiles apply the boundary rule per element)."""
    bx, by = block
    tw, th = bx * rx(itemsize), by * ry
    pitch = _round_up(tw + kw + TAP_CHUNK + 4, 4)
    kwp = _round_up(kw, max(1, 16 // itemsize))
    return 2 * (_round_up(kh * kwp * itemsize, 16) + (th + kh - 1) * pitch * itemsize)


def tile_min_blocks(itemsize: int, k: int, ry: int) -> int:
    """``gcf::tile_min_blocks`` of filter2d.cu for a compile-time instance: the
    resident blocks of 256 threads per SM its ``__launch_bounds__`` guarantees by
    registers."""
    if ry >= 4:
        return 3 if itemsize == 4 else 2
    if itemsize == 4:
        return 5 if k == 3 else 4
    return 4 if k <= 7 else 3


def pipelined_grid(
    fp: FilterProblem,
    block: tuple[int, int],
    ry: int,
    shared_mem: int,
    sm_count: int | None = None,
    smem_per_sm: int | None = None,
) -> int:
    """Blocks of the persistent grid: the resident blocks per SM (registers by the
    ``__launch_bounds__`` minimum, shared memory, 2048 threads) times ``sm_count``,
    never more than the tiles. An underestimate leaves SM slots idle; never an
    overestimate (a second wave would be a tail of whole tiles per block).
    ``None``: :data:`DEFAULT_SM_COUNT`, :data:`DEFAULT_SMEM_PER_SM` (read at the
    call: tests lower them to give each block many tiles)."""
    sm_count = DEFAULT_SM_COUNT if sm_count is None else sm_count
    smem_per_sm = DEFAULT_SMEM_PER_SM if smem_per_sm is None else smem_per_sm
    bx, by = block
    tiles = (
        -(-fp.OW // (bx * rx(np.dtype(fp.dtype).itemsize)))
        * -(-fp.OH // (by * ry))
        * fp.B
    )
    size = np.dtype(fp.dtype).itemsize
    per_sm = min(
        tile_min_blocks(size, fp.KH, ry),
        smem_per_sm // (shared_mem + SMEM_RESERVED_PER_BLOCK),
        2048 // (bx * by),
    )
    return max(1, min(tiles, max(1, per_sm) * sm_count))


def _tiled_instance(fp: FilterProblem) -> tuple[int, int, int]:
    """``(RY, KH, KW)`` template arguments of the tiled instance for ``fp``
    (``KH = KW = 0``: the runtime-size path)."""
    if fp.OH < SHORT_OH:
        return RY_SHORT, 0, 0
    dt = np.dtype(fp.dtype)
    if dt.name in SPECIALISED_DTYPES and fp.KH == fp.KW in SPECIALISED_SIZES:
        return RY_SPECIALISED[fp.KH], fp.KH, fp.KW
    return RY_IMAGE, 0, 0


def pipelined_registered(fp: FilterProblem, ry: int | None = None) -> bool:
    """Whether ``plan_filter(fp, ..., pipelined=True, ry=ry)`` has an instance: the
    problem takes a compile-time tiled instance of :data:`PIPELINED` (with its
    planned RY; ``ry`` None or that RY)."""
    ry_i, kh, _ = _tiled_instance(fp)
    dt = np.dtype(fp.dtype)
    return bool(kh) and (dt.name, kh) in PIPELINED and ry in (None, ry_i)


@dataclass(frozen=True)
class TiledConfig:
    """One ``filter2d_tiled`` launch shape."""

    kernel: str
    ry: int
    block: tuple[int, int]
    shared_mem: int


def tiled_config(
    fp: FilterProblem,
    block: tuple[int, int] | None = None,
    ry_override: int | None = None,
) -> TiledConfig | None:
    """The tiled instance and block for ``fp``, or ``None`` when no tile fits 48 KiB.

    ``block`` forces ``(blockDim.x, blockDim.y)`` (tests use it to put tile edges
    where they want them); it must fit, else ``None``. ``ry_override`` forces the
    output rows per thread of a compile-time kernel-size instance to another
    registered one (:data:`RY_ALTERNATIVES`; the benchmark times both), else
    ``None``.
    """
    dt = np.dtype(fp.dtype)
    size = dt.itemsize
    ry, kh, kw = _tiled_instance(fp)
    if ry_override is not None:
        if not kh or ry_override not in (ry, *RY_ALTERNATIVES.get(kh, ())):
            return None  # not a registered instance
        ry = ry_override
    name = tiled_name(dt, kh, kw, ry)
    if block is not None:
        if block[0] * block[1] > TILE_MAX_THREADS:
            return None
        smem = tiled_smem_bytes(size, block, ry, fp.KH, fp.KW, kh > 0)
        return (
            TiledConfig(name, ry, tuple(block), smem)
            if smem <= MAX_SHARED_MEM
            else None
        )
    r = rx(size)
    # no wider/taller blocks than the output needs
    bx_max = max(8, _pow2_ceil(-(-fp.OW // r)))
    by_max = max(1, _pow2_ceil(-(-fp.OH // ry)))
    if kh == 0 and ry == RY_IMAGE:
        cands = [(bx, by) for bx in (32, 16, 8) for by in (8, 4, 2, 1)]
    else:
        cands = [(bx, by) for bx in (256, 128, 64, 32, 16, 8) for by in (8, 4, 2, 1)]
    cands = [
        (bx, by)
        for bx, by in cands
        if bx * by <= TILE_MAX_THREADS and bx <= bx_max and by <= by_max
    ] or [(8, 1)]
    best: tuple[float, int, int, int] | None = None
    for bx, by in cands:
        smem = tiled_smem_bytes(size, (bx, by), ry, fp.KH, fp.KW, kh > 0)
        if smem > MAX_SHARED_MEM:
            continue
        score = halo_ratio(bx * r, by * ry, fp.KH, fp.KW) * _thread_penalty(bx * by)
        key = (score, -bx * by, bx, by)
        if best is None or key < best[:4]:
            best = (score, -bx * by, bx, by, smem)
    if best is None:
        return None
    return TiledConfig(name, ry, (best[2], best[3]), best[4])


def halo_ratio(tw: int, th: int, kh: int, kw: int) -> float:
    """Input values staged per output by a TH x TW tile: (TH+KH-1)(TW+KW-1)/(TH*TW)."""
    return (th + kh - 1) * (tw + kw - 1) / (th * tw)


def _thread_penalty(threads: int) -> float:
    # small blocks cap the resident threads per SM (32 blocks/SM): prefer >= 128
    return 1.0 if threads >= 128 else (1.15 if threads >= 64 else 1.5)


def naive_block(fp: FilterProblem) -> tuple[int, int]:
    by = min(8, _pow2_ceil(fp.OH))
    bx = min(256 // by, max(32, _pow2_ceil(fp.OW)))
    return bx, by


# ---------------------------------------------------------------------------------
# Cost model of the 'auto' choice. A call costs host time (normalise, plan, allocate,
# launch: :data:`HOST_CALL_SECONDS`, the same code path for every algorithm, so it
# decides nothing) plus device-side time, which is what differs: a fixed part per
# algorithm (:data:`DEVICE_SECONDS`: launch latency and tail; for the FFT its
# several launches and CuPy's per-operation host time) plus a per-byte and, for the
# direct kernels, a per-FLOP cost. The device-side constants come from the forced
# rows of a GPU run less the host time those rows carried on their commit (measured
# on the null-device proxy, ``bench/host_correction.py``), fitted by
# ``python bench/calibrate.py ROWS.json --write`` (see that script).
# ---------------------------------------------------------------------------------
#: Peak multiply-add rates (H100/H200 SXM: FP32 66.9 T, FP64 33.5 T; integers run
#: IMAD at half the FP32 rate). Only ratios matter: integers cost
#: ``f4 / int`` float32 FLOP per FLOP, and ``f4 / f8`` is the prior of
#: :data:`FP64_FLOP_SCALE` when no float64 rows are calibrated.
PEAK_FLOPS = {
    "f4": 66.9e12,
    "f8": 33.5e12,
    "c8": 66.9e12,
    "c16": 33.5e12,
    "int": 33.4e12,
}
#: Memory passes of the FFT path over one FFT grid of complex elements (forward 2-D
#: transform of the image ~4, product 3, inverse ~4, final slice 1) and over the
#: kernel's grid (forward transform ~4); the fitted per-byte cost scales them.
FFT_IMAGE_PASSES = 12.0
FFT_KERNEL_PASSES = 4.0
#: Host seconds of one public call on the CUDA path, any algorithm: the null-device
#: proxy of the plan-cached path (``python -m gpuconv bench --overhead``:
#: convolve2d 14.5 µs on 2026-12-04) times issue 15's GPU/proxy ratio of about 1.3.
#: An estimate (no GPU run of that code yet); it is added to every algorithm, so it
#: changes no choice, only the absolute times :func:`direct_seconds` and
#: :func:`fft_seconds` report.
HOST_CALL_SECONDS = 19e-6

# Uncalibrated estimates (one place). These constants are judgement, not fits; the
# calibration block below lists the ones its rows did not fit in UNCALIBRATED:
# - FFT_IMAGE_PASSES, FFT_KERNEL_PASSES: only the fitted BYTE_SECONDS['fft'] times
#   their weighted sum is measured; with one kernel per image (every benchmark row)
#   the two are not separable, and the kernel's spectrum now comes from its DFT
#   factors, multiplied in without being written (fft_spectrum_product), for kernel
#   sides up to FS_MAX_RANK (32) taps, a threshold from operation counts, never
#   timed on a GPU.
# - HOST_CALL_SECONDS: proxy times a ratio (above).
# - PEAK_FLOPS['int']: the integer kernels' FLOP cost relative to float32.
# - SEPARABLE_PASS_EFFICIENCY, SEPARABLE_EXTRA_SECONDS (in the block): fitted by
#   bench/calibrate.py from 'filter2d_rank1/*' rows when the rows have them (none
#   yet); until then estimates (the passes' tap-chunk waste, a launch and a sync).

# BEGIN CALIBRATION (written by bench/calibrate.py --write; refit, do not hand-edit)
#: The benchmark rows the constants below were fitted on.
CALIBRATION_ROWS = (
    "bench/results/cuda-h200-2026-12-04-08aa471-filter-f64.json",
    "bench/results/cuda-h200-2026-12-04-08aa471-filter.json",
)
#: The host time those rows carried on their commit (null-device proxy,
#: bench/host_correction.py), subtracted from them before the fit.
HOST_CORRECTION = "bench/results/host-overhead-08aa471-proxy.json"
#: Fixed device-side seconds per call of each algorithm (launch latency and
#: tail; fft: its several launches and CuPy's per-operation host time).
DEVICE_SECONDS = {"naive": 0.0, "tiled": 0.0, "fft": 0.000198}
#: Seconds per byte the algorithm moves (direct: input + output + kernel;
#: fft: the passes over the FFT grids, :func:`fft_features`).
BYTE_SECONDS = {"naive": 8.28e-13, "tiled": 1.28e-13, "fft": 8.88e-13}
#: Seconds per float32-equivalent FLOP of the direct kernels.
FLOP_SECONDS = {"naive": 5.35e-13, "tiled": 4.49e-14}
#: float32-equivalent FLOP per FLOP of float64 and complex128 in the direct
#: kernels.
FP64_FLOP_SCALE = 3.64
#: Separable (rank-1) passes: share of the 2-D tiled kernel's FLOP rate a
#: KH x 1 or 1 x KW pass reaches, and the fixed seconds the two passes add
#: (the kernel's copy to the host for the rank test, a sync), fitted on
#: 'filter2d_rank1' rows unless named in UNCALIBRATED.
SEPARABLE_PASS_EFFICIENCY = 0.25
SEPARABLE_EXTRA_SECONDS = 3e-05
#: Constants of this block the rows did not fit: estimates (see above).
UNCALIBRATED = (
    "SEPARABLE_EXTRA_SECONDS",
    "SEPARABLE_PASS_EFFICIENCY",
)
# END CALIBRATION


def next_fast_len(n: int) -> int:
    """The smallest ``m >= n`` whose prime factors are 2, 3, 5, 7 (cuFFT's radices).

    >>> [next_fast_len(n) for n in (1, 11, 4097, 4126)]
    [1, 12, 4116, 4200]
    """
    m = max(1, int(n))
    table = _smooth_table()
    if m <= table[-1]:
        return table[bisect.bisect_left(table, m)]
    while True:  # beyond the table (sides of 2**32 and more): search
        r = m
        for p in (2, 3, 5, 7):
            while r % p == 0:
                r //= p
        if r == 1:
            return m
        m += 1


_SMOOTH: list[list[int]] = []


def _smooth_table(limit: int = 1 << 32) -> list[int]:
    """Every 7-smooth number up to ``limit``, sorted (6 624 of them; built once)."""
    if not _SMOOTH:
        out = []
        p7 = 1
        while p7 <= limit:
            p5 = p7
            while p5 <= limit:
                p3 = p5
                while p3 <= limit:
                    p2 = p3
                    while p2 <= limit:
                        out.append(p2)
                        p2 *= 2
                    p3 *= 3
                p5 *= 5
            p7 *= 7
        _SMOOTH.append(sorted(out))
    return _SMOOTH[0]


def fft_grid(fp: FilterProblem) -> tuple[int, int, int, int, bool]:
    """FFT size and output offsets of the FFT path: ``(sh, sw, off_y, off_x, pad)``.

    With ``boundary='fill'``, ``fillvalue == 0`` and the output inside the support of
    the full correlation, the image is zero-extended by the FFT itself (``pad`` False);
    otherwise it is first extended explicitly by the boundary rule (``pad`` True).
    """
    kh, kw = fp.KH, fp.KW
    fill0 = fp.boundary == "fill" and _is_zero(fp.fillvalue)
    inside = fp.pad_top <= kh - 1 and fp.pad_left <= kw - 1
    inside = inside and fp.pad_bottom <= kh - 1 and fp.pad_right <= kw - 1
    if fill0 and inside:
        oy, ox = kh - 1 - fp.pad_top, kw - 1 - fp.pad_left
        nh = max(fp.H + kh - 1, oy + fp.OH)
        nw = max(fp.W + kw - 1, ox + fp.OW)
        pad = False
    else:
        oy, ox = kh - 1, kw - 1
        nh, nw = fp.OH + kh - 1, fp.OW + kw - 1
        pad = True
    sw = next_fast_len(nw)
    if np.dtype(fp.dtype).kind != "c" and sw % 2:
        sw = next_fast_len(sw + 1)  # real transforms: an even last axis is faster
    return next_fast_len(nh), sw, oy, ox, pad


def _is_zero(v: Any) -> bool:
    if isinstance(v, (int, float, complex, np.generic)):  # the usual case, fast
        return bool(v == 0)
    try:
        return bool(np.asarray(v) == 0)
    except Exception:
        return False


def _flop_scale(dt: np.dtype) -> float:
    """float32 FLOP-equivalents of one multiply-add of ``dt``: 2 real FLOP (8 for
    complex), times :data:`FP64_FLOP_SCALE` in double precision and the peak ratio
    for integers."""
    per = 8 if dt.kind == "c" else 2
    if dt.kind in "iub":
        return per * PEAK_FLOPS["f4"] / PEAK_FLOPS["int"]
    if dt.itemsize == (16 if dt.kind == "c" else 8):
        return per * FP64_FLOP_SCALE
    return float(per)


def direct_features(fp: FilterProblem) -> tuple[float, float, float]:
    """``(1, bytes, float32-equivalent FLOP)`` of a direct kernel on ``fp``: what
    :data:`DEVICE_SECONDS`, :data:`BYTE_SECONDS`, :data:`FLOP_SECONDS` multiply."""
    dt = np.dtype(fp.dtype)
    outputs = fp.B * fp.OH * fp.OW
    nbytes = (fp.B * fp.H * fp.W + outputs + fp.Bk * fp.KH * fp.KW) * dt.itemsize
    return 1.0, float(nbytes), float(outputs * fp.KH * fp.KW) * _flop_scale(dt)


def fft_features(fp: FilterProblem) -> tuple[float, float]:
    """``(1, bytes)`` of the FFT path on ``fp`` (memory passes over the FFT grids,
    :data:`FFT_IMAGE_PASSES`, :data:`FFT_KERNEL_PASSES`, plus the explicit
    extension of the image when the boundary needs one)."""
    dt = np.dtype(fp.dtype)
    sh, sw, _, _, pad = fft_grid(fp)
    real = dt.kind != "c"
    csize = 2 * dt.itemsize if real else dt.itemsize
    grid = sh * (sw // 2 + 1 if real else sw)
    nbytes = grid * csize * (fp.B * FFT_IMAGE_PASSES + fp.Bk * FFT_KERNEL_PASSES)
    if pad:
        nbytes += 2 * fp.B * (fp.OH + fp.KH - 1) * (fp.OW + fp.KW - 1) * dt.itemsize
    return 1.0, float(nbytes)


def direct_device_seconds(fp: FilterProblem, algorithm: str = "tiled") -> float:
    """Modelled device-side time of the direct kernel ``algorithm``
    (``'tiled'``/``'naive'``): what differs between the algorithms."""
    one, nbytes, flops = direct_features(fp)
    return (
        one * DEVICE_SECONDS[algorithm]
        + nbytes * BYTE_SECONDS[algorithm]
        + flops * FLOP_SECONDS[algorithm]
    )


def fft_device_seconds(fp: FilterProblem) -> float:
    """Modelled device-side time of the FFT path (with its CuPy calls' host time)."""
    one, nbytes = fft_features(fp)
    return one * DEVICE_SECONDS["fft"] + nbytes * BYTE_SECONDS["fft"]


def direct_seconds(fp: FilterProblem, algorithm: str = "tiled") -> float:
    """Modelled time of one call of the direct kernel ``algorithm``: the common
    host path plus :func:`direct_device_seconds`."""
    return HOST_CALL_SECONDS + direct_device_seconds(fp, algorithm)


def fft_seconds(fp: FilterProblem) -> float:
    """Modelled time of one call of the FFT path: the common host path plus
    :func:`fft_device_seconds`."""
    return HOST_CALL_SECONDS + fft_device_seconds(fp)


def tiled_fits(fp: FilterProblem) -> bool:
    """Whether :func:`tiled_config` finds a tile for ``fp`` (without searching:
    shared memory grows with both block sides and the smallest candidate, 8 x 1,
    is always among the candidates)."""
    ry, kh, _ = _tiled_instance(fp)
    size = np.dtype(fp.dtype).itemsize
    return tiled_smem_bytes(size, (8, 1), ry, fp.KH, fp.KW, kh > 0) <= MAX_SHARED_MEM


# ---------------------------------------------------------------------------------
# Separable (rank-1) kernels: two 1-D passes of the tiled kernel (a KH x 1 pass over
# the image into a (B, OH, OW+KW-1) intermediate, then a 1 x KW 'valid' pass). A new
# path with its own constants, kept apart from the ones above: recalibrate them on
# measured rows of a rank-1 kernel (bench rows 'separable' vs 'tiled', k = 5..31,
# 4096²/8192², float32/float64).
# ---------------------------------------------------------------------------------
# (SEPARABLE_PASS_EFFICIENCY and SEPARABLE_EXTRA_SECONDS: in the calibration block.)


#: ``'auto'`` and ``'direct'`` consider the two 1-D passes only from this many taps
#: (``KH * KW``) on. Measured on the H200: the passes won only at 31x31 (rank-1 rows
#: of b1e14e5, 4096²: 1.17 ms against the FFT's 1.42 and tiled's 1.89; 8192²: 2.53
#: against 3.72 and 6.85) and lost at 15x15 and below (4096²: 0.79 against tiled's
#: 0.47; 8192²: 2.00 against 1.71), while the rank test itself (the kernel's copy to
#: the host: a synchronisation that exposes the rest of the call's host time) cost
#: 0.10 ms (tiled path) to 0.44 ms (FFT path) per call whatever the kernel (auto
#: rows of 491e4e5 against the forced ones, 15x15 and 31x31). The separable model
#: (SEPARABLE_* above, not fitted yet) is 1.5-3x optimistic against those rows; this
#: floor, between the sizes that lost and won, keeps the test where it can pay.
SEPARABLE_AUTO_MIN_TAPS = 21 * 21


def separable_candidate(fp: FilterProblem) -> bool:
    """Whether ``fp`` may run as two 1-D passes if its kernel is rank 1: one kernel
    (``Bk == 1``), a float or complex dtype, and ``KH + KW + 2 < KH * KW`` (the
    NumPy backend's own rule, :func:`gpuconv._cpu_filter._separable`)."""
    from gpuconv._cpu_filter import _separable

    return fp.Bk == 1 and np.dtype(fp.dtype).kind in "fc" and _separable(fp.KH, fp.KW)


def separable_problems(fp: FilterProblem) -> tuple[FilterProblem, FilterProblem]:
    """The two passes of a separable ``fp``: ``(KH x 1 over the image with fp's
    boundary, OW + KW - 1 columns; 1 x KW 'valid' over that intermediate)``.

    The boundary rule of ``ext`` is separable (rows and columns are mapped
    independently), so extending the columns in the first pass and filtering them in
    the second gives the same sum as the 2-D kernel, up to rounding.
    """
    import dataclasses

    ew = fp.OW + fp.KW - 1
    first = dataclasses.replace(fp, KW=1, OW=ew)
    zero = np.zeros((), np.dtype(fp.dtype))[()]
    second = FilterProblem(
        fp.B, fp.OH, ew, 1, 1, fp.KW, 0, 0, fp.OH, fp.OW, "fill", zero, fp.dtype
    )
    return first, second


def separable_features(fp: FilterProblem) -> tuple[float, float, float]:
    """``(1, known, pass FLOP seconds)`` of the two 1-D passes on ``fp``: ``known``
    the device seconds fixed by the tiled constants (two tiled launches' fixed cost,
    each pass's bytes and one read of the image, the finiteness check, at the tiled
    rate), ``pass FLOP seconds`` the passes' FLOP at the 2-D tiled rate. The model
    is ``SEPARABLE_EXTRA_SECONDS + known + flop_s / SEPARABLE_PASS_EFFICIENCY``."""
    known = 2 * DEVICE_SECONDS["tiled"]
    known += fp.B * fp.H * fp.W * np.dtype(fp.dtype).itemsize * BYTE_SECONDS["tiled"]
    flop_s = 0.0
    for p in separable_problems(fp):
        _, nbytes, flops = direct_features(p)
        known += nbytes * BYTE_SECONDS["tiled"]
        flop_s += flops * FLOP_SECONDS["tiled"]
    return 1.0, known, flop_s


def separable_device_seconds(fp: FilterProblem) -> float:
    """Modelled device-side time of the two 1-D passes (:func:`separable_features`)."""
    _, known, flop_s = separable_features(fp)
    return SEPARABLE_EXTRA_SECONDS + known + flop_s / SEPARABLE_PASS_EFFICIENCY


def separable_seconds(fp: FilterProblem) -> float:
    """Modelled time of one call running the two 1-D passes: the common host path
    plus :func:`separable_device_seconds` (:data:`SEPARABLE_EXTRA_SECONDS` holds
    the kernel's copy to the host for the rank test and its sync)."""
    return HOST_CALL_SECONDS + separable_device_seconds(fp)


# ---------------------------------------------------------------------------------
# 1-D problems (B x 1 x W signals, one 1 x KW kernel row): ``filter1d_tiled<T>`` of
# ``cuda/filter1d.cu`` (its own tile: 8-4-2 consecutive outputs per thread, taps in
# shared-memory chunks, so any kernel length). A new path with its own constants,
# kept apart from the 2-D calibration block above; ``bench/calibrate.py`` can fit
# the ``FILTER1D_*`` constants on the ``filter1d/*`` rows of bench_gpu_filter.py.
# ---------------------------------------------------------------------------------
SOURCE_1D = "filter1d.cu"
#: dtypes ``filter1d_tiled`` is instantiated for (booleans run as uint32; int8/16
#: keep ``filter2d_tiled``).
FILTER1D_DTYPES = (
    "float32", "float64", "complex64", "complex128",
    "int32", "uint32", "int64", "uint64",
)  # fmt: skip
#: Constants of filter1d.cu (``gcf1::F1D_*``): threads per block, bytes of
#: consecutive outputs per thread, 16-byte units of taps per register chunk, bytes
#: of taps per shared-memory chunk.
F1D_THREADS = 256
F1D_OUT_BYTES = 32
F1D_REG_UNITS = 4
F1D_TAP_TILE_BYTES = 8192
#: UNCALIBRATED estimates (H200, not measured; fit them on ``filter1d/*`` rows):
#: fixed device seconds per call (launch latency and tail, on top of the common
#: :data:`HOST_CALL_SECONDS`), seconds per byte moved (80% of the 4.25 TB/s
#: measured device copy) and seconds per float32-equivalent FLOP (70% of the FP32
#: FMA peak; float64/complex128/integers scale as the 2-D model's ``_flop_scale``).
FILTER1D_DEVICE_SECONDS = 5.0e-6
FILTER1D_BYTE_SECONDS = 1.0 / (0.8 * 4.25e12)
FILTER1D_FLOP_SECONDS = 1.0 / (0.7 * 66.9e12)


def filter1d_name(dtype: Any) -> str:
    return f"filter1d_tiled<{CTYPES[np.dtype(dtype).name]}>"


def filter1d_kernel_names() -> tuple[str, ...]:
    """Every instance of ``filter1d.cu`` gpuconv launches (the KERNELS entry)."""
    return tuple(filter1d_name(dt) for dt in FILTER1D_DTYPES)


def filter1d_candidate(fp: FilterProblem) -> bool:
    """Whether ``fp`` is a stack of 1-D problems ``filter1d_tiled`` computes:
    single-row images (``H == OH == 1``), a single-row kernel (``KH == 1``) and a
    dtype of :data:`FILTER1D_DTYPES`."""
    return (
        fp.H == 1 and fp.KH == 1 and fp.OH == 1 and fp.pad_top == 0
        and np.dtype(fp.dtype).name in FILTER1D_DTYPES
    )  # fmt: skip


def filter1d_taps(itemsize: int) -> tuple[int, int]:
    """``(TAPS_REG, KC)``: taps per register chunk and per shared-memory chunk."""
    vec = 16 // itemsize
    return F1D_REG_UNITS * vec, F1D_TAP_TILE_BYTES // itemsize


def filter1d_smem_bytes(itemsize: int, kw: int) -> int:
    """Dynamic shared memory of one ``filter1d_tiled`` block (layout in filter1d.cu)."""
    taps_reg, kc = filter1d_taps(itemsize)
    vec = 16 // itemsize
    tw = F1D_THREADS * (F1D_OUT_BYTES // itemsize)
    kcp = _round_up(min(kw, kc), taps_reg)
    units = _round_up(tw // vec + kcp // vec, 16)
    return kcp * itemsize + 16 * units


def filter1d_features(fp: FilterProblem) -> tuple[float, float, float]:
    """``(1, bytes, float32-equivalent FLOP)`` of ``filter1d_tiled`` on ``fp``:
    signal, output and kernel once each, plus the signal segment reloaded (from
    L2, counted at the same rate) for every shared-memory tap chunk after the
    first."""
    dt = np.dtype(fp.dtype)
    _, kc = filter1d_taps(dt.itemsize)
    chunks = -(-fp.KW // kc)
    outputs = fp.B * fp.OW
    values = fp.B * fp.W + outputs + fp.Bk * fp.KW
    values += (chunks - 1) * (outputs + fp.B * (fp.KW - 1))
    return 1.0, float(values * dt.itemsize), float(outputs * fp.KW) * _flop_scale(dt)


def filter1d_seconds(fp: FilterProblem) -> float:
    """Modelled time of ``filter1d_tiled`` (uncalibrated constants
    :data:`FILTER1D_DEVICE_SECONDS`, :data:`FILTER1D_BYTE_SECONDS`,
    :data:`FILTER1D_FLOP_SECONDS`): memory and FMA time overlap, so the larger one
    counts."""
    one, nbytes, flops = filter1d_features(fp)
    return HOST_CALL_SECONDS + one * FILTER1D_DEVICE_SECONDS + max(
        nbytes * FILTER1D_BYTE_SECONDS, flops * FILTER1D_FLOP_SECONDS
    )


#: Segmented (overlap-save) FFT of 1-D problems (``'fft1d'``,
#: :func:`gpuconv._gpu_filter.correlate1d_fft`): segments of ``L`` samples, the
#: power of two at or above ``FFT1D_SEGMENT_TAPS * KW`` (and
#: :data:`FFT1D_MIN_SEGMENT`), each giving ``L - KW + 1`` outputs, so the kernel's
#: spectrum has ``L // 2 + 1`` values (not one per output, as in one full-size
#: transform) and every transform is a short batched one. A power of two rather
#: than the next 2,3,5,7-smooth size: cuFFT's radix-2 kernels, and fewer bytes (the
#: overlap ``KW - 1`` is a smaller share of a longer segment: with 3001 taps, 32768
#: rather than 24010 samples, 9 % of the segments' samples rather than 12.5 %).
#: UNCALIBRATED estimates: memory passes over the segments' spectra (forward,
#: product, inverse: each transform in one read and one write) at the FFT path's
#: per-byte cost (``BYTE_SECONDS['fft']``, from the 2-D rows).
FFT1D_SEGMENT_TAPS = 8
FFT1D_MIN_SEGMENT = 4096
#: One full-size transform rather than segments when it is at most this many
#: segments long and no longer than the segments together (:func:`fft1d_segment`).
FFT1D_SINGLE_MAX_SEGMENTS = 4
FFT1D_PASSES = 6.0


def fft1d_ok(fp: FilterProblem) -> bool:
    """Whether the segmented FFT computes ``fp``: a 1-D problem
    (:func:`filter1d_candidate`) of float or complex dtype whose boundary is
    'wrap', 'symm' or a zero 'fill' (a non-zero fill keeps the 2-D FFT path with
    its exact fill correction)."""
    return (
        filter1d_candidate(fp)
        and np.dtype(fp.dtype).kind in "fc"
        and (fp.boundary != "fill" or _is_zero(fp.fillvalue))
    )


def fft1d_segment(fp: FilterProblem) -> tuple[int, int]:
    """``(L, nseg)``: segment length and number of segments of the segmented FFT;
    one segment of the whole padded signal (at a 2,3,5,7-smooth size) when that is
    no longer than the segments together and at most
    :data:`FFT1D_SINGLE_MAX_SEGMENTS` segments long (a signal just over one
    segment: one transform of ~1x its length, not two segments of ~2x).

    >>> from gpuconv._filter_args import FilterProblem
    >>> def sig(n, k):
    ...     return FilterProblem(1, 1, n, 1, 1, k, 0, k // 2, 1, n, "fill", 0.0,
    ...                          np.dtype("float32"))
    >>> fft1d_segment(sig(4100, 31)), fft1d_segment(sig(10**6, 3001))
    ((4200, 1), (32768, 34))
    """
    real = np.dtype(fp.dtype).kind != "c"

    def fast(n: int) -> int:
        m = next_fast_len(n)
        return next_fast_len(m + 1) if real and m % 2 else m

    whole = fast(fp.OW + fp.KW - 1)
    seg = _pow2_ceil(max(FFT1D_SEGMENT_TAPS * fp.KW, FFT1D_MIN_SEGMENT))
    nseg = -(-fp.OW // (seg - fp.KW + 1))
    if seg >= whole or (whole <= nseg * seg
                        and whole <= FFT1D_SINGLE_MAX_SEGMENTS * seg):
        return whole, 1
    return seg, nseg


#: ``cuda/fft_gather.cu``: the pass in front of the FFT paths' forward transforms
#: (the image read once, the transform's zero-padded input written once).
SOURCE_FFT_GATHER = "fft_gather.cu"
#: ``FG_THREADS`` and ``FG_ITEMS`` of fft_gather.cu: threads per block, columns per
#: thread.
FG_THREADS = 256
FG_ITEMS = 4
#: The dtypes the FFT paths compute (and ``fft_gather`` is instantiated for).
FFT_DTYPES = ("float32", "float64", "complex64", "complex128")


def fft_gather_name(dtype: Any) -> str:
    return f"fft_gather<{CTYPES[np.dtype(dtype).name]}>"


def fft_gather_kernel_names() -> tuple[str, ...]:
    """Every instance of ``fft_gather.cu`` gpuconv launches (the KERNELS entry)."""
    return tuple(fft_gather_name(dt) for dt in FFT_DTYPES)


def _check_fft_copy(kernel: str, src: Any, dst: Any, src_is: str, dst_is: str
                    ) -> np.dtype:
    """The checks the FFT paths' copy kernels (``fft_gather``, ``fft_crop``) share:
    ``src`` and ``dst`` of one dtype of :data:`FFT_DTYPES`, 3-D with one batch,
    C-contiguous (``src_is``/``dst_is``: their names and axes, for the messages).
    Returns the dtype."""
    dt = np.dtype(dst.dtype)
    if dt.name not in FFT_DTYPES or src.dtype != dt:
        raise TypeError(
            f"{kernel} copies one of {FFT_DTYPES}, got {src.dtype} -> {dt.name}"
        )
    if src.ndim != 3 or dst.ndim != 3 or src.shape[0] != dst.shape[0]:
        raise ValueError(
            f"{kernel}: {src_is} -> {dst_is}, got {src.shape} -> {dst.shape}"
        )
    if not (src.flags.c_contiguous and dst.flags.c_contiguous):
        src_name, dst_name = src_is.split()[0], dst_is.split()[0]
        raise ValueError(f"{kernel}: {src_name} and {dst_name} must be C-contiguous")
    return dt


def plan_fft_gather(
    src: Any,
    dst: Any,
    *,
    row_step: tuple[int, int],
    extent: tuple[int, int],
    origin: tuple[int, int],
    boundary: str,
) -> list[Launch]:
    """The launch of ``fft_gather`` writing ``dst (B, DI, DJ)`` from
    ``src (B, H, W)`` (both C-contiguous, one dtype of :data:`FFT_DTYPES`).

    Row ``i`` of ``dst[b]`` reads the extended image at ``(r, c) = (i * row_step[0],
    i * row_step[1] + j)``: ``dst[b, i, j] = ext(src[b])[r - origin[0], c -
    origin[1]]`` where ``r < extent[0]`` and ``c < extent[1]``, zero elsewhere;
    ``ext`` extends by ``boundary`` (``'fill'`` with zeros, ``'wrap'``, ``'symm'``).
    :func:`plan_fft_pad2d` and :func:`plan_fft_segments` give the two geometries.
    Nothing for an empty ``dst``.
    """
    dt = _check_fft_copy("fft_gather", src, dst, "src (B, H, W)", "dst (B, DI, DJ)")
    if boundary not in BOUNDARY_CODES:
        raise ValueError(
            f"boundary must be one of {tuple(BOUNDARY_CODES)}, got {boundary!r}"
        )
    B, H, W = (int(n) for n in src.shape)
    _, DI, DJ = (int(n) for n in dst.shape)
    rows = B * DI
    if rows == 0 or DJ == 0:
        return []
    if H == 0 or W == 0:
        raise ValueError("fft_gather: the source image is empty")
    # the kernel's int grid stride over rows (row += gridDim.y) must not overflow
    if rows > INT32_MAX - MAX_GRID_YZ or DJ > INT32_MAX:
        raise ValueError(f"fft_gather: {rows} rows of {DJ} exceed the int32 limits")
    i32, i64 = np.int32, np.int64
    args = (
        src, dst, i32(rows), i32(DI), i32(DJ), i32(H), i32(W), i32(row_step[0]),
        i64(row_step[1]), i32(min(extent[0], INT32_MAX)), i64(extent[1]),
        i32(origin[0]), i64(origin[1]), i32(BOUNDARY_CODES[boundary]),
    )  # fmt: skip
    grid = (-(-DJ // (FG_THREADS * FG_ITEMS)), min(rows, MAX_GRID_YZ), 1)
    return [Launch(SOURCE_FFT_GATHER, fft_gather_name(dt), grid, (FG_THREADS, 1, 1), 0,
                   args)]


def plan_fft_pad2d(fp: FilterProblem, in1: Any, xpad: Any, pad: bool) -> list[Launch]:
    """``fft_gather`` writing the 2-D FFT path's input ``xpad (B, sh, sw)``
    (:func:`fft_grid`): the image at the origin, zeros elsewhere (``pad`` False: a
    zero fill whose output lies inside the full correlation), or the window of the
    image extended by ``fp.boundary`` (a fill with zeros: the fill value is added
    after the transform) that the outputs read, ``(OH + KH - 1, OW + KW - 1)`` from
    ``(-pad_top, -pad_left)``, then zeros (``pad`` True)."""
    if pad:
        return plan_fft_gather(
            in1, xpad, row_step=(1, 0),
            extent=(fp.OH + fp.KH - 1, fp.OW + fp.KW - 1),
            origin=(fp.pad_top, fp.pad_left), boundary=fp.boundary,
        )  # fmt: skip
    return plan_fft_gather(in1, xpad, row_step=(1, 0), extent=(fp.H, fp.W),
                           origin=(0, 0), boundary="fill")


def plan_fft_segments(fp: FilterProblem, in1: Any, segs: Any) -> list[Launch]:
    """``fft_gather`` writing the segments ``segs (B, nseg, L)`` of the segmented
    1-D FFT (:func:`fft1d_segment`) from ``in1 (B, 1, W)``: segment ``s`` is the
    padded signal ``ext(in1)[s * (L - KW + 1) - pad_left + j]``, ``j < L``, with
    ``ext`` the boundary rule (``'fill'``: zeros) on the ``OW + KW - 1`` samples the
    outputs read, zeros after them."""
    L = int(segs.shape[-1])
    return plan_fft_gather(
        in1, segs, row_step=(0, L - fp.KW + 1), extent=(1, fp.OW + fp.KW - 1),
        origin=(0, fp.pad_left), boundary=fp.boundary,
    )  # fmt: skip


#: ``cuda/fft_crop.cu``: the pass after the 2-D FFT path's inverse transform (its
#: output window read once, the output written once, a non-zero fill value's
#: correction added on the way).
SOURCE_FFT_CROP = "fft_crop.cu"
#: ``FC_THREADS`` and ``FC_ITEMS`` of fft_crop.cu: threads per block, columns per
#: thread.
FC_THREADS = 256
FC_ITEMS = 4


def fft_crop_name(dtype: Any) -> str:
    return f"fft_crop<{CTYPES[np.dtype(dtype).name]}>"


def fft_fill_tables_name(dtype: Any) -> str:
    return f"fft_fill_tables<{CTYPES[np.dtype(dtype).name]}>"


def fft_crop_kernel_names() -> tuple[str, ...]:
    """Every instance of ``fft_crop.cu`` gpuconv launches (the KERNELS entry):
    ``fft_crop`` and ``fft_fill_tables`` per dtype."""
    return tuple(f(dt) for dt in FFT_DTYPES
                 for f in (fft_crop_name, fft_fill_tables_name))  # fmt: skip


#: ``FT_THREADS`` of fft_crop.cu: threads per block of ``fft_fill_tables``; its
#: grid x (one block per kernel) is capped at ``FT_MAX_GRID`` (the blocks stride
#: over the kernels beyond it).
FT_THREADS = 128
FT_MAX_GRID = INT32_MAX


def plan_fft_fill_tables(
    k: Any, above: Any, below: Any, left: Any, right: Any
) -> list[Launch]:
    """The launch of ``fft_fill_tables``: the summed-area tables of
    :func:`gpuconv._padding.fill_tables` (bit for bit: the same sequential sums) of
    ``k (Bk, KH, KW)`` (C-contiguous, one dtype of :data:`FFT_DTYPES`) into
    ``above``, ``below (Bk, KH + 1)`` and ``left``, ``right (Bk, KH + 1, KW + 1)``
    (C-contiguous, float64, complex128 for a complex ``k``); every entry written.
    """
    dt = np.dtype(k.dtype)
    if dt.name not in FFT_DTYPES:
        raise TypeError(f"fft_fill_tables sums one of {FFT_DTYPES}, got {dt.name}")
    wide = np.dtype(np.complex128 if dt.kind == "c" else np.float64)
    if k.ndim != 3 or 0 in k.shape:
        raise ValueError(f"fft_fill_tables: k must be (Bk, KH, KW), got {k.shape}")
    Bk, KH, KW = (int(n) for n in k.shape)
    want = ((Bk, KH + 1),) * 2 + ((Bk, KH + 1, KW + 1),) * 2
    tables = (above, below, left, right)
    if tuple(tuple(t.shape) for t in tables) != want or any(
            t.dtype != wide for t in tables):  # fmt: skip
        raise ValueError(
            f"fft_fill_tables: tables {want} of {wide.name} for k {k.shape} of "
            f"{dt.name}, got {[(t.shape, t.dtype.name) for t in tables]}"
        )
    if not all(t.flags.c_contiguous for t in (k, *tables)):
        raise ValueError("fft_fill_tables: k and the tables must be C-contiguous")
    if (KH + 1) * (KW + 1) > INT32_MAX:
        raise ValueError(f"fft_fill_tables: k {k.shape} exceeds the int32 limits")
    i32 = np.int32
    args = (k, above, below, left, right, i32(Bk), i32(KH), i32(KW))
    grid = (min(Bk, FT_MAX_GRID), 1, 1)
    return [Launch(SOURCE_FFT_CROP, fft_fill_tables_name(dt), grid, (FT_THREADS, 1, 1),
                   0, args)]  # fmt: skip


def plan_fft_crop(
    y: Any,
    out: Any,
    *,
    origin: tuple[int, int],
    tables: tuple[Any, Any, Any, Any] | None = None,
    fill: Any = None,
    image: tuple[int, int] = (0, 0),
    pads: tuple[int, int] = (0, 0),
) -> list[Launch]:
    """The launch of ``fft_crop`` writing ``out (B, OH, OW)`` from the window of
    ``y (B, sh, sw)`` at ``origin = (oy, ox)`` (both C-contiguous, one dtype of
    :data:`FFT_DTYPES`): ``out[b, i, j] = y[b, oy + i, ox + j]``, plus, with
    ``tables`` (:func:`gpuconv._padding.fill_tables` of the kernels, ``Bk`` 1 or
    ``B``) and the wide ``fill`` (:func:`gpuconv._padding.fill_value`), the fill
    correction of :func:`gpuconv._padding.add_fill_correction` for an image of
    shape ``image = (H, W)`` padded by ``pads = (pad_top, pad_left)``, bit for bit.
    Without tables a copy (the kernel reads no table). Nothing for an empty
    ``out``.
    """
    dt = _check_fft_copy("fft_crop", y, out, "y (B, sh, sw)", "out (B, OH, OW)")
    B, sh, sw = (int(n) for n in y.shape)
    _, OH, OW = (int(n) for n in out.shape)
    oy, ox = (int(v) for v in origin)
    if oy < 0 or ox < 0 or oy + OH > sh or ox + OW > sw:
        raise ValueError(
            f"fft_crop: the window {OH}x{OW} at {(oy, ox)} is not inside y {y.shape}"
        )
    wide = np.dtype(np.complex128 if dt.kind == "c" else np.float64)
    if (tables is None) != (fill is None):
        raise ValueError("fft_crop: pass the fill tables and the fill value together")
    KH = KW = kstep = 0
    H, W = (int(v) for v in image)
    pt, pl = (int(v) for v in pads)
    if tables is not None:
        above, below, left, right = tables
        Bk, th = (int(n) for n in above.shape) if above.ndim == 2 else (-1, -1)
        KH, KW = th - 1, int(left.shape[-1]) - 1
        if (Bk not in (1, B) or KH < 1 or KW < 1
                or tuple(below.shape) != (Bk, th)
                or tuple(left.shape) != (Bk, th, KW + 1)
                or tuple(right.shape) != (Bk, th, KW + 1)):  # fmt: skip
            raise ValueError(
                "fft_crop: tables (Bk, KH + 1) x 2 and (Bk, KH + 1, KW + 1) x 2 with "
                f"Bk 1 or {B}, got {[tuple(t.shape) for t in tables]}"
            )
        if any(t.dtype != wide for t in tables) or np.dtype(type(fill)) != wide:
            raise TypeError(
                f"fft_crop: the tables and the fill value of {dt.name} are "
                f"{wide.name}, got {[t.dtype.name for t in tables]} and "
                f"{np.dtype(type(fill)).name}"
            )
        if not all(t.flags.c_contiguous for t in tables):
            raise ValueError("fft_crop: the tables must be C-contiguous")
        if H < 1 or W < 1:
            raise ValueError("fft_crop: the image is empty")
        kstep = 0 if Bk == 1 else 1
        r0, r1, c0, c1 = fill_interior(H, W, KH, KW, pt, pl, OH, OW)
    else:
        above = below = left = right = None
        r0, r1, c0, c1 = 0, OH, 0, OW
        fill = wide.type(0)
    rows = B * OH
    if rows == 0 or OW == 0:
        return []
    # the kernel's int grid stride over rows (row += gridDim.y) must not overflow
    if rows > INT32_MAX - MAX_GRID_YZ or OW > INT32_MAX:
        raise ValueError(f"fft_crop: {rows} rows of {OW} exceed the int32 limits")
    if max(abs(H), abs(W), abs(pt), abs(pl)) > INT32_MAX:
        raise ValueError("fft_crop: the image and pads exceed the int32 limits")
    i32, i64 = np.int32, np.int64
    args = (
        y, out, i32(rows), i32(OH), i32(OW), i64(sh), i64(sw), i64(oy), i64(ox),
        above, below, left, right, i32(kstep), i32(KH), i32(KW), i64(H), i64(W),
        i64(pt), i64(pl), i32(r0), i32(r1), i32(c0), i32(c1), fill,
    )  # fmt: skip
    grid = (-(-OW // (FC_THREADS * FC_ITEMS)), min(rows, MAX_GRID_YZ), 1)
    block = (FC_THREADS, 1, 1)
    return [Launch(SOURCE_FFT_CROP, fft_crop_name(dt), grid, block, 0, args)]


def plan_fft_crop_fp(
    fp: FilterProblem,
    y: Any,
    out: Any,
    origin: tuple[int, int],
    tables: tuple[Any, Any, Any, Any] | None,
    fill: Any,
) -> list[Launch]:
    """``fft_crop`` of the 2-D FFT path of ``fp``: the output window of the inverse
    ``y`` at ``origin`` (:func:`fft_grid`) into ``out (B, OH, OW)``, with the fill
    correction of ``fp`` when ``tables`` and ``fill`` are given."""
    image, pads = (fp.H, fp.W), (fp.pad_top, fp.pad_left)
    return plan_fft_crop(
        y, out, origin=origin, tables=tables, fill=fill, image=image, pads=pads
    )


#: ``cuda/fft_spectrum_product.cu``: the 2-D FFT path's product with the kernel's
#: spectrum, computed on the fly from its two DFT factors (never written).
SOURCE_FFT_SPECTRUM = "fft_spectrum_product.cu"
#: ``FS_TV``, ``FS_TY``, ``FS_UPT`` and ``FS_MAX_RANK`` of fft_spectrum_product.cu:
#: spectrum columns per block, thread rows, rows per thread, the largest factor
#: rank ``R``.
FS_TV = 32
FS_TY = 4
FS_UPT = 8
FS_TU = FS_TY * FS_UPT
FS_MAX_RANK = 32
#: With one kernel for every image, the images are split over grid z until about
#: this many blocks exist (each block computes its tile of the kernel's spectrum
#: once, for all of its images): 2048 blocks of 128 threads fill 132 SMs ~2x over.
FS_TARGET_BLOCKS = 2048
#: The dtypes of the spectra (the transforms' outputs).
SPECTRUM_DTYPES = ("complex64", "complex128")


def fft_spectrum_product_name(dtype: Any) -> str:
    return f"fft_spectrum_product<{CTYPES[np.dtype(dtype).name]}>"


def fft_spectrum_product_kernel_names() -> tuple[str, ...]:
    """Every instance of ``fft_spectrum_product.cu`` (the KERNELS entry)."""
    return tuple(fft_spectrum_product_name(dt) for dt in SPECTRUM_DTYPES)


def plan_fft_spectrum_product(
    spec: Any, a: Any, g: Any, scale: float = 1.0
) -> list[Launch]:
    """The launch of ``fft_spectrum_product``: ``spec (B, U, V) = (spec * scale) *
    (a @ g)`` in place, image by image (``scale`` rounded to the spectrum's real
    type), with ``a (Ba, U, R)`` and ``g (Bg, R, V)`` (``Ba``, ``Bg`` each 1,
    a factor shared by every image, or ``B``); all C-contiguous, one dtype of
    :data:`SPECTRUM_DTYPES`, ``1 <= R <= FS_MAX_RANK``. The product ``a @ g`` (the
    kernel's spectrum) is summed per element in the kernel and never written.
    Nothing for an empty ``spec``. ``spec`` must not overlap ``a`` or ``g`` (the
    kernel reads the factors while other blocks write the spectrum; not checked
    here: the FFT path's spectrum and factors are distinct allocations).
    """
    dt = np.dtype(spec.dtype)
    if dt.name not in SPECTRUM_DTYPES or a.dtype != dt or g.dtype != dt:
        raise TypeError(
            f"fft_spectrum_product multiplies one of {SPECTRUM_DTYPES}, got "
            f"{spec.dtype}, {a.dtype}, {g.dtype}"
        )
    if spec.ndim != 3 or a.ndim != 3 or g.ndim != 3:
        raise ValueError("fft_spectrum_product: spec, a and g must be 3-D")
    B, U, V = (int(n) for n in spec.shape)
    Ba, Ua, R = (int(n) for n in a.shape)
    Bg, Rg, Vg = (int(n) for n in g.shape)
    if (Ua, Rg, Vg) != (U, R, V) or Ba not in (1, B) or Bg not in (1, B):
        raise ValueError(
            f"fft_spectrum_product: spec (B, U, V) *= a (1 or B, U, R) @ g (1 or B, "
            f"R, V), got {spec.shape}, {a.shape}, {g.shape}"
        )
    if not all(t.flags.c_contiguous for t in (spec, a, g)):
        raise ValueError("fft_spectrum_product: spec, a and g must be C-contiguous")
    if B == 0 or U == 0 or V == 0:
        return []
    if not 1 <= R <= FS_MAX_RANK:
        raise ValueError(
            f"fft_spectrum_product: the rank R must be in 1..{FS_MAX_RANK}, got {R}"
        )
    # (int row indices u0 + 31 in the kernel; grid y strides over the row tiles)
    if U > INT32_MAX - FS_TU or V > INT32_MAX - FS_TV or B > INT32_MAX:
        raise ValueError(f"fft_spectrum_product: {spec.shape} exceeds the int32 limits")
    gx, gy = -(-V // FS_TV), min(-(-U // FS_TU), MAX_GRID_YZ)
    shared = Ba == 1 and Bg == 1
    per = 1
    if shared:  # each block's tile of the spectrum serves `per` images
        gz = min(B, max(1, -(-FS_TARGET_BLOCKS // (gx * gy))))
        per = -(-B // gz)
    gz = min(-(-B // per), MAX_GRID_YZ)
    i32, i64 = np.int32, np.int64
    real = np.float32 if dt == np.complex64 else np.float64
    # (argument 10 is `per`, the images per block: the tests read it)
    args = (
        spec, a, g, i32(B), i32(U), i32(V), i32(R), i64(U * R if Ba > 1 else 0),
        i64(R * V if Bg > 1 else 0), i32(shared), i32(per), real(scale),
    )  # fmt: skip
    return [Launch(SOURCE_FFT_SPECTRUM, fft_spectrum_product_name(dt), (gx, gy, gz),
                   (FS_TV, FS_TY, 1), 0, args)]  # fmt: skip


def fft1d_seconds(fp: FilterProblem) -> float:
    """Modelled time of the segmented FFT (uncalibrated, see
    :data:`FFT1D_PASSES`): the padded signal written and read once, the
    segments' spectra :data:`FFT1D_PASSES` times, the output once."""
    dt = np.dtype(fp.dtype)
    L, nseg = fft1d_segment(fp)
    real = dt.kind != "c"
    csize = 2 * dt.itemsize if real else dt.itemsize
    spec = fp.B * nseg * (L // 2 + 1 if real else L) * csize
    sig = fp.B * (nseg * (L - fp.KW + 1) + fp.KW - 1) * dt.itemsize
    nbytes = spec * FFT1D_PASSES + 2 * sig + fp.B * fp.OW * dt.itemsize
    return HOST_CALL_SECONDS + DEVICE_SECONDS["fft"] + nbytes * BYTE_SECONDS["fft"]


def choose_filter1d(fp: FilterProblem, method: str) -> str | None:
    """``'filter1d'`` or ``'fft'`` for a 1-D problem (:func:`filter1d_candidate`),
    ``None`` where the 2-D choice (:func:`choose_algorithm`) stands.

    ``'direct'`` and the internal ``'filter1d'`` run the 1-D kernel; ``'fft'``
    the segmented FFT (``'fft1d'``) where :func:`fft1d_ok`; ``'auto'`` takes the
    cheapest of the kernel and the FFT (float and complex;
    :func:`filter1d_seconds`, :func:`fft1d_seconds` or :func:`fft_seconds`); the
    forced ``'naive'``, ``'tiled'`` and ``'separable'`` keep their 2-D meaning.

    >>> import numpy as np
    >>> from gpuconv._filter_args import FilterProblem
    >>> def sig(n, k):
    ...     return FilterProblem(1, 1, n, 1, 1, k, 0, k - 1, 1, n + k - 1, "fill",
    ...                          0.0, np.dtype("float32"))
    >>> [choose_filter1d(sig(10**7, k), "auto") for k in (31, 10**4)]
    ['filter1d', 'fft1d']
    """
    if not filter1d_candidate(fp):
        return None
    if method in ("direct", "filter1d"):
        return "filter1d"
    if method in ("fft", "fft1d") and fft1d_ok(fp):
        return "fft1d"
    if method != "auto":
        return None
    if fft1d_ok(fp):
        fft, cost = "fft1d", fft1d_seconds(fp)
    elif np.dtype(fp.dtype).kind in "fc":
        fft, cost = "fft", fft_seconds(fp)
    else:
        return "filter1d"
    return fft if cost < filter1d_seconds(fp) else "filter1d"


def plan_filter1d(
    fp: FilterProblem,
    in1: Any,
    k: Any,
    out: Any,
    *,
    vector: bool = True,
    conj: bool = False,
) -> list[Launch]:
    """The launch of ``filter1d_tiled`` computing ``out (B, 1, OW)`` from
    ``in1 (B, 1, W)`` (C-contiguous) and ``k (Bk, 1, KW)`` (any strides: the
    kernel view, :func:`kernel_view_ok`), all of ``fp.dtype``; ``conj``
    conjugates the taps (flag bit 3).

    One block of :data:`F1D_THREADS` threads per tile of ``F1D_THREADS * R``
    outputs, the batch over grid y (the kernel loops over the rest). ``vector``
    allows 128-bit loads/stores where rows and buffers are 16-byte aligned (flag
    bits 0 and 1; tests turn it off to run the scalar paths).
    """
    _check_problem(fp, in1, k, out)
    if not filter1d_candidate(fp):
        raise ValueError(f"filter1d_tiled computes 1-D problems, not {fp}")
    dt = np.dtype(fp.dtype)
    i32 = np.int32
    flags = _vector_flags(fp, in1, out, vector) | (FLAG_CONJ_KERNEL if conj else 0)
    fill = np.asarray(fp.fillvalue).astype(dt).reshape(-1)[0]
    ks_b, _, ks_c = kernel_view_strides(k)
    i64 = np.int64
    args = (
        in1, k, out, i32(fp.B), i32(fp.W), i32(fp.KW), i32(fp.pad_left), i32(fp.OW),
        i64(ks_b), i64(ks_c), i32(BOUNDARY_CODES[fp.boundary]), fill, i32(flags),
    )  # fmt: skip
    tw = F1D_THREADS * (F1D_OUT_BYTES // dt.itemsize)
    grid = (-(-fp.OW // tw), min(fp.B, MAX_GRID_YZ), 1)
    smem = filter1d_smem_bytes(dt.itemsize, fp.KW)
    return [
        Launch(SOURCE_1D, filter1d_name(dt), grid, (F1D_THREADS, 1, 1), smem, args,
               views=(1,))
    ]


METHODS = ("auto", "direct", "fft", "naive", "tiled", "separable")


def choose_algorithm(fp: FilterProblem, method: str = "auto") -> str:
    """The algorithm that runs ``fp``: ``'naive'``, ``'tiled'`` or ``'fft'``.

    ``method`` is the public ``'auto'``/``'direct'``/``'fft'`` or a forced
    ``'naive'``/``'tiled'`` (tests, benchmarks). Integer and boolean problems never
    take the FFT (it cannot reproduce their wrap-around); ``'direct'`` means the tiled
    kernel when its tile fits in shared memory, else the naive one; ``'auto'`` takes
    whichever of the naive kernel, the tiled kernel (when it fits) and the FFT
    (float and complex) the cost model (:func:`direct_seconds`,
    :func:`fft_seconds`) says is fastest.

    Examples
    --------
    >>> import numpy as np
    >>> from gpuconv._filter_args import FilterProblem
    >>> fp = FilterProblem(1, 4096, 4096, 1, 3, 3, 1, 1, 4096, 4096, "fill", 0.0,
    ...                    np.dtype("float32"))
    >>> choose_algorithm(fp)
    'tiled'
    >>> big = FilterProblem(1, 4096, 4096, 1, 63, 63, 31, 31, 4096, 4096, "fill", 0.0,
    ...                     np.dtype("float32"))
    >>> choose_algorithm(big)
    'fft'
    """
    if method not in METHODS:
        raise ValueError(
            "Acceptable method flags are 'auto', 'direct', or 'fft'. "
            f"(internal: also 'naive', 'tiled', 'separable'); got {method!r}"
        )
    if method == "naive":
        return "naive"
    if method == "separable":  # forced two passes (tests); direct if not rank 1
        method = "direct"
    dt = np.dtype(fp.dtype)
    fft_ok = dt.kind in "fc"
    fits = tiled_fits(fp)
    if method == "tiled":
        if not fits:
            raise ValueError(
                f"the tiled filter kernel does not fit in {MAX_SHARED_MEM} bytes of "
                f"shared memory for a {fp.KH}x{fp.KW} {dt.name} kernel"
            )
        return "tiled"
    direct = "tiled" if fits else "naive"
    if method == "fft":
        return "fft" if fft_ok else direct
    if method == "direct":
        return direct
    best, cost = "naive", direct_seconds(fp, "naive")
    if fits:
        tiled = direct_seconds(fp, "tiled")
        if tiled <= cost:
            best, cost = "tiled", tiled
    if fft_ok and fft_seconds(fp) < cost:
        return "fft"
    return best


# ---------------------------------------------------------------------------------
# Launch planning
# ---------------------------------------------------------------------------------
def _vector_flags(fp: FilterProblem, in1: Any, out: Any, vector: bool) -> int:
    """The kernels' 128-bit access flags: bit 0 where every input row is 16-byte
    aligned (``W`` a multiple of the vector and ``in1`` aligned), bit 1 the same
    for the output rows; none where ``vector`` is off."""
    if not vector:
        return 0
    vec = 16 // np.dtype(fp.dtype).itemsize
    flags = 0
    if fp.W % vec == 0 and device_address(in1) % 16 == 0:
        flags |= 1
    if fp.OW % vec == 0 and device_address(out) % 16 == 0:
        flags |= 2
    return flags


def check_extents(fp: FilterProblem) -> None:
    """``ValueError`` unless ``fp`` is a non-empty problem within the kernels'
    32-bit extent limits (the CUDA op checks it before allocating anything)."""
    if min(fp.B, fp.H, fp.W, fp.Bk, fp.KH, fp.KW, fp.OH, fp.OW) < 1:
        raise ValueError("filter kernels need a non-empty problem")
    if fp.Bk not in (1, fp.B):
        raise ValueError(f"kernel stack of {fp.Bk} for {fp.B} images")
    if fp.pad_top < 0 or fp.pad_left < 0 or fp.pad_bottom < 0 or fp.pad_right < 0:
        raise ValueError("filter kernels need non-negative pads")
    sides = (fp.H + 2 * fp.KH, fp.W + 2 * fp.KW, fp.OH + fp.KH, fp.OW + fp.KW)
    if max(sides) > INT32_MAX:
        raise ValueError("an image side of 2**31 or more is not supported")
    if fp.KH * fp.KW > INT32_MAX:
        raise ValueError("a kernel of 2**31 or more taps is not supported")


def _check_problem(fp: FilterProblem, in1: Any, k: Any, out: Any) -> None:
    dt = np.dtype(fp.dtype)
    if dt.name not in CTYPES:
        raise TypeError(f"no filter kernel for dtype {dt.name}")
    check_extents(fp)
    for name, a, shape in (
        ("in1", in1, (fp.B, fp.H, fp.W)),
        ("out", out, (fp.B, fp.OH, fp.OW)),
    ):
        if tuple(a.shape) != shape or a.dtype != dt or not a.flags.c_contiguous:
            raise ValueError(
                f"{name} must be a C-contiguous {dt.name} array of shape {shape}, "
                f"got {a.dtype} {tuple(a.shape)}"
            )
    shape = (fp.Bk, fp.KH, fp.KW)
    if tuple(k.shape) != shape or k.dtype != dt or not kernel_view_ok(k):
        raise ValueError(
            f"k must be a {dt.name} array of shape {shape} (any strides that are "
            f"whole elements, on an element-aligned address), got {k.dtype} "
            f"{tuple(k.shape)} with strides {tuple(k.strides)}"
        )


#: Flag bit of every filter kernel (filter2d_naive, filter2d_tiled, filter1d_tiled):
#: conjugate the taps as they are read (``gcf::FLAG_CONJ_KERNEL``).
FLAG_CONJ_KERNEL = 8


def kernel_view_ok(k: Any) -> bool:
    """Whether the kernels can read ``k`` through its strides (the kernel view of
    ``cuda/filter_common.cuh``): every stride a whole number of elements (any
    sign) and the first element on an address aligned for its type. Every array
    NumPy or CuPy makes by slicing, reversing, transposing or broadcasting a
    well-formed array is; a byte-offset view is not (the op copies it)."""
    dt = k.dtype
    size = dt.itemsize
    if any(st % size for st in k.strides):
        return False
    align = size // 2 if dt.kind == "c" else size
    return device_address(k) % align == 0


def kernel_view_strides(k: Any) -> tuple[int, ...]:
    """The element strides of the kernel view ``k`` (``kernel_view_ok``), 0 on
    every axis of extent 1 (so that every view of the same taps has one key)."""
    size = k.dtype.itemsize
    return tuple(0 if n == 1 else st // size
                 for n, st in zip(k.shape, k.strides, strict=True))


def plan_filter(
    fp: FilterProblem,
    in1: Any,
    k: Any,
    out: Any,
    algorithm: str,
    *,
    block: tuple[int, int] | None = None,
    vector: bool = True,
    conj: bool = False,
    ry: int | None = None,
    pipelined: bool = False,
    sm_count: int | None = None,
    smem_per_sm: int | None = None,
) -> list[Launch]:
    """The launches computing ``out`` from ``in1`` and ``k`` with a direct kernel.

    Parameters
    ----------
    fp : FilterProblem
        The validated problem.
    in1, k, out : arrays
        Device buffers of ``fp.dtype``: ``in1 (B, H, W)`` and ``out (B, OH, OW)``
        C-contiguous, ``k (Bk, KH, KW)`` with any strides that are whole elements
        (the kernel view, :func:`kernel_view_ok`: a flipped kernel is passed as
        it is, its strides are kernel arguments).
    algorithm : {'naive', 'tiled'}
    block : (int, int), optional
        Force the thread block (tests).
    vector : bool
        Allow 128-bit loads/stores where the buffers are aligned (tests turn it off
        to exercise the scalar paths).
    conj : bool
        Conjugate the taps as they are read (complex correlation).
    ry : int, optional
        Force another registered ``RY`` of a compile-time instance
        (:data:`RY_ALTERNATIVES`; tests and ``bench/filter_kernel_time.py``).
    pipelined : bool
        ``'tiled'`` as the persistent, double-buffered
        ``filter2d_tiled_pipelined`` (:data:`PIPELINED` cases only, else
        ``ValueError``; never chosen otherwise), its grid sized by
        :func:`pipelined_grid` for ``sm_count`` SMs of ``smem_per_sm`` bytes of
        shared memory.

    The last kernel argument is the flags: bit 0 and 1 the 16-byte alignment of
    the input and output rows (:func:`_vector_flags`; ``filter2d_tiled``), bit 2
    the register-staged loader in a compile-time instance (:data:`REGISTER_STAGED`),
    bit 3 the conjugation (:data:`FLAG_CONJ_KERNEL`).
    """
    _check_problem(fp, in1, k, out)
    dt = np.dtype(fp.dtype)
    i32 = np.int32
    ks_b, ks_r, ks_c = (np.int64(s) for s in kernel_view_strides(k))
    fill = np.asarray(fp.fillvalue).astype(dt).reshape(-1)[0]
    common = (
        in1, k, out,
        i32(fp.B), i32(fp.H), i32(fp.W), i32(fp.KH), i32(fp.KW),
        i32(fp.pad_top), i32(fp.pad_left), i32(fp.OH), i32(fp.OW),
        ks_b, ks_r, ks_c, i32(BOUNDARY_CODES[fp.boundary]), fill,
    )  # fmt: skip
    conj_flag = FLAG_CONJ_KERNEL if conj else 0
    gz = min(fp.B, MAX_GRID_YZ)
    if algorithm == "naive":
        bx, by = block if block is not None else naive_block(fp)
        grid = (-(-fp.OW // bx), min(-(-fp.OH // by), MAX_GRID_YZ), gz)
        return [Launch(SOURCE, naive_name(dt), grid, (bx, by, 1), 0,
                       (*common, i32(conj_flag)), views=(1,))]  # fmt: skip
    if algorithm != "tiled":
        raise ValueError(f"plan_filter plans 'naive' or 'tiled', not {algorithm!r}")
    if pipelined and not pipelined_registered(fp, ry):
        raise ValueError(
            f"no pipelined tiled instance for {fp} (ry={ry}); registered: "
            f"{sorted(PIPELINED)} with RY {RY_SPECIALISED}"
        )
    cfg = tiled_config(fp, block, ry)
    if cfg is None:
        raise ValueError(f"no tiled filter launch fits for {fp} (ry={ry})")
    bx, by = cfg.block
    tw, th = bx * rx(dt.itemsize), by * cfg.ry
    flags = _vector_flags(fp, in1, out, vector) | conj_flag
    if pipelined:
        smem = pipelined_smem_bytes(dt.itemsize, cfg.block, cfg.ry, fp.KH, fp.KW)
        if smem > MAX_SHARED_MEM:
            raise ValueError(f"the pipelined tiles of {fp} do not fit 48 KiB "
                             f"(block {cfg.block}: {smem} bytes)")  # fmt: skip
        nblocks = pipelined_grid(fp, cfg.block, cfg.ry, smem, sm_count, smem_per_sm)
        if fp.B * -(-fp.OH // th) * -(-fp.OW // tw) + nblocks >= 2**31:
            raise ValueError(f"{fp}: too many tiles for the pipelined kernel's "
                             "32-bit tile index")  # fmt: skip
        return [
            Launch(
                SOURCE, pipelined_name(dt, fp.KH, fp.KW, cfg.ry), (nblocks, 1, 1),
                (bx, by, 1), smem, (*common, i32(flags)), views=(1,),
            )
        ]  # fmt: skip
    if _tiled_instance(fp)[1] and (dt.name, fp.KH) in REGISTER_STAGED:
        flags |= 4
    grid = (-(-fp.OW // tw), min(-(-fp.OH // th), MAX_GRID_YZ), gz)
    return [
        Launch(
            SOURCE, cfg.kernel, grid, (bx, by, 1), cfg.shared_mem,
            (*common, i32(flags)), views=(1,),
        )
    ]


__all__ = [
    "CTYPES",
    "check_extents",
    "choose_algorithm",
    "choose_filter1d",
    "direct_device_seconds",
    "direct_features",
    "direct_seconds",
    "fft_device_seconds",
    "fft_features",
    "fft_grid",
    "fft1d_ok",
    "fft1d_seconds",
    "fft1d_segment",
    "fft_seconds",
    "filter1d_candidate",
    "filter1d_features",
    "filter1d_kernel_names",
    "filter1d_seconds",
    "filter1d_smem_bytes",
    "kernel_names",
    "kernel_view_ok",
    "kernel_view_strides",
    "next_fast_len",
    "plan_filter",
    "plan_filter1d",
    "pipelined_grid",
    "pipelined_name",
    "pipelined_smem_bytes",
    "separable_candidate",
    "separable_problems",
    "separable_device_seconds",
    "separable_features",
    "separable_seconds",
    "tiled_config",
    "tiled_fits",
    "tiled_smem_bytes",
]
