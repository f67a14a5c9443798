"""Fit the CUDA algorithm choosers from GPU benchmark rows, and replay the rows.

One command recalibrates after a new GPU run::

    PYTHONPATH=. python bench/calibrate.py \\
        bench/results/cuda-<dev>-<date>-<commit>-filter.json \\
        [bench/results/...-conv.json ...] [--write]

What it does:

- **filter** rows (``bench/bench_gpu_filter.py``): the forced-algorithm rows
  (``variant`` ``naive``/``tiled``/``fft``) are the measurements; each algorithm's
  time is modelled as ``HOST + BYTE * bytes + FLOP * flops`` (the features are
  :func:`gpuconv._plan_filter.direct_features` and ``fft_features``: the direct
  kernels' bytes and float32-equivalent FLOP, the FFT path's passes over its
  grids). The constants are fitted per algorithm by non-negative least squares on
  the *relative* error (every row counts alike, 512² as much as 8192²) and printed
  as the calibration block of ``gpuconv/_plan_filter.py``; ``--write`` replaces that
  block in place (between its ``BEGIN CALIBRATION``/``END CALIBRATION`` lines),
  naming the rows it came from. Those constants are fitted on float32 rows; the
  float64 rows (forced, or ``auto`` rows less the public call's measured host
  overhead) then fit ``FP64_FLOP_SCALE``, the cost of a double-precision FLOP in
  float32 FLOP.
- **replay**: for every filter case, the algorithm ``'auto'`` chooses (with the
  fitted constants) and its measured time against the fastest measured of ours;
  and for every conv case (``bench/bench_gpu_conv.py`` rows, ``resolved`` is the
  algorithm that ran) where more than one algorithm was measured, the same for
  :func:`gpuconv._plan_conv.choose_algorithm`. The exit status is 1 when a case is
  more than :data:`MAX_RATIO` times the fastest.
- **diagnostics**: what the ``auto`` rows (the public call) cost over the forced
  row of the algorithm they ran (host time of the public path, the FFT path's
  finiteness check), and the range of ``REGBLOCK_MIN_COLS`` the conv rows allow.

``tests/test_calibration.py`` replays the rows named in ``CALIBRATION_ROWS`` through
the choosers and checks that refitting them reproduces the committed constants.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from gpuconv import _plan_filter  # noqa: E402

#: ``auto`` may cost at most this many times the fastest measured algorithm.
MAX_RATIO = 1.1
FILTER_ALGORITHMS = ("naive", "tiled", "fft")
CONV_ALGORITHMS = ("naive", "tiled", "tiled_regblock")
PLAN_FILTER = ROOT / "gpuconv" / "_plan_filter.py"
BEGIN, END = "# BEGIN CALIBRATION", "# END CALIBRATION"


# ------------------------------------------------------------------------------------
# rows
# ------------------------------------------------------------------------------------
def load_rows(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """The rows of ``gpuconv-bench/1`` files, each tagged with its ``_source``."""
    rows = []
    for path in paths:
        doc = json.loads(Path(path).read_text())
        for row in doc["rows"] if isinstance(doc, dict) else doc:
            rows.append({**row, "_source": str(path)})
    return rows


def _timed(row: dict[str, Any]) -> bool:
    return not row.get("error") and isinstance(row.get("median_s"), (int, float))


def filter_problem(row: dict[str, Any]) -> Any:
    """The FilterProblem of a filter row (``op`` ``'<fn> <mode> <boundary>'``,
    square ``n`` x ``n`` image, ``k`` x ``k`` kernel)."""
    from gpuconv._filter_args import normalize_filter2d

    fn, mode, boundary = row["op"].split()
    n, k, dt = int(row["n"]), int(row["k"]), np.dtype(row["dtype"])
    plan = normalize_filter2d(
        (n, n), (k, k), dt, dt, mode, boundary, 0, convolve=fn == "convolve2d"
    )
    return plan.problem


def filter_cases(rows: list[dict[str, Any]]) -> dict[tuple, dict[str, Any]]:
    """``{(op, n, k, dtype): {"fp", "times": {alg: s}, "auto": {alg: s}}}``: the
    forced rows' medians and the ``auto`` rows' medians by the algorithm they ran
    (rows repeated once per peer count once)."""
    cases: dict[tuple, dict[str, Any]] = {}
    for row in rows:
        if not _timed(row) or "n" not in row or row.get("backend") != "cuda":
            continue
        key = (row["op"], int(row["n"]), int(row["k"]), row["dtype"])
        case = cases.setdefault(key, {"fp": None, "times": {}, "auto": {}})
        if case["fp"] is None:
            case["fp"] = filter_problem(row)
        variant, t = row["variant"], float(row["median_s"])
        if variant in FILTER_ALGORITHMS:
            case["times"][variant] = min(t, case["times"].get(variant, np.inf))
        elif variant == "auto" and row.get("algorithm"):
            alg = row["algorithm"]
            case["auto"][alg] = min(t, case["auto"].get(alg, np.inf))
    return cases


_CONV_SHAPE = re.compile(
    r"N(\d+)-C(\d+)-(\d+)x(\d+)-K(\d+)-(\d+)x(\d+)-s(\d+)p(\d+)(?:-g(\d+))?$"
)


def conv_args(shape: str) -> tuple[tuple[int, ...], tuple[int, ...], dict[str, int]]:
    """``(x_shape, w_shape, kwargs)`` of a conv layer name such as
    ``N16-C3-224x224-K64-7x7-s2p3`` (``-gG`` for groups)."""
    m = _CONV_SHAPE.match(shape)
    if m is None:
        raise ValueError(f"unrecognised conv layer name {shape!r}")
    n, c, h, w, k, kh, kw, s, p, g = (int(v) if v else 1 for v in m.groups())
    return (n, c, h, w), (k, c // g, kh, kw), {"stride": s, "padding": p, "groups": g}


def conv_cases(rows: list[dict[str, Any]]) -> dict[tuple, dict[str, Any]]:
    """``{(pass, layer, dtype): {"times": {alg: s}}}`` of the conv rows: each row's
    ``resolved`` algorithm is what ran (``auto`` rows included: they ran it)."""
    cases: dict[tuple, dict[str, Any]] = {}
    for row in rows:
        if not _timed(row) or not str(row.get("op", "")).startswith("conv2d_"):
            continue
        alg = row.get("resolved") or row.get("variant")
        if alg not in CONV_ALGORITHMS:
            continue
        layer = row["case"].split("/")[2]
        key = (row["op"], layer, row["dtype"])
        times = cases.setdefault(key, {"times": {}})["times"]
        times[alg] = min(float(row["median_s"]), times.get(alg, np.inf))
    return cases


# ------------------------------------------------------------------------------------
# the fit
# ------------------------------------------------------------------------------------
def nnls_relative(a: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``x >= 0`` minimising ``sum(((a @ x) - t) / t) ** 2)`` (exact: every subset
    of the few columns is solved and the best non-negative solution kept)."""
    a = np.asarray(a, float) / np.asarray(t, float)[:, None]
    b = np.ones(len(t))
    best, best_x = np.inf, np.zeros(a.shape[1])
    for r in range(1, a.shape[1] + 1):
        for cols in itertools.combinations(range(a.shape[1]), r):
            sub = a[:, cols]
            if np.linalg.matrix_rank(sub) < r:
                continue
            xs = np.linalg.lstsq(sub, b, rcond=None)[0]
            if np.any(xs < 0):
                continue
            res = float(np.sum((sub @ xs - b) ** 2))
            if res < best:
                best, best_x = res, np.zeros(a.shape[1])
                best_x[list(cols)] = xs
    return best_x


def _sig(x: float, digits: int = 3) -> float:
    return float(f"{x:.{digits}g}")


def auto_overhead(cases: dict[tuple, dict[str, Any]]) -> float:
    """Median seconds an ``auto`` row (the public call) took over the forced row of
    the direct algorithm it ran, in the float32 cases: the public path's host time."""
    extra = [
        t - case["times"][alg]
        for key, case in cases.items()
        if key[3] == "float32"
        for alg, t in case["auto"].items()
        if alg in case["times"] and alg != "fft"
    ]
    return float(np.median(extra)) if extra else 0.0


def fit_filter(cases: dict[tuple, dict[str, Any]]) -> dict[str, Any]:
    """The calibration constants (3 significant digits: what the block holds).

    ``HOST_SECONDS``, ``BYTE_SECONDS``, ``FLOP_SECONDS`` per algorithm from the
    forced float32 rows; ``FP64_FLOP_SCALE`` from the float64 rows of the direct
    kernels (forced rows, or ``auto`` rows less :func:`auto_overhead`) with the
    float32 constants fixed, or the peak ratio when there are none.
    """
    out: dict[str, Any] = {
        "HOST_SECONDS": {},
        "BYTE_SECONDS": {},
        "FLOP_SECONDS": {},
    }
    f32 = {k: c for k, c in cases.items() if k[3] == "float32"}
    for alg in FILTER_ALGORITHMS:
        feats, times = [], []
        for case in f32.values():
            if alg in case["times"]:
                fp = case["fp"]
                feats.append(
                    _plan_filter.fft_features(fp)
                    if alg == "fft"
                    else _plan_filter.direct_features(fp)
                )
                times.append(case["times"][alg])
        if not times:
            raise ValueError(f"no forced float32 '{alg}' rows to fit")
        x = nnls_relative(np.array(feats), np.array(times))
        out["HOST_SECONDS"][alg] = _sig(x[0])
        out["BYTE_SECONDS"][alg] = _sig(x[1])
        if alg != "fft":
            out["FLOP_SECONDS"][alg] = _sig(x[2])
    # float64: t = HOST + BYTE * bytes + FLOP * (2 * taps * outputs) * scale
    overhead = auto_overhead(cases)
    num = den = 0.0
    for key, case in cases.items():
        if key[3] != "float64":
            continue
        fp = case["fp"]
        obs = dict(case["times"])
        for alg, t in case["auto"].items():
            obs.setdefault(alg, t - overhead)
        _, nbytes, _ = _plan_filter.direct_features(fp)
        flops = 2.0 * fp.B * fp.OH * fp.OW * fp.KH * fp.KW
        for alg, t in obs.items():
            if alg == "fft":
                continue
            base = out["HOST_SECONDS"][alg] + out["BYTE_SECONDS"][alg] * nbytes
            u = out["FLOP_SECONDS"][alg] * flops / t
            num += u * (1.0 - base / t)
            den += u * u
    prior = _plan_filter.PEAK_FLOPS["f4"] / _plan_filter.PEAK_FLOPS["f8"]
    out["FP64_FLOP_SCALE"] = _sig(max(num / den, 1.0) if den else prior)
    return out


class using_constants:
    """Context manager: ``_plan_filter`` with the given constants, restored after."""

    def __init__(self, constants: dict[str, Any]):
        self.constants = constants
        self.saved: dict[str, Any] = {}

    def __enter__(self) -> None:
        for name, value in self.constants.items():
            self.saved[name] = getattr(_plan_filter, name)
            setattr(
                _plan_filter, name, dict(value) if isinstance(value, dict) else value
            )

    def __exit__(self, *exc: Any) -> None:
        for name, value in self.saved.items():
            setattr(_plan_filter, name, value)


CONSTANTS = ("HOST_SECONDS", "BYTE_SECONDS", "FLOP_SECONDS", "FP64_FLOP_SCALE")


def current_constants() -> dict[str, Any]:
    out = {}
    for name in CONSTANTS:
        value = getattr(_plan_filter, name)
        out[name] = dict(value) if isinstance(value, dict) else value
    return out


def render_block(constants: dict[str, Any], sources: Iterable[str]) -> str:
    """The text between (and including) the BEGIN/END CALIBRATION lines."""

    def fmt(d: dict[str, float]) -> str:
        return "{" + ", ".join(f'"{k}": {v!r}' for k, v in d.items()) + "}"

    srcs = "".join(f'\n    "{s}",' for s in sources)
    return (
        f"{BEGIN} (written by bench/calibrate.py --write; refit, do not hand-edit)\n"
        "#: The benchmark rows the constants below were fitted on.\n"
        f"CALIBRATION_ROWS = ({srcs}\n)\n"
        "#: Fixed seconds per call of each algorithm (host time before the first\n"
        "#: launch, which the benchmark's CUDA events include, and launch latency).\n"
        f"HOST_SECONDS = {fmt(constants['HOST_SECONDS'])}\n"
        "#: Seconds per byte the algorithm moves (direct: input + output + kernel;\n"
        "#: fft: the passes over the FFT grids, :func:`fft_features`).\n"
        f"BYTE_SECONDS = {fmt(constants['BYTE_SECONDS'])}\n"
        "#: Seconds per float32-equivalent FLOP of the direct kernels.\n"
        f"FLOP_SECONDS = {fmt(constants['FLOP_SECONDS'])}\n"
        "#: float32-equivalent FLOP per FLOP of float64 and complex128 in the direct\n"
        "#: kernels.\n"
        f"FP64_FLOP_SCALE = {constants['FP64_FLOP_SCALE']!r}\n"
        f"{END}"
    )


def write_block(text: str, path: Path = PLAN_FILTER) -> None:
    src = path.read_text()
    i = src.index(BEGIN)
    j = src.index(END, i) + len(END)
    path.write_text(src[:i] + text + src[j:])


def relative_source(path: str) -> str:
    p = Path(path).resolve()
    try:
        return p.relative_to(ROOT).as_posix()
    except ValueError:
        return p.as_posix()


# ------------------------------------------------------------------------------------
# replay
# ------------------------------------------------------------------------------------
def replay_filter(cases: dict[tuple, dict[str, Any]]) -> list[dict[str, Any]]:
    """Per case: ``auto``'s choice now, its measured time, the fastest measured."""
    out = []
    for key, case in sorted(cases.items()):
        times = case["times"]
        if not times:  # auto rows only (e.g. float64): nothing to compare with
            continue
        chosen = _plan_filter.choose_algorithm(case["fp"], "auto")
        best = min(times, key=times.__getitem__)
        t = times.get(chosen)
        out.append(
            {
                "case": key,
                "chosen": chosen,
                "chosen_s": t,
                "best": best,
                "best_s": times[best],
                "ratio": None if t is None else t / times[best],
                "model_s": {
                    a: (
                        _plan_filter.fft_seconds(case["fp"])
                        if a == "fft"
                        else _plan_filter.direct_seconds(case["fp"], a)
                    )
                    for a in times
                },
            }
        )
    return out


def conv_choice(op: str, layer: str) -> str:
    import gpuconv

    x, w, kw = conv_args(layer)
    return gpuconv.choose_algorithm(x, w, op.removeprefix("conv2d_"), **kw)


def replay_conv(cases: dict[tuple, dict[str, Any]]) -> list[dict[str, Any]]:
    """The conv cases where more than one algorithm was measured."""
    out = []
    for key, case in sorted(cases.items()):
        times = case["times"]
        if len(times) < 2:
            continue
        chosen = conv_choice(key[0], key[1])
        best = min(times, key=times.__getitem__)
        t = times.get(chosen)
        out.append(
            {
                "case": key,
                "chosen": chosen,
                "chosen_s": t,
                "best": best,
                "best_s": times[best],
                "ratio": None if t is None else t / times[best],
            }
        )
    return out


def regblock_cols_range(cases: dict[tuple, dict[str, Any]]) -> tuple[int, float]:
    """``(lo, hi)``: ``REGBLOCK_MIN_COLS`` values in ``(lo, hi]`` agree with every
    conv case where ``tiled_regblock`` and another algorithm were both measured
    (regblock must win where its GEMM has at least that many columns)."""
    from gpuconv import _plan_conv
    from gpuconv._conv_args import normalize_conv2d

    lo, hi = 0, np.inf
    for (op, layer, dt), case in cases.items():
        times = case["times"]
        if "tiled_regblock" not in times or len(times) < 2:
            continue
        x, w, kw = conv_args(layer)
        p = normalize_conv2d(x, w, [np.dtype(dt)], **kw)
        pass_name = op.removeprefix("conv2d_")
        m, ng, _ = _plan_conv.gemm_shape(p, pass_name)
        cols = min(m, ng) if pass_name == "backward_weight" else ng
        others = min(t for a, t in times.items() if a != "tiled_regblock")
        if times["tiled_regblock"] <= others:
            hi = min(hi, cols)
        else:
            lo = max(lo, cols)
    return lo, hi


# ------------------------------------------------------------------------------------
def _ms(t: float | None) -> str:
    return "      -" if t is None else f"{t * 1e3:7.3f}"


def report(
    rows: list[dict[str, Any]],
    constants: dict[str, Any],
    sources: list[str],
) -> tuple[str, bool]:
    """The printed report and whether every replayed case is within MAX_RATIO."""
    lines, ok = [], True
    fcases, ccases = filter_cases(rows), conv_cases(rows)
    with using_constants(constants):
        freplay = replay_filter(fcases)
    if fcases:
        lines += [
            "# fitted on the filter rows of: " + ", ".join(sources),
            render_block(constants, sources),
            "",
            "filter replay (ms; model in brackets):",
            f"  {'case':34s} {'auto now':>9s} {'time':>7s} {'fastest':>9s}"
            f" {'time':>7s} {'ratio':>6s}  model",
        ]
        for r in freplay:
            op, n, k, dt = r["case"]
            bad = r["ratio"] is None or r["ratio"] > MAX_RATIO
            ok &= not bad
            model = " ".join(f"{a}={s * 1e3:.3f}" for a, s in r["model_s"].items())
            ratio = "  none" if r["ratio"] is None else f"{r['ratio']:6.2f}"
            lines.append(
                f"  {op + f' {n}^2 k{k} {dt}':34s} {r['chosen']:>9s} "
                f"{_ms(r['chosen_s'])} {r['best']:>9s} {_ms(r['best_s'])} {ratio}"
                f"  [{model}]{'  <-- MISS' if bad else ''}"
            )
        over = []
        for key, case in sorted(fcases.items()):
            for alg, t in case["auto"].items():
                if alg in case["times"]:
                    over.append(t - case["times"][alg])
                    lines.append(
                        f"  auto row {key[1]}^2 k{key[2]} ran {alg}: "
                        f"{t * 1e3:.3f} ms vs forced {case['times'][alg] * 1e3:.3f} "
                        f"(+{(t - case['times'][alg]) * 1e3:.3f}: the public call's "
                        "host path" + (", finiteness check)" if alg == "fft" else ")")
                    )
    if any(key[3] == "float64" for key in fcases):
        overhead = auto_overhead(fcases)
        lines.append(
            f"float64 rows (FP64_FLOP_SCALE {constants['FP64_FLOP_SCALE']}; auto rows"
            f" less the public path's {overhead * 1e3:.3f} ms):"
        )
        with using_constants(constants):
            for key, case in sorted(fcases.items()):
                if key[3] != "float64":
                    continue
                obs = {
                    **{a: t - overhead for a, t in case["auto"].items()},
                    **case["times"],
                }
                for alg, t in obs.items():
                    model = (
                        _plan_filter.fft_seconds(case["fp"])
                        if alg == "fft"
                        else _plan_filter.direct_seconds(case["fp"], alg)
                    )
                    lines.append(
                        f"  {key[1]}^2 k{key[2]} {alg}: measured {t * 1e3:.3f} ms, "
                        f"model {model * 1e3:.3f}"
                    )
    creplay = replay_conv(ccases)
    if creplay:
        lines += ["", "conv replay (cases with more than one algorithm measured, ms):"]
        for r in creplay:
            bad = r["ratio"] is None or r["ratio"] > MAX_RATIO
            ok &= not bad
            ratio = "  none" if r["ratio"] is None else f"{r['ratio']:6.2f}"
            lines.append(
                f"  {r['case'][0]} {r['case'][1]}: auto {r['chosen']} "
                f"{_ms(r['chosen_s'])}, fastest {r['best']} {_ms(r['best_s'])}, "
                f"ratio {ratio}{'  <-- MISS' if bad else ''}"
            )
        from gpuconv import _plan_conv

        lo, hi = regblock_cols_range(ccases)
        cur = _plan_conv.REGBLOCK_MIN_COLS
        lines.append(
            f"  REGBLOCK_MIN_COLS: the rows allow ({lo}, {hi}]; current {cur} "
            + ("agrees" if lo < cur <= hi else "DISAGREES: adjust it")
        )
        ok &= lo < cur <= hi
    return "\n".join(lines), ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="calibrate.py", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("rows", nargs="+", help="gpuconv-bench/1 JSON files (GPU runs)")
    ap.add_argument(
        "--write",
        action="store_true",
        help="rewrite the calibration block of gpuconv/_plan_filter.py",
    )
    args = ap.parse_args(argv)
    rows = load_rows(args.rows)
    fsources = sorted(
        {
            relative_source(r["_source"])
            for r in rows
            if "n" in r and r.get("backend") == "cuda"
        }
    )
    constants = fit_filter(filter_cases(rows)) if fsources else current_constants()
    text, ok = report(rows, constants, fsources)
    print(text)
    if args.write and fsources:
        write_block(render_block(constants, fsources))
        print(f"\nwrote the calibration block of {PLAN_FILTER}")
    if not ok:
        print(f"\nsome case is more than {MAX_RATIO}x the fastest", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
