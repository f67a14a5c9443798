"""The CUDA conv2d backend on a real GPU, against the NumPy backend (marker ``gpu``).

Skipped with the reason where CuPy or a device is missing (``tests/conftest.py``).
Every output and temporary the ops allocate is poisoned with NaN before the kernels
run (``_gpu_conv.POISON_OUTPUTS``), so an unwritten element fails. Run by
``bench/gpu_check.sh`` on a lent GPU.
"""

from __future__ import annotations

import numpy as np
import pytest

import gpuconv
from gpuconv import _gpu_conv, _plan_conv
from tests._cuda_conv_cases import (
    CASE_IDS,
    CASES,
    PASSES,
    REAL_DTYPES,
    VARIANTS,
    api_pass,
    layouts,
    problem,
    random_inputs,
    reference,
    terms,
)
from tests._tol import assert_close

pytestmark = [pytest.mark.gpu, pytest.mark.usefixtures("poisoned_conv_outputs")]

ALL_PASSES = ("forward", "backward_input", "backward_weight")


@pytest.fixture(scope="module")
def cp():
    import cupy

    return cupy



def _api(pass_name, cp, x, w, b, gy, kw, algorithm):
    """The public API on CuPy arrays (``x, w, b, gy`` are NumPy; moved here)."""
    dx, dw, db, dgy = (None if a is None else cp.asarray(a) for a in (x, w, b, gy))
    out = api_pass(pass_name, dx, dw, db, dgy, kw, algorithm)
    assert isinstance(out, cp.ndarray)
    return cp.asnumpy(out)


def _numpy(pass_name, x, w, b, gy, kw):
    """The NumPy backend's result of the same call (the reference)."""
    return api_pass(pass_name, x, w, b, gy, kw, backend="numpy")


def _terms(pass_name, p):
    return terms(pass_name, p) if pass_name in PASSES else p.N * p.OH * p.OW


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", REAL_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("pass_name", PASSES)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_matches_numpy_backend(case, pass_name, dtype, variant, cp):
    _, xs, ws, kw = case
    p = problem(xs, ws, dtype, kw)
    x, w, b, gy = random_inputs(np.random.default_rng(7), p, dtype)
    got = _api(pass_name, cp, x, w, b, gy, kw, variant)
    want = reference(pass_name, p, x, w, b, gy)
    assert got.dtype == np.dtype(dtype) and not np.isnan(got).any()
    assert_close(got, want, dtype=dtype, terms=terms(pass_name, p))


@pytest.mark.parametrize("dtype", REAL_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("pass_name", PASSES)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_variants_bit_identical_on_integers(case, pass_name, dtype, cp):
    _, xs, ws, kw = case
    p = problem(xs, ws, dtype, kw)
    x, w, b, gy = random_inputs(np.random.default_rng(3), p, dtype, integer=True)
    want = reference(pass_name, p, x, w, b, gy).astype(dtype)
    for variant in VARIANTS:
        got = _api(pass_name, cp, x, w, b, gy, kw, variant)
        np.testing.assert_array_equal(got, want, err_msg=variant)


@pytest.mark.parametrize("variant", ["auto", *VARIANTS])
@pytest.mark.parametrize("dtype", [np.float16, np.complex64, np.complex128],
                         ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("pass_name", [*ALL_PASSES, "bias"])
def test_other_dtypes_with_each_algorithm(pass_name, dtype, variant, cp):
    """float16 (float32 accumulation) and complex (four real passes) through every
    algorithm, against the NumPy backend on the widened inputs."""
    for case_id in ("everything", "reflect"):
        _, xs, ws, kw = CASES[CASE_IDS.index(case_id)]
        p = problem(xs, ws, dtype, kw)
        x, w, b, gy = random_inputs(np.random.default_rng(2), p, dtype)
        got = _api(pass_name, cp, x, w, b, gy, kw, variant)
        wide = np.float64 if np.dtype(dtype).kind == "f" else np.complex128
        want = _numpy(pass_name, *(a.astype(wide) for a in (x, w, b, gy)), kw)
        assert got.dtype == np.dtype(dtype)
        assert_close(got, want, dtype=dtype, terms=_terms(pass_name, p))


@pytest.mark.parametrize("layout", ["F", "strided", "negative"])
@pytest.mark.parametrize("pass_name", PASSES)
def test_noncontiguous_cupy_inputs(layout, pass_name, cp):
    _, xs, ws, kw = CASES[CASE_IDS.index("everything")]
    p = problem(xs, ws, np.float32, kw)
    x, w, b, gy = random_inputs(np.random.default_rng(5), p, np.float32)
    want = _api(pass_name, cp, x, w, b, gy, kw, "auto")
    dx, dw, db, dgy = (layouts(cp.asarray(a), layout, cp) for a in (x, w, b, gy))
    before = [cp.asnumpy(a) for a in (dx, dw, db, dgy)]
    if pass_name == "forward":
        got = gpuconv.conv2d(dx, dw, db, **kw)
    else:
        got = gpuconv.conv2d_grad_input(x.shape, dw, dgy, **kw)
    np.testing.assert_array_equal(cp.asnumpy(got), want)
    for a, c in zip((dx, dw, db, dgy), before, strict=True):
        np.testing.assert_array_equal(cp.asnumpy(a), c)


@pytest.mark.parametrize("case_id", ["everything", "reflect", "regblock_dgrad_tails"])
def test_backward_twice_is_bit_identical(case_id, cp):
    _, xs, ws, kw = CASES[CASE_IDS.index(case_id)]
    p = problem(xs, ws, np.float32, kw)
    x, w, _, gy = random_inputs(np.random.default_rng(4), p, np.float32)
    needs = ("input", "weight", "bias")
    dx, dw, dgy = cp.asarray(x), cp.asarray(w), cp.asarray(gy)
    for variant in VARIANTS:
        g1 = gpuconv.conv2d_backward(dgy, dx, dw, needs=needs, algorithm=variant, **kw)
        g2 = gpuconv.conv2d_backward(dgy, dx, dw, needs=needs, algorithm=variant, **kw)
        for a, b in zip(g1, g2, strict=True):
            if a is not None:
                np.testing.assert_array_equal(cp.asnumpy(a), cp.asnumpy(b))


@pytest.mark.parametrize("pass_name", [*ALL_PASSES, "bias"])
def test_empty_inputs_launch_nothing(pass_name, cp, monkeypatch):
    """Empty problems: the right shapes and values (zeros, the bias), no launch.

    Zeros and the broadcast bias are exact. The bias gradient is not always an empty
    sum: with ``C = 0`` (output 2x4x5x5) or ``H = 0`` and ``padding=1`` (output
    2x4x2x7) ``gy`` is not empty and ``gb`` sums ``N*OH*OW`` = 50 or 28 float32
    values per channel: ``gy.sum(axis=(0, 2, 3))``, CuPy's tree reduction on the GPU,
    NumPy's pairwise sum on the CPU. The two orders round differently (2 ulp apart on
    the H200, 2026-12-04; NumPy's own float32 sum is up to 1.8 ulp from the float64
    sum there), so that value is held to the tolerance table's summation-order bound
    for ``N*OH*OW`` terms (``tests/_tol.py``), not to bit equality.
    """
    launches = []
    real = _gpu_conv._run
    monkeypatch.setattr(_gpu_conv, "_run", lambda d, ls: (launches.extend(ls),
                                                           real(d, ls)))
    rng = np.random.default_rng(0)
    for xs, ws, kw in [((0, 3, 5, 5), (4, 3, 3, 3), {"padding": 1}),
                       ((2, 0, 5, 5), (4, 0, 1, 1), {}),
                       ((2, 3, 0, 5), (4, 3, 1, 1), {"padding": 1}),
                       ((2, 3, 5, 5), (0, 3, 3, 3), {}),
                       ((3, 0, 4), (2, 3, 1, 1), {"padding": 2})]:
        p = problem(xs, ws, np.float32, kw)
        assert p.empty
        x = rng.standard_normal(xs).astype(np.float32)
        w = rng.standard_normal(ws).astype(np.float32)
        b = rng.standard_normal(ws[0]).astype(np.float32)
        gy = rng.standard_normal(p.user_shape(p.y_shape)).astype(np.float32)
        got = _api(pass_name, cp, x, w, b, gy, kw, "auto")
        want = _numpy(pass_name, x, w, b, gy, kw)
        assert got.shape == want.shape and got.dtype == want.dtype
        if pass_name == "bias" and gy.size:
            assert_close(got, want, dtype=np.float32, terms=_terms(pass_name, p))
        else:
            np.testing.assert_array_equal(got, want)
    assert launches == []


def test_nan_and_inf_propagate_like_numpy(cp):
    _, xs, ws, kw = CASES[CASE_IDS.index("everything")]
    p = problem(xs, ws, np.float64, kw)
    x, w, b, gy = random_inputs(np.random.default_rng(1), p, np.float64)
    x[0, 0, 0, 0] = np.nan
    x[1, 3, 6, -1] = np.inf
    gy[0, 0, 0, 0] = np.nan
    gy[1, 5, -1, 2] = -np.inf
    for variant in VARIANTS:
        for pass_name in PASSES:
            got = _api(pass_name, cp, x, w, b, gy, kw, variant)
            want = reference(pass_name, p, x, w, b, gy)
            np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
            np.testing.assert_array_equal(np.isinf(got), np.isinf(want))


def test_auto_is_spied(cp, monkeypatch):
    calls = []
    real = _plan_conv.choose_algorithm
    monkeypatch.setattr(_plan_conv, "choose_algorithm",
                        lambda p, n: calls.append(n) or real(p, n))
    x = cp.ones((2, 8, 9, 9), cp.float32)
    w = cp.ones((16, 8, 3, 3), cp.float32)
    gpuconv.conv2d(x, w, padding=1)
    assert calls == ["forward"]


@pytest.mark.parametrize("case_id", ["basic3x3", "depthwise_strided",
                                     "regblock_dgrad_tails", "reflect"])
def test_public_choose_algorithm_is_what_runs(case_id, cp, monkeypatch):
    launches = []
    real = _gpu_conv._run
    monkeypatch.setattr(_gpu_conv, "_run", lambda d, ls: (launches.extend(ls),
                                                           real(d, ls)))
    _, xs, ws, kw = CASES[CASE_IDS.index(case_id)]
    for dtype in (np.float32, np.complex128):
        p = problem(xs, ws, dtype, kw)
        x, w, b, gy = random_inputs(np.random.default_rng(0), p, dtype)
        for pass_name in ALL_PASSES:
            want = gpuconv.choose_algorithm(xs, ws, pass_name, dtype=dtype, **kw)
            del launches[:]
            _api(pass_name, cp, x, w, b, gy, kw, "auto")
            main = [launch.kernel for launch in launches
                    if launch.kernel.startswith(f"conv2d_{pass_name}_")
                    and "_reduce<" not in launch.kernel]
            assert main and all(f"_{pass_name}_{want}<" in k for k in main), main


def test_many_images_and_channels(cp):
    """N*C >= 65536: 1-D grids, no 'invalid configuration argument'."""
    x = cp.asarray(np.random.default_rng(0).integers(-3, 4, (70000, 2, 3, 3)),
                   dtype=cp.float32)
    w = cp.ones((1, 2, 2, 2), cp.float32)
    want = gpuconv.conv2d(cp.asnumpy(x), cp.asnumpy(w))
    for variant in VARIANTS:
        np.testing.assert_array_equal(
            cp.asnumpy(gpuconv.conv2d(x, w, algorithm=variant)), want
        )
    dw = cp.ones((70000, 1, 3, 3), cp.float32)
    xd = cp.ones((1, 70000, 4, 4), cp.float32)
    y = gpuconv.conv2d(xd, dw, groups=70000, padding=1)
    np.testing.assert_array_equal(cp.asnumpy(y[0, :, 1, 1]), np.full(70000, 9.0))


def test_more_than_2_31_elements_against_batch_slices(cp):
    """x, y and gx with more than 2^31 elements each (64-bit indexing), checked
    against batch slices computed separately; gated on free device memory."""
    N, C, H, W, K = 33, 64, 1024, 1024, 64
    elems = N * C * H * W
    assert elems > 2**31
    need = 3 * elems * 4 + 2 * (2 * C * H * W * 4)  # x, y (= gy), gx + slices
    free = cp.cuda.runtime.memGetInfo()[0]
    if free < 1.2 * need:
        pytest.skip(f"needs {need / 2**30:.1f} GiB of free device memory, "
                    f"{free / 2**30:.1f} GiB free")
    # Small integers (exact sums in float32), built in place without a full-size
    # temporary: (3n + 5c + 7h + 11w) % 5 - 2.
    def ar(n, axis):
        shape = [1, 1, 1, 1]
        shape[axis] = n
        return cp.arange(n, dtype=cp.float32).reshape(shape)

    x = cp.empty((N, C, H, W), cp.float32)
    cp.add(ar(N, 0) * 3 + ar(C, 1) * 5 + ar(H, 2) * 7, ar(W, 3) * 11, out=x)
    cp.remainder(x, 5, out=x)
    x -= 2
    w = cp.asarray(np.random.default_rng(0).integers(-2, 3, (K, C, 3, 3)),
                   dtype=cp.float32)
    for variant in ("naive", "tiled_regblock"):
        y = gpuconv.conv2d(x, w, padding=1, algorithm=variant)
        for n in (0, 16, N - 1):
            ys = gpuconv.conv2d(x[n:n + 1], w, padding=1, algorithm=variant)
            assert bool((y[n:n + 1] == ys).all()), (variant, n)
        gx = gpuconv.conv2d_grad_input(x.shape, w, y, padding=1, algorithm=variant)
        for n in (0, N - 1):
            gs = gpuconv.conv2d_grad_input((1, C, H, W), w, y[n:n + 1], padding=1,
                                           algorithm=variant)
            assert bool((gx[n:n + 1] == gs).all()), (variant, n)
        del y, gx
        cp.get_default_memory_pool().free_all_blocks()


def test_weight_gradient_matches_numpy(cp):
    for case_id in ("everything", "reflect", "regblock_fwd_tails"):
        _, xs, ws, kw = CASES[CASE_IDS.index(case_id)]
        p = problem(xs, ws, np.float64, kw)
        x, w, _, gy = random_inputs(np.random.default_rng(8), p, np.float64)
        for variant in VARIANTS:
            g = gpuconv.conv2d_backward(cp.asarray(gy), cp.asarray(x), cp.asarray(w),
                                        needs=("weight", "bias"), algorithm=variant,
                                        **kw)
            r = gpuconv.conv2d_backward(gy, x, w, needs=("weight", "bias"), **kw)
            assert_close(cp.asnumpy(g.gw), r.gw, terms=p.N * p.OH * p.OW)
            assert_close(cp.asnumpy(g.gb), r.gb, terms=p.N * p.OH * p.OW)


# ---------------------------------------------------------------------------------
# weight and bias gradients (cuda/conv2d_backward_weight.cu), through the public API


def _wgrad_gpu(cp, x, w, gy, kw, algorithm, needs=("weight", "bias")):
    g = gpuconv.conv2d_backward(cp.asarray(gy), cp.asarray(x), cp.asarray(w),
                                needs=needs, algorithm=algorithm, **kw)
    for a in (g.gw, g.gb):
        assert a is None or isinstance(a, cp.ndarray)
    return tuple(None if a is None else cp.asnumpy(a) for a in (g.gw, g.gb))


def _wgrad_ref(p, x, gy):
    """The NumPy backend's (gw, gb) in float64."""
    from gpuconv import _cpu_conv
    from tests._cuda_conv_cases import as_dtype

    q = as_dtype(p, np.float64)
    return _cpu_conv.conv2d_backward_weight(gy.astype(np.float64),
                                            x.astype(np.float64), q, "auto", True)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", REAL_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_weight_and_bias_gradients_on_the_case_grid(case, dtype, variant, cp):
    _, xs, ws, kw = case
    p = problem(xs, ws, dtype, kw)
    x, w, _, gy = random_inputs(np.random.default_rng(7), p, dtype)
    gw, gb = _wgrad_gpu(cp, x, w, gy, kw, variant)
    rw, rb = _wgrad_ref(p, x, gy)
    assert gw.dtype == gb.dtype == np.dtype(dtype)
    assert not np.isnan(gw).any() and not np.isnan(gb).any()
    assert_close(gw, rw, dtype=dtype, terms=p.N * p.OH * p.OW)
    assert_close(gb, rb, dtype=dtype, terms=p.N * p.OH * p.OW)


@pytest.mark.parametrize("dtype", REAL_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_weight_gradient_variants_bit_identical_on_integers(case, dtype, cp):
    _, xs, ws, kw = case
    p = problem(xs, ws, dtype, kw)
    x, w, _, gy = random_inputs(np.random.default_rng(3), p, dtype, integer=True)
    rw, rb = _wgrad_ref(p, x, gy)
    for variant in VARIANTS:
        gw, gb = _wgrad_gpu(cp, x, w, gy, kw, variant)
        np.testing.assert_array_equal(gw, rw.astype(dtype), err_msg=variant)
        np.testing.assert_array_equal(gb, rb.astype(dtype), err_msg=variant)


def test_weight_gradient_of_a_benchmark_layer_splits_and_repeats_bitwise(cp,
                                                                         monkeypatch):
    """3x3 64->64 at 28^2, N=8: the split-K plans (workspace + reduce) against the
    NumPy backend, and a second run bit-identical to the first (no atomics)."""
    kw = {"padding": 1}
    p = problem((8, 64, 28, 28), (64, 64, 3, 3), np.float32, kw)
    x, w, _, gy = random_inputs(np.random.default_rng(1), p, np.float32)
    rw, rb = _wgrad_ref(p, x, gy)
    launched = []
    real = _gpu_conv._run
    monkeypatch.setattr(_gpu_conv, "_run", lambda d, ls: (launched.extend(ls),
                                                          real(d, ls)))
    for variant in VARIANTS:
        first = _wgrad_gpu(cp, x, w, gy, kw, variant)
        second = _wgrad_gpu(cp, x, w, gy, kw, variant)
        for a, b in zip(first, second, strict=True):
            np.testing.assert_array_equal(a, b, err_msg=variant)
        assert_close(first[0], rw, dtype=np.float32, terms=p.N * p.OH * p.OW)
        assert_close(first[1], rb, dtype=np.float32, terms=p.N * p.OH * p.OW)
    assert any("_reduce<" in launch.kernel for launch in launched)


@pytest.mark.parametrize("layout", ["F", "strided", "negative"])
def test_weight_gradient_of_noncontiguous_cupy_inputs(layout, cp):
    """gw and gb of non-contiguous gy and x equal those of contiguous copies, and
    the inputs are read, never modified."""
    _, xs, ws, kw = CASES[CASE_IDS.index("everything")]
    p = problem(xs, ws, np.float32, kw)
    x, w, _, gy = random_inputs(np.random.default_rng(5), p, np.float32)
    want = _wgrad_gpu(cp, x, w, gy, kw, "auto")
    dx, dw, dgy = (layouts(cp.asarray(a), layout, cp) for a in (x, w, gy))
    assert not dx.flags.c_contiguous
    before = [cp.asnumpy(a) for a in (dx, dw, dgy)]
    g = gpuconv.conv2d_backward(dgy, dx, dw, needs=("weight", "bias"), **kw)
    np.testing.assert_array_equal(cp.asnumpy(g.gw), want[0])
    np.testing.assert_array_equal(cp.asnumpy(g.gb), want[1])
    for a, c in zip((dx, dw, dgy), before, strict=True):
        np.testing.assert_array_equal(cp.asnumpy(a), c)


@pytest.mark.parametrize("case_id", ["one_by_one", "tile_plus1", "regblock_fwd_tails"])
def test_bias_gradient_alone(case_id, cp):
    _, xs, ws, kw = CASES[CASE_IDS.index(case_id)]
    for dtype in REAL_DTYPES:
        p = problem(xs, ws, dtype, kw)
        x, w, _, gy = random_inputs(np.random.default_rng(2), p, dtype)
        gw, gb = _wgrad_gpu(cp, x, w, gy, kw, "auto", needs=("bias",))
        assert gw is None
        assert_close(gb, gy.astype(np.float64).sum(axis=(0, 2, 3)), dtype=dtype,
                     terms=p.N * p.OH * p.OW)
    big = cp.asarray(np.random.default_rng(3).integers(-3, 4, (16, 64, 56, 56)),
                     dtype=cp.float32)  # several slices + reduce; exact on integers
    x = cp.zeros((16, 3, 56, 56), cp.float32)
    w = cp.ones((64, 3, 1, 1), cp.float32)
    g1 = gpuconv.conv2d_backward(big, x, w, needs=("bias",))
    g2 = gpuconv.conv2d_backward(big, x, w, needs=("bias",))
    want = cp.asnumpy(big).astype(np.float64).sum(axis=(0, 2, 3))
    np.testing.assert_array_equal(cp.asnumpy(g1.gb), want.astype(np.float32))
    np.testing.assert_array_equal(cp.asnumpy(g1.gb), cp.asnumpy(g2.gb))


def test_weight_gradient_nan_and_inf_like_numpy(cp):
    _, xs, ws, kw = CASES[CASE_IDS.index("everything")]
    p = problem(xs, ws, np.float64, kw)
    x, w, _, gy = random_inputs(np.random.default_rng(1), p, np.float64)
    x[0, 0, 0, 0] = np.nan
    x[1, 3, 6, -1] = np.inf
    gy[0, 2, 0, 0] = np.inf
    rw, rb = _wgrad_ref(p, x, gy)
    for variant in VARIANTS:
        gw, gb = _wgrad_gpu(cp, x, w, gy, kw, variant)
        for got, want in ((gw, rw), (gb, rb)):
            np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
            np.testing.assert_array_equal(np.isinf(got), np.isinf(want))


#: 3x3 stride-1 layers for algorithm='winograd'/'winograd4' on the GPU: odd output
#: tails, groups with asymmetric padding, a padding mode, a ResNet-like layer (split-K
#: in the GEMMs of a 7x7 image), pads over 2 for the input gradient.
WINOGRAD_GPU_CASES = [
    ((2, 5, 9, 11), (6, 5, 3, 3), {"padding": 1}),
    ((1, 4, 7, 6), (6, 2, 3, 3), {"padding": (2, 0, 1, 2), "groups": 2}),
    ((2, 3, 7, 8), (4, 3, 3, 3), {"padding": (2, 1, 1, 0), "padding_mode": "reflect"}),
    ((2, 128, 7, 7), (64, 128, 3, 3), {"padding": 1}),
    ((1, 3, 9, 8), (4, 3, 3, 3), {"padding": 3}),
]


@pytest.mark.parametrize("variant", ["winograd", "winograd4"])
@pytest.mark.parametrize("dtype", REAL_DTYPES, ids=lambda d: np.dtype(d).name)
def test_winograd_on_the_gpu(variant, dtype, cp):
    """Winograd (every pass) against the NumPy backend, within the Winograd scale of
    the table's rule (tests/_tol.py), and bit-identical from run to run; Winograd
    applies to every case and pass (no fallback to 'auto' is being tested here)."""
    from tests._tol import WINOGRAD_TERMS_SCALE

    for xs, ws, kw in WINOGRAD_GPU_CASES:
        p = problem(xs, ws, dtype, kw)
        x, w, b, gy = random_inputs(np.random.default_rng(17), p, dtype)
        for pass_name in ALL_PASSES:
            kp = _gpu_conv.kernel_problem(p)
            assert _plan_conv.winograd_applies(kp, pass_name, variant)
            got = _api(pass_name, cp, x, w, b, gy, kw, variant)
            want = _numpy(pass_name, x, w, b, gy, kw)
            assert_close(got, want, dtype=dtype,
                         terms=_terms(pass_name, p) * WINOGRAD_TERMS_SCALE)
            np.testing.assert_array_equal(
                _api(pass_name, cp, x, w, b, gy, kw, variant), got)


@pytest.mark.parametrize("xs, ws, kw", [
    # the RGB stem's geometry (7x7 stride 2, 147 columns: three 64-wide tiles with
    # a tail), large enough for 'auto' to take it and for several splits
    ((4, 3, 64, 64), (64, 3, 7, 7), {"stride": 2, "padding": 3}),
    # row tail (K = 70), dilation, asymmetric padding, a padding mode
    ((2, 3, 33, 37), (70, 3, 5, 3), {"dilation": (2, 1), "padding": (4, 2, 1, 0),
                                     "padding_mode": "reflect"}),
])
def test_unfold_weight_gradient_on_the_gpu(xs, ws, kw, cp):
    """The weight gradient along the pixels (op level 'unfold': the width unfold and
    16-byte cp.async copies of gy and of the unfolded x) against the NumPy backend
    within the product bound, bit-identical from run to run, and what 'auto' runs
    on the stem."""
    from tests._tol import assert_products_within

    p = problem(xs, ws, np.float32, kw)
    kp = _gpu_conv.kernel_problem(p)
    assert _plan_conv.wgrad_unfold_applies(kp)
    x, _, _, gy = random_inputs(np.random.default_rng(23), p, np.float32)
    dx, dgy = cp.asarray(x), cp.asarray(gy)
    got = cp.asnumpy(_gpu_conv.conv2d_backward_weight(dgy, dx, p, "unfold", False)[0])
    wide = gpuconv.conv2d_grad_weight(x.astype(np.float64), p.w_shape,
                                      gy.astype(np.float64), backend="numpy", **kw)
    absolute = gpuconv.conv2d_grad_weight(np.abs(x.astype(np.float64)), p.w_shape,
                                          np.abs(gy.astype(np.float64)),
                                          backend="numpy", **kw)
    assert_products_within(got, wide, absolute, p.N * p.OH * p.OW)
    again = _gpu_conv.conv2d_backward_weight(dgy, dx, p, "unfold", False)[0]
    np.testing.assert_array_equal(cp.asnumpy(again), got)
    if p.padding_mode == "zeros":
        assert _plan_conv.choose_algorithm(kp, "backward_weight") == "unfold"
        auto = gpuconv.conv2d_grad_weight(dx, p.w_shape, dgy, **kw)
        np.testing.assert_array_equal(cp.asnumpy(auto), got)
