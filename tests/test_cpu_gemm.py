"""gpuconv._cpu_gemm: the stacked GEMM with accumulation used by the NumPy backend,
on both of its paths (CBLAS through ctypes with beta = 1, NumPy's matmul + add)."""

from __future__ import annotations

import numpy as np
import pytest

from gpuconv import _cpu_gemm
from tests._tol import assert_close


@pytest.fixture(params=["blas", "numpy"])
def gemm_path(request, monkeypatch):
    if request.param == "numpy":
        _cpu_gemm._load()
        monkeypatch.setitem(_cpu_gemm._state, "funcs", None)
    elif not _cpu_gemm.uses_blas_accumulate():
        pytest.skip("no CBLAS found beside NumPy: the NumPy path is the only one")
    monkeypatch.setattr(_cpu_gemm, "_MIN_CTYPES_WORK", 0)
    return request.param


def _views(rng, dtype):
    """(a, b) pairs of (G, m, k) x (G, k, n) in several memory layouts."""
    G, m, k, n = 2, 7, 5, 9
    a = rng.standard_normal((G, m + 3, k + 4)).astype(dtype)[:, 1 : m + 1, 2 : k + 2]
    b = rng.standard_normal((G, k, n)).astype(dtype)
    bt = np.ascontiguousarray(b.transpose(0, 2, 1)).transpose(0, 2, 1)
    return [
        (a, b),
        (np.ascontiguousarray(a), bt),
        (a[:, ::-1], b[:, :, ::-1]),  # negative strides: not BLAS-readable
        (np.asfortranarray(a), np.asfortranarray(b)),
    ]


@pytest.mark.parametrize("dtype", ["float32", "float64", "complex64", "complex128"])
@pytest.mark.parametrize("layout", range(4))
@pytest.mark.usefixtures("gemm_path")
def test_gemm_matches_matmul(dtype, layout, rng):
    a, b = _views(rng, dtype)[layout]
    want = np.matmul(a.astype(np.complex128), b)
    big = np.full((2, 9, 20), np.nan, dtype=dtype)
    c = big[:, 1:8, 3:12]
    _cpu_gemm.gemm(a, b, c, accumulate=False)
    assert_close(c, want, terms=5)
    _cpu_gemm.gemm(a, b, c, accumulate=True)
    assert_close(c, 2 * want, terms=10)
    # nothing outside the output view was touched
    assert np.isnan(big[:, 0]).all() and np.isnan(big[:, :, :3]).all()
    assert np.isnan(big[:, 8]).all() and np.isnan(big[:, :, 12:]).all()


@pytest.mark.usefixtures("gemm_path")
def test_empty_reduction_gives_zeros_or_leaves_c():
    c = np.ones((1, 2, 3))
    _cpu_gemm.gemm(np.ones((1, 2, 0)), np.ones((1, 0, 3)), c, accumulate=True)
    np.testing.assert_array_equal(c, 1)
    _cpu_gemm.gemm(np.ones((1, 2, 0)), np.ones((1, 0, 3)), c, accumulate=False)
    np.testing.assert_array_equal(c, 0)


def test_env_var_forces_numpy(monkeypatch):
    monkeypatch.setenv(_cpu_gemm.ENV_VAR, "numpy")
    monkeypatch.setattr(_cpu_gemm, "_state", {})
    assert not _cpu_gemm.uses_blas_accumulate()
