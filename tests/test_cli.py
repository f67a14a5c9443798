"""The command line (``python -m gpuconv info|demo|bench``) and the demo's and the
benchmark's machinery (the README's examples: ``tests/test_docs.py``).

The CLI runs in subprocesses as a user runs it. The machinery (references,
validation, interleaving, rows, GPU plumbing) is also tested in-process on toy
inputs, so that a checker that cannot see a wrong result would be caught here.
Nothing here needs PyTorch, tqdm or a GPU; nothing is timed.
"""

from __future__ import annotations

import doctest
import importlib.metadata
import inspect
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gpuconv
from gpuconv import _backend, _bench, _demo
from gpuconv.__main__ import main

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("GPUCONV_BACKEND", None)
    # One thread each for BLAS and PyTorch: a smoke test on shared cores, where
    # spinning thread pools would only slow it down.
    env.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, "-m", "gpuconv", *args], capture_output=True, text=True,
        timeout=timeout, cwd=ROOT, env=env,
    )


# ----------------------------------------------------------------------------
# info
# ----------------------------------------------------------------------------


def test_info_lists_backends_and_why_cuda_is_missing():
    r = run_cli("info")
    assert r.returncode == 0, r.stderr
    assert f"gpuconv {gpuconv.__version__}" in r.stdout
    lines = {ln.split(":", 1)[0]: ln.split(":", 1)[1].strip()
             for ln in r.stdout.splitlines() if ":" in ln and not ln.startswith(" ")}
    assert "numpy" in lines["backends"].split(", ")
    reason = _backend.cuda_unavailable_reason()
    if reason is None:
        assert "cuda" in lines["backends"].split(", ")
        assert lines["cuda"] == "available"
    else:
        assert lines["cuda"] == f"unavailable: {reason}"
        assert lines["device"] == "none"


def test_info_json_is_gpuconv_info():
    r = run_cli("info", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == gpuconv.info()


def test_no_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 2
    assert "COMMAND" in capsys.readouterr().err


# ----------------------------------------------------------------------------
# demo
# ----------------------------------------------------------------------------


def test_demo_runs_and_every_check_passes():
    r = run_cli("demo")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "FAIL" not in r.stdout
    head = r.stdout.splitlines()[2].split()
    assert head[:3] == ["op", "shape", "backend"]
    table = r.stdout.splitlines()[4:]  # after the banner, header and rule
    n_rows = sum(1 for ln in table if ln.endswith("  ok"))
    assert f"all {n_rows} checks passed" in r.stdout
    for op in ("convolve2d blur", "correlate2d scharr", "conv2d forward",
               "conv2d_backward gx", "conv2d_backward gw", "finite diff"):
        assert op in r.stdout


def _filters_via_reference(monkeypatch, shift: bool = False):
    """Replace gpuconv's filter functions by the float64 reference (optionally
    with an off-by-one 'same' alignment): lets the demo's checker be tested on a
    known-right and a known-wrong library."""

    def make(correlate):
        def fn(in1, in2, mode="full", boundary="fill", fillvalue=0, *, axes=None,
               backend=None):
            in1, in2 = np.asarray(in1), np.asarray(in2)
            if axes is not None:
                shape = np.broadcast_shapes(in1.shape[:-2], in2.shape[:-2])
                a, b = (np.broadcast_to(v, shape + v.shape[-2:])
                        .reshape(-1, *v.shape[-2:]) for v in (in1, in2))
                out = np.stack([fn(x, y, mode, boundary, fillvalue)
                                for x, y in zip(a, b, strict=True)])
                return out.reshape(shape + out.shape[-2:])
            out = _demo.ref_filter2d(in1, in2, mode, boundary, fillvalue, correlate)
            if shift and mode == "same":
                out = np.roll(out, 1, axis=0)
            return out.astype(np.result_type(in1, in2))

        return fn

    monkeypatch.setattr(gpuconv, "convolve2d", make(False))
    monkeypatch.setattr(gpuconv, "correlate2d", make(True))


def test_demo_checker_passes_a_right_and_fails_a_wrong_filter(monkeypatch):
    _filters_via_reference(monkeypatch)
    rows = {c.op: c for c in _demo.run_checks(quick=True, backend="numpy",
                                                    families=("filter",))}
    filt = [c for op, c in rows.items() if op.startswith(("convolve2d", "correlate2d"))]
    assert len(filt) == 5 and all(c.ok for c in filt), [c.error for c in filt]

    _filters_via_reference(monkeypatch, shift=True)
    rows = {c.op: c for c in _demo.run_checks(quick=True, backend="numpy",
                                                    families=("filter",))}
    same = [c for op, c in rows.items()
            if op.startswith(("convolve2d", "correlate2d")) and "same" in c.shape]
    assert same and not any(c.ok for c in same)
    assert rows["correlate2d scharr"].ok  # 'valid' is not shifted


def test_demo_exit_status_is_one_when_a_check_fails(monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise ValueError("deliberately broken")

    monkeypatch.setattr(gpuconv, "conv2d", broken)
    assert main(["demo", "--quick", "--backend", "numpy"]) == 1
    out = capsys.readouterr().out
    assert "FAIL conv2d forward: ValueError: deliberately broken" in out
    assert "checks FAILED" in out


def test_demo_on_missing_cuda_exits_2_with_the_reason(capsys):
    reason = _backend.cuda_unavailable_reason()
    if reason is None:
        pytest.skip("CuPy and a device are available here")
    assert main(["demo", "--backend", "cuda"]) == 2
    assert f"backend 'cuda' is not available: {reason}" in capsys.readouterr().err


# ----------------------------------------------------------------------------
# The references the demo and the benchmark check against
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["full", "same", "valid"])
@pytest.mark.parametrize("boundary", ["fill", "wrap", "symm"])
@pytest.mark.parametrize("correlate", [False, True])
def test_ref_filter2d_is_scipy(mode, boundary, correlate, rng):
    ss = pytest.importorskip("scipy.signal")
    fn = ss.correlate2d if correlate else ss.convolve2d
    for (h, w), (kh, kw) in [((7, 9), (2, 3)), ((5, 6), (4, 4)), ((6, 5), (3, 5)),
                             ((3, 4), (5, 6))]:
        if mode == "valid" and (kh > h or kw > w):
            continue
        a = rng.standard_normal((h, w)) + 1j * rng.standard_normal((h, w))
        k = rng.standard_normal((kh, kw)) + 1j * rng.standard_normal((kh, kw))
        fv = 0.5 if boundary == "fill" else 0
        np.testing.assert_allclose(
            _demo.ref_filter2d(a, k, mode, boundary, fv, correlate),
            fn(a, k, mode, boundary, fv), rtol=1e-12, atol=1e-12,
        )


def test_ref_conv2d_is_correlate2d_per_channel(rng):
    ss = pytest.importorskip("scipy.signal")
    x = rng.standard_normal((2, 3, 8, 7))
    w = rng.standard_normal((4, 3, 3, 2))
    y = _demo.ref_conv2d(x, w, padding=(1, 1, 0, 1))
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (0, 1)))
    want = np.array([[sum(ss.correlate2d(xp[n, c], w[k, c], "valid") for c in range(3))
                      for k in range(4)] for n in range(2)])
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("padding_mode",
                         ["zeros", "reflect", "replicate", "circular", "symmetric"])
def test_ref_conv2d_backward_is_the_derivative(padding_mode, rng):
    geo = dict(stride=(2, 1), padding=(1, 2, 0, 1), dilation=(1, 2), groups=2,
               padding_mode=padding_mode)
    x = rng.standard_normal((2, 4, 6, 7))
    w = rng.standard_normal((4, 2, 2, 3))
    b = rng.standard_normal(4)
    gy = rng.standard_normal(_demo.ref_conv2d(x, w, b, **geo).shape)
    gx, gw, gb = _demo.ref_conv2d_backward(gy, x, w, **geo)
    loss = lambda x, w, b: float(np.vdot(_demo.ref_conv2d(x, w, b, **geo), gy))  # noqa: E731
    eps = 1e-6
    for grad, which in ((gx, 0), (gw, 1), (gb, 2)):
        args = [x, w, b]
        d = rng.standard_normal(args[which].shape)
        hi, lo = list(args), list(args)
        hi[which] = args[which] + eps * d
        lo[which] = args[which] - eps * d
        num = (loss(*hi) - loss(*lo)) / (2 * eps)
        assert num == pytest.approx(float(np.vdot(grad, d)), rel=1e-7, abs=1e-7)


def test_rel_err_flags_shape_nan_and_scales_by_max():
    assert _demo.rel_err(np.ones(3), np.ones(4)) == math.inf
    assert _demo.rel_err(np.array([1.0, np.nan]), np.ones(2)) == math.inf
    assert _demo.rel_err(np.array([10.0, 1.5]), np.array([10.0, 1.0])) == 0.05


# ----------------------------------------------------------------------------
# bench: the machinery on toy cases
# ----------------------------------------------------------------------------


def _toy_case(ours, peers, targets=None, terms=1):
    return _bench.Case(
        name="toy/float32", op="toy", shape="3", dtype="float32", unit="mpx_s",
        work=2e6, terms=terms,
        setup=lambda: _bench.Prepared(ours=ours, peers=peers,
                                      reference=lambda: np.arange(3.0)),
        targets=targets or {},
    )


def test_bench_interleaves_and_reports_ratio_of_medians():
    calls = []

    def rec(name):
        def fn():
            calls.append(name)
            return np.arange(3.0)

        return fn

    case = _toy_case(rec("ours"), {"p1": rec("p1"), "p2": rec("p2")},
                     targets={"p1": 1e9})
    rows = _bench.run_cases([case], repeats=4, budget_s=1e9, progress=False)
    # validation round, warm-up round, then 4 timed rounds, always interleaved
    assert calls == ["ours", "p1", "p2"] * 6
    assert [r["peer"] for r in rows] == ["p1", "p2"]
    for r in rows:
        assert set(_bench.ROW_KEYS) <= set(r)
        assert r["median"] == r["median_s"] > 0  # seconds, under both names
        assert r["ratio"] == pytest.approx(r["median"] / r["peer_median_s"])
        assert r["mpx_s"] == pytest.approx(2.0 / r["median_s"])
        assert r["gflops"] is None and r["repeats"] == 4 and r["max_err"] == 0
    assert rows[0]["meets_target"] is True and rows[1]["target_ratio"] is None


def test_bench_wrong_result_stops_before_timing():
    calls = []

    def ours():
        calls.append("ours")
        return np.array([0.0, 1.0, 2.1])

    case = _toy_case(ours, {"peer": lambda: np.arange(3.0)})
    with pytest.raises(_bench.BenchValidationError, match="toy/float32.*peer"):
        _bench.run_cases([case], repeats=3, progress=False)
    assert calls == ["ours"]


def test_bench_without_peer_validates_against_the_reference():
    case = _toy_case(lambda: np.arange(3.0), {})
    (row,) = _bench.run_cases([case], repeats=1, progress=False)
    assert row["peer"] is None and row["ratio"] is None and row["max_err"] == 0
    bad = _toy_case(lambda: np.arange(3.0) + 1, {})
    with pytest.raises(_bench.BenchValidationError, match="float64 NumPy"):
        _bench.run_cases([bad], repeats=1, progress=False)


def test_bench_library_error_is_a_validation_error():
    def ours():
        raise NotImplementedError("nope")

    with pytest.raises(_bench.BenchValidationError, match="NotImplementedError: nope"):
        _bench.run_cases([_toy_case(ours, {})], repeats=1, progress=False)


def test_bench_full_case_lists_match_the_issue():
    names = [c.name for c in _bench.numpy_cases("all")]
    assert len(names) == len(set(names)) == 2 * 5 + 5 * 3
    assert "convolve2d/same/2048x2048/k31/float32" in names
    assert "conv2d_backward_weight/N8-C3-224x224-K64-7x7-s2p3/float32" in names
    conv = {c.name: c for c in _bench.conv_cases()}
    c = conv["conv2d_forward/N8-C64-56x56-K64-3x3-s1p1/float32"]
    assert c.work == 2 * 8 * 64 * 64 * 9 * 56 * 56
    assert conv["conv2d_forward/N8-C3-224x224-K64-7x7-s2p3/float32"].work == (
        2 * 8 * 64 * 3 * 49 * 112 * 112)


def test_gpu_bench_is_loaded_by_path_and_its_rows_completed(tmp_path, monkeypatch):
    (tmp_path / "bench_gpu_conv.py").write_text(
        "def run_conv_bench(quick=False, repeats=None):\n"
        "    return [{'case': 'c', 'median_s': 1e-3, 'peer': 'cudnn',\n"
        "             'peer_median_s': 2e-3, 'ratio': 0.5, 'quick': quick,\n"
        "             'repeats': repeats}]\n"
    )
    monkeypatch.setattr(_bench, "bench_dir", lambda: tmp_path)
    monkeypatch.setattr(_backend, "cuda_unavailable_reason", lambda: None)
    rows = _bench.run_gpu("conv", quick=True, repeats=7, progress=False)
    assert rows[0]["quick"] is True and rows[0]["repeats"] == 7
    assert rows[0]["backend"] == "cuda" and "machine" in rows[0] and "date" in rows[0]
    assert rows[0]["median"] == rows[0]["median_s"] == 1e-3
    assert "0.5" in _bench.format_table(rows)
    with pytest.raises(_bench.BenchUnavailable, match="run_filter_bench not found"):
        _bench.run_gpu("all", quick=True, repeats=None, progress=False)


# ----------------------------------------------------------------------------
# bench: the command line
# ----------------------------------------------------------------------------


def _installed_version(dist):
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def test_machine_info_versions_do_not_depend_on_imports(monkeypatch):
    """``machine.torch`` is the installed torch even when no case imported it yet
    (the machine row was taken after a filter case: torch was None)."""
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    info = _bench.machine_info("numpy")
    for dist in ("scipy", "torch"):
        assert info[dist] == _installed_version(dist)
    if _installed_version("torch") is not None:
        assert info["torch"] is not None


def test_bench_quick_numpy_writes_rows(tmp_path):
    out = tmp_path / "rows.json"
    plot = tmp_path / "rows.png"
    args = ["bench", "--quick", "--backend", "numpy", "--json", str(out),
            "--no-progress"]
    have_mpl = _bench.check_plot_available() is None
    if have_mpl:
        args += ["--plot", str(plot)]
    r = run_cli(*args)
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(out.read_text())
    rows = doc["rows"]
    assert doc["argv"][:2] == ["gpuconv", "bench"]
    cases = {row["case"] for row in rows}
    assert cases == {c.name for c in _bench.numpy_cases("all", quick=True)}
    for row in rows:
        assert set(_bench.ROW_KEYS) <= set(row), set(_bench.ROW_KEYS) - set(row)
        assert row["backend"] == "numpy" and row["dtype"] == "float32"
        assert row["median"] == row["median_s"] > 0
        assert row["max_err"] <= row["err_limit"]
        assert row["machine"]["cores"] >= 1
        assert row["machine"]["numpy"] == np.__version__
        for dist in ("scipy", "torch"):  # installed versions, imported or not
            assert row["machine"][dist] == _installed_version(dist)
        if row["peer"] is not None:
            assert row["ratio"] == pytest.approx(row["median_s"] / row["peer_median_s"])
        rate = row["gflops"] if row["unit"] == "gflops" else row["mpx_s"]
        assert rate == row["rate"] > 0
        if row["target_ratio"] is not None:
            assert row["meets_target"] == (row["ratio"] <= row["target_ratio"])
        assert row["case"] in r.stdout
    if have_mpl:
        assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_cuda_without_cupy_exits_2_with_the_reason():
    reason = _backend.cuda_unavailable_reason()
    if reason is None:
        pytest.skip("CuPy and a device are available here")
    r = run_cli("bench", "--backend", "cuda", "--quick")
    assert r.returncode == 2
    assert "backend 'cuda' is not available" in r.stderr
    assert reason in r.stderr


def test_bench_plot_without_matplotlib_warns_and_keeps_the_rows(tmp_path, monkeypatch,
                                                                capsys):
    """--plot must not cost the measurements: without matplotlib the rows are still
    written, the chart is skipped with a warning."""
    from gpuconv import __main__ as cli

    row = {"case": "c", "op": "convolve2d", "peer": "scipy", "median_s": 1e-3,
           "peer_median_s": 2e-3, "ratio": 0.5, "target_ratio": None,
           "meets_target": None, "unit": "mpx_s", "rate": 1.0, "peer_rate": 0.5}
    monkeypatch.setattr(_bench, "check_plot_available", lambda: "no matplotlib")
    monkeypatch.setattr(_bench, "run_cases", lambda *a, **k: [dict(row)])
    out, png = tmp_path / "rows.json", tmp_path / "rows.png"
    rc = cli.main(["bench", "--quick", "--json", str(out), "--plot", str(png),
                   "--no-progress"])
    assert rc == 0
    assert json.loads(out.read_text())["rows"][0]["case"] == "c"
    assert not png.exists()
    assert "no matplotlib; no plot written" in capsys.readouterr().err


# ----------------------------------------------------------------------------
# docstrings of the public API
# ----------------------------------------------------------------------------


def numpydoc_gaps(module) -> list[str]:
    """Public callables of ``module.__all__`` whose docstring lacks an example, or
    that take arguments and lack a Parameters (classes: Attributes) section."""
    gaps = []
    for name in module.__all__:
        obj = getattr(module, name)
        if not callable(obj):
            continue
        doc = inspect.getdoc(obj) or ""
        if ">>>" not in doc:
            gaps.append(f"{name}: no example")
        section = "Attributes" if inspect.isclass(obj) else "Parameters"
        if inspect.signature(obj).parameters and f"{section}\n---" not in doc:
            gaps.append(f"{name}: no {section} section")
    return gaps


def test_public_docstrings_have_parameters_and_examples():
    assert numpydoc_gaps(gpuconv) == []


def test_conv_docstring_examples():
    """gpuconv._conv's examples (conv2d's C = 0 note, Conv2dGrads) run as shown."""
    from gpuconv import _conv, _padding

    for module in (_conv, _padding):
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.attempted > 0 and result.failed == 0, module.__name__
