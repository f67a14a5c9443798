"""Fit the CUDA algorithm choosers from GPU benchmark rows, and replay the rows.

One command recalibrates after a new GPU run::

    PYTHONPATH=. python bench/calibrate.py \\
        bench/results/cuda-<dev>-<date>-<commit>-filter.json \\
        [bench/results/...-conv.json ...] [--host-table TABLE.json] [--write]

What it does:

- **host correction**: a row's time (CUDA events around one call, a sync after
  it) is the host time before the call's first device work plus the device time.
  The host part belongs to the code of the rows' commit, not to the algorithm, so
  it is subtracted first: per row from the table ``bench/host_correction.py``
  measured on that commit's tree with the null-device proxy
  (``bench/results/host-overhead-<commit>-proxy.json``, found from the rows' file
  names, or ``--host-table``). The report prints both, whole and device-side.
- **filter** rows (``bench/bench_gpu_filter.py``): the forced-algorithm rows
  (``variant`` ``naive``/``tiled``/``fft``) less their host correction are the
  measurements; each algorithm's device-side time is modelled as
  ``DEVICE + BYTE * bytes + FLOP * flops`` (the features are
  :func:`gpuconv._plan_filter.direct_features` and ``fft_features``: the direct
  kernels' bytes and float32-equivalent FLOP, the FFT path's passes over its
  grids). The constants are fitted per algorithm by non-negative least squares on
  the error relative to the row's measured time (every row counts alike, 512² as
  much as 8192²) and printed as the calibration block of
  ``gpuconv/_plan_filter.py``; ``--write`` replaces that block in place (between
  its ``BEGIN CALIBRATION``/``END CALIBRATION`` lines), naming the rows and the host
  table it came from. Those constants are fitted on float32 rows; the float64 rows
  (forced or ``auto``, less their host correction) then fit ``FP64_FLOP_SCALE``,
  the cost of a double-precision FLOP in float32 FLOP. ``filter2d_rank1`` rows
  (forced ``separable``), when present, fit ``SEPARABLE_EXTRA_SECONDS`` and
  ``SEPARABLE_PASS_EFFICIENCY``; otherwise those stay the estimates they are, and
  the block's ``UNCALIBRATED`` says so.
- **replay**: for every filter case, the algorithm ``'auto'`` chooses (with the
  fitted constants) and its measured whole-call time against the fastest measured
  of ours; and for every conv case (``bench/bench_gpu_conv.py`` rows, ``resolved``
  is the algorithm that ran) where more than one algorithm was measured, the same
  for :func:`gpuconv._plan_conv.choose_algorithm`. A case more than
  :data:`MAX_RATIO` times the fastest fails (exit status 1), unless it is
  *host-decided*: the measured device-side times (whole less host correction) of
  the choice is within :data:`MAX_RATIO` of the fastest's (plus
  :data:`HOST_SLACK_SECONDS`, the proxy's uncertainty), i.e. the measured gap is
  host time of the rows' commit that the code of today no longer spends (the same
  host path for every direct algorithm). Such cases are listed as ``HOST``.
- **diagnostics**: what the ``auto`` rows (the public call) cost over the forced
  row of the algorithm they ran, measured and on the proxy, and the range of
  ``REGBLOCK_MIN_COLS`` the conv rows allow.

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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from host_correction import FORMAT as HOST_FORMAT  # noqa: E402
from host_correction import row_key  # noqa: E402

#: ``auto`` may cost at most this many times the fastest measured algorithm.
MAX_RATIO = 1.1
#: Absolute slack of the device-side comparison of a host-decided case: the
#: proxy's host estimate is good to about this (512² rows of 08aa471: the forced
#: tiled row's estimate exceeds its whole time by 7-10 µs).
HOST_SLACK_SECONDS = 15e-6
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


_COMMIT = re.compile(r"-([0-9a-f]{7,40})-")


def host_table_path(sources: Iterable[str]) -> Path:
    """``bench/results/host-overhead-<commit>-proxy.json`` of the rows' commit (the
    commit in their file names; one commit for all)."""
    commits = set()
    for src in sources:
        m = _COMMIT.search(Path(src).name)
        if m is None:
            raise ValueError(f"no commit in the file name {src!r}: pass --host-table")
        commits.add(m.group(1))
    if len(commits) != 1:
        raise ValueError(f"rows of several commits {sorted(commits)}: fit them apart")
    return ROOT / "bench" / "results" / f"host-overhead-{commits.pop()}-proxy.json"


def load_host_table(path: str | Path) -> dict[tuple, float]:
    """``{row_key: host seconds}`` of a ``bench/host_correction.py`` table."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no host-correction table {path}: make it with bench/host_correction.py "
            "--tree <checkout of the rows' commit> ROWS.json --out " + str(path)
        )
    doc = json.loads(path.read_text())
    if doc.get("format") != HOST_FORMAT:
        raise ValueError(f"{path} is not a {HOST_FORMAT} table")
    return {
        (
            r["kind"],
            r["variant"],
            r["algorithm"],
            int(r["n"]),
            int(r["k"]),
            r["dtype"],
        ): float(r["host_s"])
        for r in doc["rows"]
    }


def host_of(row: dict[str, Any], table: dict[tuple, float] | None) -> float:
    """The host correction of ``row`` (0 without a table)."""
    if table is None:
        return 0.0
    key = row_key(row)
    if key not in table:
        raise KeyError(f"the host-correction table has no row {key}: remake it")
    return table[key]


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


def filter_cases(
    rows: list[dict[str, Any]], host: dict[tuple, float] | None = None
) -> dict[tuple, dict[str, Any]]:
    """``{(op, n, k, dtype): {"fp", "times": {alg: s}, "auto": {alg: s}, "host":
    {alg: s}, "auto_host": {alg: s}}}``: the forced rows' medians and the ``auto``
    rows' medians by the algorithm they ran (rows repeated once per peer count
    once), and each one's host correction from ``host`` (0 without)."""
    cases: dict[tuple, dict[str, Any]] = {}
    for row in rows:
        if not _timed(row) or "n" not in row or row.get("backend") != "cuda":
            continue
        key = (row["op"], int(row["n"]), int(row["k"]), row["dtype"])
        case = cases.setdefault(
            key, {"fp": None, "times": {}, "auto": {}, "host": {}, "auto_host": {}}
        )
        if case["fp"] is None:
            case["fp"] = filter_problem(row)
        variant, t = row["variant"], float(row["median_s"])
        if variant in FILTER_ALGORITHMS:
            case["times"][variant] = min(t, case["times"].get(variant, np.inf))
            case["host"][variant] = host_of(row, host)
        elif variant == "auto" and row.get("algorithm"):
            alg = row["algorithm"]
            case["auto"][alg] = min(t, case["auto"].get(alg, np.inf))
            case["auto_host"][alg] = host_of(row, host)
    return cases


def rank1_cases(
    rows: list[dict[str, Any]], host: dict[tuple, float] | None = None
) -> dict[tuple, dict[str, Any]]:
    """The ``filter2d_rank1`` rows (``size``, not ``n``) like :func:`filter_cases`:
    ``{(n, k, dtype): {"fp", "times": {variant: s}, "host": {variant: s}}}`` with
    the forced variants ``tiled``, ``separable``, ``fft``."""
    cases: dict[tuple, dict[str, Any]] = {}
    for row in rows:
        if not _timed(row) or row.get("backend") != "cuda":
            continue
        if not str(row.get("case", "")).startswith("filter2d_rank1/"):
            continue
        variant = row["variant"]
        if variant not in ("tiled", "separable", "fft"):
            continue
        n, k, dt = int(row["size"]), int(row["k"]), row["dtype"]
        case = cases.setdefault((n, k, dt), {"fp": None, "times": {}, "host": {}})
        if case["fp"] is None:
            from gpuconv._filter_args import normalize_filter2d

            case["fp"] = normalize_filter2d(
                (n, n),
                (k, k),
                np.dtype(dt),
                np.dtype(dt),
                "same",
                "fill",
                0,
                convolve=True,
            ).problem
        t = float(row["median_s"])
        case["times"][variant] = min(t, case["times"].get(variant, np.inf))
        case["host"][variant] = host_of(row, host)
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
def nnls_relative(
    a: np.ndarray, t: np.ndarray, scale: np.ndarray | None = None
) -> np.ndarray:
    """``x >= 0`` minimising ``sum(((a @ x) - t) / scale) ** 2)``, ``scale``
    defaulting to ``t`` (exact: every subset of the few columns is solved and the
    best non-negative solution kept)."""
    t = np.asarray(t, float)
    scale = t if scale is None else np.asarray(scale, float)
    a = np.asarray(a, float) / scale[:, None]
    b = t / scale
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


def device_time(case: dict[str, Any], alg: str, auto: bool = False) -> float:
    """Measured device-side seconds of ``alg`` in ``case``: the whole time less
    its host correction (forced row, or the ``auto`` row that ran ``alg``)."""
    if auto:
        return case["auto"][alg] - case["auto_host"][alg]
    return case["times"][alg] - case["host"][alg]


def fit_filter(
    cases: dict[tuple, dict[str, Any]],
    rank1: dict[tuple, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The calibration constants (3 significant digits: what the block holds).

    ``DEVICE_SECONDS``, ``BYTE_SECONDS``, ``FLOP_SECONDS`` per algorithm from the
    forced float32 rows less their host correction (:func:`device_time`), the
    error taken relative to the row's whole measured time; ``FP64_FLOP_SCALE`` from
    the float64 rows of the direct kernels (forced or ``auto``, less their host
    correction) with the float32 constants fixed, or the peak ratio when there are
    none; ``SEPARABLE_EXTRA_SECONDS`` and ``SEPARABLE_PASS_EFFICIENCY`` from the
    forced ``separable`` rows of ``rank1`` (:func:`rank1_cases`) with the tiled
    constants fixed, or the current estimates when there are none (then listed in
    ``UNCALIBRATED``).
    """
    out: dict[str, Any] = {
        "DEVICE_SECONDS": {},
        "BYTE_SECONDS": {},
        "FLOP_SECONDS": {},
    }
    f32 = {k: c for k, c in cases.items() if k[3] == "float32"}
    for alg in FILTER_ALGORITHMS:
        feats, dev, whole = [], [], []
        for case in f32.values():
            if alg in case["times"]:
                fp = case["fp"]
                feats.append(
                    _plan_filter.fft_features(fp)
                    if alg == "fft"
                    else _plan_filter.direct_features(fp)
                )
                dev.append(device_time(case, alg))
                whole.append(case["times"][alg])
        if not dev:
            raise ValueError(f"no forced float32 '{alg}' rows to fit")
        x = nnls_relative(np.array(feats), np.array(dev), np.array(whole))
        out["DEVICE_SECONDS"][alg] = _sig(x[0])
        out["BYTE_SECONDS"][alg] = _sig(x[1])
        if alg != "fft":
            out["FLOP_SECONDS"][alg] = _sig(x[2])
    # float64: t = DEVICE + BYTE * bytes + FLOP * (2 * taps * outputs) * scale
    num = den = 0.0
    for key, case in cases.items():
        if key[3] != "float64":
            continue
        fp = case["fp"]
        obs = {a: (device_time(case, a, True), t) for a, t in case["auto"].items()}
        obs.update({a: (device_time(case, a), t) for a, t in case["times"].items()})
        _, nbytes, _ = _plan_filter.direct_features(fp)
        flops = 2.0 * fp.B * fp.OH * fp.OW * fp.KH * fp.KW
        for alg, (dev, whole) in obs.items():
            if alg == "fft":
                continue
            base = out["DEVICE_SECONDS"][alg] + out["BYTE_SECONDS"][alg] * nbytes
            u = out["FLOP_SECONDS"][alg] * flops / whole
            num += u * (dev - base) / whole
            den += u * u
    prior = _plan_filter.PEAK_FLOPS["f4"] / _plan_filter.PEAK_FLOPS["f8"]
    out["FP64_FLOP_SCALE"] = _sig(max(num / den, 1.0) if den else prior)
    out.update(fit_separable(rank1 or {}, out))
    return out


#: The estimates the block lists as uncalibrated when no rows fit them.
SEPARABLE_CONSTANTS = ("SEPARABLE_EXTRA_SECONDS", "SEPARABLE_PASS_EFFICIENCY")


def fit_separable(
    rank1: dict[tuple, dict[str, Any]], constants: dict[str, Any]
) -> dict[str, Any]:
    """``SEPARABLE_EXTRA_SECONDS``, ``SEPARABLE_PASS_EFFICIENCY`` and
    ``UNCALIBRATED``: fitted on the forced ``separable`` rank-1 rows less their host
    correction, with the tiled constants of ``constants`` fixed (device time =
    ``EXTRA + known + pass_flop_s / EFFICIENCY``,
    :func:`gpuconv._plan_filter.separable_features`); without such rows the current
    values, named in ``UNCALIBRATED``."""
    tiled = {
        n: constants[n] for n in ("DEVICE_SECONDS", "BYTE_SECONDS", "FLOP_SECONDS")
    }
    feats, dev, whole = [], [], []
    with using_constants(tiled):
        for case in rank1.values():
            if "separable" not in case["times"]:
                continue
            _, known, flop_s = _plan_filter.separable_features(case["fp"])
            t = case["times"]["separable"]
            feats.append((1.0, flop_s))
            dev.append(t - case["host"]["separable"] - known)
            whole.append(t)
    if not dev:
        return {
            "SEPARABLE_EXTRA_SECONDS": _plan_filter.SEPARABLE_EXTRA_SECONDS,
            "SEPARABLE_PASS_EFFICIENCY": _plan_filter.SEPARABLE_PASS_EFFICIENCY,
            "UNCALIBRATED": SEPARABLE_CONSTANTS,
        }
    x = nnls_relative(np.array(feats), np.array(dev), np.array(whole))
    if x[1] <= 0:
        raise ValueError("the separable rows fit no FLOP cost: check the rows")
    return {
        "SEPARABLE_EXTRA_SECONDS": _sig(x[0]),
        "SEPARABLE_PASS_EFFICIENCY": _sig(1.0 / x[1]),
        "UNCALIBRATED": (),
    }


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


CONSTANTS = (
    "DEVICE_SECONDS",
    "BYTE_SECONDS",
    "FLOP_SECONDS",
    "FP64_FLOP_SCALE",
    "SEPARABLE_EXTRA_SECONDS",
    "SEPARABLE_PASS_EFFICIENCY",
    "UNCALIBRATED",
)


def current_constants() -> dict[str, Any]:
    out = {}
    for name in CONSTANTS:
        value = getattr(_plan_filter, name)
        out[name] = dict(value) if isinstance(value, dict) else value
    return out


def render_block(
    constants: dict[str, Any], sources: Iterable[str], host_table: str = ""
) -> str:
    """The text between (and including) the BEGIN/END CALIBRATION lines."""

    def fmt(d: dict[str, float]) -> str:
        return "{" + ", ".join(f'"{k}": {v!r}' for k, v in d.items()) + "}"

    srcs = "".join(f'\n    "{s}",' for s in sources)
    unc = "".join(f'\n    "{s}",' for s in constants["UNCALIBRATED"])
    return (
        f"{BEGIN} (written by bench/calibrate.py --write; refit, do not hand-edit)\n"
        "#: The benchmark rows the constants below were fitted on.\n"
        f"CALIBRATION_ROWS = ({srcs}\n)\n"
        "#: The host time those rows carried on their commit (null-device proxy,\n"
        "#: bench/host_correction.py), subtracted from them before the fit.\n"
        f'HOST_CORRECTION = "{host_table}"\n'
        "#: Fixed device-side seconds per call of each algorithm (launch latency and\n"
        "#: tail; fft: its several launches and CuPy's per-operation host time).\n"
        f"DEVICE_SECONDS = {fmt(constants['DEVICE_SECONDS'])}\n"
        "#: Seconds per byte the algorithm moves (direct: input + output + kernel;\n"
        "#: fft: the passes over the FFT grids, :func:`fft_features`).\n"
        f"BYTE_SECONDS = {fmt(constants['BYTE_SECONDS'])}\n"
        "#: Seconds per float32-equivalent FLOP of the direct kernels.\n"
        f"FLOP_SECONDS = {fmt(constants['FLOP_SECONDS'])}\n"
        "#: float32-equivalent FLOP per FLOP of float64 and complex128 in the direct\n"
        "#: kernels.\n"
        f"FP64_FLOP_SCALE = {constants['FP64_FLOP_SCALE']!r}\n"
        "#: Separable (rank-1) passes: share of the 2-D tiled kernel's FLOP rate a\n"
        "#: KH x 1 or 1 x KW pass reaches, and the fixed seconds the two passes add\n"
        "#: (the kernel's copy to the host for the rank test, a sync), fitted on\n"
        "#: 'filter2d_rank1' rows unless named in UNCALIBRATED.\n"
        f"SEPARABLE_PASS_EFFICIENCY = {constants['SEPARABLE_PASS_EFFICIENCY']!r}\n"
        f"SEPARABLE_EXTRA_SECONDS = {constants['SEPARABLE_EXTRA_SECONDS']!r}\n"
        "#: Constants of this block the rows did not fit: estimates (see above).\n"
        f"UNCALIBRATED = ({unc}\n)\n"
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
def device_model(fp: Any, alg: str) -> float:
    """The model's device-side seconds of ``alg`` on ``fp``."""
    if alg == "fft":
        return _plan_filter.fft_device_seconds(fp)
    return _plan_filter.direct_device_seconds(fp, alg)


def replay_filter(cases: dict[tuple, dict[str, Any]]) -> list[dict[str, Any]]:
    """Per case: ``auto``'s choice now, its measured (whole-call) time, the fastest
    measured, their ratio; the measured device-side times (whole less host
    correction) and whether the case is *host-decided* (``ratio`` above
    :data:`MAX_RATIO`, but the choice's device-side time within :data:`MAX_RATIO`
    of the fastest device-side time plus :data:`HOST_SLACK_SECONDS`); and the
    model's device-side seconds of each measured algorithm."""
    out = []
    for key, case in sorted(cases.items()):
        times = case["times"]
        if not times:  # auto rows only (e.g. float64): nothing to compare with
            continue
        chosen = _plan_filter.choose_algorithm(case["fp"], "auto")
        best = min(times, key=times.__getitem__)
        t = times.get(chosen)
        dev = {a: device_time(case, a) for a in times}
        ratio = None if t is None else t / times[best]
        host_decided = (
            ratio is not None
            and ratio > MAX_RATIO
            and dev[chosen]
            <= MAX_RATIO * max(min(dev.values()), 0.0) + HOST_SLACK_SECONDS
        )
        out.append(
            {
                "case": key,
                "chosen": chosen,
                "chosen_s": t,
                "best": best,
                "best_s": times[best],
                "ratio": ratio,
                "device_s": dev,
                "host_decided": host_decided,
                "ok": ratio is not None and (ratio <= MAX_RATIO or host_decided),
                "model_s": {a: device_model(case["fp"], a) for a in times},
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
        m, ng, kr = _plan_conv.gemm_shape(p, pass_name)
        if (pass_name == "backward_input"
                and kr >= _plan_conv.DGRAD_REGBLOCK_MIN_RED):
            continue  # decided by the reduction length, not the columns
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
    host: dict[tuple, float] | None = None,
    host_table: str = "",
) -> tuple[str, bool]:
    """The printed report and whether every replayed case is within MAX_RATIO
    (or host-decided, :func:`replay_filter`)."""
    lines, ok = [], True
    fcases, ccases = filter_cases(rows, host), conv_cases(rows)
    with using_constants(constants):
        freplay = replay_filter(fcases)
    if fcases:
        lines += [
            "# fitted on the filter rows of: " + ", ".join(sources),
            "# less the host correction of: " + (host_table or "(none)"),
            render_block(constants, sources, host_table),
            "",
            "filter replay (ms; whole = measured call, host = correction, device ="
            " whole - host; model = device-side model):",
            f"  {'case':34s} {'auto now':>9s} {'whole':>7s} {'fastest':>9s}"
            f" {'whole':>7s} {'ratio':>6s}  per algorithm whole/host/device [model]",
        ]
        for r in freplay:
            op, n, k, dt = r["case"]
            case = fcases[r["case"]]
            ok &= r["ok"]
            per = " ".join(
                f"{a}={case['times'][a] * 1e3:.3f}/{case['host'][a] * 1e3:.3f}/"
                f"{r['device_s'][a] * 1e3:.3f}[{r['model_s'][a] * 1e3:.3f}]"
                for a in r["model_s"]
            )
            ratio = "  none" if r["ratio"] is None else f"{r['ratio']:6.2f}"
            flag = (
                ""
                if r["ratio"] is not None and r["ratio"] <= MAX_RATIO
                else (
                    "  <-- HOST (device-side within the ratio)"
                    if r["ok"]
                    else "  <-- MISS"
                )
            )
            lines.append(
                f"  {op + f' {n}^2 k{k} {dt}':34s} {r['chosen']:>9s} "
                f"{_ms(r['chosen_s'])} {r['best']:>9s} {_ms(r['best_s'])} {ratio}"
                f"  {per}{flag}"
            )
        for key, case in sorted(fcases.items()):
            for alg, t in case["auto"].items():
                if alg in case["times"]:
                    forced = case["times"][alg]
                    proxy = case["auto_host"][alg] - case["host"][alg]
                    lines.append(
                        f"  auto row {key[1]}^2 k{key[2]} ran {alg}: "
                        f"{t * 1e3:.3f} ms vs forced {forced * 1e3:.3f} "
                        f"(+{(t - forced) * 1e3:.3f}; host correction "
                        f"+{proxy * 1e3:.3f}: the public call's host path"
                        + (", finiteness check)" if alg == "fft" else ")")
                    )
    if any(key[3] == "float64" for key in fcases):
        lines.append(
            f"float64 rows (FP64_FLOP_SCALE {constants['FP64_FLOP_SCALE']}; device ="
            " whole - host correction):"
        )
        with using_constants(constants):
            for key, case in sorted(fcases.items()):
                if key[3] != "float64":
                    continue
                obs = {
                    **{a: (t, case["auto_host"][a]) for a, t in case["auto"].items()},
                    **{a: (t, case["host"][a]) for a, t in case["times"].items()},
                }
                for alg, (t, h) in obs.items():
                    model = device_model(case["fp"], alg)
                    lines.append(
                        f"  {key[1]}^2 k{key[2]} {alg}: measured {t * 1e3:.3f} ms, "
                        f"host {h * 1e3:.3f}, device {(t - h) * 1e3:.3f}, "
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
        "--host-table",
        help="host-correction table (default: bench/results/host-overhead-<commit>"
        "-proxy.json of the rows' commit)",
    )
    ap.add_argument(
        "--write",
        action="store_true",
        help="rewrite the calibration block of gpuconv/_plan_filter.py",
    )
    args = ap.parse_args(argv)
    rows = load_rows(args.rows)
    fsources = sorted(
        {relative_source(r["_source"]) for r in rows if row_key(r) is not None}
    )
    host, table = None, ""
    if fsources:
        path = Path(args.host_table) if args.host_table else host_table_path(fsources)
        host, table = load_host_table(path), relative_source(str(path))
        constants = fit_filter(filter_cases(rows, host), rank1_cases(rows, host))
    else:
        constants = current_constants()
    text, ok = report(rows, constants, fsources, host, table)
    print(text)
    if args.write and fsources:
        write_block(render_block(constants, fsources, table))
        print(f"\nwrote the calibration block of {PLAN_FILTER}")
    if not ok:
        print(f"\nsome case is more than {MAX_RATIO}x the fastest", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
