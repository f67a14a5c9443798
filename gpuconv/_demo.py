"""``python -m gpuconv demo``: filter a synthetic image and check every result.

The demo picks the best available backend (``'cuda'`` when CuPy and a device are
usable, else ``'numpy'``), then

1. filters a synthetic image (gradients, a disk, a square, a checkerboard and
   noise) with a Gaussian blur and Sobel/Scharr edge kernels through
   :func:`gpuconv.convolve2d` and :func:`gpuconv.correlate2d` (one call of them on
   a stack through ``axes=``);
2. runs :func:`gpuconv.conv2d` and :func:`gpuconv.conv2d_backward` on a small
   batch;
3. checks each result against an independent reference: SciPy where it is
   installed for the filters, else (and always for conv2d) a float64 NumPy
   shift-and-add written here without any gpuconv code; the gradients also against
   the adjoint identity ``<conv(x, w), gy> = <x, gx> = <w, gw>`` and against
   float64 central finite differences on a tiny case with stride, dilation,
   asymmetric padding and ``padding_mode='reflect'``;
4. prints one table row per check (op, shape, backend, time, max error, ok) and
   returns a non-zero exit status if any check fails.

Errors are ``max|ours - ref| / max|ref|`` (relative to the largest reference
value); the float32 limit is ``1e-5 + 5e-6*sqrt(terms)`` with ``terms`` the
number of products summed into one output, the rule of ``tests/_tol.py``.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

import numpy as np

# np.pad names of gpuconv's padding modes and of SciPy's boundaries.
NP_PAD_MODE = {
    "zeros": "constant",
    "reflect": "reflect",
    "replicate": "edge",
    "circular": "wrap",
    "symmetric": "symmetric",
    "fill": "constant",
    "wrap": "wrap",
    "symm": "symmetric",
}


# ----------------------------------------------------------------------------
# Synthetic data
# ----------------------------------------------------------------------------


def synthetic_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A float32 test image: two gradients, a disk, a square, a checkerboard, noise.

    Examples
    --------
    >>> img = synthetic_image(64, 80)
    >>> img.shape, img.dtype
    ((64, 80), dtype('float32'))
    """
    yy, xx = np.mgrid[0:h, 0:w]
    v = yy / max(h - 1, 1)
    u = xx / max(w - 1, 1)
    img = 0.3 * u + 0.2 * v
    img += 0.5 * (((u - 0.3) ** 2 + (v - 0.35) ** 2) < 0.18**2)
    img += 0.4 * ((u > 0.55) & (u < 0.85) & (v > 0.15) & (v < 0.45))
    checker = ((np.floor(u * 16) + np.floor(v * 16)) % 2).astype(np.float64)
    img += 0.3 * checker * ((u < 0.5) & (v > 0.6))
    img += np.random.default_rng(seed).normal(0.0, 0.05, size=(h, w))
    return img.astype(np.float32)


def gaussian_kernel(size: int, sigma: float) -> np.ndarray:
    """Normalised ``size x size`` float32 Gaussian."""
    r = np.arange(size) - (size - 1) / 2
    g = np.exp(-(r**2) / (2 * sigma**2))
    k = np.outer(g, g)
    return (k / k.sum()).astype(np.float32)


SOBEL_X = np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], dtype=np.float32)
SCHARR_X = np.array([[3, 0, -3], [10, 0, -10], [3, 0, -3]], dtype=np.float32)


# ----------------------------------------------------------------------------
# Independent float64 references (NumPy only; no gpuconv code)
# ----------------------------------------------------------------------------


def ref_filter2d(
    in1: np.ndarray,
    in2: np.ndarray,
    mode: str = "full",
    boundary: str = "fill",
    fillvalue: float = 0.0,
    correlate: bool = False,
) -> np.ndarray:
    """SciPy's ``convolve2d``/``correlate2d`` in float64/complex128 by shift-and-add.

    The 'full' result extends ``in1`` by ``k - 1`` on each side with ``np.pad``
    and sums ``k[i, j] * shifted view``; 'same' keeps rows ``(k-1)//2 ...``
    (convolution) or ``k//2 ...`` (correlation) of 'full', 'valid' the rows where
    the kernel lies inside ``in1``. 'valid' needs ``in1`` at least as large as
    ``in2`` in both axes (no swap here).
    """
    dt = np.complex128 if np.iscomplexobj(in1) or np.iscomplexobj(in2) else np.float64
    a = np.asarray(in1, dtype=dt)
    k = np.asarray(in2, dtype=dt)
    if correlate:
        k = np.conj(k[::-1, ::-1])
    (h, w), (kh, kw) = a.shape, k.shape
    pad = ((kh - 1, kh - 1), (kw - 1, kw - 1))
    if boundary == "fill":
        p = np.pad(a, pad, mode="constant", constant_values=fillvalue)
    else:
        p = np.pad(a, pad, mode=NP_PAD_MODE[boundary])
    fh, fw = h + kh - 1, w + kw - 1
    full = np.zeros((fh, fw), dtype=dt)
    for i in range(kh):
        for j in range(kw):
            ti, tj = kh - 1 - i, kw - 1 - j
            full += k[i, j] * p[ti : ti + fh, tj : tj + fw]
    if mode == "full":
        return full
    if mode == "same":
        th = kh // 2 if correlate else (kh - 1) // 2
        tw = kw // 2 if correlate else (kw - 1) // 2
        return full[th : th + h, tw : tw + w]
    if mode == "valid":
        return full[kh - 1 : h, kw - 1 : w]
    raise ValueError(f"unknown mode {mode!r}")


def _pad_index(n: int, before: int, after: int, mode: str) -> np.ndarray:
    """Source index of each padded position (``-1`` for a zero), built by np.pad."""
    idx = np.arange(n)
    if mode == "zeros":
        return np.pad(idx, (before, after), mode="constant", constant_values=-1)
    return np.pad(idx, (before, after), mode=NP_PAD_MODE[mode])


def _conv_geometry(
    x_shape: tuple[int, ...], w_shape: tuple[int, ...], stride: tuple[int, int],
    padding: tuple[int, int, int, int], dilation: tuple[int, int], padding_mode: str,
) -> tuple[np.ndarray, np.ndarray, int, int]:
    _, _, h, w = x_shape
    _, _, kh, kw = w_shape
    pt, pb, pl, pr = padding
    ih = _pad_index(h, pt, pb, padding_mode)
    iw = _pad_index(w, pl, pr, padding_mode)
    oh = (len(ih) - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (len(iw) - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    return ih, iw, oh, ow


def _extend(x: np.ndarray, ih: np.ndarray, iw: np.ndarray) -> np.ndarray:
    xp = x[:, :, np.maximum(ih, 0)][:, :, :, np.maximum(iw, 0)].copy()
    xp[:, :, ih < 0] = 0
    xp[:, :, :, iw < 0] = 0
    return xp


def ref_conv2d(
    x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None,
    stride: tuple[int, int] = (1, 1), padding: tuple[int, int, int, int] = (0, 0, 0, 0),
    dilation: tuple[int, int] = (1, 1), groups: int = 1, padding_mode: str = "zeros",
) -> np.ndarray:
    """float64 deep-learning conv2d (cross-correlation, NCHW), one einsum per tap."""
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    ih, iw, oh, ow = _conv_geometry(x.shape, w.shape, stride, padding, dilation,
                                    padding_mode)
    xp = _extend(x, ih, iw)
    n, c = x.shape[:2]
    k, cg, kh, kw = w.shape
    kg = k // groups
    y = np.zeros((n, k, oh, ow))
    (sh, sw), (dh, dw) = stride, dilation
    for g in range(groups):
        xs = xp[:, g * cg : (g + 1) * cg]
        for a in range(kh):
            for bb in range(kw):
                v = xs[:, :, a * dh : a * dh + sh * (oh - 1) + 1 : sh,
                       bb * dw : bb * dw + sw * (ow - 1) + 1 : sw]
                y[:, g * kg : (g + 1) * kg] += np.einsum(
                    "kc,nchw->nkhw", w[g * kg : (g + 1) * kg, :, a, bb], v
                )
    if b is not None:
        y += np.asarray(b, dtype=np.float64).reshape(1, -1, 1, 1)
    return y


def ref_conv2d_backward(
    gy: np.ndarray, x: np.ndarray, w: np.ndarray,
    stride: tuple[int, int] = (1, 1), padding: tuple[int, int, int, int] = (0, 0, 0, 0),
    dilation: tuple[int, int] = (1, 1), groups: int = 1, padding_mode: str = "zeros",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """float64 ``(gx, gw, gb)`` of :func:`ref_conv2d`: scatter per tap into the
    padded input, then fold the padded gradient back through the np.pad index map."""
    gy = np.asarray(gy, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    ih, iw, oh, ow = _conv_geometry(x.shape, w.shape, stride, padding, dilation,
                                    padding_mode)
    xp = _extend(x, ih, iw)
    gxp = np.zeros_like(xp)
    gw = np.zeros_like(w)
    k, cg, kh, kw = w.shape
    kg = k // groups
    (sh, sw), (dh, dw) = stride, dilation
    for g in range(groups):
        cs, ks = slice(g * cg, (g + 1) * cg), slice(g * kg, (g + 1) * kg)
        for a in range(kh):
            for bb in range(kw):
                sl = (slice(None), cs,
                      slice(a * dh, a * dh + sh * (oh - 1) + 1, sh),
                      slice(bb * dw, bb * dw + sw * (ow - 1) + 1, sw))
                gxp[sl] += np.einsum("kc,nkhw->nchw", w[ks, :, a, bb], gy[:, ks])
                gw[ks, :, a, bb] = np.einsum("nkhw,nchw->kc", gy[:, ks], xp[sl])
    gx_h = np.zeros(x.shape[:3] + (len(iw),))
    ok = ih >= 0
    np.add.at(gx_h, (slice(None), slice(None), ih[ok]), gxp[:, :, ok])
    gx = np.zeros_like(x)
    ok = iw >= 0
    np.add.at(gx, (slice(None), slice(None), slice(None), iw[ok]), gx_h[:, :, :, ok])
    return gx, gw, gy.sum(axis=(0, 2, 3))


# ----------------------------------------------------------------------------
# The demo
# ----------------------------------------------------------------------------


@dataclass
class Check:
    """One row of the demo's table."""

    op: str
    shape: str
    backend: str
    time_ms: float | None
    err: float | None
    limit: float
    reference: str
    error: str | None = None

    @property
    def ok(self) -> bool:
        return (
            self.error is None and self.err is not None and math.isfinite(self.err)
            and self.err <= self.limit
        )


def f32_limit(terms: int) -> float:
    """float32 limit on the max error relative to ``max|ref|`` (tests/_tol.py rule)."""
    return 1e-5 + 5e-6 * math.sqrt(max(terms, 1))


def rel_err(ours: Any, ref: Any) -> float:
    """``max|ours - ref| / max|ref|`` (inf on a shape mismatch or a NaN)."""
    ours = np.asarray(ours)
    ref = np.asarray(ref)
    if ours.shape != ref.shape:
        return math.inf
    if ref.size == 0:
        return 0.0
    d = float(np.max(np.abs(ours.astype(np.complex128) - ref)))
    if not math.isfinite(d):
        return math.inf
    return d / max(float(np.max(np.abs(ref))), np.finfo(np.float64).tiny)


def pick_backend() -> tuple[str, str | None]:
    """``('cuda', None)`` when usable, else ``('numpy', why cuda is not)``."""
    from gpuconv import _backend

    reason = _backend.cuda_unavailable_reason()
    return ("numpy", reason) if reason is not None else ("cuda", None)


class _Device:
    """Moves arrays to the backend's device and times calls there."""

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.cupy = None
        if backend == "cuda":
            from gpuconv import _backend

            self.cupy = _backend.require_cupy()

    def put(self, a: np.ndarray) -> Any:
        return self.cupy.asarray(a) if self.cupy is not None else a

    def get(self, a: Any) -> np.ndarray:
        return self.cupy.asnumpy(a) if self.cupy is not None else np.asarray(a)

    def sync(self) -> None:
        if self.cupy is not None:
            self.cupy.cuda.Device().synchronize()

    def time(self, fn: Callable[[], Any], repeats: int) -> tuple[Any, float]:
        """Run ``fn`` once to warm up, then ``repeats`` times; (result, median ms)."""
        out = fn()
        self.sync()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            out = fn()
            self.sync()
            times.append(time.perf_counter() - t0)
        return out, 1e3 * float(np.median(times))


def _scipy_signal() -> Any:
    try:
        import scipy.signal as ss
    except Exception:
        return None
    return ss


def _shape(*arrays: Any) -> str:
    return " * ".join("x".join(str(s) for s in np.shape(a)) for a in arrays)


def run_checks(
    quick: bool = False, backend: str | None = None,
    families: tuple[str, ...] = ("filter", "conv"),
) -> list[Check]:
    """Compute the demo's checks of ``families`` ('filter', 'conv'); exceptions
    become failed rows, never escape."""
    if backend is None:
        backend, _ = pick_backend()
    checker = _Checker(backend, quick)
    if "filter" in families:
        checker.filters()
    if "conv" in families:
        checker.conv()
    return checker.checks


class _Checker:
    """Runs the demo's operations and records one :class:`Check` per result."""

    def __init__(self, backend: str, quick: bool) -> None:
        self.backend = backend
        self.quick = quick
        self.dev = _Device(backend)
        self.repeats = 1 if quick else 3
        size = 128 if quick else 512
        self.img = synthetic_image(size, size)
        self.d_img = self.dev.put(self.img)
        self.checks: list[Check] = []

    def attempt(self, op: str, shape: str, limit: float, ref_name: str,
                body: Callable[[], tuple[float | None, float]]) -> None:
        """Run ``body`` (returning time in ms or None, error); record the row."""
        try:
            ms, err = body()
        except Exception as exc:  # report, keep going: the table shows every row
            self.checks.append(Check(op, shape, self.backend, None, None, limit,
                                     ref_name, f"{type(exc).__name__}: {exc}"))
        else:
            self.checks.append(Check(op, shape, self.backend, ms, err, limit,
                                     ref_name))

    # --- filters -----------------------------------------------------------

    def filter_row(self, op: str, kernel: np.ndarray, mode: str, boundary: str,
                   label: str) -> None:
        import gpuconv

        correlate = op == "correlate2d"
        fn = gpuconv.correlate2d if correlate else gpuconv.convolve2d
        ss = _scipy_signal()
        img, d_img, d_k = self.img, self.d_img, self.dev.put(kernel)

        def body() -> tuple[float, float]:
            out, ms = self.dev.time(
                lambda: fn(d_img, d_k, mode=mode, boundary=boundary,
                           backend=self.backend),
                self.repeats,
            )
            if ss is not None:
                sfn = ss.correlate2d if correlate else ss.convolve2d
                ref = sfn(img.astype(np.float64), kernel.astype(np.float64),
                          mode=mode, boundary=boundary)
            else:
                ref = ref_filter2d(img, kernel, mode, boundary, correlate=correlate)
            return ms, rel_err(self.dev.get(out), ref)

        self.attempt(f"{op} {label}", f"{_shape(img, kernel)} {mode} {boundary}",
                     f32_limit(kernel.size),
                     "scipy.signal" if ss is not None else "float64 shift-add", body)

    def filters(self) -> None:
        """Blur and edge filters, and one call on a stack of kernels."""
        import gpuconv

        self.filter_row("convolve2d", gaussian_kernel(7, 1.5), "same", "symm", "blur")
        self.filter_row("convolve2d", SOBEL_X, "same", "symm", "sobel")
        self.filter_row("correlate2d", SCHARR_X, "valid", "fill", "scharr")
        self.filter_row("correlate2d", np.ones((4, 4), np.float32) / 16, "same",
                        "wrap", "box4")

        # Both Sobel directions in one call: a stack of kernels via axes=(-2, -1).
        stack = np.stack([SOBEL_X, SOBEL_X.T])
        d_stack = self.dev.put(stack)
        img, d_img = self.img, self.d_img

        def body() -> tuple[float, float]:
            out, ms = self.dev.time(
                lambda: gpuconv.convolve2d(d_img[None], d_stack, mode="same",
                                           boundary="symm", axes=(-2, -1),
                                           backend=self.backend),
                self.repeats,
            )
            ref = np.stack([ref_filter2d(img, k, "same", "symm") for k in stack])
            return ms, rel_err(self.dev.get(out), ref)

        self.attempt("convolve2d edges axes=(-2,-1)",
                     f"{_shape(img[None], stack)} same symm", f32_limit(9),
                     "float64 shift-add", body)

    # --- conv2d ------------------------------------------------------------

    def conv(self) -> None:
        """conv2d forward and backward on a small batch, then finite differences."""
        import gpuconv

        dev, backend, repeats = self.dev, self.backend, self.repeats
        rng = np.random.default_rng(1)
        n, c, k, hw = (2, 4, 8, 32) if self.quick else (4, 8, 16, 64)
        # The batch: crops of the image plus noise.
        img = self.img
        crops = [img[i * 5 : i * 5 + hw, i * 7 : i * 7 + hw] for i in range(n * c)]
        x = (np.stack(crops).reshape(n, c, hw, hw)
             + 0.1 * rng.standard_normal((n, c, hw, hw))).astype(np.float32)
        w = (rng.standard_normal((k, c, 3, 3)) / math.sqrt(9 * c)).astype(np.float32)
        b = rng.standard_normal(k).astype(np.float32)
        d_x, d_w, d_b = dev.put(x), dev.put(w), dev.put(b)
        geom = dict(stride=(1, 1), padding=(1, 1, 1, 1), dilation=(1, 1))
        shape = f"{_shape(x, w)} pad=1"

        def fwd_body() -> tuple[float, float]:
            y, ms = dev.time(
                lambda: gpuconv.conv2d(d_x, d_w, d_b, padding=1, backend=backend),
                repeats,
            )
            return ms, rel_err(dev.get(y), ref_conv2d(x, w, b, **geom))

        self.attempt("conv2d forward", shape, f32_limit(c * 9),
                     "float64 per-tap einsum", fwd_body)

        gy = rng.standard_normal((n, k, hw, hw)).astype(np.float32)
        d_gy = dev.put(gy)
        grads: dict[str, np.ndarray] = {}
        rgx, rgw, rgb = ref_conv2d_backward(gy, x, w, **geom)

        def bwd_body() -> tuple[float, float]:
            g, ms = dev.time(
                lambda: gpuconv.conv2d_backward(d_gy, d_x, d_w, padding=1,
                                                backend=backend),
                repeats,
            )
            grads.update(gx=dev.get(g.gx), gw=dev.get(g.gw), gb=dev.get(g.gb))
            return ms, rel_err(grads["gx"], rgx)

        def grad_body(name: str, ref: np.ndarray) -> Callable[[], tuple[None, float]]:
            def body() -> tuple[None, float]:
                if name not in grads:
                    raise RuntimeError("conv2d_backward failed; nothing to check")
                return None, rel_err(grads[name], ref)

            return body

        # One call computes all three; its time is on the gx row.
        self.attempt("conv2d_backward gx", shape, f32_limit(k * 9),
                     "float64 scatter/fold", bwd_body)
        self.attempt("conv2d_backward gw", shape, f32_limit(n * hw * hw),
                     "float64 per-tap einsum", grad_body("gw", rgw))
        self.attempt("conv2d_backward gb", shape, f32_limit(n * hw * hw),
                     "float64 sum", grad_body("gb", rgb))

        def adjoint_body() -> tuple[None, float]:
            if not grads:
                raise RuntimeError("conv2d_backward failed; nothing to check")
            y0 = ref_conv2d(x, w, None, **geom)
            lhs = float(np.vdot(y0, gy))
            rx = float(np.vdot(x.astype(np.float64), grads["gx"]))
            rw = float(np.vdot(w.astype(np.float64), grads["gw"]))
            scale = float(np.abs(y0).ravel() @ np.abs(gy).ravel())
            return None, max(abs(lhs - rx), abs(lhs - rw)) / scale

        self.attempt("adjoint <y,gy>=<x,gx>=<w,gw>", shape, f32_limit(9 * max(c, k)),
                     "identity", adjoint_body)
        self.attempt("conv2d fwd+bwd finite diff", "2x4x7x6 * 6x2x3x2 reflect "
                     "s=(2,1) d=(1,2) g=2", 1e-6, "float64 central differences",
                     lambda: self._finite_differences(rng))

    def _finite_differences(self, rng: np.random.Generator) -> tuple[float, float]:
        """float64, awkward geometry: gpuconv's forward against the reference, and
        gpuconv's gradients against central differences of the reference's loss
        ``<conv(x, w, b), gy>`` along random directions. Returns the worst error."""
        import gpuconv

        dev = self.dev
        fd = dict(stride=(2, 1), padding=(1, 0, 2, 1), dilation=(1, 2), groups=2,
                  padding_mode="reflect")
        xs = rng.standard_normal((2, 4, 7, 6))
        ws = rng.standard_normal((6, 2, 3, 2))
        bs = rng.standard_normal(6)
        y = dev.get(gpuconv.conv2d(dev.put(xs), dev.put(ws), dev.put(bs), **fd,
                                   backend=self.backend))
        worst = rel_err(y, ref_conv2d(xs, ws, bs, **fd))
        gys = rng.standard_normal(y.shape)
        g, ms = dev.time(
            lambda: gpuconv.conv2d_backward(dev.put(gys), dev.put(xs), dev.put(ws),
                                            **fd, backend=self.backend),
            self.repeats,
        )

        def loss(args: dict[str, np.ndarray]) -> float:
            return float(np.vdot(ref_conv2d(args["x"], args["w"], args["b"], **fd),
                                 gys))

        eps = 1e-6
        base = {"x": xs, "w": ws, "b": bs}
        for name, grad in (("x", g.gx), ("w", g.gw), ("b", g.gb)):
            d = rng.standard_normal(base[name].shape)
            hi = {**base, name: base[name] + eps * d}
            lo = {**base, name: base[name] - eps * d}
            num = (loss(hi) - loss(lo)) / (2 * eps)
            ana = float(np.vdot(dev.get(grad), d))
            worst = max(worst, abs(num - ana) / max(abs(num), 1.0))
        return ms, worst


def format_table(checks: list[Check]) -> str:
    """The demo table as text."""
    head = ("op", "shape", "backend", "time ms", "max error", "limit", "ok")
    rows = []
    for ch in checks:
        rows.append((
            ch.op,
            ch.shape,
            ch.backend,
            "-" if ch.time_ms is None else f"{ch.time_ms:.2f}",
            "-" if ch.err is None else f"{ch.err:.1e}",
            f"{ch.limit:.0e}",
            "ok" if ch.ok else "FAIL",
        ))
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    header = "  ".join(h.ljust(wd) for h, wd in zip(head, widths, strict=True))
    lines = [header.rstrip()]
    lines.append("  ".join("-" * wd for wd in widths))
    for r in rows:
        lines.append(
            "  ".join(v.ljust(wd) for v, wd in zip(r, widths, strict=True)).rstrip()
        )
    for ch in checks:
        if ch.error is not None:
            lines.append(f"FAIL {ch.op}: {ch.error}")
    return "\n".join(lines)


def main(quick: bool = False, backend: str | None = None,
         out: TextIO | None = None) -> int:
    """Run the demo, print the table; return 0 if every check passed, 1 if one
    failed, 2 if ``backend='cuda'`` was asked for and cannot run."""
    out = out if out is not None else sys.stdout
    import gpuconv

    chosen, why = pick_backend()
    if backend is None:
        backend = chosen
        note = "" if why is None else f" (cuda not used: {why})"
    elif backend == "cuda" and why is not None:
        print(f"gpuconv demo: backend 'cuda' is not available: {why}", file=sys.stderr)
        return 2
    else:
        note = " (chosen with --backend)"
    print(f"gpuconv {gpuconv.__version__} demo on backend '{backend}'{note}", file=out)
    ref = "SciPy" if _scipy_signal() is not None else "float64 NumPy (SciPy absent)"
    print(f"references: filters against {ref}; conv2d against float64 NumPy",
          file=out)
    t0 = time.perf_counter()
    checks = run_checks(quick=quick, backend=backend)
    print(format_table(checks), file=out)
    bad = [c for c in checks if not c.ok]
    took = time.perf_counter() - t0
    if bad:
        print(f"{len(bad)} of {len(checks)} checks FAILED ({took:.1f} s)", file=out)
        return 1
    print(f"all {len(checks)} checks passed ({took:.1f} s)", file=out)
    return 0
