"""The CUDA backend's filter op ``correlate2d(in1, k, fp, method)``, on our own kernels.

Every public filter call (``convolve2d``, ``correlate2d``, ``convolve``,
``correlate``) reaches this op as one padded 2-D cross-correlation of a stack of
images ``in1 (B, H, W)`` with one kernel or a stack ``k (Bk, KH, KW)``
(:class:`~gpuconv._filter_args.FilterProblem`). Three algorithms compute it
(:func:`gpuconv._plan_filter.choose_algorithm` picks one):

- ``'tiled'``: ``filter2d_tiled`` of ``cuda/filter2d.cu`` (shared-memory tile with the
  boundary rule applied in the tile loader, register blocks, compile-time 3/5/7/9
  kernels for float32/float64, a runtime-size path for every other shape);
- ``'naive'``: ``filter2d_naive``, one thread per output (kernels whose tile does not
  fit in 48 KiB of shared memory);
- ``'fft'``: cuFFT through ``xp.fft`` (float and complex only; ``method='auto'``
  takes it when the cost model says it is faster and every input is finite, since
  an FFT spreads one NaN or inf over the whole output).

Notes
-----
float32 subnormals are flushed to zero on the GPU (CuPy compiles every kernel with
``-ftz=true``): a result that SciPy gives as ``1e-39`` is ``0`` here. Integer dtypes
wrap around exactly as NumPy/SciPy do (they never take the FFT). Boolean problems
(NumPy's 1-D ``convolve`` of booleans) are computed in uint32 and compared with 0,
which is NumPy's OR of ANDs.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from gpuconv._filter_args import FilterProblem
from gpuconv._padding import add_fill_correction, pad_index
from gpuconv._plan_filter import (
    CTYPES,
    check_extents,
    choose_algorithm,
    fft_grid,
    plan_filter,
)

#: Fill every output allocated here with a poison value (NaN, or 0x5A bytes for
#: integers) instead of leaving it uninitialised, so that an element a kernel forgets
#: to write shows up in tests (they set it with ``monkeypatch``).
POISON_OUTPUTS = False


def poison_value(dtype: Any) -> Any:
    """What poisoned outputs hold: NaN for float/complex, 0x5A5A... for integers."""
    dt = np.dtype(dtype)
    if dt.kind in "fc":
        return dt.type(np.nan)
    return np.frombuffer(b"\x5a" * dt.itemsize, dtype=dt)[0]


def _default_device() -> Any:
    from gpuconv._kernels import CupyDevice

    return CupyDevice()


def correlate2d(
    in1: Any,
    k: Any,
    fp: FilterProblem,
    method: str = "auto",
    *,
    device: Any = None,
    out: Any = None,
    block: tuple[int, int] | None = None,
    vector: bool = True,
) -> Any:
    """The padded 2-D correlation of ``fp`` on the GPU (or an emulated device).

    ``out[b, i, j] = sum_{a, c} ext(in1)[b, i+a-pad_top, j+c-pad_left] * k[bk, a, c]``

    Parameters
    ----------
    in1 : array, shape ``(B, H, W)``, dtype ``fp.dtype``
        Images (any strides: non-contiguous inputs are copied once, never modified).
    k : array, shape ``(Bk, KH, KW)``, dtype ``fp.dtype``
        Kernel(s), already flipped/conjugated; ``Bk`` is 1 or ``B``.
    fp : FilterProblem
        The validated, non-empty problem.
    method : {'auto', 'direct', 'fft', 'naive', 'tiled'}
        ``'direct'`` runs the tiled kernel (naive if its tile does not fit);
        ``'fft'`` is ignored for integer and boolean dtypes (direct instead);
        ``'naive'``/``'tiled'`` force a kernel (tests, benchmarks).
    device : optional
        Where launches run: :class:`gpuconv._kernels.CupyDevice` (default) or the
        emulation harness's ``EmulatedDevice`` (``xp`` is NumPy).
    out : array, optional
        A C-contiguous ``(B, OH, OW)`` array of ``fp.dtype`` to write into (direct
        algorithms; tests pass a poisoned one). Returned.
    block, vector
        Forced thread block and permission for 128-bit accesses (tests only).

    Returns
    -------
    array, shape ``(B, OH, OW)``, dtype ``fp.dtype``
        A new C-contiguous array of the device's array module.

    Examples
    --------
    >>> import numpy as np
    >>> from gpuconv._plan_filter import choose_algorithm
    >>> from gpuconv._filter_args import FilterProblem
    >>> fp = FilterProblem(1, 2048, 2048, 1, 5, 5, 2, 2, 2048, 2048, "symm", 0.0,
    ...                    np.dtype("float32"))
    >>> choose_algorithm(fp, "auto")  # what correlate2d(x, k, fp, 'auto') runs
    'tiled'
    """
    check_extents(fp)  # before any allocation: oversize is a ValueError, not OOM
    if device is None:
        device = _default_device()
    xp = device.xp
    dt = np.dtype(fp.dtype)
    if dt == np.bool_:
        return _correlate_bool(
            in1, k, fp, method, device=device, block=block, vector=vector
        )
    if dt.name not in CTYPES:
        raise TypeError(f"the CUDA filter kernels do not support dtype {dt.name}")
    algorithm = choose_algorithm(fp, method)
    if algorithm == "fft" and method == "auto" and not _all_finite(xp, in1, k, fp):
        algorithm = choose_algorithm(fp, "direct")
    if algorithm == "fft":
        y = correlate2d_fft(in1, k, fp, xp)
        if out is None:
            return y
        out[...] = y
        return out
    in1 = xp.ascontiguousarray(in1)
    k = xp.ascontiguousarray(k)
    if out is None:
        if POISON_OUTPUTS:
            out = xp.full((fp.B, fp.OH, fp.OW), poison_value(dt), dtype=dt)
        else:
            out = xp.empty((fp.B, fp.OH, fp.OW), dtype=dt)
    for launch in plan_filter(fp, in1, k, out, algorithm, block=block, vector=vector):
        device.launch(launch)
    return out


def _correlate_bool(in1, k, fp, method, *, out=None, **kw):
    u32 = np.dtype("uint32")
    fp32 = dataclasses.replace(fp, dtype=u32, fillvalue=np.uint32(bool(fp.fillvalue)))
    direct = "direct" if method in ("auto", "fft") else method
    counts = correlate2d(in1.astype(u32), k.astype(u32), fp32, direct, **kw)
    if out is None:
        return counts != 0
    out[...] = counts != 0
    return out


def _all_finite(xp: Any, in1: Any, k: Any, fp: FilterProblem) -> bool:
    if np.dtype(fp.dtype).kind not in "fc":
        return True
    if fp.boundary == "fill" and not np.all(np.isfinite(np.asarray(fp.fillvalue))):
        return False
    # One read-only reduction and one synchronisation: a NaN or inf anywhere makes
    # the sum NaN or inf; a finite sum proves every value finite. Only when the sum
    # is not finite (a NaN/inf, or finite values overflowing) is the exact check run.
    with np.errstate(all="ignore"):  # NumPy (the emulator) warns on overflow
        if bool(xp.isfinite(in1.sum() + k.sum())):
            return True
    return bool(xp.isfinite(in1).all()) and bool(xp.isfinite(k).all())


def extend(in1: Any, fp: FilterProblem, xp: Any) -> Any:
    """``ext(in1)`` on the rows/columns the output reads: ``(B, OH+KH-1, OW+KW-1)``."""
    dt = np.dtype(fp.dtype)
    hp, wp = fp.OH + fp.KH - 1, fp.OW + fp.KW - 1
    if fp.boundary == "fill":
        x = xp.full(
            (fp.B, hp, wp), np.asarray(fp.fillvalue).astype(dt).reshape(-1)[0], dtype=dt
        )
        # the image's rows/columns that land inside the extended window
        r0, c0 = fp.pad_top, fp.pad_left
        h, w = min(fp.H, hp - r0), min(fp.W, wp - c0)
        x[:, r0 : r0 + h, c0 : c0 + w] = in1[:, :h, :w]
        return x
    mode = fp.pad_mode
    rows = xp.asarray(pad_index(fp.H, fp.pad_top, fp.pad_bottom, mode))
    cols = xp.asarray(pad_index(fp.W, fp.pad_left, fp.pad_right, mode))
    return xp.take(xp.take(in1, rows, axis=1), cols, axis=2)


def correlate2d_fft(in1: Any, k: Any, fp: FilterProblem, xp: Any) -> Any:
    """The FFT algorithm (float and complex dtypes), on any array module with ``fft``.

    Correlation with ``k`` is convolution with ``k`` reversed; with the boundary
    'fill' the transform's own zero extension is the padding (where the output lies
    inside the full correlation), otherwise the image is first extended by the
    boundary rule (:func:`extend`) and the 'valid' part of a circular convolution of
    at least its size is kept. A non-zero fill value never enters the transform: its
    contribution ``fill * (sum(k) - taps inside the image)`` is added exactly
    afterwards (:func:`gpuconv._padding.add_fill_correction`), so the error does not
    grow with ``|fillvalue|``.
    """
    dt = np.dtype(fp.dtype)
    if dt.kind not in "fc":
        raise TypeError(
            f"the FFT algorithm computes float and complex dtypes, not {dt.name}"
        )
    # the FFT only ever sees the zero-extended image; a fill value is added after
    # the transform, exactly (add_fill_correction), so its error does not grow
    # with |fillvalue|
    fp0 = fp
    if fp.boundary == "fill":
        fp0 = dataclasses.replace(fp, fillvalue=np.zeros((), dt)[()])
    sh, sw, oy, ox, pad = fft_grid(fp0)
    x = extend(in1, fp0, xp) if pad else in1
    kr = k[:, ::-1, ::-1]
    axes = (-2, -1)
    if dt.kind == "c":
        y = xp.fft.ifft2(
            xp.fft.fft2(x, s=(sh, sw), axes=axes)
            * xp.fft.fft2(kr, s=(sh, sw), axes=axes),
            s=(sh, sw),
            axes=axes,
        )
    else:
        y = xp.fft.irfft2(
            xp.fft.rfft2(x, s=(sh, sw), axes=axes)
            * xp.fft.rfft2(kr, s=(sh, sw), axes=axes),
            s=(sh, sw),
            axes=axes,
        )
    out = xp.ascontiguousarray(y[:, oy : oy + fp.OH, ox : ox + fp.OW].astype(dt))
    return add_fill_correction(out, k, fp, xp)
