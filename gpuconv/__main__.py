"""The command line: ``python -m gpuconv {info,demo,bench}`` (also ``gpuconv ...``).

``info``
    Versions, the usable backends, why ``'cuda'`` is missing, the GPU.
``demo``
    Filters a synthetic image and runs conv2d forward/backward on the best
    available backend, checks each result against an independent reference and
    prints a table; exit status 1 if a check fails, 2 if ``--backend cuda`` cannot
    run here.
``bench``
    gpuconv against SciPy/PyTorch (``--backend numpy``) or cuDNN/cupyx
    (``--backend cuda``); see ``bench/README.md``. Exit status 1 if an output is
    wrong, 2 if the benchmark cannot run here (the reason is printed).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import Any


def _print_info(as_json: bool) -> int:
    import gpuconv

    info: dict[str, Any] = gpuconv.info()
    if as_json:
        print(json.dumps(info, indent=1))
        return 0
    print(f"gpuconv {info['gpuconv']}")
    print(f"  python    {info['python']}")
    print(f"  numpy     {info['numpy']}")
    for mod in ("scipy", "torch", "dask"):
        ver = _optional_version(mod)
        if ver is not None:
            print(f"  {mod:<9} {ver} (optional)")
    print(f"  cupy      {info['cupy'] or 'not installed'}")
    print(f"  platform  {info['platform']}")
    print(f"backends:   {', '.join(info['backends'])}")
    print(f"default:    {info['default_backend']} (for NumPy arrays; CuPy arrays "
          "use cuda)")
    if info["cuda_missing"]:
        print(f"cuda:       unavailable: {info['cuda_missing']}")
    else:
        print("cuda:       available")
    print(f"device:     {info['device'] or 'none'}")
    return 0


def _optional_version(mod: str) -> str | None:
    from importlib import metadata

    name = {"torch": "torch", "scipy": "scipy", "dask": "dask"}[mod]
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _demo(args: argparse.Namespace) -> int:
    from gpuconv import _demo

    return _demo.main(quick=args.quick, backend=args.backend)


def _bench_overhead(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from gpuconv import _bench as b
    from gpuconv import _bench_overhead as o

    rows = o.run(quick=args.quick)
    print(o.format_rows(rows))
    if args.json:
        b.write_json(rows, args.json, argv=["gpuconv", "bench", *argv])
        print(f"wrote {len(rows)} rows to {args.json}")
    return 0


def _bench(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from gpuconv import _bench as b

    if args.overhead:
        return _bench_overhead(args, argv)

    plot = args.plot
    if plot:
        why = b.check_plot_available()
        if why is not None:  # the rows matter more than the chart: warn, go on
            print(f"gpuconv bench: warning: {why}; no plot written", file=sys.stderr)
            plot = None
    repeats = args.repeats
    if repeats is not None and repeats < 1:
        print("gpuconv bench: --repeats must be >= 1", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    try:
        if args.backend == "cuda":
            rows = b.run_gpu(args.cases, quick=args.quick, repeats=repeats,
                             progress=not args.no_progress)
        else:
            cases = b.numpy_cases(args.cases, quick=args.quick)
            if repeats is None:
                repeats = b.QUICK_REPEATS if args.quick else b.DEFAULT_REPEATS
            rows = b.run_cases(cases, repeats=repeats, budget_s=args.budget,
                               progress=not args.no_progress, warmup=not args.quick)
    except b.BenchUnavailable as exc:
        print(f"gpuconv bench: {exc}", file=sys.stderr)
        return 2
    except b.BenchValidationError as exc:
        print(f"gpuconv bench: WRONG RESULT, nothing was timed for it: {exc}",
              file=sys.stderr)
        return 1
    print(b.format_table(rows))
    print(b.summary(rows))
    if rows:
        m = rows[0].get("machine") or {}
        blas = m.get("blas") or {}
        where = m.get("device") or m.get("cpu")
        print(f"machine: {where}, {m.get('cores')} cores, BLAS {blas.get('name')} "
              f"{blas.get('version')} x{blas.get('threads')} threads; "
              f"{time.perf_counter() - t0:.0f} s")
    if args.json:
        b.write_json(rows, args.json, argv=["gpuconv", "bench", *argv])
        print(f"wrote {len(rows)} rows to {args.json}")
    if plot:
        b.plot_rows(rows, plot)
        print(f"wrote {plot}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m gpuconv``."""
    p = argparse.ArgumentParser(
        prog="python -m gpuconv",
        description="gpuconv: 2-D/1-D convolution on NumPy and CUDA.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    pi = sub.add_parser("info", help="versions, backends, why cuda is missing")
    pi.add_argument("--json", action="store_true", help="print gpuconv.info() as JSON")
    pd = sub.add_parser("demo", help="filter a synthetic image, check the results")
    pd.add_argument("--quick", action="store_true", help="smaller sizes, 1 repeat")
    pd.add_argument("--backend", choices=("numpy", "cuda"), default=None,
                    help="default: cuda if usable, else numpy")
    pb = sub.add_parser("bench", help="benchmark against SciPy/PyTorch (see "
                        "bench/README.md)")
    pb.add_argument("--backend", choices=("numpy", "cuda"), default="numpy",
                    help="numpy: vs SciPy and PyTorch CPU; cuda: vs cuDNN and cupyx")
    pb.add_argument("--cases", choices=("filter", "conv", "all"), default="all",
                    help="convolve2d filters, conv2d forward/backward, or both")
    pb.add_argument("--quick", action="store_true",
                    help="small sizes, 2 repeats (a smoke test, not a measurement)")
    pb.add_argument("--repeats", type=int, default=None,
                    help="interleaved timing rounds per case (default 5, quick 2)")
    pb.add_argument("--budget", type=float, default=30.0,
                    help="seconds per case above which rounds drop to 3 (numpy)")
    pb.add_argument("--json", metavar="OUT.json", help="write the rows as JSON")
    pb.add_argument("--plot", metavar="OUT.png",
                    help="bar chart of the ratios (needs matplotlib; skipped with a "
                    "warning without it)")
    pb.add_argument("--no-progress", action="store_true", help="no progress bar")
    pb.add_argument("--overhead", action="store_true",
                    help="host cost per call on the CUDA path: on a null device "
                    "(any machine) and, where CuPy has a GPU, wall time next to "
                    "cupyx and PyTorch")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m gpuconv`` and of the ``gpuconv`` script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        if args.command == "info":
            return _print_info(args.json)
        if args.command == "demo":
            return _demo(args)
        return _bench(args, argv[1:])
    except BrokenPipeError:  # e.g. `python -m gpuconv info | head -1`
        sys.stdout = None  # type: ignore[assignment]  # no flush error at exit
        return 0


if __name__ == "__main__":
    sys.exit(main())
