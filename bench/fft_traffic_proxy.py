"""Device-memory traffic proxy of the FFT paths, without a GPU (a proxy only).

Runs public-API calls that take the FFT path (``method='fft'``) on the null device
(:func:`gpuconv._null_device.null_cuda`: the stand-in CuPy, launches dropped), once
to fill the plan caches, then once under
:func:`gpuconv._null_device.count_device_ops`, and prints one row per call:

- ``allocs``, ``alloc MB``: device arrays allocated by the call (CuPy's hidden
  ones inside ``cupy.fft`` included: pads, casts, copies of views, C2R input
  copies, outputs) and their size;
- ``fft steps``, ``fft MB``: the stand-in FFT's steps (pads, casts, copies,
  transforms, normalisations; each its bytes read and written) and their bytes;
- ``elem MB``: bytes of the NumPy-ufunc calls on device arrays (``spec *= k``,
  ``matmul``, reductions: operands read, result written) and item assignments
  (``a[key] = b``) outside the FFT steps;
- ``other MB``: bytes written by the other allocations (copies, casts, ``empty``
  outputs a kernel fills; the reads of copies and casts are not seen);
- ``kern MB``: gpuconv's own kernels, modelled from their launches
  (:data:`KERNEL_TRAFFIC`): the arrays each launch reads, once, and the ones it
  updates in place, written once (an output it fills was allocated ``empty``
  and is counted in ``other MB`` already);
- ``moved MB``: ``fft MB + elem MB + other MB + kern MB``; ``x+y MB``: the input
  read and the output written once (the floor of any algorithm), and ``moved/xy``
  the ratio;
- ``launches``: gpuconv's own kernel launches;
- ``steps``: the FFT steps by label, ``label x count`` (``--steps``: the bytes
  per label, and per elementwise operation).

gpuconv's own kernels' traffic is not seen by the stand-in (see
:class:`gpuconv._null_device.DeviceOps`): ``kern MB`` is a model. The numbers
predict what the device must move at least; only a GPU measures. ``--json PATH``
writes the rows.

    PYTHONPATH=. python bench/fft_traffic_proxy.py [--quick] [--steps] [--json PATH]
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from typing import Any

import numpy as np

import gpuconv
from gpuconv._null_device import NullDevice, count_device_ops, null_cuda

MB = 1e6

#: Per gpuconv kernel (name without template arguments): the positions of the
#: array arguments it reads once and of those it updates in place (read above,
#: written once more); arrays it only fills are the ``empty`` allocations counted
#: in ``other MB``. A kernel not listed counts every array argument read once.
KERNEL_TRAFFIC: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "fft_gather": ((0,), ()),  # src read; dst filled
    "fft_spectrum_product": ((0, 1, 2), (0,)),  # spec read and written, a, g read
    # y's output window read (out's bytes: its shape and dtype), the fill tables
    # (absent for a zero fill) read; out filled
    "fft_crop": ((1, 9, 10, 11, 12), ()),
}


class TrafficDevice(NullDevice):
    """The null device, adding each launch's modelled bytes
    (:data:`KERNEL_TRAFFIC`) to ``kernel_bytes``."""

    def __init__(self, xp: Any) -> None:
        super().__init__(xp)
        self.kernel_bytes = 0

    def launch(self, launch: Any) -> None:
        super().launch(launch)
        arrays = {i: a for i, a in enumerate(launch.args)
                  if getattr(a, "ndim", 0) > 0 and hasattr(a, "nbytes")}  # fmt: skip
        reads, in_place = KERNEL_TRAFFIC.get(launch.kernel.split("<")[0],
                                             (tuple(arrays), ()))  # fmt: skip
        # (a null pointer, fft_crop's tables for a zero fill, is no array)
        todo = [i for i in reads + in_place if i in arrays]
        self.kernel_bytes += sum(arrays[i].nbytes for i in todo)


def cases(quick: bool) -> list[tuple[str, str, tuple[int, ...], int]]:
    """``(label, op, image shape, kernel size)``, float32."""
    sizes = (512,) if quick else (512, 4096)
    out = [(f"convolve2d {n}^2 k{k} same", "convolve2d", (n, n), k)
           for n in sizes for k in (15, 31)]
    n1 = 10**5 if quick else 10**6
    out.append((f"convolve {n1:.0e} k3001 same", "convolve", (n1,), 3001))
    return out


def measure(op: str, shape: tuple[int, ...], k: int, dev: Any) -> dict[str, Any]:
    cp = dev.xp
    rng = np.random.default_rng(0)
    x = cp.asarray(rng.standard_normal(shape).astype(np.float32))
    w = cp.asarray(rng.standard_normal((k,) * len(shape)).astype(np.float32))
    fn = getattr(gpuconv, op)

    def call() -> Any:
        return fn(x, w, mode="same", method="fft")

    # the null device runs no kernel: arrays gpuconv's kernels would fill hold
    # whatever was in memory, and NumPy's transforms of them may overflow
    with np.errstate(all="ignore"):
        call()  # plans, DFT matrices: the steady state is what a GPU run sees
        launches0, kernel0 = dev.launches, dev.kernel_bytes
        t0 = time.perf_counter()
        with count_device_ops() as ops:
            y = call()
        host_s = time.perf_counter() - t0
    steps = collections.Counter(label for label, _ in ops.passes)
    steps_bytes: dict[str, int] = collections.defaultdict(int)
    for label, nbytes in ops.passes:
        steps_bytes[label] += nbytes
    elem_bytes: dict[str, int] = collections.defaultdict(int)
    for label, nbytes in ops.elementwise:
        elem_bytes[label] += nbytes
    return {
        "op": op, "shape": list(shape), "k": k, "dtype": "float32",
        "allocs": len(ops.allocs), "alloc_bytes": ops.alloc_bytes,
        "views": ops.views, "fft_steps": len(ops.passes), "fft_bytes": ops.fft_bytes,
        "elementwise_bytes": ops.elementwise_bytes,
        "other_bytes": ops.written_bytes, "kernel_bytes": dev.kernel_bytes - kernel0,
        "bytes_moved": ops.bytes_moved + dev.kernel_bytes - kernel0,
        "xy_bytes": x.nbytes + y.nbytes, "launches": dev.launches - launches0,
        "passes": ops.passes, "steps": dict(steps),
        "steps_bytes": dict(steps_bytes), "elementwise": dict(elem_bytes),
        "host_s": host_s,
    }


def run(quick: bool = False) -> list[dict[str, Any]]:
    rows = []
    with null_cuda(TrafficDevice) as dev:
        for label, op, shape, k in cases(quick):
            rows.append({"case": label, **measure(op, shape, k, dev)})
    return rows


def format_rows(rows: list[dict[str, Any]], by_step: bool = False) -> str:
    head = (f"{'case':30s} {'allocs':>6s} {'alloc MB':>9s} {'fft steps':>9s} "
            f"{'fft MB':>8s} {'elem MB':>8s} {'other MB':>8s} {'kern MB':>8s} "
            f"{'moved MB':>8s} "
            f"{'x+y MB':>7s} {'moved/xy':>8s} {'launches':>8s}  steps")
    lines = [head]
    for r in rows:
        steps = ", ".join(f"{s} x{n}" if n > 1 else s for s, n in r["steps"].items())
        lines.append(
            f"{r['case']:30s} {r['allocs']:6d} {r['alloc_bytes'] / MB:9.1f} "
            f"{r['fft_steps']:9d} {r['fft_bytes'] / MB:8.1f} "
            f"{r['elementwise_bytes'] / MB:8.1f} "
            f"{r['other_bytes'] / MB:8.1f} {r['kernel_bytes'] / MB:8.1f} "
            f"{r['bytes_moved'] / MB:8.1f} "
            f"{r['xy_bytes'] / MB:7.1f} {r['bytes_moved'] / r['xy_bytes']:8.1f} "
            f"{r['launches']:8d}  {steps}")
        if by_step:
            lines += [f"{'':32s}{label:20s} {nbytes / MB:8.1f} MB"
                      for label, nbytes in r["steps_bytes"].items()]
            lines += [f"{'':32s}{'(elem) ' + label:20s} {nbytes / MB:8.1f} MB"
                      for label, nbytes in r["elementwise"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes only")
    p.add_argument("--json", metavar="PATH", help="write the rows as JSON")
    p.add_argument("--steps", action="store_true", help="bytes per FFT step label")
    args = p.parse_args(argv)
    rows = run(args.quick)
    print("null-device proxy (stand-in CuPy's FFT steps; not a GPU measurement)")
    print(format_rows(rows, args.steps))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"format": "gpuconv-fft-traffic/1", "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
