"""The public API with its CUDA ops routed to the CPU emulation harness.

``gpuconv.conv2d`` & co. and ``gpuconv.convolve2d`` & co. are called on NumPy
arrays while ``_backend.backend_ops`` hands them the CUDA backend's ops
(``gpuconv._gpu_conv``, ``gpuconv._gpu_filter``) on an ``EmulatedDevice``: the API's
validation, empty-problem handling, casts (float16 in float32), complex
decomposition and conjugation, then our kernels. Checked here:

- ``gpuconv.choose_algorithm`` is the decision the ops take (spied), for every
  pass, padding mode and dtype;
- empty problems give correctly shaped results and launch nothing, in both
  families and every pass;
- float16 and complex through each algorithm, every pass;
- non-contiguous inputs of the weight gradient are read, not modified;
- oversized problems fail with the extent ``ValueError`` before any buffer is
  allocated.
"""

from __future__ import annotations

import types

import numpy as np
import pytest

import gpuconv
from gpuconv import _gpu_conv, _gpu_filter, _plan_cache, _plan_conv
from gpuconv._conv_args import normalize_conv2d
from gpuconv._emulate import EmulatedDevice
from gpuconv._filter_args import FilterProblem
from tests._cuda_conv_cases import (
    CASE_IDS,
    CASES,
    VARIANTS,
    api_pass,
    layouts,
    problem,
    random_inputs,
)
from tests._emu_helpers import EMULATED, prepared_device, route_numpy_to
from tests._tol import WINOGRAD_TERMS_SCALE, assert_close

pytestmark = EMULATED

ALL_PASSES = ("forward", "backward_input", "backward_weight")


@pytest.fixture(scope="module")
def dev():
    return prepared_device(["conv2d_forward.cu", "conv2d_backward_input.cu",
                            "conv2d_backward_weight.cu", "conv2d_pad.cu",
                            "conv2d_winograd.cu", "filter2d.cu"])


@pytest.fixture(autouse=True)
def _poison(monkeypatch):
    monkeypatch.setattr(_gpu_conv, "POISON_OUTPUTS", True)
    monkeypatch.setattr(_gpu_filter, "POISON_OUTPUTS", True)


@pytest.fixture
def via_emulator(dev, monkeypatch):
    return route_numpy_to(dev, monkeypatch)


def kernels_since(dev, n0):
    return [k for _, k, *_ in dev.launches[n0:]]


# ---------------------------------------------------------------------------------
# gpuconv.choose_algorithm


CHOICE_CASES = ["basic3x3", "one_by_one", "depthwise_strided", "regblock_fwd_tails",
                "regblock_dgrad_tails", "reflect", "circular_pad_gt_input"]


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "complex64"])
@pytest.mark.parametrize("case_id", CHOICE_CASES)
def test_choose_algorithm_is_what_auto_launches(case_id, dtype, via_emulator, dev):
    _, xs, ws, kw = CASES[CASE_IDS.index(case_id)]
    p = problem(xs, ws, dtype, kw)
    x, w, b, gy = random_inputs(np.random.default_rng(0), p, dtype)
    for pass_name in ALL_PASSES:
        want = gpuconv.choose_algorithm(xs, ws, pass_name, dtype=dtype, **kw)
        assert want in (*VARIANTS, "mma")  # mma: float16 on tensor cores
        n0 = len(dev.launches)
        api_pass(pass_name, x, w, b, gy, kw)
        main = [k for k in kernels_since(dev, n0)
                if k.startswith(f"conv2d_{pass_name}_")
                and not k.startswith("conv2d_backward_weight_reduce")]
        assert main, kernels_since(dev, n0)
        assert all(k.startswith(f"conv2d_{pass_name}_{want}<") for k in main), (
            want, main)


def test_choose_algorithm_is_spied_by_the_public_call_path(via_emulator, dev,
                                                           monkeypatch):
    """Forcing the planner's decision (a spy on ``_plan_conv.choose_algorithm``)
    changes both ``gpuconv.choose_algorithm`` and what ``algorithm='auto'`` runs,
    and the spy sees the problem as the kernels see it (real dtype, padded)."""
    seen = []

    def spy(p, pass_name):
        seen.append((pass_name, p))
        return "naive"

    monkeypatch.setattr(_plan_conv, "choose_algorithm", spy)
    # every real pass decides anew (counted below): no plan replayed from the cache
    monkeypatch.setattr(_plan_cache, "_ENABLED", False)
    _, xs, ws, kw = CASES[CASE_IDS.index("reflect")]
    assert _plan_conv.resolve_algorithm(problem(xs, ws, "float32", kw), "forward",
                                        "auto") == "naive"
    seen.clear()
    for pass_name in ALL_PASSES:
        assert gpuconv.choose_algorithm(xs, ws, pass_name, dtype="complex128",
                                        **kw) == "naive"
        p = problem(xs, ws, "complex128", kw)
        x, w, b, gy = random_inputs(np.random.default_rng(1), p, "complex128")
        n0 = len(dev.launches)
        api_pass(pass_name, x, w, b, gy, kw)
        main = [k for k in kernels_since(dev, n0) if f"conv2d_{pass_name}_" in k]
        assert main and all(f"_{pass_name}_naive<double>" in k for k in main), main
    # one decision for the public helper, then four real passes per op call
    assert [n for n, _ in seen] == [n for n in ALL_PASSES for _ in range(5)]
    for _, p in seen:
        assert p.compute_dtype == np.float64 and p.padding == (0, 0, 0, 0)
        assert (p.H, p.W) == (7 + 3, 8 + 3)


def test_choose_algorithm_arguments():
    assert gpuconv.choose_algorithm((64, 56, 56), (64, 64, 3, 3), padding=1) == (
        "tiled_regblock")  # unbatched
    assert gpuconv.choose_algorithm((128, 28, 28), (128, 128, 3, 3), padding=1) == (
        "nhwc")
    assert gpuconv.choose_algorithm((128, 8, 8), (128, 128, 3, 3), padding=1) == (
        "tiled_regblock")  # under the NHWC kernels' size floor
    assert gpuconv.choose_algorithm((1, 1, 200, 200), (1, 1, 7, 7),
                                    dilation=30, dtype=np.float64) == "naive"
    assert gpuconv.choose_algorithm((2, 3, 0, 5), (4, 3, 1, 1), padding=1) is None
    assert gpuconv.choose_algorithm((0, 3, 8, 8), (4, 3, 3, 3),
                                    "backward_weight") is None
    with pytest.raises(ValueError, match="pass_name"):
        gpuconv.choose_algorithm((1, 3, 8, 8), (4, 3, 3, 3), "backward")
    with pytest.raises(TypeError):
        gpuconv.choose_algorithm((1, 3, 8, 8), (4, 3, 3, 3), dtype="int32")
    with pytest.raises(ValueError):
        gpuconv.choose_algorithm((1, 3, 8, 8), (4, 2, 3, 3))  # channel mismatch
    assert "choose_algorithm" in gpuconv.__all__


# ---------------------------------------------------------------------------------
# empty problems: right shapes and values, no launch


@pytest.fixture
def no_launch(monkeypatch):
    """Every ``EmulatedDevice.launch`` call, whatever the instance."""
    launched = []
    real = EmulatedDevice.launch

    def spy(self, launch):
        launched.append(launch.kernel)
        return real(self, launch)

    monkeypatch.setattr(EmulatedDevice, "launch", spy)
    return launched


EMPTY_CONV = [
    ((0, 3, 5, 5), (4, 3, 3, 3), {"padding": 1}),
    ((2, 0, 5, 5), (4, 0, 1, 1), {}),
    ((2, 3, 0, 5), (4, 3, 1, 1), {"padding": 1}),
    ((2, 3, 5, 5), (0, 3, 3, 3), {}),
    ((3, 0, 4), (2, 3, 1, 1), {"padding": 2}),  # unbatched
]


@pytest.mark.parametrize("pass_name", [*ALL_PASSES, "bias"])
@pytest.mark.parametrize("dtype", ["float32", "complex64"])
def test_empty_conv_problems_launch_nothing(pass_name, dtype, via_emulator,
                                            no_launch):
    rng = np.random.default_rng(0)
    for xs, ws, kw in EMPTY_CONV:
        p = normalize_conv2d(xs, ws, [np.dtype(dtype)], **kw)
        assert p.empty
        x = rng.standard_normal(xs).astype(dtype)
        w = rng.standard_normal(ws).astype(dtype)
        b = rng.standard_normal(ws[0]).astype(dtype)
        gy = rng.standard_normal(p.user_shape(p.y_shape)).astype(dtype)
        got = api_pass(pass_name, x, w, b, gy, kw)
        want = via_emulator.numpy(api_pass, pass_name, x, w, b, gy, kw)
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    assert no_launch == [] and via_emulator.calls == []


def test_empty_filter_problems_launch_nothing(via_emulator, no_launch):
    import scipy.signal as ss

    rng = np.random.default_rng(1)
    for fn in ("convolve2d", "correlate2d"):
        ours, theirs = getattr(gpuconv, fn), getattr(ss, fn)
        for mode in ("full", "same"):
            for boundary in ("fill", "wrap", "symm"):
                x = rng.standard_normal((5, 6))
                got = ours(x, np.zeros((0, 3)), mode, boundary)
                want = via_emulator.numpy(ours, x, np.zeros((0, 3)), mode, boundary)
                assert got.shape == want.shape and got.dtype == want.dtype
                np.testing.assert_array_equal(got, want)
        # SciPy's own empty-image case: zeros of the right shape
        x, k = np.zeros((0, 4)), rng.standard_normal((2, 2))
        np.testing.assert_array_equal(ours(x, k, "full", fillvalue=0),
                                      theirs(x, k, "full", fillvalue=0))
        # a stack with no image at all
        stack = np.zeros((0, 3, 7, 8), np.float32)
        got = ours(stack, np.ones((3, 3), np.float32), "same", axes=(-2, -1))
        assert got.shape == (0, 3, 7, 8) and got.dtype == np.float32
    for fn in ("convolve", "correlate"):
        with pytest.raises(ValueError, match="empty"):
            getattr(gpuconv, fn)(np.zeros(0), np.ones(3))
    assert no_launch == [] and via_emulator.calls == []


# ---------------------------------------------------------------------------------
# float16 and complex through each algorithm, every pass


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", ["float16", "complex64", "complex128"])
@pytest.mark.parametrize("case_id", ["everything", "reflect"])
def test_other_dtypes_with_each_algorithm(case_id, dtype, variant, via_emulator, dev):
    _, xs, ws, kw = CASES[CASE_IDS.index(case_id)]
    p = problem(xs, ws, dtype, kw)
    x, w, b, gy = random_inputs(np.random.default_rng(2), p, dtype)
    wide = {"float16": np.float64}.get(dtype, np.complex128)
    xw, ww, bw, gyw = (a.astype(wide) for a in (x, w, b, gy))
    for pass_name in [*ALL_PASSES, "bias"]:
        n0 = len(dev.launches)
        got = api_pass(pass_name, x, w, b, gy, kw, variant)
        want = via_emulator.numpy(api_pass, pass_name, xw, ww, bw, gyw, kw)
        assert got.dtype == np.dtype(dtype), pass_name
        reduce = {"forward": p.Cg * p.KH * p.KW,
                  "backward_input": p.Kg * p.KH * p.KW}
        assert_close(got, want, dtype=dtype,
                     terms=reduce.get(pass_name, p.N * p.OH * p.OW))
        launched = kernels_since(dev, n0)
        ctype = "double" if dtype == "complex128" else "float"
        kernel = f"conv2d_{pass_name}_{variant}<{ctype}"
        if pass_name != "bias":
            assert any(k.startswith(kernel) for k in launched), launched


@pytest.mark.parametrize("variant", ["winograd", "winograd4"])
@pytest.mark.parametrize("dtype", ["float32", "float16", "complex64", "float64"])
def test_winograd_through_the_public_api(dtype, variant, via_emulator, dev):
    """algorithm='winograd' from the public functions: Winograd for every pass (also
    inside conv2d_backward; the bias gradient its own sum); float16 and complex
    through the same transforms; results within the Winograd scale of the direct
    NumPy result."""
    kw = {"padding": (1, 2, 0, 1), "groups": 2}
    p = problem((2, 4, 7, 9), (6, 2, 3, 3), dtype, kw)
    x, w, b, gy = random_inputs(np.random.default_rng(3), p, dtype)
    wide = {"float16": np.float64, "float32": np.float64,
            "float64": np.float64}.get(dtype, np.complex128)
    xw, ww, bw, gyw = (a.astype(wide) for a in (x, w, b, gy))
    reduce = {"forward": p.Cg * 9, "backward_input": p.Kg * 9,
              "backward_weight": p.N * p.OH * p.OW}
    for pass_name in ALL_PASSES:
        n0 = len(dev.launches)
        got = api_pass(pass_name, x, w, b, gy, kw, variant)
        want = via_emulator.numpy(api_pass, pass_name, xw, ww, bw, gyw, kw)
        assert got.dtype == np.dtype(dtype)
        assert_close(got, want, dtype=dtype,
                     terms=reduce[pass_name] * WINOGRAD_TERMS_SCALE)
        tile = ", 4>" if variant == "winograd4" else ", 2>"  # the template's M
        assert any(k.startswith("conv2d_winograd_") and k.endswith(tile)
                   for k in kernels_since(dev, n0)), pass_name
    n0 = len(dev.launches)
    g = gpuconv.conv2d_backward(gy, x, w, algorithm=variant, **kw)
    runs = 4 if np.dtype(dtype).kind == "c" else 1  # complex: four real passes
    for kernel in ("conv2d_winograd_output<", "conv2d_winograd_wgrad_output<"):
        assert sum(k.startswith(kernel) and k.endswith(tile)
                   for k in kernels_since(dev, n0)) == runs, kernel
    want = via_emulator.numpy(gpuconv.conv2d_backward, gyw, xw, ww, **kw)
    assert_close(g.gx, want.gx, dtype=dtype,
                 terms=reduce["backward_input"] * WINOGRAD_TERMS_SCALE)
    assert_close(g.gw, want.gw, dtype=dtype,
                 terms=reduce["backward_weight"] * WINOGRAD_TERMS_SCALE)
    assert_close(g.gb, want.gb, dtype=dtype, terms=reduce["backward_weight"])


# ---------------------------------------------------------------------------------
# the weight gradient's inputs in any layout


@pytest.mark.parametrize("layout", ["F", "strided", "negative"])
def test_weight_gradient_of_noncontiguous_inputs(layout, via_emulator):
    _, xs, ws, kw = CASES[CASE_IDS.index("everything")]
    p = problem(xs, ws, np.float32, kw)
    x, w, _, gy = random_inputs(np.random.default_rng(5), p, np.float32)
    want = gpuconv.conv2d_backward(gy, x, w, needs=("weight", "bias"), **kw)
    lx, lw, lgy = (layouts(a, layout) for a in (x, w, gy))
    assert not lx.flags.c_contiguous
    before = [a.copy() for a in (lx, lw, lgy)]
    got = gpuconv.conv2d_backward(lgy, lx, lw, needs=("weight", "bias"), **kw)
    np.testing.assert_array_equal(got.gw, want.gw)
    np.testing.assert_array_equal(got.gb, want.gb)
    for a, b in zip((lx, lw, lgy), before, strict=True):
        np.testing.assert_array_equal(a, b)
    assert via_emulator.calls.count("conv2d_backward_weight") == 2


# ---------------------------------------------------------------------------------
# oversized problems: the clean ValueError before any allocation


class _NoAllocDevice:
    """A device whose array module refuses to allocate (and which never launches)."""

    name = "no-alloc"

    def __init__(self):
        def refuse(*args, **kwargs):
            raise AssertionError("allocated before checking the extents")

        self.xp = types.SimpleNamespace(
            empty=refuse, full=refuse, zeros=refuse, ascontiguousarray=refuse,
            asarray=refuse, empty_like=refuse,
        )

    def launch(self, launch):  # pragma: no cover - must not be reached
        raise AssertionError("launched")


def test_oversized_conv_problems_raise_before_allocating():
    dev = _NoAllocDevice()
    big = [
        normalize_conv2d((1, 1, 50000, 50000), (1, 1, 3, 3), [np.dtype("float32")]),
        normalize_conv2d((1, 2**31, 1, 1), (1, 2**31, 1, 1), [np.dtype("float32")]),
        normalize_conv2d((1, 1, 40000, 40000), (1, 1, 3, 3),
                         [np.dtype("complex64")], padding=9000,
                         padding_mode="reflect"),
    ]
    for p in big:
        with pytest.raises(ValueError, match="32-bit extent"):
            _gpu_conv.conv2d_forward(None, None, None, p, "auto", device=dev)
        with pytest.raises(ValueError, match="32-bit extent"):
            _gpu_conv.conv2d_backward_input(None, None, p, "auto", device=dev)
        with pytest.raises(ValueError, match="32-bit extent"):
            _gpu_conv.conv2d_backward_weight(None, None, p, "auto", True, device=dev)
        with pytest.raises(ValueError, match="32-bit extent"):
            _gpu_conv.conv2d_backward_bias(None, p, device=dev)


def test_oversized_filter_problems_raise_before_allocating():
    dev = _NoAllocDevice()
    f32 = np.dtype("float32")
    wide = FilterProblem(1, 1, 2**31, 1, 1, 3, 0, 1, 1, 2**31, "fill", 0.0, f32)
    taps = FilterProblem(1, 70000, 70000, 1, 50000, 50000, 0, 0, 20001, 20001,
                         "fill", 0.0, f32)
    for fp in (wide, taps, FilterProblem(1, 1, 2**31, 1, 1, 3, 0, 1, 1, 2**31,
                                         "fill", False, np.dtype(bool))):
        for method in ("auto", "naive", "fft"):
            with pytest.raises(ValueError, match="2\\*\\*31"):
                _gpu_filter.correlate2d(None, None, fp, method, device=dev)


# ---------------------------------------------------------------------------------
# the gpu tests' own logic, dry-run on the emulator (tests/_gpu_dry_run.py)


#: gpu tests left out of the CI dry run: large problems, slow on the emulator (run
#: them with ``python -m pytest -p tests._gpu_dry_run -m gpu tests/test_gpu_*.py``).
SLOW_GPU_TESTS = ("not benchmark_layer and not many_images and not many_batches and "
                  "not auto_takes_fft and not public_api_layouts and "
                  "not bias_gradient_alone")


def test_gpu_tests_dry_run_on_the_emulator():
    """The gpu-marked tests (never run in CI otherwise) run and pass with CuPy
    stood in for by the emulator: their references, shapes and spies are right, so
    a lent GPU's time is not lost to a broken test."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=str(root), OPENBLAS_NUM_THREADS="1")
    env.pop("GPUCONV_BACKEND", None)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests._gpu_dry_run", "-q",
         "-p", "no:cacheprovider", "-m", "gpu", "tests/test_gpu_conv.py",
         "tests/test_gpu_filter.py", "tests/test_gpu_mma.py", "-k", SLOW_GPU_TESTS],
        cwd=root, env=env, capture_output=True, text=True, timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert " failed" not in out and " passed" in out, out
    launches = int(out.split("gpu dry run: ")[1].split()[0])
    assert launches > 1000, out


def test_gpu_check_scripts_dry_run_on_the_emulator(tmp_path):
    """The sanitizer workloads and both GPU benchmarks of bench/gpu_check.sh run to
    the end on the stand-in CuPy, validate every output and write their rows."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=str(root), OPENBLAS_NUM_THREADS="1")
    env.pop("GPUCONV_BACKEND", None)
    proc = subprocess.run([sys.executable, "-m", "tests._gpu_dry_run", str(tmp_path)],
                          cwd=root, env=env, capture_output=True, text=True,
                          timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "gpu_sanitize_subset: 164 results, 0 wrong" in out
    assert "gpu_sanitize_filter: 88 results, 0 wrong" in out  # 18 of the FFT paths
    assert "ncu_probe: 17 calls x 2 (mma, nhwc, winograd, stem, fp32)" in out
    conv = json.loads((tmp_path / "bench_conv.json").read_text())["rows"]
    flt = json.loads((tmp_path / "bench_filter.json").read_text())["rows"]
    assert len(conv) >= 2 * 3 * 2 and len(flt) >= 4 * 2
    for row in conv + flt:
        assert "error" not in row, row
        assert row["median_s"] > 0 and row["max_err"] <= row["err_limit"]
    # filter_kernel_time: per dtype and k, both stagings, the forced block, the
    # pipelined instance and, for 5x5, the registered other RY (outputs compared
    # inside: rc 0)
    from gpuconv import _plan_filter

    kt = json.loads((tmp_path / "filter_kernel_time.json").read_text())["rows"]
    stagings = {(r["dtype"], r["k"], r["staging"]) for r in kt}
    for dt in ("float32", "float64"):
        alt = f"ry{_plan_filter.RY_ALTERNATIVES[5][0]}"
        assert {(dt, 3, "async"), (dt, 3, "regs"), (dt, 5, alt)} <= stagings
        assert (dt, 5, "block-8x4") in stagings
        assert {(dt, 3, "pipelined"), (dt, 5, "pipelined")} <= stagings
    assert all("pipelined" in r["kernel"] and r["grid"] >= 1
               for r in kt if r["staging"] == "pipelined")
    assert all(r["kernel_s"] > 0 and "error" not in r for r in kt)
    stack = {r["case"] for r in kt if r["B"] == 6}  # --stack 6x20: a stack's rows
    assert {"filter2d_tiled/async/6x20x20/k3/float32",
            "filter2d_tiled/pipelined/6x20x20/k3/float32"} <= stack
    auto = [r for r in conv if r["variant"] == "auto"]
    assert {r["resolved"] for r in auto} <= {"naive", "tiled", "tiled_regblock", "mma",
                                             "nhwc", "mma_nhwc"}
    # the tensor-core rows (precision last in the case) ran what the dispatch rule
    # picks (gpuconv._plan_conv.mma_preferred): mma or the SIMT route
    tc = [r for r in auto if r["case"].rsplit("/", 1)[1] in ("tf32", "float16")]
    assert tc and {r["resolved"] for r in tc} <= {"mma", "mma_nhwc", "tiled_regblock",
                                                  "tiled", "nhwc"}
    # the forced tensor-core rows beside them: the NHWC pipeline where it applies
    forced = {(r["variant"], r["resolved"]) for r in conv
              if r["variant"] in ("mma", "mma_nhwc")}
    assert forced == {("mma", "mma"), ("mma_nhwc", "mma_nhwc")}, forced
    # the FP32 NHWC weight gradient ('auto' where it applies)
    assert {r["op"] for r in conv if r["resolved"] == "nhwc"} == {
        "conv2d_backward_weight"}
    # the weight gradient along the pixels (op level 'unfold', forced beside auto)
    assert {(r["op"], r["variant"]) for r in conv if r["resolved"] == "unfold"} == {
        ("conv2d_backward_weight", "unfold")}
    assert all(r["fp32_peak_flops"] == pytest.approx(66.9e12, rel=1e-3) for r in conv)
