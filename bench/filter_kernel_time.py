"""Kernel time of ``filter2d_tiled`` against the copy bandwidth, per staging (GPU).

Issue 16's criterion: the compile-time instances (float32/float64, square k = 3, 5,
7, 9) at >= 85 % of the measured device-to-device copy bandwidth, in kernel time,
for 4096² and larger 'same'/fill problems. A bound launch of the planned instance
(``gpuconv._plan_filter.plan_filter``) is called ``--batch`` times back to back
between two CUDA events, so the host's launch time (a few us) hides under the
kernels (30-300 us each); two input/output pairs alternate so that the 50 MB L2
never holds the next launch's input. Per case and staging of the interior tiles:

- ``async``: the default, cp.async copies of the whole tile (kernel flag bit 2 off);
- ``regs``: the register-staged loader (bit 2 on: ``REGISTER_STAGED``).

Columns: median kernel time (us) of ``--repeats`` batches, bytes moved at the
floor (one read and one write per pixel: ``2 * itemsize * n²``) per second, and
that as a share of the copy bandwidth (``_gpu_common.copy_bandwidth``: 1 GiB
copies, read + write). The two stagings' outputs must be bit-identical (exit 1
otherwise). With ``--json`` the rows are written for ``bench/results``.

Where the compile-time instance has registered ``RY`` alternatives
(``gpuconv._plan_filter.RY_ALTERNATIVES``: ``RY = 4`` beside the planned ``RY = 2``
of 5x5, ``RY = 2`` beside the planned ``RY = 4`` of 7x7 and 9x9), each is also timed
with the planner's staging and block choice for that ``RY`` (rows ``ry2``/``ry4``,
outputs checked against the default launch): the rows that say whether the
planner's ``RY`` is the faster (``--no-ry`` skips them).

Where a persistent, double-buffered instance is registered
(``gpuconv._plan_filter.PIPELINED``: float32/float64 3x3 and 5x5), it is timed too
(rows ``pipelined``: ``plan_filter(..., pipelined=True)``, its grid sized for the
device's SMs and shared memory per SM; outputs checked against the default launch;
``--no-pipelined`` skips them): the rows that say whether overlapping the next
tile's loads with this tile's taps moves the DRAM-bound cases towards the copy
bandwidth.

With ``--blocks 32x8 64x4 ...`` each case is also timed with those thread blocks
forced (the planner's staging; rows ``block-BXxBY``, outputs checked against the
default launch): the sweep that says whether the planner's block is the fastest.

With ``--stack 4096x64`` stacks of B images of n² (one launch, the batch over grid
z) are timed too (rows ``.../4096x64x64/...``): beside the one-image rows of the
same pixel count they say whether the kernel or the host makes a stack slower per
pixel (issue 16: 0.74-0.79x the single image's rate in whole calls at 491e4e5).

    PYTHONPATH=. python bench/filter_kernel_time.py [--n 4096 8192] [--k 3 5 7 9]
        [--dtypes float32 float64] [--batch 20] [--repeats 5] [--blocks 32x8 ...]
        [--stack 4096x64 ...] [--no-ry] [--no-pipelined] [--json out.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _gpu_common as gc

gc.repo_on_path()

from gpuconv import _plan_filter as pf  # noqa: E402
from gpuconv._filter_args import FilterProblem  # noqa: E402


def _time_batch(cp, calls, batch: int, repeats: int) -> float:
    """Median seconds per call of ``batch`` calls between events (alternating)."""
    for c in calls:
        c()
    cp.cuda.Device().synchronize()
    start, end = cp.cuda.Event(), cp.cuda.Event()
    times = []
    for _ in range(repeats):
        start.record()
        for i in range(batch):
            calls[i % len(calls)]()
        end.record()
        end.synchronize()
        times.append(cp.cuda.get_elapsed_time(start, end) / 1e3 / batch)
    return float(np.median(times))


def _smem_per_sm(cp) -> int | None:
    """Shared memory per SM of the current device, or ``None``."""
    try:
        v = cp.cuda.Device().attributes["MaxSharedMemoryPerMultiprocessor"]
        return int(v) if int(v) > 0 else None
    except Exception:
        return None


def _shape_label(b: int, n: int) -> str:
    """``4096x4096`` for one image, ``4096x64x64`` for a stack of 4096 images."""
    return f"{n}x{n}" if b == 1 else f"{b}x{n}x{n}"


def _variant_row(cp: Any, dev: Any, args: Any, case: tuple, launches: list,
                 out: Any, want: Any, staging: str, extra: dict) -> dict:
    """Time another launch of a case's problem (its output ``out`` checked against
    the default's ``want``) and return its row (``error`` set on a mismatch)."""
    name, bw, dt, b, n, k = case
    calls = [lambda la=la: dev.launch(la) for la in launches]
    t = _time_batch(cp, calls, args.batch, args.repeats)
    gbs = 2 * np.dtype(dt).itemsize * b * n * n / t / 1e9
    shape = _shape_label(b, n)
    print(f"{f'{dt} {shape} k{k}':24s} {staging:7s} {t * 1e6:8.1f} "
          f"{gbs:6.0f} {100 * gbs * 1e9 / bw:6.1f}")
    row = {
        "device": name, "case": f"filter2d_tiled/{staging}/{shape}/k{k}/{dt}",
        "kernel": launches[0].kernel, "staging": staging, **extra,
        "block": list(launches[0].block[:2]), "n": n, "B": b, "k": k, "dtype": dt,
        "kernel_s": t, "floor_gbs": gbs, "copy_bandwidth_gbs": bw / 1e9,
        "share_of_copy": gbs * 1e9 / bw,
    }
    if not bool(cp.array_equal(out, want)):
        print(f"MISMATCH {dt} {_shape_label(b, n)} k{k}: {staging} differs")
        row["error"] = f"{staging} differs from the default launch"
    return row


def main(argv: list[str] | None = None, cp=None, dev=None) -> int:
    """Runs the table; ``cp``/``dev`` replace CuPy and its device (a smoke test
    with the CPU emulation harness)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, nargs="+", default=[4096, 8192])
    ap.add_argument("--k", type=int, nargs="+", default=[3, 5, 7, 9])
    ap.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--blocks", nargs="+", default=[],
                    help="also time these forced thread blocks (BXxBY, e.g. 32x8), "
                    "with the planner's staging: rows 'block-BXxBY'")
    ap.add_argument("--no-ry", action="store_true",
                    help="skip the registered RY alternatives (rows 'ryN')")
    ap.add_argument("--no-pipelined", action="store_true",
                    help="skip the persistent, double-buffered instances "
                    "(rows 'pipelined')")  # fmt: skip
    ap.add_argument("--stack", nargs="+", default=[],
                    help="also time stacks of B images of n x n (BxN, e.g. 4096x64: "
                    "issue 16's many small images, at the per-pixel rate of one "
                    "large image?), rows '.../BxNxN/...'")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    shapes = [(1, n) for n in args.n] + [
        tuple(int(v) for v in s.split("x")) for s in args.stack]
    blocks = [tuple(int(v) for v in b.split("x")) for b in args.blocks]
    if cp is None:
        import cupy as cp

        from gpuconv._kernels import CupyDevice

        dev = CupyDevice()
    bw = gc.copy_bandwidth(cp)
    name = gc.device_name(cp)
    # the pipelined grid: SMs and shared memory per SM (None: the planner's H200
    # defaults)
    facts = {"sms": gc.device_facts(cp)["sms"], "smem_per_sm": _smem_per_sm(cp)}
    print(f"{name}: copy bandwidth {bw / 1e9:.0f} GB/s (read + write)")
    print(f"{'case':24s} {'staging':7s} {'us':>8s} {'GB/s':>6s} {'%copy':>6s}")
    rows, bad = [], False
    rng = np.random.default_rng(0)
    for dt in args.dtypes:
        for b, n in shapes:
            xs = [cp.asarray(rng.integers(-8, 8, (b, n, n)).astype(dt)) for _ in "ab"]
            outs = [cp.empty_like(x) for x in xs]
            shape = _shape_label(b, n)
            for k in args.k:
                w = cp.asarray(rng.integers(-4, 4, (1, k, k)).astype(dt))
                fp = FilterProblem(b, n, n, 1, k, k, k // 2, k // 2, n, n, "fill",
                                   0.0, np.dtype(dt))  # fmt: skip
                results = {}
                for staging in ("async", "regs"):
                    calls = []
                    for x, out in zip(xs, outs, strict=True):
                        (launch,) = pf.plan_filter(fp, x, w, out, "tiled")
                        if staging == "regs":
                            a = launch.args
                            flags = np.int32(int(a[-1]) | 4)
                            launch = dataclasses.replace(launch, args=(*a[:-1], flags))
                        calls.append(lambda la=launch: dev.launch(la))
                    t = _time_batch(cp, calls, args.batch, args.repeats)
                    results[staging] = outs[0].copy()
                    gbs = 2 * np.dtype(dt).itemsize * b * n * n / t / 1e9
                    case = f"{dt} {shape} k{k}"
                    print(f"{case:24s} {staging:7s} {t * 1e6:8.1f} {gbs:6.0f} "
                          f"{100 * gbs * 1e9 / bw:6.1f}")  # fmt: skip
                    rows.append({
                        "device": name,
                        "case": f"filter2d_tiled/{staging}/{shape}/k{k}/{dt}",
                        "kernel": launch.kernel, "staging": staging, "n": n, "B": b,
                        "k": k,
                        "dtype": dt, "kernel_s": t, "floor_gbs": gbs,
                        "copy_bandwidth_gbs": bw / 1e9, "share_of_copy": gbs * 1e9 / bw,
                    })  # fmt: skip
                regs_row = rows[-1]  # (the 'regs' row, checked against 'async' below)
                # other launches of the same problem, each checked against the default
                variants = []
                alts = () if args.no_ry else pf.RY_ALTERNATIVES.get(k, ())
                for ry in alts:  # the planner's staging and block, another RY
                    if pf.tiled_config(fp, ry_override=ry) is not None:
                        variants.append((f"ry{ry}", [
                            pf.plan_filter(fp, x, w, out, "tiled", ry=ry)[0]
                            for x, out in zip(xs, outs, strict=True)], {"ry": ry}))
                if pf.pipelined_registered(fp) and not args.no_pipelined:
                    launches = [
                        pf.plan_filter(fp, x, w, out, "tiled", pipelined=True,
                                       sm_count=facts["sms"],
                                       smem_per_sm=facts["smem_per_sm"])[0]
                        for x, out in zip(xs, outs, strict=True)
                    ]  # fmt: skip
                    variants.append(("pipelined", launches,
                                     {"grid": int(launches[0].grid[0])}))
                for block in blocks:  # the planner's staging, a forced block
                    if pf.tiled_config(fp, block) is not None:  # fits the shared memory
                        variants.append((f"block-{block[0]}x{block[1]}", [
                            pf.plan_filter(fp, x, w, out, "tiled", block=block)[0]
                            for x, out in zip(xs, outs, strict=True)], {}))
                for staging, launches, extra in variants:
                    row = _variant_row(cp, dev, args, (name, bw, dt, b, n, k),
                                       launches, outs[0], results["async"], staging,
                                       extra)  # fmt: skip
                    rows.append(row)
                    bad = bad or "error" in row
                if not bool(cp.array_equal(results["async"], results["regs"])):
                    print(f"MISMATCH {dt} {shape} k{k}: async and regs outputs differ")
                    regs_row["error"] = "async and regs outputs differ"
                    bad = True
    if args.json:
        gc.write_rows(args.json, rows, {"argv": sys.argv})
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
