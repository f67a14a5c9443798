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

1. **Extension.** Each spatial axis is extended once, lazily, by
   ``da.concatenate([edge, x, edge])``; ``edge`` is a constant block (``'fill'``
   with its ``fillvalue``, ``'zeros'``) or ``x`` indexed with the border index map of
   :func:`gpuconv._padding.pad_index` (``'wrap'``/``'circular'``,
   ``'symm'``/``'symmetric'``, PyTorch's ``'reflect'`` (mirror without the edge) and
   ``'replicate'``). These are the very maps the in-memory backends use, so every
   mode matches exactly, including kernels larger than the image (the pattern
   repeats). Dask's own ``map_overlap`` boundaries cannot express all of these
   (its ``'reflect'`` repeats the edge, so it is SciPy's ``'symm'``; PyTorch's
   ``'reflect'`` has no Dask name) and need halos no deeper than one chunk, so
   gpuconv builds the border itself and uses ``boundary='none'`` halos inside.
2. **Alignment.** Output chunk ``b`` covers outputs ``[o_b, o_b+1)`` and reads
   ``P[o_b*stride : (o_b+1 - 1)*stride + e]``. The chunk boundaries of ``P`` are
   placed at the chunk boundaries of ``x`` (shifted by ``before``), so only the two
   edge chunks of each axis change; with ``stride > 1`` an interior chunk boundary
   of ``x`` that is not a multiple of ``stride`` is moved down to one (**a rechunk
   of x**, none when the chunks are already multiples of the stride).
3. **Halos.** The filters (:func:`convolve2d`, :func:`correlate2d`) build each
   output chunk's window in **one task** that reads the source chunks it needs (the
   neighbours for the halo; for ``'wrap'`` also the far edge) and copies the pieces,
   border included (the index map of step 1 decides which source row fills which
   window row, ``'fill'`` pre-fills), into one new array on the chunk's device: one
   task per output chunk and one copy of each window. conv2d and conv2d_backward
   use ``dask.array.overlap.overlap`` with an asymmetric depth
   ``(lead, e - stride - lead)`` per axis and ``boundary='none'`` on ``P`` (step 1
   built by ``da.concatenate``); ``lead <= e - 1`` is the part of ``before`` that is
   not absorbed into a shift of the output chunks. Halos come from the adjacent
   chunk only, so **chunks smaller than the halo are merged with their neighbour
   first** (a rechunk); uneven chunks are fine as they are.
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


def _index(ndim: int, axis: int, sl: Any) -> tuple[Any, ...]:
    return (slice(None),) * axis + (sl,)


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

    def touching(self) -> tuple[tuple[int, int], ...]:
        """``(lo, hi)``: outputs ``lo..hi-1``, whose windows meet ``P`` chunk ``b``."""
        res = []
        s, e = self.stride, self.extent
        for b in range(len(self.p_chunks)):
            a0, a1 = self.p_starts[b], self.p_starts[b + 1]
            lo = max(0, -(-(a0 - e + 1) // s))
            hi = min(self.out, (a1 - 1) // s + 1)
            res.append((lo, max(hi, lo)))
        return tuple(res)

    def gy_depth(self) -> tuple[int, int]:
        """Halo of the output-gradient chunks needed to rebuild each ``P`` chunk."""
        if len(self.out_chunks) == 1:
            return (0, 0)
        left = right = 0
        for b, (lo, hi) in enumerate(self.touching()):
            if hi > lo:
                left = max(left, self.out_starts[b] - lo)
                right = max(right, hi - self.out_starts[b + 1])
        return (left, right)

    def gy_windows(self) -> tuple[tuple[int, int, int], ...]:
        """``(start, length, offset)`` per chunk: the touching outputs inside the
        overlapped gradient chunk, and where their ``P`` region starts relative to
        the ``P`` chunk (negative: before it)."""
        left = self.gy_depth()[0]
        res = []
        for b, (lo, hi) in enumerate(self.touching()):
            block_start = self.out_starts[b] - (left if b > 0 else 0)
            res.append((lo - block_start, hi - lo, lo * self.stride - self.p_starts[b]))
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


# -------------------------------------------------------------- extension / fold


def _fill_block(block: Any, *, axis: int, size: int, value: Any) -> Any:
    shape = list(block.shape)
    shape[axis] = size
    return _xp(block).full(tuple(shape), value, dtype=block.dtype)


def _edge(x: da.Array, axis: int, idx: np.ndarray, fill: Any) -> da.Array:
    """The border piece read through the index map ``idx`` (``-1``: ``fill``)."""
    if (idx >= 0).all():
        return x[_index(x.ndim, axis, idx)]
    seed = x[_index(x.ndim, axis, slice(0, 1))]
    chunks = list(seed.chunks)
    chunks[axis] = (idx.size,)
    return seed.map_blocks(
        _fill_block, axis=axis, size=idx.size, value=fill, dtype=x.dtype,
        chunks=tuple(chunks), meta=x._meta,
    )


def _extend(x: da.Array, axis: int, plan: _AxisPlan, mode: str, fill: Any) -> da.Array:
    """``x`` extended along ``axis`` to ``P``, chunked as ``plan.p_chunks``."""
    x = x.rechunk({axis: plan.src_chunks})
    idx = pad_index(plan.n, plan.before, plan.after, mode)
    pieces = []
    if plan.before:
        pieces.append(_edge(x, axis, idx[: plan.before], fill))
    pieces.append(x)
    if plan.after:
        pieces.append(_edge(x, axis, idx[plan.before + plan.n :], fill))
    p = da.concatenate(pieces, axis=axis) if len(pieces) > 1 else x
    return p.rechunk({axis: plan.p_chunks})


def _overlapped(p: da.Array, plans: dict[int, _AxisPlan]) -> da.Array:
    """``P`` with the halos of ``plans`` (``boundary='none'``: the border is in P)."""
    depth = {ax: plan.depth for ax, plan in plans.items()}
    if all(d == (0, 0) for d in depth.values()):
        return p
    return da.overlap.overlap(
        p, depth=depth, boundary=dict.fromkeys(plans, "none"), allow_rechunk=False
    )


def _scatter_block(
    block: Any, *, axis: int, targets: tuple[int, ...], size: int
) -> Any:
    """Sum the border slices of ``block`` onto the ``size`` pixels they copied."""
    shape = list(block.shape)
    shape[axis] = size
    out = _xp(block).zeros(tuple(shape), dtype=block.dtype)
    for p, t in enumerate(targets):  # one slice per border row: pads are small
        out[_index(block.ndim, axis, t)] += block[_index(block.ndim, axis, p)]
    return out


def _fold(g: da.Array, axis: int, plan: _AxisPlan, mode: str) -> da.Array:
    """Adjoint of :func:`_extend`: the gradient of ``P`` folded back onto ``x``."""
    n, before, after = plan.n, plan.before, plan.after
    inner = g[_index(g.ndim, axis, slice(before, before + n))]
    if mode != "zeros":
        idx = pad_index(n, before, after, mode)
        for sl, targets in (
            (slice(0, before), idx[:before]),
            (slice(before + n, before + n + after), idx[before + n :]),
        ):
            if targets.size == 0:
                continue
            lo, hi = int(targets.min()), int(targets.max()) + 1
            piece = g[_index(g.ndim, axis, sl)].rechunk({axis: -1})
            chunks = list(piece.chunks)
            chunks[axis] = (hi - lo,)
            contrib = piece.map_blocks(
                _scatter_block, axis=axis, targets=tuple((targets - lo).tolist()),
                size=hi - lo, chunks=tuple(chunks), meta=piece._meta,
            )
            parts = []
            if lo > 0:
                parts.append(inner[_index(g.ndim, axis, slice(0, lo))])
            parts.append(inner[_index(g.ndim, axis, slice(lo, hi))] + contrib)
            if hi < n:
                parts.append(inner[_index(g.ndim, axis, slice(hi, n))])
            inner = da.concatenate(parts, axis=axis) if len(parts) > 1 else parts[0]
    return inner.rechunk({axis: plan.src_chunks})


def _crop(block: Any, crops: dict[int, tuple[tuple[int, int], ...]],
          loc: tuple[int, ...]) -> Any:
    sl = [slice(None)] * block.ndim
    for ax, table in crops.items():
        start, length = table[loc[ax]][:2]
        sl[ax] = slice(start, start + length)
    return block[tuple(sl)]


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
            if j < n and idx[j] == v - 1:
                step = -1
            while j < n and idx[j] == v + step * (j - i):
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
    import itertools

    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph

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
    # device arrays (kernels, weights) get a unique token: Dask would hash them
    # through the host (pickling)
    token = tuple(uuid.uuid4().hex if _backend.is_cupy_array(t) else t for t in token)
    name = "gpuconv-gather-" + tokenize(
        x.name, {a: (p.before, p.after, p.extent, p.stride, p.out_chunks) for a, p in
                 plans.items()}, mode, fill, token)
    chunks = list(x.chunks)
    for ax in ax_list:
        chunks[ax] = plans[ax].out_chunks
    layer: dict[Any, Any] = {}
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
        layer[(name, *out_idx)] = (make_task(out_idx, gather), keys)
    for ax, c in (out_chunks or {}).items():
        chunks[ax] = c
    graph = HighLevelGraph.from_collections(name, layer, dependencies=[x])
    return da.Array(graph, name, chunks=tuple(chunks), dtype=dtype, meta=meta)


def _apply(
    x: da.Array,
    plans: dict[int, _AxisPlan],
    mode: str,
    fill: Any,
    block_fn: Callable[..., Any],
    dtype: Any,
    meta: Any,
    fn_kwargs: dict[str, Any],
    out_chunks: dict[int, tuple[int, ...]] | None = None,
) -> da.Array:
    p = x
    for ax, plan in plans.items():
        p = _extend(p, ax, plan, mode, fill)
    q = _overlapped(p, plans)
    chunks = list(q.chunks)
    for ax, plan in plans.items():
        chunks[ax] = plan.out_chunks
    for ax, c in (out_chunks or {}).items():
        chunks[ax] = c
    crops = {ax: plan.windows() for ax, plan in plans.items()}
    return q.map_blocks(
        block_fn, crops=crops, chunks=tuple(chunks), dtype=dtype, meta=meta,
        **fn_kwargs,
    )


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


def _gx_block(
    gyb: Any,
    *,
    crops: dict[int, tuple[tuple[int, int, int], ...]],
    p_chunks: dict[int, tuple[int, ...]],
    w: Any,
    C: int,
    extent: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
    groups: int,
    kwargs: dict[str, Any],
    block_info: Any = None,
) -> Any:
    """Gradient of the extended input ``P`` over one ``P`` chunk."""
    loc = block_info[0]["chunk-location"]
    ph, pw = p_chunks[2][loc[2]], p_chunks[3][loc[3]]
    xp = _xp(gyb)
    out = xp.zeros((gyb.shape[0], C, ph, pw), dtype=gyb.dtype)
    (_, nh, offh), (_, nw, offw) = crops[2][loc[2]], crops[3][loc[3]]
    if nh == 0 or nw == 0 or gyb.shape[0] == 0:
        return out
    g = _crop(gyb, crops, loc)
    lh = (nh - 1) * stride[0] + extent[0]
    lw = (nw - 1) * stride[1] + extent[1]
    local = gpuconv.conv2d_grad_input(
        (g.shape[0], C, lh, lw), _like(w, g), g, stride=stride, padding=0,
        dilation=dilation, groups=groups, **kwargs,
    )
    # Place the local region [off, off + l) into the chunk [0, p).
    src, dst = [slice(None), slice(None)], [slice(None), slice(None)]
    for off, length, size in ((offh, lh, ph), (offw, lw, pw)):
        a, b = max(off, 0), min(off + length, size)
        dst.append(slice(a, max(a, b)))
        src.append(slice(a - off, a - off + max(b - a, 0)))
    out[tuple(dst)] = local[tuple(src)]
    return out


def _gw_block(
    xblock: Any,
    gyb: Any,
    *,
    crops: dict[int, tuple[tuple[int, int], ...]],
    w_shape: tuple[int, ...],
    stride: tuple[int, int],
    dilation: tuple[int, int],
    groups: int,
    kwargs: dict[str, Any],
    block_info: Any = None,
) -> Any:
    """This chunk's share of the weight gradient, as a ``(1, 1, 1, 1, M)`` block."""
    win = _crop(xblock, crops, block_info[0]["chunk-location"])
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
    ``gx`` is built chunk by chunk: each chunk of the extended input takes the
    output-gradient rows whose windows reach it (halos of ``gy``), applies the
    in-memory :func:`gpuconv.conv2d_grad_input` to them, and the border gradient of
    ``'reflect'``, ``'replicate'``, ``'circular'`` and ``'symmetric'`` padding is
    folded back onto the pixels it copied (edge chunks only). ``gw`` and ``gb`` are
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
    cd = p.compute_dtype
    xb = (x if p.batched else x[None]).rechunk({1: -1})
    gyb = gy if p.batched else gy[None]
    xb, gyb = xb.astype(cd), gyb.astype(cd)
    extent = (p.dilation[0] * (p.KH - 1) + 1, p.dilation[1] * (p.KW - 1) + 1)
    # Plans whose output chunks are deep enough for the halos of gy as well.
    min_chunk = 1
    while True:
        plans = _conv_plans(xb, p, min_chunk)
        gdep = {ax: plan.gy_depth() for ax, plan in plans.items()}
        small = [
            max(d) * plan.stride + plan.extent
            for ax, plan in plans.items()
            for d in (gdep[ax],)
            if "input" in needs and len(plan.out_chunks) > 1
            and min(plan.out_chunks) < max(d)
        ]
        if not small:
            break
        min_chunk = max(2 * min_chunk, *small)
    xb = xb.rechunk({2: plans[2].src_chunks, 3: plans[3].src_chunks})
    gyb = gyb.rechunk({0: xb.chunks[0], 1: -1, 2: plans[2].out_chunks,
                       3: plans[3].out_chunks})
    meta4 = meta_from_array(x._meta, ndim=4, dtype=cd)
    gx = gw = gb = None
    if "input" in needs:
        depth = {2: gdep[2], 3: gdep[3]}
        if all(d == (0, 0) for d in depth.values()):
            q = gyb
        else:
            q = da.overlap.overlap(gyb, depth=depth, boundary={2: "none", 3: "none"},
                                   allow_rechunk=False)
        gp = q.map_blocks(
            _gx_block, crops={ax: plan.gy_windows() for ax, plan in plans.items()},
            p_chunks={ax: plan.p_chunks for ax, plan in plans.items()}, w=w, C=p.C,
            extent=extent, stride=p.stride, dilation=p.dilation, groups=p.groups,
            kwargs=kwargs,
            chunks=(xb.chunks[0], (p.C,), plans[2].p_chunks, plans[3].p_chunks),
            dtype=cd, meta=meta4,
        )
        for ax, plan in plans.items():
            gp = _fold(gp, ax, plan, p.padding_mode)
        gx = gp.astype(p.dtype)
        gx = gx if p.batched else gx[0]
    if "weight" in needs:
        pp = xb
        for ax, plan in plans.items():
            pp = _extend(pp, ax, plan, p.padding_mode, 0)
        q = _overlapped(pp, plans)
        nb = q.numblocks
        m = math.prod(p.w_shape)
        parts = da.map_blocks(
            _gw_block, q, gyb, crops={ax: plan.windows() for ax, plan in plans.items()},
            w_shape=p.w_shape, stride=p.stride, dilation=p.dilation, groups=p.groups,
            kwargs=kwargs, new_axis=[4],
            chunks=((1,) * nb[0], (1,), (1,) * nb[2], (1,) * nb[3], (m,)),
            dtype=cd, meta=meta_from_array(x._meta, ndim=5, dtype=cd),
        )
        gw = parts.sum(axis=(0, 1, 2, 3), split_every=_SPLIT_EVERY)
        gw = gw.reshape(p.w_shape).astype(p.dtype)
    if "bias" in needs:
        gb = gyb.sum(axis=(0, 2, 3), split_every=_SPLIT_EVERY).astype(p.dtype)
    return Conv2dGrads(gx, gw, gb)
