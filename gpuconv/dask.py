"""gpuconv on Dask arrays: data larger than memory, several workers or GPUs.

``import gpuconv.dask`` (Dask is the ``dask`` extra; ``import gpuconv`` alone never
imports it) gives :func:`convolve2d`, :func:`correlate2d`, :func:`conv2d` and
:func:`conv2d_backward` with the signatures of the in-memory functions. They take a
Dask array for the image or batch (the kernel, weights and bias are small
in-memory arrays; a Dask kernel is computed first) and return Dask arrays whose
values are those of the whole-array call, chunk edges included, for every mode,
boundary, padding mode, kernel size, stride and dilation.

How a chunked call is built (the same for all four functions)
------------------------------------------------------------
Every call is a strided, dilated cross-correlation of an *extended* array ``P``
with a kernel of effective extent ``e = dilation*(k-1) + 1`` along each of the
two spatial axes (``'same'``/``'full'`` modes and ``padding`` are the extension
sizes ``before``/``after``; the boundary or padding mode says what fills them):

1. **Extension.** ``P`` is never built as a Dask array: each spatial axis's
   border index map (:func:`gpuconv._padding.pad_index`) says which row of ``x``
   (or the constant: ``'fill'`` with its ``fillvalue``, ``'zeros'``) each
   position of ``P`` holds (``'wrap'``/``'circular'``, ``'symm'``/``'symmetric'``,
   PyTorch's ``'reflect'`` (mirror without the edge) and ``'replicate'``). These
   are the very maps the in-memory backends use, so every mode matches exactly,
   including kernels larger than the image (the pattern repeats). Dask's own
   ``map_overlap`` boundaries cannot express all of these (its ``'reflect'``
   repeats the edge, so it is SciPy's ``'symm'``; PyTorch's ``'reflect'`` has no
   Dask name) and need halos no deeper than one chunk.
2. **Alignment.** Output chunk ``b`` covers outputs ``[o_b, o_b+1)`` and reads
   ``P[o_b*stride : (o_b+1 - 1)*stride + e]``. The chunk boundaries of ``P`` are
   placed at the chunk boundaries of ``x`` (shifted by ``before``), so only the two
   edge chunks of each axis change; with ``stride > 1`` an interior chunk boundary
   of ``x`` that is not a multiple of ``stride`` is moved down to one (**a rechunk
   of x**, none when the chunks are already multiples of the stride).
3. **Halos.** Each output chunk's window is built in **one task** that reads the
   source chunks it needs (the neighbours for the halo; for ``'wrap'``/
   ``'circular'`` also the far edge) and copies the pieces, border included (the
   index map of step 1 decides which source row fills which window row, ``'fill'``
   and ``'zeros'`` pre-fill), into one new array on the chunk's device: one task
   per output chunk and one copy of each window, no ``overlap`` or
   ``concatenate`` layers. conv2d_backward does the same twice: each chunk of
   ``gx`` reads the chunks of ``gy`` whose outputs read it (through the border as
   well: the border gradient of the padding modes that copy pixels is folded back
   in the same task, in a fixed order), and each partial sum of ``gw`` reads the
   forward's window of ``x`` and its chunk of ``gy``. Chunks smaller than the halo
   are still merged with a neighbour first (a rechunk); uneven chunks are fine as
   they are.
4. **Per chunk.** Each window is handed to the public in-memory function
   (``mode='valid'`` or ``padding=0``), which picks its backend from the chunk's
   array type: NumPy chunks run on the NumPy backend, CuPy chunks (``x.map_blocks(
   cupy.asarray)``, ``da.from_array(cupy_array, ..., asarray=False, name=False)``,
   or a dask-cuda cluster) on the CUDA kernels, and stay on the device (windows
   and halos are CuPy arrays; nothing is copied to the host). The kernel is moved
   to the chunk's device inside the task. Every chunk of one shape reuses the
   in-memory call's cached plan (:mod:`gpuconv._plan_cache`), and the CUDA
   modules are compiled and loaded once per process, also under the threaded
   scheduler.

CuPy arrays and ``da.from_array``: pass ``name=False`` (``da.from_array(x,
chunks=..., asarray=False, name=False)``). Without it Dask names the array by
hashing its contents, which for a CuPy array means pickling it through the host:
about 1 s for a 16384² float32 image on an H200, 400 times the filter itself.
``asarray=False`` keeps the chunks CuPy arrays.

Output chunks follow the input chunks: ``'same'`` with an odd kernel keeps them,
``'full'`` grows the last chunk, ``'valid'`` shrinks it (merging chunks that would
become empty), ``stride`` divides them. conv2d and conv2d_backward keep the batch
chunks and put the channels ``C`` (and ``K``) in one chunk.

Results equal the whole-array call up to floating-point reassociation (a chunk
may pick another summation order, or FFT where the whole array used the direct
method and vice versa); integer filters are exact. A call whose input or kernel
is empty, and a 'valid' call whose image is smaller than the kernel (SciPy's
swap rule), run as one task on the whole array.
"""

from __future__ import annotations

import functools
import math
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import dask
import dask.array as da
import numpy as np
from dask.array.utils import meta_from_array

import gpuconv
from gpuconv import _backend
from gpuconv._conv import Conv2dGrads
from gpuconv._conv_args import check_algorithm, check_needs, normalize_conv2d
from gpuconv._filter_args import (
    BOUNDARY_TO_PAD_MODE,
    normalize_axes,
    normalize_filter2d,
)
from gpuconv._padding import pad_index
from gpuconv._precision import select_precision

__all__ = [
    "KERNEL_MAX_BYTES",
    "conv2d",
    "conv2d_backward",
    "convolve2d",
    "correlate2d",
]

#: Largest Dask kernel, weight, bias (bytes) that is computed into memory.
KERNEL_MAX_BYTES = 256 * 2**20

_SPLIT_EVERY = 8


# --------------------------------------------------------------------------- arrays


def _as_dask(a: Any, name: str) -> da.Array:
    """A Dask array as is; any other array-like becomes a one-chunk Dask array."""
    if isinstance(a, da.Array):
        if any(math.isnan(c) for cs in a.chunks for c in cs):
            raise ValueError(
                f"{name} has unknown chunk sizes; call {name}.compute_chunk_sizes() "
                "first (halos need to know where each chunk starts)"
            )
        return a
    if a is None or not (hasattr(a, "shape") or isinstance(a, (list, tuple))):
        raise TypeError(
            f"{name} must be a Dask array (or an array-like), got {type(a).__name__}"
        )
    if not hasattr(a, "shape"):
        a = np.asarray(a)
    return da.from_array(a, chunks=a.shape or (), asarray=False)


def _small(a: Any, name: str) -> Any:
    """An in-memory array for a kernel-sized argument; a Dask one is computed."""
    if a is None:
        return None
    if isinstance(a, da.Array):
        nbytes = a.nbytes
        if nbytes > KERNEL_MAX_BYTES:
            raise ValueError(
                f"{name} is a Dask array of {nbytes} bytes; gpuconv.dask computes a "
                f"Dask {name} into memory and accepts up to {KERNEL_MAX_BYTES} bytes "
                "(pass it as a NumPy or CuPy array)"
            )
        return a.compute()
    if _backend.is_cupy_array(a) or isinstance(a, np.ndarray):
        return a
    return np.asarray(a)


def _host(a: Any) -> Any:
    """A NumPy copy of a CuPy array (``None`` and NumPy arrays unchanged)."""
    return a.get() if _backend.is_cupy_array(a) else a


def _host_stand_in(a: Any) -> Any:
    """``a`` if it is in host memory, else zeros of its shape and dtype: what the
    argument checks at graph-build time need (shape and dtype, never the values),
    without copying a device array to the host."""
    if _backend.is_cupy_array(a):
        return np.zeros(a.shape, dtype=a.dtype)
    return a


def _like(a: Any, block: Any) -> Any:
    """``a`` moved to where ``block`` lives (NumPy host memory or the CuPy device)."""
    if a is None:
        return None
    if _backend.is_cupy_array(block):
        if not _backend.is_cupy_array(a):
            return _backend.require_cupy().asarray(a)
        return a
    return _host(a)


def _xp(block: Any) -> Any:
    return _backend.require_cupy() if _backend.is_cupy_array(block) else np


def _check_backend(backend: object) -> None:
    if backend is not None:
        _backend._check_name(backend, "backend")


def _whole(fn: Callable[..., Any], shape: tuple[int, ...], dtype: Any, meta: Any,
           *args: Any, **kwargs: Any) -> da.Array:
    """The whole-array call as one lazy task (empty or degenerate problems)."""
    out = dask.delayed(fn, pure=True)(*args, **kwargs)
    return da.from_delayed(out, shape=shape, dtype=dtype, meta=meta)


# ---------------------------------------------------------------- the chunk plan


@dataclass(frozen=True)
class _AxisPlan:
    """How one spatial axis of length ``n`` is chunked, extended and windowed.

    ``P`` is the axis extended by ``before``/``after``; output ``o`` reads
    ``P[o*stride : o*stride + extent]``. Chunk ``b`` of ``x`` (``src_chunks``),
    of ``P`` (``p_chunks``) and of the output (``out_chunks``) correspond; output
    chunk ``b`` starts at ``o_b`` and ``P`` chunk ``b`` at ``o_b*stride + lead``
    (both at 0 for ``b = 0``).
    """

    n: int
    before: int
    after: int
    extent: int
    stride: int
    out: int
    lead: int
    src_chunks: tuple[int, ...]
    p_chunks: tuple[int, ...]
    out_chunks: tuple[int, ...]

    @property
    def depth(self) -> tuple[int, int]:
        """Halo ``(left, right)`` that every ``P`` chunk takes from its neighbours."""
        if len(self.p_chunks) == 1:
            return (0, 0)
        return (max(self.lead, 0), max(self.extent - self.stride - self.lead, 0))

    @functools.cached_property
    def out_starts(self) -> tuple[int, ...]:
        return tuple(np.concatenate([[0], np.cumsum(self.out_chunks)]).tolist())

    @functools.cached_property
    def p_starts(self) -> tuple[int, ...]:
        return tuple(np.concatenate([[0], np.cumsum(self.p_chunks)]).tolist())

    def windows(self) -> tuple[tuple[int, int], ...]:
        """``(start, length)`` of each output chunk's window in its overlapped chunk."""
        left = self.depth[0]
        res = []
        for b in range(len(self.out_chunks)):
            o0, o1 = self.out_starts[b], self.out_starts[b + 1]
            block_start = self.p_starts[b] - (left if b > 0 else 0)
            start = o0 * self.stride - block_start
            res.append((start, (o1 - o0 - 1) * self.stride + self.extent))
        return tuple(res)

def _plan_axis(
    n: int,
    chunks: Sequence[int],
    before: int,
    after: int,
    extent: int,
    stride: int,
    min_chunk: int = 1,
) -> _AxisPlan:
    """Chunk plan of one axis (see :class:`_AxisPlan` and the module docstring)."""
    hp = n + before + after
    out = (hp - extent) // stride + 1
    if out < 1:  # pragma: no cover - callers validate first
        raise ValueError("no output along this axis")
    # Output chunks are shifted by q against the input chunks, so that the halo
    # before each chunk (lead) is at most extent - 1 however large `before` is.
    q = max(0, -(-(before - extent + 1) // stride))
    lead = before - q * stride
    need = max(lead, extent - stride - lead, min_chunk, 1)
    bounds: list[int] = []
    prev_a = 0
    for c in np.cumsum(chunks)[:-1].tolist():
        c = (c // stride) * stride
        o = c // stride + q
        if c <= 0 or c >= n or o < 1 or o > out - 1:
            continue
        if bounds and o <= bounds[-1]:
            continue
        a = c + before
        if a - prev_a < need:
            continue
        bounds.append(o)
        prev_a = a
    while bounds and hp - ((bounds[-1] - q) * stride + before) < need:
        bounds.pop()
    src = [(o - q) * stride for o in bounds]
    src_chunks = tuple(np.diff([0, *src, n]).tolist())
    p_chunks = tuple(np.diff([0, *(c + before for c in src), hp]).tolist())
    out_chunks = tuple(np.diff([0, *bounds, out]).tolist())
    return _AxisPlan(n, before, after, extent, stride, out, lead, src_chunks, p_chunks,
                     out_chunks)


# ------------------------------------------------------------------ the filters


def _moved(shape: tuple[int, ...], ax: tuple[int, int]) -> tuple[int, ...]:
    """``shape`` with the two filtered axes moved last (the in-memory convention)."""
    return tuple(s for d, s in enumerate(shape) if d not in ax) + (
        shape[ax[0]], shape[ax[1]])


def _unmoved(shape: tuple[int, ...], ax: tuple[int, int]) -> tuple[int, ...]:
    rest = iter(shape[:-2])
    out = [0] * len(shape)
    for d in range(len(shape)):
        out[d] = shape[-2] if d == ax[0] else shape[-1] if d == ax[1] else next(rest)
    return tuple(out)


def _filter(
    name: str,
    in1: Any,
    in2: Any,
    mode: str,
    boundary: str,
    fillvalue: Any,
    axes: Any,
    kwargs: dict[str, Any],
) -> da.Array:
    fn = getattr(gpuconv, name)
    x = _as_dask(in1, "in1")
    k = _small(in2, "in2")
    _check_backend(kwargs.get("backend"))
    call = dict(mode=mode, boundary=boundary, fillvalue=fillvalue, **kwargs)
    if axes is not None:
        call["axes"] = axes
    k_host = _host_stand_in(k)
    # Every argument check of the whole-array function (same exceptions and
    # texts), on a one-pixel stand-in of the image with its dtype and rank.
    fn(np.zeros((1,) * x.ndim, dtype=x.dtype), k_host,
       **{key: v for key, v in call.items() if key != "backend"})
    ax = (0, 1) if axes is None else normalize_axes(axes, x.ndim)
    if k_host.ndim < x.ndim:  # a (..., KH, KW) stack: put it in in1's layout
        lead = (1,) * (x.ndim - k_host.ndim)
        k = _xp(k).moveaxis(k.reshape(lead + k.shape), (-2, -1), ax)
        k_host = _host_stand_in(k)
    plan = normalize_filter2d(
        _moved(x.shape, ax), _moved(k_host.shape, ax), np.dtype(x.dtype),
        np.dtype(k_host.dtype), mode, boundary, fillvalue,
        convolve=name == "convolve2d",
    )
    fp, dtype = plan.problem, plan.dtype
    meta = meta_from_array(x._meta, ndim=x.ndim, dtype=dtype)
    if plan.swap or plan.empty is not None:
        # 'valid' with the image smaller than the kernel (SciPy swaps them), or an
        # empty input: one task on the whole (small or empty) arrays.
        return _whole(fn, _unmoved(plan.out_shape, ax), dtype, meta, x, k, **call)
    shape = _unmoved(plan.batch + (fp.H, fp.W), ax)
    if shape != x.shape:
        x = da.broadcast_to(x, shape)
    kstack = tuple(d for d in range(x.ndim) if d not in ax and k_host.shape[d] > 1)
    x = x.astype(dtype) if x.dtype != dtype else x
    plans = {
        ax[0]: _plan_axis(fp.H, x.chunks[ax[0]], fp.pad_top, fp.pad_bottom, fp.KH, 1),
        ax[1]: _plan_axis(fp.W, x.chunks[ax[1]], fp.pad_left, fp.pad_right, fp.KW, 1),
    }
    ax_out = None if axes is None else ax
    return _apply_gather(
        x, plans, BOUNDARY_TO_PAD_MODE[fp.boundary], fp.fillvalue, dtype, meta,
        _filter_tasks(fn, k, kstack, ax_out, kwargs, x),
        (fn.__name__, k, kstack, ax_out, kwargs),
    )


# ------------------------------------------------ direct halo gather (filters)
#
# The filters build each output chunk's input window in ONE task from the source
# chunks it reads (neighbours for the halo; for 'wrap' also the far edge): one
# allocation of the window and one copy per piece, on the chunk's device (CuPy
# chunks stay on the GPU). Dask's own route (concatenate the border, rechunk,
# ``overlap``'s slices and concatenations, then a crop) costs ~14 tasks per chunk
# and a second copy of every window; this one costs one task per output chunk.


def _runs(idx: np.ndarray) -> list[tuple[int, int, int, int]]:
    """``idx`` (source positions, ``-1`` for fill) as runs ``(dst, length, src,
    step)`` of consecutive (``step`` 1) or reversed (-1) positions; fill runs have
    ``src = -1``."""
    n = idx.size
    if n and idx[0] >= 0 and idx[-1] - idx[0] == n - 1 and (np.diff(idx) == 1).all():
        return [(0, n, int(idx[0]), 1)]  # an interior window: one range
    runs: list[tuple[int, int, int, int]] = []
    idx = idx.tolist()
    i = 0
    while i < n:
        v = idx[i]
        j = i + 1
        if v < 0:
            while j < n and idx[j] < 0:
                j += 1
            runs.append((i, j - i, -1, 0))
        else:
            step = 1
            if j < n and v > 0 and idx[j] == v - 1:
                step = -1
            # (a fill position, -1, never continues a run: [0, -1] is two runs)
            while j < n and idx[j] >= 0 and idx[j] == v + step * (j - i):
                j += 1
            runs.append((i, j - i, v, step))
        i = j
    return runs


def _axis_pieces(
    idx: np.ndarray, starts: Sequence[int]
) -> tuple[tuple[int, int, int, int, int], ...]:
    """Pieces ``(dst, length, chunk, local_start, step)`` of a window whose source
    positions are ``idx``, split at the source chunk boundaries ``starts`` (fill
    runs are left out: the window is pre-filled)."""
    out = []
    bounds = np.asarray(starts)
    for dst, length, src, step in _runs(idx):
        if src < 0:
            continue
        k = 0
        while k < length:
            pos = src + step * k
            c = int(np.searchsorted(bounds, pos, side="right")) - 1
            lo, hi = int(bounds[c]), int(bounds[c + 1])
            # positions pos, pos+step, ... stay in chunk c for `room` steps
            room = hi - pos if step > 0 else pos - lo + 1
            take = min(room, length - k)
            out.append((dst + k, take, c, pos - lo, step))
            k += take
    return tuple(out)


def _src_slice(local: int, length: int, step: int) -> slice:
    if step > 0:
        return slice(local, local + length)
    end = local - length
    return slice(local, end if end >= 0 else None, -1)


def _gather_window(
    blocks: list[Any],
    *,
    ndim: int,
    shape: tuple[int, ...],
    pieces: dict[int, tuple[tuple[int, int, int, int, int], ...]],
    chunk_ids: dict[int, tuple[int, ...]],
    fill: Any,
    prefill: bool,
) -> Any:
    """The window of one output chunk from the source ``blocks`` (the chunks named
    by ``chunk_ids`` per spatial axis, row-major), one copy per piece."""
    first = blocks[0]
    xp = _xp(first)
    if prefill:
        win = xp.full(shape, fill, dtype=first.dtype)
    else:
        win = xp.empty(shape, dtype=first.dtype)
    (a0, a1) = sorted(pieces)
    n1 = len(chunk_ids[a1])
    pos0 = {c: i for i, c in enumerate(chunk_ids[a0])}
    pos1 = {c: i for i, c in enumerate(chunk_ids[a1])}
    for d0, l0, c0, s0, st0 in pieces[a0]:
        for d1, l1, c1, s1, st1 in pieces[a1]:
            block = blocks[pos0[c0] * n1 + pos1[c1]]
            dst = [slice(None)] * ndim
            src = [slice(None)] * ndim
            dst[a0], dst[a1] = slice(d0, d0 + l0), slice(d1, d1 + l1)
            src[a0], src[a1] = _src_slice(s0, l0, st0), _src_slice(s1, l1, st1)
            win[tuple(dst)] = block[tuple(src)]
    return win


def _gather_filter_task(
    blocks: list[Any], *, gather: dict[str, Any], fn: Callable[..., Any], kernel: Any,
    axes: tuple[int, int] | None, kwargs: dict[str, Any],
) -> Any:
    win = _gather_window(blocks, **gather)
    k = _like(kernel, win)
    if axes is None:
        return fn(win, k, mode="valid", **kwargs)
    return fn(win, k, mode="valid", axes=axes, **kwargs)


def _filter_tasks(
    fn: Callable[..., Any], kernel: Any, stack_axes: tuple[int, ...],
    axes: tuple[int, int] | None, kwargs: dict[str, Any], x: da.Array,
) -> Callable[[tuple[int, ...], dict[str, Any]], Callable[..., Any]]:
    """The task of each output chunk of a filter (its slice of a kernel stack)."""
    k_starts = {d: [0, *np.cumsum(x.chunks[d]).tolist()] for d in stack_axes}

    def make(out_idx: tuple[int, ...], gather: dict[str, Any]) -> Callable[..., Any]:
        k = kernel
        if stack_axes:  # a stack of kernels: the slice that meets this chunk
            sl = [slice(None)] * k.ndim
            for d in stack_axes:
                sl[d] = slice(k_starts[d][out_idx[d]], k_starts[d][out_idx[d] + 1])
            k = k[tuple(sl)]
        return functools.partial(_gather_filter_task, gather=gather, fn=fn, kernel=k,
                                 axes=axes, kwargs=kwargs)

    return make


def _gather_conv_task(
    blocks: list[Any], *, gather: dict[str, Any], w: Any, bias: Any,
    stride: tuple[int, int], dilation: tuple[int, int], groups: int,
    kwargs: dict[str, Any],
) -> Any:
    win = _gather_window(blocks, **gather)
    return gpuconv.conv2d(win, _like(w, win), _like(bias, win), stride=stride,
                          padding=0, dilation=dilation, groups=groups, **kwargs)


def _gather_specs(
    x: da.Array, plans: dict[int, _AxisPlan], mode: str, fill: Any
) -> tuple[da.Array, list[tuple[int, ...]], list[tuple[tuple[int, ...], dict, list]]]:
    """``x`` rechunked to the plans' source chunks, the output chunks (the plans'
    along their axes), and per output chunk ``(out_index, gather, keys)``: the
    arguments of :func:`_gather_window` and the keys of the source chunks its
    window reads (the ``blocks`` it takes, in that order)."""
    import itertools

    for ax, plan in plans.items():
        x = x.rechunk({ax: plan.src_chunks})
    ax_list = sorted(plans)
    per_axis: dict[int, list[tuple[tuple, tuple, int]]] = {}
    for ax in ax_list:
        plan = plans[ax]
        idx = pad_index(plan.n, plan.before, plan.after, mode)
        starts = [0, *np.cumsum(plan.src_chunks).tolist()]
        entries = []
        for b in range(len(plan.out_chunks)):
            o0, o1 = plan.out_starts[b], plan.out_starts[b + 1]
            w0, w1 = o0 * plan.stride, (o1 - 1) * plan.stride + plan.extent
            window = idx[w0:w1]
            raw = _axis_pieces(window, starts)
            ids = tuple(sorted({c for _, _, c, _, _ in raw}))
            entries.append((raw, ids, w1 - w0))
        per_axis[ax] = entries
    chunks = list(x.chunks)
    for ax in ax_list:
        chunks[ax] = plans[ax].out_chunks
    specs = []
    for out_idx in itertools.product(*(range(len(c)) for c in chunks)):
        raw = {ax: per_axis[ax][out_idx[ax]] for ax in ax_list}
        if any(not r[1] for r in raw.values()):  # only fill: read one chunk anyway
            raw = {ax: (r[0], r[1] or (0,), r[2]) for ax, r in raw.items()}
        keys = []
        for c0 in raw[ax_list[0]][1]:
            for c1 in raw[ax_list[1]][1]:
                src_idx = list(out_idx)
                src_idx[ax_list[0]], src_idx[ax_list[1]] = c0, c1
                keys.append((x.name, *src_idx))
        shape = list(chunks[d][out_idx[d]] for d in range(x.ndim))
        for ax in ax_list:
            shape[ax] = raw[ax][2]
        covered = all(sum(p[1] for p in raw[ax][0]) == raw[ax][2] for ax in ax_list)
        gather = dict(ndim=x.ndim, shape=tuple(shape),
                      pieces={ax: raw[ax][0] for ax in ax_list},
                      chunk_ids={ax: raw[ax][1] for ax in ax_list}, fill=fill,
                      prefill=not covered)
        specs.append((out_idx, gather, keys))
    return x, chunks, specs


def _layer_name(prefix: str, *parts: Any) -> str:
    """A graph layer's name from its inputs; device arrays (kernels, weights) get a
    unique token, since Dask would hash them through the host (pickling)."""
    from dask.base import tokenize

    def tok(t: Any) -> Any:
        if _backend.is_cupy_array(t):
            return uuid.uuid4().hex
        if isinstance(t, tuple):
            return tuple(tok(e) for e in t)
        return t

    return prefix + tokenize(*(tok(p) for p in parts))


def _plans_token(plans: dict[int, _AxisPlan]) -> Any:
    return {a: (p.before, p.after, p.extent, p.stride, p.src_chunks, p.out_chunks)
            for a, p in plans.items()}


def _apply_gather(
    x: da.Array,
    plans: dict[int, _AxisPlan],
    mode: str,
    fill: Any,
    dtype: Any,
    meta: Any,
    make_task: Callable[[tuple[int, ...], dict[str, Any]], Callable[..., Any]],
    token: Any,
    out_chunks: dict[int, tuple[int, ...]] | None = None,
) -> da.Array:
    """One task per output chunk: ``make_task(out_index, gather)(blocks)`` with the
    source chunks its window reads (see :func:`_gather_window`)."""
    from dask.highlevelgraph import HighLevelGraph

    x, chunks, specs = _gather_specs(x, plans, mode, fill)
    name = _layer_name("gpuconv-gather-", x.name, _plans_token(plans), mode, fill,
                       token)
    layer: dict[Any, Any] = {}
    for out_idx, gather, keys in specs:
        layer[(name, *out_idx)] = (make_task(out_idx, gather), keys)
    for ax, c in (out_chunks or {}).items():
        chunks[ax] = c
    graph = HighLevelGraph.from_collections(name, layer, dependencies=[x])
    return da.Array(graph, name, chunks=tuple(chunks), dtype=dtype, meta=meta)


def convolve2d(
    in1: Any,
    in2: Any,
    mode: str = "full",
    boundary: str = "fill",
    fillvalue: Any = 0,
    *,
    axes: tuple[int, int] | None = None,
    method: str = "auto",
    backend: str | None = None,
) -> da.Array:
    """:func:`gpuconv.convolve2d` of a Dask array, chunk by chunk with halos.

    Parameters
    ----------
    in1 : dask.array.Array
        The image (2-D, or a stack with ``axes``), in chunks of any sizes
        (NumPy or CuPy chunks). Other array-likes become one chunk.
    in2 : array_like
        The kernel (or stack of kernels), an in-memory NumPy or CuPy array; a Dask
        array is computed first (up to :data:`KERNEL_MAX_BYTES`).
    mode, boundary, fillvalue, axes
        As in :func:`gpuconv.convolve2d` (SciPy's ``convolve2d``).
    method, backend
        As in :func:`gpuconv.convolve2d`; passed to the call of each chunk
        (``backend=None`` picks the backend from the chunk's array type, or from
        ``GPUCONV_BACKEND`` in the worker's own environment).

    Returns
    -------
    dask.array.Array
        Equal to ``gpuconv.convolve2d(in1.compute(), in2, ...)``, in chunks that
        follow ``in1``'s (see the module docstring: ``'full'`` grows and
        ``'valid'`` shrinks the last chunk of each axis; chunks smaller than the
        kernel are merged with a neighbour first).

    Notes
    -----
    Each chunk reads its neighbours' rows (halos of ``k - 1`` in total per axis);
    the array edges are extended once with ``boundary``, exactly as the whole-array
    call does, also for kernels larger than the image. A ``'valid'`` call whose
    image is smaller than the kernel in every dimension (SciPy swaps the inputs)
    and calls with an empty input run as a single task.

    CuPy chunks stay on the GPU. Wrap a CuPy array with ``name=False``, or Dask
    hashes (pickles) the whole device array to name it::

        x = da.from_array(cupy_image, chunks=(4096, 4096), asarray=False, name=False)
        y = gpuconv.dask.convolve2d(x, cupy.asarray(k), mode="same").compute()

    Examples
    --------
    >>> import numpy as np, dask.array as da
    >>> import gpuconv.dask
    >>> x = da.arange(36.0, chunks=4).reshape(6, 6).rechunk(4)
    >>> y = gpuconv.dask.convolve2d(x, np.ones((3, 3)), mode="same", boundary="symm")
    >>> y.chunks
    ((4, 2), (4, 2))
    >>> bool(np.allclose(y.compute(), gpuconv.convolve2d(
    ...     x.compute(), np.ones((3, 3)), mode="same", boundary="symm")))
    True
    """
    return _filter(
        "convolve2d", in1, in2, mode, boundary, fillvalue, axes,
        dict(method=method, backend=backend),
    )


def correlate2d(
    in1: Any,
    in2: Any,
    mode: str = "full",
    boundary: str = "fill",
    fillvalue: Any = 0,
    *,
    axes: tuple[int, int] | None = None,
    method: str = "auto",
    backend: str | None = None,
) -> da.Array:
    """:func:`gpuconv.correlate2d` of a Dask array, chunk by chunk with halos.

    Parameters
    ----------
    in1 : dask.array.Array
        The image (2-D, or a stack with ``axes``), in chunks of any sizes (NumPy or
        CuPy chunks). Other array-likes become one chunk.
    in2 : array_like
        The kernel (or stack of kernels), an in-memory NumPy or CuPy array, used
        unflipped and conjugated for complex data; a Dask array is computed first
        (up to :data:`KERNEL_MAX_BYTES`).
    mode, boundary, fillvalue, axes
        As in :func:`gpuconv.correlate2d` (SciPy's ``correlate2d``: ``'same'`` puts
        the extra row/column of an even kernel at the bottom/right).
    method, backend
        As in :func:`convolve2d`: passed to the call of each chunk.

    Returns
    -------
    dask.array.Array
        Equal to ``gpuconv.correlate2d(in1.compute(), in2, ...)``, in chunks that
        follow ``in1``'s, as for :func:`convolve2d`.

    Notes
    -----
    As for :func:`convolve2d` (halos, boundary, single-task cases).

    Examples
    --------
    >>> import numpy as np, dask.array as da
    >>> import gpuconv.dask
    >>> x = da.from_array(np.arange(20.0).reshape(4, 5), chunks=(2, 3))
    >>> k = np.array([[1.0, -1.0]])
    >>> y = gpuconv.dask.correlate2d(x, k, mode="valid")
    >>> y.compute()
    array([[-1., -1., -1., -1.],
           [-1., -1., -1., -1.],
           [-1., -1., -1., -1.],
           [-1., -1., -1., -1.]])
    """
    return _filter(
        "correlate2d", in1, in2, mode, boundary, fillvalue, axes,
        dict(method=method, backend=backend),
    )


# ---------------------------------------------------------------------- conv2d


def _conv_plans(x: da.Array, p: Any, min_chunk: int = 1) -> dict[int, _AxisPlan]:
    pt, pb, pl, pr = p.padding
    (sh, sw), (dh, dw) = p.stride, p.dilation
    return {
        2: _plan_axis(p.H, x.chunks[2], pt, pb, dh * (p.KH - 1) + 1, sh, min_chunk),
        3: _plan_axis(p.W, x.chunks[3], pl, pr, dw * (p.KW - 1) + 1, sw, min_chunk),
    }


def conv2d(
    x: Any,
    w: Any,
    bias: Any = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, ...] | str = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    *,
    algorithm: str = "auto",
    backend: str | None = None,
    precision: str | None = None,
) -> da.Array:
    """:func:`gpuconv.conv2d` of a Dask batch, chunked over N, H and W.

    Parameters
    ----------
    x : dask.array.Array, shape ``(N, C, H, W)`` or ``(C, H, W)``
        Input in chunks of any sizes over ``N``, ``H``, ``W`` (``C`` is put in one
        chunk). NumPy or CuPy chunks.
    w, bias : array_like
        Weights ``(K, C/groups, KH, KW)`` and bias ``(K,)``: in-memory arrays (a
        Dask array is computed first).
    stride, padding, dilation, groups, padding_mode, algorithm, backend
        As in :func:`gpuconv.conv2d`; ``algorithm``/``backend`` apply per chunk.
    precision : {None, 'highest', 'tf32'}
        As in :func:`gpuconv.conv2d`, resolved when the graph is built (a
        :func:`gpuconv.use_precision` block around this call applies to every
        chunk).

    Returns
    -------
    dask.array.Array, shape ``(N, K, OH, OW)`` (or ``(K, OH, OW)``)
        Equal to the whole-array :func:`gpuconv.conv2d`; batch chunks as ``x``,
        ``K`` in one chunk, spatial chunks following ``x``'s (divided by the stride).

    Notes
    -----
    With ``stride > 1``, interior chunk boundaries of ``x`` along H/W that are not
    multiples of the stride are moved down to one (a rechunk of ``x``); spatial
    chunks smaller than the halo (about ``dilation*(k-1)``) are merged with a
    neighbour. Padding is built once at the array edges with ``padding_mode``.

    Examples
    --------
    >>> import numpy as np, dask.array as da
    >>> import gpuconv.dask
    >>> x = da.ones((4, 3, 10, 10), chunks=(2, 3, 5, 5))
    >>> w = np.ones((8, 3, 3, 3))
    >>> y = gpuconv.dask.conv2d(x, w, stride=2, padding=1, padding_mode="reflect")
    >>> y.shape, y.chunks[0]
    ((4, 8, 5, 5), (2, 2))
    >>> float(y[0, 0, 2, 2].compute())
    27.0
    """
    x = _as_dask(x, "x")
    w = _small(w, "w")
    bias = _small(bias, "bias")
    w_host, b_host = _host_stand_in(w), _host_stand_in(bias)
    dts = [np.dtype(a.dtype) for a in (x, w_host, b_host) if a is not None]
    p = normalize_conv2d(
        x.shape, tuple(w_host.shape), dts, stride=stride, padding=padding,
        dilation=dilation, groups=groups, padding_mode=padding_mode,
        bias_shape=None if b_host is None else tuple(b_host.shape),
    )
    algorithm = check_algorithm(algorithm)
    _check_backend(backend)
    kwargs = dict(algorithm=algorithm, backend=backend,
                  precision=select_precision(precision))
    meta = meta_from_array(x._meta, ndim=x.ndim, dtype=p.dtype)
    if p.empty:
        return _whole(gpuconv.conv2d, p.user_shape(p.y_shape), p.dtype, meta, x, w,
                      bias, stride=stride, padding=padding, dilation=dilation,
                      groups=groups, padding_mode=padding_mode, **kwargs)
    xb = x if p.batched else x[None]
    xb = xb.rechunk({1: -1})
    plans = _conv_plans(xb, p)
    task = functools.partial(_gather_conv_task, w=w, bias=bias, stride=p.stride,
                             dilation=p.dilation, groups=p.groups, kwargs=kwargs)
    y = _apply_gather(
        xb, plans, p.padding_mode, 0, p.dtype,
        meta_from_array(x._meta, ndim=4, dtype=p.dtype),
        lambda out_idx, gather: functools.partial(task, gather=gather),
        ("conv2d", w, bias, p, kwargs), out_chunks={1: (p.K,)},
    )
    return y if p.batched else y[0]


# ------------------------------------------------------------- conv2d_backward


def _gx_axis(plan: _AxisPlan, mode: str) -> list[tuple[tuple, tuple[int, ...]]]:
    """Per source chunk of one axis: what its input gradient reads and where it
    goes, as ``(items, gy_ids)``.

    The gradient of ``x`` row ``r`` is the sum of the gradient of every ``P``
    position whose index map (:func:`gpuconv._padding.pad_index`) reads ``r``: the
    chunk's own rows shifted by ``before``, and for the padding modes that copy
    pixels the border positions that copy the chunk's rows. These positions come
    as contiguous ``P`` segments (one for an interior chunk); each segment is an
    item ``(lo, hi, length, pieces, ids, moves)``: the output-gradient rows
    ``lo..hi-1`` whose windows meet it (their :func:`_axis_pieces` in the
    gradient's chunks, read from chunks ``ids``), the ``length`` of the local
    input gradient they give (from ``P`` position ``lo*stride``) and the ``moves``
    ``(local, n, dst, step)`` that add ``n`` of its rows from ``local`` on (``step``
    -1: reversed) onto the chunk's rows ``dst..dst+n-1``. ``gy_ids`` is the union
    of the items' ``ids``.
    """
    idx = pad_index(plan.n, plan.before, plan.after, mode)
    s, e = plan.stride, plan.extent
    src_starts = [0, *np.cumsum(plan.src_chunks).tolist()]
    res = []
    for b in range(len(plan.src_chunks)):
        r0, r1 = src_starts[b], src_starts[b + 1]
        pos = np.flatnonzero((idx >= r0) & (idx < r1))
        items = []
        for seg in np.split(pos, np.flatnonzero(np.diff(pos) != 1) + 1):
            if seg.size == 0:
                continue
            a0, a1 = int(seg[0]), int(seg[-1]) + 1
            lo = max(0, -(-(a0 - e + 1) // s))
            hi = min(plan.out, (a1 - 1) // s + 1)
            if hi <= lo:
                continue  # no output reads these positions: zero gradient
            length = (hi - lo - 1) * s + e
            c0, c1 = max(a0, lo * s), min(a1, lo * s + length)
            if c1 <= c0:
                continue
            moves = tuple(
                (c0 - lo * s + d, n, (src if step > 0 else src - n + 1) - r0, step)
                for d, n, src, step in _runs(idx[c0:c1])
            )
            pieces = _axis_pieces(np.arange(lo, hi), plan.out_starts)
            ids = tuple(sorted({c for _, _, c, _, _ in pieces}))
            items.append((lo, hi, length, pieces, ids, moves))
        gy_ids = tuple(sorted({c for it in items for c in it[4]})) or (0,)
        res.append((tuple(items), gy_ids))
    return res


def _gx_gather_task(
    blocks: list[Any], *, items: tuple[tuple, tuple], ids: tuple[tuple, tuple],
    shape: tuple[int, ...], w: Any, stride: tuple[int, int],
    dilation: tuple[int, int], groups: int, kwargs: dict[str, Any], dtype: Any,
) -> Any:
    """The input gradient of one chunk of ``x`` from the output-gradient chunks
    ``blocks`` (those named by ``ids`` along H and W, row-major): one
    :func:`gpuconv.conv2d_grad_input` per pair of ``P`` segments (one for an
    interior chunk; see :func:`_gx_axis`), added in a fixed order."""
    first = blocks[0]
    xp = _xp(first)
    n_w = len(ids[1])
    by_id = {(c0, c1): blocks[i * n_w + j]
             for i, c0 in enumerate(ids[0]) for j, c1 in enumerate(ids[1])}
    N, C = shape[0], shape[1]
    out = None
    if N and items[0] and items[1]:
        for lo_h, hi_h, len_h, pcs_h, ids_h, mv_h in items[0]:
            for lo_w, hi_w, len_w, pcs_w, ids_w, mv_w in items[1]:
                g = _gather_window(
                    [by_id[(a, b)] for a in ids_h for b in ids_w], ndim=4,
                    shape=(N, first.shape[1], hi_h - lo_h, hi_w - lo_w),
                    pieces={2: pcs_h, 3: pcs_w}, chunk_ids={2: ids_h, 3: ids_w},
                    fill=0, prefill=False,
                )
                local = gpuconv.conv2d_grad_input(
                    (N, C, len_h, len_w), _like(w, g), g, stride=stride, padding=0,
                    dilation=dilation, groups=groups, **kwargs,
                )
                for l_h, n_h, d_h, st_h in mv_h:
                    for l_w, n_w2, d_w, st_w in mv_w:
                        src = local[:, :, _move_slice(l_h, n_h, st_h),
                                    _move_slice(l_w, n_w2, st_w)]
                        if out is None and (n_h, n_w2) == shape[2:]:
                            out = src.copy()  # the whole chunk in one piece
                            continue
                        if out is None:
                            out = xp.zeros(shape, dtype=first.dtype)
                        out[:, :, d_h:d_h + n_h, d_w:d_w + n_w2] += src
    if out is None:
        out = xp.zeros(shape, dtype=first.dtype)
    return out.astype(dtype, copy=False)


def _move_slice(local: int, n: int, step: int) -> slice:
    """Rows ``local..local+n-1`` of a local gradient, reversed for ``step`` -1 (they
    then land on ascending rows of the chunk)."""
    return slice(local, local + n) if step > 0 else _src_slice(local + n - 1, n, -1)


def _gw_gather_task(
    blocks: list[Any], gyb: Any, *, gather: dict[str, Any],
    w_shape: tuple[int, ...], stride: tuple[int, int], dilation: tuple[int, int],
    groups: int, kwargs: dict[str, Any],
) -> Any:
    """This chunk's share of the weight gradient, as a ``(1, 1, 1, 1, M)`` block:
    the window of ``P`` gathered as the forward does, and the chunk of ``gy``."""
    win = _gather_window(blocks, **gather)
    gw = gpuconv.conv2d_grad_weight(win, w_shape, gyb, stride=stride, padding=0,
                                    dilation=dilation, groups=groups, **kwargs)
    return gw.reshape(1, 1, 1, 1, -1)


def conv2d_backward(
    gy: Any,
    x: Any,
    w: Any,
    *,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, ...] | str = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    needs: tuple[str, ...] | list[str] = ("input", "weight", "bias"),
    algorithm: str = "auto",
    backend: str | None = None,
    precision: str | None = None,
) -> Conv2dGrads:
    """:func:`gpuconv.conv2d_backward` on Dask arrays, chunked over N, H and W.

    Parameters
    ----------
    gy : dask.array.Array
        Gradient of ``y = conv2d(x, w, ...)``; rechunked to the chunks that
        :func:`conv2d` gives ``y`` (a no-op for ``gy`` shaped like that output).
    x : dask.array.Array
        The forward input, chunked over ``N``, ``H``, ``W`` as you like.
    w : array_like
        The weights, in memory.
    stride, padding, dilation, groups, padding_mode, needs, algorithm, backend
        As in :func:`gpuconv.conv2d_backward`.
    precision : {None, 'highest', 'tf32'}
        As in :func:`gpuconv.conv2d_backward`, resolved when the graph is built.

    Returns
    -------
    Conv2dGrads
        ``(gx, gw, gb)`` as Dask arrays (``None`` for what was not asked):
        ``gx`` in ``x``'s chunks (after the stride alignment of :func:`conv2d`),
        ``gw`` and ``gb`` single chunks.

    Notes
    -----
    ``gx`` is built in one task per chunk of ``x``: it gathers the rows of ``gy``
    whose windows read the chunk (from the neighbouring chunks of ``gy``), applies
    the in-memory :func:`gpuconv.conv2d_grad_input` to them, and adds the border
    gradient of ``'reflect'``, ``'replicate'``, ``'circular'`` and ``'symmetric'``
    padding onto the pixels it copied (edge chunks; one more small call per border
    segment), in a fixed order. Each partial sum of ``gw`` is one task on the
    forward's window of ``x`` and one chunk of ``gy``. ``gw`` and ``gb`` are
    per-chunk partial sums (in float32 for float16 data) added with a tree
    reduction (``sum(..., split_every=8)``), so the result does not depend on the
    scheduler or the worker count.

    Examples
    --------
    >>> import numpy as np, dask.array as da
    >>> import gpuconv.dask
    >>> x = da.ones((4, 1, 6, 6), chunks=(2, 1, 3, 3))
    >>> gy = da.ones((4, 1, 6, 6), chunks=(2, 1, 3, 3))
    >>> g = gpuconv.dask.conv2d_backward(gy, x, np.ones((1, 1, 3, 3)), padding=1)
    >>> float(g.gb.compute()[0]), float(g.gw.compute()[0, 0, 1, 1])
    (144.0, 144.0)
    >>> g.gx.compute()[0, 0, 0, :3].tolist()
    [4.0, 6.0, 6.0]
    """
    gy = _as_dask(gy, "gy")
    x = _as_dask(x, "x")
    w = _small(w, "w")
    w_host = _host_stand_in(w)
    p = normalize_conv2d(
        x.shape, tuple(w_host.shape), [np.dtype(a.dtype) for a in (gy, x, w_host)],
        stride=stride, padding=padding, dilation=dilation, groups=groups,
        padding_mode=padding_mode, fn="conv2d_backward",
    )
    want = p.user_shape(p.y_shape)
    if tuple(gy.shape) != want:
        raise ValueError(
            f"gy must have the output shape {want} of this convolution, got "
            f"{tuple(gy.shape)}"
        )
    needs = check_needs(needs)
    algorithm = check_algorithm(algorithm)
    _check_backend(backend)
    kwargs = dict(algorithm=algorithm, backend=backend,
                  precision=select_precision(precision))
    if p.empty:
        fn = functools.partial(
            gpuconv.conv2d_backward, stride=stride, padding=padding, dilation=dilation,
            groups=groups, padding_mode=padding_mode, needs=needs, **kwargs,
        )
        g = dask.delayed(fn, pure=True, nout=3)(gy, x, w)
        shapes = (p.user_shape(p.x_shape), p.w_shape, (p.K,))
        res = []
        for name, item, shape in zip(("input", "weight", "bias"), g, shapes,
                                     strict=True):
            ndim = len(shape)
            res.append(None if name not in needs else da.from_delayed(
                item, shape=shape, dtype=p.dtype,
                meta=meta_from_array(x._meta, ndim=ndim, dtype=p.dtype)))
        return Conv2dGrads(*res)
    from dask.highlevelgraph import HighLevelGraph

    cd = p.compute_dtype
    xb = (x if p.batched else x[None]).rechunk({1: -1})
    gyb = gy if p.batched else gy[None]
    xb, gyb = xb.astype(cd), gyb.astype(cd)
    plans = _conv_plans(xb, p)
    xb = xb.rechunk({2: plans[2].src_chunks, 3: plans[3].src_chunks})
    gyb = gyb.rechunk({0: xb.chunks[0], 1: -1, 2: plans[2].out_chunks,
                       3: plans[3].out_chunks})
    conv = dict(stride=p.stride, dilation=p.dilation, groups=p.groups, kwargs=kwargs)
    token = (w, p, kwargs)
    gx = gw = gb = None
    if "input" in needs:
        # one task per chunk of x, reading the gy chunks its gradient needs
        name = _layer_name("gpuconv-gx-", gyb.name, _plans_token(plans),
                           p.padding_mode, token)
        axes = {ax: _gx_axis(plan, p.padding_mode) for ax, plan in plans.items()}
        layer: dict[Any, Any] = {}
        for n, nb in enumerate(xb.chunks[0]):
            for i, sh in enumerate(xb.chunks[2]):
                for j, sw in enumerate(xb.chunks[3]):
                    (items_h, ids_h), (items_w, ids_w) = axes[2][i], axes[3][j]
                    keys = [(gyb.name, n, 0, a, b) for a in ids_h for b in ids_w]
                    task = functools.partial(
                        _gx_gather_task, items=(items_h, items_w), ids=(ids_h, ids_w),
                        shape=(nb, p.C, sh, sw), w=w, dtype=p.dtype, **conv)
                    layer[(name, n, 0, i, j)] = (task, keys)
        graph = HighLevelGraph.from_collections(name, layer, dependencies=[gyb])
        gx = da.Array(graph, name, chunks=(xb.chunks[0], (p.C,), *xb.chunks[2:]),
                      dtype=p.dtype,
                      meta=meta_from_array(x._meta, ndim=4, dtype=p.dtype))
        gx = gx if p.batched else gx[0]
    if "weight" in needs:
        # one task per chunk of gy: the forward's window of P and the gy chunk
        xg, _, specs = _gather_specs(xb, plans, p.padding_mode, 0)
        name = _layer_name("gpuconv-gw-", xg.name, gyb.name, _plans_token(plans),
                           p.padding_mode, token)
        layer = {}
        for out_idx, gather, keys in specs:
            task = functools.partial(_gw_gather_task, gather=gather,
                                     w_shape=p.w_shape, **conv)
            layer[(name, *out_idx, 0)] = (task, keys, (gyb.name, *out_idx))
        nb = gyb.numblocks
        m = math.prod(p.w_shape)
        graph = HighLevelGraph.from_collections(name, layer, dependencies=[xg, gyb])
        parts = da.Array(
            graph, name,
            chunks=((1,) * nb[0], (1,), (1,) * nb[2], (1,) * nb[3], (m,)),
            dtype=cd, meta=meta_from_array(x._meta, ndim=5, dtype=cd),
        )
        gw = parts.sum(axis=(0, 1, 2, 3), split_every=_SPLIT_EVERY)
        gw = gw.reshape(p.w_shape).astype(p.dtype)
    if "bias" in needs:
        gb = gyb.sum(axis=(0, 2, 3), split_every=_SPLIT_EVERY).astype(p.dtype)
    return Conv2dGrads(gx, gw, gb)
