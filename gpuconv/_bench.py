"""``python -m gpuconv bench``: gpuconv against its peers, in the same run.

How a case is measured
----------------------
1. Set-up builds the inputs (fixed seed) and the callables: gpuconv's op and each
   peer's equivalent.
2. Validation: gpuconv's output is compared with every peer's output (or, with no
   peer installed, with a float64 NumPy reference); an error above the limit
   raises :class:`BenchValidationError` and the run stops. These calls are also
   the warm-up.
3. Timing: one more untimed warm-up round (unless the case is slow), then rounds
   of interleaved calls (ours, peer 1, peer 2, ours, peer 1, ...),
   so that a slow period of the machine hits both sides alike; the number of
   rounds is ``--repeats`` (default 5), lowered to no less than 3 when one round
   would take more than ``budget_s / repeats``. Each side's time is the median of
   its calls; ``ratio = ours / peer`` (below 1: gpuconv is faster).

Rates: GFLOP/s for conv2d with ``2*N*K*(C/groups)*KH*KW*OH*OW`` FLOPs (the same
count for forward, input gradient and weight gradient); Mpx/s (output pixels per
second) for the filters.

Each JSON row has the keys of :data:`ROW_KEYS`; ``machine`` (CPU model, cores,
NumPy's BLAS and its threads, versions), ``date`` and ``git_commit`` are repeated
in every row so that rows of different runs can be concatenated.

The CUDA rows come from ``bench/bench_gpu_conv.py:run_conv_bench`` and
``bench/bench_gpu_filter.py:run_filter_bench``, imported lazily by file path
(see :func:`load_gpu_bench`).
"""

from __future__ import annotations

import datetime
import functools
import gc
import importlib
import importlib.metadata
import importlib.util
import inspect
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from gpuconv._demo import (
    f32_limit,
    ref_conv2d,
    ref_conv2d_backward,
    ref_filter2d,
    rel_err,
)

ROW_KEYS = (
    "case", "op", "shape", "dtype", "backend", "median", "median_s", "min_s", "repeats",
    "peer", "peer_median_s", "ratio", "unit", "rate", "peer_rate", "gflops",
    "peer_gflops", "mpx_s", "peer_mpx_s", "max_err", "err_limit", "target_ratio",
    "meets_target", "threads", "machine", "date", "git_commit",
)
"""Keys of every row written by ``--json`` (unused rate keys are ``None``)."""

DEFAULT_REPEATS = 5
QUICK_REPEATS = 2
MIN_REPEATS = 3
DEFAULT_BUDGET_S = 30.0


class BenchValidationError(RuntimeError):
    """gpuconv's output differs from a peer's (or the reference) beyond the limit."""


class BenchUnavailable(RuntimeError):
    """The requested benchmark cannot run here (message says why)."""


# ----------------------------------------------------------------------------
# Cases
# ----------------------------------------------------------------------------


@dataclass
class Prepared:
    """What a case's set-up returns: the callables and how to check them."""

    ours: Callable[[], Any]
    peers: dict[str, Callable[[], Any]]
    reference: Callable[[], Any] | None = None
    reference_name: str = "float64 NumPy"
    threads: int | None = None


@dataclass
class Case:
    """One benchmark case: an op on one shape, with its peers."""

    name: str
    op: str
    shape: str
    dtype: str
    unit: str  # 'gflops' or 'mpx_s'
    work: float  # FLOPs or output pixels
    terms: int  # products summed into one output (validation limit)
    setup: Callable[[], Prepared]
    targets: dict[str, float] = field(default_factory=dict)


def conv_flops(n: int, c: int, k: int, kh: int, kw: int, oh: int, ow: int,
               groups: int = 1) -> float:
    """``2*N*K*(C/groups)*KH*KW*OH*OW``."""
    return 2.0 * n * k * (c // groups) * kh * kw * oh * ow


@functools.lru_cache(maxsize=1)
def blas_info() -> dict[str, Any]:
    """NumPy's BLAS: name, version and thread count (threadpoolctl if installed).

    Cached: asking threadpoolctl scans every loaded library (a fraction of a
    second), and the answer does not change during a run."""
    info: dict[str, Any] = {"name": None, "version": None, "threads": None}
    try:
        cfg = np.show_config(mode="dicts")  # type: ignore[call-arg]
        blas = cfg["Build Dependencies"]["blas"]
        info["name"], info["version"] = blas.get("name"), blas.get("version")
    except Exception:
        pass
    try:
        from threadpoolctl import threadpool_info

        for lib in threadpool_info():
            if lib.get("user_api") == "blas" and "numpy" in lib.get("filepath", ""):
                info["threads"] = lib.get("num_threads")
                info["name"] = info["name"] or lib.get("internal_api")
                info["version"] = info["version"] or lib.get("version")
                break
    except Exception:
        pass
    if info["threads"] is None:
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            if os.environ.get(var, "").isdigit():
                info["threads"] = int(os.environ[var])
                break
        else:
            info["threads"] = _cores()
    return info


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except Exception:
        return os.cpu_count() or 1


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(dist: str) -> str | None:
    """The installed version of distribution ``dist`` (``importlib.metadata``: right
    whether or not the module has been imported yet), or None."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info(backend: str = "numpy") -> dict[str, Any]:
    """CPU model, cores, NumPy's BLAS, versions (and the GPU for ``'cuda'``)."""
    import gpuconv

    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cores": _cores(),
        "cpu_count": os.cpu_count(),
        "blas": blas_info(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "gpuconv": gpuconv.__version__,
        "numpy": np.__version__,
        "scipy": _version("scipy"),
        "torch": _version("torch"),
    }
    if backend == "cuda":
        gi = gpuconv.info()
        info["cupy"] = gi.get("cupy")
        info["device"] = gi.get("device")
    return info


def git_commit() -> str | None:
    """The repository's HEAD (``+dirty`` when the tree has changes), if any."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
            text=True, timeout=10, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10,
        ).stdout.strip()
    except Exception:
        return None
    return head + ("+dirty" if dirty else "")


def _torch(threads: int) -> Any:
    """PyTorch with ``threads`` intra-op threads, or ``None`` if not installed."""
    try:
        import torch
    except Exception:
        return None
    torch.set_num_threads(threads)
    return torch


def filter_cases(quick: bool = False) -> list[Case]:
    """Single-image float32 'same' convolve2d against scipy.signal and ndimage.

    Full: 1024² and 2048², k = 3, 5, 7, 15, 31. Quick: 96x130, k = 3, 4, 7, 31
    (the even kernel checks the validation against SciPy's 'same' alignment).
    """
    sizes = [(96, 130)] if quick else [(1024, 1024), (2048, 2048)]
    ks = [3, 4, 7, 31] if quick else [3, 5, 7, 15, 31]
    cases = []
    for h, w in sizes:
        for k in ks:
            cases.append(Case(
                name=f"convolve2d/same/{h}x{w}/k{k}/float32",
                op="convolve2d", shape=f"{h}x{w} k={k}", dtype="float32",
                unit="mpx_s", work=float(h * w), terms=k * k,
                setup=_filter_setup(h, w, k),
                targets=(
                    {"scipy.ndimage.convolve": 1.0} if k <= 7 else
                    {"scipy.signal.convolve2d": 0.1} if k >= 15 else {}
                ),
            ))
    return cases


def _filter_setup(h: int, w: int, k: int) -> Callable[[], Prepared]:
    def setup() -> Prepared:
        import gpuconv

        rng = np.random.default_rng(h * 7919 + w * 31 + k)
        img = rng.standard_normal((h, w), dtype=np.float32)
        ker = rng.standard_normal((k, k), dtype=np.float32)
        peers: dict[str, Callable[[], Any]] = {}
        try:
            import scipy.ndimage as nd
            import scipy.signal as ss
        except Exception:
            pass
        else:
            peers["scipy.signal.convolve2d"] = lambda: ss.convolve2d(img, ker, "same")
            if k % 2 == 1:  # ndimage centres even kernels one sample off
                peers["scipy.ndimage.convolve"] = lambda: nd.convolve(
                    img, ker, mode="constant", cval=0.0
                )
            peers["scipy.signal.fftconvolve"] = lambda: ss.fftconvolve(img, ker, "same")
        return Prepared(
            ours=lambda: gpuconv.convolve2d(img, ker, mode="same", backend="numpy"),
            peers=peers,
            reference=lambda: ref_filter2d(img, ker, "same", "fill"),
            reference_name="float64 shift-add",
            threads=blas_info()["threads"],
        )

    return setup


CONV_SHAPES = (
    # (N, C, H, K, KH, stride, pad)
    (8, 64, 56, 64, 3, 1, 1),
    (8, 128, 28, 128, 3, 1, 1),
    (8, 256, 14, 256, 3, 1, 1),
    (8, 256, 56, 64, 1, 1, 0),
    (8, 3, 224, 64, 7, 2, 3),
)
QUICK_CONV_SHAPES = (
    (2, 16, 18, 16, 3, 1, 1),
    (2, 32, 17, 16, 1, 1, 0),
    (2, 3, 33, 8, 7, 2, 3),
)
CONV_OPS = ("conv2d_forward", "conv2d_backward_input", "conv2d_backward_weight")


def conv_cases(quick: bool = False) -> list[Case]:
    """conv2d forward, input gradient and weight gradient on ResNet-like shapes
    against PyTorch CPU (``F.conv2d``, ``aten.convolution_backward``)."""
    cases = []
    for n, c, h, k, kh, s, p in QUICK_CONV_SHAPES if quick else CONV_SHAPES:
        oh = (h + 2 * p - kh) // s + 1
        flops = conv_flops(n, c, k, kh, kh, oh, oh)
        shape = f"N{n} C{c} {h}x{h} K{k} {kh}x{kh} s{s} p{p}"
        tag = f"N{n}-C{c}-{h}x{h}-K{k}-{kh}x{kh}-s{s}p{p}"
        for op in CONV_OPS:
            terms = {
                "conv2d_forward": c * kh * kh,
                "conv2d_backward_input": k * kh * kh,
                "conv2d_backward_weight": n * oh * oh,
            }[op]
            cases.append(Case(
                name=f"{op}/{tag}/float32", op=op, shape=shape, dtype="float32",
                unit="gflops", work=flops, terms=terms,
                setup=_conv_setup(op, n, c, h, k, kh, s, p),
                targets={"torch": 2.0},
            ))
    return cases


def _conv_setup(op: str, n: int, c: int, h: int, k: int, kh: int, s: int,
                p: int) -> Callable[[], Prepared]:
    def setup() -> Prepared:
        import gpuconv

        rng = np.random.default_rng(n * 1000003 + c * 1009 + h * 31 + k + kh)
        x = rng.standard_normal((n, c, h, h), dtype=np.float32)
        w = (rng.standard_normal((k, c, kh, kh), dtype=np.float32)
             / np.float32(math.sqrt(c * kh * kh)))
        oh = (h + 2 * p - kh) // s + 1
        gy = rng.standard_normal((n, k, oh, oh), dtype=np.float32)
        geo = dict(stride=s, padding=p)
        ref_geo = dict(stride=(s, s), padding=(p, p, p, p))
        threads = blas_info()["threads"]
        torch = _torch(threads)
        peers: dict[str, Callable[[], Any]] = {}
        if op == "conv2d_forward":
            def ours() -> Any:
                return gpuconv.conv2d(x, w, **geo, backend="numpy")

            def reference() -> Any:
                return ref_conv2d(x, w, None, **ref_geo)

            if torch is not None:
                xt, wt = torch.from_numpy(x), torch.from_numpy(w)
                fn = torch.nn.functional.conv2d
                peers["torch"] = lambda: fn(xt, wt, None, s, p)
        else:
            which = 0 if op == "conv2d_backward_input" else 1
            need = ("input",) if which == 0 else ("weight",)

            def ours() -> Any:
                g = gpuconv.conv2d_backward(gy, x, w, **geo, needs=need,
                                            backend="numpy")
                return g[which]

            def reference() -> Any:
                return ref_conv2d_backward(gy, x, w, **ref_geo)[which]

            if torch is not None:
                xt, wt, gyt = (torch.from_numpy(a) for a in (x, w, gy))
                mask = [which == 0, which == 1, False]
                cb = torch.ops.aten.convolution_backward
                peers["torch"] = lambda: cb(gyt, xt, wt, None, [s, s], [p, p], [1, 1],
                                            False, [0, 0], 1, mask)[which]
        return Prepared(ours=ours, peers=peers, reference=reference,
                        reference_name="float64 per-tap einsum", threads=threads)

    return setup


def numpy_cases(which: str = "all", quick: bool = False) -> list[Case]:
    """The NumPy backend's cases: ``which`` is 'filter', 'conv' or 'all'."""
    cases: list[Case] = []
    if which in ("filter", "all"):
        cases += filter_cases(quick)
    if which in ("conv", "all"):
        cases += conv_cases(quick)
    return cases


# ----------------------------------------------------------------------------
# Running
# ----------------------------------------------------------------------------


def _to_numpy(a: Any) -> np.ndarray:
    if hasattr(a, "detach"):  # a torch tensor
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def validate(case: Case, prep: Prepared) -> tuple[dict[str, float], float, float]:
    """Call every side once (the warm-up), compare ours with each peer.

    Returns the errors per peer (or ``{'reference': err}`` without peers), the
    limit, and the wall time of this round (an estimate of one timing round).
    """
    limit = f32_limit(case.terms)
    t0 = time.perf_counter()
    try:
        ours = _to_numpy(prep.ours())
    except Exception as exc:
        raise BenchValidationError(
            f"{case.name}: gpuconv raised {type(exc).__name__}: {exc}"
        ) from exc
    errs: dict[str, float] = {}
    for name, fn in prep.peers.items():
        errs[name] = rel_err(ours, _to_numpy(fn()))
    took = time.perf_counter() - t0
    if not prep.peers:
        if prep.reference is None:
            raise BenchValidationError(f"{case.name}: no peer and no reference")
        errs[prep.reference_name] = rel_err(ours, prep.reference())
    bad = {k: v for k, v in errs.items() if not v <= limit}
    if bad:
        worst = ", ".join(f"{k}: {v:.3g}" for k, v in bad.items())
        raise BenchValidationError(
            f"{case.name}: gpuconv's output differs from {worst} "
            f"(max |ours - peer| / max |peer|; limit {limit:.3g})"
        )
    return errs, limit, took


#: Seconds of sleep before each timed call when several contenders alternate: a
#: BLAS or OpenMP pool keeps spinning for a while after its call returns (OpenBLAS
#: about 0.1 s) and would steal the cores from the next contender. Measured on the
#: 2-core machine, 3x3 N=8 C=K=64 56x56: ours 119 GFLOP/s and PyTorch 89 GFLOP/s
#: each alone, but 77 and 42 when alternated back to back.
SETTLE_S = 0.2


def time_interleaved(
    fns: Sequence[Callable[[], Any]], rounds: int, settle: float = 0.0
) -> list[list[float]]:
    """``rounds`` rounds of one call of each ``fn`` in order; seconds per call.

    With ``settle > 0`` and several ``fns``, sleep ``settle`` seconds before each
    timed call (outside the timing) so that the previous contender's thread pool
    has gone idle."""
    times: list[list[float]] = [[] for _ in fns]
    enabled = gc.isenabled()
    gc.collect(1)  # the young generations: a full collection costs ~0.3 s with torch
    gc.disable()  # no collector pause inside a timed call
    try:
        for _ in range(rounds):
            for i, fn in enumerate(fns):
                if settle > 0 and len(fns) > 1:
                    time.sleep(settle)
                t0 = time.perf_counter()
                fn()
                times[i].append(time.perf_counter() - t0)
    finally:
        if enabled:
            gc.enable()
    return times


def _rate(case: Case, seconds: float | None) -> float | None:
    if seconds is None or seconds <= 0:
        return None
    return case.work / seconds / (1e9 if case.unit == "gflops" else 1e6)


def run_case(case: Case, repeats: int, budget_s: float, backend: str,
             meta: dict[str, Any], warmup: bool = True) -> list[dict[str, Any]]:
    """Validate, then time one case; one row per peer (one row if no peer)."""
    prep = case.setup()
    errs, limit, est = validate(case, prep)
    rounds = repeats
    if repeats > MIN_REPEATS and est * repeats > budget_s:
        rounds = max(MIN_REPEATS, int(budget_s / max(est, 1e-9)))
    fns = [prep.ours, *prep.peers.values()]
    if warmup and est * (rounds + 1) <= budget_s:
        time_interleaved(fns, 1)  # one more warm-up round (thread pools, caches)
    times = time_interleaved(fns, rounds, SETTLE_S if warmup else 0.0)
    ours_med = float(np.median(times[0]))
    rows = []
    peer_items = list(zip(prep.peers, times[1:], strict=True)) or [(None, None)]
    for peer, ptimes in peer_items:
        peer_med = None if ptimes is None else float(np.median(ptimes))
        ratio = None if peer_med is None else ours_med / peer_med
        target = case.targets.get(peer) if peer is not None else None
        rate, peer_rate = _rate(case, ours_med), _rate(case, peer_med)
        err_key = peer if peer is not None else prep.reference_name
        row = {
            "case": case.name, "op": case.op, "shape": case.shape,
            "dtype": case.dtype, "backend": backend,
            "median": ours_med, "median_s": ours_med,
            "min_s": float(np.min(times[0])), "repeats": rounds,
            "peer": peer, "peer_median_s": peer_med, "ratio": ratio,
            "unit": case.unit, "rate": rate, "peer_rate": peer_rate,
            "gflops": rate if case.unit == "gflops" else None,
            "peer_gflops": peer_rate if case.unit == "gflops" else None,
            "mpx_s": rate if case.unit == "mpx_s" else None,
            "peer_mpx_s": peer_rate if case.unit == "mpx_s" else None,
            "max_err": errs[err_key], "err_limit": limit,
            "target_ratio": target,
            "meets_target": None if target is None else bool(ratio <= target),
            "threads": prep.threads,
            **meta,
        }
        rows.append(row)
    return rows


class _Progress:
    """tqdm when installed and asked for, else one line per case on stderr."""

    def __init__(self, total: int, enabled: bool, stream: TextIO) -> None:
        self.bar = None
        self.total = total
        self.n = 0
        self.enabled = enabled
        self.stream = stream
        if enabled:
            try:
                from tqdm import tqdm
            except Exception:
                self.bar = None
            else:
                self.bar = tqdm(total=total, file=stream, unit="case",
                                dynamic_ncols=True, leave=False)

    def start(self, name: str) -> None:
        if self.bar is not None:
            self.bar.set_description(name)
        elif self.enabled:
            print(f"[{self.n + 1}/{self.total}] {name}", file=self.stream, flush=True)

    def done(self) -> None:
        self.n += 1
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run_cases(
    cases: Iterable[Case], repeats: int = DEFAULT_REPEATS,
    budget_s: float = DEFAULT_BUDGET_S, backend: str = "numpy",
    progress: bool = True, stream: TextIO | None = None, warmup: bool = True,
) -> list[dict[str, Any]]:
    """Run ``cases`` and return their rows (raises :class:`BenchValidationError`).

    ``warmup=False`` skips the extra untimed round (``--quick``)."""
    cases = list(cases)
    stream = stream if stream is not None else sys.stderr
    bar = _Progress(len(cases), progress, stream)
    rows: list[dict[str, Any]] = []
    meta: dict[str, Any] | None = None
    try:
        for case in cases:
            bar.start(case.name)
            case_rows = run_case(case, repeats, budget_s, backend, {}, warmup)
            if meta is None:  # after the first case: scipy/torch/BLAS are loaded
                meta = {"machine": machine_info(backend),
                        "date": datetime.datetime.now(datetime.timezone.utc)
                        .isoformat(timespec="seconds"),
                        "git_commit": git_commit()}
            for r in case_rows:
                r.update(meta)
            rows += case_rows
            bar.done()
    finally:
        bar.close()
    return rows


# ----------------------------------------------------------------------------
# CUDA rows (written by the GPU engineers; loaded lazily)
# ----------------------------------------------------------------------------

GPU_BENCH = {
    "conv": ("bench_gpu_conv", "run_conv_bench"),
    "filter": ("bench_gpu_filter", "run_filter_bench"),
}


def bench_dir() -> Path:
    """The repository's ``bench/`` folder (next to the ``gpuconv`` package)."""
    return Path(__file__).resolve().parent.parent / "bench"


def load_gpu_bench(kind: str) -> Callable[..., Any]:
    """``run_conv_bench`` or ``run_filter_bench``: from ``bench/<module>.py`` by
    file path, else from ``gpuconv.<module>`` or ``gpuconv._<module>``."""
    module, func = GPU_BENCH[kind]
    path = bench_dir() / f"{module}.py"
    tried = [str(path)]
    if path.is_file():
        spec = importlib.util.spec_from_file_location(f"_gpuconv_{module}", path)
        mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        sys.modules[spec.name] = mod  # type: ignore[union-attr]
        spec.loader.exec_module(mod)  # type: ignore[union-attr]
        if hasattr(mod, func):
            return getattr(mod, func)
        tried[-1] += f" (no {func})"
    for name in (f"gpuconv.{module}", f"gpuconv._{module}"):
        tried.append(name)
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError:
            continue
        if hasattr(mod, func):
            return getattr(mod, func)
    raise BenchUnavailable(f"{func} not found (looked in {', '.join(tried)})")


def run_gpu(which: str, quick: bool, repeats: int | None,
            progress: bool) -> list[dict[str, Any]]:
    """Rows of the CUDA benchmark (raises :class:`BenchUnavailable` with the reason)."""
    from gpuconv import _backend

    reason = _backend.cuda_unavailable_reason()
    if reason is not None:
        raise BenchUnavailable(f"backend 'cuda' is not available: {reason}")
    kinds = ["filter", "conv"] if which == "all" else [which]
    fns = [load_gpu_bench(kind) for kind in kinds]  # all found before any runs
    offered = {"quick": quick, "repeats": repeats, "progress": progress}
    meta = {"machine": machine_info("cuda"),
            "date": datetime.datetime.now(datetime.timezone.utc)
            .isoformat(timespec="seconds"),
            "git_commit": git_commit()}
    rows: list[dict[str, Any]] = []
    for fn in fns:
        params = inspect.signature(fn).parameters
        kwargs = {k: v for k, v in offered.items()
                  if k in params and not (k == "repeats" and v is None)}
        for r in fn(**kwargs) or []:
            row = {"backend": "cuda", **meta, **dict(r)}
            row.setdefault("median", row.get("median_s"))
            rows.append(row)
    return rows


# ----------------------------------------------------------------------------
# Output: table, JSON, plot
# ----------------------------------------------------------------------------


def _fmt_s(s: Any) -> str:
    if s is None:
        return "-"
    s = float(s)
    return f"{s * 1e3:.2f}" if s < 10 else f"{s * 1e3:.0f}"


def _fmt_rate(row: dict[str, Any], key: str) -> str:
    v = row.get(key)
    if v is None:
        return "-"
    unit = {"gflops": "GFLOP/s", "mpx_s": "Mpx/s", "gpx_s": "Gpx/s"}.get(
        row.get("unit", ""), row.get("unit", ""))
    return f"{v:.1f} {unit}" if v < 100 else f"{v:.0f} {unit}"


def _rate_of(row: dict[str, Any], peer: bool = False) -> Any:
    pre = "peer_" if peer else ""
    for key in ("rate", "gflops", "gpx_s", "mpx_s"):
        if row.get(pre + key) is not None:
            if key != "rate" and "unit" not in row:
                row["unit"] = key
            return row[pre + key]
    return None


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as an aligned text table."""
    head = ("case", "peer", "ours ms", "peer ms", "ratio", "ours rate", "peer rate",
            "target")
    lines_data = []
    for r in rows:
        rr = dict(r)
        rr["rate"], rr["peer_rate"] = _rate_of(rr), _rate_of(rr, peer=True)
        ratio = rr.get("ratio")
        tgt = rr.get("target_ratio")
        if tgt is None:
            target = ""
        else:
            met = rr.get("meets_target")
            target = f"<={tgt:g} " + ("ok" if met else "MISSED")
        if rr.get("meets_floor") is not None:  # GPU rows: share of the memory floor
            target += " floor " + ("ok" if rr["meets_floor"] else "MISSED")
        if rr.get("error"):
            target = f"ERROR {rr['error']}"
        lines_data.append((
            str(rr.get("case", "?")), str(rr.get("peer") or "-"),
            _fmt_s(rr.get("median_s")), _fmt_s(rr.get("peer_median_s")),
            "-" if ratio is None else f"{ratio:.3g}",
            _fmt_rate(rr, "rate"), _fmt_rate(rr, "peer_rate"), target,
        ))
    widths = [max(len(x[i]) for x in [head, *lines_data]) for i in range(len(head))]
    out = ["  ".join(h.ljust(wd) for h, wd in zip(head, widths, strict=True)).rstrip(),
           "  ".join("-" * wd for wd in widths)]
    out += ["  ".join(v.ljust(wd) for v, wd in zip(x, widths, strict=True)).rstrip()
            for x in lines_data]
    return "\n".join(out)


def summary(rows: Sequence[dict[str, Any]]) -> str:
    """One line: how many targets were met."""
    with_target = [r for r in rows if r.get("target_ratio") is not None]
    if not with_target:
        return "no row has a target (peer not installed?)"
    met = sum(1 for r in with_target if r.get("meets_target"))
    return f"targets met: {met} of {len(with_target)} (ratio = ours/peer time)"


def write_json(rows: Sequence[dict[str, Any]], path: str | os.PathLike[str],
               argv: Sequence[str] | None = None) -> None:
    """Write ``{"argv": ..., "rows": [...]}`` (every row carries machine/date/git)."""
    doc = {"format": "gpuconv-bench/1", "argv": list(argv or []), "rows": list(rows)}
    Path(path).write_text(json.dumps(doc, indent=1, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def read_json_rows(paths: Iterable[str | os.PathLike[str]]) -> list[dict[str, Any]]:
    """Rows of one or more files written by :func:`write_json` (or bare lists)."""
    rows: list[dict[str, Any]] = []
    for p in paths:
        doc = json.loads(Path(p).read_text())
        rows += doc["rows"] if isinstance(doc, dict) else doc
    return rows


def check_plot_available() -> str | None:
    """``None`` if matplotlib can be imported, else why not."""
    try:
        import matplotlib  # noqa: F401
    except Exception as exc:
        return (f"--plot needs matplotlib ({exc!r}); install it with "
                "pip install 'gpuconv[bench]'")
    return None


def plot_rows(rows: Sequence[dict[str, Any]], path: str | os.PathLike[str],
              title: str | None = None) -> None:
    """Horizontal bar chart of ``ratio`` (log scale; a line at 1, targets marked)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r.get("ratio") is not None]
    labels = [f"{r['case']}  vs {r['peer']}" for r in rows]
    ratios = [float(r["ratio"]) for r in rows]
    colors = ["tab:gray" if r.get("meets_target") is None else
              "tab:green" if r["meets_target"] else "tab:red" for r in rows]
    fig, ax = plt.subplots(figsize=(11, 0.28 * len(rows) + 1.6))
    ypos = np.arange(len(rows))
    ax.barh(ypos, ratios, color=colors)
    for y, r in zip(ypos, rows, strict=True):
        if r.get("target_ratio") is not None:
            ax.plot([r["target_ratio"]] * 2, [y - 0.4, y + 0.4], color="black", lw=1)
    ax.axvline(1.0, color="black", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.set_yticks(ypos)
    ax.set_yticklabels(labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("time ratio gpuconv / peer (log scale; < 1: gpuconv is faster)\n"
                  "black ticks: targets; green: met, red: missed, gray: no target")
    if title is None and rows:
        m = rows[0].get("machine") or {}
        title = (f"gpuconv bench ({rows[0].get('backend')}): "
                 f"{m.get('device') or m.get('cpu', '')}, {rows[0].get('date', '')}")
    ax.set_title(title or "gpuconv bench", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
