"""Kernel registry, source loading and the CuPy module cache.

:data:`KERNELS` maps each ``.cu`` source in ``cuda/`` to every template instance
(name expression) that gpuconv launches from it. It is the single list that

- CuPy compiles (``RawModule(name_expressions=...)``, one module per source and
  option set, memoised per device),
- the nvcc compile test builds for sm_80 and sm_90 (no spills allowed),
- the emulation harness instantiates explicitly for the CPU,
- the registry test checks against the sources, both ways.

``import gpuconv`` never imports CuPy; this module imports it only inside
:class:`CupyDevice` and :func:`get_function`.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from pathlib import Path
from typing import Any

from gpuconv._launch import Launch

# C type names of the dtypes kernels are instantiated for.
CTYPES = {"float32": "float", "float64": "double"}

# source file -> name expressions, filled in right here, one entry per .cu file
# (conv2d family: conv2d_*.cu; filter family: filter2d.cu).
KERNELS: dict[str, tuple[str, ...]] = {}

# --- conv2d family (launches planned by gpuconv._plan_conv) ----------------------
# (TILE_W, TILE_H) of the `tiled` variants: the thread block and the output tile.
CONV_TILED_TILE = (32, 8)
# (TX, TY, TM, TN) of the `tiled_regblock` variants per C type: the block tile is
# (TX*TM pixels) x (TY*TN channels). Only configurations that compile without any
# register spill for sm_80 and sm_90 are listed (tests/test_nvcc.py checks it);
# double 16x16x8x4 and 16x16x8x8 spill. 16x8x8x8 (128 threads, 128 x 64) keeps the
# 8x8 thread tile (FMA share ~80 % in the SASS proxy) for 64 output channels;
# 32x4x8x8 (256 x 32, two A rows per thread) keeps it for 32 output channels;
# 32x4x4x4 (128 x 16) is the narrow tile of few-channel GEMMs (the stem's input
# gradient: 3 columns).
CONV_REGBLOCK_TILES: dict[str, tuple[tuple[int, int, int, int], ...]] = {
    "float": ((16, 16, 8, 8), (16, 8, 8, 8), (32, 4, 8, 8), (16, 16, 8, 4),
              (16, 16, 4, 4), (32, 8, 4, 4), (16, 8, 4, 4), (32, 4, 4, 4)),
    "double": ((16, 16, 4, 4), (32, 8, 4, 4), (16, 8, 4, 4)),
}


def conv_kernel_name(pass_name: str, variant: str, ctype: str, tile: tuple = ()) -> str:
    """Name expression of a conv2d kernel instance, e.g.
    ``conv2d_forward_tiled_regblock<float, 16, 16, 8, 8>``."""
    args = ", ".join([ctype, *(str(t) for t in tile)])
    return f"conv2d_{pass_name}_{variant}<{args}>"


def _conv_pass_instances(pass_name: str) -> tuple[str, ...]:
    names = []
    for ctype in CTYPES.values():
        names.append(conv_kernel_name(pass_name, "naive", ctype))
        names.append(conv_kernel_name(pass_name, "tiled", ctype, CONV_TILED_TILE))
        for tile in CONV_REGBLOCK_TILES[ctype]:
            names.append(conv_kernel_name(pass_name, "tiled_regblock", ctype, tile))
            # packed slices (fewer than 8 reduction channels): PACKED = true
            names.append(conv_kernel_name(pass_name, "tiled_regblock", ctype,
                                          (*tile, "true")))
        # the ordered second stage of a split-K tiled_regblock plan
        names.append(conv_kernel_name(pass_name, "split_reduce", ctype))
    return tuple(names)


#: Block columns (output channels) of the FP32 NHWC forward's 128 x BN tiles
#: (``conv2d_forward_nhwc<float, BN>``: 64 up to 64 output channels per group).
FWD_NHWC_BN = (128, 64)
KERNELS["conv2d_forward.cu"] = _conv_pass_instances("forward") + tuple(
    # the NHWC cp.async pipeline of the FP32 forward (and stride-1 input gradient)
    conv_kernel_name("forward", "nhwc", "float", (bn,)) for bn in FWD_NHWC_BN
)
# the input gradient's col2im gather (the second launch of its tiled_regblock plan
# for few input channels; the GEMM before it is conv2d_forward.cu's)
KERNELS["conv2d_backward_input.cu"] = _conv_pass_instances("backward_input") + tuple(
    conv_kernel_name("backward_input", "col2im", ct) for ct in CTYPES.values()
)
# The weight gradient's GEMM is M = K/groups rows by C/groups*KH*KW columns (split-K
# over N*OH*OW): its own tile list, with wide tiles (BN > BM) for few output channels
# (e.g. 32 x 128 for 5x5 192->32). Spill-free for sm_80/sm_90 (tests/test_nvcc.py).
CONV_WGRAD_REGBLOCK_TILES: dict[str, tuple[tuple[int, int, int, int], ...]] = {
    "float": ((16, 16, 8, 8), (16, 8, 8, 8), (8, 16, 8, 8), (16, 16, 8, 4),
              (16, 16, 4, 8), (16, 16, 4, 4), (32, 8, 4, 4), (8, 32, 4, 4),
              (16, 8, 4, 4)),
    "double": ((16, 16, 4, 4), (32, 8, 4, 4), (8, 32, 4, 4), (16, 8, 4, 4)),
}

#: Block rows (output channels) of the FP32 NHWC weight gradient's BM x 128 tiles
#: (``conv2d_backward_weight_nhwc<float, BM>``; the planner takes the smallest that
#: holds K/groups, 128 beyond).
WGRAD_NHWC_BM = (128, 64, 32)


def _conv_wgrad_instances() -> tuple[str, ...]:
    # the three variants as for the other passes, plus the split-K second stage
    # (reduce) and the bias-only first stage
    names = []
    for ctype in CTYPES.values():
        wgrad = "backward_weight"
        names.append(conv_kernel_name(wgrad, "naive", ctype))
        names.append(conv_kernel_name(wgrad, "tiled", ctype, CONV_TILED_TILE))
        for tile in CONV_WGRAD_REGBLOCK_TILES[ctype]:
            names.append(conv_kernel_name(wgrad, "tiled_regblock", ctype, tile))
        names.append(conv_kernel_name(wgrad, "reduce", ctype))
        names.append(f"conv2d_backward_bias_partial<{ctype}>")
    return tuple(names)


KERNELS["conv2d_backward_weight.cu"] = _conv_wgrad_instances() + (
    # the NHWC cp.async pipeline of the FP32 weight gradient, BM x 128 block tiles
    *(conv_kernel_name("backward_weight", "nhwc", "float", (bm,))
      for bm in WGRAD_NHWC_BM),
    # the FP32 weight gradient along the pixels on the width-unfolded x (few channels)
    conv_kernel_name("backward_weight", "unfold", "float"),
    "conv2d_unfold_width<float>",
)
# Winograd F(2x2, 3x3) transforms (algorithm='winograd'; the 16 GEMMs between them
# are conv2d_forward.cu's tiled_regblock instances)
# (M = 2: 'winograd', M = 4: 'winograd4')
KERNELS["conv2d_winograd.cu"] = tuple(
    f"conv2d_winograd_{step}<{ct}, {m}>" for m in (2, 4) for ct in CTYPES.values()
    for step in ("weight", "input", "output", "wgrad_gy", "wgrad_output")
)
KERNELS["conv2d_pad.cu"] = tuple(
    f"conv2d_pad_{op}<{ct}>" for ct in CTYPES.values() for op in ("gather", "fold")
)


# --- conv2d on tensor cores (cuda/conv2d_mma.cu; planned by gpuconv._plan_conv) ---
# Operand element per kind: 'tf32' rounds float32 data to TF32 in the kernel, 'f16'
# takes float16 data as its bits (unsigned short).
MMA_ELEMENTS: dict[str, str] = {"tf32": "float", "f16": "unsigned short"}
# (BM, BN, WARPS_M, WARPS_N) of the mma tiles: block tile BM x BN, warps in a
# WARPS_M x WARPS_N grid (warp tiles of 32 x 32 and 64 x 32). Spill-free for sm_80
# and sm_90 (tests/test_nvcc.py).
CONV_MMA_TILES: tuple[tuple[int, int, int, int], ...] = ((64, 64, 2, 2),
                                                          (128, 128, 2, 4))
MMA_PASSES = ("forward", "backward_input", "backward_weight")


#: The passes whose float16 kernels also come with a float16 output (the epilogue
#: rounds the FP32 accumulator once, where the result is final; the C type of that
#: output, float16 bits, is the trailing ``OutT`` template argument).
MMA_HALF_OUT_PASSES = ("forward", "backward_input")


#: The passes with a kernel of their own on the NHWC pipeline ('mma_nhwc').
MMA_NHWC_KERNEL_PASSES = ("forward", "backward_weight")


def mma_kernel_name(pass_name: str, kind: str, tile: tuple[int, ...],
                    half_out: bool = False, variant: str = "mma") -> str:
    """Name expression of a tensor-core kernel instance, e.g.
    ``conv2d_forward_mma<float, 64, 64, 2, 2>``; ``half_out``: the instance writing
    float16 bits, ``conv2d_forward_mma<unsigned short, 64, 64, 2, 2, unsigned
    short>`` (``kind='f16'``, a pass of :data:`MMA_HALF_OUT_PASSES`); ``variant``
    ``'mma_nhwc'``: the pipelined kernels on packed NHWC operands (the forward GEMM,
    which also computes stride-1 input gradients, and the weight gradient), e.g.
    ``conv2d_forward_mma_nhwc<float, 128, 128, 2, 4>``."""
    if variant not in ("mma", "mma_nhwc") or (
            variant == "mma_nhwc" and pass_name not in MMA_NHWC_KERNEL_PASSES):
        raise ValueError(f"no {variant!r} kernel for pass {pass_name!r}")
    if half_out:
        if kind != "f16" or pass_name not in MMA_HALF_OUT_PASSES:
            raise ValueError(
                f"a float16 output exists for kind 'f16' and the passes "
                f"{MMA_HALF_OUT_PASSES}, not kind {kind!r}, pass {pass_name!r}"
            )
        tile = (*tile, MMA_ELEMENTS["f16"])
    return conv_kernel_name(pass_name, variant, MMA_ELEMENTS[kind], tile)


KERNELS["conv2d_mma.cu"] = tuple(
    mma_kernel_name(pass_name, kind, tile)
    for pass_name in MMA_PASSES for kind in MMA_ELEMENTS for tile in CONV_MMA_TILES
) + tuple(
    mma_kernel_name(pass_name, "f16", tile, half_out=True)
    for pass_name in MMA_HALF_OUT_PASSES for tile in CONV_MMA_TILES
) + tuple(  # the NHWC pipeline ('mma_nhwc'): the forward GEMM and its operand packs
    mma_kernel_name("forward", kind, tile, half, variant="mma_nhwc")
    for kind in MMA_ELEMENTS for tile in CONV_MMA_TILES
    for half in ((False, True) if kind == "f16" else (False,))
) + tuple(
    mma_kernel_name("backward_weight", kind, tile, variant="mma_nhwc")
    for kind in MMA_ELEMENTS for tile in CONV_MMA_TILES
) + tuple(
    f"conv2d_nhwc_pack_{what}<{e}>" for what in ("input", "weight", "gy")
    for e in MMA_ELEMENTS.values()
)


# --- operand conversion (cuda/convert.cu; planned by gpuconv._plan_conv.plan_convert):
# the FP32 kernels' operands under precision='tf32' (rounded to TF32) and for float16
# data (widened to float32).
KERNELS["convert.cu"] = ("convert_round_tf32", "convert_half_to_float")


def _filter_family(names: str) -> tuple[str, ...]:
    """The instances of a filter-family source: the list lives with its planner,
    ``gpuconv._plan_filter.<names>()`` (imported here, not at the top: the
    planner imports this module)."""
    from gpuconv import _plan_filter

    return getattr(_plan_filter, names)()


# filter2d.cu (plan_filter), filter1d.cu (plan_filter1d), and the FFT paths' passes:
# fft_gather.cu in front of the transforms (plan_fft_gather), fft_spectrum_product.cu
# the 2-D product with the kernel's spectrum (plan_fft_spectrum_product), fft_crop.cu
# after the inverse, the output window and a fill value's correction (plan_fft_crop,
# plan_fft_fill_tables)
KERNELS["filter2d.cu"] = _filter_family("kernel_names")
KERNELS["filter1d.cu"] = _filter_family("filter1d_kernel_names")
KERNELS["fft_gather.cu"] = _filter_family("fft_gather_kernel_names")
KERNELS["fft_crop.cu"] = _filter_family("fft_crop_kernel_names")
KERNELS["fft_spectrum_product.cu"] = _filter_family("fft_spectrum_product_kernel_names")


# One header every source folder holds: how source_dir() recognises it.
_MARKER_HEADER = "common.cuh"


def source_dir() -> Path:
    """The folder holding the ``.cu`` sources.

    Installed: ``gpuconv/cuda/`` inside the package (``pip install .`` maps the
    repo's ``cuda/`` there as package data; it has no ``__init__.py``, so nothing
    is importable as a top-level ``cuda`` package and NVIDIA's ``cuda`` namespace,
    which CuPy imports, is never shadowed). From a checkout: ``<repo>/cuda``.
    A folder counts only if it holds ``common.cuh``, so that NVIDIA's
    ``site-packages/cuda`` next to an installed ``gpuconv`` is never taken.
    """
    here = Path(__file__).resolve().parent
    for cand in (here / "cuda", here.parent / "cuda"):
        if (cand / _MARKER_HEADER).is_file():
            return cand
    try:  # zip or other non-filesystem installs
        import importlib.resources as resources

        cand = Path(str(resources.files("gpuconv") / "cuda"))
        if (cand / _MARKER_HEADER).is_file():
            return cand
    except Exception:  # pragma: no cover - broken install
        pass
    raise RuntimeError(  # pragma: no cover - broken install
        f"gpuconv's CUDA sources were not found: looked for {_MARKER_HEADER} in "
        f"{here / 'cuda'} and {here.parent / 'cuda'}"
    )


def read_source(source: str) -> str:
    return (source_dir() / source).read_text()


@functools.cache
def header_hash() -> str:
    """SHA-1 of every header in ``cuda/``: part of the compile options, so that an
    edited header never comes back stale from CuPy's on-disk cache (CuPy keys on
    the source text and options, not on included files)."""
    h = hashlib.sha1()
    for p in sorted(source_dir().glob("*.cuh")):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def compile_options() -> tuple[str, ...]:
    """NVRTC options of every gpuconv module (CuPy appends ``-ftz=true``)."""
    return (
        "--std=c++17",
        f"-I{source_dir()}",
        f"-DGPUCONV_HEADER_HASH=0x{header_hash()}ULL",
    )


_MODULES: dict[tuple[str, int], Any] = {}
_MODULES_LOCK = threading.Lock()


def _module(source: str, device_id: int) -> Any:
    """The RawModule of ``source`` on ``device_id``: compiled (or loaded from
    CuPy's disk cache) once per process, also when several threads (Dask workers)
    ask for it at the same time."""
    mod = _MODULES.get((source, device_id))
    if mod is not None:
        return mod
    with _MODULES_LOCK:
        mod = _MODULES.get((source, device_id))
        if mod is None:
            import cupy

            mod = cupy.RawModule(
                code=read_source(source),
                options=compile_options(),
                name_expressions=list(KERNELS[source]),
            )
            mod.compile()  # NVRTC (or the disk cache) and the load, here, once
            _MODULES[(source, device_id)] = mod
    return mod


@functools.cache
def _registered(source: str) -> frozenset[str]:
    return frozenset(KERNELS.get(source, ()))


def get_function(source: str, kernel: str) -> Any:
    """The compiled ``cupy.RawKernel`` of one registered instance on the current
    device (the module is compiled or loaded once per source and device)."""
    import cupy

    if kernel not in _registered(source):
        raise KeyError(f"{kernel} is not registered for {source}")
    return _function(source, kernel, cupy.cuda.runtime.getDevice())


@functools.lru_cache(maxsize=4096)
def _function(source: str, kernel: str, device_id: int) -> Any:
    mod = _module(source, device_id)
    with _MODULES_LOCK:  # CuPy's lazy per-function lookup: one thread at a time
        return mod.get_function(kernel)


@functools.cache
def cupy_device() -> CupyDevice:
    """The one :class:`CupyDevice` of the process: the default device of every CUDA
    op. One object, because it is part of the plan caches' keys (a new object per
    call made every call of the filter ops miss its plan: ~100 µs of planning per
    call, measured on the H200 on 2026-12-04)."""
    return CupyDevice()


class CupyDevice:
    """Runs launches on the current CUDA device through CuPy (one per process:
    :func:`cupy_device`)."""

    name = "cuda"

    def __init__(self) -> None:
        import cupy

        self.xp = cupy

    def launch(self, launch: Launch) -> None:
        fn = get_function(launch.source, launch.kernel)
        fn(launch.grid, launch.block, launch.args, shared_mem=launch.shared_mem)

    def plan_key(self) -> int:
        """Part of a cached plan's key: the current CUDA device (kernel handles
        and uploaded tables belong to it)."""
        return int(self.xp.cuda.runtime.getDevice())

    def bind(self, launch: Launch) -> Any:
        """A callable ``call(args)`` launching ``launch``'s kernel, grid, block and
        shared memory with new arguments (``gpuconv._plan_cache.LaunchPlan``): the
        kernel handle is looked up once, here, on the current device."""
        fn = get_function(launch.source, launch.kernel)
        grid, block, smem = launch.grid, launch.block, launch.shared_mem

        def call(args: tuple[Any, ...]) -> None:
            fn(grid, block, args, shared_mem=smem)

        return call
