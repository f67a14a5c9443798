"""``python -m gpuconv bench --overhead``: the host cost of one call on the CUDA path.

Small problems, calls back to back, so that the GPU work (a few µs) is not what is
timed. Two measurements:

``null-device`` (any machine)
    The public API on the stand-in CuPy with a device whose launches do nothing
    (:func:`gpuconv._null_device.null_cuda`): gpuconv's own Python work per call
    (argument checks, plan cache, allocation, binding of the launch arguments).
    Reference: ``scipy.signal.convolve2d`` of an 8x8 image on the same machine (a
    thin Python wrapper over C), so that the ratio travels between machines.
    Targets (issue 15): convolve2d <= 25 µs, conv2d <= 20 µs, conv2d_backward
    (all three gradients) <= 45 µs per call; the 1-D convolve/correlate are held
    to convolve2d's 25 µs.
``cuda`` (where CuPy has a device)
    Wall time per call on the GPU (synchronised after each batch), next to the
    peers: ``cupyx.scipy.signal.convolve2d`` and ``cupyx.scipy.ndimage.convolve``
    for the filter, ``cupy.convolve``/``cupy.correlate`` for the 1-D calls,
    ``torch.nn.functional.conv2d`` and ``torch.ops.aten.convolution_backward`` for
    conv2d (each where installed).
    Target: within 1.3x of the peer.

Rows have the keys of :data:`gpuconv._bench.ROW_KEYS` (``unit`` is ``'us'``,
``rate`` the µs per call) plus ``target_us``.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from typing import Any

import numpy as np

#: (case name, op, shape text, target µs on the null device)
CASES = (
    ("convolve2d 256^2 k3 same", "convolve2d", "256x256 * 3x3", 25.0),
    ("convolve 4096 k7 same", "convolve", "4096 * 7", 25.0),
    ("correlate 4096 k7 valid", "correlate", "4096 * 7", 25.0),
    ("conv2d N1 C16 32^2 3x3 p1", "conv2d", "N1 C16 32x32 K16 3x3", 20.0),
    ("conv2d_backward (gx,gw,gb)", "conv2d_backward", "N1 C16 32x32 K16 3x3", 45.0),
)
#: Wall time on a GPU within this factor of the peer's (issue 15).
GPU_TARGET_RATIO = 1.3


def per_call(fn: Callable[[], Any], n: int, rounds: int = 20,
             sync: Callable[[], Any] | None = None) -> list[float]:
    """Seconds per call of ``fn`` in ``rounds`` batches of ``n // rounds`` calls
    (one untimed call first). Many short batches: on a shared machine the best of
    them is the one no other process interrupted."""
    fn()
    if sync is not None:
        sync()
    per = max(1, n // rounds)
    out = []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(per):
            fn()
        if sync is not None:
            sync()
        out.append((time.perf_counter() - t) / per)
    return out


def _inputs(xp: Any) -> dict[str, Any]:
    rng = np.random.default_rng(0)

    def arr(*shape: int) -> Any:
        return xp.asarray(rng.standard_normal(shape).astype(np.float32))

    return {"a": arr(256, 256), "k": arr(3, 3), "s": arr(4096), "v": arr(7),
            "x": arr(1, 16, 32, 32),
            "w": arr(16, 16, 3, 3), "gy": arr(1, 16, 32, 32)}


def _ours(v: dict[str, Any]) -> dict[str, Callable[[], Any]]:
    import gpuconv

    return {
        "convolve2d": lambda: gpuconv.convolve2d(v["a"], v["k"], mode="same"),
        "convolve": lambda: gpuconv.convolve(v["s"], v["v"], mode="same"),
        "correlate": lambda: gpuconv.correlate(v["s"], v["v"]),
        "conv2d": lambda: gpuconv.conv2d(v["x"], v["w"], padding=1),
        "conv2d_backward": lambda: gpuconv.conv2d_backward(
            v["gy"], v["x"], v["w"], padding=1),
    }


def _row(meta: dict[str, Any], backend: str, case: tuple, times: list[float],
         peer: str | None, peer_times: list[float] | None, target_us: float | None,
         target_ratio: float | None) -> dict[str, Any]:
    name, op, shape, _ = case
    med = float(np.median(times))
    best = float(np.min(times))
    peer_med = None if peer_times is None else float(np.median(peer_times))
    # best of the rounds (host noise only adds): the ratio of the minima
    ratio = None if peer_times is None else best / float(np.min(peer_times))
    if target_ratio is not None and ratio is not None:
        meets: bool | None = ratio <= target_ratio
    elif target_us is not None:
        meets = best * 1e6 <= target_us
    else:
        meets = None
    return {
        "case": f"overhead {name}", "op": op, "shape": shape, "dtype": "float32",
        "backend": backend, "median": med, "median_s": med, "min_s": best,
        "repeats": len(times), "peer": peer, "peer_median_s": peer_med,
        "ratio": ratio, "unit": "us", "rate": best * 1e6,
        "peer_rate": None if peer_times is None else float(np.min(peer_times)) * 1e6,
        "gflops": None, "peer_gflops": None, "mpx_s": None, "peer_mpx_s": None,
        "max_err": None, "err_limit": None, "target_ratio": target_ratio,
        "meets_target": meets, "threads": None, "target_us": target_us, **meta,
    }


def _meta(backend: str) -> dict[str, Any]:
    from gpuconv import _bench

    return {"machine": _bench.machine_info(backend),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds"),
            "git_commit": _bench.git_commit()}


def run_null(quick: bool = False) -> list[dict[str, Any]]:
    """Rows of the null-device measurement (works on any machine)."""
    import scipy.signal

    from gpuconv._null_device import null_cuda

    n = 200 if quick else 2000
    meta = _meta("numpy")
    a8, k3 = np.ones((8, 8)), np.ones((3, 3))
    ref = per_call(lambda: scipy.signal.convolve2d(a8, k3, mode="same"), n)
    rows = []
    with null_cuda() as dev:
        fns = _ours(_inputs(dev.xp))
        for case in CASES:
            launches0 = dev.launches
            times = per_call(fns[case[1]], n)
            if dev.launches == launches0:
                raise RuntimeError(f"{case[1]} launched nothing on the null device")
            rows.append(_row(meta, "null-device", case, times,
                             "scipy.signal.convolve2d 8x8 (host reference)", ref,
                             case[3], None))
    return rows


def _gpu_peers(cp: Any, v: dict[str, Any]) -> dict[str, dict[str, Callable]]:
    peers: dict[str, dict[str, Callable]] = {op: {} for _, op, _, _ in CASES}
    try:
        import cupyx.scipy.ndimage as ndi
        import cupyx.scipy.signal as sig

        peers["convolve2d"]["cupyx.scipy.signal.convolve2d"] = (
            lambda: sig.convolve2d(v["a"], v["k"], mode="same"))
        peers["convolve2d"]["cupyx.scipy.ndimage.convolve"] = (
            lambda: ndi.convolve(v["a"], v["k"], mode="constant"))
        peers["convolve"]["cupy.convolve"] = (
            lambda: cp.convolve(v["s"], v["v"], mode="same"))
        peers["correlate"]["cupy.correlate"] = (
            lambda: cp.correlate(v["s"], v["v"]))
    except Exception:  # pragma: no cover - needs a GPU
        pass
    try:
        import torch
        import torch.nn.functional as F

        if torch.cuda.is_available():
            t = {k: torch.as_tensor(a, device="cuda") for k, a in v.items()}
            peers["conv2d"]["torch.nn.functional.conv2d"] = (
                lambda: F.conv2d(t["x"], t["w"], padding=1))
            peers["conv2d_backward"]["torch convolution_backward"] = (
                lambda: torch.ops.aten.convolution_backward(
                    t["gy"], t["x"], t["w"], [16], [1, 1], [1, 1], [1, 1], False,
                    [0, 0], 1, [True, True, True]))
    except Exception:  # pragma: no cover - needs a GPU
        pass
    return peers


def run_gpu(quick: bool = False) -> list[dict[str, Any]]:
    """Rows of the wall-time measurement on the current GPU (CuPy with a device),
    or ``[]`` where there is none."""
    from gpuconv import _backend

    cp = _backend.cupy_module()
    if cp is None:
        return []
    n = 200 if quick else 2000
    meta = _meta("cuda")
    v = _inputs(cp)
    fns = _ours(v)
    peers = _gpu_peers(cp, v)
    sync = cp.cuda.Device().synchronize
    rows = []
    for case in CASES:
        ours = per_call(fns[case[1]], n, sync=sync)
        if not peers[case[1]]:
            rows.append(_row(meta, "cuda", case, ours, None, None, None, None))
        for peer, fn in peers[case[1]].items():
            rows.append(_row(meta, "cuda", case, ours, peer,
                             per_call(fn, n, sync=sync), None, GPU_TARGET_RATIO))
    return rows


def run(quick: bool = False) -> list[dict[str, Any]]:
    """The null-device rows, then the GPU rows where CuPy has a device."""
    return run_null(quick) + run_gpu(quick)


def format_rows(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'backend':12s} {'case':32s} {'us/call':>8s}  {'peer':44s} "
             f"{'us/call':>8s} {'ratio':>6s}  target"]
    for r in rows:
        peer_us = "" if r["peer_rate"] is None else f"{r['peer_rate']:8.1f}"
        ratio = "" if r["ratio"] is None else f"{r['ratio']:6.2f}"
        if r["target_us"] is not None:
            target = f"<= {r['target_us']:.0f} us"
        elif r["target_ratio"] is not None:
            target = f"ratio <= {r['target_ratio']}"
        else:
            target = ""
        ok = {True: " ok", False: " MISSED", None: ""}[r["meets_target"]]
        lines.append(f"{r['backend']:12s} {r['case'][9:]:32s} {r['rate']:8.1f}  "
                     f"{str(r['peer'] or ''):44s} {peer_us:>8s} {ratio:>6s}  "
                     f"{target}{ok}")
    return "\n".join(lines)
