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
- ``'filter1d'``: ``filter1d_tiled`` of ``cuda/filter1d.cu`` for 1-D problems
  (``B x 1 x W`` signals, one ``1 x KW`` kernel row;
  :func:`gpuconv._plan_filter.choose_filter1d` decides it against the FFT);
- ``'fft1d'``: the segmented (overlap-save) FFT of 1-D problems
  (:func:`correlate1d_fft`);
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

from gpuconv import _plan_filter
from gpuconv._filter_args import FilterProblem
from gpuconv._launch import device_address
from gpuconv._padding import fill_value, pad_index
from gpuconv._plan_cache import LRU, LaunchPlan
from gpuconv._plan_filter import (
    CTYPES,
    check_extents,
    choose_algorithm,
    choose_filter1d,
    direct_seconds,
    fft1d_segment,
    fft_grid,
    fft_seconds,
    kernel_view_ok,
    plan_filter,
    plan_filter1d,
    separable_candidate,
    separable_problems,
    separable_seconds,
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
    from gpuconv._kernels import cupy_device

    return cupy_device()


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
    conj_kernel: bool = False,
    pipelined: bool = False,
) -> Any:
    """The padded 2-D correlation of ``fp`` on the GPU (or an emulated device).

    ``out[b, i, j] = sum_{a, c} ext(in1)[b, i+a-pad_top, j+c-pad_left] * k[bk, a, c]``
    (``conj(k[bk, a, c])`` with ``conj_kernel``)

    Parameters
    ----------
    in1 : array, shape ``(B, H, W)``, dtype ``fp.dtype``
        Images (any strides: non-contiguous inputs are copied once, never modified).
    k : array, shape ``(Bk, KH, KW)``, dtype ``fp.dtype``
        Kernel(s), already flipped; ``Bk`` is 1 or ``B``. Any strides: the direct
        kernels read it as a strided view (a flipped ``k[:, ::-1, ::-1]`` is not
        copied; :func:`gpuconv._plan_filter.kernel_view_ok`), the FFT and
        separable paths take what they need from it. Never modified.
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
    pipelined : bool
        With ``method='tiled'``: the persistent, double-buffered
        ``filter2d_tiled_pipelined`` (:data:`gpuconv._plan_filter.PIPELINED`
        cases; tests and benchmarks, never chosen otherwise).
    conj_kernel : bool
        Correlate with the conjugated kernel (complex correlation): the direct
        kernels conjugate the taps as they read them (kernel flag bit 3), the
        other paths conjugate a copy. Ignored for real dtypes.

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
    if device is None:
        device = _default_device()
    conj = conj_kernel and np.dtype(fp.dtype).kind == "c"
    if pipelined and method != "tiled":
        raise ValueError(f"pipelined=True needs method='tiled', not {method!r}")
    key = (fp, _fill_bits(fp), method, block, vector, conj, pipelined, device,
           _plan_key(device))  # fmt: skip
    entry = _PLANS.get(key)
    if entry is None:
        check_extents(fp)  # before any allocation: oversize is a ValueError, not OOM
        dt = np.dtype(fp.dtype)
        if dt != np.bool_ and dt.name not in CTYPES:
            raise TypeError(f"the CUDA filter kernels do not support dtype {dt.name}")
        if dt == np.bool_:
            entry = _Entry("bool", "bool", dt)
        else:
            # 1-D problems (B x 1 x W, a 1 x KW kernel) take filter1d.cu
            algorithm = choose_filter1d(fp, method) or choose_algorithm(fp, method)
            direct = algorithm
            if algorithm in ("fft", "fft1d") and method == "auto":
                direct = choose_filter1d(fp, "direct") or choose_algorithm(fp, "direct")
            entry = _Entry(algorithm, direct, dt)
        _PLANS.put(key, entry)
    xp = device.xp
    algorithm = entry.algorithm
    if algorithm == "bool":
        return _correlate_bool(
            in1, k, fp, method, device=device, out=out, block=block, vector=vector
        )
    if entry.separable is None:  # the cost model's side, once per problem
        entry.separable = separable_preferred(fp, method, entry.algorithm)
    if conj and (entry.separable or algorithm in ("fft", "fft1d")):
        k = k.conj()  # these paths read the values themselves (they copy anyway)
        conj = False
    uv = separable_factors(in1, k, fp, xp) if entry.separable else None
    if uv is not None:
        return correlate2d_separable(
            in1, uv, fp, device=device, out=out, block=block, vector=vector
        )
    if algorithm in ("fft", "fft1d") and method == "auto":
        # values decide: an FFT would spread a NaN/inf over the whole output. The
        # transform's own DC terms (the sums of the images and of the kernel) say
        # whether every value is finite, read once the whole FFT is queued: one
        # sync at the end instead of a reduction and a sync before it (~0.5 ms of
        # exposed host time per call on the H200 at 4096²-8192², 31x31)
        if _fill_finite(fp):
            fft = correlate1d_fft if algorithm == "fft1d" else correlate2d_fft
            with np.errstate(all="ignore"):  # NumPy (the emulator) warns on NaN
                y, finite = fft(in1, k, fp, device, check_finite=True)
            if bool(finite):
                if out is None:
                    return y
                out[...] = y
                return out
        algorithm = entry.direct
    if algorithm in ("fft", "fft1d"):  # (forced: method='fft')
        fft = correlate1d_fft if algorithm == "fft1d" else correlate2d_fft
        y = fft(in1, k, fp, device)
        if out is None:
            return y
        out[...] = y
        return out
    if not in1.flags.c_contiguous:
        in1 = xp.ascontiguousarray(in1)
    # the kernel is read as a strided view (no copy of a flipped kernel): its
    # strides are launch arguments and its address must be element-aligned, so both
    # are part of the plan's key; a view the kernels cannot read (strides or
    # address off whole elements) is copied, which the plan remembers
    kview = (k.strides, _aligned(k, entry.kalign))
    if out is None:
        if POISON_OUTPUTS:
            dt = np.dtype(fp.dtype)
            out = xp.full((fp.B, fp.OH, fp.OW), poison_value(dt), dtype=dt)
        else:
            out = xp.empty((fp.B, fp.OH, fp.OW), dtype=fp.dtype)
    # the planner reads the buffers' 16-byte alignment (128-bit accesses: flags of
    # plan_filter): one plan per alignment of in1 and out
    align = (device_address(in1) & 15, device_address(out) & 15, algorithm, kview)
    cached = entry.plans.get(align)
    plan, copy_k = (None, not kernel_view_ok(k)) if cached is None else cached
    if copy_k:
        k = k.copy()  # a fresh, aligned, C-contiguous buffer
    if plan is not None and not (
        in1.shape == (fp.B, fp.H, fp.W) and k.shape == (fp.Bk, fp.KH, fp.KW)
        and out.shape == (fp.B, fp.OH, fp.OW)
        and in1.dtype == k.dtype == out.dtype == fp.dtype
        and out.flags.c_contiguous
    ):
        plan = None  # buffers unlike the plan's: plan_filter says what is wrong
    if plan is None:
        if algorithm == "filter1d":  # its tile is fixed: `block` does not apply
            launches = plan_filter1d(fp, in1, k, out, vector=vector, conj=conj)
        else:
            sms, smem = _sm_facts(device) if pipelined else (None, None)
            launches = plan_filter(
                fp, in1, k, out, algorithm, block=block, vector=vector, conj=conj,
                pipelined=pipelined, sm_count=sms, smem_per_sm=smem,
            )
        plan = LaunchPlan(device, launches, 3, buffers=(in1, k, out))
        if plan.reusable and len(entry.plans) < _ALIGNMENTS_PER_PROBLEM:
            entry.plans[align] = (plan, copy_k)
    plan.run((in1, k, out))
    return out


def _sm_facts(device: Any) -> tuple[int | None, int | None]:
    """SMs and shared memory per SM of a CUDA device (the pipelined grid), or
    ``None`` (an emulated device; the planner's defaults then)."""
    try:
        attrs = device.xp.cuda.Device().attributes
        return (int(attrs["MultiProcessorCount"]),
                int(attrs["MaxSharedMemoryPerMultiprocessor"]))  # fmt: skip
    except Exception:
        return None, None


#: Plans per problem and device (one per buffer alignment and kernel view).
_ALIGNMENTS_PER_PROBLEM = 64

#: The algorithm choice and launch plans of each problem on each device.
_PLANS = LRU("filter2d plans")


class _Entry:
    __slots__ = ("algorithm", "direct", "kalign", "plans", "separable")

    def __init__(self, algorithm: str, direct: str, dtype: Any) -> None:
        self.algorithm = algorithm
        self.direct = direct
        dt = np.dtype(dtype)
        # the alignment the kernels need of an element (gc_complex: its part's)
        self.kalign = dt.itemsize // 2 if dt.kind == "c" else dt.itemsize
        # whether the model prefers two 1-D passes (None: not asked yet); the
        # kernel's rank and the data's finiteness are checked on every call
        self.separable: bool | None = None
        # (launch plan, whether the kernel view is copied first) per alignment of
        # the buffers and strides of the kernel view
        self.plans: dict[Any, tuple[LaunchPlan, bool]] = {}


def _plan_key(device: Any) -> Any:
    pk = getattr(device, "plan_key", None)
    return None if pk is None else pk()


def _fill_bits(fp: FilterProblem) -> bytes:
    """The fill value's bytes: ``-0.0`` and ``0.0`` (equal, same hash) and NaN
    payloads are different plans."""
    v = fp.fillvalue
    return v.tobytes() if isinstance(v, np.generic) else np.asarray(v).tobytes()


def _aligned(a: Any, align: int) -> bool:
    """Whether ``a``'s first element lies on an ``align``-byte boundary: CuPy
    arrays by their address, NumPy buffers (the emulated devices) by NumPy's own
    ``aligned`` flag (the dtype's alignment, which is ``align`` for every dtype
    the kernels take), the way chosen once per type (both cost ~0.1 µs)."""
    get = _ALIGNED_OF.get(type(a))
    if get is None:
        ptr = getattr(a.data, "ptr", None)
        get = _ALIGNED_OF[type(a)] = (
            _cupy_aligned if isinstance(ptr, int) else _numpy_aligned
        )
    return get(a, align)


def _cupy_aligned(a: Any, align: int) -> bool:
    return a.data.ptr % align == 0


def _numpy_aligned(a: Any, align: int) -> bool:
    return a.flags.aligned


_ALIGNED_OF: dict[type, Any] = {}






def separable_preferred(fp: FilterProblem, method: str, algorithm: str) -> bool:
    """Whether ``fp`` would run as two 1-D passes if its kernel has rank 1: the
    problem's side of :func:`separable_factors`, which depends on no values (kept
    in the plan cache).

    ``'auto'`` and ``'direct'`` take the passes where
    :func:`gpuconv._plan_filter.separable_seconds` beats the chosen algorithm's
    model; ``'separable'`` forces them (tests, benchmarks).
    """
    if method not in ("auto", "direct", "separable") or not separable_candidate(fp):
        return False
    if method == "separable":
        return True
    if fp.KH * fp.KW < _plan_filter.SEPARABLE_AUTO_MIN_TAPS:
        return False  # measured: the rank test costs more than the passes save
    other = fft_seconds(fp) if algorithm == "fft" else direct_seconds(fp, algorithm)
    return separable_seconds(fp) < other


def separable_factors(
    in1: Any, k: Any, fp: FilterProblem, xp: Any
) -> tuple[np.ndarray, np.ndarray] | None:
    """``(u, v)`` when ``fp``'s values allow two 1-D passes, else ``None``; called
    only where :func:`separable_preferred` holds.

    Detected exactly as the NumPy backend does: one kernel, ``KH + KW + 2 <
    KH * KW``, :func:`gpuconv._cpu_filter.rank1_factors` of the kernel (exact for
    boxes and binomials, a few ulp for Gaussians) and finite data (a NaN or inf
    would spread along the 1-D passes differently from the 2-D sum). The kernel
    (``KH*KW`` values) is copied to the host for the rank test, only when the cost
    model already prefers the two passes.
    """
    from gpuconv._cpu_filter import rank1_factors

    kh = k.get() if hasattr(k, "get") else np.asarray(k)
    uv = rank1_factors(np.ascontiguousarray(kh[0]))
    if uv is None or not _all_finite(xp, in1, k, fp):
        return None
    return uv


def correlate2d_separable(
    in1: Any,
    uv: tuple[np.ndarray, np.ndarray],
    fp: FilterProblem,
    *,
    device: Any,
    out: Any = None,
    block: tuple[int, int] | None = None,
    vector: bool = True,
) -> Any:
    """``fp`` with the rank-1 kernel ``outer(u, v)`` as two direct passes
    (:func:`gpuconv._plan_filter.separable_problems`): ``KH x 1`` then ``1 x KW``."""
    xp = device.xp
    u, v = uv
    first, second = separable_problems(fp)
    dt = np.dtype(fp.dtype)
    u3 = xp.asarray(np.ascontiguousarray(u, dtype=dt).reshape(1, fp.KH, 1))
    v3 = xp.asarray(np.ascontiguousarray(v, dtype=dt).reshape(1, 1, fp.KW))
    mid = correlate2d(in1, u3, first, "direct", device=device, block=block,
                      vector=vector)  # fmt: skip
    return correlate2d(mid, v3, second, "direct", device=device, out=out,
                       block=block, vector=vector)  # fmt: skip


def _correlate_bool(in1, k, fp, method, *, out=None, **kw):
    u32 = np.dtype("uint32")
    fp32 = dataclasses.replace(fp, dtype=u32, fillvalue=np.uint32(bool(fp.fillvalue)))
    direct = "direct" if method in ("auto", "fft") else method
    counts = correlate2d(in1.astype(u32), k.astype(u32), fp32, direct, **kw)
    if out is None:
        return counts != 0
    out[...] = counts != 0
    return out


def _fill_finite(fp: FilterProblem) -> bool:
    """False for the boundary 'fill' with a NaN or inf fill value (an FFT would
    spread it)."""
    if fp.boundary != "fill" or np.dtype(fp.dtype).kind not in "fc":
        return True
    return bool(np.all(np.isfinite(np.asarray(fp.fillvalue))))


def _dc_finite(xp: Any, dc: Any, k: Any) -> Any:
    """A device boolean: the spectra's DC terms ``dc`` (the images' sums) and the
    kernel's sum are finite (no synchronisation)."""
    with np.errstate(all="ignore"):  # NumPy (the emulator) warns on overflow
        return xp.isfinite(dc).all() & xp.isfinite(k.sum())


def _all_finite(xp: Any, in1: Any, k: Any, fp: FilterProblem) -> bool:
    if np.dtype(fp.dtype).kind not in "fc":
        return True
    if not _fill_finite(fp):
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


def kernel_dft_cheaper(kh: int, kw: int, sh: int, sw: int, real: bool) -> bool:
    """Whether the FFT path takes the kernel's spectrum from its two DFT factors
    (:func:`kernel_spectrum_factors`, multiplied in by ``fft_spectrum_product``
    without ever being written) rather than from a full-size transform of the
    zero-padded kernel: its rank ``R = min(KH, KW)`` at most
    :data:`gpuconv._plan_filter.FS_MAX_RANK` (``R`` complex multiply-adds per
    spectrum element in the product) and DFT matrices (``sh*KH + KW*nv`` entries)
    of at most a quarter of the spectrum, which also holds the factors' GEMM to at
    most ``R/4`` multiply-adds per spectrum element. 2-D images with a kernel side
    up to 32 taps qualify; long 1-D signals never do (their ``F_w`` would be ``KW``
    times the spectrum). Never for a spectrum beyond the product's int32 limits
    (rows up to ``INT32_MAX - FS_TU``, columns up to ``INT32_MAX - FS_TV``): the
    choice never picks a product that would refuse to plan.

    >>> kernel_dft_cheaper(15, 15, 4116, 4116, True)
    True
    >>> kernel_dft_cheaper(1, 31, 1, 10**6, True)
    False
    """
    nv = sw // 2 + 1 if real else sw
    pf = _plan_filter
    if sh > pf.INT32_MAX - pf.FS_TU or nv > pf.INT32_MAX - pf.FS_TV:
        return False
    if sh * kh + kw * nv > sh * nv / 4:
        return False
    return 1 <= min(kh, kw) <= pf.FS_MAX_RANK


#: DFT matrices of :func:`kernel_spectrum` per device and size (a few MB at most
#: each): built once, not per call (each build was ~7 array operations).
_DFT = LRU("filter DFT matrices", maxsize=16)


def dft_matrix(xp: Any, n: int, rows: int, cols: int, dtype: Any) -> Any:
    """``exp(-2 pi i (r c mod n) / n)`` for ``r < rows``, ``c < cols`` as ``dtype``
    on ``xp``'s current device: the angles reduced modulo ``n`` in integers and
    evaluated in float64. Cached per device, size and dtype (treat as read-only).

    >>> import numpy as np
    >>> f = dft_matrix(np, 4, 4, 2, np.complex128)
    >>> bool(np.allclose(f, np.fft.fft(np.eye(4)[:, :2], axis=0)))
    True
    """
    home = int(xp.cuda.Device().id) if hasattr(xp, "cuda") else None
    key = (xp.__name__, home, n, rows, cols, np.dtype(dtype))
    f = _DFT.get(key)
    if f is None:
        i = xp.arange(rows, dtype=np.int64)[:, None]
        j = xp.arange(cols, dtype=np.int64)[None, :]
        f = xp.exp((-2j * np.pi / n) * ((i * j) % n)).astype(dtype)
        _DFT.put(key, f)
    return f


def kernel_spectrum_factors(
    kr: Any, sh: int, sw: int, real: bool, xp: Any
) -> tuple[Any, Any]:
    """The two factors ``(a, g)`` of the spectrum of a small kernel stack
    ``kr (Bk, KH, KW)``: ``a @ g == fft2(kr, s=(sh, sw))`` (``rfft2`` when
    ``real``), each factor C-contiguous of rank ``R = min(KH, KW)`` (the FFT path's
    ``1/n`` is not in them: ``fft_spectrum_product`` applies it to the image's
    spectrum):

    - ``KH <= KW``: ``a = F_h[None] (1, sh, KH)``, ``g = kr @ F_w (Bk, KH, nv)``;
    - otherwise: ``a = F_h @ kr (Bk, sh, KW)``, ``g = F_w[None] (1, KW, nv)``;

    with the DFT matrices ``F_h (sh, KH)`` and ``F_w (KW, nv)``
    (:func:`dft_matrix`, cached; ``nv = sw // 2 + 1`` when ``real``): one small GEMM
    per call. The twiddle angles are reduced modulo the size in integers and
    evaluated in float64, so every entry is as accurate as the FFT's.

    >>> import numpy as np
    >>> kr = np.arange(6.0).reshape(1, 2, 3)
    >>> a, g = kernel_spectrum_factors(kr, 5, 8, True, np)
    >>> a.shape, g.shape
    ((1, 5, 2), (1, 2, 5))
    >>> bool(np.allclose(a @ g, np.fft.rfft2(kr, s=(5, 8))))
    True
    """
    _, kh, kw = kr.shape
    single = np.dtype(kr.dtype) in (np.float32, np.complex64)
    cdt = np.dtype(np.complex64 if single else np.complex128)
    nv = sw // 2 + 1 if real else sw
    fh = dft_matrix(xp, sh, sh, kh, cdt)  # (sh, KH)
    fw = dft_matrix(xp, sw, kw, nv, cdt)  # (KW, nv)
    kc = kr.astype(cdt)  # (one small array operation)
    if kh <= kw:
        return fh[None], kc @ fw  # (1, sh, KH), (Bk, KH, nv)
    return fh @ kc, fw[None]  # (Bk, sh, KW), (1, KW, nv)


def kernel_spectrum(kr: Any, sh: int, sw: int, real: bool, xp: Any) -> Any:
    """``fft2(kr, s=(sh, sw))`` (``rfft2`` when ``real``) of a small kernel stack
    ``kr (Bk, KH, KW)``, written out: the product of
    :func:`kernel_spectrum_factors` (the FFT path never writes it; this is the
    reference its product kernel is tested against).

    >>> import numpy as np
    >>> kr = np.arange(6.0).reshape(1, 2, 3)
    >>> got = kernel_spectrum(kr, 5, 8, True, np)
    >>> bool(np.allclose(got, np.fft.rfft2(kr, s=(5, 8))))
    True
    """
    a, g = kernel_spectrum_factors(kr, sh, sw, real, xp)
    return a @ g


#: The spectrum products' launch plans per shapes, dtype and device
#: (``fft_spectrum_product``).
_PRODUCTS = LRU("FFT spectrum product plans", maxsize=64)


def spectrum_product(
    device: Any, spec: Any, a: Any, g: Any, scale: float = 1.0
) -> None:
    """``spec = (spec * scale) * (a @ g)`` in place by ``fft_spectrum_product``
    (:func:`gpuconv._plan_filter.plan_fft_spectrum_product`: the product ``a @ g``
    summed per element, never written), the launch planned once per shapes,
    dtypes, layouts, ``scale`` (a launch argument) and device (everything the
    planner reads: a call it would refuse is refused on a cache hit too); a plan
    whose buffer slots are ambiguous (one array passed as two of them) is not
    kept."""
    key = (spec.shape, a.shape, g.shape, spec.dtype, a.dtype, g.dtype,
           spec.flags.c_contiguous, a.flags.c_contiguous, g.flags.c_contiguous,
           float(scale), device, _plan_key(device))  # fmt: skip
    plan = _PRODUCTS.get(key)
    if plan is None:
        launches = _plan_filter.plan_fft_spectrum_product(spec, a, g, scale)
        plan = LaunchPlan(device, launches, 3, buffers=(spec, a, g))
        if plan.reusable:
            _PRODUCTS.put(key, plan)
    plan.run((spec, a, g))


def correlate2d_fft(
    in1: Any, k: Any, fp: FilterProblem, device: Any, check_finite: bool = False
) -> Any:
    """The FFT algorithm (float and complex dtypes) on ``device`` (its ``xp`` has
    ``fft``).

    Correlation with ``k`` is convolution with ``k`` reversed; with the boundary
    'fill' the transform's own zero extension is the padding (where the output lies
    inside the full correlation), otherwise the image is extended by the boundary
    rule and the 'valid' part of a circular convolution of at least its size is
    kept. A non-zero fill value never enters the transform: its contribution
    ``fill * (sum(k) - taps inside the image)`` is added exactly afterwards
    (:func:`gpuconv._padding.add_fill_correction`), so the error does not grow with
    ``|fillvalue|``.

    The device work, one pass each: ``fft_gather`` (``cuda/fft_gather.cu``) writes
    the transform's zero-padded input (the boundary rule applied on the way); one
    batched forward transform of the stack at 2,3,5,7-smooth sizes (cuFFT's plan
    cache keeps the plans); the product with the kernel's spectrum in place: for
    a kernel side up to 32 taps (:func:`kernel_dft_cheaper`) by
    ``fft_spectrum_product`` (``cuda/fft_spectrum_product.cu``), which sums the
    spectrum per element from its two small DFT factors
    (:func:`kernel_spectrum_factors`) and never writes it, applying the inverse's
    ``1/n`` to the image's spectrum on the way, otherwise by a full-size transform
    of the kernel with the ``1/n`` folded into the small kernel; one batched
    inverse without a scaling pass and
    free to overwrite the product (:func:`_transforms`: no copy of it); ``fft_crop``
    (``cuda/fft_crop.cu``, :func:`_crop`) copies the output window out, adding a
    non-zero fill value's correction on the way (bit for bit
    :func:`~gpuconv._padding.add_fill_correction`).

    With ``check_finite`` returns ``(out, finite)``: ``finite`` a device boolean,
    true when the DC terms of the images' and the kernel's spectra (their sums) are
    finite, i.e. every value is finite (a NaN or inf makes its sum NaN or inf; a
    finite sum that overflows says "not finite" too, and the caller then runs a
    direct kernel, which is right either way). Nothing is synchronised here.
    """
    dt = np.dtype(fp.dtype)
    if dt.kind not in "fc":
        raise TypeError(
            f"the FFT algorithm computes float and complex dtypes, not {dt.name}"
        )
    xp = device.xp
    # the FFT only ever sees the zero-extended image; a fill value is added after
    # the transform, exactly (add_fill_correction), so its error does not grow
    # with |fillvalue|
    fp0 = fp
    if fp.boundary == "fill":
        fp0 = dataclasses.replace(fp, fillvalue=np.zeros((), dt)[()])
    sh, sw, oy, ox, pad = fft_grid(fp0)
    x = xp.empty((fp.B, sh, sw), dtype=dt)
    _gather(device, fp0, "pad2d", xp.ascontiguousarray(in1), x, pad)
    real = dt.kind != "c"
    fwd, inv = _transforms(xp, real)
    axes = (-2, -1)
    spec = fwd(x, axes=axes)
    del x
    finite = _dc_finite(xp, spec[:, 0, 0], k) if check_finite else None
    scale = 1.0 / (sh * sw)  # the inverse's 1/n
    kr = k[:, ::-1, ::-1]
    if kernel_dft_cheaper(fp.KH, fp.KW, sh, sw, real):
        # the 1/n on the image's spectrum inside the product (the kernel's spectrum
        # unscaled: a tiny float32 kernel times 1/n would underflow)
        a, g = kernel_spectrum_factors(kr, sh, sw, real, xp)
        spectrum_product(device, spec, a, g, scale)
    else:  # (the 1/n on the small kernel: one small operation)
        spec *= fwd(kr * dt.type(scale), s=(sh, sw), axes=axes)
    y = inv(spec, s=(sh, sw), axes=axes)
    del spec
    out = _crop(device, fp, y, k, (oy, ox))
    return (out, finite) if check_finite else out


#: The gathers' launch plans per problem, kind and device (``fft_gather``).
_GATHERS = LRU("FFT gather plans", maxsize=64)


def _gather(device: Any, fp: FilterProblem, kind: str, src: Any, dst: Any,
            pad: bool = False) -> None:
    """Run ``fft_gather`` of ``kind`` (``'pad2d'``: :func:`plan_fft_pad2d`,
    ``'segments'``: :func:`plan_fft_segments`) from ``src`` into ``dst``, the
    launch planned once per problem and device."""
    key = (fp, kind, pad, src.shape, dst.shape, device, _plan_key(device))
    plan = _GATHERS.get(key)
    if plan is None:  # (src and dst are distinct arrays: the plan is reusable)
        if kind == "pad2d":
            launches = _plan_filter.plan_fft_pad2d(fp, src, dst, pad)
        else:
            launches = _plan_filter.plan_fft_segments(fp, src, dst)
        plan = LaunchPlan(device, launches, 2, buffers=(src, dst))
        _GATHERS.put(key, plan)
    plan.run((src, dst))


#: The crops' launch plans per problem and device (``fft_crop``), with the wide
#: fill value (:func:`gpuconv._padding.fill_value`; ``None``: a copy).
_CROPS = LRU("FFT crop plans", maxsize=64)


def _crop(
    device: Any, fp: FilterProblem, y: Any, k: Any, origin: tuple[int, int]
) -> Any:
    """``out (B, OH, OW)``: the window of the inverse ``y (B, sh, sw)`` at
    ``origin`` copied out by one ``fft_crop`` launch, with the fill correction of a
    non-zero fill value (:func:`gpuconv._padding.add_fill_correction`, bit for bit)
    added on the way from the kernels' summed-area tables
    (:func:`gpuconv._padding.fill_tables`); the launch planned once per problem and
    device."""
    xp = device.xp
    dt = np.dtype(fp.dtype)
    if y.dtype != dt or not y.flags.c_contiguous:
        # (CuPy's and NumPy 2's transforms give dt, C-contiguous; NumPy 1's give
        # float64/complex128 on the emulator)
        y = xp.ascontiguousarray(y.astype(dt, copy=False))
    # (the fill value is a launch argument: its bytes are part of the key)
    key = (fp, _fill_bits(fp), y.shape, origin, k.shape[0], device, _plan_key(device))
    hit = _CROPS.get(key)
    fill = fill_value(fp) if hit is None else hit[1]
    tables = None if fill is None else device_fill_tables(device, k, dt)
    shape = (fp.B, fp.OH, fp.OW)
    if POISON_OUTPUTS:  # (the tests: every element must be written)
        out = xp.full(shape, poison_value(dt), dtype=dt)
    else:
        out = xp.empty(shape, dtype=dt)
    bufs = (y, out) + ((None,) * 4 if tables is None else tables)
    if hit is None:  # (y, out and the tables are distinct arrays: reusable)
        launches = _plan_filter.plan_fft_crop_fp(fp, y, out, origin, tables, fill)
        hit = (LaunchPlan(device, launches, 6, buffers=bufs), fill)
        _CROPS.put(key, hit)
    hit[0].run(bufs)
    return out


#: The fill tables' launch plans per kernel shape, dtype and device
#: (``fft_fill_tables``).
_TABLES = LRU("FFT fill-table plans", maxsize=64)


def device_fill_tables(device: Any, k: Any, dtype: Any) -> tuple[Any, Any, Any, Any]:
    """:func:`gpuconv._padding.fill_tables` of ``k (Bk, KH, KW)`` (as ``dtype``) on
    ``device`` by one ``fft_fill_tables`` launch, bit for bit the NumPy tables (the
    same sequential sums; CuPy's own ``sum``/``cumsum`` would round differently),
    the launch planned once per shape, dtype and device."""
    xp = device.xp
    dt = np.dtype(dtype)
    kc = xp.ascontiguousarray(k.astype(dt, copy=False))
    Bk, KH, KW = kc.shape
    wide = np.dtype(np.complex128 if dt.kind == "c" else np.float64)
    tables = (xp.empty((Bk, KH + 1), dtype=wide), xp.empty((Bk, KH + 1), dtype=wide),
              xp.empty((Bk, KH + 1, KW + 1), dtype=wide),
              xp.empty((Bk, KH + 1, KW + 1), dtype=wide))  # fmt: skip
    key = (kc.shape, dt, device, _plan_key(device))
    plan = _TABLES.get(key)
    if plan is None:  # (k and the tables are distinct arrays: reusable)
        launches = _plan_filter.plan_fft_fill_tables(kc, *tables)
        plan = LaunchPlan(device, launches, 5, buffers=(kc, *tables))
        _TABLES.put(key, plan)
    plan.run((kc, *tables))
    return tables


#: ``(forward, inverse)`` transforms of the FFT paths per array module and kind.
_TRANSFORMS: dict[tuple[Any, bool], tuple[Any, Any]] = {}


def _transforms(xp: Any, real: bool) -> tuple[Any, Any]:
    """The FFT paths' ``(forward, inverse)`` on ``xp``: ``rfftn``/``irfftn`` for
    real data, ``fftn``/``ifftn`` for complex, the forward unnormalised and the
    inverse unnormalised too (``norm='forward'``: the caller folds the ``1/n`` into
    the kernel's spectrum, so there is no scaling pass over the output). On CuPy
    the inverse is ``cupyx.scipy.fft``'s with ``overwrite_x=True``: CuPy copies the
    input of every complex-to-real transform unless it may overwrite it, and here
    the input is a temporary (the product). Both are called as ``f(a, s=None,
    axes=None)``."""
    got = _TRANSFORMS.get((xp, real))
    if got is not None:
        return got
    fwd_name, inv_name = ("rfftn", "irfftn") if real else ("fftn", "ifftn")
    fwd = getattr(xp.fft, fwd_name)
    if getattr(xp, "__name__", "") == "cupy":
        import cupyx.scipy.fft as cufft  # (the stand-in's beside the stand-in CuPy)

        inv_cupyx = getattr(cufft, inv_name)

        def inv(a: Any, s: Any = None, axes: Any = None) -> Any:
            return inv_cupyx(a, s=s, axes=axes, norm="forward", overwrite_x=True)
    else:
        inv_xp = getattr(xp.fft, inv_name)

        def inv(a: Any, s: Any = None, axes: Any = None) -> Any:
            return inv_xp(a, s=s, axes=axes, norm="forward")
    if len(_TRANSFORMS) > 16:  # (stand-in modules come and go in the tests)
        _TRANSFORMS.clear()
    _TRANSFORMS[(xp, real)] = (fwd, inv)
    return fwd, inv


def _as_strided(xp: Any) -> Any:
    lib = getattr(xp, "lib", None)
    st = getattr(lib, "stride_tricks", None)
    return st.as_strided if st is not None else np.lib.stride_tricks.as_strided


def correlate1d_fft(
    in1: Any, k: Any, fp: FilterProblem, device: Any, check_finite: bool = False
) -> Any:
    """The segmented (overlap-save) FFT of a 1-D problem
    (:func:`gpuconv._plan_filter.fft1d_ok`) on ``device``: ``(B, 1, OW)``.

    The padded signal ``ext(in1)[b, -pad_left : OW + KW - 1 - pad_left]`` (then
    zeros) is cut into ``nseg`` overlapping segments of ``L`` samples
    (:func:`gpuconv._plan_filter.fft1d_segment`) that start ``L - KW + 1`` apart,
    written contiguously by one ``fft_gather`` pass (the boundary rule applied on
    the way: no padded copy of the signal, and a base-less contiguous input, which
    CuPy's 1-D transforms would otherwise copy); one batched forward transform of
    all segments, the product with the spectrum of the reversed kernel (``L``
    values, the inverse's ``1/L`` folded into the kernel), one batched inverse
    without a scaling pass that may overwrite the product (:func:`_transforms`);
    each segment's alias-free ``L - KW + 1`` outputs are copied out once. One
    segment is the plain full-size FFT. ``check_finite``: as
    :func:`correlate2d_fft` (the segments cover every sample the outputs read, so
    their DC terms see every such value).
    """
    dt = np.dtype(fp.dtype)
    xp = device.xp
    L, nseg = fft1d_segment(fp)
    step = L - fp.KW + 1
    segs = xp.empty((fp.B, nseg, L), dtype=dt)
    _gather(device, fp, "segments", xp.ascontiguousarray(in1), segs)
    fwd, inv = _transforms(xp, dt.kind != "c")
    axes = (-1,)
    spec = fwd(segs, axes=axes)
    del segs
    finite = _dc_finite(xp, spec[:, :, 0], k) if check_finite else None
    kr = k[:, :, ::-1] * dt.type(1.0 / L)  # (Bk, 1, KW): the inverse's 1/L
    spec *= fwd(kr, s=(L,), axes=axes)  # (Bk, 1, .) over the segments
    y = inv(spec, s=(L,), axes=axes)  # (B, nseg, L)
    del spec
    # each segment's outputs y[:, s, KW-1:] in place in out (B, OW): the whole
    # segments through a strided view of out, then the last, partial one
    out = xp.empty((fp.B, 1, fp.OW), dtype=dt)
    full, rest = divmod(fp.OW, step)
    isz = dt.itemsize
    if full:
        view = _as_strided(xp)(out, (fp.B, full, step), (fp.OW * isz, step * isz, isz))
        view[...] = y[:, :full, fp.KW - 1 :]
    if rest:
        out[:, 0, full * step :] = y[:, full, fp.KW - 1 : fp.KW - 1 + rest]
    return (out, finite) if check_finite else out
