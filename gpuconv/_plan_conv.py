"""The launch planner of the conv2d kernel family (plain Python, no GPU needed).

From a validated :class:`~gpuconv._conv_args.Conv2dProblem`, an algorithm and the
device buffers, each ``plan_*`` function returns the list of
:class:`~gpuconv._launch.Launch` records that compute the pass: grid, block,
dynamic shared memory and the kernel arguments, with every scalar typed exactly as
the kernel declares it (``np.int32`` for ``int``, ``np.int64`` for ``long long``).
:class:`gpuconv._kernels.CupyDevice` runs them on a GPU and
``gpuconv._emulate.EmulatedDevice`` on the CPU, unchanged.

Geometry rules every plan obeys (``tests/test_plan_conv.py`` checks them):

- grids are 1-D (``grid = (blocks, 1, 1)``): ``gridDim.y``/``z`` never exceed 65535
  whatever ``N*C`` or ``groups``; the block index is decomposed inside the kernel;
- never an empty launch (the public API handles empty problems itself);
- dynamic shared memory at most :data:`SMEM_LIMIT` (48 KiB, the default without an
  opt-in attribute);
- single extents and the planes ``H*W``, ``OH*OW`` fit in ``int``; everything that
  spans planes is ``long long`` in the kernels (64-bit index arithmetic).

The convolution kernels realise zero padding in their index mapping. The other
padding modes are planned as a pad-once gather (:func:`plan_pad_gather`) before the
convolution of the padded problem (:func:`padded_problem`, pads 0), and a fold
(:func:`plan_pad_fold`) after the input gradient of the padded problem.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from gpuconv._conv_args import Conv2dProblem
from gpuconv._kernels import (
    CONV_REGBLOCK_TILES,
    CONV_TILED_TILE,
    CTYPES,
    conv_kernel_name,
)
from gpuconv._launch import Launch
from gpuconv._padding import pad_index
from gpuconv._precision import applies_tf32

PASSES = ("forward", "backward_input", "backward_weight")
VARIANTS = ("naive", "tiled", "tiled_regblock")
SOURCES = {
    "forward": "conv2d_forward.cu",
    "backward_input": "conv2d_backward_input.cu",
    "backward_weight": "conv2d_backward_weight.cu",
}
PAD_SOURCE = "conv2d_pad.cu"
WINOGRAD_SOURCE = "conv2d_winograd.cu"

#: Dynamic shared memory a launch may use without opting in (bytes).
SMEM_LIMIT = 48 * 1024
#: Threads per block of the 1-D grid-stride kernels (naive, pad, fold).
LINEAR_BLOCK = 256
#: Most blocks a grid-stride kernel is launched with; the loop covers the rest.
LINEAR_MAX_BLOCKS = 1 << 20
#: Streaming multiprocessors assumed by the tile choice (H100 SXM: 132).
DEFAULT_SM_COUNT = 132
INT32_MAX = 2**31 - 1
#: ``auto`` uses the register-blocked implicit GEMM only when both GEMM sides have
#: at least this many columns/reduction terms; below that most of a tile is waste.
#: Checked on the H200 rows (bench/results/cuda-h200-2026-12-04-08aa471-conv*.json):
#: at C/groups = 3 (7x7/2 input gradient) ``tiled`` beats ``tiled_regblock`` 1.7x,
#: so the rows allow any value above 3 (``python bench/calibrate.py`` prints the
#: range; tests/test_calibration.py replays them).
REGBLOCK_MIN_COLS = 16
REGBLOCK_MIN_RED = 16
#: The input gradient takes ``tiled_regblock`` whatever its columns when its
#: reduction (``K/groups * KH * KW`` terms per input pixel) is at least this long:
#: the ``tiled`` kernel walks it serially per thread, the register-blocked GEMM
#: (phase-decomposed for stride > 1) spreads it. Measured on the H200 at df4f664
#: (bench/results/cuda-h200-2026-12-04-df4f664-conv.json), the 7x7/2 C3 -> 64 stem
#: (3136 terms, 3 columns): ``tiled_regblock`` 0.964 ms vs ``tiled`` 9.83 ms at
#: N16, 1.92 vs 19.4 ms at N32 (cuDNN FP32 0.255 / 0.51 ms). No measured layer lies
#: between 16 and 3136 terms with fewer than 16 columns: the value is a round
#: number well above the depthwise/few-tap layers that keep ``tiled``.
DGRAD_REGBLOCK_MIN_RED = 1024
#: The input gradient's ``tiled_regblock`` plan for fewer than
#: :data:`REGBLOCK_MIN_COLS` input channels per group is a GEMM into a column
#: workspace plus the ``col2im`` gather (:func:`dgrad_col2im`) when that workspace
#: (``N * C * KH * KW * OH * OW`` elements) takes at most this many bytes: 236 MB
#: for the 7x7/2 RGB stem at N32, float32. Larger problems keep the phases.
COL2IM_MAX_BYTES = 256 << 20


# --------------------------------------------------------------------------------
# typed arguments and limits


def ctype_of(dtype: Any) -> str:
    """C type name of a real compute dtype (``'float'``/``'double'``)."""
    name = np.dtype(dtype).name
    if name not in CTYPES:
        raise TypeError(
            f"the CUDA conv2d kernels support float32 and float64, got {name}"
        )
    return CTYPES[name]


def _i32(value: int, what: str) -> np.int32:
    if not 0 <= value <= INT32_MAX:
        raise ValueError(
            f"{what} = {value} does not fit the kernels' 32-bit extent arguments"
        )
    return np.int32(value)


def _i64(value: int) -> np.int64:
    return np.int64(value)


def check_extents(p: Conv2dProblem) -> None:
    """``ValueError`` unless every single extent and plane fits in ``int``.

    Products that span planes (``N*C*H*W``, flat indices) are 64-bit in the
    kernels; these are the values the kernels keep in 32 bits. A margin of 1024
    covers tile overhang (``p + BM`` inside a plane).
    """
    Hp, Wp = p.padded_hw
    limits = {
        "N": p.N, "C": p.C, "K": p.K, "H*W": p.H * p.W,
        "padded H*W": Hp * Wp, "OH*OW": p.OH * p.OW,
        "C/groups*KH*KW": p.Cg * p.KH * p.KW, "K/groups*KH*KW": p.Kg * p.KH * p.KW,
        "padded H + dilated kernel": p.dilation[0] * (p.KH - 1) + 1 + Hp,
        "padded W + dilated kernel": p.dilation[1] * (p.KW - 1) + 1 + Wp,
        "stride*OH + padded H": p.stride[0] * p.OH + Hp,
        "stride*OW + padded W": p.stride[1] * p.OW + Wp,
    }
    for what, v in limits.items():
        if v > INT32_MAX - 1024:
            raise ValueError(
                f"conv2d on CUDA: {what} = {v} exceeds the 32-bit extent limit of "
                "the kernels; split the problem (e.g. along the batch)"
            )


def _linear_grid(total: int) -> tuple[int, int, int]:
    blocks = -(-total // LINEAR_BLOCK)
    return (max(1, min(blocks, LINEAR_MAX_BLOCKS)), 1, 1)


def _linear_launch(*, source: str, kernel: str, total: int,
                   args: tuple[Any, ...]) -> Launch:
    """A launch of a 1-D grid-stride kernel over ``total`` elements (blocks of
    :data:`LINEAR_BLOCK` threads, no dynamic shared memory)."""
    return Launch(source=source, kernel=kernel, grid=_linear_grid(total),
                  block=(LINEAR_BLOCK, 1, 1), shared_mem=0, args=args)


def _blocks_1d(blocks: int, what: str) -> tuple[int, int, int]:
    if blocks > INT32_MAX:
        raise ValueError(f"{what}: {blocks} thread blocks exceed CUDA's grid limit")
    return (blocks, 1, 1)


# --------------------------------------------------------------------------------
# geometry helpers


def needs_padding_copy(p: Conv2dProblem) -> bool:
    """True when the border is not zeros (the input is padded once, then folded)."""
    return p.padding_mode != "zeros" and any(p.padding)


def padded_problem(p: Conv2dProblem) -> Conv2dProblem:
    """The same convolution on the padded input ``(H + pt + pb, W + pl + pr)``
    with padding 0 (what the kernels run for the non-zero padding modes)."""
    Hp, Wp = p.padded_hw
    return dataclasses.replace(
        p, H=Hp, W=Wp, padding=(0, 0, 0, 0), padding_mode="zeros"
    )


def gemm_shape(p: Conv2dProblem, pass_name: str) -> tuple[int, int, int]:
    """``(M, NG, KR)`` of the implicit GEMM of a pass (per group for NG, KR)."""
    if pass_name == "forward":
        return p.N * p.OH * p.OW, p.Kg, p.Cg * p.KH * p.KW
    if pass_name == "backward_input":
        return p.N * p.H * p.W, p.Cg, p.Kg * p.KH * p.KW
    if pass_name == "backward_weight":
        return p.Kg, p.Cg * p.KH * p.KW, p.N * p.OH * p.OW
    raise ValueError(f"pass must be one of {PASSES}, got {pass_name!r}")


def tiled_smem_rows_cols(p: Conv2dProblem, pass_name: str) -> tuple[int, int]:
    """Shared tile ``(s_rows, s_cols)`` of the ``tiled`` kernel of a pass."""
    tw, th = CONV_TILED_TILE
    (sh, sw), (dh, dw) = p.stride, p.dilation
    ekh, ekw = (p.KH - 1) * dh, (p.KW - 1) * dw  # dilated kernel extent - 1
    if pass_name == "forward":
        return (th - 1) * sh + ekh + 1, (tw - 1) * sw + ekw + 1
    if pass_name == "backward_input":
        return (th - 1 + ekh) // sh + 2, (tw - 1 + ekw) // sw + 2
    raise ValueError(f"no tiled plan for pass {pass_name!r} here")


def tiled_smem_bytes(p: Conv2dProblem, pass_name: str) -> int:
    """Dynamic shared memory of the ``tiled`` kernel: the staged tile plus taps."""
    rows, cols = tiled_smem_rows_cols(p, pass_name)
    return (rows * cols + p.KH * p.KW) * np.dtype(p.compute_dtype).itemsize


def choose_algorithm(p: Conv2dProblem, pass_name: str) -> str:
    """The kernel variant that ``algorithm='auto'`` runs for a pass.

    Parameters
    ----------
    p : Conv2dProblem
        The problem as the kernels see it (for non-zero padding modes: the padded
        problem).
    pass_name : {'forward', 'backward_input', 'backward_weight'}

    Returns
    -------
    str
        ``'nhwc'`` for the forward pass and the stride-1 input gradient where
        :func:`fwd_nhwc_preferred` (``conv2d_forward_nhwc``: the GEMM on operands
        packed to NHWC, ``cp.async`` stages). For the weight gradient ``'nhwc'``
        (``conv2d_backward_weight_nhwc``:
        the GEMM on operands packed to NHWC, :func:`wgrad_nhwc_applies`) where
        ``'tiled_regblock'`` would run, the channel counts allow it (float32,
        C/groups and K/groups multiples of 4) and the GEMM has at least
        :data:`WGRAD_NHWC_MIN_MACS` multiply-adds; else ``'unfold'``
        (``conv2d_backward_weight_unfold``: the GEMM along the output pixels on
        ``x`` unfolded along its width) where :func:`wgrad_unfold_preferred` (the
        few-channel layers: the RGB stem). ``'tiled_regblock'`` when the
        implicit GEMM has at least :data:`REGBLOCK_MIN_COLS` columns (output
        channels per group for the forward pass, input channels per group for
        the input gradient, ``C/groups * KH * KW`` for the weight gradient) and
        :data:`REGBLOCK_MIN_RED` reduction terms, or for the input gradient
        :data:`DGRAD_REGBLOCK_MIN_RED` reduction terms (the RGB stem); otherwise
        ``'tiled'`` when its shared tile fits :data:`SMEM_LIMIT` (depthwise and
        few-channel layers); otherwise
        ``'naive'``.

    Examples
    --------
    >>> import numpy as np
    >>> from gpuconv._conv_args import normalize_conv2d
    >>> p = normalize_conv2d((16, 64, 56, 56), (64, 64, 3, 3), [np.float32], padding=1)
    >>> choose_algorithm(p, "forward")
    'tiled_regblock'
    >>> q = normalize_conv2d((16, 128, 28, 28), (128, 128, 3, 3), [np.float32],
    ...                      padding=1)
    >>> choose_algorithm(q, "forward")
    'nhwc'
    >>> choose_algorithm(dataclasses.replace(q, dtype=np.dtype("d"),
    ...                                      compute_dtype=np.dtype("d")), "forward")
    'tiled_regblock'
    >>> choose_algorithm(p, "backward_weight")
    'nhwc'
    >>> dw = normalize_conv2d((1, 32, 56, 56), (32, 1, 3, 3), [np.float32], groups=32)
    >>> choose_algorithm(dw, "forward")
    'tiled'
    """
    if pass_name not in PASSES:
        raise ValueError(f"pass must be one of {PASSES}, got {pass_name!r}")
    if pass_name == "backward_weight":
        # GEMM M = K/groups, NG = C/groups*KH*KW, KR = N*OH*OW (split over blocks).
        m, ng, _ = gemm_shape(p, pass_name)
        if min(m, ng) >= REGBLOCK_MIN_COLS:
            macs = m * ng * p.groups * p.N * p.OH * p.OW
            if wgrad_nhwc_applies(p) and macs >= WGRAD_NHWC_MIN_MACS:
                return "nhwc"
            return "unfold" if wgrad_unfold_preferred(p) else "tiled_regblock"
        return "tiled" if wgrad_tiled_smem_bytes(p) <= SMEM_LIMIT else "naive"
    _, ng, kr = gemm_shape(p, pass_name)
    if fwd_nhwc_preferred(p, pass_name):
        return "nhwc"
    if ng >= REGBLOCK_MIN_COLS and kr >= REGBLOCK_MIN_RED:
        return "tiled_regblock"
    if pass_name == "backward_input" and kr >= DGRAD_REGBLOCK_MIN_RED:
        return "tiled_regblock"
    if tiled_smem_bytes(p, pass_name) <= SMEM_LIMIT:
        return "tiled"
    return "naive"


def resolve_algorithm(p: Conv2dProblem, pass_name: str, algorithm: str) -> str:
    """``choose_algorithm`` for ``'auto'``, else the explicit variant (checked);
    ``'winograd'``/``'winograd4'`` where :func:`winograd_applies`, ``'nhwc'`` (op
    level) where :func:`wgrad_nhwc_applies` (weight gradient) or
    :func:`fwd_nhwc_applies` (forward, stride-1 input gradient), ``'unfold'`` (op
    level) where :func:`wgrad_unfold_applies` (weight gradient), else what
    ``'auto'`` runs."""
    if algorithm in WINOGRAD_TILES:
        if winograd_applies(p, pass_name, algorithm):
            return algorithm
        algorithm = "auto"
    if algorithm == "auto":
        return choose_algorithm(p, pass_name)
    if algorithm == "nhwc":  # op level: the NHWC kernels wherever they apply
        if pass_name == "backward_weight" and wgrad_nhwc_applies(p):
            return "nhwc"
        if pass_name != "backward_weight" and fwd_nhwc_applies(p, pass_name):
            return "nhwc"
        return choose_algorithm(p, pass_name)
    if algorithm == "unfold":  # op level: the weight gradient wherever it applies
        if pass_name == "backward_weight" and wgrad_unfold_applies(p):
            return "unfold"
        return choose_algorithm(p, pass_name)
    if algorithm not in VARIANTS:
        raise ValueError(
            f"algorithm must be 'auto' or one of {VARIANTS}, got {algorithm!r}"
        )
    return algorithm


def regblock_tile(
    p: Conv2dProblem, pass_name: str, sm_count: int = DEFAULT_SM_COUNT
) -> tuple[int, int, int, int]:
    """The ``(TX, TY, TM, TN)`` tile of a ``tiled_regblock`` launch.

    A small cost model: the blocks (times the split-K factor of
    :func:`regblock_splits`) spread evenly over ``sm_count`` SMs, so the busiest SM
    computes ``ceil(blocks / sm_count)`` padded ``BM x BN`` tiles over its share of
    the reduction (tails included: waste counts); its speed is the thread tile's
    efficiency (the hot loop's FMA share from the SASS proxy, ``bench/sass_check.py``,
    when the weights were set: 8x8 ~0.8, 8x4 ~0.65, 4x4 ~0.55: 1.0, 0.8 and 0.7
    relative; since the cp.async gathers, f971f51: 8x8 0.86, 8x4 0.80, 4x4 0.70,
    weights kept: proxy values are no measurement) times a latency factor ``min(1,
    resident warps / 8)``. The cheapest tile wins, the larger tile on ties.
    """
    m, ng, kr = gemm_shape(p, pass_name)
    best: tuple[float, int, tuple[int, int, int, int]] | None = None
    for tile in CONV_REGBLOCK_TILES[ctype_of(p.compute_dtype)]:
        tx, ty, tm, tn = tile
        bm, bn = tx * tm, ty * tn
        base = -(-m // bm) * -(-ng // bn) * p.groups
        resident = regblock_blocks_per_sm(tile, p.compute_dtype)
        splits = regblock_splits(base, kr, resident, sm_count)
        blocks = base * splits
        per_sm = -(-blocks // sm_count)
        latency = min(1.0, min(per_sm, resident) * tx * ty / 32 / 8)
        speed = {64: 1.0, 32: 0.8, 16: 0.7}[tm * tn]
        cost = per_sm * bm * bn * -(-kr // splits) / (speed * latency)
        key = (cost, -bm * bn, tile)
        if best is None or key[:2] < best[:2]:
            best = key
    assert best is not None
    return best[2]


#: Fewest reduction slices (of :data:`REGBLOCK_BK` channels of one tap) per split
#: of a forward / input-gradient ``tiled_regblock`` launch.
SLICED_MIN_SLICES = 16


def regblock_splits(base_blocks: int, kr: int, resident: int,
                    sm_count: int = DEFAULT_SM_COUNT) -> int:
    """Split-K factor of a forward / input-gradient ``tiled_regblock`` launch:
    1 when ``base_blocks`` fill the SMs once (``sm_count * resident``), else enough
    splits for :data:`WGRAD_TARGET_WAVES` waves (:func:`split_count`), each at least
    :data:`SLICED_MIN_SLICES` slices of the ``kr`` reduction terms.

    Examples
    --------
    >>> regblock_splits(28, 512 * 9, 1)  # 3x3 512->512 at 7^2, N=16, 128x128 tiles
    14
    >>> regblock_splits(784, 64 * 9, 1)  # 3x3 64->64 at 56^2: enough blocks
    1
    """
    return _wave_splits(-(-kr // REGBLOCK_BK), base_blocks, sm_count * resident,
                        SLICED_MIN_SLICES)


def _wave_splits(slices: int, base_blocks: int, slots: int, min_slices: int) -> int:
    """Split-K factor of a forward-type GEMM over ``slices`` reduction slices: 1
    when ``base_blocks`` fill the ``slots`` once, else :func:`split_count`'s
    (never more splits than slices)."""
    if base_blocks >= slots:
        return 1
    return max(1, min(slices, split_count(slices, base_blocks, slots, min_slices)))


def regblock_blocks_per_sm(tile: tuple[int, int, int, int], dtype: Any) -> int:
    """Blocks of a regblock tile one SM holds at once (64K registers): the
    ``__launch_bounds__`` minimum of ``implicit_gemm.cuh`` (1 for 8x8 thread tiles
    and double, else 2 at 256 threads), scaled up for smaller blocks."""
    tx, ty, tm, tn = tile
    threads = tx * ty
    if tm * tn >= 64 or np.dtype(dtype).itemsize > 4:
        return max(1, 65536 // (threads * 255))
    return max(1, 65536 // (threads * 128))


# --------------------------------------------------------------------------------
# the input gradient of few input channels: a GEMM into columns, then col2im


def dgrad_col2im(p: Conv2dProblem) -> bool:
    """Whether the input gradient's ``tiled_regblock`` plan of ``p`` (zero padded)
    is the col2im plan: a GEMM ``cols = w^T gy`` with ``C/groups * KH * KW``
    columns into a workspace, then ``conv2d_backward_input_col2im``.

    The phases' GEMM has ``C/groups`` columns: under :data:`REGBLOCK_MIN_COLS` its
    narrowest tile (16 columns) is mostly waste, 13/16 for the RGB stem (3 input
    channels), which measured 3.8x cuDNN FP32 on the H200 (0.958 ms at N16,
    bench/results/cuda-h200-2026-12-04-491e4e5-conv.json). The column GEMM has the
    same useful products (no tap falls on a stride gap; only the taps that land in
    the padding are extra) with ``C/groups * KH * KW`` columns (147 for the stem):
    the wide tiles' rate, plus one write and one read of the workspace. Taken when
    ``C/groups < REGBLOCK_MIN_COLS``, the column GEMM has at least
    ``REGBLOCK_MIN_COLS`` columns and :data:`REGBLOCK_BK` reduction channels
    (``K/groups``), and the workspace fits :data:`COL2IM_MAX_BYTES`. Not measured
    on a GPU yet (predicted from the wide tiles' measured rate: ~0.3 ms for the
    N16 stem).

    Examples
    --------
    >>> import numpy as np
    >>> from gpuconv._conv_args import normalize_conv2d
    >>> stem = normalize_conv2d((16, 3, 224, 224), (64, 3, 7, 7), [np.float32],
    ...                         stride=2, padding=3)
    >>> dgrad_col2im(stem)
    True
    >>> dgrad_col2im(normalize_conv2d((16, 64, 56, 56), (64, 64, 3, 3),
    ...                               [np.float32], padding=1))
    False
    """
    KHKW = p.KH * p.KW
    nbytes = p.N * p.C * KHKW * p.OH * p.OW * np.dtype(p.compute_dtype).itemsize
    return (p.Cg < REGBLOCK_MIN_COLS and p.Kg >= REGBLOCK_BK
            and p.Cg * KHKW >= REGBLOCK_MIN_COLS and 0 < nbytes <= COL2IM_MAX_BYTES)


def col2im_problem(p: Conv2dProblem) -> Conv2dProblem:
    """The column GEMM of :func:`dgrad_col2im` as a forward problem: ``gy`` as the
    input of a 1x1 convolution with ``C * KH * KW`` output channels in ``groups``
    groups (its weight ``w`` read transposed: ``col_stride = 1``, ``c_stride =
    C/groups * KH * KW``), so that its output is ``cols (N, C*KH*KW, OH, OW)``."""
    return dataclasses.replace(
        p, C=p.K, H=p.OH, W=p.OW, K=p.C * p.KH * p.KW, KH=1, KW=1, stride=(1, 1),
        dilation=(1, 1), padding=(0, 0, 0, 0), padding_mode="zeros",
    )


def col2im_slice_table(p: Conv2dProblem) -> np.ndarray:
    """The slice table of the column GEMM (:func:`col2im_problem`): one row per
    chunk of :data:`REGBLOCK_BK` output channels, ``woff = chunk * BK * C/groups *
    KH * KW``."""
    return slice_table(col2im_problem(p), "forward", c_stride=p.Cg * p.KH * p.KW)


def _col2im_launches(
    p: Conv2dProblem, ct: str, gy: Any, w: Any, slices: Any, gx: Any, alloc: Any,
    sm_count: int,
) -> list[Launch]:
    """The col2im plan of :func:`dgrad_col2im`: the column GEMM (the forward pass's
    ``tiled_regblock`` kernel, one split: the workspace is the whole of ``cols``)
    into an ``alloc`` workspace, then the gather into ``gx``."""
    pg = col2im_problem(p)
    ng = p.Cg * p.KH * p.KW
    cols = alloc((p.N, p.C * p.KH * p.KW, p.OH, p.OW), p.compute_dtype)
    launches = _regblock_launches(pg, "forward", ct, gy, w, None, slices, cols,
                                  None, sm_count, strides=(1, ng))
    s = _sizes(p)
    total = p.N * p.C * p.H * p.W
    launches.append(_linear_launch(
        source=SOURCES["backward_input"],
        kernel=conv_kernel_name("backward_input", "col2im", ct),
        total=total,
        args=(cols, gx, s["C"], s["H"], s["W"], s["KH"], s["KW"], s["sh"], s["sw"],
              s["dh"], s["dw"], s["pt"], s["pl"], s["OH"], s["OW"], _i64(total)),
    ))
    return launches


# --------------------------------------------------------------------------------
# Winograd (cuda/conv2d_winograd.cu): algorithm='winograd' (F(2x2, 3x3)) and
# 'winograd4' (F(4x4, 3x3)); the weight gradient by the transposed algorithms

#: Most bytes of the transformed input and of the 16 GEMMs' output (each) of a
#: ``winograd`` plan; larger problems run what ``'auto'`` runs.
WINOGRAD_MAX_BYTES = 1 << 30
#: The output tile side ``m`` of each Winograd variant: F(m x m, 3x3) (and the weight
#: gradient's F(3x3, m x m)); its transformed tiles have ``(m + 2)**2`` positions,
#: one GEMM each (16 and 36).
WINOGRAD_TILES = {"winograd": 2, "winograd4": 4}


def winograd_positions(variant: str) -> int:
    """GEMMs of a Winograd variant: the positions of its ``(m+2) x (m+2)`` tiles."""
    return (WINOGRAD_TILES[variant] + 2) ** 2


def _winograd_geometry(p: Conv2dProblem, pass_name: str,
                       variant: str = "winograd") -> dict[str, int]:
    """The forward-like correlation a ``winograd`` plan computes: input ``(N, Cin,
    Hin, Win)`` (``x``, or ``gy`` for the input gradient), ``Ko`` output channels
    (``K``, or ``C``), ``Ci`` reduction channels per group, top/left padding, the
    output ``Hout x Wout``, the tiles and ``flip`` (the input gradient's rotated,
    transposed filter)."""
    pt, pb, pl, pr = p.padding
    if pass_name != "backward_input":  # the weight gradient: the forward's tiles
        g = dict(Cin=p.C, Hin=p.H, Win=p.W, Ko=p.K, Ci=p.Cg, pt=pt, pl=pl,
                 Hout=p.OH, Wout=p.OW, flip=0)
    else:  # the transposed correlation: gy padded by 2 - pad (< 0: cut off)
        g = dict(Cin=p.K, Hin=p.OH, Win=p.OW, Ko=p.C, Ci=p.Kg, pt=2 - pt, pl=2 - pl,
                 Hout=p.H, Wout=p.W, flip=1)
    m = WINOGRAD_TILES[variant]
    g["TH"] = -(-g["Hout"] // m)
    g["TW"] = -(-g["Wout"] // m)
    g["P"] = p.N * g["TH"] * g["TW"]
    return g


def winograd_applies(p: Conv2dProblem, pass_name: str,
                     variant: str = "winograd") -> bool:
    """Whether ``algorithm='winograd'`` runs Winograd for a pass of the
    zero-padded problem ``p``: 3x3 filters, stride 1, dilation 1, any padding;
    F(2x2, 3x3) for the forward pass and the input gradient (the correlation of
    ``gy`` padded by ``2 - pad``; a pad over 2 skips gy's first rows/columns),
    F(3x3, 2x2) for the weight gradient; not under ``precision='tf32'`` (it promises
    TF32-rounded operands, which the transforms would change), and the workspaces
    within :data:`WINOGRAD_MAX_BYTES`. Elsewhere what ``'auto'`` picks runs.
    ``variant``: ``'winograd'`` (F(2x2, 3x3)) or ``'winograd4'`` (F(4x4, 3x3), the
    same conditions).

    Examples
    --------
    >>> import numpy as np
    >>> from gpuconv._conv_args import normalize_conv2d
    >>> p = normalize_conv2d((16, 64, 56, 56), (64, 64, 3, 3), [np.float32],
    ...                      padding=1)
    >>> [winograd_applies(p, s) for s in PASSES]
    [True, True, True]
    >>> q = normalize_conv2d((16, 64, 56, 56), (64, 64, 3, 3), [np.float32],
    ...                      padding=1, stride=2)
    >>> winograd_applies(q, "forward")
    False
    """
    if pass_name not in PASSES:
        return False
    if (p.KH, p.KW) != (3, 3) or p.stride != (1, 1) or p.dilation != (1, 1):
        return False
    if needs_padding_copy(p) or applies_tf32(p.precision, p.compute_dtype) or p.N == 0:
        return False
    g = _winograd_geometry(p, pass_name, variant)
    item = np.dtype(p.compute_dtype).itemsize
    biggest = winograd_positions(variant) * max(g["Cin"], g["Ko"]) * g["P"] * item
    return (biggest <= WINOGRAD_MAX_BYTES
            and REGBLOCK_BK * g["P"] <= INT32_MAX - 1024)


def winograd_gemm_problem(p: Conv2dProblem, pass_name: str,
                          variant: str = "winograd") -> Conv2dProblem:
    """The GEMMs of a Winograd plan (16 for ``'winograd'``, 36 for ``'winograd4'``:
    ``pos``) as one forward problem: the transformed input ``V (1, pos*Cin, 1, P)``
    convolved 1x1 with the transformed filters ``U (pos*Ko, Ci, 1, 1)`` in
    ``pos * groups`` groups."""
    g = _winograd_geometry(p, pass_name, variant)
    pos = winograd_positions(variant)
    return dataclasses.replace(
        p, N=1, C=pos * g["Cin"], H=1, W=g["P"], K=pos * g["Ko"],
        KH=1, KW=1, groups=pos * p.groups, stride=(1, 1), dilation=(1, 1),
        padding=(0, 0, 0, 0), padding_mode="zeros", OH=1, OW=g["P"],
    )


def plan_conv2d_winograd(
    p: Conv2dProblem, pass_name: str, src: Any, w: Any, bias: Any, dst: Any,
    slices: Any, *, alloc: Any, sm_count: int = DEFAULT_SM_COUNT,
    variant: str = "winograd",
) -> list[Launch]:
    """Launches of Winograd (``cuda/conv2d_winograd.cu``) for a pass where
    :func:`winograd_applies`. Forward pass and input gradient (F(2x2, 3x3)): the
    filter (``w``) and input (``src``: ``x`` or ``gy``) transforms into ``alloc``
    workspaces, the 16 GEMMs (``conv2d_forward.cu``'s ``tiled_regblock`` on
    :func:`winograd_gemm_problem`; ``slices`` is its ``slice_table(.., 'forward')``)
    and the output transform into ``dst`` (``y`` plus ``bias``, or ``gx``). Weight
    gradient (F(3x3, 2x2)): ``src`` is ``x``, ``w`` is ``gy`` and ``dst`` is ``gw``
    (``bias`` and ``slices`` unused): the input and gy transforms, the 16 GEMMs over
    the tiles (``conv2d_backward_weight.cu``'s ``tiled_regblock``, split-K) and the
    3x3 output transform. ``variant``: ``'winograd'`` (2x2 output tiles, 16 GEMMs)
    or ``'winograd4'`` (4x4 tiles, 36 GEMMs): the kernels' template argument M.
    """
    if not winograd_applies(p, pass_name, variant):
        raise ValueError(f"{variant} does not apply to this {pass_name} problem")
    ct = ctype_of(p.compute_dtype)
    g = _winograd_geometry(p, pass_name, variant)
    pg = winograd_gemm_problem(p, pass_name, variant)
    pos = winograd_positions(variant)
    mt = WINOGRAD_TILES[variant]  # the kernels' template argument M
    cin, ko, ci, P = g["Cin"], g["Ko"], g["Ci"], g["P"]
    i32 = _i32

    def transform(step: str, total: int, args: tuple[Any, ...]) -> Launch:
        return _linear_launch(source=WINOGRAD_SOURCE,
                              kernel=f"conv2d_winograd_{step}<{ct}, {mt}>",
                              total=total, args=(*args, _i64(total)))

    v = alloc((1, pos * cin, 1, P), p.compute_dtype)
    transform_input = transform("input", cin * P, (
        src, v, i32(cin, "C"), i32(g["Hin"], "H"), i32(g["Win"], "W"),
        np.int32(g["pt"]), np.int32(g["pl"]), i32(g["TH"], "TH"), i32(g["TW"], "TW"),
        _i64(P)))
    if pass_name == "backward_weight":
        ugy = alloc((1, pos * ko, 1, P), p.compute_dtype)
        m = alloc((pos * ko, ci, 1, 1), p.compute_dtype)
        launches = [transform_input, transform("wgrad_gy", ko * P, (
            w, ugy, i32(ko, "K"), i32(g["Hout"], "OH"), i32(g["Wout"], "OW"),
            i32(g["TH"], "TH"), i32(g["TW"], "TW"), _i64(P)))]
        launches += plan_conv2d_backward_weight(pg, "tiled_regblock", ugy, v, m,
                                                alloc=alloc, sm_count=sm_count)
        launches.append(transform("wgrad_output", ko * ci,
                                  (m, dst, i32(ko, "K"), i32(ci, "Cg"))))
        return launches
    u = alloc((pos * ko, ci, 1, 1), p.compute_dtype)
    m = alloc((1, pos * ko, 1, P), p.compute_dtype)
    launches = [
        transform("weight", ko * ci, (w, u, i32(ko, "Ko"), i32(ci, "Ci"),
                                      i32(p.groups, "groups"), np.int32(g["flip"]))),
        transform_input,
    ]
    launches += _regblock_launches(pg, "forward", ct, v, u, None, slices, m, alloc,
                                   sm_count)
    has_bias = bias is not None
    launches.append(transform("output", ko * P, (
        m, bias if has_bias else m, dst, i32(ko, "K"), i32(g["Hout"], "OH"),
        i32(g["Wout"], "OW"), i32(g["TH"], "TH"), i32(g["TW"], "TW"),
        np.int32(has_bias), _i64(P))))
    return launches


# --------------------------------------------------------------------------------
# host-side tables (uploaded by the op, cached per device)


def tap_table(channels: int, KH: int, KW: int, dh: int, dw: int) -> np.ndarray:
    """The ``TapEntry`` table of an implicit GEMM reduction (``common.cuh``; the
    tensor-core kernels).

    Row ``r = ch*KH*KW + kh*KW + kw`` holds ``(ch, kh*dh, kw*dw, kh*KW + kw)``;
    int32, shape ``(channels*KH*KW, 4)``, C-contiguous (16 bytes per entry).

    Examples
    --------
    >>> tap_table(2, 1, 2, 1, 3).tolist()
    [[0, 0, 0, 0], [0, 0, 3, 1], [1, 0, 0, 0], [1, 0, 3, 1]]
    """
    r = np.arange(channels * KH * KW, dtype=np.int64)
    tap = r % (KH * KW)
    table = np.stack([r // (KH * KW), (tap // KW) * dh, (tap % KW) * dw, tap], axis=1)
    return np.ascontiguousarray(table, dtype=np.int32)


@dataclasses.dataclass(frozen=True)
class SlicedPhase:
    """One ``tiled_regblock`` launch of a forward or input-gradient pass: its output
    grid ``Ho x Wo`` (pixel ``(oh, ow)``: source row ``oh*ah + bh`` plus the slice's
    ``dy``, column likewise; destination pixel ``(oh*osh + oph, ow*osw + opw)``) and
    its rows ``[offset, offset + count)`` of :func:`slice_table`."""

    Ho: int
    Wo: int
    ah: int
    bh: int
    aw: int
    bw: int
    osh: int
    oph: int
    osw: int
    opw: int
    offset: int
    count: int


def _phase_taps(ph: int, pt: int, K: int, d: int, s: int) -> list[tuple[int, int]]:
    """``(k, shift)`` of the kernel taps that reach output phase ``ph`` of a
    stride-``s`` input gradient: ``(ph + pt - k*d) % s == 0``, ``shift = (ph + pt
    - k*d) // s`` (exact)."""
    return [(k, (ph + pt - k * d) // s) for k in range(K)
            if (ph + pt - k * d) % s == 0]


def sliced_packed(p: Conv2dProblem, pass_name: str) -> bool:
    """Whether the ``tiled_regblock`` slices of a pass are packed: fewer than
    :data:`REGBLOCK_BK` reduction channels per group (``C/groups`` forward,
    ``K/groups`` input gradient), so a slice holds BK consecutive (channel, tap)
    terms instead of BK channels of one tap (mostly padding)."""
    return (p.Cg if pass_name == "forward" else p.Kg) < REGBLOCK_BK


def _sliced_groups(p: Conv2dProblem, pass_name: str):
    """Per launch of a sliced plan: its grid ``(Ho, Wo, ah, bh, aw, bw, osh, oph,
    osw, opw)`` (``None`` for an empty phase) and its taps ``(tap, dy, dx)``."""
    (sh, sw), (dh, dw) = p.stride, p.dilation
    pt, _, pl, _ = p.padding
    if pass_name == "forward":
        taps = [(kh * p.KW + kw, kh * dh, kw * dw)
                for kh in range(p.KH) for kw in range(p.KW)]
        return [((p.OH, p.OW, sh, -pt, sw, -pl, 1, 0, 1, 0), taps)]
    if pass_name != "backward_input":
        raise ValueError(f"no sliced plan for pass {pass_name!r}")
    out = []
    for ph in range(sh):
        for pw in range(sw):
            taps = [(kh * p.KW + kw, dy, dx)
                    for kh, dy in _phase_taps(ph, pt, p.KH, dh, sh)
                    for kw, dx in _phase_taps(pw, pl, p.KW, dw, sw)]
            Ho, Wo = len(range(ph, p.H, sh)), len(range(pw, p.W, sw))
            grid = (Ho, Wo, 1, 0, 1, 0, sh, ph, sw, pw) if Ho and Wo else None
            out.append((grid, taps))
    return out


def _sliced_rows(p: Conv2dProblem, pass_name: str, taps: list,
                 c_stride: int | None = None) -> list:
    """The table rows of one launch: one per slice, or (packed) one per term padded
    to a multiple of BK with ``(0, PACKED_PAD_DY, 0, -1)`` rows. ``c_stride``: the
    weight elements between reduction channels (default: the pass's own layout)."""
    cred = p.Cg if pass_name == "forward" else p.Kg
    KHKW = p.KH * p.KW
    if c_stride is None:
        c_stride = KHKW if pass_name == "forward" else p.Cg * KHKW
    bk = REGBLOCK_BK
    if sliced_packed(p, pass_name):
        rows = [(ch, dy, dx, ch * c_stride + t) for ch in range(cred)
                for t, dy, dx in taps]
        return rows + [(0, PACKED_PAD_DY, 0, -1)] * (-len(rows) % bk)
    return [(chunk, dy, dx, chunk * bk * c_stride + t)
            for chunk in range(-(-cred // bk)) for t, dy, dx in taps]


def sliced_phases(p: Conv2dProblem, pass_name: str) -> tuple[SlicedPhase, ...]:
    """The launches of a ``tiled_regblock`` forward (one) or input gradient (one
    per output phase of the stride with any pixel: ``sh*sw`` at most; a phase no
    tap reaches has no slices, its launch writes zeros). ``offset`` counts table
    rows (BK rows per slice when packed), ``count`` slices.

    Examples
    --------
    >>> import numpy as np
    >>> from gpuconv._conv_args import normalize_conv2d
    >>> p = normalize_conv2d((1, 8, 5, 5), (8, 8, 3, 3), [np.float32], stride=2,
    ...                      padding=1)
    >>> [(ph.Ho, ph.Wo, ph.oph, ph.opw, ph.count) for ph in
    ...  sliced_phases(p, "backward_input")]
    [(3, 3, 0, 0, 1), (3, 2, 0, 1, 2), (2, 3, 1, 0, 2), (2, 2, 1, 1, 4)]
    """
    per_slice = REGBLOCK_BK if sliced_packed(p, pass_name) else 1
    phases = []
    offset = 0
    for grid, taps in _sliced_groups(p, pass_name):
        rows = len(_sliced_rows(p, pass_name, taps))
        if grid is not None:
            phases.append(SlicedPhase(*grid, offset, rows // per_slice))
        offset += rows
    return tuple(phases)


def slice_table(p: Conv2dProblem, pass_name: str,
                c_stride: int | None = None) -> np.ndarray:
    """The ``SliceEntry`` table (``implicit_gemm.cuh``) of every launch of
    :func:`sliced_phases`, phase after phase: int32 rows ``(chunk, dy, dx, woff)``,
    one per slice, chunk-major then taps in ``(kh, kw)`` order, ``woff = chunk * BK
    * c_stride + kh*KW + kw`` (``c_stride``: ``KH*KW`` forward, ``C/groups*KH*KW``
    input gradient); packed (:func:`sliced_packed`): one row ``(channel, dy, dx,
    channel*c_stride + kh*KW + kw)`` per term, channel-major, padded with ``woff =
    -1`` rows to a multiple of BK per launch.

    Examples
    --------
    >>> import numpy as np
    >>> from gpuconv._conv_args import normalize_conv2d
    >>> p = normalize_conv2d((1, 9, 4, 4), (2, 9, 1, 2), [np.float32], dilation=3)
    >>> slice_table(p, "forward").tolist()
    [[0, 0, 0, 0], [0, 0, 3, 1], [1, 0, 0, 16], [1, 0, 3, 17]]
    >>> q = normalize_conv2d((1, 3, 4, 4), (2, 3, 1, 2), [np.float32], dilation=3)
    >>> slice_table(q, "forward")[:, 3].tolist()  # 6 terms, 2 padding rows
    [0, 1, 2, 3, 4, 5, -1, -1]
    """
    rows: list[tuple[int, int, int, int]] = []
    for _, taps in _sliced_groups(p, pass_name):
        rows += _sliced_rows(p, pass_name, taps, c_stride)
    table = np.array(rows, dtype=np.int32).reshape(-1, 4)
    if not len(table):  # keep a valid (never read) buffer
        table = np.zeros((1, 4), dtype=np.int32)
    return np.ascontiguousarray(table)


def pad_maps(p: Conv2dProblem) -> tuple[np.ndarray, np.ndarray]:
    """``(row_map, col_map)`` int32: the source row/column of each padded one."""
    pt, pb, pl, pr = p.padding
    rows = pad_index(p.H, pt, pb, p.padding_mode).astype(np.int32)
    cols = pad_index(p.W, pl, pr, p.padding_mode).astype(np.int32)
    return rows, cols


def _inverse_map(index_map: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR inverse of an index map: for source ``s``, the padded positions
    ``src[ptr[s]:ptr[s+1]]`` (increasing) that read it."""
    valid = np.nonzero(index_map >= 0)[0]
    order = valid[np.argsort(index_map[valid], kind="stable")]
    counts = np.bincount(index_map[valid], minlength=n)
    ptr = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(counts, out=ptr[1:])
    return ptr, order.astype(np.int32)


def fold_maps(p: Conv2dProblem) -> tuple[np.ndarray, ...]:
    """``(row_ptr, row_src, col_ptr, col_src)`` int32 for :func:`plan_pad_fold`."""
    rows, cols = pad_maps(p)
    return (*_inverse_map(rows, p.H), *_inverse_map(cols, p.W))


# --------------------------------------------------------------------------------
# plans


def _sizes(p: Conv2dProblem) -> dict[str, np.int32]:
    check_extents(p)
    (sh, sw), (dh, dw) = p.stride, p.dilation
    pt, _, pl, _ = p.padding
    vals = {
        "N": p.N, "C": p.C, "H": p.H, "W": p.W, "K": p.K, "KH": p.KH, "KW": p.KW,
        "groups": p.groups, "sh": sh, "sw": sw, "dh": dh, "dw": dw, "pt": pt,
        "pl": pl, "OH": p.OH, "OW": p.OW,
    }
    return {k: _i32(v, k) for k, v in vals.items()}


def _check_zero_padded(p: Conv2dProblem) -> None:
    if needs_padding_copy(p):
        raise ValueError(
            f"the conv kernels take zero padding only; plan padding_mode="
            f"{p.padding_mode!r} as plan_pad_gather + padded_problem(p)"
        )


def _check_variant(algorithm: str) -> None:
    if algorithm not in VARIANTS:
        raise ValueError(f"algorithm must be one of {VARIANTS}, got {algorithm!r}")


def _tiled_launch(
    p: Conv2dProblem, pass_name: str, ct: str, ptrs: tuple, s: dict[str, np.int32],
    per_image: int, height: int, width: int, extra: tuple,
) -> Launch:
    tw, th = CONV_TILED_TILE
    smem = tiled_smem_bytes(p, pass_name)
    if smem > SMEM_LIMIT:
        raise ValueError(
            f"algorithm='tiled' needs {smem} bytes of shared memory for this "
            f"{pass_name} geometry (kernel {p.KH}x{p.KW}, stride {p.stride}, "
            f"dilation {p.dilation}), more than the {SMEM_LIMIT} available; use "
            "'tiled_regblock', 'naive' or 'auto'"
        )
    rows, cols = tiled_smem_rows_cols(p, pass_name)
    tiles_h, tiles_w = -(-height // th), -(-width // tw)
    blocks = p.N * per_image * tiles_h * tiles_w
    return Launch(
        source=SOURCES[pass_name],
        kernel=conv_kernel_name(pass_name, "tiled", ct, CONV_TILED_TILE),
        grid=_blocks_1d(blocks, f"conv2d {pass_name} tiled"),
        block=(tw, th, 1),
        shared_mem=smem,
        args=(*ptrs, *extra, _i32(tiles_h, "tiles_h"), _i32(tiles_w, "tiles_w"),
              _i32(rows, "s_rows"), _i32(cols, "s_cols")),
    )


def _regblock_launches(
    p: Conv2dProblem, pass_name: str, ct: str, src: Any, w: Any, bias: Any,
    slices: Any, dst: Any, alloc: Any, sm_count: int,
    strides: tuple[int, int] | None = None,
) -> list[Launch]:
    """The sliced implicit GEMM (``implicit_gemm.cuh``): one launch per phase of
    :func:`sliced_phases`, with split-K (:func:`regblock_splits`) into an ``alloc``
    workspace and the ordered ``split_reduce`` when the blocks do not fill the SMs
    (only when ``alloc`` is given). ``strides``: ``(col_stride, c_stride)`` of the
    weight reads instead of the pass's own layout (the col2im GEMM)."""
    tile = regblock_tile(p, pass_name, sm_count)
    tx, ty, tm, tn = tile
    bm, bn = tx * tm, ty * tn
    _, ng, kr = gemm_shape(p, pass_name)
    KHKW = p.KH * p.KW
    if pass_name == "forward":
        src_c, cred, dst_c, hd, wd = p.C, p.Cg, p.K, p.OH, p.OW
        hs, ws = p.H, p.W
        col_stride, c_stride = p.Cg * KHKW, KHKW
    else:
        src_c, cred, dst_c, hd, wd = p.K, p.Kg, p.C, p.H, p.W
        hs, ws = p.OH, p.OW
        col_stride, c_stride = KHKW, p.Cg * KHKW
    if strides is not None:
        col_stride, c_stride = strides
    itemsize = np.dtype(p.compute_dtype).itemsize
    for what, v in (("weights per group", cred * ng * KHKW),
                    ("BK source planes", REGBLOCK_BK * hs * ws),
                    ("reduction channels x element bytes", cred * itemsize)):
        if v > INT32_MAX - 1024:
            raise ValueError(
                f"conv2d on CUDA: {what} = {v} exceeds the 32-bit offsets of "
                "tiled_regblock; use algorithm='tiled' or 'naive'"
            )
    phases = sliced_phases(p, pass_name)
    kernel_tile = (*tile, "true") if sliced_packed(p, pass_name) else tile
    resident = regblock_blocks_per_sm(tile, p.compute_dtype)
    base = max(-(-p.N * ph.Ho * ph.Wo // bm) for ph in phases) * -(-ng // bn)
    splits = regblock_splits(base * p.groups, kr, resident, sm_count)
    if alloc is None:
        splits = 1
    total = p.N * dst_c * hd * wd
    out = dst if splits == 1 else alloc((splits, total), p.compute_dtype)
    has_bias = bias is not None and splits == 1
    launches = []
    for ph in phases:
        m = p.N * ph.Ho * ph.Wo
        m_tiles, n_tiles = -(-m // bm), -(-ng // bn)
        per, extra = divmod(ph.count, splits)
        launches.append(Launch(
            source=SOURCES[pass_name],
            kernel=conv_kernel_name(pass_name, "tiled_regblock", ct, kernel_tile),
            grid=_blocks_1d(m_tiles * n_tiles * p.groups * splits,
                            f"conv2d {pass_name} regblock"),
            block=(tx * ty, 1, 1),
            shared_mem=0,
            args=(src, w, bias if has_bias else w, slices, out,
                  *(_i32(v, "extent") for v in (
                      src_c, hs, ws, cred, dst_c, hd, wd, ng, ph.Ho, ph.Wo)),
                  # signed: bh, bw are -padding for the forward pass
                  *(np.int32(v) for v in (ph.ah, ph.bh, ph.aw, ph.bw, ph.osh, ph.oph,
                                          ph.osw, ph.opw)),
                  *(_i32(v, "extent") for v in (col_stride, c_stride, KHKW,
                                                ph.offset, ph.count)),
                  np.int32(has_bias), _i64(m), _i32(m_tiles, "m_tiles"),
                  _i32(n_tiles, "n_tiles"), _i32(p.groups, "groups"),
                  _i64(total if splits > 1 else 0), _i64(per), _i32(extra, "extra")),
        ))
    if splits > 1:
        with_bias = bias is not None
        launches.append(_linear_launch(
            source=SOURCES[pass_name],
            kernel=conv_kernel_name(pass_name, "split_reduce", ct),
            total=total,
            args=(out, bias if with_bias else out, dst, _i32(splits, "splits"),
                  _i32(dst_c, "channels"), _i32(hd * wd, "plane"),
                  np.int32(with_bias), _i64(total)),
        ))
    return launches


def plan_conv2d_forward(
    p: Conv2dProblem, algorithm: str, x: Any, w: Any, bias: Any, y: Any,
    slices: Any = None, *, alloc: Any = None, sm_count: int = DEFAULT_SM_COUNT,
) -> list[Launch]:
    """Launches computing ``y = conv2d(x, w) + bias`` for a zero-padded problem.

    Parameters
    ----------
    p : Conv2dProblem
        Non-empty, zero padding (see :func:`padded_problem` for other modes).
    algorithm : {'naive', 'tiled', 'tiled_regblock', 'nhwc'}
        (``'nhwc'``: :func:`plan_conv2d_forward_nhwc`, which needs ``alloc``)
    x, w, bias, y : device arrays
        C-contiguous, ``p.compute_dtype``; ``bias`` may be ``None``.
    slices : device array, optional
        ``slice_table(p, 'forward')``; required by ``'tiled_regblock'``.
    alloc : callable, optional
        ``alloc(shape, dtype)`` returns a C-contiguous device workspace; with it a
        ``tiled_regblock`` plan whose blocks do not fill the SMs splits the
        reduction (split-K, then the ordered ``split_reduce``).
    sm_count : int
        SMs of the device (tile and split choice only).
    """
    _check_zero_padded(p)
    if algorithm == "nhwc":
        return plan_conv2d_forward_nhwc(p, "forward", x, w, bias, y, alloc=alloc,
                                        sm_count=sm_count)
    _check_variant(algorithm)
    ct = ctype_of(p.compute_dtype)
    s = _sizes(p)
    has_bias = np.int32(bias is not None)
    b = bias if bias is not None else w  # never read when has_bias == 0
    if algorithm == "naive":
        total = p.N * p.K * p.OH * p.OW
        return [_linear_launch(
            source=SOURCES["forward"],
            kernel=conv_kernel_name("forward", "naive", ct),
            total=total,
            args=(x, w, b, y, s["N"], s["C"], s["H"], s["W"], s["K"], s["KH"],
                  s["KW"], s["groups"], s["sh"], s["sw"], s["dh"], s["dw"], s["pt"],
                  s["pl"], s["OH"], s["OW"], has_bias, _i64(total)),
        )]
    if algorithm == "tiled":
        extra = (s["N"], s["C"], s["H"], s["W"], s["K"], s["KH"], s["KW"],
                 s["groups"], s["sh"], s["sw"], s["dh"], s["dw"], s["pt"], s["pl"],
                 s["OH"], s["OW"], has_bias)
        return [_tiled_launch(p, "forward", ct, (x, w, b, y), s, p.K, p.OH, p.OW,
                              extra)]
    if slices is None:
        raise ValueError("tiled_regblock needs the slice table (slice_table(...))")
    return _regblock_launches(p, "forward", ct, x, w, bias, slices, y, alloc,
                              sm_count)


def plan_conv2d_backward_input(
    p: Conv2dProblem, algorithm: str, gy: Any, w: Any, gx: Any, slices: Any = None,
    *, alloc: Any = None, sm_count: int = DEFAULT_SM_COUNT,
) -> list[Launch]:
    """Launches computing ``gx`` (``(N, C, H, W)`` of ``p``) from ``gy`` and ``w``.

    For a non-zero padding mode pass :func:`padded_problem` and a padded ``gx``
    buffer, then :func:`plan_pad_fold`. ``slices`` is ``slice_table(p,
    'backward_input')``, required by ``'tiled_regblock'`` (one launch per output
    phase of the stride: no wasted taps); ``alloc`` as for
    :func:`plan_conv2d_forward` (split-K). With ``alloc``, a problem of few input
    channels (:func:`dgrad_col2im`) takes the col2im plan instead (a GEMM into an
    ``alloc`` workspace, then a gather); its ``slices`` are
    :func:`col2im_slice_table`. ``'nhwc'`` (stride 1):
    :func:`plan_conv2d_forward_nhwc`, which needs ``alloc``.
    """
    _check_zero_padded(p)
    if algorithm == "nhwc":
        return plan_conv2d_forward_nhwc(p, "backward_input", gy, w, None, gx,
                                        alloc=alloc, sm_count=sm_count)
    _check_variant(algorithm)
    ct = ctype_of(p.compute_dtype)
    s = _sizes(p)
    if algorithm == "naive":
        total = p.N * p.C * p.H * p.W
        return [_linear_launch(
            source=SOURCES["backward_input"],
            kernel=conv_kernel_name("backward_input", "naive", ct),
            total=total,
            args=(gy, w, gx, s["N"], s["C"], s["H"], s["W"], s["K"], s["KH"],
                  s["KW"], s["groups"], s["sh"], s["sw"], s["dh"], s["dw"], s["pt"],
                  s["pl"], s["OH"], s["OW"], _i64(total)),
        )]
    if algorithm == "tiled":
        extra = (s["N"], s["C"], s["H"], s["W"], s["K"], s["KH"], s["KW"],
                 s["groups"], s["sh"], s["sw"], s["dh"], s["dw"], s["pt"], s["pl"],
                 s["OH"], s["OW"])
        return [_tiled_launch(p, "backward_input", ct, (gy, w, gx), s, p.C, p.H,
                              p.W, extra)]
    if slices is None:
        raise ValueError("tiled_regblock needs the slice table (slice_table(...))")
    if alloc is not None and dgrad_col2im(p):
        return _col2im_launches(p, ct, gy, w, slices, gx, alloc, sm_count)
    return _regblock_launches(p, "backward_input", ct, gy, w, None, slices, gx, alloc,
                              sm_count)


def plan_pad_gather(
    p: Conv2dProblem, x: Any, xpad: Any, row_map: Any, col_map: Any
) -> list[Launch]:
    """Launch padding ``x (N, C, H, W)`` into ``xpad (N, C, Hp, Wp)`` through the
    index maps of :func:`pad_maps` (uploaded)."""
    Hp, Wp = p.padded_hw
    check_extents(p)
    total = p.N * p.C * Hp * Wp
    return [_linear_launch(
        source=PAD_SOURCE, kernel=f"conv2d_pad_gather<{ctype_of(p.compute_dtype)}>",
        total=total,
        args=(x, xpad, row_map, col_map, _i32(p.H, "H"), _i32(p.W, "W"),
              _i32(Hp, "Hp"), _i32(Wp, "Wp"), _i64(total)),
    )]


#: The operand pre-pass of the FP32 kernels (cuda/convert.cu) per kind.
CONVERT_SOURCE = "convert.cu"
CONVERT_KERNELS = {"tf32": "convert_round_tf32", "f16": "convert_half_to_float"}


def plan_convert(kind: str, src: Any, dst: Any) -> list[Launch]:
    """Launch converting ``src`` into the float32 ``dst`` (same element count):
    ``'tf32'`` rounds float32 to TF32 (``cvt.rna.tf32.f32``), ``'f16'`` widens
    float16 bits (``uint16``) to float32, exactly. Nothing for an empty array."""
    if kind not in CONVERT_KERNELS:
        raise ValueError(f"kind must be one of {tuple(CONVERT_KERNELS)}, got {kind!r}")
    total = int(dst.size)
    if int(src.size) != total:
        raise ValueError(f"plan_convert: {src.size} elements into {total}")
    if total == 0:
        return []
    return [_linear_launch(source=CONVERT_SOURCE, kernel=CONVERT_KERNELS[kind],
                           total=total, args=(src, dst, _i64(total)))]


def plan_pad_fold(
    p: Conv2dProblem, gxpad: Any, gx: Any, row_ptr: Any, row_src: Any, col_ptr: Any,
    col_src: Any,
) -> list[Launch]:
    """Launch folding the padded gradient ``gxpad (N, C, Hp, Wp)`` back onto
    ``gx (N, C, H, W)`` with the CSR maps of :func:`fold_maps` (uploaded)."""
    Hp, Wp = p.padded_hw
    check_extents(p)
    total = p.N * p.C * p.H * p.W
    return [_linear_launch(
        source=PAD_SOURCE, kernel=f"conv2d_pad_fold<{ctype_of(p.compute_dtype)}>",
        total=total,
        args=(gxpad, gx, row_ptr, row_src, col_ptr, col_src, _i32(p.H, "H"),
              _i32(p.W, "W"), _i32(Hp, "Hp"), _i32(Wp, "Wp"), _i64(total)),
    )]


# --------------------------------------------------------------------------------
# weight and bias gradients (cuda/conv2d_backward_weight.cu)
#
# The weight gradient is a GEMM with a small output (K/groups x C/groups*KH*KW per
# group) and a long reduction (R = N*OH*OW): without splitting the reduction only a
# few blocks would be busy. The ``tiled`` and ``tiled_regblock`` plans split it into
# contiguous slices (split-K); each block writes its partial sums to a workspace in a
# fixed layout and a second launch (``reduce``) adds them in split order: no atomics,
# bit-identical from run to run.

#: Splits are chosen for at least this many full waves of resident blocks.
WGRAD_TARGET_WAVES = 2
#: Fewest reduction terms per split of ``tiled_regblock`` (16 slices of BK = 8).
WGRAD_MIN_CHUNK = 128
#: Fewest output tiles (32 x 8 pixels) per split of ``tiled``.
WGRAD_TILED_MIN_UNITS = 2
#: Resident 256-thread ``tiled`` blocks assumed per SM (a few KiB of shared memory).
WGRAD_TILED_BLOCKS_PER_SM = 4
#: Fewest gy elements per split of the bias-only reduction (8 per thread).
BIAS_MIN_CHUNK = 2048
#: Resident 256-thread bias blocks assumed per SM.
BIAS_BLOCKS_PER_SM = 8
#: Most splits of any plan (bounds the workspace: splits * K*C/groups*KH*KW).
MAX_SPLITS = 512
#: Reduction terms per shared-memory slice of the regblock kernels (``Tile::BK``).
REGBLOCK_BK = 8
#: ``dy`` of the padding rows of a packed slice table (:func:`slice_table`):
#: ``INT32_MIN``. The kernel adds it to a pixel row in unsigned (wrapping)
#: arithmetic; every row ``ih0`` of a launch lies in ``[-pad_top, 2**31 - 1024)``
#: and ``pad_top < 2**31 - 1024 - H`` (:func:`check_extents`), so the sum is at
#: least ``H + 1024`` as an unsigned number: outside every plane, and the A copy's
#: bounds check alone zero-fills the padding term (no test of ``woff`` per copy).
PACKED_PAD_DY = -(2**31)


def split_count(work: int, base_blocks: int, slots: int, min_work: int) -> int:
    """How many slices a split-K plan cuts its reduction into.

    The kernels cut the ``work`` units into ``splits`` balanced contiguous slices
    (``work // splits`` units each, one more for the first ``work % splits``), so
    every block count is exactly ``base_blocks * splits``.

    Parameters
    ----------
    work : int
        Reduction length in the plan's units: BK-term slices for
        ``tiled_regblock``, output tiles for ``tiled``, terms for the bias.
    base_blocks : int
        Blocks of the launch without splitting.
    slots : int
        Blocks the device runs at once (SMs times resident blocks per SM).
    min_work : int
        Fewest units per split (amortises the partial-sum write and the reduce).

    Returns
    -------
    int
        At least 1 and at most :data:`MAX_SPLITS` and ``work // min_work``; enough
        for :data:`WGRAD_TARGET_WAVES` waves, rounded up to fill the last wave.

    Examples
    --------
    >>> split_count(6272, 5, 264, 16)  # 3x3 64->64 at 56^2, N=16, 64x128 tiles
    158
    >>> split_count(98, 288, 264, 16)  # 3x3 512->512 at 7^2, 128x64 tiles
    2
    >>> split_count(100, 1000, 264, 16)  # enough blocks already
    1
    """
    cap = max(1, min(MAX_SPLITS, work // max(1, min_work)))
    splits = max(1, min(cap, -(-WGRAD_TARGET_WAVES * slots // max(1, base_blocks))))
    if splits > 1:
        waves = -(-base_blocks * splits // slots)
        splits = max(splits, min(cap, waves * slots // base_blocks))
    return splits


def _balanced(work: int, splits: int) -> tuple[np.int64, np.int32]:
    """``(per_split, extra)`` kernel arguments of ``splits`` balanced slices of
    ``work`` units (``split_begin`` in the kernels)."""
    per, extra = divmod(work, splits)
    return _i64(per), _i32(extra, "extra")


def _regblock_splits(red: int, base_blocks: int, slots: int) -> int:
    """Splits of a ``tiled_regblock`` weight gradient over ``red`` terms (in slices
    of :data:`REGBLOCK_BK`; never more splits than slices)."""
    slices = -(-red // REGBLOCK_BK)
    want = split_count(slices, base_blocks, slots, WGRAD_MIN_CHUNK // REGBLOCK_BK)
    return max(1, min(slices, want))


def _wgrad_tiles(ct: str) -> tuple[tuple[int, int, int, int], ...]:
    from gpuconv._kernels import CONV_WGRAD_REGBLOCK_TILES  # with the registry

    return CONV_WGRAD_REGBLOCK_TILES[ct]


def wgrad_regblock_tile(
    p: Conv2dProblem, sm_count: int = DEFAULT_SM_COUNT
) -> tuple[int, int, int, int]:
    """The ``(TX, TY, TM, TN)`` tile of a weight-gradient ``tiled_regblock`` launch.

    The cost model of :func:`regblock_tile` with split-K: blocks are ``m_tiles *
    n_tiles * groups * splits`` (:func:`split_count`), each a padded ``BM x BN x
    chunk`` product; the busiest SM runs ``ceil(blocks / sm_count)`` of them at the
    thread tile's efficiency times the latency factor. The cheapest tile wins, the
    larger tile on ties.

    Examples
    --------
    >>> import numpy as np
    >>> from gpuconv._conv_args import normalize_conv2d
    >>> p = normalize_conv2d((16, 192, 28, 28), (32, 192, 5, 5), [np.float32],
    ...                      padding=2)
    >>> wgrad_regblock_tile(p)  # 32 output channels: a 32 x 128 tile
    (8, 32, 4, 4)
    """
    m, ng, red = gemm_shape(p, "backward_weight")
    best: tuple[float, int, tuple[int, int, int, int]] | None = None
    for tile in _wgrad_tiles(ctype_of(p.compute_dtype)):
        tx, ty, tm, tn = tile
        bm, bn = tx * tm, ty * tn
        base = -(-m // bm) * -(-ng // bn) * p.groups
        resident = regblock_blocks_per_sm(tile, p.compute_dtype)
        splits = _regblock_splits(red, base, sm_count * resident)
        chunk = -(-red // splits)
        blocks = base * splits
        per_sm = -(-blocks // sm_count)
        latency = min(1.0, min(per_sm, resident) * tx * ty / 32 / 8)
        speed = {64: 1.0, 32: 0.85, 16: 0.7}[tm * tn]
        cost = per_sm * bm * bn * chunk / (speed * latency)
        key = (cost, -bm * bn, tile)
        if best is None or key[:2] < best[:2]:
            best = key
    assert best is not None
    return best[2]


def wgrad_tiled_taps(p: Conv2dProblem) -> tuple[int, int]:
    """``(taps_per_block, tap_blocks)`` of the ``tiled`` weight gradient: a block
    owns up to 255 taps (one thread slot each, plus one for the bias)."""
    th, tw = CONV_TILED_TILE[1], CONV_TILED_TILE[0]
    taps = p.KH * p.KW
    per_block = min(taps, tw * th - 1)
    return per_block, -(-taps // per_block)


def wgrad_tiled_smem_bytes(p: Conv2dProblem) -> int:
    """Dynamic shared memory of the ``tiled`` weight gradient: the x window of the
    forward tile plus the gy tile."""
    rows, cols = tiled_smem_rows_cols(p, "forward")
    tw, th = CONV_TILED_TILE
    return (rows * cols + tw * th) * np.dtype(p.compute_dtype).itemsize


def _wgrad_outputs(
    p: Conv2dProblem, splits: int, gw: Any, gb: Any, alloc: Any
) -> tuple[Any, Any]:
    """Where the main launch writes: ``gw``/``gb`` for one split, else workspaces
    ``(splits, K*C/groups*KH*KW)`` and ``(splits, K)`` from ``alloc``."""
    if splits == 1:
        return gw, gb
    wcount = p.K * p.Cg * p.KH * p.KW
    ws_w = alloc((splits, wcount), p.compute_dtype)
    ws_b = alloc((splits, p.K), p.compute_dtype) if gb is not None else None
    return ws_w, ws_b


def _reduce_launch(
    ct: str, splits: int, pw: Any, pb: Any, gw: Any, gb: Any, wcount: int, total: int
) -> Launch:
    return _linear_launch(
        source=SOURCES["backward_weight"],
        kernel=conv_kernel_name("backward_weight", "reduce", ct),
        total=total,
        args=(pw, pb, gw, gb, _i32(splits, "splits"), _i64(wcount), _i64(total)),
    )


def plan_conv2d_backward_weight(
    p: Conv2dProblem, algorithm: str, gy: Any, x: Any, gw: Any, gb: Any = None, *,
    alloc: Any, sm_count: int = DEFAULT_SM_COUNT,
) -> list[Launch]:
    """Launches computing ``gw`` (and ``gb`` when given) for a zero-padded problem.

    Parameters
    ----------
    p : Conv2dProblem
        Non-empty, zero padding (for other modes pad ``x`` with
        :func:`plan_pad_gather` and pass :func:`padded_problem`).
    algorithm : {'naive', 'tiled', 'tiled_regblock', 'nhwc', 'unfold'}
        (``'nhwc'``: :func:`plan_conv2d_backward_weight_nhwc`, ``'unfold'``:
        :func:`plan_conv2d_backward_weight_unfold`, then the bias gradient's own
        launches, :func:`plan_conv2d_backward_bias`)
    gy, x, gw : device arrays
        C-contiguous, ``p.compute_dtype``; ``gw`` has ``p.w_shape``.
    gb : device array or None
        ``(K,)``: the bias gradient, fused into the same launches (``'nhwc'``: in
        launches of its own after them).
    alloc : callable
        ``alloc(shape, dtype)`` returns a C-contiguous device workspace; called only
        when the reduction is split (``tiled``/``tiled_regblock``).
    sm_count : int
        SMs of the device (tile and split choice only).

    Returns
    -------
    list of Launch
        One launch (naive, or a single split), or the split launch followed by the
        deterministic ``reduce`` launch.

    Examples
    --------
    >>> import numpy as np
    >>> from gpuconv._conv_args import normalize_conv2d
    >>> p = normalize_conv2d((16, 64, 56, 56), (64, 64, 3, 3), [np.float32],
    ...                      padding=1)
    >>> ls = plan_conv2d_backward_weight(p, "tiled_regblock", "gy", "x", "gw", "gb",
    ...                                  alloc=lambda s, d: f"ws{s}")
    >>> for launch in ls:
    ...     print(launch.kernel)
    conv2d_backward_weight_tiled_regblock<float, 8, 16, 8, 8>
    conv2d_backward_weight_reduce<float>
    >>> ls[0].grid, ls[0].args[2]
    ((790, 1, 1), 'ws(158, 36864)')
    """
    _check_zero_padded(p)
    if algorithm in ("nhwc", "unfold"):
        plan = (plan_conv2d_backward_weight_nhwc if algorithm == "nhwc"
                else plan_conv2d_backward_weight_unfold)
        launches = plan(p, gy, x, gw, alloc=alloc, sm_count=sm_count)
        if gb is None:
            return launches
        return launches + plan_conv2d_backward_bias(p, gy, gb, alloc=alloc)
    _check_variant(algorithm)
    ct = ctype_of(p.compute_dtype)
    s = _sizes(p)
    has_bias = np.int32(gb is not None)
    wcount = p.K * p.Cg * p.KH * p.KW
    total = wcount + (p.K if gb is not None else 0)
    geom = (s["C"], s["H"], s["W"], s["K"], s["KH"], s["KW"], s["groups"], s["sh"],
            s["sw"], s["dh"], s["dw"], s["pt"], s["pl"], s["OH"], s["OW"])
    if algorithm == "naive":
        return [_linear_launch(
            source=SOURCES["backward_weight"],
            kernel=conv_kernel_name("backward_weight", "naive", ct),
            total=total,
            args=(gy, x, gw, gw if gb is None else gb, s["N"], *geom, _i64(wcount),
                  _i64(total)),
        )]
    if algorithm == "tiled":
        smem = wgrad_tiled_smem_bytes(p)
        if smem > SMEM_LIMIT:
            raise ValueError(
                f"algorithm='tiled' needs {smem} bytes of shared memory for this "
                f"backward_weight geometry (kernel {p.KH}x{p.KW}, stride {p.stride}, "
                f"dilation {p.dilation}), more than the {SMEM_LIMIT} available; use "
                "'tiled_regblock', 'naive' or 'auto'"
            )
        tw, th = CONV_TILED_TILE
        rows, cols = tiled_smem_rows_cols(p, "forward")
        tiles_h, tiles_w = -(-p.OH // th), -(-p.OW // tw)
        per_block, tap_blocks = wgrad_tiled_taps(p)
        units = p.N * tiles_h * tiles_w
        base = p.K * p.Cg * tap_blocks
        splits = min(units, split_count(units, base,
                                        sm_count * WGRAD_TILED_BLOCKS_PER_SM,
                                        WGRAD_TILED_MIN_UNITS))
        ow, ob = _wgrad_outputs(p, splits, gw, gb, alloc)
        launches = [Launch(
            source=SOURCES["backward_weight"],
            kernel=conv_kernel_name("backward_weight", "tiled", ct, CONV_TILED_TILE),
            grid=_blocks_1d(base * splits, "conv2d backward_weight tiled"),
            block=(tw, th, 1), shared_mem=smem,
            args=(gy, x, ow, ow if ob is None else ob, *geom, has_bias,
                  _i32(tiles_h, "tiles_h"), _i32(tiles_w, "tiles_w"),
                  _i32(rows, "s_rows"), _i32(cols, "s_cols"),
                  _i32(per_block, "taps_per_block"), _i32(tap_blocks, "tap_blocks"),
                  *_balanced(units, splits)),
        )]
    else:
        tile = wgrad_regblock_tile(p, sm_count)
        tx, ty, tm, tn = tile
        m, ng, red = gemm_shape(p, "backward_weight")
        m_tiles, n_tiles = -(-m // (tx * tm)), -(-ng // (ty * tn))
        base = m_tiles * n_tiles * p.groups
        slots = sm_count * regblock_blocks_per_sm(tile, p.compute_dtype)
        splits = _regblock_splits(red, base, slots)
        ow, ob = _wgrad_outputs(p, splits, gw, gb, alloc)
        launches = [Launch(
            source=SOURCES["backward_weight"],
            kernel=conv_kernel_name("backward_weight", "tiled_regblock", ct, tile),
            grid=_blocks_1d(base * splits, "conv2d backward_weight regblock"),
            block=(tx * ty, 1, 1), shared_mem=0,
            args=(gy, x, ow, ow if ob is None else ob, *geom, has_bias, _i64(red),
                  *_balanced(-(-red // REGBLOCK_BK), splits),
                  _i32(m_tiles, "m_tiles"), _i32(n_tiles, "n_tiles")),
        )]
    if splits > 1:
        launches.append(_reduce_launch(
            ct, splits, ow, ow if ob is None else ob, gw, gw if gb is None else gb,
            wcount, total))
    return launches


def plan_conv2d_backward_bias(
    p: Conv2dProblem, gy: Any, gb: Any, *, alloc: Any,
    sm_count: int = DEFAULT_SM_COUNT,
) -> list[Launch]:
    """Launches computing ``gb = gy.sum(axis=(0, 2, 3))`` deterministically.

    One 256-thread block per output channel and slice of the ``N*OH*OW`` terms
    (:func:`split_count`: at least two waves where the terms allow), a fixed-shape
    tree per block; with several slices, the partial sums go to an ``alloc``
    workspace ``(splits, K)`` and ``reduce`` adds them in slice order.

    Examples
    --------
    >>> import numpy as np
    >>> from gpuconv._conv_args import normalize_conv2d
    >>> p = normalize_conv2d((16, 64, 56, 56), (256, 64, 1, 1), [np.float32])
    >>> ls = plan_conv2d_backward_bias(p, "gy", "gb", alloc=lambda s, d: f"ws{s}")
    >>> for launch in ls:
    ...     print(launch.kernel, launch.grid)
    conv2d_backward_bias_partial<float> (3072, 1, 1)
    conv2d_backward_weight_reduce<float> (1, 1, 1)
    """
    ct = ctype_of(p.compute_dtype)
    check_extents(p)
    red = p.N * p.OH * p.OW
    splits = min(red, split_count(red, p.K, sm_count * BIAS_BLOCKS_PER_SM,
                                  BIAS_MIN_CHUNK))
    out = gb if splits == 1 else alloc((splits, p.K), p.compute_dtype)
    launches = [Launch(
        source=SOURCES["backward_weight"], kernel=f"conv2d_backward_bias_partial<{ct}>",
        grid=_blocks_1d(p.K * splits, "conv2d backward_bias"),
        block=(LINEAR_BLOCK, 1, 1), shared_mem=0,
        args=(gy, out, _i32(p.K, "K"), _i32(p.OH * p.OW, "OH*OW"),
              *_balanced(red, splits)),
    )]
    if splits > 1:
        launches.append(_reduce_launch(ct, splits, out, out, gb, gb, 0, p.K))
    return launches


# --------------------------------------------------------------------------------
# tensor cores (cuda/conv2d_mma.cu): precision='tf32' on float32 data and float16
# data, all three passes. A separate rule, consulted by the ops before
# choose_algorithm (it never changes what choose_algorithm returns): with
# algorithm='auto' a pass for which mma_kind() names a kind runs on the mma kernels;
# every other case (explicit algorithms, float64, a GPU older than sm_80) runs the
# FP32 kernels, on TF32-rounded operands for 'tf32'.

MMA_SOURCE = "conv2d_mma.cu"
_MMA_PASSES = ("forward", "backward_input", "backward_weight")  # = _kernels.MMA_PASSES
#: Relative throughput of the mma tiles per padded output element (smem words per
#: mma: 2 for 32 x 32 warp tiles, 1.5 for 64 x 32) used by :func:`mma_tile`.
MMA_TILE_SPEED = {(64, 64): 0.75, (128, 128): 1.0}


def mma_kind(p: Conv2dProblem, pass_name: str) -> str | None:
    """``'tf32'``, ``'f16'`` or ``None``: which tensor-core kernels compute a pass
    of ``p`` under ``algorithm='auto'`` (``None``: the FP32 kernels).

    float16 data always runs on tensor cores (its products are exact in float32,
    so only the summation order differs from the FP32 kernels); float32 data (and
    the real passes of complex64) when ``p.precision == 'tf32'``.

    Examples
    --------
    >>> import dataclasses
    >>> import numpy as np
    >>> from gpuconv._conv_args import normalize_conv2d
    >>> p = normalize_conv2d((8, 64, 56, 56), (64, 64, 3, 3), [np.float32], padding=1)
    >>> print(mma_kind(p, "forward"))
    None
    >>> mma_kind(dataclasses.replace(p, precision="tf32"), "forward")
    'tf32'
    >>> h = normalize_conv2d((8, 64, 56, 56), (64, 64, 3, 3), [np.float16])
    >>> mma_kind(h, "backward_input")
    'f16'
    """
    if pass_name not in _MMA_PASSES:
        return None
    if np.dtype(p.dtype) == np.float16:
        return "f16"
    if np.dtype(p.compute_dtype) == np.float32 and p.precision == "tf32":
        return "tf32"
    return None


# When algorithm='auto' takes the mma kernels for a pass that mma_kind() names a kind
# for, and when the FP32 kernels on converted operands (plan_convert, the "SIMT
# route": the same numbers up to float32 summation order). Derived from the H200 rows
# of 2026-12-04 (bench/results/cuda-h200-2026-12-04-df4f664-conv.json, 15 layers x 3
# passes: ResNet-like at N16 and N32, N8 C64 54x54): the median time of the mma
# kernels (tf32 / float16 rows) over the SIMT route's, estimated as the float32 row
# of the FP32 variant 'auto' runs (the stem's input gradient: 'tiled_regblock',
# 0.96 ms at N16) plus the conversion pre-pass at copy bandwidth (8 bytes an operand
# element for tf32, 6 for float16: 2-49 us, the most on 1x1 layers with big
# activations):
#
# - forward: mma 0.47-1.08 (tf32) and 0.52-0.91 (float16) wherever the GEMM has
#   >= 64 output channels per group, >= 1024 output pixels (N*OH*OW) and >= 8 input
#   channels per group, e.g. N32 C256 14x14 3x3: 0.72 / 0.54, 1x1 C64->256 56x56:
#   0.47 / 0.91 (worst: N32 C512 7x7 tf32, 1.08; float16 there 0.76). Slower: K=32
#   (5x5 C192->32: 2.3 / 1.6, half of a 64-wide tile idle), N16 C512 7x7 (784
#   pixels, under one wave of 64x64 tiles on 132 SMs: 1.65 / 1.23), the C3 7x7/2
#   stem (float16 1.26, tf32 0.91).
# - backward_input: mma wins on the plain GEMM, 1x1 stride 1 (C64<-256 56x56: 0.69 /
#   0.92; C1024<-256 14x14: 0.59 / 0.64); on 3x3 it scatters between 0.71 and 1.8 and
#   flips with the batch (N16 C128 28x28 0.82 / 0.71 but N32: 1.24 / 1.05; N16 C256
#   14x14 1.20 / 0.99 but N32: 0.92 / 0.77); the C3 stem: 22 / 27.
# - backward_weight: mma 0.95-1.8 (tf32), 0.88-1.8 (float16), below 1 only on N8
#   C64 54x54 (0.95 / 0.88; N16 and N32 of C64 56x56: 1.4-1.6) and the 1x1 C1024
#   layer (0.90 / 0.84; 1x1 C64: 1.35-1.57 / 1.23-1.43).
#
# So: forward as above; the input gradient on 1x1 stride 1 with >= 64 input channels
# per group (a tile's width); the weight gradient on 1x1 stride 1 with >= 128.
#
# Then measured the other way round
# (bench/results/cuda-h200-2026-12-04-491e4e5-conv.json: the SIMT route itself,
# conversion and all, with the faster mma kernels of that commit where the rule
# above picks them): the float16 input gradient of the 3x3
# layers on the SIMT route took 0.152-0.337 ms, 1.02-1.55x the df4f664 mma rows of
# the same layers (N16 C128 28x28: 0.185 vs 0.119; N32 C256 14x14: 0.307 vs 0.221),
# but for N16 C512 7x7 (784 input pixels, under a wave of tiles: 0.199 vs 0.269) and
# the 5x5 C192 <- 32 layer (0.183 vs 0.198). The conversion and the float16
# output's rounding cost more there than the estimate above. So float16 input
# gradients with stride and dilation 1, >= 64 input channels per group and >= 1024
# input pixels (N*H*W) take the mma kernels too; TF32 ones stay on the SIMT route
# (its rows: 0.72-1.74x the old mma, no pattern to follow).
# Replayed on every row in tests/test_mma_dispatch.py: within 1.1x of the faster
# route on all 90 rows but five 3x3 gradient rows (worst 1.40x: N16 C128 28x28
# backward_input float16), 1.3 % above a per-row oracle in total (mma everywhere:
# 7.7x, the stem's input gradient).
MMA_FORWARD_MIN_KG = 64
#: 3 since the 491e4e5 rows: the RGB stem's forward (C = 3) on the SIMT route took
#: 0.186 / 0.252 ms (tf32 / float16, N16) against 0.163 / 0.224 on mma (df4f664);
#: fewer input channels were never measured.
MMA_FORWARD_MIN_CG = 3
MMA_FORWARD_MIN_PIXELS = 1024
MMA_DGRAD_MIN_CG = 64
MMA_WGRAD_MIN_CG = 128


def mma_preferred(p: Conv2dProblem, pass_name: str) -> bool:
    """True when ``algorithm='auto'`` runs a tensor-core pass (one that
    :func:`mma_kind` names a kind for) on the mma kernels rather than on the FP32
    kernels with converted operands (the rule and the measured rows it comes from:
    the comment above).

    Examples
    --------
    >>> import numpy as np
    >>> from gpuconv._conv_args import normalize_conv2d
    >>> p = normalize_conv2d((16, 64, 56, 56), (64, 64, 3, 3), [np.float16],
    ...                      padding=1)
    >>> mma_preferred(p, "forward"), mma_preferred(p, "backward_weight")
    (True, False)
    >>> q = normalize_conv2d((16, 1024, 14, 14), (256, 1024, 1, 1), [np.float16])
    >>> mma_preferred(q, "backward_input")
    True
    >>> mma_preferred(p, "backward_input")  # float16 3x3, 50176 pixels
    True
    >>> t = normalize_conv2d((16, 64, 56, 56), (64, 64, 3, 3), [np.float32],
    ...                      padding=1)
    >>> mma_preferred(t, "backward_input")  # the same layer in TF32
    False
    """
    if pass_name == "forward":
        return (p.Kg >= MMA_FORWARD_MIN_KG and p.Cg >= MMA_FORWARD_MIN_CG
                and p.N * p.OH * p.OW >= MMA_FORWARD_MIN_PIXELS)
    if pass_name in ("backward_input", "backward_weight"):
        least = MMA_DGRAD_MIN_CG if pass_name == "backward_input" else MMA_WGRAD_MIN_CG
        if p.KH == p.KW == 1 and tuple(p.stride) == (1, 1) and p.Cg >= least:
            return True
        return (pass_name == "backward_input" and np.dtype(p.dtype) == np.float16
                and tuple(p.stride) == (1, 1) and tuple(p.dilation) == (1, 1)
                and p.Cg >= MMA_DGRAD_MIN_CG
                and p.N * p.H * p.W >= MMA_FORWARD_MIN_PIXELS)
    return False


def mma_tile(
    p: Conv2dProblem, pass_name: str, sm_count: int = DEFAULT_SM_COUNT
) -> tuple[int, int, int, int]:
    """The ``(BM, BN, WARPS_M, WARPS_N)`` tile of an mma launch: the blocks spread
    evenly over ``sm_count`` SMs and the busiest SM computes ``ceil(blocks /
    sm_count)`` padded ``BM x BN`` tiles at the tile's :data:`MMA_TILE_SPEED`; the
    cheapest tile wins, the larger on ties.

    Examples
    --------
    >>> import numpy as np
    >>> from gpuconv._conv_args import normalize_conv2d
    >>> p = normalize_conv2d((32, 256, 14, 14), (256, 256, 3, 3), [np.float16],
    ...                      padding=1)
    >>> mma_tile(p, "forward")
    (128, 128, 2, 4)
    >>> q = normalize_conv2d((1, 8, 9, 9), (12, 8, 3, 3), [np.float16])
    >>> mma_tile(q, "forward")
    (64, 64, 2, 2)
    """
    from gpuconv._kernels import CONV_MMA_TILES

    m, ng, _ = gemm_shape(p, pass_name)
    best: tuple[float, int, tuple[int, int, int, int]] | None = None
    for tile in CONV_MMA_TILES:
        bm, bn = tile[:2]
        blocks = -(-m // bm) * -(-ng // bn) * p.groups
        per_sm = -(-blocks // sm_count)
        cost = per_sm * bm * bn / MMA_TILE_SPEED[(bm, bn)]
        key = (cost, -bm * bn, tile)
        if best is None or key[:2] < best[:2]:
            best = key
    assert best is not None
    return best[2]


#: Reduction terms per slab of the mma kernels (16 words: TF32 1, float16 2 a word).
MMA_SLAB = {"tf32": 16, "f16": 32}
#: Resident mma blocks per SM assumed by the weight gradient's split choice.
MMA_WGRAD_BLOCKS_PER_SM = 2
#: Resident blocks per SM of the forward / input-gradient mma tiles (registers:
#: ~160 a thread for 64 x 64, ~210 for 128 x 128 on sm_90), for their split-K choice.
MMA_BLOCKS_PER_SM = {(64, 64): 3, (128, 128): 1}
#: Fewest slabs per split of a forward / input-gradient split-K (amortises the
#: partial-sum write and the reduce).
MMA_MIN_SPLIT_SLABS = 24


def mma_splits(
    p: Conv2dProblem, pass_name: str, kind: str, tile: tuple[int, int, int, int],
    sm_count: int = DEFAULT_SM_COUNT,
) -> int:
    """Split-K factor of a forward or input-gradient mma launch: more than 1 only
    when the tiles alone leave resident block slots idle (a small image, a long
    reduction: ResNet's 7x7 and 14x14 layers), as many as fit in one wave, so that
    each SM has blocks to switch between while one waits for its loads; each split
    keeps at least :data:`MMA_MIN_SPLIT_SLABS` slabs.

    Examples
    --------
    >>> import numpy as np
    >>> from gpuconv._conv_args import normalize_conv2d
    >>> p = normalize_conv2d((16, 512, 7, 7), (512, 512, 3, 3), [np.float16],
    ...                      padding=1)
    >>> mma_splits(p, "forward", "f16", (64, 64, 2, 2))
    3
    >>> q = normalize_conv2d((32, 64, 56, 56), (64, 64, 3, 3), [np.float16],
    ...                      padding=1)
    >>> mma_splits(q, "forward", "f16", (64, 64, 2, 2))
    1
    """
    m, ng, red = gemm_shape(p, pass_name)
    bm, bn = tile[:2]
    base = -(-m // bm) * -(-ng // bn) * p.groups
    slabs = -(-red // MMA_SLAB[kind])
    slots = sm_count * MMA_BLOCKS_PER_SM[(bm, bn)]
    # as many splits as fit in the resident slots at once (never an extra wave)
    return max(1, min(slabs // MMA_MIN_SPLIT_SLABS, slots // base))


_F32 = np.dtype(np.float32)
_F16 = np.dtype(np.float16)


def mma_out_dtype(
    p: Conv2dProblem, pass_name: str, kind: str, sm_count: int = DEFAULT_SM_COUNT
) -> np.dtype:
    """The dtype the mma launches of a pass of ``p`` (the op's problem, any padding
    mode) write when the op is free to choose: float16 where the float16 result is
    final in the epilogue (``kind='f16'``; the forward pass, any padding mode; the
    input gradient of a zero-padded problem, whose padding modes fold a float32
    gradient afterwards; one split, :func:`mma_splits`): the kernel rounds the FP32
    accumulator plus bias once, to nearest even, exactly as casting the float32
    result would. float32 otherwise (``'tf32'``, split-K workspaces, the fold, the
    weight gradient: the API then rounds a float16 result once).

    Examples
    --------
    >>> import numpy as np
    >>> from gpuconv._conv_args import normalize_conv2d
    >>> p = normalize_conv2d((32, 64, 56, 56), (256, 64, 1, 1), [np.float16])
    >>> [str(mma_out_dtype(p, s, "f16")) for s in _MMA_PASSES]
    ['float16', 'float16', 'float32']
    >>> q = normalize_conv2d((16, 512, 7, 7), (512, 512, 3, 3), [np.float16],
    ...                      padding=1)
    >>> str(mma_out_dtype(q, "forward", "f16"))  # split-K: a float32 workspace
    'float32'
    """
    if kind != "f16" or pass_name not in ("forward", "backward_input"):
        return _F32
    if needs_padding_copy(p):
        if pass_name == "backward_input":
            return _F32  # the fold adds float32 border gradients afterwards
        p = padded_problem(p)
    tile = mma_tile(p, pass_name, sm_count)
    return _F16 if mma_splits(p, pass_name, kind, tile, sm_count) == 1 else _F32


def plan_conv2d_mma(
    p: Conv2dProblem, pass_name: str, kind: str, a: Any, b: Any, out: Any,
    taps: Any, bias: Any = None, *, no_bias: Any = None, alloc: Any = None,
    sm_count: int = DEFAULT_SM_COUNT, half_out: bool = False,
) -> list[Launch]:
    """The launch of a tensor-core pass on a zero-padded problem.

    Parameters
    ----------
    p : Conv2dProblem
        Non-empty, zero padding.
    pass_name : {'forward', 'backward_input'}
    kind : {'tf32', 'f16'}
        ``'tf32'``: ``a``, ``b`` float32; ``'f16'``: float16 data viewed as
        ``uint16`` (the kernels take the bits).
    a, b, out : device arrays
        Forward: ``x``, ``w``, ``y``; input gradient: ``gy``, ``w``, ``gx``; weight
        gradient: ``gy``, ``x``, ``gw``. C-contiguous; ``out`` is float32 (the FP32
        accumulators) for both kinds, or float16 viewed as ``uint16`` with
        ``half_out``.
    taps : device array
        ``tap_table(C/groups | K/groups, KH, KW, dh, dw)``.
    bias : device array, optional
        float32 ``(K,)`` (forward only; added in FP32 before the output rounding).
    no_bias : device array, optional
        Any float32 array, passed as the (unread) bias pointer when ``bias`` is
        ``None`` (a null pointer where this is ``None`` too).
    alloc : callable, optional
        ``alloc(shape, dtype)``: the split-K workspace (split-K launch, then
        ``conv2d_backward_weight_reduce<float>`` adding the slices in split order);
        required when the weight gradient splits; without it the forward and the
        input gradient never split (:func:`mma_splits`).
    half_out : bool, optional
        Launch the instance writing float16 (the accumulator plus bias rounded once
        in the epilogue): ``kind='f16'``, the forward pass or the input gradient,
        one split (what :func:`mma_out_dtype` says float16 for; a ``ValueError``
        otherwise).

    Returns
    -------
    list of Launch

    Examples
    --------
    >>> import numpy as np
    >>> from gpuconv._conv_args import normalize_conv2d
    >>> p = normalize_conv2d((2, 8, 9, 9), (12, 8, 3, 3), [np.float32], padding=1)
    >>> (launch,) = plan_conv2d_mma(p, "forward", "tf32", "x", "w", "y", "taps")
    >>> launch.kernel, launch.grid, launch.block
    ('conv2d_forward_mma<float, 64, 64, 2, 2>', (3, 1, 1), (128, 1, 1))
    """
    from gpuconv._kernels import MMA_ELEMENTS, MMA_PASSES, mma_kernel_name

    _check_zero_padded(p)
    if pass_name not in MMA_PASSES:
        raise ValueError(f"no mma kernel for pass {pass_name!r}; have {MMA_PASSES}")
    if kind not in MMA_ELEMENTS:
        raise ValueError(f"kind must be one of {tuple(MMA_ELEMENTS)}, got {kind!r}")
    s = _sizes(p)
    tile = mma_tile(p, pass_name, sm_count)
    bm, bn, wm, wn = tile
    m, ng, _ = gemm_shape(p, pass_name)
    m_tiles, n_tiles = -(-m // bm), -(-ng // bn)
    geom = (s["C"], s["H"], s["W"], s["K"], s["KH"], s["KW"], s["groups"], s["sh"],
            s["sw"], s["pt"], s["pl"], s["OH"], s["OW"])
    splits = 1
    if pass_name != "backward_weight" and alloc is not None:
        splits = mma_splits(p, pass_name, kind, tile, sm_count)
    if half_out and (kind != "f16" or pass_name == "backward_weight" or splits > 1):
        raise ValueError(
            f"half_out needs kind 'f16', the forward pass or the input gradient and "
            f"one split, got kind {kind!r}, pass {pass_name!r}, {splits} splits "
            f"(mma_out_dtype says which launches write float16)"
        )
    if pass_name == "backward_weight":
        return _wgrad_mma_launches(p, kind, tile, a, b, out, taps, geom, alloc,
                                   sm_count)
    count = m * ng * p.groups  # elements of y (forward) or gx (input gradient)
    ws = alloc((splits, count), np.float32) if splits > 1 else out
    slabs = -(-gemm_shape(p, pass_name)[2] // MMA_SLAB[kind])
    tail = (_i64(m), _i32(m_tiles, "m_tiles"), _i32(n_tiles, "n_tiles"),
            *_balanced(slabs, splits))
    if pass_name == "forward":
        has_bias = np.int32(bias is not None)
        args = (a, b, no_bias if bias is None else bias, taps, ws, *geom, has_bias,
                *tail)
    else:
        args = (a, b, taps, ws, *geom, *tail)
    launches = [Launch(
        source=MMA_SOURCE,
        kernel=mma_kernel_name(pass_name, kind, tile, half_out),
        grid=_blocks_1d(m_tiles * n_tiles * p.groups * splits,
                        f"conv2d {pass_name} mma"),
        block=(32 * wm * wn, 1, 1),
        shared_mem=0,
        args=args,
    )]
    if splits > 1:  # adds the slices in split order (deterministic)
        launches.append(_reduce_launch("float", splits, ws, ws, out, out, count, count))
    return launches


# The NHWC tensor-core pipeline (cuda/conv2d_mma.cu; 'auto' where nhwc_preferred,
# the op-level value 'mma_nhwc' forces it where nhwc_applies): the operands packed
# once per call (x or gy -> NHWC, w -> (K, KH*KW, C/groups), rounded to TF32 for
# 'tf32'), then conv2d_forward_mma_nhwc (the forward pass and the stride-1 input
# gradient) or conv2d_backward_weight_mma_nhwc, whose slabs are whole 16-byte
# cp.async copies, STAGES deep.
#
# 'auto' takes it on the SASS proxy, NOT on a measurement (no GPU was lent since it
# was written): its hot loops issue 4.4 instructions per HMMA for the forward pass
# and the input gradient and 4.8-5.8 for the weight gradient (bench/sass_mma_loops.py,
# sm_90), against 8.4-9.2 and 16-22 for the NCHW mma kernels whose H200 rows the
# mma_preferred rule below comes from, and each HMMA does 32-64x the work of an FFMA
# issue of the SIMT route (>= 80 % FFMA at best). The packs cost one read and one
# write of each operand at copy bandwidth. Where it does not apply (the channels not
# a multiple of the slab, strided input gradients) or the GEMM is small
# (nhwc_preferred), the measured rule (mma_preferred) decides as before.
NHWC_PASSES = ("forward", "backward_input", "backward_weight")
#: Elements of a 16-byte chunk (the weight gradient's C/groups must be a multiple).
NHWC_CHUNK = {"tf32": 4, "f16": 8}
#: Resident blocks per SM of the NHWC weight-gradient tiles (sm_90 ptxas: 159-168
#: registers x 256 threads for 128 x 128, one block; 111-122 x 128 threads and 32
#: KiB of shared memory for 64 x 64, four), for its split-K choice.
NHWC_WGRAD_BLOCKS_PER_SM = {(64, 64): 4, (128, 128): 1}


def nhwc_applies(p: Conv2dProblem, pass_name: str, kind: str) -> bool:
    """True when the NHWC pipeline computes a pass of the zero-padded problem ``p``:
    the forward pass when C/groups is a multiple of the slab (:data:`MMA_SLAB`: 16
    TF32 / 32 float16 channels), the input gradient of a stride-1 layer when
    K/groups is (the forward kernel on ``gy`` with the flipped weights), the weight
    gradient when C/groups is a multiple of a 16-byte chunk (:data:`NHWC_CHUNK`: 4
    TF32 / 8 float16 channels).

    Examples
    --------
    >>> import numpy as np
    >>> from gpuconv._conv_args import normalize_conv2d
    >>> p = normalize_conv2d((8, 64, 28, 28), (128, 64, 3, 3), [np.float16],
    ...                      padding=1)
    >>> nhwc_applies(p, "forward", "f16"), nhwc_applies(p, "backward_input", "f16")
    (True, True)
    >>> q = normalize_conv2d((8, 3, 28, 28), (64, 3, 7, 7), [np.float16], stride=2)
    >>> nhwc_applies(q, "forward", "f16"), nhwc_applies(q, "backward_weight", "f16")
    (False, False)
    """
    slab = MMA_SLAB[kind]
    if pass_name == "forward":
        return p.Cg % slab == 0
    if pass_name == "backward_input":
        return tuple(p.stride) == (1, 1) and p.Kg % slab == 0
    if pass_name == "backward_weight":
        return p.Cg % NHWC_CHUNK[kind] == 0
    return False


#: The least GEMM columns (output channels per group of the forward pass, input
#: channels per group of the input gradient, both sides of the weight gradient's
#: output) and pixels (N*OH*OW; N*H*W for the input gradient) for which 'auto' takes
#: the NHWC pipeline: half a 64-wide tile, one wave of 64 x 64 tiles is 1024 rows
#: on 16 SMs (the forward pixel floor of mma_preferred).
NHWC_MIN_COLS = 32
NHWC_MIN_PIXELS = 1024


def nhwc_preferred(p: Conv2dProblem, pass_name: str, kind: str) -> bool:
    """True when ``algorithm='auto'`` runs a tensor-core pass of ``p`` on the NHWC
    pipeline: where :func:`nhwc_applies` and the GEMM has at least
    :data:`NHWC_MIN_COLS` columns and :data:`NHWC_MIN_PIXELS` pixels (the reasons,
    predicted from the SASS and not measured: the comment above).

    Examples
    --------
    >>> import numpy as np
    >>> from gpuconv._conv_args import normalize_conv2d
    >>> p = normalize_conv2d((16, 64, 56, 56), (64, 64, 3, 3), [np.float16],
    ...                      padding=1)
    >>> [nhwc_preferred(p, s, "f16") for s in PASSES]
    [True, True, True]
    >>> stem = normalize_conv2d((16, 3, 224, 224), (64, 3, 7, 7), [np.float16],
    ...                         stride=2, padding=3)
    >>> [nhwc_preferred(stem, s, "f16") for s in PASSES]  # C = 3: no 16-byte chunks
    [False, False, False]
    >>> small = normalize_conv2d((1, 64, 7, 7), (64, 64, 3, 3), [np.float16])
    >>> nhwc_preferred(small, "forward", "f16")  # 25 output pixels
    False
    """
    if not nhwc_applies(p, pass_name, kind):
        return False
    m, ng, kr = gemm_shape(p, pass_name)
    if pass_name == "backward_weight":
        return min(m, ng) >= NHWC_MIN_COLS and kr >= NHWC_MIN_PIXELS
    return ng >= NHWC_MIN_COLS and m >= NHWC_MIN_PIXELS


def nhwc_problem(p: Conv2dProblem, pass_name: str) -> Conv2dProblem:
    """The forward problem the NHWC kernel computes for a pass of ``p``: ``p``
    itself, or for the input gradient (stride 1) the convolution of ``gy`` (N, K,
    OH, OW) with the flipped weights (C, K/groups, KH, KW) and padding
    ``dilation*(KH - 1) - padding`` (negative: a crop), whose output is ``gx``.

    Examples
    --------
    >>> import numpy as np
    >>> from gpuconv._conv_args import normalize_conv2d
    >>> p = normalize_conv2d((2, 64, 9, 9), (32, 64, 3, 3), [np.float32], padding=1)
    >>> q = nhwc_problem(p, "backward_input")
    >>> q.x_shape, q.w_shape, q.y_shape, q.padding
    ((2, 32, 9, 9), (64, 32, 3, 3), (2, 64, 9, 9), (1, 1, 1, 1))
    """
    if pass_name == "forward":
        return p
    dh, dw = p.dilation
    pt, pb, pl, pr = p.padding
    padding = (dh * (p.KH - 1) - pt, dh * (p.KH - 1) - pb,
               dw * (p.KW - 1) - pl, dw * (p.KW - 1) - pr)
    return dataclasses.replace(
        p, C=p.K, H=p.OH, W=p.OW, K=p.C, OH=p.H, OW=p.W, padding=padding)


def plan_conv2d_mma_nhwc(
    p: Conv2dProblem, pass_name: str, kind: str, a: Any, b: Any, out: Any,
    bias: Any = None, *, no_bias: Any = None, alloc: Any, sm_count: int =
    DEFAULT_SM_COUNT, half_out: bool = False,
) -> list[Launch]:
    """The launches of a pass of the zero-padded problem ``p`` on the NHWC pipeline
    (:func:`nhwc_applies`): pack ``a`` (``x`` or ``gy``) to NHWC and ``b`` (``w``)
    to (out channels, KH*KW, reduction channels) into temporaries from
    ``alloc(shape, dtype)``, then ``conv2d_forward_mma_nhwc`` on the problem of
    :func:`nhwc_problem` (split-K, ``half_out`` and the bias as
    :func:`plan_conv2d_mma`, with the same tile and split count as the pass would
    have there, so :func:`mma_out_dtype` holds for both). The weight gradient
    (``a = gy``, ``b = x``, ``out = gw``): ``gy`` packed per output channel
    (``conv2d_nhwc_pack_gy``), ``x`` to NHWC, then
    ``conv2d_backward_weight_mma_nhwc`` (split-K as :func:`plan_conv2d_mma`'s).

    Examples
    --------
    >>> import numpy as np
    >>> from gpuconv._conv_args import normalize_conv2d
    >>> p = normalize_conv2d((2, 16, 9, 9), (32, 16, 3, 3), [np.float16], padding=1)
    >>> alloc = lambda shape, dtype: np.empty(shape, dtype)
    >>> launches = plan_conv2d_mma_nhwc(p, "backward_input", "f16", "gy", "w", "gx",
    ...                                 alloc=alloc)
    >>> [launch.kernel for launch in launches]  # doctest: +NORMALIZE_WHITESPACE
    ['conv2d_nhwc_pack_input<unsigned short>', 'conv2d_nhwc_pack_weight<unsigned
    short>', 'conv2d_forward_mma_nhwc<unsigned short, 64, 64, 2, 2>']
    """
    from gpuconv._kernels import mma_kernel_name

    _check_zero_padded(p)
    if pass_name not in NHWC_PASSES or not nhwc_applies(p, pass_name, kind):
        raise ValueError(
            f"the NHWC pipeline computes {NHWC_PASSES} where nhwc_applies (C/groups, "
            f"or for the input gradient K/groups with stride 1, a multiple of "
            f"{MMA_SLAB[kind]}; for the weight gradient C/groups a multiple of "
            f"{NHWC_CHUNK[kind]}); not pass {pass_name!r} of {p}"
        )
    if pass_name == "backward_weight":
        return _wgrad_nhwc_launches(p, kind, a, b, out, alloc, sm_count)
    q = nhwc_problem(p, pass_name)
    tile = mma_tile(p, pass_name, sm_count)
    bm, bn, wm, wn = tile
    splits = mma_splits(p, pass_name, kind, tile, sm_count)
    if half_out and (kind != "f16" or splits > 1):
        raise ValueError(
            f"half_out needs kind 'f16' and one split, got kind {kind!r}, {splits} "
            f"splits (mma_out_dtype says which launches write float16)"
        )
    xh, pack_x = _nhwc_pack_input(q, kind, a, alloc)
    wh, pack_w = _nhwc_pack_weight(p, pass_name, kind, b, alloc)
    launches = [pack_x, pack_w]
    m = q.N * q.OH * q.OW
    m_tiles, n_tiles = -(-m // bm), -(-q.Kg // bn)
    count = m * q.K
    ws = alloc((splits, count), np.float32) if splits > 1 else out
    slabs = -(-(q.Cg * q.KH * q.KW) // MMA_SLAB[kind])
    has_bias = np.int32(bias is not None)
    launches.append(Launch(
        source=MMA_SOURCE,
        kernel=mma_kernel_name("forward", kind, tile, half_out, variant="mma_nhwc"),
        grid=_blocks_1d(m_tiles * n_tiles * q.groups * splits, "conv2d NHWC mma"),
        block=(32 * wm * wn, 1, 1),
        shared_mem=0,
        args=(xh, wh, no_bias if bias is None else bias, ws, *_nhwc_geometry(q),
              has_bias, _i64(m),
              _i32(m_tiles, "m_tiles"), _i32(n_tiles, "n_tiles"),
              *_balanced(slabs, splits)),
    ))
    if splits > 1:  # adds the slices in split order (deterministic)
        launches.append(_reduce_launch("float", splits, ws, ws, out, out, count, count))
    return launches


def _nhwc_pack_input(q: Conv2dProblem, kind: str, a: Any, alloc: Any,
                     round_tf32: bool = True) -> tuple[Any, Launch]:
    """``x`` (``q.x_shape``; or any (N, C, H, W) array of those extents) packed to
    NHWC (``kind='tf32'``: float32, rounded to TF32 unless ``round_tf32`` is false;
    ``'f16'``: float16 bits): the temporary and its launch."""
    from gpuconv._kernels import MMA_ELEMENTS

    hw = q.H * q.W
    xh = alloc((q.N, q.H, q.W, q.C), np.float32 if kind == "tf32" else np.uint16)
    p_tiles, c_tiles = -(-hw // 32), -(-q.C // 32)
    return xh, Launch(
        source=MMA_SOURCE, kernel=f"conv2d_nhwc_pack_input<{MMA_ELEMENTS[kind]}>",
        grid=_blocks_1d(p_tiles * c_tiles * q.N, "conv2d NHWC pack"),
        block=(32, 8, 1), shared_mem=0,
        args=(a, xh, _i32(q.C, "C"), _i32(hw, "H*W"), np.int32(p_tiles),
              np.int32(c_tiles), np.int32(round_tf32)))


def _nhwc_pack_weight(p: Conv2dProblem, pass_name: str, kind: str, w: Any,
                      alloc: Any, round_tf32: bool = True) -> tuple[Any, Launch]:
    """``w`` of ``p`` packed for :func:`nhwc_problem`'s forward GEMM (``(K,
    KH*KW, C/groups)``; for the input gradient flipped and transposed to ``(C,
    KH*KW, K/groups)``), as :func:`_nhwc_pack_input` packs ``x``: the temporary
    and its launch."""
    from gpuconv._kernels import MMA_ELEMENTS

    q = nhwc_problem(p, pass_name)
    total = p.K * p.Cg * p.KH * p.KW
    wh = alloc((q.K, q.KH * q.KW, q.Cg), np.float32 if kind == "tf32" else np.uint16)
    return wh, _linear_launch(
        source=MMA_SOURCE, kernel=f"conv2d_nhwc_pack_weight<{MMA_ELEMENTS[kind]}>",
        total=int(total),
        args=(w, wh, np.int32(p.K), np.int32(p.Cg), np.int32(p.KH * p.KW),
              np.int32(p.groups), np.int32(pass_name == "backward_input"),
              np.int32(round_tf32), _i64(total)))


def _nhwc_geometry(q: Conv2dProblem) -> tuple[np.int32, ...]:
    """The geometry arguments of the NHWC GEMM kernels, ``C, H, W, K, KH, KW,
    groups, sh, sw, dh, dw, pt, pl, OH, OW`` (the pads of :func:`nhwc_problem` may
    be negative: a crop)."""
    (sh, sw), (dh, dw) = q.stride, q.dilation
    pt, _, pl, _ = q.padding
    return (_i32(q.C, "C"), _i32(q.H, "H"), _i32(q.W, "W"), _i32(q.K, "K"),
            *(np.int32(v) for v in (q.KH, q.KW, q.groups, sh, sw, dh, dw, pt, pl)),
            _i32(q.OH, "OH"), _i32(q.OW, "OW"))


def _wgrad_nhwc_launches(
    p: Conv2dProblem, kind: str, gy: Any, x: Any, gw: Any, alloc: Any, sm_count: int,
) -> list[Launch]:
    from gpuconv._kernels import MMA_ELEMENTS, mma_kernel_name

    tile = mma_tile(p, "backward_weight", sm_count)
    bm, bn, wm, wn = tile
    m, ng, _ = gemm_shape(p, "backward_weight")
    m_tiles, n_tiles = -(-m // bm), -(-ng // bn)
    base = m_tiles * n_tiles * p.groups
    slab = MMA_SLAB[kind]
    ohw = p.OH * p.OW
    spi = -(-ohw // slab)  # slabs per image (none straddles two)
    slabs = p.N * spi
    splits = split_count(slabs, base, sm_count * NHWC_WGRAD_BLOCKS_PER_SM[(bm, bn)],
                         max(1, WGRAD_MIN_CHUNK // slab))
    splits = max(1, min(slabs, splits))
    wcount = p.K * p.Cg * p.KH * p.KW
    ws = alloc((splits, wcount), np.float32) if splits > 1 else gw
    et = MMA_ELEMENTS[kind]
    dt = np.float32 if kind == "tf32" else np.uint16
    gyp = alloc((p.K, p.N, spi * slab), dt)
    gy_total = p.K * p.N * spi * slab
    xh, pack_x = _nhwc_pack_input(p, kind, x, alloc)
    dh, dw = p.dilation
    sh, sw = p.stride
    pt, _, pl, _ = p.padding
    launches = [
        _linear_launch(source=MMA_SOURCE, kernel=f"conv2d_nhwc_pack_gy<{et}>",
                       total=gy_total,
                       args=(gy, gyp, _i32(p.N, "N"), _i32(p.K, "K"),
                             _i32(ohw, "OH*OW"), _i32(spi * slab, "OH*OW"),
                             _i64(gy_total))),
        pack_x,
        Launch(
            source=MMA_SOURCE,
            kernel=mma_kernel_name("backward_weight", kind, tile, variant="mma_nhwc"),
            grid=_blocks_1d(base * splits, "conv2d backward_weight NHWC mma"),
            block=(32 * wm * wn, 1, 1),
            shared_mem=0,
            args=(gyp, xh, ws, _i32(p.N, "N"), _i32(p.C, "C"), _i32(p.H, "H"),
                  _i32(p.W, "W"), _i32(p.K, "K"), np.int32(p.KH), np.int32(p.KW),
                  np.int32(p.groups), np.int32(sh), np.int32(sw), np.int32(dh),
                  np.int32(dw), np.int32(pt), np.int32(pl), _i32(p.OH, "OH"),
                  _i32(p.OW, "OW"), _i32(spi, "slabs per image"),
                  *_balanced(slabs, splits), _i32(m_tiles, "m_tiles"),
                  _i32(n_tiles, "n_tiles")),
        ),
    ]
    if splits > 1:  # adds the slices in split order (deterministic)
        launches.append(_reduce_launch("float", splits, ws, ws, gw, gw, wcount, wcount))
    return launches


# The FP32 weight gradient on NHWC operands (choose_algorithm's 'nhwc' for float32
# compute where wgrad_nhwc_applies; cuda/conv2d_backward_weight.cu,
# conv2d_backward_weight_nhwc<float, BM>): both operands packed to NHWC (unrounded),
# 16-byte cp.async copies 3 stages deep, 8 x 8 FFMA thread tiles of BM x 128 blocks.
# 'auto' takes it on the SASS proxy (bench/sass_check.py: 81 % FFMA in the hot loop,
# 2 + 2 LDS.128 and 64 FFMA per pixel, no gather arithmetic, 8 warps/SM, against 58-
# 78 % for the tiled_regblock tiles it replaces on the benchmark layers), NOT on a
# measurement: no GPU was lent since it was written. The two packs cost one read
# and one write of x and gy at copy bandwidth.
#: The least multiply-adds for which 'auto' takes it: below, the two pack launches
#: (a few microseconds each on a GPU, and on the host) are not paid back, so the
#: one-launch tiled_regblock runs (2**25: ~67 MFLOP, ~5 us at 13 TFLOP/s).
WGRAD_NHWC_MIN_MACS = 2**25
#: Its slab of pixels (the kernel's NhwcSimtTile::BK) and block columns.
WGRAD_NHWC_SLAB = 16
WGRAD_NHWC_BN = 128
#: Resident blocks per SM by BM (sm_90 ptxas: registers x BM/8*16 threads, static
#: shared memory 3 x 16 x (BM + 128) floats), for the split-K choice.
WGRAD_NHWC_BLOCKS_PER_SM = {128: 1, 64: 3, 32: 6}


def wgrad_nhwc_bm(p: Conv2dProblem) -> int:
    """The block rows of the NHWC weight gradient: the smallest of 32, 64 and 128
    (:data:`gpuconv._kernels.WGRAD_NHWC_BM`) that holds K/groups, 128 beyond.

    Examples
    --------
    >>> import numpy as np
    >>> from gpuconv._conv_args import normalize_conv2d
    >>> [wgrad_nhwc_bm(normalize_conv2d((1, 64, 9, 9), (k, 64, 3, 3), [np.float32]))
    ...  for k in (32, 64, 96, 512)]
    [32, 64, 128, 128]
    """
    return 32 if p.Kg <= 32 else 64 if p.Kg <= 64 else 128


def wgrad_nhwc_applies(p: Conv2dProblem) -> bool:
    """True when ``conv2d_backward_weight_nhwc`` computes the weight gradient of the
    zero-padded ``p``: float32 compute, C/groups and K/groups multiples of 4 (16-byte
    chunks of channels) and tap offsets that fit an int with room: ``(max |dy| + 1)
    * W * C + (max |dx| + 1) * C < 2**30``, ``dy`` from ``-pad_top`` to
    ``dilation * (KH - 1) - pad_top``, likewise ``dx``.

    Examples
    --------
    >>> import numpy as np
    >>> from gpuconv._conv_args import normalize_conv2d
    >>> wgrad_nhwc_applies(normalize_conv2d((2, 64, 9, 9), (32, 64, 3, 3),
    ...                                     [np.float32]))
    True
    >>> wgrad_nhwc_applies(normalize_conv2d((2, 3, 9, 9), (32, 3, 3, 3),
    ...                                     [np.float32]))
    False
    """
    pt, _, pl, _ = p.padding
    dy = max(pt, p.dilation[0] * (p.KH - 1) - pt)
    dx = max(pl, p.dilation[1] * (p.KW - 1) - pl)
    return (np.dtype(p.compute_dtype) == np.float32 and p.Cg % 4 == 0
            and p.Kg % 4 == 0 and ((dy + 1) * p.W + dx + 1) * p.C < 2**30)


def plan_conv2d_backward_weight_nhwc(
    p: Conv2dProblem, gy: Any, x: Any, gw: Any, *, alloc: Any,
    sm_count: int = DEFAULT_SM_COUNT,
) -> list[Launch]:
    """The launches of the FP32 weight gradient of the zero-padded ``p`` on NHWC
    operands (:func:`wgrad_nhwc_applies`): ``gy`` and ``x`` (float32, C-contiguous)
    packed to NHWC into temporaries from ``alloc(shape, dtype)``, the GEMM (split-K
    over slabs of :data:`WGRAD_NHWC_SLAB` pixels), and the ordered reduce of the
    splits into ``gw``. The bias gradient is not part of it.

    Examples
    --------
    >>> import numpy as np
    >>> from gpuconv._conv_args import normalize_conv2d
    >>> p = normalize_conv2d((2, 8, 9, 9), (12, 8, 3, 3), [np.float32], padding=1)
    >>> alloc = lambda shape, dtype: np.empty(shape, dtype)
    >>> [launch.kernel for launch in plan_conv2d_backward_weight_nhwc(
    ...     p, "gy", "x", "gw", alloc=alloc)]  # doctest: +NORMALIZE_WHITESPACE
    ['conv2d_nhwc_pack_input<float>', 'conv2d_nhwc_pack_input<float>',
     'conv2d_backward_weight_nhwc<float, 32>']
    """
    _check_zero_padded(p)
    if not wgrad_nhwc_applies(p):
        raise ValueError(
            "the NHWC weight gradient needs float32, C/groups and K/groups multiples "
            f"of 4 and int tap offsets; not {p}"
        )
    bm = wgrad_nhwc_bm(p)
    m_tiles, n_tiles = -(-p.Kg // bm), -(-(p.Cg * p.KH * p.KW) // WGRAD_NHWC_BN)
    base = m_tiles * n_tiles * p.groups
    slabs = -(-(p.N * p.OH * p.OW) // WGRAD_NHWC_SLAB)
    splits = split_count(slabs, base, sm_count * WGRAD_NHWC_BLOCKS_PER_SM[bm],
                         max(1, WGRAD_MIN_CHUNK // WGRAD_NHWC_SLAB))
    splits = max(1, min(slabs, splits))
    wcount = p.K * p.Cg * p.KH * p.KW
    ws = alloc((splits, wcount), np.float32) if splits > 1 else gw
    gy_geom = dataclasses.replace(p, C=p.K, H=p.OH, W=p.OW)  # gy as an (N, C, H, W)
    gyh, pack_gy = _nhwc_pack_input(gy_geom, "tf32", gy, alloc, round_tf32=False)
    xh, pack_x = _nhwc_pack_input(p, "tf32", x, alloc, round_tf32=False)
    launches = [pack_gy, pack_x, Launch(
        source=SOURCES["backward_weight"],
        kernel=conv_kernel_name("backward_weight", "nhwc", "float", (bm,)),
        grid=_blocks_1d(base * splits, "conv2d backward_weight nhwc"),
        block=(bm // 8 * 16, 1, 1), shared_mem=0,
        args=(gyh, xh, ws, _i32(p.N, "N"), *_nhwc_geometry(p),
              *_balanced(slabs, splits),
              _i32(m_tiles, "m_tiles"), _i32(n_tiles, "n_tiles")),
    )]
    if splits > 1:  # adds the slices in split order (deterministic)
        launches.append(_reduce_launch("float", splits, ws, ws, gw, gw, wcount, wcount))
    return launches


# --------------------------------------------------------------------------------
# The FP32 weight gradient along the pixels ('unfold': conv2d_backward_weight_unfold
# of conv2d_backward_weight.cu) on x unfolded along its width (conv2d_unfold_width):
# for the few-channel layers (the RGB stem) where the NHWC chunks along the channels
# do not exist. Both operands are 16-byte cp.async copies along the output pixels
# (OW % 4 == 0), 8 x 4 FFMA thread tiles of 64 x 64 blocks. 'auto' takes it on the
# SASS proxy (bench/sass_check.py: ~83 % FFMA in the hot loop against 59 % for the
# tiled_regblock 16x8x4x4 tile it replaces on the stem), NOT on a measurement: no GPU
# was lent since it was written. The unfold costs one read of x and one write of
# KW*Hp*OW/(H*W) times x (3.5x on the stem) at copy bandwidth.
#: The least multiply-adds for which 'auto' takes it (as WGRAD_NHWC_MIN_MACS).
WGRAD_UNFOLD_MIN_MACS = 2**25
#: Its slab of pixels (UnfoldTile::BK) and block tile (BM, BN).
WGRAD_UNFOLD_SLAB = 16
WGRAD_UNFOLD_TILE = (64, 64)
#: Resident blocks per SM (sm_90 ptxas: the registers of 128 threads; 30 KiB of
#: static shared memory), for the split-K choice.
WGRAD_UNFOLD_BLOCKS_PER_SM = 4
#: 'auto' takes it only where the unfolded x is at most this many times x, and at
#: most this many bytes (as the Winograd workspaces' 1 GiB).
WGRAD_UNFOLD_MAX_GROWTH = 8
WGRAD_UNFOLD_MAX_BYTES = 2**30


def wgrad_unfold_rows(p: Conv2dProblem) -> int:
    """``Hp``: the rows of the width-unfolded x, ``(OH - 1)*sh + (KH - 1)*dh + 1``
    (the padded input rows the taps read)."""
    return (p.OH - 1) * p.stride[0] + (p.KH - 1) * p.dilation[0] + 1


def wgrad_unfold_elements(p: Conv2dProblem) -> int:
    """Elements of the width-unfolded x: ``N * C * KW * Hp * OW``."""
    return p.N * p.C * p.KW * wgrad_unfold_rows(p) * p.OW


def wgrad_unfold_applies(p: Conv2dProblem) -> bool:
    """True when ``conv2d_backward_weight_unfold`` computes the weight gradient of
    the zero-padded ``p``: float32 compute, ``OW`` a multiple of 4 (16-byte chunks
    of 4 output pixels), and ``gy`` and the unfolded x each under ``2**31``
    elements (int offsets).

    Examples
    --------
    >>> import numpy as np
    >>> from gpuconv._conv_args import normalize_conv2d
    >>> stem = normalize_conv2d((16, 3, 224, 224), (64, 3, 7, 7), [np.float32],
    ...                         stride=2, padding=3)
    >>> wgrad_unfold_applies(stem), stem.OW
    (True, 112)
    >>> wgrad_unfold_applies(normalize_conv2d((2, 3, 9, 9), (8, 3, 3, 3),
    ...                                       [np.float32]))  # OW = 7
    False
    """
    return (np.dtype(p.compute_dtype) == np.float32 and p.OW % 4 == 0
            and p.N * p.K * p.OH * p.OW < 2**31
            and wgrad_unfold_elements(p) < 2**31)


def wgrad_unfold_preferred(p: Conv2dProblem) -> bool:
    """``'auto'``'s choice of ``'unfold'`` for the weight gradient (where
    ``'tiled_regblock'`` would run): :func:`wgrad_unfold_applies`, the NHWC kernel
    does not (:func:`wgrad_nhwc_applies`), at least :data:`WGRAD_UNFOLD_MIN_MACS`
    multiply-adds, and an unfolded x of at most :data:`WGRAD_UNFOLD_MAX_GROWTH`
    times x and :data:`WGRAD_UNFOLD_MAX_BYTES`.

    Examples
    --------
    >>> import numpy as np
    >>> from gpuconv._conv_args import normalize_conv2d
    >>> stem = normalize_conv2d((16, 3, 224, 224), (64, 3, 7, 7), [np.float32],
    ...                         stride=2, padding=3)
    >>> wgrad_unfold_preferred(stem)
    True
    """
    macs = p.K * p.Cg * p.KH * p.KW * p.N * p.OH * p.OW
    unfolded = wgrad_unfold_elements(p)
    return (wgrad_unfold_applies(p) and not wgrad_nhwc_applies(p)
            and macs >= WGRAD_UNFOLD_MIN_MACS
            and unfolded <= WGRAD_UNFOLD_MAX_GROWTH * p.N * p.C * p.H * p.W
            and 4 * unfolded <= WGRAD_UNFOLD_MAX_BYTES)


def plan_conv2d_backward_weight_unfold(
    p: Conv2dProblem, gy: Any, x: Any, gw: Any, *, alloc: Any,
    sm_count: int = DEFAULT_SM_COUNT,
) -> list[Launch]:
    """The launches of the FP32 weight gradient of the zero-padded ``p`` along the
    pixels (:func:`wgrad_unfold_applies`): ``x`` unfolded along its width into a
    temporary ``(N, C, KW, Hp, OW)`` from ``alloc(shape, dtype)``, the GEMM
    (split-K over slabs of :data:`WGRAD_UNFOLD_SLAB` pixels), and the ordered
    reduce of the splits into ``gw``. The bias gradient is not part of it.

    Examples
    --------
    >>> import numpy as np
    >>> from gpuconv._conv_args import normalize_conv2d
    >>> stem = normalize_conv2d((16, 3, 224, 224), (64, 3, 7, 7), [np.float32],
    ...                         stride=2, padding=3)
    >>> ls = plan_conv2d_backward_weight_unfold(stem, "gy", "x", "gw",
    ...                                         alloc=lambda s, d: f"ws{s}")
    >>> for launch in ls:
    ...     print(launch.kernel, launch.grid)
    conv2d_unfold_width<float> (33663, 1, 1)
    conv2d_backward_weight_unfold<float> (1056, 1, 1)
    conv2d_backward_weight_reduce<float> (37, 1, 1)
    >>> ls[0].args[1], ls[1].args[2]  # the unfolded x (Hp = 229), 352 splits
    ('ws(16, 3, 7, 229, 112)', 'ws(352, 9408)')
    """
    _check_zero_padded(p)
    if not wgrad_unfold_applies(p):
        raise ValueError(
            "the unfolded weight gradient needs float32, OW a multiple of 4 and "
            f"fewer than 2**31 elements in gy and in the unfolded x; not {p}"
        )
    bm, bn = WGRAD_UNFOLD_TILE
    m_tiles, n_tiles = -(-p.Kg // bm), -(-(p.Cg * p.KH * p.KW) // bn)
    base = m_tiles * n_tiles * p.groups
    slabs = -(-(p.N * p.OH * p.OW) // WGRAD_UNFOLD_SLAB)
    splits = split_count(slabs, base, sm_count * WGRAD_UNFOLD_BLOCKS_PER_SM,
                         max(1, WGRAD_MIN_CHUNK // WGRAD_UNFOLD_SLAB))
    splits = max(1, min(slabs, splits))
    wcount = p.K * p.Cg * p.KH * p.KW
    ws = alloc((splits, wcount), np.float32) if splits > 1 else gw
    hp = wgrad_unfold_rows(p)
    xu = alloc((p.N, p.C, p.KW, hp, p.OW), np.float32)
    pt, _, pl, _ = p.padding
    total = wgrad_unfold_elements(p)
    launches = [
        _linear_launch(
            source=SOURCES["backward_weight"], kernel="conv2d_unfold_width<float>",
            total=total,
            args=(x, xu, _i32(p.H, "H"), _i32(p.W, "W"), _i32(p.KW, "KW"),
                  np.int32(p.stride[1]), np.int32(p.dilation[1]), np.int32(pt),
                  np.int32(pl), _i32(hp, "Hp"), _i32(p.OW, "OW"), _i64(total))),
        Launch(
            source=SOURCES["backward_weight"],
            kernel=conv_kernel_name("backward_weight", "unfold", "float"),
            grid=_blocks_1d(base * splits, "conv2d backward_weight unfold"),
            block=((bm // 8) * (bn // 4), 1, 1), shared_mem=0,
            args=(gy, xu, ws, _i32(p.N, "N"), _i32(p.C, "C"), _i32(p.K, "K"),
                  _i32(p.KH, "KH"), _i32(p.KW, "KW"), _i32(p.groups, "groups"),
                  np.int32(p.stride[0]), np.int32(p.dilation[0]), _i32(hp, "Hp"),
                  _i32(p.OH, "OH"), _i32(p.OW, "OW"), *_balanced(slabs, splits),
                  _i32(m_tiles, "m_tiles"), _i32(n_tiles, "n_tiles"))),
    ]
    if splits > 1:  # adds the slices in split order (deterministic)
        launches.append(_reduce_launch("float", splits, ws, ws, gw, gw, wcount, wcount))
    return launches


def _wgrad_mma_launches(
    p: Conv2dProblem, kind: str, tile: tuple[int, int, int, int], gy: Any, x: Any,
    gw: Any, taps: Any, geom: tuple, alloc: Any, sm_count: int,
) -> list[Launch]:
    from gpuconv._kernels import mma_kernel_name

    bm, bn, wm, wn = tile
    m, ng, _ = gemm_shape(p, "backward_weight")
    m_tiles, n_tiles = -(-m // bm), -(-ng // bn)
    base = m_tiles * n_tiles * p.groups
    spi = -(-(p.OH * p.OW) // MMA_SLAB[kind])  # slabs per image (none straddles two)
    slabs = p.N * spi
    splits = split_count(slabs, base, sm_count * MMA_WGRAD_BLOCKS_PER_SM,
                         max(1, WGRAD_MIN_CHUNK // MMA_SLAB[kind]))
    splits = max(1, min(slabs, splits))
    wcount = p.K * p.Cg * p.KH * p.KW
    if splits > 1:
        if alloc is None:
            raise ValueError("the split weight gradient needs alloc(shape, dtype)")
        ws = alloc((splits, wcount), np.float32)
    else:
        ws = gw
    launches = [Launch(
        source=MMA_SOURCE,
        kernel=mma_kernel_name("backward_weight", kind, tile),
        grid=_blocks_1d(base * splits, "conv2d backward_weight mma"),
        block=(32 * wm * wn, 1, 1),
        shared_mem=0,
        args=(gy, x, taps, ws, *geom, _i32(spi, "slabs per image"),
              *_balanced(slabs, splits),
              _i32(m_tiles, "m_tiles"), _i32(n_tiles, "n_tiles")),
    )]
    if splits > 1:
        launches.append(_reduce_launch("float", splits, ws, ws, gw, gw, wcount, wcount))
    return launches


# The FP32 forward pass (and the stride-1 input gradient, as the forward of gy with
# the flipped weights: nhwc_problem) on NHWC operands (choose_algorithm's 'nhwc' where
# fwd_nhwc_preferred; cuda/conv2d_forward.cu, conv2d_forward_nhwc<float, BN>): x (gy)
# and w packed once per call, unrounded, slabs of 16 channels of one tap as 16-byte
# cp.async copies 3 stages deep, 8 x 8 FFMA thread tiles of 128 x BN blocks (BN 128,
# or 64 for up to 64 output channels per group), split-K as tiled_regblock. 'auto'
# takes it on the SASS proxy and the measured misses of tiled_regblock
# (FWD_NHWC_MIN_COLS), NOT on a measurement of it: no GPU was lent since it was
# written. Proxy: 84 % FFMA for BN = 128 (81 % for 64), 4-5 LDGSTS.128 a slab of
# 1024 FFMA (the sliced tiled_regblock: ~40 element copies), 3 slabs in flight
# (tiled_regblock: 1). The packs cost one read and
# one write of x (gy) and of w at copy bandwidth.
#: The least output channels per group (of the GEMM: K/groups forward, C/groups for
#: the input gradient) and multiply-adds for which 'auto' takes it. 128 (its 128 x
#: 128 tile): where the measured tiled_regblock rows missed their targets most, the
#: 3x3 C128-C512 layers (forward 1.5-1.6x, input gradient 1.8x cuDNN FP32 at
#: 491e4e5, with 82 % FFMA: latency, not instruction count); the 64-channel layers
#: stay on tiled_regblock, whose forward measured 0.86x cuDNN there (N32 C64 56x56)
#: with 12 warps per SM, against 8 for the NHWC 128 x 64 tile (254 registers), and
#: whose sliced loop now runs at 86 % FFMA with cp.async element copies. Smaller GEMMs
#: do not pay back the two pack launches.
FWD_NHWC_MIN_COLS = 128
FWD_NHWC_MIN_MACS = 2**25
#: Slab of channels (the kernel's NhwcFwdTile::BK), block rows.
FWD_NHWC_SLAB = 16
FWD_NHWC_BM = 128
#: Resident blocks per SM by BN (sm_90 ptxas: 254 registers x 2*BN threads; 48 / 36
#: KiB of static shared memory), for the split-K choice.
FWD_NHWC_BLOCKS_PER_SM = {128: 1, 64: 2}


def fwd_nhwc_applies(p: Conv2dProblem, pass_name: str) -> bool:
    """True when ``conv2d_forward_nhwc`` computes a pass of the zero-padded ``p``:
    float32 compute; the forward pass when C/groups is a multiple of 4 (16-byte
    chunks of channels), the input gradient of a stride-1 layer when K/groups is;
    the pixels of an image and the packed weights' rows within an int.

    Examples
    --------
    >>> import numpy as np
    >>> from gpuconv._conv_args import normalize_conv2d
    >>> p = normalize_conv2d((2, 8, 9, 9), (12, 8, 3, 3), [np.float32], padding=1)
    >>> fwd_nhwc_applies(p, "forward"), fwd_nhwc_applies(p, "backward_input")
    (True, True)
    >>> q = normalize_conv2d((2, 3, 9, 9), (12, 3, 3, 3), [np.float32], stride=2)
    >>> fwd_nhwc_applies(q, "forward"), fwd_nhwc_applies(q, "backward_input")
    (False, False)
    """
    if np.dtype(p.compute_dtype) != np.float32:
        return False
    if pass_name == "forward":
        cg, pixels = p.Cg, p.OH * p.OW
    elif pass_name == "backward_input":
        if tuple(p.stride) != (1, 1):
            return False
        cg, pixels = p.Kg, p.H * p.W
    else:
        return False
    return (cg % 4 == 0 and pixels + FWD_NHWC_BM < 2**31
            and p.KH * p.KW * max(p.Cg, p.Kg) < 2**31)


def fwd_nhwc_preferred(p: Conv2dProblem, pass_name: str) -> bool:
    """True when ``algorithm='auto'`` runs a float32 forward pass or input gradient
    on ``conv2d_forward_nhwc``: where :func:`fwd_nhwc_applies`, with at least
    :data:`FWD_NHWC_MIN_COLS` output channels per group of the GEMM and
    :data:`FWD_NHWC_MIN_MACS` multiply-adds (chosen on the SASS proxy: the comment
    above).

    Examples
    --------
    >>> import numpy as np
    >>> from gpuconv._conv_args import normalize_conv2d
    >>> p = normalize_conv2d((16, 128, 28, 28), (128, 128, 3, 3), [np.float32],
    ...                      padding=1)
    >>> fwd_nhwc_preferred(p, "forward"), fwd_nhwc_preferred(p, "backward_input")
    (True, True)
    >>> q = normalize_conv2d((16, 64, 56, 56), (64, 64, 3, 3), [np.float32],
    ...                      padding=1)
    >>> fwd_nhwc_preferred(q, "forward")  # 64 output channels: tiled_regblock
    False
    >>> k32 = normalize_conv2d((16, 192, 28, 28), (32, 192, 5, 5), [np.float32],
    ...                        padding=2)
    >>> fwd_nhwc_preferred(k32, "forward")  # 32 output channels: tiled_regblock
    False
    """
    if not fwd_nhwc_applies(p, pass_name):
        return False
    m, ng, kr = gemm_shape(p, pass_name)
    return ng >= FWD_NHWC_MIN_COLS and m * ng * kr * p.groups >= FWD_NHWC_MIN_MACS


def plan_conv2d_forward_nhwc(
    p: Conv2dProblem, pass_name: str, a: Any, b: Any, bias: Any, out: Any, *,
    alloc: Any, sm_count: int = DEFAULT_SM_COUNT,
) -> list[Launch]:
    """The launches of a float32 forward pass (``a = x``, ``b = w``, ``out = y``,
    ``bias`` or ``None``) or stride-1 input gradient (``a = gy``, ``b = w``, ``out
    = gx``, ``bias = None``) of the zero-padded ``p`` on NHWC operands
    (:func:`fwd_nhwc_applies`): ``a`` and ``w`` packed (unrounded; for the input
    gradient the flipped, transposed weights of :func:`nhwc_problem`) into
    temporaries from ``alloc(shape, dtype)``, then ``conv2d_forward_nhwc`` on the
    problem of :func:`nhwc_problem`, split-K when its blocks do not fill the SMs
    (the partial results added in order with the bias by ``split_reduce``).

    Examples
    --------
    >>> import numpy as np
    >>> from gpuconv._conv_args import normalize_conv2d
    >>> p = normalize_conv2d((2, 8, 9, 9), (12, 8, 3, 3), [np.float32], padding=1)
    >>> alloc = lambda shape, dtype: np.empty(shape, dtype)
    >>> [launch.kernel for launch in plan_conv2d_forward_nhwc(
    ...     p, "backward_input", "gy", "w", None, "gx", alloc=alloc)]
    ['conv2d_nhwc_pack_input<float>', 'conv2d_nhwc_pack_weight<float>', \
'conv2d_forward_nhwc<float, 64>']
    """
    _check_zero_padded(p)
    if not fwd_nhwc_applies(p, pass_name):
        raise ValueError(
            "the NHWC forward computes the forward pass (C/groups a multiple of 4) "
            "and the stride-1 input gradient (K/groups a multiple of 4) of float32 "
            f"problems; not pass {pass_name!r} of {p}"
        )
    if alloc is None:
        raise ValueError("the NHWC forward needs alloc(shape, dtype) for its packs")
    q = nhwc_problem(p, pass_name)
    bn = 64 if q.Kg <= 64 else 128
    m = q.N * q.OH * q.OW
    m_tiles, n_tiles = -(-m // FWD_NHWC_BM), -(-q.Kg // bn)
    base = m_tiles * n_tiles * q.groups
    slabs = q.KH * q.KW * -(-q.Cg // FWD_NHWC_SLAB)
    # slabs of 16 channels: half as many per split as tiled_regblock's 8-term slices
    splits = _wave_splits(slabs, base, sm_count * FWD_NHWC_BLOCKS_PER_SM[bn],
                          max(1, SLICED_MIN_SLICES // 2))
    count = m * q.K
    ws = alloc((splits, count), np.float32) if splits > 1 else out
    ah, pack_a = _nhwc_pack_input(q, "tf32", a, alloc, round_tf32=False)
    wh, pack_w = _nhwc_pack_weight(p, pass_name, "tf32", b, alloc, round_tf32=False)
    has_bias = np.int32(bias is not None)
    launches = [
        pack_a,
        pack_w,
        Launch(
            source=SOURCES["forward"],
            kernel=conv_kernel_name("forward", "nhwc", "float", (bn,)),
            grid=_blocks_1d(base * splits, "conv2d forward nhwc"),
            block=(2 * bn, 1, 1), shared_mem=0,
            args=(ah, wh, wh if bias is None else bias, ws, *_nhwc_geometry(q),
                  has_bias, _i64(m),
                  _i32(m_tiles, "m_tiles"), _i32(n_tiles, "n_tiles"),
                  _i64(count if splits > 1 else 0), *_balanced(slabs, splits)),
        ),
    ]
    if splits > 1:  # adds the splits in order, then the bias (deterministic)
        launches.append(_linear_launch(
            source=SOURCES["forward"],
            kernel=conv_kernel_name("forward", "split_reduce", "float"),
            total=count,
            args=(ws, wh if bias is None else bias, out, np.int32(splits),
                  _i32(q.K, "K"), _i32(q.OH * q.OW, "plane"), has_bias, _i64(count)),
        ))
    return launches

