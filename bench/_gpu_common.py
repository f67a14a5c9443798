"""Helpers shared by the GPU scripts of ``bench/`` (the two benchmarks and the
compute-sanitizer workloads): the repository on ``sys.path``, the device name,
CUDA-event timing, the copy bandwidth, the rows' JSON file, the failure rule, the
ratio chart and the start of a run.

The scripts are run standalone (``python bench/<script>.py``: ``bench/`` is then on
``sys.path``) or loaded by file path (``gpuconv._bench``, the tests), in which case
each puts ``bench/`` on ``sys.path`` before importing this module.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def repo_on_path() -> None:
    """Put the repository root (the folder above ``bench/``) on ``sys.path``."""
    root = str(Path(__file__).resolve().parent.parent)
    if root not in sys.path:
        sys.path.insert(0, root)


def device_name(cp: Any) -> str:
    try:
        props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
        name = props["name"]
    except Exception as exc:  # pragma: no cover - depends on the CUDA version
        return f"unknown CUDA device ({type(exc).__name__})"
    return name.decode() if isinstance(name, bytes) else str(name)


def _int_or_none(read: Callable[[], Any]) -> int | None:
    try:
        return int(read())
    except Exception:
        return None


def device_facts(cp: Any) -> dict[str, Any]:
    """The current device's ``sms``, ``clock_khz`` (maximum SM clock), ``cc``
    (``(major, minor)``) and ``l2_bytes``; ``None`` for a fact no source gave.

    Each fact is tried from every source CuPy has, first found wins, because the
    sources differ between versions: ``Device.attributes`` (CuPy 14 builds it from
    the ``cudaDevAttr*`` constants it exports, which no longer include
    ``ComputeCapabilityMajor``/``Minor``: ``KeyError`` on the H200, 2026-12-04),
    ``runtime.getDeviceProperties`` (CUDA 13 removed ``clockRate`` from it),
    ``runtime.deviceGetAttribute`` and ``Device.compute_capability`` (``'90'``).
    """
    dev = cp.cuda.Device()
    dev_id = getattr(dev, "id", 0)
    runtime = getattr(cp.cuda, "runtime", None)
    attrs: dict[str, Any] = {}
    props: dict[str, Any] = {}
    try:
        attrs = dict(dev.attributes)
    except Exception:
        pass
    try:
        props = dict(runtime.getDeviceProperties(dev_id))
    except Exception:
        pass

    def pick(attr: str, prop: str | None) -> int | None:
        for read in (
            lambda: attrs[attr],
            lambda: props[prop],
            lambda: runtime.deviceGetAttribute(
                getattr(runtime, f"cudaDevAttr{attr}"), dev_id
            ),
        ):
            v = _int_or_none(read)
            if v is not None:
                return v
        return None

    cc = None
    try:
        s = str(dev.compute_capability)
    except Exception:
        s = ""
    if s.isdigit() and len(s) >= 2:
        cc = (int(s[:-1]), int(s[-1]))
    if cc is None:
        major = pick("ComputeCapabilityMajor", "major")
        minor = pick("ComputeCapabilityMinor", "minor")
        if major is not None and minor is not None:
            cc = (major, minor)
    return {
        "sms": pick("MultiProcessorCount", "multiProcessorCount"),
        "clock_khz": pick("ClockRate", "clockRate"),
        "cc": cc,
        "l2_bytes": pick("L2CacheSize", "l2CacheSize"),
    }


def time_gpu(cp: Any, fn: Callable[[], Any],
             flush: Callable[[], None] | None = None, *, warmup: int = 3,
             min_repeats: int = 5, max_repeats: int = 100,
             budget_s: float = 0.3) -> tuple[float, float, int]:
    """``(median, min, repeats)`` seconds of ``fn`` between CUDA events, after
    ``warmup`` untimed calls; at least ``min_repeats`` timed calls, more while under
    ``budget_s`` seconds and ``max_repeats`` calls. ``flush`` (e.g. an L2 eviction)
    is called before each timed call, outside the events."""
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


def copy_bandwidth(cp: Any, nbytes: int = 1 << 30, repeats: int = 10) -> float:
    """Device-to-device copy bandwidth in bytes/s, counting read + write (the
    median of ``repeats`` copies of ``nbytes`` after one warm-up copy)."""
    src = cp.ones(nbytes // 4, dtype=cp.float32)
    dst = cp.empty_like(src)

    def copy() -> None:
        dst[...] = src

    med, _, _ = time_gpu(cp, copy, warmup=1, min_repeats=repeats,
                         max_repeats=repeats)
    return 2 * nbytes / med


def write_rows(path: str | Path, rows: list[dict[str, Any]],
               meta: dict[str, Any]) -> None:
    """Write ``{"format", "argv", ..., "rows"}`` atomically (temp file + rename)."""
    doc = {"format": "gpuconv-bench/1", **meta, "rows": rows}
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1, default=_json_default) + "\n")
    tmp.replace(path)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    return str(o)


def failed(rows: list[dict[str, Any]]) -> bool:
    """True when a row failed validation or raised (a refusal, e.g. a ``tiled``
    tile beyond shared memory, is not a failure)."""
    return any(r.get("error_kind") in ("validation", "exception") for r in rows)


def plot_auto_rows(rows: list[dict[str, Any]], path: str, prog: str) -> None:
    """The ratio chart of ``gpuconv._bench`` of the ``auto`` rows (skipped with a
    warning without matplotlib: the rows matter more than the chart)."""
    from gpuconv import _bench

    why = _bench.check_plot_available()
    if why is not None:
        print(f"{prog}: warning: {why}; no plot written", file=sys.stderr)
        return
    _bench.plot_rows([r for r in rows if r.get("variant") == "auto"], path)


def start_run(prog: str, argv: list[str] | None) -> dict[str, Any] | None:
    """The ``argv``/``date`` metadata of a standalone run, or None (after saying
    why on stderr) when the ``cuda`` backend is not available."""
    repo_on_path()
    from gpuconv import _backend

    reason = _backend.cuda_unavailable_reason()
    if reason is not None:
        print(f"{prog}: backend 'cuda' is not available: {reason}", file=sys.stderr)
        return None
    return {"argv": sys.argv if argv is None else [f"{prog}.py", *argv],
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def row_saver(path: str | None, meta: dict[str, Any],
              ) -> tuple[list[dict[str, Any]], Callable[[list[dict[str, Any]]], None]]:
    """``(rows, save)``: ``save(new_rows)`` appends to ``rows`` and, with a
    ``path``, rewrites the JSON file (written empty at once: the run started)."""
    rows: list[dict[str, Any]] = []

    def save(new_rows: list[dict[str, Any]]) -> None:
        rows.extend(new_rows)
        if path:
            write_rows(path, rows, meta)

    if path:
        write_rows(path, rows, meta)
    return rows, save


def sanitize_workload(prog: str,
                      workload: Callable[[Any], tuple[int, int]]) -> int:
    """Run a compute-sanitizer workload: CuPy's memory pool off first (a pooled
    sub-allocation would hide an out-of-bounds access inside a larger block,
    rapidsai/rmm#1899), then ``workload(cupy) -> (results, wrong)``; prints the
    count and returns 1 on a wrong result."""
    repo_on_path()
    import cupy as cp

    cp.cuda.set_allocator(None)
    cp.cuda.set_pinned_memory_allocator(None)
    runs, bad = workload(cp)
    cp.cuda.Device().synchronize()
    print(f"{prog}: {runs} results, {bad} wrong")
    return 1 if bad else 0
