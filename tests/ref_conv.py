"""Naive float64 reference of conv2d and its gradients (an oracle kept in tests/).

Written from the definitions only, independently of ``gpuconv``: padding sizes
are resolved here, the border is built with ``np.pad`` (modes ``'constant'``,
``'reflect'``, ``'edge'``, ``'wrap'``, ``'symmetric'``), and every output pixel and
kernel tap is a plain Python loop; only the sum over the channels of one group is
a NumPy dot product. Products are formed with the padded zeros too, so NaN/inf
placement is NumPy's (``0 * inf = nan``). For tiny shapes only.

Complex data follow PyTorch's convention: ``gx`` is the transposed convolution
with ``conj(w)`` and ``gw`` correlates ``gy`` with ``conj(x)``, so that
``vdot(y, g) == vdot(x, gx) == vdot(w, gw)``.
"""

from __future__ import annotations

import numpy as np

NP_PAD_MODE = {
    "zeros": "constant",
    "reflect": "reflect",
    "replicate": "edge",
    "circular": "wrap",
    "symmetric": "symmetric",
}


def _two(v):
    if isinstance(v, (tuple, list)):
        return (int(v[0]), int(v[-1]))
    return (int(v), int(v))


def resolve_padding(padding, kernel, stride, dilation, size):
    """``(top, bottom, left, right)`` from any accepted ``padding`` argument.

    'same': stride 1 pads ``d*(k-1)`` in total, the extra one at bottom/right
    (PyTorch); stride > 1 gives ``ceil(n/s)`` outputs (TensorFlow), total pad
    ``max((out-1)*s + d*(k-1) + 1 - n, 0)``, extra at bottom/right.
    """
    if padding == "valid":
        return (0, 0, 0, 0)
    if padding == "same":
        pads = []
        for k, s, d, n in zip(kernel, stride, dilation, size, strict=False):
            if s == 1:
                total = d * (k - 1)
            else:
                out = (n + s - 1) // s
                total = max((out - 1) * s + d * (k - 1) + 1 - n, 0)
            pads += [total // 2, total - total // 2]
        return tuple(pads)
    if isinstance(padding, (tuple, list)) and len(padding) == 4:
        return tuple(int(v) for v in padding)
    ph, pw = _two(padding)
    return (ph, ph, pw, pw)


def _geometry(x_shape, w_shape, stride, padding, dilation):
    N, C, H, W = x_shape
    K, Cg, KH, KW = w_shape
    sh, sw = _two(stride)
    dh, dw = _two(dilation)
    t, b, l, r = resolve_padding(padding, (KH, KW), (sh, sw), (dh, dw), (H, W))
    OH = (H + t + b - dh * (KH - 1) - 1) // sh + 1
    OW = (W + l + r - dw * (KW - 1) - 1) // sw + 1
    return (sh, sw), (dh, dw), (t, b, l, r), (OH, OW)


def _work_dtype(*arrays):
    return (
        np.complex128
        if any(np.iscomplexobj(a) for a in arrays if a is not None)
        else np.float64
    )


def source_map(n, before, after, mode):
    """Source index of each padded position (``-1`` for a zero), via ``np.pad``."""
    src = np.arange(n)
    if mode == "zeros":
        return np.pad(src, (before, after), mode="constant", constant_values=-1)
    return np.pad(src, (before, after), mode=NP_PAD_MODE[mode])


def pad_input(x, pads, mode):
    t, b, l, r = pads
    widths = ((0, 0), (0, 0), (t, b), (l, r))
    if mode == "zeros":
        return np.pad(x, widths, mode="constant")
    return np.pad(x, widths, mode=NP_PAD_MODE[mode])


def _batch(x):
    x = np.asarray(x)
    return (x, True) if x.ndim == 4 else (x[None], False)


def conv2d_ref(
    x, w, bias=None, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros"
):
    """``y (N, K, OH, OW)`` (or ``(K, OH, OW)``) in float64/complex128."""
    x, batched = _batch(x)
    dt = _work_dtype(x, w, bias)
    x = x.astype(dt)
    w = np.asarray(w).astype(dt)
    (sh, sw), (dh, dw), pads, (OH, OW) = _geometry(
        x.shape, w.shape, stride, padding, dilation
    )
    N, C = x.shape[:2]
    K, Cg, KH, KW = w.shape
    Kg = K // groups
    xp = pad_input(x, pads, padding_mode)
    y = np.zeros((N, K, OH, OW), dtype=dt)
    for n in range(N):
        for k in range(K):
            c0 = (k // Kg) * Cg
            for i in range(OH):
                for j in range(OW):
                    acc = dt(0)
                    for a in range(KH):
                        for b in range(KW):
                            col = xp[n, c0 : c0 + Cg, i * sh + a * dh, j * sw + b * dw]
                            acc += np.sum(col * w[k, :, a, b])
                    y[n, k, i, j] = acc
    if bias is not None:
        y += np.asarray(bias).astype(dt).reshape(1, K, 1, 1)
    return y if batched else y[0]


def conv2d_grad_input_ref(
    x_shape, w, gy, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros"
):
    """``gx``: every output's gradient times ``conj(w)`` at each tap's padded
    position, then each padded position added onto the pixel it copies."""
    x_shape = tuple(x_shape)
    batched = len(x_shape) == 4
    if not batched:
        x_shape = (1, *x_shape)
        gy = np.asarray(gy)[None]
    dt = _work_dtype(w, gy)
    w = np.conj(np.asarray(w).astype(dt))
    gy = np.asarray(gy).astype(dt)
    (sh, sw), (dh, dw), (t, b, l, r), (OH, OW) = _geometry(
        x_shape, w.shape, stride, padding, dilation
    )
    N, C, H, W = x_shape
    K, Cg, KH, KW = w.shape
    Kg = K // groups
    gxp = np.zeros((N, C, H + t + b, W + l + r), dtype=dt)
    for n in range(N):
        for k in range(K):
            c0 = (k // Kg) * Cg
            for i in range(OH):
                for j in range(OW):
                    for a in range(KH):
                        for bb in range(KW):
                            gxp[n, c0 : c0 + Cg, i * sh + a * dh, j * sw + bb * dw] += (
                                w[k, :, a, bb] * gy[n, k, i, j]
                            )
    src_h = source_map(H, t, b, padding_mode)
    src_w = source_map(W, l, r, padding_mode)
    gx = np.zeros(x_shape, dtype=dt)
    for ph in range(gxp.shape[2]):
        for pw in range(gxp.shape[3]):
            if src_h[ph] >= 0 and src_w[pw] >= 0:
                gx[:, :, src_h[ph], src_w[pw]] += gxp[:, :, ph, pw]
    return gx if batched else gx[0]


def conv2d_grad_weight_ref(
    x, w_shape, gy, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros"
):
    """``gw[k, c, a, b] = sum_{n,i,j} gy[n,k,i,j] * conj(xp[n, c', i*sh + a*dh,
    j*sw + b*dw])``."""
    x, batched = _batch(x)
    gy = np.asarray(gy) if batched else np.asarray(gy)[None]
    dt = _work_dtype(x, gy)
    x = np.conj(x.astype(dt))
    gy = gy.astype(dt)
    (sh, sw), (dh, dw), pads, (OH, OW) = _geometry(
        x.shape, w_shape, stride, padding, dilation
    )
    N = x.shape[0]
    K, Cg, KH, KW = w_shape
    Kg = K // groups
    xp = pad_input(x, pads, padding_mode)
    gw = np.zeros(tuple(w_shape), dtype=dt)
    for k in range(K):
        c0 = (k // Kg) * Cg
        for a in range(KH):
            for b in range(KW):
                acc = np.zeros(Cg, dtype=dt)
                for n in range(N):
                    for i in range(OH):
                        for j in range(OW):
                            acc += (
                                xp[n, c0 : c0 + Cg, i * sh + a * dh, j * sw + b * dw]
                                * gy[n, k, i, j]
                            )
                gw[k, :, a, b] = acc
    return gw


def conv2d_grad_bias_ref(gy, batched=True):
    """``gb[k] = sum_{n,i,j} gy[n, k, i, j]``."""
    gy = np.asarray(gy)
    gy = gy if batched else gy[None]
    return gy.astype(_work_dtype(gy)).sum(axis=(0, 2, 3))


# ---------------------------------------------------------------------------------
# Winograd F(2x2, 3x3) in float64: the algorithm of cuda/conv2d_winograd.cu, and with
# absolute values its error scale (tests/_tol.py, assert_winograd_within)

_WINO_BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], float)
_WINO_G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
_WINO_AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], float)
#: F(4x4, 3x3) (algorithm='winograd4'): Lavin and Gray's points 0, +-1, +-2, infinity
_WINO4_BT = np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                      [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]],
                     float)
_WINO4_G = np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                     [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]])
_WINO4_AT = np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0],
                      [0, 1, -1, 8, -8, 1]], float)


def _placed(src, pt, pl, rows, cols):
    """``src (N, C, H, W)`` at offset ``(pt, pl)`` in zeros ``(N, C, rows, cols)``:
    zero padding, or for a negative offset the first rows/columns cut off."""
    n, c, h, wd = src.shape
    d = np.zeros((n, c, rows, cols))
    r0, r1 = max(0, -pt), min(h, rows - pt)
    c0, c1 = max(0, -pl), min(wd, cols - pl)
    if r1 > r0 and c1 > c0:
        d[:, :, r0 + pt:r1 + pt, c0 + pl:c1 + pl] = src[:, :, r0:r1, c0:c1]
    return d


def _wino_matrices(m, absolute):
    mats = (_WINO_BT, _WINO_G, _WINO_AT) if m == 2 else (_WINO4_BT, _WINO4_G, _WINO4_AT)
    return tuple(np.abs(a) if absolute else a for a in mats)


def winograd_f23(src, w, pt, pl, hout, wout, groups=1, absolute=False, m=2):
    """The 3x3 correlation of ``src (N, C, H, W)`` (zero padded by ``pt``, ``pl`` on
    top/left; ``hout x wout`` outputs) with ``w (K, C/groups, 3, 3)`` as
    ``A^T [(G g G^T) (.) (B^T d B)] A`` per m x m tile (F(2x2, 3x3), or F(4x4, 3x3)
    for ``m=4``), in float64 (a negative pad cuts rows/columns off: the input
    gradient's ``2 - pad``). ``absolute``: every matrix and operand by its absolute
    value, the scale of the rounding error."""
    bt, g, at = _wino_matrices(m, absolute)
    t_ = m + 2  # the patch side
    src = np.asarray(src, np.float64)
    w = np.asarray(w, np.float64)
    if absolute:
        src, w = np.abs(src), np.abs(w)
    n, c, h, wd = src.shape
    k = w.shape[0]
    cg, kg = c // groups, k // groups
    th, tw = -(-hout // m), -(-wout // m)
    d = _placed(src, pt, pl, m * th + 2, m * tw + 2)
    patches = np.lib.stride_tricks.sliding_window_view(d, (t_, t_), axis=(2, 3))
    v = np.einsum("ij,nctsjk,lk->nctsil", bt, patches[:, :, ::m, ::m], bt)
    u = np.einsum("ij,kcjl,ml->kcim", g, w, g)
    prod = np.concatenate([
        np.einsum("kcil,nctsil->nktsil", u[i * kg:(i + 1) * kg],
                  v[:, i * cg:(i + 1) * cg]) for i in range(groups)], axis=1)
    y = np.einsum("ij,nktsjl,ml->nktsim", at, prod, at)
    y = y.transpose(0, 1, 2, 4, 3, 5).reshape(n, k, m * th, m * tw)
    return y[:, :, :hout, :wout]


def winograd_f32_wgrad(x, gy, pt, pl, groups=1, absolute=False, m=2):
    """The 3x3 weight gradient ``gw (K, C/groups, 3, 3)`` of ``x (N, C, H, W)`` and
    ``gy (N, K, OH, OW)`` (zero padding ``pt``, ``pl`` on top/left) as
    F(3x3, m x m): ``G^T [sum over tiles (A t A^T) (.) (B^T d B)] G``, in float64;
    ``absolute`` and ``m`` as for :func:`winograd_f23`."""
    bt, g, at = _wino_matrices(m, absolute)
    t_ = m + 2
    x = np.asarray(x, np.float64)
    gy = np.asarray(gy, np.float64)
    if absolute:
        x, gy = np.abs(x), np.abs(gy)
    n, c, h, wd = x.shape
    k, oh, ow = gy.shape[1:]
    cg, kg = c // groups, k // groups
    th, tw = -(-oh // m), -(-ow // m)
    d = _placed(x, pt, pl, m * th + 2, m * tw + 2)
    patches = np.lib.stride_tricks.sliding_window_view(d, (t_, t_), axis=(2, 3))
    v = np.einsum("ij,nctsjk,lk->nctsil", bt, patches[:, :, ::m, ::m], bt)
    t = np.zeros((n, k, m * th, m * tw))
    t[:, :, :oh, :ow] = gy
    t = t.reshape(n, k, th, m, tw, m).transpose(0, 1, 2, 4, 3, 5)
    u = np.einsum("ji,nktsjl,lm->nktsim", at, t, at)  # A t A^T with A = at.T
    prod = np.concatenate([
        np.einsum("nktsil,nctsil->kcil", u[:, i * kg:(i + 1) * kg],
                  v[:, i * cg:(i + 1) * cg]) for i in range(groups)], axis=0)
    return np.einsum("ji,kcjl,lm->kcim", g, prod, g)


def winograd_transposed_filter(w, groups=1):
    """The input gradient's filter: ``w (K, C/groups, 3, 3)`` rotated by 180 degrees
    and transposed per group, ``(C, K/groups, 3, 3)``."""
    k, cg, kh, kw = w.shape
    kg = k // groups
    t = w.reshape(groups, kg, cg, kh, kw).transpose(0, 2, 1, 3, 4)[..., ::-1, ::-1]
    return np.ascontiguousarray(t.reshape(groups * cg, kg, kh, kw))
