"""gpuconv.dask on a local Dask cluster: 1 worker against 2 workers.

    python bench/bench_dask.py                      # 8192^2 image, 15x15 'same' symm
    python bench/bench_dask.py --size 4096 --kernel 7 --chunk 1024 --json out.json
    python bench/bench_dask.py --op conv2d          # N=128, 64->64 channels, 56^2, 3x3

For each worker count a fresh ``distributed.LocalCluster`` (``processes=True``,
one thread per worker, 127.0.0.1, BLAS/OpenMP limited to one thread per worker so
that the worker count is the parallelism) is started; the input is generated *on
the workers* and persisted first (not timed), then each timed run builds the graph,
computes the chunked result and keeps it on the workers (``persist`` + ``wait``,
so the time is the computation and its halo exchange, not a copy of the result to
the client); the task stream gives each worker's computing time, and "busy" is
their sum over ``workers x wall time`` (100%: no idle worker). Each configuration
is validated once against the whole-array call on a corner of the image (or the
first image of the batch). The time is the median of ``--repeats`` runs; the
speed-up is ``t(1 worker) / t(2 workers)``.

Measured numbers depend on what else runs on the machine: on a shared 2-core box
the speed-up is indicative only (the script prints the load average before and
after).

CuPy chunks (``--op convolve2d``; runs only where CuPy has a device, or with
``--null-device`` on the stand-in CuPy whose kernels do nothing, a CPU proxy of the
host cost): the image as one CuPy array, ``da.from_array(x, chunks=...,
asarray=False, name=False)`` (``name=False``: Dask would otherwise tokenise the
device array by pickling it, about 1 s for 1 GiB), then the chunked call with the
local ``sync`` and ``threads`` schedulers: the first call (graph, plans, kernel
loads) and the median of the later ones, next to the whole-array call, and the
task count. ``--cupy-only`` skips the cluster rows.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import numpy as np

ONE_THREAD = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "BLIS_NUM_THREADS": "1",
}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--op", choices=("convolve2d", "conv2d"), default="convolve2d")
    ap.add_argument("--size", type=int, default=8192, help="image side (convolve2d)")
    ap.add_argument("--kernel", type=int, default=None,
                    help="kernel side (default 15 for convolve2d, 3 for conv2d)")
    ap.add_argument("--chunk", type=int, default=2048, help="chunk side (convolve2d)")
    ap.add_argument("--batch", type=int, default=128, help="N (conv2d)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--json", default=None, help="write the rows to this file")
    ap.add_argument("--cupy-only", action="store_true",
                    help="only the CuPy-chunk rows (no cluster)")
    ap.add_argument("--null-device", action="store_true",
                    help="CuPy-chunk rows on the stand-in CuPy with a null device "
                    "(host cost only; any machine)")
    return ap.parse_args(argv)


def run_cupy(args: argparse.Namespace, cp, backend: str) -> list[dict]:
    """CuPy-chunk rows of ``--op convolve2d``: whole-array call vs chunked, with
    the local ``sync`` and ``threads`` schedulers."""
    import dask
    import dask.array as da

    import gpuconv
    import gpuconv.dask as gd

    if args.kernel is None:
        args.kernel = 15
    rng = np.random.default_rng(0)
    host = rng.standard_normal((args.size, args.size), dtype=np.float32)
    x = cp.asarray(host.astype(args.dtype))
    k = cp.asarray(rng.standard_normal((args.kernel, args.kernel)).astype(args.dtype))
    sync = cp.cuda.Device().synchronize
    opts = dict(mode="same", boundary="symm")

    def timed(fn):
        t0 = time.perf_counter()
        out = fn()
        sync()
        return time.perf_counter() - t0, out

    whole_times = []
    for _ in range(args.repeats + 1):
        t, want = timed(lambda: gpuconv.convolve2d(x, k, **opts))
        whole_times.append(t)
    whole = statistics.median(whole_times[1:])

    def chunked():
        dx = da.from_array(x, chunks=args.chunk, asarray=False, name=False)
        return gd.convolve2d(dx, k, **opts).compute()

    work = (f"{args.size}x{args.size} {args.dtype} CuPy array, {args.kernel}x"
            f"{args.kernel} 'same' symm, chunks {args.chunk}^2")
    tasks = len(dict(gd.convolve2d(da.from_array(x, chunks=args.chunk, asarray=False,
                                                 name=False), k, **opts)
                     .__dask_graph__()))
    rows = []
    for sched in ("sync", "threads"):
        with dask.config.set(scheduler=sched):
            first, got = timed(chunked)
            err = None  # the null device computes nothing: nothing to compare
            if backend != "null-device":
                err = float(abs(cp.asnumpy(got) - cp.asnumpy(want)).max())
            if err is not None and not err <= 1e-3 * max(
                    1.0, float(abs(cp.asnumpy(want)).max())):
                raise SystemExit(f"CuPy chunks ({sched}) differ from the whole "
                                 f"array by {err}")
            times = [timed(chunked)[0] for _ in range(args.repeats)]
        med = statistics.median(times)
        rows.append({"workers": f"local {sched}", "backend": backend,
                     "median_s": med, "times_s": times, "first_s": first,
                     "whole_s": whole, "ratio_to_whole": med / whole,
                     "tasks": tasks, "max_err": err, "work": work})
        print(f"CuPy chunks ({backend}, {sched}): first {first * 1e3:.1f} ms, then "
              f"median {med * 1e3:.1f} ms = {med / whole:.1f}x the whole-array call "
              f"({whole * 1e3:.2f} ms); {tasks} tasks", flush=True)
    return rows


def _problem(args: argparse.Namespace):
    """(make input on the workers, the gpuconv.dask call, a small check, work)."""
    import dask.array as da

    import gpuconv
    import gpuconv.dask as gd

    rng = np.random.default_rng(0)
    if args.kernel is None:
        args.kernel = 15 if args.op == "convolve2d" else 3
    if args.op == "convolve2d":
        k = rng.standard_normal((args.kernel, args.kernel)).astype(args.dtype)

        def make():
            gen = da.random.default_rng(1)
            return gen.standard_normal((args.size, args.size), chunks=args.chunk,
                                       dtype=args.dtype)

        def call(x):
            return gd.convolve2d(x, k, mode="same", boundary="symm")

        def check(x, y):
            m = min(args.size, 3 * args.kernel + 5)
            a = x[:m, :m].compute()
            ref = gpuconv.convolve2d(a, k, mode="same", boundary="symm")
            r = m - args.kernel  # rows/cols untouched by the cut-off corner
            got = y[:r, :r].compute()
            np.testing.assert_allclose(got, ref[:r, :r], rtol=1e-4, atol=1e-3)

        work = f"{args.size}x{args.size} {args.dtype}, {args.kernel}x{args.kernel}"
        work += f" 'same' symm, chunks {args.chunk}^2"
        return make, call, check, work
    w = rng.standard_normal((64, 64, args.kernel, args.kernel)).astype(args.dtype)
    shape = (args.batch, 64, 56, 56)

    def make():
        gen = da.random.default_rng(1)
        return gen.standard_normal(shape, chunks=(max(args.batch // 8, 1), 64, 56, 56),
                                   dtype=args.dtype)

    def call(x):
        return gd.conv2d(x, w, padding="same")

    def check(x, y):
        a = x[:1].compute()
        want = gpuconv.conv2d(a, w, padding="same")
        np.testing.assert_allclose(y[:1].compute(), want, rtol=1e-4, atol=1e-3)

    work = f"conv2d N={args.batch} 64->64 56x56 {args.kernel}x{args.kernel} 'same'"
    work += f", {args.dtype}, batch chunks of {max(args.batch // 8, 1)}"
    return make, call, check, work


def _busy(stream: list[dict]) -> dict[str, float]:
    """Seconds each worker spent computing tasks (from the task stream)."""
    out: dict[str, float] = {}
    for task in stream:
        for part in task.get("startstops", ()):
            if part.get("action") == "compute":
                out[task["worker"]] = out.get(task["worker"], 0.0) + (
                    part["stop"] - part["start"])
    return out


def run(args: argparse.Namespace) -> list[dict]:
    from distributed import Client, LocalCluster, get_task_stream, wait

    make, call, check, work = _problem(args)
    rows = []
    for n in args.workers:
        with LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                          host="127.0.0.1", dashboard_address=None,
                          env=ONE_THREAD) as cluster, Client(cluster) as client:
            x = make().persist()
            wait(x)
            check(x, call(x))  # validation and warm-up (imports on the workers)
            times, busy = [], []
            for _ in range(args.repeats):
                with get_task_stream(client) as ts:
                    t0 = time.perf_counter()
                    y = call(x).persist()
                    wait(y)
                    times.append(time.perf_counter() - t0)
                busy.append(_busy(ts.data))
                del y
            client.cancel(x)
        med = statistics.median(times)
        i = times.index(med) if med in times else 0
        eff = sum(busy[i].values()) / (n * times[i])
        rows.append({"workers": n, "median_s": med, "times_s": times, "work": work,
                     "busy_s": busy[i], "efficiency": eff})
        print(f"{n} worker(s): median {med:.3f} s  (runs: "
              f"{', '.join(f'{t:.3f}' for t in times)}); task time per worker "
              f"{', '.join(f'{b:.2f}' for b in busy[i].values())} s, "
              f"busy {100 * eff:.0f}% of {n} x wall", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    load0 = os.getloadavg()
    print(f"gpuconv.dask bench: {args.op}; machine: {os.cpu_count()} cores, "
          f"{platform.processor() or platform.machine()}, Python "
          f"{sys.version.split()[0]}; load average before: "
          f"{', '.join(f'{v:.2f}' for v in load0)}", flush=True)
    rows = [] if args.cupy_only or args.null_device else run(args)
    if args.op == "convolve2d":
        if args.null_device:
            from gpuconv._null_device import null_cuda

            with null_cuda() as dev:
                rows += run_cupy(args, dev.xp, "null-device")
        else:
            from gpuconv import _backend

            cp = _backend.cupy_module()
            if cp is not None:
                rows += run_cupy(args, cp, "cuda")
            else:
                print(f"no CuPy-chunk rows: {_backend.cuda_unavailable_reason()}")
    by = {r["workers"]: r["median_s"] for r in rows}
    load1 = os.getloadavg()
    if rows:
        print(f"work: {rows[0]['work']}")
    if 1 in by and 2 in by:
        print(f"speed-up 1 -> 2 workers: {by[1] / by[2]:.2f}x")
    print(f"load average after: {', '.join(f'{v:.2f}' for v in load1)}")
    if args.json:
        for r in rows:
            r.update(op=args.op, cores=os.cpu_count(), load_before=load0,
                     load_after=load1)
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
