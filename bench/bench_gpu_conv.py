"""GPU benchmark of gpuconv's conv2d kernels against cuDNN and against the roofline.

Layers (DeepBench / ResNet-50, NCHW, float32; issue 3):

- N=16, 3x3 pad 1: 56² 64->64, 28² 128->128, 14² 256->256, 7² 512->512;
- N=16, 1x1: 56² 64->256, 14² 1024->256;
- N=16, 7x7 stride 2 pad 3: 224² 3->64;  N=16, 5x5 pad 2: 28² 192->32;
- N=8, 3x3 pad 1: 54² 64->64.

Passes: ``conv2d_forward``, ``conv2d_backward_input`` (``gx`` only) and
``conv2d_backward_weight`` (``gw`` only), each through the public API on CuPy arrays
(what users get: argument checks, planning and launches included) with
``algorithm='auto'`` and with each other variant forced.

Peer: cuDNN through PyTorch on the same device memory (zero-copy),
``torch.backends.cudnn.allow_tf32 = False`` (FP32 against FP32) and
``torch.backends.cudnn.benchmark = True`` (cuDNN's fastest algorithm);
``torch.nn.functional.conv2d`` and ``torch.ops.aten.convolution_backward`` with the
output mask of the one gradient. Targets (ratio = ours / cuDNN time, ``auto`` rows):
forward <= 1.5 and backward <= 2 on the 3x3 layers, <= 2 elsewhere; and at least 40 %
of FP32 peak on the compute-bound layers (arithmetic intensity above the ridge).

Roofline: ``floor = max(FLOPs / FP32 peak, bytes / bandwidth)`` with FLOPs
``2*N*K*C/groups*KH*KW*OH*OW`` (every pass), bytes the two inputs and the output of
the pass read/written once, the FP32 peak from the device (SMs x FP32 lanes per SM x
2 x boost clock; 66.9 TFLOP/s on an H100 SXM) and the bandwidth measured here (a
1 GiB device-to-device copy, read + write). Rows report the share of the floor and
of the FP32 peak.

Method: inputs from a fixed seed; each side's output is validated (relative max
error against cuDNN, or against the NumPy backend without PyTorch) *before* it is
timed, and a side that fails is not timed; warm-up calls; then timed calls, each
preceded by an L2 flush (a write of twice the L2 size) outside the bracket of CUDA
events; the median (and min) of at least 5 calls, more while under 0.2 s per side.
Every row carries the device name.

Standalone::

    PYTHONPATH=. python bench/bench_gpu_conv.py [--quick] [--json out.json]

``python -m gpuconv bench --backend cuda`` calls :func:`run_conv_bench`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

PASSES = ("conv2d_forward", "conv2d_backward_input", "conv2d_backward_weight")
VARIANTS = ("naive", "tiled", "tiled_regblock")
TARGET_3X3 = {"conv2d_forward": 1.5, "conv2d_backward_input": 2.0,
              "conv2d_backward_weight": 2.0}
TARGET_OTHER = 2.0
PEAK_FRACTION_TARGET = 0.40


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
)
QUICK_LAYERS = (Layer(2, 16, 20, 16, 3), Layer(2, 8, 17, 24, 5, stride=2))


def _repo_on_path() -> None:
    root = str(Path(__file__).resolve().parent.parent)
    if root not in sys.path:
        sys.path.insert(0, root)


# -------------------------------------------------------------------------------
# device facts


def device_name(cp: Any) -> str:
    props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    name = props["name"]
    return name.decode() if isinstance(name, bytes) else str(name)


def fp32_peak(cp: Any) -> float:
    """FP32 FLOP/s of the current device: SMs x FP32 lanes x 2 x clock."""
    props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    cc = (props["major"], props["minor"])
    lanes = 64 if cc in ((6, 0), (7, 0), (7, 2), (7, 5), (8, 0)) else 128
    return props["multiProcessorCount"] * lanes * 2.0 * props["clockRate"] * 1e3


def copy_bandwidth(cp: Any, nbytes: int = 1 << 30, repeats: int = 10) -> float:
    """Device-to-device copy bandwidth in bytes/s, counting read + write."""
    src = cp.ones(nbytes // 4, dtype=cp.float32)
    dst = cp.empty_like(src)
    dst[...] = src
    start, end = cp.cuda.Event(), cp.cuda.Event()
    times = []
    for _ in range(repeats):
        start.record()
        dst[...] = src
        end.record()
        end.synchronize()
        times.append(cp.cuda.get_elapsed_time(start, end) / 1e3)
    del src, dst
    return 2 * nbytes / float(np.median(times))


def l2_flusher(cp: Any) -> Callable[[], None]:
    """A callable that evicts the L2 cache (writes twice its size)."""
    props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    buf = cp.empty(max(2 * int(props.get("l2CacheSize", 50 << 20)), 1 << 20), cp.uint8)

    def flush() -> None:
        buf.fill(1)

    return flush


def time_gpu(cp: Any, fn: Callable[[], Any], flush: Callable[[], None] | None, *,
             warmup: int = 3, min_repeats: int = 5, max_repeats: int = 100,
             budget_s: float = 0.3) -> tuple[float, float, int]:
    """``(median, min, repeats)`` seconds of ``fn`` between CUDA events; the L2 is
    flushed before each timed call, outside the events."""
    for _ in range(warmup):
        fn()
    cp.cuda.Device().synchronize()
    start, end = cp.cuda.Event(), cp.cuda.Event()
    times: list[float] = []
    t0 = time.perf_counter()
    while len(times) < min_repeats or (
        time.perf_counter() - t0 < budget_s and len(times) < max_repeats
    ):
        if flush is not None:
            flush()
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(cp.cuda.get_elapsed_time(start, end) / 1e3)
    return float(np.median(times)), float(np.min(times)), len(times)


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
                   progress: bool = True, variants: tuple[str, ...] = VARIANTS,
                   layers: tuple[Layer, ...] | None = None) -> list[dict[str, Any]]:
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
        repeated).
    layers : tuple of Layer, optional
        Override the layer list.

    Returns
    -------
    list of dict
        One row per (layer, pass, variant) with the keys of ``gpuconv._bench``'s
        rows where they apply plus ``device``, ``variant``, ``resolved``
        (the kernel variant ``auto`` ran), roofline keys and ``error`` (a side that
        could not run, or failed validation and was not timed).
    """
    _repo_on_path()
    import cupy as cp

    import gpuconv
    from gpuconv import _conv_args, _plan_conv

    torch = _torch()
    device = device_name(cp)
    peak = fp32_peak(cp)
    bw = copy_bandwidth(cp, 1 << 28 if quick else 1 << 30)
    flush = l2_flusher(cp)
    min_rep = repeats if repeats is not None else (3 if quick else 5)
    budget = 0.05 if quick else 0.2
    rows: list[dict[str, Any]] = []
    for layer in layers or (QUICK_LAYERS if quick else LAYERS):
        a = _inputs(cp, layer)
        p = _conv_args.normalize_conv2d(
            a["x"].shape, a["w"].shape, [np.dtype(np.float32)], stride=layer.stride,
            padding=layer.padding,
        )
        for pass_name in PASSES:
            short = pass_name.removeprefix("conv2d_")
            resolved = _plan_conv.choose_algorithm(p, short)
            flops, nbytes = layer.flops, layer.bytes_moved(pass_name)
            floor_s = max(flops / peak, nbytes / bw)
            compute_bound = flops / nbytes > peak / bw
            target = TARGET_3X3[pass_name] if layer.ks == 3 else TARGET_OTHER
            peer_name = "cudnn" if torch is not None else None
            peer_fn = want = None
            peer_time: tuple[float, float, int] | None = None
            try:
                if torch is not None:
                    peer_fn = cudnn(torch, layer, pass_name, a)
                    want = peer_fn()
                    peer_time = time_gpu(cp, peer_fn, flush, min_repeats=min_rep,
                                         budget_s=budget)
                else:
                    want = numpy_reference(layer, pass_name, a, cp)
            except Exception as exc:  # a peer failure must not stop our rows
                peer_name = f"cudnn (failed: {type(exc).__name__}: {exc})"
                want = numpy_reference(layer, pass_name, a, cp)
            if torch is not None and want is not None and not isinstance(want,
                                                                         np.ndarray):
                want = cp.asnumpy(cp.asarray(want))
            sides = ["auto", *[v for v in variants if v != resolved]]
            for variant in sides:
                case = f"{pass_name}/{variant}/{layer.name}/float32"
                _progress(progress, f"[gpu conv] {case}")
                row: dict[str, Any] = {
                    "case": case, "op": pass_name, "shape": layer.name,
                    "dtype": "float32", "backend": "cuda", "device": device,
                    "variant": variant,
                    "resolved": resolved if variant == "auto" else variant,
                    "peer": peer_name, "unit": "gflops", "flops": flops,
                    "bytes": nbytes, "fp32_peak_flops": peak,
                    "copy_bandwidth_bytes_s": bw, "floor_s": floor_s,
                    "compute_bound": compute_bound, "l2_flushed": True,
                    "err_limit": err_limit(layer.terms(pass_name)),
                    "target_ratio": target if variant == "auto" and torch else None,
                    "peak_fraction_target": (PEAK_FRACTION_TARGET
                                             if compute_bound and variant == "auto"
                                             else None),
                    "threads": None, "mpx_s": None, "peer_mpx_s": None,
                }
                if peer_time is not None:
                    row["peer_median_s"] = peer_time[0]
                    row["peer_gflops"] = flops / peer_time[0] / 1e9
                    row["peer_rate"] = row["peer_gflops"]
                else:
                    row["peer_median_s"] = row["peer_gflops"] = row["peer_rate"] = None
                fn = ours(gpuconv, layer, pass_name, a, variant)
                try:
                    got = fn()
                except NotImplementedError as exc:
                    row["error"] = f"not implemented: {exc}"
                    rows.append(_finish(row))
                    continue
                except Exception as exc:
                    row["error"] = f"{type(exc).__name__}: {exc}"
                    rows.append(_finish(row))
                    continue
                row["max_err"] = rel_err(got, want, cp)
                if not row["max_err"] <= row["err_limit"]:
                    row["error"] = (f"validation failed: error {row['max_err']:.3g} > "
                                    f"{row['err_limit']:.3g}; not timed")
                    row["validation_failed"] = True
                    rows.append(_finish(row))
                    continue
                del got
                med, best, n = time_gpu(cp, fn, flush, min_repeats=min_rep,
                                        budget_s=budget)
                row.update(median_s=med, min_s=best, repeats=n,
                           gflops=flops / med / 1e9)
                row["rate"] = row["gflops"]
                rows.append(_finish(row))
        del a
        cp.get_default_memory_pool().free_all_blocks()
    return rows


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
    ap.add_argument("--json", default=None, help="write the rows here")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--variants", default=",".join(VARIANTS),
                    help="forced variants besides auto (comma-separated, or '')")
    args = ap.parse_args(argv)
    _repo_on_path()
    from gpuconv import _backend

    reason = _backend.cuda_unavailable_reason()
    if reason is not None:
        print(f"bench_gpu_conv: backend 'cuda' is not available: {reason}",
              file=sys.stderr)
        return 2
    variants = tuple(v for v in args.variants.split(",") if v)
    rows = run_conv_bench(quick=args.quick, repeats=args.repeats,
                          progress=not args.no_progress, variants=variants)
    if args.json:
        doc = {"format": "gpuconv-bench/1", "argv": sys.argv, "rows": rows}
        Path(args.json).write_text(json.dumps(doc, indent=1, default=str) + "\n")
    print(format_rows(rows))
    return 1 if any(r.get("validation_failed") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
