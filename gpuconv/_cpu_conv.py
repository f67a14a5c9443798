"""The NumPy backend of conv2d and its gradients: one GEMM per kernel tap.

Every op receives a validated, non-empty :class:`~gpuconv._conv_args.Conv2dProblem`
and arrays of ``p.compute_dtype`` (any strides; never modified).

How it works
------------
The border extension is built **once** per call, as a channel-major copy ``E`` of
the input, ``(C, N, Hq, Wq)``, with the padding already applied (``np.pad``-like
gather through :func:`gpuconv._padding.pad_index` maps). With stride 1 the frame
is the padded image. With a stride ``s > 1`` the padded image is split into its
``s*s`` *phases* (``xp[r::s, t::s]``); kernel tap ``(a, b)`` then reads one phase
with an integer shift ``(a*dh//sh, b*dw//sw)``, so every tap is again a plain
shift (only the phases some tap reads are built).

Flattening each phase to ``(C, N*Hq*Wq)``, output pixel ``(n, i, j)`` lives at
column ``n*Hq*Wq + i*Wq + j`` of a frame-shaped output and tap ``t`` reads column
``col + off_t`` of its phase. So the whole batch of one tap is one GEMM::

    Y[:, :L] += W_t (K/groups x C/groups)  @  E_phase[:, off_t : off_t + L]

on a strided *view* (no im2col, no copy), accumulated in place with BLAS
``beta = 1`` (:mod:`gpuconv._cpu_gemm`). The forward pass does this for a block
of frame rows at a time (a few MiB, all taps while the block is in cache) and
crops the block's output rows straight into ``y``. Columns that do not
correspond to an output pixel (``j >= OW`` or ``i >= OH``) are computed and
discarded: a waste of ``Hq*Wq/(OH*OW) - 1`` (7 % for 56x56 with 3x3, pad 1).

The gradients use the same frames: ``gx`` is the transposed GEMM per tap into
the phase frames, scattered back into the padded frame and *folded* through the
index maps (the border gradient is added onto the pixels the border copied);
``gw`` per tap is ``gY (K/g x L) @ E_phase[:, off_t:off_t+L].T``, one GEMM with
the whole batch as its reduction.

Two other layouts of the same per-tap GEMMs are picked by cost:

* *windows*: per tap, the strided window of the padded input is copied to a
  contiguous ``(C, N*OH*OW)`` buffer (one tap at a time, never the whole
  im2col). No column is wasted, so it wins for small images, where the frame's
  border columns are a large fraction (``_WINDOWS_ABOVE``).
* *stacked*: with fewer than 16 input channels per group a per-tap GEMM has a
  reduction too short for BLAS (the first layer of a network: 3 channels, 7x7),
  so the taps of a bounded chunk of frame columns (at most 4 MiB) are stacked
  and multiplied in one GEMM of reduction ``KH*KW*C/groups``.

Discarded frame columns multiply zeros into the sums of the gradients; when
``w`` (for ``gx``) or ``x`` (for ``gw``) contains NaN or inf, ``0 * inf`` would
put NaN where no real product has one, so those calls take the windows path,
which forms only real products (NumPy's NaN placement). Every path is
deterministic: the same inputs give bit-identical outputs (no reduction is split
across threads in a way that depends on timing).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gpuconv._conv_args import Conv2dProblem
from gpuconv._cpu_gemm import gemm
from gpuconv._padding import pad_index

__all__ = [
    "conv2d_backward_bias",
    "conv2d_backward_input",
    "conv2d_backward_weight",
    "conv2d_forward",
]


# ----------------------------------------------------------------------------
# geometry: phases, frame, taps
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Frame:
    """Where every tap reads, for one problem and one (virtual) stride."""

    Hq: int
    Wq: int
    phases: tuple[tuple[int, int], ...]  # (ra, rb) of each phase that some tap reads
    maps: tuple[tuple[np.ndarray, np.ndarray], ...]  # per phase: row/col source maps
    taps: tuple[tuple[int, int], ...]  # per tap (a, b) in row-major order: (phase, off)

    @property
    def size(self) -> int:
        return self.Hq * self.Wq


def _frame(p: Conv2dProblem, stride: tuple[int, int] | None = None) -> _Frame:
    """The phase frame of ``p``; ``stride=(1, 1)`` gives the plain padded frame."""
    sh, sw = p.stride if stride is None else stride
    dh, dw = p.dilation
    pt, pb, pl, pr = p.padding
    Hp, Wp = p.padded_hw
    ih = pad_index(p.H, pt, pb, p.padding_mode)
    iw = pad_index(p.W, pl, pr, p.padding_mode)
    qh = [divmod(a * dh, sh) for a in range(p.KH)]  # (shift, phase) per kernel row
    qw = [divmod(b * dw, sw) for b in range(p.KW)]
    if stride is None:
        oh, ow = p.OH, p.OW
    else:  # the frame of a stride-1 problem with the same padding
        oh, ow = Hp - dh * (p.KH - 1), Wp - dw * (p.KW - 1)
    Hq = oh + max(q for q, _ in qh)
    Wq = ow + max(q for q, _ in qw)
    rh = sorted({r for _, r in qh})
    rw = sorted({r for _, r in qw})
    phases = tuple((ra, rb) for ra in rh for rb in rw)

    def phase_map(idx: np.ndarray, r: int, s: int, q: int, n: int) -> np.ndarray:
        pos = r + s * np.arange(q)
        out = np.full(q, -1, dtype=np.int64)
        ok = pos < n
        out[ok] = idx[pos[ok]]
        return out

    maps = tuple(
        (phase_map(ih, ra, sh, Hq, Hp), phase_map(iw, rb, sw, Wq, Wp))
        for ra, rb in phases
    )
    taps = tuple(
        (phases.index((ra, rb)), qa * Wq + qb)
        for qa, ra in qh
        for qb, rb in qw
    )
    return _Frame(Hq, Wq, phases, maps, taps)


def _index_or_slice(src: np.ndarray) -> slice | np.ndarray:
    """A slice when ``src`` is an arithmetic progression with positive step."""
    if src.size == 1:
        return slice(int(src[0]), int(src[0]) + 1)
    step = int(src[1] - src[0])
    if step > 0 and np.all(np.diff(src) == step):
        return slice(int(src[0]), int(src[-1]) + 1, step)
    return src


def _valid_range(m: np.ndarray) -> tuple[int, int]:
    """The (contiguous) range of positions of a phase map that read the source."""
    ok = np.nonzero(m >= 0)[0]
    if ok.size == 0:
        return 0, 0
    lo, hi = int(ok[0]), int(ok[-1]) + 1
    assert ok.size == hi - lo, "index maps have one contiguous valid range"
    return lo, hi


def _extend(
    xt: np.ndarray, fr: _Frame, dtype: np.dtype, slack: int = 0
) -> np.ndarray:
    """Gather the extended input ``(P, C, N, Hq, Wq)`` from ``xt (C, N, H, W)``.

    With ``slack``, the result is a view into ``(P, C, N*Hq*Wq + slack)`` whose
    last ``slack`` columns of each channel are zeros (reads past the last frame).
    """
    C, N = xt.shape[:2]
    P, F = len(fr.phases), N * fr.size
    full = np.empty((P, C, F + slack), dtype=dtype)
    full[:, :, F:] = 0
    E = full[:, :, :F].reshape(P, C, N, fr.Hq, fr.Wq)
    for e, (mh, mw) in zip(E, fr.maps, strict=True):
        u0, u1 = _valid_range(mh)
        v0, v1 = _valid_range(mw)
        e[:, :, :u0] = 0
        e[:, :, u1:] = 0
        e[:, :, u0:u1, :v0] = 0
        e[:, :, u0:u1, v1:] = 0
        if u1 == u0 or v1 == v0:
            continue
        sh_, sw_ = _index_or_slice(mh[u0:u1]), _index_or_slice(mw[v0:v1])
        if isinstance(sh_, slice) and isinstance(sw_, slice):
            e[:, :, u0:u1, v0:v1] = xt[:, :, sh_, sw_]
        else:
            rows = xt[:, :, sh_] if isinstance(sh_, slice) else xt.take(sh_, axis=2)
            if isinstance(sw_, slice):
                e[:, :, u0:u1, v0:v1] = rows[:, :, :, sw_]
            else:
                np.take(rows, sw_, axis=3, out=e[:, :, u0:u1, v0:v1])
    return E


def _fold_axis(
    g: np.ndarray, idx: np.ndarray, n: int, before: int, axis: int
) -> np.ndarray:
    """Sum ``g`` along ``axis`` (a padded axis, index map ``idx``) onto ``n`` pixels.

    The interior is copied; every border position adds its gradient to the pixel it
    copied (``np.add.at``: sequential, so deterministic). Zeros drop out.
    """
    gm = np.moveaxis(g, axis, 0)
    out = np.array(gm[before : before + n])  # interior: idx[before + i] == i
    border = np.nonzero(idx >= 0)[0]
    border = border[(border < before) | (border >= before + n)]
    if border.size:
        np.add.at(out, idx[border], gm[border])
    return np.moveaxis(out, 0, axis)


def _fold(G: np.ndarray, p: Conv2dProblem) -> np.ndarray:
    """Padded-frame gradient ``G (C, N, Hp, Wp)`` -> ``gx (N, C, H, W)``, contiguous."""
    pt, pb, pl, pr = p.padding
    gx = np.empty((p.N, p.C, p.H, p.W), dtype=G.dtype)
    if p.padding_mode == "zeros":
        gx[...] = G[:, :, pt : pt + p.H, pl : pl + p.W].transpose(1, 0, 2, 3)
        return gx
    with np.errstate(all="ignore"):
        g = _fold_axis(G, pad_index(p.H, pt, pb, p.padding_mode), p.H, pt, 2)
        g = _fold_axis(g, pad_index(p.W, pl, pr, p.padding_mode), p.W, pl, 3)
    gx[...] = g.transpose(1, 0, 2, 3)
    return gx


# Below this many input channels per group a per-tap GEMM has too short a
# reduction for BLAS (and re-reads the output once per tap): the taps are then
# stacked, a bounded chunk of frame columns at a time, into one GEMM of reduction
# ``KH*KW*C/groups`` (a partial im2col of at most _CHUNK_BYTES).
_STACK_BELOW = 16
_CHUNK_BYTES = 4 << 20


def _stacked(p: Conv2dProblem) -> bool:
    return p.Cg < _STACK_BELOW and p.KH * p.KW > 1


# The frame computes ``Hq*Wq`` columns per image for ``OH*OW`` outputs. When that
# waste, times the output channels per group that each wasted column costs, is
# large (small images: 14x14 with pad 1 wastes 31 %), copying each tap's window
# to a contiguous buffer can be cheaper. The copies run on one thread while BLAS
# uses all of them, so the break-even depends on the thread count; measured with
# 2 threads on 8x256x14x14 (waste x K/g = 78): the input gradient gains from
# windows (101 vs 88 GFLOP/s), forward and weight gradient do not (84 vs 91,
# 79 vs 106), and 28x28x128 (19) is best on the frame everywhere.
_WINDOWS_ABOVE = {"forward": 100.0, "weight": 100.0, "input": 40.0}


def _windows_pay(p: Conv2dProblem, fr: _Frame, op: str) -> bool:
    waste = fr.size / (p.OH * p.OW) - 1.0
    return not _stacked(p) and waste * p.Kg > _WINDOWS_ABOVE[op]


def _chunk(L: int, row_bytes: int) -> int:
    """Columns per chunk so that a buffer of ``row_bytes`` per column stays small."""
    return max(1, min(L, _CHUNK_BYTES // max(row_bytes, 1)))


def _weights_by_tap(w: np.ndarray, p: Conv2dProblem) -> np.ndarray:
    """``(KH*KW, groups, K/g, C/g)`` contiguous copy of ``w``."""
    wt = w.transpose(2, 3, 0, 1).reshape(p.KH * p.KW, p.groups, p.Kg, p.Cg)
    return np.ascontiguousarray(wt)


def _weights_stacked(w: np.ndarray, p: Conv2dProblem) -> np.ndarray:
    """``(groups, K/g, KH*KW*C/g)`` contiguous copy of ``w``, column ``t*Cg + c``."""
    ws = w.reshape(p.groups, p.Kg, p.Cg, p.KH * p.KW).transpose(0, 1, 3, 2)
    return np.ascontiguousarray(ws).reshape(p.groups, p.Kg, -1)


def _gy_channel_major(gy: np.ndarray, p: Conv2dProblem) -> np.ndarray:
    """``(groups, K/g, N*OH*OW)`` contiguous copy of ``gy``."""
    gyt = np.empty((p.K, p.N, p.OH, p.OW), dtype=gy.dtype)
    gyt[...] = gy.transpose(1, 0, 2, 3)
    return gyt.reshape(p.groups, p.Kg, -1)


def _gy_frame(gy: np.ndarray, p: Conv2dProblem, fr: _Frame, front: int) -> np.ndarray:
    """``(groups, K/g, front + N*Hq*Wq)``: ``gy`` at its frame columns after
    ``front`` zeros, zeros at every column that is no output pixel."""
    gyf = np.zeros((p.K, front + p.N * fr.size), dtype=p.compute_dtype)
    inner = gyf[:, front:].reshape(p.K, p.N, fr.Hq, fr.Wq)
    inner[:, :, : p.OH, : p.OW] = gy.transpose(1, 0, 2, 3)
    return gyf.reshape(p.groups, p.Kg, -1)


def _pointwise(p: Conv2dProblem) -> bool:
    """A 1x1 kernel with stride 1 and no padding: a GEMM per image on ``x`` as is."""
    return (p.KH, p.KW, p.stride, p.padding) == (1, 1, (1, 1), (0, 0, 0, 0))


def _frame_columns(p: Conv2dProblem, fr: _Frame) -> int:
    """Frame columns up to and including the last output pixel."""
    return (p.N - 1) * fr.size + (p.OH - 1) * fr.Wq + p.OW


def _extended_input(
    x: np.ndarray, p: Conv2dProblem, fr: _Frame, slack: int = 0
) -> np.ndarray:
    """``(phases, groups, C/g, N*Hq*Wq + slack)`` (the slack is zeros)."""
    E = _extend(x.transpose(1, 0, 2, 3), fr, p.compute_dtype, slack)
    full = E.base if slack else E
    return full.reshape(len(fr.phases), p.groups, p.Cg, p.N * fr.size + slack)


def _stack_taps(E: np.ndarray, fr: _Frame, q0: int, n: int, B: np.ndarray) -> None:
    """``B[:, t, :, :n] = E[phase_t][:, :, q0 + off_t : q0 + off_t + n]``."""
    for t, (ph, off) in enumerate(fr.taps):
        B[:, t, :, :n] = E[ph, :, :, q0 + off : q0 + off + n]


# ----------------------------------------------------------------------------
# forward
# ----------------------------------------------------------------------------


def conv2d_forward(
    x: np.ndarray,
    w: np.ndarray,
    bias: np.ndarray | None,
    p: Conv2dProblem,
    algorithm: str,
) -> np.ndarray:
    """``y (N, K, OH, OW)`` of :func:`gpuconv.conv2d` (``algorithm`` is ignored).

    Examples
    --------
    >>> import numpy as np
    >>> from gpuconv._conv_args import normalize_conv2d
    >>> x = np.arange(9.0).reshape(1, 1, 3, 3); w = np.ones((1, 1, 2, 2))
    >>> p = normalize_conv2d(x.shape, w.shape, [x.dtype])
    >>> conv2d_forward(x, w, None, p, "auto")[0, 0]
    array([[ 8., 12.],
           [20., 24.]])
    """
    dt = p.compute_dtype
    if _pointwise(p):
        return _forward_pointwise(x, w, bias, p)
    fr = _frame(p)
    if _windows_pay(p, fr, "forward"):
        return _forward_windows(x, w, bias, p)
    # Frame rows (Wq columns each, all images one after the other) are computed a
    # block at a time, all taps of a block while it is in cache, and the output
    # rows among them are cropped straight into y.
    T = len(fr.taps)
    maxoff = max(off for _, off in fr.taps)
    E = _extended_input(x, p, fr, slack=maxoff)
    stacked = _stacked(p)
    per_col = T * p.C if stacked else p.C + p.K  # items per column of a block
    last = (p.N - 1) * fr.Hq + p.OH  # frame rows up to the last output row
    rows = max(1, min(last, _chunk(last * fr.Wq, per_col * dt.itemsize) // fr.Wq))
    Lc = rows * fr.Wq
    Yc = np.empty((p.groups, p.Kg, Lc), dtype=dt)
    y = np.empty(p.y_shape, dtype=dt)
    if stacked:
        ws = _weights_stacked(w, p)
        B = np.empty((p.groups, T, p.Cg, Lc), dtype=dt)
        Bm = B.reshape(p.groups, T * p.Cg, Lc)
    else:
        wt = _weights_by_tap(w, p)
        tmp = np.empty(Yc.shape, dtype=dt)
    with np.errstate(all="ignore"):
        for g0 in range(0, last, rows):
            g1 = min(last, g0 + rows)
            q0, m = g0 * fr.Wq, (g1 - g0) * fr.Wq
            yc = Yc[:, :, :m]
            if stacked:
                _stack_taps(E, fr, q0, m, B)
                gemm(ws, Bm[:, :, :m], yc, accumulate=False)
            else:
                for t, (ph, off) in enumerate(fr.taps):
                    src = E[ph, :, :, q0 + off : q0 + off + m]
                    gemm(wt[t], src, yc, accumulate=t > 0, tmp=tmp[:, :, :m])
            block = yc.reshape(p.K, g1 - g0, fr.Wq)
            for n in range(g0 // fr.Hq, (g1 - 1) // fr.Hq + 1):
                i0, i1 = max(g0 - n * fr.Hq, 0), min(g1 - n * fr.Hq, p.OH)
                if i1 <= i0:
                    continue
                r0 = n * fr.Hq + i0 - g0
                crop = block[:, r0 : r0 + i1 - i0, : p.OW]
                if bias is None:
                    y[n, :, i0:i1] = crop
                else:
                    np.add(crop, bias.reshape(p.K, 1, 1), out=y[n, :, i0:i1])
    return y


def _forward_windows(
    x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, p: Conv2dProblem
) -> np.ndarray:
    """Per tap, copy the strided window of the padded input to a contiguous
    ``(C, N*OH*OW)`` buffer and accumulate one GEMM: no frame columns wasted."""
    dt = p.compute_dtype
    xp = _extend(x.transpose(1, 0, 2, 3), _frame(p, stride=(1, 1)), dt)[0]
    wt = _weights_by_tap(w, p)
    M = p.N * p.OH * p.OW
    Y = np.empty((p.groups, p.Kg, M), dtype=dt)
    xw = np.empty((p.C, p.N, p.OH, p.OW), dtype=dt)
    xwm = xw.reshape(p.groups, p.Cg, M)
    tmp = None
    for t in range(p.KH * p.KW):
        if t == 1:
            tmp = np.empty(Y.shape, dtype=dt)
        xw[...] = xp[_window(*divmod(t, p.KW), p)]
        gemm(wt[t], xwm, Y, accumulate=t > 0, tmp=tmp)
    y = np.empty(p.y_shape, dtype=dt)
    Yf = Y.reshape(p.K, p.N, p.OH, p.OW).transpose(1, 0, 2, 3)
    if bias is None:
        y[...] = Yf
    else:
        with np.errstate(all="ignore"):
            np.add(Yf, bias.reshape(1, p.K, 1, 1), out=y)
    return y


def _per_image(a: np.ndarray, p: Conv2dProblem, channels: int) -> np.ndarray:
    """``(N, groups, channels/groups, H*W)`` view of an NCHW array, copied first
    unless C-contiguous and aligned (so that every layout of the same values
    reaches BLAS identically: bit-identical results)."""
    a = np.require(a, requirements="CA")
    return a.reshape(p.N, p.groups, channels // p.groups, -1)


def _forward_pointwise(
    x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, p: Conv2dProblem
) -> np.ndarray:
    """1x1, stride 1, no padding: ``y[n] = W @ x[n]``, one GEMM per image and no
    copy of ``x`` (the frame would be ``x`` transposed)."""
    dt = p.compute_dtype
    wm = np.ascontiguousarray(w.reshape(p.groups, p.Kg, p.Cg))
    xm = _per_image(x, p, p.C)
    y = np.empty(p.y_shape, dtype=dt)
    ym = _per_image(y, p, p.K)
    for n in range(p.N):
        gemm(wm, xm[n], ym[n], accumulate=False)
    if bias is not None:
        with np.errstate(all="ignore"):
            y += bias.reshape(1, p.K, 1, 1)
    return y


# ----------------------------------------------------------------------------
# gradient with respect to the input
# ----------------------------------------------------------------------------


def conv2d_backward_input(
    gy: np.ndarray, w: np.ndarray, p: Conv2dProblem, algorithm: str
) -> np.ndarray:
    """``gx (N, C, H, W)``: the transpose of :func:`conv2d_forward` applied to ``gy``.

    Pure transpose (no conjugation: the API passes ``conj(w)`` for complex data).
    Border gradients are folded back onto the pixels the padding copied.

    Examples
    --------
    >>> import numpy as np
    >>> from gpuconv._conv_args import normalize_conv2d
    >>> w = np.ones((1, 1, 2, 2)); gy = np.ones((1, 1, 2, 2))
    >>> p = normalize_conv2d((1, 1, 3, 3), w.shape, [w.dtype])
    >>> conv2d_backward_input(gy, w, p, "auto")[0, 0]
    array([[1., 2., 1.],
           [2., 4., 2.],
           [1., 2., 1.]])
    """
    if _pointwise(p):
        return _backward_input_pointwise(gy, w, p)
    fr = _frame(p)
    if not np.isfinite(w).all() or _windows_pay(p, fr, "input"):
        return _backward_input_windows(gy, w, p)
    dt = p.compute_dtype
    Lf = p.N * fr.size
    P = len(fr.phases)
    # gradient of each phase of the extended input, (P, groups, C/g, N*Hq*Wq)
    Gph = np.zeros((P, p.groups, p.Cg, Lf), dtype=dt)
    if _stacked(p):
        L = _frame_columns(p, fr)
        gyf = _gy_frame(gy, p, fr, 0)
        T = len(fr.taps)
        wsT = _weights_stacked(w, p).transpose(0, 2, 1)  # (G, T*Cg, Kg)
        Lc = _chunk(L, T * p.C * dt.itemsize)
        Z = np.empty((p.groups, T, p.Cg, Lc), dtype=dt)
        with np.errstate(all="ignore"):
            for q0 in range(0, L, Lc):
                n = min(Lc, L - q0)
                zm = Z.reshape(p.groups, T * p.Cg, Lc)[:, :, :n]
                gemm(wsT, gyf[:, :, q0 : q0 + n], zm, accumulate=False)
                for t, (ph, off) in enumerate(fr.taps):
                    Gph[ph, :, :, q0 + off : q0 + off + n] += Z[:, t, :, :n]
    else:
        front = max(off for _, off in fr.taps)
        gyf = _gy_frame(gy, p, fr, front)
        wt = _weights_by_tap(w, p).transpose(0, 1, 3, 2)  # (T, G, Cg, Kg)
        tmp = None
        for ph in range(P):
            taps = [(t, off) for t, (q, off) in enumerate(fr.taps) if q == ph]
            for i, (t, off) in enumerate(taps):
                if i == 1 and tmp is None:
                    tmp = np.empty(Gph.shape[1:], dtype=dt)
                src = gyf[:, :, front - off : front - off + Lf]
                gemm(wt[t], src, Gph[ph], accumulate=i > 0, tmp=tmp)
    Hp, Wp = p.padded_hw
    if P == 1 and (fr.Hq, fr.Wq) == (Hp, Wp):  # stride 1: the frame is the padded image
        return _fold(Gph[0].reshape(p.C, p.N, Hp, Wp), p)
    sh, sw = p.stride
    G = np.zeros((p.C, p.N, Hp, Wp), dtype=dt)
    for ph, (ra, rb) in enumerate(fr.phases):
        nr = min(fr.Hq, -(-(Hp - ra) // sh))
        nc = min(fr.Wq, -(-(Wp - rb) // sw))
        G[:, :, ra : ra + (nr - 1) * sh + 1 : sh, rb : rb + (nc - 1) * sw + 1 : sw] = (
            Gph[ph].reshape(p.C, p.N, fr.Hq, fr.Wq)[:, :, :nr, :nc]
        )
    return _fold(G, p)


def _backward_input_pointwise(
    gy: np.ndarray, w: np.ndarray, p: Conv2dProblem
) -> np.ndarray:
    """1x1, stride 1, no padding: ``gx[n] = W^T @ gy[n]`` per image."""
    wmT = np.ascontiguousarray(w.reshape(p.groups, p.Kg, p.Cg)).transpose(0, 2, 1)
    gym = _per_image(gy, p, p.K)
    gx = np.empty(p.x_shape, dtype=p.compute_dtype)
    gxm = _per_image(gx, p, p.C)
    for n in range(p.N):
        gemm(wmT, gym[n], gxm[n], accumulate=False)
    return gx


def _window(a: int, b: int, p: Conv2dProblem) -> tuple[slice, slice, slice, slice]:
    """Index of tap ``(a, b)``'s window ``(C, N, OH, OW)`` in the padded input."""
    (sh, sw), (dh, dw) = p.stride, p.dilation
    return (
        slice(None),
        slice(None),
        slice(a * dh, a * dh + (p.OH - 1) * sh + 1, sh),
        slice(b * dw, b * dw + (p.OW - 1) * sw + 1, sw),
    )


def _backward_input_windows(
    gy: np.ndarray, w: np.ndarray, p: Conv2dProblem
) -> np.ndarray:
    """Exact-products path of :func:`conv2d_backward_input` (NaN/inf in ``w``)."""
    dt = p.compute_dtype
    gyt = _gy_channel_major(gy, p)
    wt = _weights_by_tap(w, p).transpose(0, 1, 3, 2)
    Hp, Wp = p.padded_hw
    G = np.zeros((p.C, p.N, Hp, Wp), dtype=dt)
    tmp = np.empty((p.groups, p.Cg, p.N * p.OH * p.OW), dtype=dt)
    with np.errstate(all="ignore"):
        for t in range(p.KH * p.KW):
            gemm(wt[t], gyt, tmp, accumulate=False)
            G[_window(*divmod(t, p.KW), p)] += tmp.reshape(p.C, p.N, p.OH, p.OW)
    return _fold(G, p)


# ----------------------------------------------------------------------------
# gradient with respect to the weight (and bias)
# ----------------------------------------------------------------------------


def conv2d_backward_weight(
    gy: np.ndarray,
    x: np.ndarray,
    p: Conv2dProblem,
    algorithm: str,
    with_bias: bool,
) -> tuple[np.ndarray, np.ndarray | None]:
    """``(gw (K, C/groups, KH, KW), gb (K,) or None)``.

    ``gw[k, c, a, b] = sum_{n,i,j} gy[n, k, i, j] * xp[n, c', i*sh + a*dh,
    j*sw + b*dw]`` (pure, no conjugation: the API passes ``conj(x)``).

    Examples
    --------
    >>> import numpy as np
    >>> from gpuconv._conv_args import normalize_conv2d
    >>> x = np.ones((1, 1, 3, 3)); gy = np.ones((1, 1, 2, 2))
    >>> p = normalize_conv2d(x.shape, (1, 1, 2, 2), [x.dtype])
    >>> gw, gb = conv2d_backward_weight(gy, x, p, "auto", True)
    >>> gw[0, 0], gb
    (array([[4., 4.],
           [4., 4.]]), array([4.]))
    """
    dt = p.compute_dtype
    T = p.KH * p.KW
    gb = conv2d_backward_bias(gy, p) if with_bias else None
    if _pointwise(p):
        return _backward_weight_pointwise(gy, x, p), gb
    fr = _frame(p)
    if not np.isfinite(x).all() or _windows_pay(p, fr, "weight"):
        return _backward_weight_windows(gy, x, p), gb
    E = _extended_input(x, p, fr)
    L = _frame_columns(p, fr)
    gyf = _gy_frame(gy, p, fr, 0)
    gw = np.empty(p.w_shape, dtype=dt)
    if _stacked(p):
        gws = np.empty((p.groups, p.Kg, T * p.Cg), dtype=dt)
        Lc = _chunk(L, T * p.C * dt.itemsize)
        B = np.empty((p.groups, T, p.Cg, Lc), dtype=dt)
        Bm = B.reshape(p.groups, T * p.Cg, Lc)
        tmp = None
        for q0 in range(0, L, Lc):
            n = min(Lc, L - q0)
            if q0 > 0 and tmp is None:
                tmp = np.empty(gws.shape, dtype=dt)
            _stack_taps(E, fr, q0, n, B)
            src = Bm[:, :, :n].transpose(0, 2, 1)
            gemm(gyf[:, :, q0 : q0 + n], src, gws, accumulate=q0 > 0, tmp=tmp)
        gw[...] = gws.reshape(p.groups, p.Kg, T, p.Cg).transpose(0, 1, 3, 2).reshape(
            p.w_shape
        )
        return gw, gb
    gwt = np.empty((T, p.groups, p.Kg, p.Cg), dtype=dt)
    for t, (ph, off) in enumerate(fr.taps):
        src = E[ph, :, :, off : off + L].transpose(0, 2, 1)
        gemm(gyf[:, :, :L], src, gwt[t], accumulate=False)
    gw[...] = gwt.reshape(p.KH, p.KW, p.K, p.Cg).transpose(2, 3, 0, 1)
    return gw, gb


def _backward_weight_pointwise(
    gy: np.ndarray, x: np.ndarray, p: Conv2dProblem
) -> np.ndarray:
    """1x1, stride 1, no padding: ``gw = sum_n gy[n] @ x[n]^T`` (images in order)."""
    dt = p.compute_dtype
    gym = _per_image(gy, p, p.K)
    xm = _per_image(x, p, p.C)
    gw = np.empty((p.groups, p.Kg, p.Cg), dtype=dt)
    tmp = np.empty(gw.shape, dtype=dt) if p.N > 1 else None
    for n in range(p.N):
        gemm(gym[n], xm[n].transpose(0, 2, 1), gw, accumulate=n > 0, tmp=tmp)
    return gw.reshape(p.w_shape)


def _backward_weight_windows(
    gy: np.ndarray, x: np.ndarray, p: Conv2dProblem
) -> np.ndarray:
    """Exact-products path of :func:`conv2d_backward_weight` (NaN/inf in ``x``)."""
    dt = p.compute_dtype
    T = p.KH * p.KW
    gwt = np.empty((T, p.groups, p.Kg, p.Cg), dtype=dt)
    gyt = _gy_channel_major(gy, p)
    xp = _extend(x.transpose(1, 0, 2, 3), _frame(p, stride=(1, 1)), dt)[0]
    xw = np.empty((p.C, p.N, p.OH, p.OW), dtype=dt)
    for t in range(T):
        xw[...] = xp[_window(*divmod(t, p.KW), p)]
        src = xw.reshape(p.groups, p.Cg, -1).transpose(0, 2, 1)
        gemm(gyt, src, gwt[t], accumulate=False)
    gw = np.empty(p.w_shape, dtype=dt)
    gw[...] = gwt.reshape(p.KH, p.KW, p.K, p.Cg).transpose(2, 3, 0, 1)
    return gw


def conv2d_backward_bias(gy: np.ndarray, p: Conv2dProblem) -> np.ndarray:
    """``gb (K,)``: ``gy`` summed over batch and pixels.

    Examples
    --------
    >>> import numpy as np
    >>> from gpuconv._conv_args import normalize_conv2d
    >>> p = normalize_conv2d((2, 1, 3, 3), (2, 1, 2, 2), [np.dtype("float64")])
    >>> conv2d_backward_bias(np.ones((2, 2, 2, 2)), p)
    array([8., 8.])
    """
    return _gy_channel_major(gy, p).reshape(p.K, -1).sum(axis=1)
