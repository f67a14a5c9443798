"""GPU benchmark of gpuconv's conv2d kernels against cuDNN and against the roofline.

Layers (DeepBench / ResNet-50, NCHW, float32; issue 3):

- N=16, 3x3 pad 1: 56² 64->64, 28² 128->128, 14² 256->256, 7² 512->512;
- N=16, 1x1: 56² 64->256, 14² 1024->256;
- N=16, 7x7 stride 2 pad 3: 224² 3->64;  N=16, 5x5 pad 2: 28² 192->32;
- N=8, 3x3 pad 1: 54² 64->64;
- N=32 (the batch of the H200 run of issue 11): the four 3x3 ResNet layers, 1x1 56²
  64->256 and the 7x7/2 stem 224² 3->64.

Passes: ``conv2d_forward``, ``conv2d_backward_input`` (``gx`` only) and
``conv2d_backward_weight`` (``gw`` only), each through the public API on CuPy arrays
(what users get: argument checks, planning and launches included) with
``algorithm='auto'`` and with the forced variants of ``--variants`` (default
``tiled,tiled_regblock,winograd,winograd4,nhwc``; the variant ``auto`` picks is not
measured twice; ``winograd``/``winograd4`` only where they apply (3x3 stride 1), their
error limit :data:`WINOGRAD_ERR_FACTOR` times the others'; ``nhwc`` (op level, the
FP32 weight gradient on NHWC operands) on the weight-gradient rows it applies to;
``naive`` only on layers of at most :data:`NAIVE_MAX_FLOPS`, where it is not
minutes of work).

Peer: cuDNN through PyTorch on the same device memory (zero-copy),
``torch.backends.cudnn.allow_tf32 = False`` (FP32 against FP32) and
``torch.backends.cudnn.benchmark = True`` (cuDNN's fastest algorithm);
``torch.nn.functional.conv2d`` and ``torch.ops.aten.convolution_backward`` with the
output mask of the one gradient. Targets (ratio = ours / cuDNN time, ``auto`` rows):
forward <= 1.5 and backward <= 2 on the 3x3 layers, <= 2 elsewhere; and at least 40 %
of FP32 peak on the compute-bound layers (arithmetic intensity above the ridge).

Tensor-core rows (issue 12; ``tensor_cores=True``, the default; ``--no-tensor-cores``
skips them): every layer and pass again with ``precision='tf32'`` (float32 data)
against cuDNN with ``allow_tf32 = True``, and on float16 data against cuDNN
float16, ``algorithm='auto'`` (the mma kernels where the dispatch rule takes them,
else an FP32 variant on converted operands: ``resolved`` says which, see
``gpuconv.choose_algorithm``); the precision is the last field of the row's
``case`` (``.../tf32``, ``.../float16``). Then the same pass with the tensor-core
variants of ``--tc-variants`` forced at the op level (:data:`TC_VARIANTS`: ``mma``,
the NCHW mma kernels; ``mma_nhwc``, the NHWC cp.async pipeline, on every pass where
the channel counts allow it, the input gradient at stride 1), case
``<pass>/<variant>/<layer>/<precision>``, the same cuDNN time as peer: what the
dispatch rule is set from. Targets: ratio <= 1.5 on the 3x3 layers (every pass).
Validation against cuDNN's result: :data:`TC_ERR_LIMIT` relative to
max|reference| (TF32 and float16 round the operands to 10 or 11 bits: the error is
~2^-11 sqrt(terms) |x||w|, well under it; a wrong tap is far above).

Roofline: ``floor = max(FLOPs / FP32 peak, bytes / bandwidth)`` with FLOPs
``2*N*K*C/groups*KH*KW*OH*OW`` (every pass), bytes the two inputs and the output of
the pass read/written once, the FP32 peak from the device (:func:`fp32_peak`: SMs x
FP32 lanes per SM x 2 x boost clock; 66.9 TFLOP/s on an H100 SXM) and the bandwidth
measured here (a 1 GiB device-to-device copy, read + write). Rows report the share
of the floor and of the FP32 peak.

Method: inputs from a fixed seed; each side's output is validated (relative max
error against cuDNN, or against the NumPy backend without PyTorch) *before* it is
timed, and a side that fails is not timed; warm-up calls; then timed calls, each
preceded by an L2 flush (a write of twice the L2 size) outside the bracket of CUDA
events; the median (and min) of at least 5 calls, more while under 0.2 s per side.
Every row carries the device name. A (layer, pass) that raises is recorded as a
row with an ``error`` and the benchmark goes on.

Standalone (``--json`` is rewritten after every row, so a run cut short by a time
limit still leaves the rows measured so far)::

    PYTHONPATH=. python bench/bench_gpu_conv.py [--quick] [--json out.json]
        [--variants tiled_regblock] [--budget 0.2] [--plot out.png]

``python -m gpuconv bench --backend cuda`` calls :func:`run_conv_bench`.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

if str(Path(__file__).resolve().parent) not in sys.path:  # loaded by file path
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from _gpu_common import (
    copy_bandwidth,
    device_facts,
    device_name,
    failed,
    plot_auto_rows,
    repo_on_path,
    row_saver,
    start_run,
    time_gpu,
)

PASSES = ("conv2d_forward", "conv2d_backward_input", "conv2d_backward_weight")
VARIANTS = ("naive", "tiled", "tiled_regblock", "winograd", "winograd4", "nhwc",
            "unfold")
#: Forced variants that exist at the op level only (not public ``algorithm`` values):
#: ``'nhwc'``, the FP32 weight gradient on NHWC operands (cp.async pipeline), run on
#: the weight-gradient rows where ``gpuconv._plan_conv.wgrad_nhwc_applies``;
#: ``'unfold'``, the FP32 weight gradient along the pixels on the width-unfolded x,
#: where ``gpuconv._plan_conv.wgrad_unfold_applies`` (the stem rows).
OP_VARIANTS = ("nhwc", "unfold")
#: Forced variants measured besides ``auto`` by default (``winograd`` only where it
#: applies: 3x3 stride-1 layers).
DEFAULT_VARIANTS = ("tiled", "tiled_regblock", "winograd", "winograd4", "nhwc",
                    "unfold")
#: The Winograd rows' error limit over the others' (tests/_tol.py: the transformed
#: magnitudes are 6-11x sum |x||w| for F(2x2, 3x3), 75-265x for F(4x4, 3x3) on
#: random data, where its float32 error stays near the direct sum's).
#: Tensor-core variants forced at the op level besides ``auto`` on the tf32 /
#: float16 rows: the NCHW mma kernels and the NHWC pipeline (not in ``auto`` yet:
#: these rows decide).
TC_VARIANTS = ("mma", "mma_nhwc")
WINOGRAD_ERR_FACTOR = {"winograd": 8.0, "winograd4": 32.0}
#: ``naive`` (one thread per output, the oracle) is measured only on layers of at
#: most this many FLOPs: on the large layers it takes seconds per call.
NAIVE_MAX_FLOPS = 2e9
TARGET_3X3 = {"conv2d_forward": 1.5, "conv2d_backward_input": 2.0,
              "conv2d_backward_weight": 2.0}
TARGET_OTHER = 2.0
PEAK_FRACTION_TARGET = 0.40
#: Tensor-core rows: (precision label, data dtype, ``precision=``).
TC_SIDES = (("tf32", "float32", "tf32"), ("float16", "float16", "highest"))
TC_TARGET_3X3 = 1.5
TC_ERR_LIMIT = 1e-2


@dataclass(frozen=True)
class Layer:
    """One conv2d layer (square images and kernels, groups 1)."""

    n: int
    c: int
    hw: int
    k: int
    ks: int
    stride: int = 1
    pad: int | None = None

    @property
    def padding(self) -> int:
        return self.ks // 2 if self.pad is None else self.pad

    @property
    def out_hw(self) -> int:
        return (self.hw + 2 * self.padding - self.ks) // self.stride + 1

    @property
    def name(self) -> str:
        return (f"N{self.n}-C{self.c}-{self.hw}x{self.hw}-K{self.k}-"
                f"{self.ks}x{self.ks}-s{self.stride}p{self.padding}")

    @property
    def flops(self) -> int:
        return 2 * self.n * self.k * self.c * self.ks * self.ks * self.out_hw ** 2

    def sizes(self) -> dict[str, int]:
        """Elements of x, w, y."""
        return {"x": self.n * self.c * self.hw ** 2,
                "w": self.k * self.c * self.ks ** 2,
                "y": self.n * self.k * self.out_hw ** 2}

    def bytes_moved(self, pass_name: str, itemsize: int = 4) -> int:
        s = self.sizes()
        return itemsize * (s["x"] + s["w"] + s["y"])  # every pass: 2 in, 1 out

    def terms(self, pass_name: str) -> int:
        if pass_name == "conv2d_forward":
            return self.c * self.ks ** 2
        if pass_name == "conv2d_backward_input":
            return self.k * self.ks ** 2
        return self.n * self.out_hw ** 2


LAYERS = (
    Layer(16, 64, 56, 64, 3), Layer(16, 128, 28, 128, 3), Layer(16, 256, 14, 256, 3),
    Layer(16, 512, 7, 512, 3), Layer(16, 64, 56, 256, 1), Layer(16, 1024, 14, 256, 1),
    Layer(16, 3, 224, 64, 7, stride=2, pad=3), Layer(16, 192, 28, 32, 5),
    Layer(8, 64, 54, 64, 3),
    Layer(32, 64, 56, 64, 3), Layer(32, 128, 28, 128, 3), Layer(32, 256, 14, 256, 3),
    Layer(32, 512, 7, 512, 3), Layer(32, 64, 56, 256, 1),
    Layer(32, 3, 224, 64, 7, stride=2, pad=3),
)
QUICK_LAYERS = (Layer(2, 16, 20, 16, 3), Layer(2, 8, 17, 24, 5, stride=2))


# -------------------------------------------------------------------------------
# device facts


#: FP32 lanes (CUDA cores) per SM by compute capability: 64 on sm_60, sm_70/72/75
#: and sm_80 (A100); 128 on sm_61, sm_86/87/89 and sm_90 (H100/H200), sm_100, sm_120.
FP32_LANES_PER_SM = {
    (6, 0): 64, (6, 1): 128, (7, 0): 64, (7, 2): 64, (7, 5): 64, (8, 0): 64,
    (8, 6): 128, (8, 7): 128, (8, 9): 128, (9, 0): 128, (10, 0): 128, (12, 0): 128,
}
#: The FP32 peak of the issue's target (H100 SXM: 132 SMs x 128 x 2 x 1.98 GHz),
#: used when the device cannot be queried.
H100_SXM_FP32_PEAK = 66.9e12


def fp32_peak_info(cp: Any) -> tuple[float, str]:
    """``(FLOP/s, how it was obtained)``: SMs x FP32 lanes per SM x 2 x clock.

    The clock is ``ClockRate`` (kHz, the maximum boost clock), the SM count
    ``MultiProcessorCount`` and the lanes per SM come from the compute capability
    (:data:`FP32_LANES_PER_SM`, 128 for an unknown one), each read by
    :func:`_gpu_common.device_facts` from whichever source this CuPy/CUDA version
    has. Falls back to :data:`H100_SXM_FP32_PEAK` when a fact cannot be read.
    """
    try:
        facts = device_facts(cp)
    except Exception as exc:
        return H100_SXM_FP32_PEAK, f"H100 SXM value (attributes unreadable: {exc!r})"
    missing = [k for k in ("clock_khz", "sms", "cc") if facts[k] is None]
    if missing:
        return H100_SXM_FP32_PEAK, f"H100 SXM value (unreadable: {', '.join(missing)})"
    clock_khz, sms, cc = facts["clock_khz"], facts["sms"], facts["cc"]
    lanes = FP32_LANES_PER_SM.get(cc, 128)
    peak = sms * lanes * 2.0 * clock_khz * 1e3
    if peak > 0:
        return peak, (f"{sms} SMs x {lanes} FP32 lanes x 2 x {clock_khz / 1e6:.3f}"
                      f" GHz (sm_{cc[0]}{cc[1]})")
    return H100_SXM_FP32_PEAK, "H100 SXM value (attributes gave 0)"


def fp32_peak(cp: Any) -> float:
    """FP32 FLOP/s of the current device (see :func:`fp32_peak_info`)."""
    return fp32_peak_info(cp)[0]


def l2_bytes(cp: Any) -> int:
    """The L2 cache size (``L2CacheSize``, :func:`_gpu_common.device_facts`; 50 MiB
    if unknown)."""
    try:
        size = device_facts(cp)["l2_bytes"] or 0
    except Exception:
        size = 0
    return size if size > 0 else 50 << 20


def l2_flusher(cp: Any) -> Callable[[], None]:
    """A callable that evicts the L2 cache (writes twice its size)."""
    buf = cp.empty(max(2 * l2_bytes(cp), 1 << 20), cp.uint8)

    def flush() -> None:
        buf.fill(1)

    return flush


# -------------------------------------------------------------------------------
# the sides


def _torch() -> Any:
    try:
        import torch
    except Exception:  # not installed or broken: no peer
        return None
    if not torch.cuda.is_available():
        return None
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    return torch


def _inputs(cp: Any, layer: Layer, seed: int = 0) -> dict[str, Any]:
    rng = cp.random.default_rng(seed)
    oh = layer.out_hw
    return {
        "x": rng.standard_normal((layer.n, layer.c, layer.hw, layer.hw), cp.float32),
        "w": rng.standard_normal((layer.k, layer.c, layer.ks, layer.ks), cp.float32)
        / math.sqrt(layer.c * layer.ks ** 2),
        "b": rng.standard_normal((layer.k,), cp.float32),
        "gy": rng.standard_normal((layer.n, layer.k, oh, oh), cp.float32),
    }


def ours(gpuconv: Any, layer: Layer, pass_name: str, a: dict[str, Any],
         algorithm: str) -> Callable[[], Any]:
    if algorithm in OP_VARIANTS:  # the backend op (weight gradient only)
        from gpuconv import _gpu_conv

        p = _problem(layer, a)
        return lambda: _gpu_conv.conv2d_backward_weight(a["gy"], a["x"], p, algorithm,
                                                        False)[0]
    kw = {"stride": layer.stride, "padding": layer.padding, "algorithm": algorithm}
    if pass_name == "conv2d_forward":
        return lambda: gpuconv.conv2d(a["x"], a["w"], a["b"], **kw)
    if pass_name == "conv2d_backward_input":
        return lambda: gpuconv.conv2d_grad_input(a["x"].shape, a["w"], a["gy"], **kw)
    return lambda: gpuconv.conv2d_grad_weight(a["x"], a["w"].shape, a["gy"], **kw)


def cudnn(torch: Any, layer: Layer, pass_name: str,
          a: dict[str, Any]) -> Callable[[], Any]:
    t = {k: torch.as_tensor(v, device="cuda") for k, v in a.items()}
    s, p = [layer.stride] * 2, [layer.padding] * 2
    if pass_name == "conv2d_forward":
        return lambda: torch.nn.functional.conv2d(t["x"], t["w"], t["b"], stride=s,
                                                  padding=p)
    mask = [pass_name == "conv2d_backward_input", pass_name == "conv2d_backward_weight",
            False]
    which = 0 if mask[0] else 1

    def run() -> Any:
        return torch.ops.aten.convolution_backward(
            t["gy"], t["x"], t["w"], None, s, p, [1, 1], False, [0, 0], 1, mask
        )[which]

    return run


def numpy_reference(layer: Layer, pass_name: str, a: dict[str, Any], cp: Any) -> Any:
    """The NumPy backend's result (float64), when PyTorch is missing."""
    import gpuconv

    h = {k: cp.asnumpy(v).astype(np.float64) for k, v in a.items()}
    kw = {"stride": layer.stride, "padding": layer.padding, "backend": "numpy"}
    if pass_name == "conv2d_forward":
        return gpuconv.conv2d(h["x"], h["w"], h["b"], **kw)
    if pass_name == "conv2d_backward_input":
        return gpuconv.conv2d_grad_input(h["x"].shape, h["w"], h["gy"], **kw)
    return gpuconv.conv2d_grad_weight(h["x"], h["w"].shape, h["gy"], **kw)


def err_limit(terms: int) -> float:
    """tests/_tol.py's float32 rule, relative to max|reference|."""
    return 1e-5 + 5e-6 * math.sqrt(terms)


def rel_err(got: Any, want: Any, cp: Any) -> float:
    g = np.asarray(cp.asnumpy(got) if not isinstance(got, np.ndarray) else got,
                   dtype=np.float64)
    w = np.asarray(want, dtype=np.float64)
    scale = max(float(np.abs(w).max()), 1e-30)
    return float(np.abs(g - w).max() / scale) if np.isfinite(g).all() else math.inf


# -------------------------------------------------------------------------------
# the benchmark


def _progress(enabled: bool, msg: str) -> None:
    if enabled:
        print(msg, file=sys.stderr, flush=True)


def run_conv_bench(quick: bool = False, repeats: int | None = None,
                   progress: bool = True,
                   variants: tuple[str, ...] = DEFAULT_VARIANTS,
                   layers: tuple[Layer, ...] | None = None,
                   budget_s: float | None = None,
                   sink: Callable[[dict[str, Any]], None] | None = None,
                   tensor_cores: bool = True,
                   tc_variants: tuple[str, ...] = TC_VARIANTS,
                   fp32: bool = True,
                   ) -> list[dict[str, Any]]:
    """Rows of the CUDA conv2d benchmark (see the module docstring).

    Parameters
    ----------
    quick : bool
        Two small layers, fewer repeats: a smoke test of the machinery.
    repeats : int, optional
        Minimum timed calls per side (default 5, quick 3).
    progress : bool
        One line per measurement on stderr.
    variants : tuple of str
        Forced variants measured besides ``'auto'`` (the one ``auto`` picks is not
        repeated; ``'naive'`` only on layers of at most :data:`NAIVE_MAX_FLOPS`).
    layers : tuple of Layer, optional
        Override the layer list.
    budget_s : float, optional
        Seconds of timed calls per side beyond the minimum (default 0.2, quick 0.05).
    sink : callable, optional
        Called with each row as soon as it is complete (to save rows incrementally).
    tensor_cores : bool
        Also the ``tf32`` and ``float16`` rows against cuDNN TF32 / float16.
    tc_variants : tuple of str
        Tensor-core variants forced (op level) besides ``auto`` on those rows
        (:data:`TC_VARIANTS`).
    fp32 : bool
        The float32 rows (``auto`` and ``variants``); ``False``: the tensor-core
        rows only.

    Returns
    -------
    list of dict
        One row per (layer, pass, variant) with the keys of ``gpuconv._bench``'s
        rows where they apply plus ``device``, ``variant``, ``resolved``
        (the kernel variant ``auto`` ran), roofline keys and ``error`` (a side that
        could not run, or failed validation and was not timed; or a (layer, pass)
        whose setup raised).
    """
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        raise ValueError(f"unknown variants {unknown}; choose from {VARIANTS}")
    repo_on_path()
    import cupy as cp

    import gpuconv

    torch = _torch()
    device = device_name(cp)
    peak, peak_how = fp32_peak_info(cp)
    bw = copy_bandwidth(cp, 1 << 28 if quick else 1 << 30)
    flush = l2_flusher(cp)
    ctx = _Context(
        cp=cp, gpuconv=gpuconv, torch=torch, device=device, peak=peak,
        peak_how=peak_how, bw=bw, flush=flush,
        min_rep=repeats if repeats is not None else (3 if quick else 5),
        budget=budget_s if budget_s is not None else (0.05 if quick else 0.2),
        progress=progress, tc_variants=tuple(tc_variants),
    )
    rows: list[dict[str, Any]] = []

    def emit(row: dict[str, Any]) -> None:
        row = _finish(row)
        rows.append(row)
        if sink is not None:
            sink(row)

    for layer in layers or (QUICK_LAYERS if quick else LAYERS):
        try:
            a = _inputs(cp, layer)
        except Exception as exc:
            for pass_name in PASSES:
                emit(_error_row(ctx, layer, pass_name, exc))
            continue
        for pass_name in PASSES:
            try:
                if fp32:
                    _bench_pass(ctx, layer, pass_name, a, variants, emit)
            except Exception as exc:  # one bad (layer, pass) must not end the run
                emit(_error_row(ctx, layer, pass_name, exc))
            for label, dtype, precision in TC_SIDES if tensor_cores else ():
                try:
                    _bench_tensor_cores(ctx, layer, pass_name, a, label, dtype,
                                        precision, emit)
                except Exception as exc:
                    row = _error_row(ctx, layer, pass_name, exc)
                    row["case"] = row["case"].replace("/float32", f"/{label}")
                    emit(row)
        del a
        cp.get_default_memory_pool().free_all_blocks()
    return rows


@dataclass
class _Context:
    cp: Any
    gpuconv: Any
    torch: Any
    device: str
    peak: float
    peak_how: str
    bw: float
    flush: Callable[[], None]
    min_rep: int
    budget: float
    progress: bool
    tc_variants: tuple[str, ...] = ()


def _error_row(ctx: _Context, layer: Layer, pass_name: str,
               exc: BaseException) -> dict[str, Any]:
    return {
        "case": f"{pass_name}/-/{layer.name}/float32", "op": pass_name,
        "shape": layer.name, "dtype": "float32", "backend": "cuda",
        "device": ctx.device, "variant": None, "resolved": None, "peer": None,
        "unit": "gflops", "flops": layer.flops,
        "bytes": layer.bytes_moved(pass_name), "fp32_peak_flops": ctx.peak,
        "fp32_peak_source": ctx.peak_how, "copy_bandwidth_bytes_s": ctx.bw,
        "floor_s": None, "error": f"{type(exc).__name__}: {exc}",
        "error_kind": "exception",
    }


def _problem(layer: Layer, a: dict[str, Any]) -> Any:
    from gpuconv._conv_args import normalize_conv2d
    from gpuconv._gpu_conv import kernel_problem

    return kernel_problem(normalize_conv2d(
        tuple(a["x"].shape), tuple(a["w"].shape), [np.float32], stride=layer.stride,
        padding=layer.padding))


def _winograd_applies(layer: Layer, pass_name: str, a: dict[str, Any],
                      variant: str) -> bool:
    from gpuconv._plan_conv import winograd_applies

    return winograd_applies(_problem(layer, a), pass_name.removeprefix("conv2d_"),
                            variant)


def _op_variant_applies(layer: Layer, pass_name: str, a: dict[str, Any],
                        variant: str) -> bool:
    """Whether an op-level variant (:data:`OP_VARIANTS`) runs its own kernels on a
    row (else the op falls back to what ``auto`` runs: no row of its own)."""
    from gpuconv._plan_conv import wgrad_nhwc_applies, wgrad_unfold_applies

    applies = {"nhwc": wgrad_nhwc_applies, "unfold": wgrad_unfold_applies}
    return (variant in applies and pass_name == "conv2d_backward_weight"
            and applies[variant](_problem(layer, a)))


def _regblock_plan(layer: Layer, pass_name: str, a: dict[str, Any],
                   variant: str | None) -> str | None:
    """Which ``tiled_regblock`` plan an input-gradient row ran: ``'col2im'`` (the
    column GEMM plus gather of few input channels) or ``'phases'``; ``None`` for
    other rows."""
    if pass_name != "conv2d_backward_input" or variant != "tiled_regblock":
        return None
    from gpuconv._plan_conv import dgrad_col2im

    return "col2im" if dgrad_col2im(_problem(layer, a)) else "phases"


def _bench_pass(ctx: _Context, layer: Layer, pass_name: str, a: dict[str, Any],
                variants: tuple[str, ...],
                emit: Callable[[dict[str, Any]], None]) -> None:
    """The rows of one (layer, pass): the peer once, then each of our sides."""
    cp, torch, peak, bw = ctx.cp, ctx.torch, ctx.peak, ctx.bw
    resolved = ctx.gpuconv.choose_algorithm(
        a["x"].shape, a["w"].shape, pass_name.removeprefix("conv2d_"),
        stride=layer.stride, padding=layer.padding,
    )
    flops, nbytes = layer.flops, layer.bytes_moved(pass_name)
    floor_s = max(flops / peak, nbytes / bw)
    compute_bound = flops / nbytes > peak / bw
    target = TARGET_3X3[pass_name] if layer.ks == 3 else TARGET_OTHER
    peer_name = "cudnn" if torch is not None else None
    want = None
    peer_time: tuple[float, float, int] | None = None
    try:
        if torch is not None:
            peer_fn = cudnn(torch, layer, pass_name, a)
            want = cp.asnumpy(cp.asarray(peer_fn()))
            peer_time = time_gpu(cp, peer_fn, ctx.flush, min_repeats=ctx.min_rep,
                                 budget_s=ctx.budget)
        else:
            want = numpy_reference(layer, pass_name, a, cp)
    except Exception as exc:  # a peer failure must not stop our rows
        peer_name = f"cudnn (failed: {type(exc).__name__}: {exc})"
        peer_time = None
        want = numpy_reference(layer, pass_name, a, cp)
    sides = ["auto", *[v for v in variants if v != resolved
                       and (v != "naive" or flops <= NAIVE_MAX_FLOPS)
                       and (v not in WINOGRAD_ERR_FACTOR
                            or _winograd_applies(layer, pass_name, a, v))
                       and (v not in OP_VARIANTS
                            or _op_variant_applies(layer, pass_name, a, v))]]
    for variant in sides:
        case = f"{pass_name}/{variant}/{layer.name}/float32"
        _progress(ctx.progress, f"[gpu conv] {case}")
        row: dict[str, Any] = {
            "case": case, "op": pass_name, "shape": layer.name,
            "dtype": "float32", "backend": "cuda", "device": ctx.device,
            "variant": variant,
            "resolved": resolved if variant == "auto" else variant,
            "peer": peer_name, "unit": "gflops", "flops": flops,
            "bytes": nbytes, "fp32_peak_flops": peak,
            "fp32_peak_source": ctx.peak_how,
            "copy_bandwidth_bytes_s": bw, "floor_s": floor_s,
            "compute_bound": compute_bound, "l2_flushed": True,
            "err_limit": err_limit(layer.terms(pass_name))
                         * WINOGRAD_ERR_FACTOR.get(variant, 1.0),
            "target_ratio": (target if variant == "auto" and peer_time is not None
                             else None),
            "peak_fraction_target": (PEAK_FRACTION_TARGET
                                     if compute_bound and variant == "auto"
                                     else None),
            "threads": None, "mpx_s": None, "peer_mpx_s": None,
            "plan": _regblock_plan(layer, pass_name, a,
                                   resolved if variant == "auto" else variant),
        }
        if peer_time is not None:
            row["peer_median_s"] = peer_time[0]
            row["peer_gflops"] = flops / peer_time[0] / 1e9
            row["peer_rate"] = row["peer_gflops"]
        else:
            row["peer_median_s"] = row["peer_gflops"] = row["peer_rate"] = None
        fn = ours(ctx.gpuconv, layer, pass_name, a, variant)
        try:
            got = fn()
            row["max_err"] = rel_err(got, want, cp)
            del got
            if not row["max_err"] <= row["err_limit"]:
                row["error"] = (f"validation failed: error {row['max_err']:.3g} > "
                                f"{row['err_limit']:.3g}; not timed")
                row["validation_failed"] = True
                row["error_kind"] = "validation"
                emit(row)
                continue
            med, best, n = time_gpu(cp, fn, ctx.flush, min_repeats=ctx.min_rep,
                                    budget_s=ctx.budget)
        except Exception as exc:
            refused = isinstance(exc, ValueError) and "shared memory" in str(exc)
            row["error"] = f"{type(exc).__name__}: {exc}"
            row["error_kind"] = "refused" if refused else "exception"
            emit(row)
            continue
        row.update(median_s=med, min_s=best, repeats=n, gflops=flops / med / 1e9)
        row["rate"] = row["gflops"]
        emit(row)


def _bench_tensor_cores(ctx: _Context, layer: Layer, pass_name: str,
                        a: dict[str, Any], label: str, dtype: str, precision: str,
                        emit: Callable[[dict[str, Any]], None]) -> None:
    """The tensor-core rows of a pass: ours with ``precision`` on ``dtype`` data
    (``auto``, then each of ``ctx.tc_variants`` forced at the op level where it
    runs something of its own: ``'mma'`` the NCHW mma kernels, ``'mma_nhwc'`` the
    NHWC pipeline of the forward pass and the stride-1 input gradient) against
    cuDNN at the same precision (TF32 allowed, or float16 tensors), timed once."""
    cp, torch = ctx.cp, ctx.torch
    data = {k: v.astype(dtype) for k, v in a.items()}
    op = pass_name.removeprefix("conv2d_")
    resolved = ctx.gpuconv.choose_algorithm(
        a["x"].shape, a["w"].shape, op, stride=layer.stride, padding=layer.padding,
        dtype=dtype, precision=precision,
    )
    flops = layer.flops
    nbytes = layer.bytes_moved(pass_name, np.dtype(dtype).itemsize)
    case = f"{pass_name}/auto/{layer.name}/{label}"
    _progress(ctx.progress, f"[gpu conv] {case}")
    row: dict[str, Any] = {
        "case": case, "op": pass_name, "shape": layer.name, "dtype": dtype,
        "precision": precision, "backend": "cuda", "device": ctx.device,
        "variant": "auto", "resolved": resolved, "peer": None, "unit": "gflops",
        "flops": flops, "bytes": nbytes, "fp32_peak_flops": ctx.peak,
        "fp32_peak_source": ctx.peak_how, "copy_bandwidth_bytes_s": ctx.bw,
        # the memory floor only (the FP32 peak is not the tensor cores' ceiling;
        # fp32_peak_fraction may exceed 1 on these rows)
        "floor_s": nbytes / ctx.bw, "compute_bound": None, "l2_flushed": True,
        "err_limit": TC_ERR_LIMIT, "target_ratio": None,
        "peak_fraction_target": None, "threads": None, "mpx_s": None,
        "peer_mpx_s": None, "peer_median_s": None, "peer_gflops": None,
        "peer_rate": None,
    }
    want = None
    if torch is not None:
        old = torch.backends.cudnn.allow_tf32
        torch.backends.cudnn.allow_tf32 = label == "tf32"
        try:
            peer_fn = cudnn(torch, layer, pass_name, data)
            want = cp.asnumpy(cp.asarray(peer_fn()))
            med, _, _ = time_gpu(cp, peer_fn, ctx.flush, min_repeats=ctx.min_rep,
                                 budget_s=ctx.budget)
            row.update(peer=f"cudnn {label}", peer_median_s=med,
                       peer_gflops=flops / med / 1e9)
            row["peer_rate"] = row["peer_gflops"]
            row["target_ratio"] = TC_TARGET_3X3 if layer.ks == 3 else None
        except Exception as exc:
            row["peer"] = f"cudnn {label} (failed: {type(exc).__name__}: {exc})"
        finally:
            torch.backends.cudnn.allow_tf32 = old
    if want is None:
        want = numpy_reference(layer, pass_name, a, cp)
    kw = {"stride": layer.stride, "padding": layer.padding, "precision": precision}
    g = ctx.gpuconv
    if pass_name == "conv2d_forward":
        def fn() -> Any:
            return g.conv2d(data["x"], data["w"], data["b"], **kw)
    elif pass_name == "conv2d_backward_input":
        def fn() -> Any:
            return g.conv2d_grad_input(data["x"].shape, data["w"], data["gy"], **kw)
    else:
        def fn() -> Any:
            return g.conv2d_grad_weight(data["x"], data["w"].shape, data["gy"], **kw)
    base = dict(row)
    _validate_and_time(ctx, row, fn, want, emit)
    for variant in ctx.tc_variants:
        forced = _forced_tensor_core_call(layer, op, data, precision, variant)
        if forced is None or forced[0] == resolved:  # the auto row ran it
            continue
        ran, call = forced
        case = f"{pass_name}/{variant}/{layer.name}/{label}"
        _progress(ctx.progress, f"[gpu conv] {case}")
        _validate_and_time(ctx, {**base, "case": case, "variant": variant,
                                 "resolved": ran}, call, want, emit)


def _forced_tensor_core_call(layer: Layer, op: str, data: dict[str, Any],
                             precision: str, variant: str
                             ) -> tuple[str, Callable[[], Any]] | None:
    """``(kernels run, call)`` of a pass with the tensor-core variant forced at the
    op level (the backend op of ``gpuconv._gpu_conv``, the data as the API hands it
    over), or ``None`` where the variant would run what another row runs:
    ``'mma_nhwc'`` where :func:`gpuconv._plan_conv.nhwc_applies` does not hold (the
    ops fall back to ``'mma'``)."""
    from gpuconv import _gpu_conv, _plan_conv
    from gpuconv._conv_args import normalize_conv2d

    x, w = data["x"], data["w"]
    p = normalize_conv2d(x.shape, w.shape, [x.dtype], stride=layer.stride,
                         padding=layer.padding)
    p = replace(p, precision=precision)
    kind = _plan_conv.mma_kind(p, op)
    if kind is None:
        return None
    if variant == "mma_nhwc" and not (op in _plan_conv.NHWC_PASSES
                                      and _plan_conv.nhwc_applies(p, op, kind)):
        return None
    if op == "forward":  # the bias in float32, as the API hands it over
        b = data["b"].astype(np.float32)
        return variant, lambda: _gpu_conv.conv2d_forward(x, w, b, p, variant)
    if op == "backward_input":
        return variant, lambda: _gpu_conv.conv2d_backward_input(data["gy"], w, p,
                                                                variant)
    return variant, lambda: _gpu_conv.conv2d_backward_weight(data["gy"], x, p,
                                                             variant, False)[0]


def _validate_and_time(ctx: _Context, row: dict[str, Any], fn: Callable[[], Any],
                       want: Any, emit: Callable[[dict[str, Any]], None]) -> None:
    """Validate ``fn()`` against ``want`` (not timed when it fails), then time it."""
    cp = ctx.cp
    row["max_err"] = rel_err(fn(), want, cp)
    if not row["max_err"] <= row["err_limit"]:
        row.update(error=f"validation failed: error {row['max_err']:.3g} > "
                         f"{row['err_limit']:.3g}; not timed",
                   validation_failed=True, error_kind="validation")
        emit(row)
        return
    med, best, n = time_gpu(cp, fn, ctx.flush, min_repeats=ctx.min_rep,
                            budget_s=ctx.budget)
    row.update(median_s=med, min_s=best, repeats=n, gflops=row["flops"] / med / 1e9)
    row["rate"] = row["gflops"]
    emit(row)


def _finish(row: dict[str, Any]) -> dict[str, Any]:
    med = row.get("median_s")
    peer = row.get("peer_median_s")
    row.setdefault("median_s", None)
    row.setdefault("min_s", None)
    row.setdefault("repeats", None)
    row.setdefault("gflops", None)
    row.setdefault("rate", None)
    row.setdefault("max_err", None)
    row["ratio"] = med / peer if med and peer else None
    row["roofline_fraction"] = row["floor_s"] / med if med else None
    row["fp32_peak_fraction"] = (row["flops"] / med / row["fp32_peak_flops"]
                                 if med else None)
    tgt = row.get("target_ratio")
    row["meets_target"] = (row["ratio"] <= tgt) if tgt and row["ratio"] else (
        False if tgt else None)
    pft = row.get("peak_fraction_target")
    row["meets_peak"] = (row["fp32_peak_fraction"] >= pft
                         if pft and row["fp32_peak_fraction"] is not None
                         else (False if pft else None))
    return row


def format_rows(rows: list[dict[str, Any]]) -> str:
    """A short text table: time, ratio to cuDNN, TFLOP/s, shares of peak/floor."""
    head = ("case", "ms", "cudnn ms", "ratio", "TFLOP/s", "%peak", "%floor", "note")
    data = []
    for r in rows:
        def f(v: Any, fmt: str) -> str:
            return "-" if v is None else format(v, fmt)

        note = r.get("error") or ""
        if not note and r.get("target_ratio"):
            note = f"<= {r['target_ratio']:g}x " + ("ok" if r["meets_target"]
                                                    else "MISSED")
        if not r.get("error") and r.get("peak_fraction_target"):
            note += "; 40% peak " + ("ok" if r["meets_peak"] else "MISSED")
        data.append((
            r["case"], f(r.get("median_s") and r["median_s"] * 1e3, ".3f"),
            f(r.get("peer_median_s") and r["peer_median_s"] * 1e3, ".3f"),
            f(r.get("ratio"), ".2f"), f(r.get("gflops") and r["gflops"] / 1e3, ".1f"),
            f(r.get("fp32_peak_fraction") and 100 * r["fp32_peak_fraction"], ".0f"),
            f(r.get("roofline_fraction") and 100 * r["roofline_fraction"], ".0f"),
            note[:90],
        ))
    widths = [max(len(x[i]) for x in [head, *data]) for i in range(len(head))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(x, widths, strict=True))
              for x in data]
    return "\n".join(line.rstrip() for line in lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="two small layers")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds of timed calls per side (default 0.2)")
    ap.add_argument("--json", default=None,
                    help="write the rows here (rewritten after every row)")
    ap.add_argument("--plot", default=None, metavar="OUT.png",
                    help="ratio chart of the auto rows (needs matplotlib)")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--no-tensor-cores", action="store_true",
                    help="skip the tf32 / float16 rows")
    ap.add_argument("--no-fp32", action="store_true",
                    help="the tensor-core rows only (no float32 rows)")
    ap.add_argument("--layers", default="",
                    help="only the layers whose name contains one of these "
                    "comma-separated substrings (e.g. N32-C256,N16-C64-56)")
    ap.add_argument("--tc-variants", default=",".join(TC_VARIANTS),
                    help="tensor-core variants forced besides auto on the tf32 / "
                    "float16 rows, comma-separated, or '' (default %(default)s)")
    ap.add_argument("--variants", default=",".join(DEFAULT_VARIANTS),
                    help="forced variants besides auto, comma-separated, or '' for "
                    f"auto only (of {','.join(VARIANTS)}; default %(default)s)")
    args = ap.parse_args(argv)
    variants = tuple(v for v in args.variants.split(",") if v)
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        ap.error(f"unknown variants {unknown}; choose from {VARIANTS}")
    meta = start_run("bench_gpu_conv", argv)
    if meta is None:
        return 2
    rows, save = row_saver(args.json, meta)
    wanted = [w for w in args.layers.split(",") if w]
    layers = None
    if wanted:
        layers = tuple(L for L in (QUICK_LAYERS if args.quick else LAYERS)
                       if any(w in L.name for w in wanted))
        if not layers:
            ap.error(f"no layer name contains any of {wanted}")
    run_conv_bench(quick=args.quick, repeats=args.repeats, layers=layers,
                   fp32=not args.no_fp32,
                   progress=not args.no_progress, variants=variants,
                   budget_s=args.budget, sink=lambda row: save([row]),
                   tensor_cores=not args.no_tensor_cores,
                   tc_variants=tuple(v for v in args.tc_variants.split(",") if v))
    print(format_rows(rows))
    if args.plot:
        plot_auto_rows(rows, args.plot, "bench_gpu_conv")
    return 1 if failed(rows) else 0


if __name__ == "__main__":
    sys.exit(main())
