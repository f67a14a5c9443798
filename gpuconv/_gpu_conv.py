"""The CUDA backend's conv2d ops: allocate, plan (``gpuconv._plan_conv``), launch.

Every op has the backend signature of :mod:`gpuconv._cpu_conv` plus keywords:

``device``
    Where the launches run: ``None`` is the current CUDA device through CuPy
    (:class:`gpuconv._kernels.CupyDevice`); tests pass
    ``gpuconv._emulate.EmulatedDevice()`` (``xp = numpy``) to run the very same
    launches on the CPU emulation harness.
``out`` (and ``out_bias``)
    A preallocated, C-contiguous output of the right shape and dtype to write
    into (tests poison it with NaN first to catch unwritten elements): the compute
    dtype (``p.compute_dtype``), or for a float16 problem's forward pass and input
    gradient also float16 (written by the tensor-core kernels' epilogue where they
    can, else the float32 result rounded into it once).

Output dtype: ``p.compute_dtype`` (float32 for float16 data: the API rounds once),
except that a float16 problem's forward pass and input gradient return float16
where the tensor-core kernels round their result in the epilogue
(:func:`gpuconv._plan_conv.mma_out_dtype`: the 'f16' kernels, one split, no
padding-mode fold), which the API then passes through; the same bits as rounding
the float32 result.

Set :data:`POISON_OUTPUTS` to ``True`` (tests do, with ``monkeypatch``) to have
every output and temporary buffer the ops allocate filled with NaN instead of left
uninitialised, so an element a kernel forgets to write shows up through the public
API as well.

Inputs are made C-contiguous (a copy only when needed); the public API has already
cast them to ``p.compute_dtype`` (float16 data it hands over as float16: the
tensor-core paths read it as is, the FP32 kernels widen it first) and handled empty
problems. Complex problems are
decomposed into real launches: ``(a + ib) * (c + id)`` is bilinear, so each pass is
four real passes (``ac - bd``, ``ad + bc``); the Gauss three-product trick would
save one pass at the cost of cancellation error, so it is not used.

The weight and bias gradients (``conv2d_backward_weight``, ``conv2d_backward_bias``)
are deterministic split-K reductions (``cuda/conv2d_backward_weight.cu``): partial
sums in a workspace, then a second launch adding them in a fixed order.

Every op checks the kernels' 32-bit extent limits
(:func:`gpuconv._plan_conv.check_extents`) before it allocates anything, so an
oversized problem fails with a clean ``ValueError``, never an out-of-memory error.

:func:`choose_algorithm` is the public ``gpuconv.choose_algorithm``: the variant
``algorithm='auto'`` runs, decided on the problem as the kernels see it
(:func:`kernel_problem`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from gpuconv import _plan_conv
from gpuconv._conv_args import Conv2dProblem, normalize_conv2d
from gpuconv._launch import device_address
from gpuconv._plan_cache import LRU, LaunchPlan
from gpuconv._plan_conv import (
    PASSES,
    WINOGRAD_TILES,
    check_extents,
    col2im_slice_table,
    dgrad_col2im,
    fold_maps,
    mma_kind,
    mma_out_dtype,
    mma_preferred,
    needs_padding_copy,
    nhwc_applies,
    nhwc_preferred,
    pad_maps,
    padded_problem,
    plan_conv2d_backward_bias,
    plan_conv2d_backward_input,
    plan_conv2d_backward_weight,
    plan_conv2d_forward,
    plan_conv2d_mma,
    plan_conv2d_mma_nhwc,
    plan_conv2d_winograd,
    plan_convert,
    plan_pad_fold,
    plan_pad_gather,
    resolve_algorithm,
    slice_table,
    tap_table,
    winograd_applies,
    winograd_gemm_problem,
)
from gpuconv._precision import applies_tf32, select_precision

#: Fill every output and temporary allocated here with NaN (for tests).
POISON_OUTPUTS = False

_TABLE_CACHE_SIZE = 64


#: float16, compared with an operand's dtype on every call (a dtype object against
#: a dtype object: no conversion of the scalar type per call).
_F16 = np.dtype(np.float16)
_F32 = np.dtype(np.float32)


def default_device() -> Any:
    """The device ops use when ``device=None``: CuPy on the current GPU (the one
    :func:`gpuconv._kernels.cupy_device` of the process)."""
    from gpuconv._kernels import cupy_device

    return cupy_device()


def _dev(device: Any) -> Any:
    return default_device() if device is None else device


def _empty(xp: Any, shape: tuple[int, ...], dtype: Any) -> Any:
    if POISON_OUTPUTS:  # NaN; all bits set for integers (the packed float16 bits)
        kind = np.dtype(dtype).kind
        fill = np.iinfo(dtype).max if kind == "u" else -1 if kind == "i" else np.nan
        return xp.full(shape, fill, dtype=dtype)
    return xp.empty(shape, dtype=dtype)


def _out(xp: Any, out: Any, shape: tuple[int, ...], dtype: Any, what: str,
         half: bool = False) -> Any:
    """``out`` checked, or a new array of ``dtype``. ``half``: float16 is accepted
    too (a float16 problem's ``out`` of the forward pass or the input gradient,
    :func:`_half_result`)."""
    if out is None:
        return _empty(xp, shape, dtype)
    if tuple(out.shape) != tuple(shape) or (
        np.dtype(out.dtype) != np.dtype(dtype) and not (half and out.dtype == _F16)
    ):
        dtypes = f"{np.dtype(dtype)} or float16" if half else f"{np.dtype(dtype)}"
        raise ValueError(
            f"{what} must have shape {tuple(shape)} and dtype {dtypes}, got "
            f"{tuple(out.shape)} {out.dtype}"
        )
    if not out.flags.c_contiguous:
        raise ValueError(f"{what} must be C-contiguous")
    return out


def _half_result(
    p: Conv2dProblem, pass_name: str, kind: str | None, out: Any
) -> tuple[bool, bool]:
    """``(half, cast)`` for a forward or input-gradient op: ``half``, the mma
    kernels write the float16 result themselves (a float16 problem on the 'f16'
    kernels where :func:`gpuconv._plan_conv.mma_out_dtype` says float16, and
    ``out`` absent or float16: the op returns float16 and the API casts nothing);
    ``cast``, ``out`` is float16 but the kernels write float32 (split-K, the
    padding modes' fold, the FP32 kernels): the op computes float32 and rounds it
    into ``out`` once."""
    f16_out = out is not None and out.dtype == _F16
    if p.dtype != _F16 or (out is not None and not f16_out):
        return False, False
    half = False
    if kind == "f16":
        k = (p, pass_name)
        dt = _OUT_DTYPES.get(k)
        if dt is None:
            dt = mma_out_dtype(p, pass_name, kind)
            _OUT_DTYPES.put(k, dt)
        half = dt == _F16
    return half, f16_out and not half


def _half_view(a: Any, half: bool) -> Any:
    """The float16 output as the kernels take it (its bits, ``uint16``)."""
    return a.view(np.uint16) if half else a


def _contig(xp: Any, a: Any) -> Any:
    if a is None or a.flags.c_contiguous:
        return a
    return xp.ascontiguousarray(a)


#: Launch plans of the real-dtype ops (:mod:`gpuconv._plan_cache`), keyed by the
#: pass, the problem, the algorithm argument, which optional buffers are present
#: and the device.
_PLANS = LRU("conv2d plans")
#: :func:`gpuconv._plan_conv.mma_out_dtype` of a float16 problem's pass, per call
#: looked up here (it decides the output's dtype before the plan runs).
_OUT_DTYPES = LRU("conv2d mma output dtypes")


def _plan_key(dev: Any) -> Any:
    pk = getattr(dev, "plan_key", None)
    return None if pk is None else pk()


def _planned(
    key: Any, plan: LaunchPlan | None, dev: Any, buffers: tuple[Any, ...],
    build: Callable[[Callable[..., Any]], list[Any]],
) -> None:
    """Run a pass on ``buffers``: replay ``plan`` (from ``_PLANS[key]``), or plan it
    with ``build(alloc)`` (which returns the launches and allocates temporaries
    with ``alloc(shape, dtype)``), run that and keep it."""
    xp = dev.xp
    alloc = functools.partial(_empty, xp)
    if plan is not None:
        plan.run(buffers, alloc)
        return
    temps: list[Any] = []
    specs: list[tuple[tuple[int, ...], Any]] = []

    def record(shape: tuple[int, ...], dtype: Any) -> Any:
        a = alloc(tuple(shape), dtype)
        temps.append(a)
        specs.append((tuple(shape), dtype))
        return a

    launches = build(record)
    _run(dev, launches)
    plan = LaunchPlan(dev, launches, len(buffers), specs, buffers=(*buffers, *temps))
    if plan.reusable:
        _PLANS.put(key, plan)


def _device_key(dev: Any) -> tuple[Any, ...] | None:
    """Cache key of the device buffers' home, or ``None`` (host memory: no cache)."""
    xp = dev.xp
    if xp is np:
        return None
    return (id(dev), int(xp.cuda.Device().id))


def _const_array(
    dev: Any, key: tuple[Any, ...], build: Callable[[], np.ndarray]
) -> Any:
    """A small constant table (taps, index maps) on the device, uploaded once per
    device and key."""
    home = _device_key(dev)
    if home is None:
        return build()
    cache: dict[Any, Any] = dev.__dict__.setdefault("_gpuconv_tables", {})
    full_key = (home, *key)
    arr = cache.get(full_key)
    if arr is None:
        if len(cache) >= _TABLE_CACHE_SIZE:
            try:
                cache.pop(next(iter(cache)), None)
            except RuntimeError:  # another thread changed it meanwhile
                pass
        arr = dev.xp.asarray(build())
        cache[full_key] = arr
    return arr


def _pad_fold(dev: Any, p: Conv2dProblem, gxpad: Any, gx: Any) -> list[Any]:
    """The launches folding the padded input gradient ``gxpad`` into ``gx``, with
    the fold maps of ``p`` uploaded once per device (:func:`_const_array`)."""
    mkey = (p.H, p.W, p.padding, p.padding_mode)
    maps = [
        _const_array(dev, ("foldmap", i, *mkey), lambda i=i: fold_maps(p)[i])
        for i in range(4)
    ]
    return plan_pad_fold(p, gxpad, gx, *maps)


def _real_problem(p: Conv2dProblem) -> Conv2dProblem:
    """The same problem in the real dtype of a complex one."""
    real = np.dtype(np.dtype(p.compute_dtype).type(0).real.dtype)
    return dataclasses.replace(p, dtype=real, compute_dtype=real)


def _parts(xp: Any, a: Any) -> tuple[Any, Any]:
    return xp.ascontiguousarray(a.real), xp.ascontiguousarray(a.imag)


def _run(dev: Any, launches: list[Any]) -> None:
    for launch in launches:
        dev.launch(launch)


def _taps(dev: Any, channels: int, p: Conv2dProblem) -> Any:
    """The tap table of the tensor-core kernels (uploaded once per geometry)."""
    args = (channels, p.KH, p.KW, p.dilation[0], p.dilation[1])
    return _const_array(dev, ("taps", *args), lambda: tap_table(*args))


def _slices(dev: Any, p: Conv2dProblem, pass_name: str) -> Any:
    """The ``tiled_regblock`` slice table of a pass (uploaded once per geometry);
    for an input gradient of few input channels (``dgrad_col2im``), the column
    GEMM's table."""
    if pass_name == "backward_input" and dgrad_col2im(p):
        key = ("col2im slices", p.Cg, p.Kg, p.KH, p.KW)
        return _const_array(dev, key, lambda: col2im_slice_table(p))
    key = ("slices", pass_name, p.Cg, p.Kg, p.KH, p.KW, p.stride, p.dilation,
           p.padding)
    return _const_array(dev, key, lambda: slice_table(p, pass_name))


def _winograd(
    dev: Any, p: Conv2dProblem, pass_name: str, src: Any, w: Any, bias: Any, dst: Any,
    alloc: Callable[..., Any], variant: str,
) -> list[Any]:
    """The Winograd launches of a forward pass or input gradient (``variant``:
    ``'winograd'`` F(2x2, 3x3) or ``'winograd4'`` F(4x4, 3x3))."""
    slices = _slices(dev, winograd_gemm_problem(p, pass_name, variant), "forward")
    return plan_conv2d_winograd(p, pass_name, src, w, bias, dst, slices, alloc=alloc,
                                variant=variant)


def _pad_input(
    dev: Any, x: Any, p: Conv2dProblem, alloc: Callable[..., Any], launches: list
) -> tuple[Any, Conv2dProblem]:
    """``(x, p)`` unchanged for zero padding, else the once-padded input (from
    ``alloc``; its gather appended to ``launches``) and the problem on it (pads
    0)."""
    if not needs_padding_copy(p):
        return x, p
    key = (p.H, p.W, p.padding, p.padding_mode)
    maps = [
        _const_array(dev, ("padmap", i, *key), lambda i=i: pad_maps(p)[i])
        for i in range(2)
    ]
    Hp, Wp = p.padded_hw
    xpad = alloc((p.N, p.C, Hp, Wp), p.compute_dtype)
    launches += plan_pad_gather(p, x, xpad, *maps)
    return xpad, padded_problem(p)


# --------------------------------------------------------------------------------
# tensor cores (cuda/conv2d_mma.cu)


def _as32(xp: Any, a: Any) -> Any:
    """float16 data (the API hands it over as is) widened to float32 for the FP32
    kernels; anything else unchanged."""
    if a is None or a.dtype != _F16:
        return a
    return xp.ascontiguousarray(a.astype(np.float32))


def _mma_capable(dev: Any) -> bool:
    """True when ``dev`` runs mma.sync: the emulator, or a GPU of compute
    capability 8.0 or newer."""
    if dev.xp is np:
        return True
    try:
        device = dev.xp.cuda.Device()  # the current one
        cache: dict[int, bool] = dev.__dict__.setdefault("_gpuconv_mma_capable", {})
        if int(device.id) not in cache:
            cache[int(device.id)] = int(device.compute_capability) >= 80
        return cache[int(device.id)]
    except Exception:  # pragma: no cover - a broken device query: stay on FP32
        return False


def _winograd_or_auto(p: Conv2dProblem, pass_name: str, algorithm: str) -> str:
    """``algorithm`` as an op runs it: a Winograd variant only where
    :func:`gpuconv._plan_conv.winograd_applies` to the problem as the kernels see it,
    else ``'auto'`` (its route, tensor cores included, and its plan). Decided once per
    call, before the route and the plan's key."""
    if algorithm in WINOGRAD_TILES and not winograd_applies(
            kernel_problem(p), pass_name, algorithm):
        return "auto"
    return algorithm


#: The op-level algorithms forcing the tensor-core kernels (not public).
MMA_FORCED = ("mma", "mma_nhwc")


def _nhwc(algorithm: str, p0: Conv2dProblem, pass_name: str, kind: str) -> bool:
    """True when a tensor-core pass of the zero-padded ``p0`` runs on the NHWC
    pipeline: ``'auto'`` where :func:`gpuconv._plan_conv.nhwc_preferred`,
    ``'mma_nhwc'`` where :func:`gpuconv._plan_conv.nhwc_applies` (elsewhere that
    value runs the other mma kernels, as ``'mma'``)."""
    if algorithm == "auto":
        return nhwc_preferred(p0, pass_name, kind)
    return algorithm == "mma_nhwc" and nhwc_applies(p0, pass_name, kind)


#: :func:`gpuconv._plan_conv.padded_problem` of a non-zero padding mode's problem,
#: per call looked up here for the route decision (:func:`_mma_pass`; rebuilding
#: the dataclass is ~4 us of host time).
_PADDED = LRU("conv2d padded problems")


def _padded_problem(p: Conv2dProblem) -> Conv2dProblem:
    q = _PADDED.get(p)
    if q is None:
        q = padded_problem(p)
        _PADDED.put(p, q)
    return q


def _mma_pass(dev: Any, p: Conv2dProblem, pass_name: str, algorithm: str) -> str | None:
    """The mma kind a real pass runs on (``None``: the FP32 kernels).

    ``'auto'``: where :func:`gpuconv._plan_conv.nhwc_preferred` takes the NHWC
    pipeline (predicted faster from the SASS) or
    :func:`gpuconv._plan_conv.mma_preferred` says the tensor-core kernels measured
    faster (and the GPU has them); ``'mma'`` (an op-level value,
    not public: tests and benchmarks) forces them, ``'mma_nhwc'`` too, on the NHWC
    pipeline where :func:`gpuconv._plan_conv.nhwc_applies` (:func:`_nhwc`); the FP32
    variants (Winograd included, once :func:`_winograd_or_auto` kept it) never."""
    if algorithm in MMA_FORCED:
        kind = mma_kind(p, pass_name)
        if kind is None:
            raise ValueError(
                f"algorithm={algorithm!r} (tensor cores) takes float16 data or float32 "
                f"data with precision='tf32', got {np.dtype(p.dtype)} with precision="
                f"{p.precision!r}"
            )
        if not _mma_capable(dev):
            raise ValueError(f"algorithm={algorithm!r} needs a GPU of compute "
                             "capability 8.0 or newer")
        return kind
    if algorithm != "auto":
        return None
    kind = mma_kind(p, pass_name)
    if kind is None:
        return None
    # decided on the problem as the kernels see it (padded once for the non-zero
    # padding modes), as choose_algorithm and _nhwc decide: the input gradient's
    # pixels are the padded input's
    kp = _padded_problem(p) if needs_padding_copy(p) else p
    if not (nhwc_preferred(kp, pass_name, kind) or mma_preferred(kp, pass_name)):
        return None
    return kind if _mma_capable(dev) else None


def _dt(a: Any) -> np.dtype | None:
    """Part of a plan's key: the dtype of an operand (float16 data is converted by
    the plan, float32 is not). The dtype object itself: hashing it costs far less
    than its name (``str(dtype)`` was a fifth of a small call's host time)."""
    return None if a is None else a.dtype


def _bits(a: Any) -> Any:
    """float16 data as its bits (``uint16``, what ``convert_half_to_float`` reads);
    anything else unchanged."""
    if a is None or a.dtype != _F16:
        return a
    return a.view(np.uint16)


def _converted(
    a: Any, tf32: bool, alloc: Callable[..., Any], launches: list[Any]
) -> Any:
    """The FP32 kernels' operand: float16 bits (:func:`_bits`) widened and, with
    ``tf32``, float32 rounded to TF32, into a temporary from ``alloc`` (the
    ``cuda/convert.cu`` launch appended to ``launches``); float32 otherwise as is.
    ``a`` is never written."""
    if a.dtype == np.uint16:
        kind = "f16"  # exact; float16 values are TF32 values already
    elif tf32:
        kind = "tf32"
    else:
        return a
    out = alloc(tuple(a.shape), np.float32)
    launches += plan_convert(kind, a, out)
    return out


def _mma_operand(xp: Any, a: Any, kind: str) -> Any:
    """What an mma kernel reads: float32 as is, float16 data (float16 from the API,
    or float32 holding float16 values, exactly) as float16 bits."""
    if kind == "tf32":
        return a
    return xp.ascontiguousarray(a.astype(np.float16, copy=False)).view(np.uint16)


def _no_bias(dev: Any) -> Any:
    return _const_array(dev, ("no_bias",), lambda: np.zeros(1, np.float32))


def _forward_mma(
    dev: Any, key: Any, plan: Any, x: Any, w: Any, bias: Any, p: Conv2dProblem,
    kind: str, y: Any, half: bool, algorithm: str,
) -> Any:
    """The forward pass on tensor cores (planned and cached like the FP32 path; a
    float16 input of a non-zero padding mode is padded in float32 first, then
    converted: that call is not cached). ``y`` float16 (``half``): the kernel
    rounds the FP32 accumulator plus bias once, to nearest even (one split); else
    it writes the float32 accumulators (split-K: a workspace reduced into ``y``)
    and a float16 result is rounded once, by the API's cast."""
    xp = dev.xp
    yk = _half_view(y, half)
    if kind == "f16" and needs_padding_copy(p):
        pad: list[Any] = []
        xpad, p0 = _pad_input(dev, _as32(xp, x), p, functools.partial(_empty, xp), pad)
        _run(dev, pad)  # before the float16 conversion of the padded input
        xk, wk = _mma_operand(xp, xpad, kind), _mma_operand(xp, w, kind)
        alloc = functools.partial(_empty, xp)
        if _nhwc(algorithm, p0, "forward", kind):
            _run(dev, plan_conv2d_mma_nhwc(p0, "forward", kind, xk, wk, yk, bias,
                                           no_bias=_no_bias(dev), alloc=alloc,
                                           half_out=half))
            return y
        _run(dev, plan_conv2d_mma(
            p0, "forward", kind, xk, wk, yk, _taps(dev, p0.Cg, p0), bias,
            no_bias=_no_bias(dev), alloc=alloc, half_out=half,
        ))
        return y
    xa, wa = _mma_operand(xp, x, kind), _mma_operand(xp, w, kind)

    def build(alloc: Callable[..., Any]) -> list[Any]:
        launches: list[Any] = []
        xin, p0 = _pad_input(dev, xa, p, alloc, launches)  # float32 (tf32) here
        if _nhwc(algorithm, p0, "forward", kind):
            return launches + plan_conv2d_mma_nhwc(
                p0, "forward", kind, xin, wa, yk, bias, no_bias=_no_bias(dev),
                alloc=alloc, half_out=half)
        return launches + plan_conv2d_mma(
            p0, "forward", kind, xin, wa, yk, _taps(dev, p0.Cg, p0), bias,
            no_bias=_no_bias(dev), alloc=alloc, half_out=half,
        )

    _planned(key, plan, dev, (xa, wa, bias, yk), build)
    return y


def _backward_input_mma(
    dev: Any, key: Any, plan: Any, gy: Any, w: Any, p: Conv2dProblem, kind: str,
    gx: Any, half: bool, algorithm: str,
) -> Any:
    """The input gradient on tensor cores (planned and cached), folded back for
    the non-zero padding modes. ``gx`` float16 (``half``: zero padding, one split):
    rounded once in the kernel's epilogue; else the float32 accumulators (and the
    fold's float32 sums), rounded once by the API's cast for float16."""
    xp = dev.xp
    gya, wa = _mma_operand(xp, gy, kind), _mma_operand(xp, w, kind)
    gxk = _half_view(gx, half)

    def build(alloc: Callable[..., Any]) -> list[Any]:
        if not needs_padding_copy(p):
            if _nhwc(algorithm, p, "backward_input", kind):
                return plan_conv2d_mma_nhwc(p, "backward_input", kind, gya, wa, gxk,
                                            alloc=alloc, half_out=half)
            return plan_conv2d_mma(p, "backward_input", kind, gya, wa, gxk,
                                   _taps(dev, p.Kg, p), alloc=alloc, half_out=half)
        p0 = padded_problem(p)
        gxpad = alloc(p0.x_shape, p.compute_dtype)
        if _nhwc(algorithm, p0, "backward_input", kind):
            launches = plan_conv2d_mma_nhwc(p0, "backward_input", kind, gya, wa, gxpad,
                                            alloc=alloc)
        else:
            launches = plan_conv2d_mma(p0, "backward_input", kind, gya, wa, gxpad,
                                       _taps(dev, p0.Kg, p0), alloc=alloc)
        return launches + _pad_fold(dev, p, gxpad, gx)

    _planned(key, plan, dev, (gya, wa, gxk), build)
    return gx


def _backward_weight_mma(
    dev: Any, key: Any, plan: Any, gy: Any, x: Any, p: Conv2dProblem, kind: str,
    gw: Any, gb: Any, algorithm: str,
) -> tuple[Any, Any]:
    """The weight gradient on tensor cores (planned and cached but for a float16
    input of a non-zero padding mode); the bias gradient is its own op on the
    unrounded gy."""
    xp = dev.xp
    if gb is not None:
        conv2d_backward_bias(gy, p, device=dev, out=gb)
    gya = _mma_operand(xp, gy, kind)
    if kind == "f16" and needs_padding_copy(p):
        pad: list[Any] = []
        xpad, p0 = _pad_input(dev, _as32(xp, x), p, functools.partial(_empty, xp), pad)
        _run(dev, pad)
        xk, alloc = _mma_operand(xp, xpad, kind), functools.partial(_empty, xp)
        if _nhwc(algorithm, p0, "backward_weight", kind):
            _run(dev, plan_conv2d_mma_nhwc(p0, "backward_weight", kind, gya, xk, gw,
                                           alloc=alloc))
        else:
            _run(dev, plan_conv2d_mma(p0, "backward_weight", kind, gya, xk, gw,
                                      _taps(dev, p0.Cg, p0), alloc=alloc))
        return gw, gb
    xa = _mma_operand(xp, x, kind)

    def build(alloc: Callable[..., Any]) -> list[Any]:
        launches: list[Any] = []
        xin, p0 = _pad_input(dev, xa, p, alloc, launches)
        if _nhwc(algorithm, p0, "backward_weight", kind):
            return launches + plan_conv2d_mma_nhwc(
                p0, "backward_weight", kind, gya, xin, gw, alloc=alloc)
        return launches + plan_conv2d_mma(
            p0, "backward_weight", kind, gya, xin, gw, _taps(dev, p0.Cg, p0),
            alloc=alloc,
        )

    _planned(key, plan, dev, (gya, xa, gw), build)
    return gw, gb


# --------------------------------------------------------------------------------
# the auto decision


def kernel_problem(p: Conv2dProblem) -> Conv2dProblem:
    """The problem as the kernels see it: complex problems as their real parts
    (four real passes), non-zero padding modes as the once-padded input with
    padding 0 (:func:`gpuconv._plan_conv.padded_problem`)."""
    if p.compute_dtype.kind == "c":
        p = _real_problem(p)
    return padded_problem(p) if needs_padding_copy(p) else p


def choose_algorithm(
    x_shape: Sequence[int],
    w_shape: Sequence[int],
    pass_name: str = "forward",
    *,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, ...] | str = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    dtype: Any = "float32",
    precision: str | None = None,
) -> str | None:
    """The CUDA kernel variant that ``algorithm='auto'`` runs for a conv2d pass.

    The decision is the launch planner's
    (:func:`gpuconv._plan_conv.choose_algorithm`), taken on the problem as the
    kernels see it: float16 in float32 (float32 accumulation), complex as four
    real passes of the real dtype, and for the padding modes other than
    ``'zeros'`` the input padded once with padding 0. Only shapes are needed:
    this works without CuPy or a GPU.

    Parameters
    ----------
    x_shape : sequence of int
        ``(N, C, H, W)`` or ``(C, H, W)``.
    w_shape : sequence of int
        ``(K, C/groups, KH, KW)``.
    pass_name : {'forward', 'backward_input', 'backward_weight'}
        ``conv2d`` (``'forward'``), its input gradient or its weight gradient (the
        bias gradient alone has a single reduction kernel).
    stride, padding, dilation, groups, padding_mode
        As in :func:`gpuconv.conv2d`.
    dtype : dtype-like
        The dtype of ``x`` and ``w`` (float16, float32, float64, complex64 or
        complex128).
    precision : {None, 'highest', 'tf32'}
        As in :func:`gpuconv.conv2d` (``None``: :func:`gpuconv.use_precision`,
        ``$GPUCONV_PRECISION``, ``'highest'``).

    Returns
    -------
    str or None
        ``'naive'``, ``'tiled'``, ``'tiled_regblock'`` or ``'nhwc'`` (the FP32
        kernels; ``'nhwc'``: the GEMMs on operands packed to NHWC with
        ``cp.async`` stages, for the forward pass and the stride-1 input gradient
        where :func:`gpuconv._plan_conv.fwd_nhwc_preferred`, for the weight
        gradient where :func:`gpuconv._plan_conv.wgrad_nhwc_applies`; chosen on
        the SASS proxy, not yet measured), ``'unfold'`` (the weight gradient of
        few-channel layers such as the RGB stem as a GEMM along the output pixels
        on ``x`` unfolded along its width, where
        :func:`gpuconv._plan_conv.wgrad_unfold_preferred`; chosen on the SASS
        proxy, not yet measured; it reads a C-contiguous float32 ``gy`` in place:
        one whose first element is off a 16-byte boundary runs
        ``'tiled_regblock'``), or
        for float16 data, and float32 or complex64 data with ``precision='tf32'``,
        the tensor cores (``cuda/conv2d_mma.cu``): ``'mma_nhwc'`` (the
        ``cp.async``/``ldmatrix`` pipeline on NHWC operands, where
        :func:`gpuconv._plan_conv.nhwc_preferred`: channel counts that fill its
        16-byte copies; chosen on the SASS proxy, not yet measured) or ``'mma'``
        where the NCHW mma kernels measured faster than the FP32 kernels on an
        H200 (:func:`gpuconv._plan_conv.mma_preferred`); on a GPU older than
        compute capability 8.0 the FP32 kernels' choice runs instead; ``None`` for an
        empty problem (nothing is launched). Under ``'tf32'`` and for float16 an
        FP32 variant runs on operands converted first (rounded to TF32, widened
        from float16: ``cuda/convert.cu``), giving the same numbers as the tensor
        cores up to the order of the float32 sums.

    Raises
    ------
    ValueError, TypeError
        As :func:`gpuconv.conv2d` for the same arguments; ``ValueError`` for an
        unknown ``pass_name``.

    Examples
    --------
    >>> import gpuconv
    >>> gpuconv.choose_algorithm((16, 64, 56, 56), (64, 64, 3, 3), padding=1)
    'tiled_regblock'
    >>> gpuconv.choose_algorithm((16, 128, 28, 28), (128, 128, 3, 3), padding=1)
    'nhwc'
    >>> gpuconv.choose_algorithm((16, 128, 28, 28), (128, 128, 3, 3),
    ...                          "backward_input", padding=1, stride=2)
    'tiled_regblock'
    >>> gpuconv.choose_algorithm((1, 32, 56, 56), (32, 1, 3, 3), groups=32)
    'tiled'
    >>> gpuconv.choose_algorithm((16, 64, 56, 56), (64, 64, 3, 3), "backward_weight",
    ...                          padding=1)
    'nhwc'
    >>> gpuconv.choose_algorithm((8, 3, 224, 224), (64, 3, 7, 7), "backward_weight",
    ...                          stride=2, padding=3, padding_mode="reflect")
    'unfold'
    >>> gpuconv.choose_algorithm((8, 3, 222, 222), (64, 3, 7, 7), "backward_weight",
    ...                          stride=2, padding=3)  # OW = 111
    'tiled_regblock'
    >>> print(gpuconv.choose_algorithm((0, 3, 8, 8), (4, 3, 3, 3)))
    None
    >>> gpuconv.choose_algorithm((16, 64, 56, 56), (64, 64, 3, 3), padding=1,
    ...                          precision="tf32")
    'mma_nhwc'
    >>> gpuconv.choose_algorithm((16, 64, 56, 56), (64, 64, 3, 3), "backward_input",
    ...                          padding=1, stride=2, dtype="float16")
    'tiled_regblock'
    >>> gpuconv.choose_algorithm((8, 3, 224, 224), (64, 3, 7, 7), stride=2,
    ...                          padding=3, dtype="float16")
    'mma'
    """
    if pass_name not in PASSES:
        raise ValueError(f"pass_name must be one of {PASSES}, got {pass_name!r}")
    p = normalize_conv2d(
        tuple(x_shape), tuple(w_shape), [np.dtype(dtype)], stride=stride,
        padding=padding, dilation=dilation, groups=groups, padding_mode=padding_mode,
    )
    if p.empty:
        return None
    p = dataclasses.replace(p, precision=select_precision(precision))
    kp = kernel_problem(p)
    kind = mma_kind(kp, pass_name)
    if kind is not None and nhwc_preferred(kp, pass_name, kind):
        return "mma_nhwc"
    if kind is not None and mma_preferred(kp, pass_name):
        return "mma"
    return _plan_conv.choose_algorithm(kp, pass_name)


# --------------------------------------------------------------------------------
# forward


def conv2d_forward(
    x: Any, w: Any, bias: Any, p: Conv2dProblem, algorithm: str, *,
    device: Any = None, out: Any = None,
) -> Any:
    """``y = conv2d(x, w) + bias`` on the device (backend op, see module doc).

    ``y`` is ``p.compute_dtype``, or float16 for float16 data on the tensor-core
    kernels when the launch is not split (their epilogue rounds the FP32
    accumulator plus bias once, to nearest even; any padding mode); a split-K
    launch and the FP32 kernels return float32, rounded once by the API.

    Examples
    --------
    On the CPU emulation of the kernels (``device=None`` runs them on the GPU):

    >>> import numpy as np
    >>> from gpuconv._conv_args import normalize_conv2d
    >>> from gpuconv._emulate import EmulatedDevice
    >>> x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    >>> w = np.ones((1, 1, 2, 2), np.float32)
    >>> p = normalize_conv2d(x.shape, w.shape, [x.dtype])
    >>> dev = EmulatedDevice(sanitize=False)
    >>> conv2d_forward(x, w, None, p, "tiled_regblock", device=dev)[0, 0]
    array([[10., 14., 18.],
           [26., 30., 34.],
           [42., 46., 50.]], dtype=float32)
    >>> dev.launches[-1][1].split("<")[0]
    'conv2d_forward_tiled_regblock'
    """
    dev = _dev(device)
    real = p.compute_dtype.kind != "c"
    # the route is part of the key: the plan (and the output's dtype) depend on it
    algorithm = _winograd_or_auto(p, "forward", algorithm)
    kind = _mma_pass(dev, p, "forward", algorithm) if real else None
    key = ("forward", p, algorithm, kind, bias is None, _dt(x), _dt(w), _dt(out),
           dev, _plan_key(dev))
    plan = _PLANS.get(key)
    if plan is None:
        check_extents(p)  # before any allocation: oversize is a ValueError, not OOM
    xp = dev.xp
    half, cast = _half_result(p, "forward", kind, out)
    y = _out(xp, out, p.y_shape, _F16 if half else p.compute_dtype, "out",
             half=p.dtype == _F16)
    if cast:  # float16 out, float32 kernels: compute, then round once into out
        y[...] = conv2d_forward(x, w, bias, p, algorithm, device=dev)
        return y
    if not real:
        pr = _real_problem(p)
        (xr, xi), (wr, wi) = _parts(xp, x), _parts(xp, w)
        br = bi = None
        if bias is not None:
            br, bi = _parts(xp, bias)

        def f(a: Any, b: Any, c: Any) -> Any:
            return conv2d_forward(a, b, c, pr, algorithm, device=dev)

        y.real[...] = f(xr, wr, br) - f(xi, wi, None)
        y.imag[...] = f(xr, wi, bi) + f(xi, wr, None)
        return y
    x, w, bias = _contig(xp, x), _contig(xp, w), _contig(xp, bias)
    if kind is not None:  # tensor cores (they round TF32 operands themselves)
        return _forward_mma(dev, key, plan, x, w, bias, p, kind, y, half, algorithm)
    # the FP32 kernels; tf32 / float16 operands converted first (cuda/convert.cu)
    x, w = _bits(x), _bits(w)
    tf32 = applies_tf32(p.precision, p.compute_dtype)

    def build(alloc: Callable[..., Any]) -> list[Any]:
        launches: list[Any] = []
        xc, wc = (_converted(a, tf32, alloc, launches) for a in (x, w))
        xin, p0 = _pad_input(dev, xc, p, alloc, launches)
        algo = resolve_algorithm(p0, "forward", algorithm)
        if algo in WINOGRAD_TILES:
            return launches + _winograd(dev, p0, "forward", xin, wc, bias, y, alloc,
                                        algo)
        slices = _slices(dev, p0, "forward") if algo == "tiled_regblock" else None
        return launches + plan_conv2d_forward(p0, algo, xin, wc, bias, y, slices,
                                              alloc=alloc)

    _planned(key, plan, dev, (x, w, bias, y), build)
    return y


# --------------------------------------------------------------------------------
# input gradient


def conv2d_backward_input(
    gy: Any, w: Any, p: Conv2dProblem, algorithm: str, *, device: Any = None,
    out: Any = None,
) -> Any:
    """``gx``: the input gradient of conv2d on the device (backend op, see module doc).

    For the non-zero padding modes the gradient of the padded input is computed
    first and folded back onto the pixels the border copied (a deterministic
    gather, no atomics).

    ``gx`` is ``p.compute_dtype``, or float16 for float16 data on the tensor-core
    kernels with zero padding and one split (rounded once in their epilogue); the
    fold, split-K and the FP32 kernels return float32, rounded once by the API.
    """
    dev = _dev(device)
    real = p.compute_dtype.kind != "c"
    algorithm = _winograd_or_auto(p, "backward_input", algorithm)
    kind = _mma_pass(dev, p, "backward_input", algorithm) if real else None
    key = ("backward_input", p, algorithm, kind, _dt(gy), _dt(w), _dt(out), dev,
           _plan_key(dev))
    plan = _PLANS.get(key)
    if plan is None:
        check_extents(p)
    xp = dev.xp
    half, cast = _half_result(p, "backward_input", kind, out)
    gx = _out(xp, out, p.x_shape, _F16 if half else p.compute_dtype, "out",
              half=p.dtype == _F16)
    if cast:  # float16 out, float32 kernels: compute, then round once into out
        gx[...] = conv2d_backward_input(gy, w, p, algorithm, device=dev)
        return gx
    if not real:
        pr = _real_problem(p)
        (gr, gi), (wr, wi) = _parts(xp, gy), _parts(xp, w)

        def f(a: Any, b: Any) -> Any:
            return conv2d_backward_input(a, b, pr, algorithm, device=dev)

        gx.real[...] = f(gr, wr) - f(gi, wi)
        gx.imag[...] = f(gr, wi) + f(gi, wr)
        return gx
    gy, w = _contig(xp, gy), _contig(xp, w)
    if kind is not None:
        return _backward_input_mma(dev, key, plan, gy, w, p, kind, gx, half,
                                   algorithm)
    gy, w = _bits(gy), _bits(w)
    tf32 = applies_tf32(p.precision, p.compute_dtype)

    def build(alloc: Callable[..., Any]) -> list[Any]:
        launches: list[Any] = []
        gyc, wc = (_converted(a, tf32, alloc, launches) for a in (gy, w))
        p0 = padded_problem(p) if needs_padding_copy(p) else p
        algo = resolve_algorithm(p0, "backward_input", algorithm)
        dst = gx if p0 is p else alloc(p0.x_shape, p.compute_dtype)
        if algo in WINOGRAD_TILES:
            launches += _winograd(dev, p0, "backward_input", gyc, wc, None, dst, alloc,
                                  algo)
        else:
            slices = (_slices(dev, p0, "backward_input") if algo == "tiled_regblock"
                      else None)
            launches += plan_conv2d_backward_input(p0, algo, gyc, wc, dst, slices,
                                                   alloc=alloc)
        return launches if p0 is p else launches + _pad_fold(dev, p, dst, gx)

    _planned(key, plan, dev, (gy, w, gx), build)
    return gx


# --------------------------------------------------------------------------------
# weight and bias gradients (kernels: cuda/conv2d_backward_weight.cu)


def conv2d_backward_weight(
    gy: Any, x: Any, p: Conv2dProblem, algorithm: str, with_bias: bool, *,
    device: Any = None, out: Any = None, out_bias: Any = None,
) -> tuple[Any, Any]:
    """``(gw, gb or None)``: the weight (and bias) gradient on the device.

    Non-zero padding modes pad ``x`` once and differentiate the padded problem.
    """
    dev = _dev(device)
    real = p.compute_dtype.kind != "c"
    # the route is part of the key (as for the forward pass)
    algorithm = _winograd_or_auto(p, "backward_weight", algorithm)
    kind = _mma_pass(dev, p, "backward_weight", algorithm) if real else None
    # Winograd (asked for, and applicable: _winograd_or_auto) decides the buffers
    # (the bias gradient apart); the algorithm in the key says it
    wino = real and algorithm in WINOGRAD_TILES
    # 'unfold' reads gy in place by 16-byte copies: a gy whose first element is off
    # a 16-byte boundary (a view at an odd offset) gets plans of its own, without it
    vec = (not real or gy is None or not gy.flags.c_contiguous
           or device_address(gy) % 16 == 0)
    key = ("backward_weight", p, algorithm, kind, bool(with_bias), _dt(gy), _dt(x),
           vec, dev, _plan_key(dev))
    plan = _PLANS.get(key)
    if plan is None:
        check_extents(p)
    xp = dev.xp
    gw = _out(xp, out, p.w_shape, p.compute_dtype, "out")
    gb = None
    if with_bias:
        gb = _out(xp, out_bias, (p.K,), p.compute_dtype, "out_bias")
    if p.compute_dtype.kind == "c":
        pr = _real_problem(p)
        (gr, gi), (xr, xi) = _parts(xp, gy), _parts(xp, x)

        def f(a: Any, b: Any, bias: bool) -> tuple[Any, Any]:
            return conv2d_backward_weight(a, b, pr, algorithm, bias, device=dev)

        rr, gbr = f(gr, xr, with_bias)
        ii, _ = f(gi, xi, False)
        ri, _ = f(gr, xi, False)
        ir, gbi = f(gi, xr, with_bias)
        gw.real[...] = rr - ii
        gw.imag[...] = ri + ir
        if gb is not None:
            gb.real[...] = gbr
            gb.imag[...] = gbi
        return gw, gb
    gy, x = _contig(xp, gy), _contig(xp, x)
    if kind is not None:  # tensor cores; the bias gradient sums gy apart
        return _backward_weight_mma(dev, key, plan, gy, x, p, kind, gw, gb,
                                    algorithm)
    tf32 = applies_tf32(p.precision, p.compute_dtype)
    gb_fused = gb
    if gb is not None and (tf32 or gy.dtype == _F16 or wino):
        # the bias gradient sums the unconverted gy, as on the mma path (and apart
        # from Winograd's transformed gy)
        conv2d_backward_bias(gy, p, device=dev, out=gb)
        gb_fused = None
    gy, x = _bits(gy), _bits(x)

    def build(alloc: Callable[..., Any]) -> list[Any]:
        launches: list[Any] = []
        gyc, xc = (_converted(a, tf32, alloc, launches) for a in (gy, x))
        xin, p0 = _pad_input(dev, xc, p, alloc, launches)
        if wino:
            return launches + plan_conv2d_winograd(p0, "backward_weight", xin, gyc,
                                                   None, gw, None, alloc=alloc,
                                                   variant=algorithm)
        algo = resolve_algorithm(p0, "backward_weight", algorithm)
        if algo == "unfold" and not (vec or gyc is not gy):  # (converted: aligned)
            algo = "tiled_regblock"
        return launches + plan_conv2d_backward_weight(
            p0, algo, gyc, xin, gw, gb_fused, alloc=alloc
        )

    _planned(key, plan, dev, (gy, x, gw, gb_fused), build)
    return gw, gb


def conv2d_backward_bias(
    gy: Any, p: Conv2dProblem, *, device: Any = None, out: Any = None
) -> Any:
    """``gb = gy.sum(axis=(0, 2, 3))`` on the device, deterministically."""
    dev = _dev(device)
    key = ("backward_bias", p, dev, _plan_key(dev))
    plan = _PLANS.get(key)
    if plan is None:
        check_extents(p)
    xp = dev.xp
    gb = _out(xp, out, (p.K,), p.compute_dtype, "out")
    if p.compute_dtype.kind == "c":
        pr = _real_problem(p)
        gr, gi = _parts(xp, gy)
        gb.real[...] = conv2d_backward_bias(gr, pr, device=dev)
        gb.imag[...] = conv2d_backward_bias(gi, pr, device=dev)
        return gb
    gy = _contig(xp, _as32(xp, gy))

    def build(alloc: Callable[..., Any]) -> list[Any]:
        return plan_conv2d_backward_bias(p, gy, gb, alloc=alloc)

    _planned(key, plan, dev, (gy, gb), build)
    return gb
