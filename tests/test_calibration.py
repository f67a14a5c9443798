"""The CUDA choosers replayed on the committed GPU rows (no GPU needed).

``gpuconv._plan_filter`` holds constants fitted by ``bench/calibrate.py`` on the rows
named in ``CALIBRATION_ROWS``. Here: refitting those rows reproduces the constants;
on every filter case ``'auto'`` now chooses an algorithm whose *measured* time is
within ``MAX_RATIO`` (1.1x) of the fastest of ours measured for that case; the same
for every conv case where more than one algorithm was measured; and the host-side
shortcuts ``'auto'`` takes (tile-fit check, 7-smooth table, one-reduction finiteness
check) agree with what they replace.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from gpuconv import _gpu_filter, _plan_conv, _plan_filter
from gpuconv._filter_args import FilterProblem

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def _load_calibrate():
    spec = importlib.util.spec_from_file_location(
        "_test_calibrate", ROOT / "bench" / "calibrate.py"
    )
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


cal = _load_calibrate()


def _filter_rows():
    return cal.load_rows(ROOT / p for p in _plan_filter.CALIBRATION_ROWS)


def _conv_rows():
    # every committed conv run of the calibrated device (the rows' own names)
    device = {r["device"] for r in _filter_rows()}
    paths = sorted(RESULTS.glob("cuda-*-conv*.json"))
    rows = [r for r in cal.load_rows(paths) if r.get("device") in device]
    assert rows, f"no conv rows of {device} under {RESULTS}"
    return rows


def test_calibration_rows_are_committed():
    assert _plan_filter.CALIBRATION_ROWS
    for p in _plan_filter.CALIBRATION_ROWS:
        assert (ROOT / p).is_file(), p


def test_refit_reproduces_the_constants():
    """The constants are exactly what bench/calibrate.py fits on the named rows."""
    fitted = cal.fit_filter(cal.filter_cases(_filter_rows()))
    assert fitted == cal.current_constants()


def test_filter_auto_within_ratio_of_fastest_on_every_row():
    cases = cal.filter_cases(_filter_rows())
    assert len(cases) >= 14  # 4096² and 8192² x 6 kernels, 512² x 2
    replay = cal.replay_filter(cases)
    misses = [r for r in replay if r["ratio"] is None or r["ratio"] > cal.MAX_RATIO]
    assert not misses, misses
    # the known misses of the uncalibrated model are gone
    by_case = {(r["case"][1], r["case"][2]): r["chosen"] for r in replay}
    assert by_case[(4096, 31)] == by_case[(8192, 31)] == "fft"
    assert by_case[(512, 3)] == "naive"
    assert all(by_case[(4096, k)] == "tiled" for k in (3, 5, 7, 9, 15))


def test_replay_flags_a_bad_chooser(monkeypatch):
    """The replay is not vacuous: a chooser that always takes the FFT fails it."""
    monkeypatch.setattr(_plan_filter, "choose_algorithm", lambda fp, m="auto": "fft")
    replay = cal.replay_filter(cal.filter_cases(_filter_rows()))
    assert sum(r["ratio"] > cal.MAX_RATIO for r in replay) >= 10


def test_conv_choice_within_ratio_where_several_algorithms_were_measured():
    cases = cal.conv_cases(_conv_rows())
    replay = cal.replay_conv(cases)
    assert len(replay) >= 2  # the 7x7/2 C3 input gradient at N16 and N32
    for r in replay:
        assert r["ratio"] is not None and r["ratio"] <= cal.MAX_RATIO, r
    lo, hi = cal.regblock_cols_range(cases)
    assert lo < _plan_conv.REGBLOCK_MIN_COLS <= hi


def test_calibrate_main_and_write(tmp_path, capsys):
    paths = [str(ROOT / p) for p in _plan_filter.CALIBRATION_ROWS]
    paths += [str(p) for p in sorted(RESULTS.glob("cuda-h200-*-conv*.json"))]
    assert cal.main(paths) == 0
    out = capsys.readouterr().out
    assert "HOST_SECONDS = " in out and "conv replay" in out and "MISS" not in out
    # --write replaces exactly the block: a copy of the module round-trips
    copy = tmp_path / "_plan_filter.py"
    src = (ROOT / "gpuconv" / "_plan_filter.py").read_text()
    copy.write_text(src)
    block = cal.render_block(cal.current_constants(), _plan_filter.CALIBRATION_ROWS)
    cal.write_block(block, copy)
    assert copy.read_text() == src


def test_nnls_relative_recovers_a_model():
    rng = np.random.default_rng(0)
    a = np.column_stack([np.ones(20), rng.uniform(1, 100, 20), rng.uniform(0, 5, 20)])
    x = np.array([3.0, 0.5, 0.0])
    got = cal.nnls_relative(a, a @ x)
    np.testing.assert_allclose(got, x, atol=1e-9)


@pytest.mark.parametrize("dtype", ["float32", "float64", "complex128", "int8"])
def test_tiled_fits_is_tiled_config_not_none(dtype):
    dt = np.dtype(dtype)
    for kh in (1, 3, 9, 17, 31, 45, 63, 90):
        for kw in (1, 2, 7, 31, 64, 101, 300):
            for oh in (1, 15, 16, 200):
                fp = FilterProblem(1, oh, 64, 1, kh, kw, 0, 0, oh, 64, "fill", 0, dt)
                assert _plan_filter.tiled_fits(fp) == (
                    _plan_filter.tiled_config(fp) is not None
                ), (kh, kw, oh)


def test_auto_does_no_tile_search(monkeypatch):
    calls = []
    real = _plan_filter.tiled_config
    monkeypatch.setattr(
        _plan_filter, "tiled_config", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    fp = FilterProblem(1, 4096, 4096, 1, 5, 5, 2, 2, 4096, 4096, "fill", 0, "f4")
    assert _plan_filter.choose_algorithm(fp, "auto") == "tiled"
    assert _plan_filter.choose_algorithm(fp, "direct") == "tiled"
    assert not calls


def test_next_fast_len_is_the_next_7_smooth_number():
    def smooth(m):
        for p in (2, 3, 5, 7):
            while m % p == 0:
                m //= p
        return m == 1

    want, m = [], 6000
    for n in range(6000, 0, -1):  # walking down: the next smooth number >= n
        if smooth(n):
            m = n
        want.append(m)
    got = [_plan_filter.next_fast_len(n) for n in range(6000, 0, -1)]
    assert got == want
    assert _plan_filter.next_fast_len(0) == 1
    big = (1 << 32) + 1  # beyond the table: the search
    m = _plan_filter.next_fast_len(big)
    assert m >= big and smooth(m)


def test_finiteness_check_of_auto():
    """One sum decides in the common case; NaN, inf and finite values whose sum
    overflows are all classified exactly."""
    fp = FilterProblem(1, 4, 4, 1, 2, 2, 0, 0, 3, 3, "fill", 0.0, np.dtype("f4"))
    k = np.ones((1, 2, 2), np.float32)
    x = np.ones((1, 4, 4), np.float32)
    assert _gpu_filter._all_finite(np, x, k, fp)
    x[0, 1, 1] = np.finfo(np.float32).max  # the sum overflows, every value finite
    x[0, 2, 2] = np.finfo(np.float32).max
    assert _gpu_filter._all_finite(np, x, k, fp)
    for bad in (np.nan, np.inf, -np.inf):  # NumPy warns about the sums
        y = x.copy()
        y[0, 3, 0] = bad
        assert not _gpu_filter._all_finite(np, y, k, fp)
        kk = k.copy()
        kk[0, 0, 1] = bad
        assert not _gpu_filter._all_finite(np, x, kk, fp)
    y = x.copy()
    y[0, 0, 0], y[0, 0, 1] = np.inf, -np.inf  # the sum is NaN
    assert not _gpu_filter._all_finite(np, y, k, fp)


def test_float64_rows_set_the_fp64_flop_scale():
    """The float64 rows (public calls that ran 'tiled') are fitted: the model, plus
    the public path's measured overhead, predicts the compute-bound ones (k >= 7)
    within 20 %, and double precision costs more than the peak ratio says."""
    cases = cal.filter_cases(_filter_rows())
    overhead = cal.auto_overhead(cases)
    assert 50e-6 < overhead < 100e-6  # the H200 rows: +75..85 us per public call
    f64 = {k: c for k, c in cases.items() if k[3] == "float64"}
    assert len(f64) == 5
    for (_, n, k, _), case in f64.items():
        model = _plan_filter.direct_seconds(case["fp"], "tiled") + overhead
        if k >= 7:
            assert abs(model / case["auto"]["tiled"] - 1) < 0.2, (n, k)
    peak_ratio = _plan_filter.PEAK_FLOPS["f4"] / _plan_filter.PEAK_FLOPS["f8"]
    assert _plan_filter.FP64_FLOP_SCALE > 1.5 * peak_ratio
