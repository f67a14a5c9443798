"""Host time in front of the device work of each GPU filter row: the correction
``bench/calibrate.py`` subtracts before fitting the device-side cost model.

A GPU benchmark row times one call between CUDA events with a sync after each call,
so it holds the call's host time *before its first device work* (the device is idle
then) plus the device time; host work after the first launch overlaps the device.
That host part belongs to the code of the commit the rows were measured on, not to
the algorithm, so it is measured here on that commit's tree, without a GPU, on the
null-device proxy: the stand-in CuPy of ``tests/_gpu_dry_run.py`` (NumPy
underneath) with a device whose first launch, FFT, matmul or finiteness reduction
records the time and ends the call (nothing is computed). Each row's call is the
benchmark's own: ``gpuconv.convolve2d(x, w, mode='same')`` for ``auto`` rows,
``_gpu_filter.correlate2d(x3, wf3, fp, variant)`` for the forced ones, at the row's
image size, kernel size and dtype.

Proxy seconds become GPU seconds by one factor, measured in the same run: the GPU
wall time of ``gpuconv.convolve2d`` 256² float32 3x3 'same' called back to back on
the H200 at 08aa471 (191.8 µs, ``perf_diag.log`` of
``../shared/gpu-results/2026-12-04-h200/``) over that call's whole proxy time here.
Each row is timed next to that reference call, several rounds, and its host time is
the median ratio times 191.8 µs, so the load of this shared machine cancels. That
reference is the 08aa471 code; for another commit's tree pass ``--factor`` (GPU
µs per proxy µs; issue 15's ratios for the calls it measured: 192/148, 103/81,
240/169, about 1.3), and the rows' proxy seconds are scaled by it.

Not included: host time after a synchronisation inside the call (the 08aa471
``auto`` FFT path checks finiteness with two syncs before its transforms: those
rows are not fitted) and CuPy's own per-operation host cost (the stand-in has
none; what the FFT path's several CuPy calls cost stays in the fitted fixed cost of
``fft``, where it still is today).

Usage (the table committed for the H200 rows)::

    git worktree add /tmp/old08 08aa471
    PYTHONPATH=. python bench/host_correction.py --tree /tmp/old08 \\
        bench/results/cuda-h200-2026-12-04-08aa471-filter.json \\
        bench/results/cuda-h200-2026-12-04-08aa471-filter-f64.json \\
        --out bench/results/host-overhead-08aa471-proxy.json

``--tree .`` measures the current checkout (for the rows of a future GPU run on it).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

#: GPU wall seconds of the reference call on the H200 at 08aa471 (perf_diag.log).
REFERENCE_GPU_S = 191.8e-6
REFERENCE_CALL = "gpuconv.convolve2d(a, k, mode='same'), a 256x256 float32, k 3x3"
FORMAT = "gpuconv-host-correction/1"


def row_key(row: dict[str, Any]) -> tuple[str, str, str, int, int, str] | None:
    """``(kind, variant, algorithm, n, k, dtype)`` of a filter row, or ``None``:
    ``kind`` is ``'filter2d'`` (rows with ``n``) or ``'rank1'`` (rows with ``size``,
    ``filter2d_rank1/...`` cases)."""
    if row.get("backend") != "cuda" or "k" not in row:
        return None
    case = str(row.get("case", ""))
    if case.startswith("filter2d_rank1/"):
        kind, n = "rank1", row.get("size")
    elif case.startswith("filter2d/") and "n" in row:
        kind, n = "filter2d", row["n"]
    else:
        return None
    variant = str(row["variant"])
    alg = str(row.get("algorithm") or variant)
    return kind, variant, alg, int(n), int(row["k"]), str(row["dtype"])


# ------------------------------------------------------------------------------------
# the measurement (runs inside the measured tree)
# ------------------------------------------------------------------------------------
class _FirstWork(Exception):
    pass


def _measure(cases: list[list[Any]], calls: int, rounds: int) -> dict[str, Any]:
    import numpy as np

    import gpuconv
    from gpuconv import _gpu_conv, _gpu_filter, _kernels
    from gpuconv._filter_args import FilterProblem
    from tests import _gpu_dry_run

    try:  # the plan cache of later commits
        from gpuconv import _plan_cache
    except ImportError:
        _plan_cache = None

    mark: list[float] = []

    class HookDevice:
        name = "null"
        stop = True

        def __init__(self) -> None:
            self.xp = sys.modules["cupy"]

        def launch(self, launch: Any) -> None:
            first_work()

    def first_work() -> None:
        if not mark:
            mark.append(time.perf_counter())
        if HookDevice.stop:
            raise _FirstWork

    class Hooked:
        """A stand-in CuPy namespace whose listed functions are device work."""

        def __init__(self, base: Any, names: tuple[str, ...]) -> None:
            self._base, self._names = base, names

        def __getattr__(self, name: str) -> Any:
            value = getattr(self._base, name)
            if name in self._names:

                def hooked(*a: Any, **k: Any) -> Any:
                    first_work()
                    return value(*a, **k)

                return hooked
            return value

    with _gpu_dry_run.stand_in():
        cp = sys.modules["cupy"]
        dev = HookDevice()
        _kernels.CupyDevice = HookDevice
        _gpu_conv.default_device = lambda: dev
        _gpu_filter._default_device = lambda: dev
        if _plan_cache is not None:
            _plan_cache.clear()
        fft_names = (
            "fft",
            "ifft",
            "rfft",
            "irfft",
            "fft2",
            "ifft2",
            "rfft2",
            "irfft2",
            "fftn",
            "ifftn",
            "rfftn",
            "irfftn",
        )
        base_fft = cp.fft
        cp.fft = Hooked(base_fft, fft_names)
        for name in ("isfinite", "matmul", "take", "full"):
            fn = getattr(cp, name)

            def work(*a: Any, _fn: Any = fn, **k: Any) -> Any:
                first_work()
                return _fn(*a, **k)

            setattr(cp, name, work)

        def first_work_s(fn: Any, n: int) -> float:
            """Median seconds from the call's start to its first device work."""
            ts = []
            for _ in range(n):
                mark.clear()
                t0 = time.perf_counter()
                try:
                    fn()
                except _FirstWork:
                    pass
                ts.append((mark[0] if mark else time.perf_counter()) - t0)
            return statistics.median(ts)

        def whole_s(fn: Any, n: int) -> float:
            """Median seconds of the whole call (launches do nothing)."""
            HookDevice.stop = False
            try:
                ts = []
                for _ in range(n):
                    t0 = time.perf_counter()
                    fn()
                    ts.append(time.perf_counter() - t0)
                return statistics.median(ts)
            finally:
                HookDevice.stop = True

        a = cp.asarray(np.random.default_rng(0).standard_normal((256, 256)), "f4")
        k3 = cp.asarray(np.ones((3, 3), np.float32))
        ref_fn = lambda: gpuconv.convolve2d(a, k3, mode="same")  # noqa: E731
        whole_s(ref_fn, 5)
        fns = []
        for _kind, variant, _alg, n, k, dtype in cases:
            dt = np.dtype(dtype)
            x = cp.zeros((n, n), dt)
            w = cp.asarray(np.ones((k, k), dt))
            x3 = x.reshape(1, n, n)
            wf3 = cp.ascontiguousarray(w[::-1, ::-1]).reshape(1, k, k)
            fp = FilterProblem(1, n, n, 1, k, k, k // 2, k // 2, n, n, "fill", 0.0, dt)
            if variant == "auto":
                fn = lambda x=x, w=w: gpuconv.convolve2d(x, w, mode="same")  # noqa
            else:
                fn = lambda x3=x3, wf3=wf3, fp=fp, v=variant: (  # noqa: E731
                    _gpu_filter.correlate2d(x3, wf3, fp, v)
                )
            first_work_s(fn, 3)  # warm (plans, caches of later commits)
            fns.append(fn)
        # rounds: each case next to the reference call, so that the load of a
        # shared machine cancels in the ratio; the median ratio over the rounds
        ratios: list[list[float]] = [[] for _ in cases]
        refs = []
        for _ in range(rounds):
            for i, fn in enumerate(fns):
                t = first_work_s(fn, calls)
                r = whole_s(ref_fn, calls)
                ratios[i].append(t / r)
                refs.append(r)
        out = [
            {
                "kind": c[0],
                "variant": c[1],
                "algorithm": c[2],
                "n": c[3],
                "k": c[4],
                "dtype": c[5],
                "ratio_to_reference": statistics.median(rs),
            }
            for c, rs in zip(cases, ratios, strict=True)
        ]
    return {"reference_proxy_s": statistics.median(refs), "rows": out}


# ------------------------------------------------------------------------------------
def _commit(tree: Path) -> str:
    return subprocess.run(
        ["git", "-C", str(tree), "rev-parse", "--short=7", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="host_correction.py", description=__doc__)
    ap.add_argument("rows", nargs="*", help="gpuconv-bench/1 filter rows (GPU runs)")
    ap.add_argument("--tree", default=".", help="checkout of the rows' commit")
    ap.add_argument("--out", help="write the table here (JSON)")
    ap.add_argument("--calls", type=int, default=40, help="calls per measurement")
    ap.add_argument("--rounds", type=int, default=7, help="measurements per case")
    ap.add_argument(
        "--factor",
        type=float,
        help="GPU s per proxy s (default: from the 08aa471 reference)",
    )
    ap.add_argument("--measure", help=argparse.SUPPRESS)  # internal: in the tree
    args = ap.parse_args(argv)
    if args.measure:
        spec = json.loads(Path(args.measure).read_text())
        print(json.dumps(_measure(spec["cases"], spec["calls"], spec["rounds"])))
        return 0
    keys = set()
    for path in args.rows:
        doc = json.loads(Path(path).read_text())
        for row in doc["rows"] if isinstance(doc, dict) else doc:
            if not row.get("error") and (key := row_key(row)) is not None:
                keys.add(key)
    cases = sorted(keys)
    tree = Path(args.tree).resolve()
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump({"cases": cases, "calls": args.calls, "rounds": args.rounds}, f)
    import os

    env = {**os.environ, "PYTHONPATH": str(tree)}
    res = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--measure", f.name],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
    )
    os.unlink(f.name)
    if res.returncode:
        print(res.stderr, file=sys.stderr)
        return 1
    got = json.loads(res.stdout.strip().splitlines()[-1])
    ref_proxy = got["reference_proxy_s"]
    commit = _commit(tree)
    factor = args.factor or REFERENCE_GPU_S / ref_proxy
    if args.factor is None and commit != "08aa471":
        print(
            f"warning: the reference GPU time is 08aa471's, the tree is {commit}: "
            "pass --factor",
            file=sys.stderr,
        )
    rows = []
    for r in got["rows"]:
        proxy = r["ratio_to_reference"] * ref_proxy
        host = (
            proxy * args.factor
            if args.factor
            else r["ratio_to_reference"] * REFERENCE_GPU_S
        )
        rows.append(
            {
                **{k: v for k, v in r.items() if k != "ratio_to_reference"},
                "ratio_to_reference": float(f"{r['ratio_to_reference']:.3g}"),
                "proxy_s": float(f"{proxy:.3g}"),
                "host_s": float(f"{host:.3g}"),
            }
        )
    doc = {
        "format": FORMAT,
        "commit": commit,
        "command": f"git worktree add /tmp/old{commit} {commit}; "
        f"PYTHONPATH=. python bench/host_correction.py --tree /tmp/old{commit} "
        + " ".join(args.rows)
        + (f" --out {args.out}" if args.out else "")
        + (f" --factor {args.factor}" if args.factor else ""),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": f"{platform.machine()} {platform.python_implementation()} "
        f"{platform.python_version()} (null-device proxy, shared CPU)",
        "what": "host_s: seconds of host time before the first device work of the "
        "row's call, on the GPU (proxy_s * factor); see bench/host_correction.py",
        "reference": {
            "call": REFERENCE_CALL,
            "gpu_s": REFERENCE_GPU_S,
            "proxy_s": float(f"{got['reference_proxy_s']:.3g}"),
            "gpu_source": "perf_diag.log of the H200 run at 08aa471",
        },
        "factor": float(f"{factor:.3g}"),
        "factor_from": "--factor" if args.factor else "reference",
        "rows": rows,
    }
    text = json.dumps(doc, indent=1) + "\n"
    if args.out:
        Path(args.out).write_text(text)
    print(
        f"reference proxy {ref_proxy * 1e6:.1f} us -> factor "
        f"{factor:.3g} (issue 15: ~1.3)"
    )
    for r in rows:
        print(
            f"  {r['kind']:8s} {r['variant']:9s} {r['algorithm']:9s} "
            f"{r['n']:5d}^2 k{r['k']:<3d} {r['dtype']:8s} proxy "
            f"{r['proxy_s'] * 1e6:7.1f} us  GPU {r['host_s'] * 1e6:7.1f} us"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
