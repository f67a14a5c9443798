"""``precision=`` of the conv2d functions: selection rules, validation, and the
NumPy backend's TF32 model (operands rounded as ``cvt.rna.tf32.f32``).

The rounding is checked bit for bit against an independent float64 formula (value
/ spacing, rounded half away from zero, times the spacing) on random bit patterns of
every class and on constructed ties; the conv2d results against a float64 reference
within the bound of ``tests/_tol.py``.
"""

from __future__ import annotations

import doctest

import numpy as np
import pytest

import gpuconv
from gpuconv import _precision
from gpuconv._precision import ENV_VAR, round_tf32, select_precision
from tests._tol import TF32_UNIT, assert_products_within


def tf32_reference(a: np.ndarray) -> np.ndarray:
    """cvt.rna.tf32.f32 from its definition, in float64: the TF32 spacing of a
    float32 value v is 2^(max(e, -126) - 10) for |v| in [2^e, 2^(e+1)); round v to a
    multiple of it, halves away from zero; past the largest TF32 value is inf."""
    with np.errstate(invalid="ignore"):  # signalling NaNs
        v = a.astype(np.float64)
    out = v.copy()
    fin = np.isfinite(v) & (v != 0)
    e = np.floor(np.log2(np.abs(v[fin])))
    spacing = np.exp2(np.maximum(e, -126) - 10)
    q = np.abs(v[fin]) / spacing  # exact: a power-of-two scaling
    r = np.floor(q + 0.5) * spacing
    r = np.where(r >= 2.0**128, np.inf, r)
    out[fin] = np.sign(v[fin]) * r
    # NaN: the low 13 bits cleared (ptxas' sm_80/sm_90 sequence): NaN, or inf when
    # the payload was only there
    bits = a.view(np.uint32)
    nan = np.isnan(v)
    low_only = nan & ((bits & 0x007FE000) == 0)
    out[low_only] = np.where(bits[low_only] >> 31 == 1, -np.inf, np.inf)
    return out


def test_round_tf32_random_bit_patterns():
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2**32, size=200_000, dtype=np.uint64).astype(np.uint32)
    special = np.array([0, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0x7F800001,
                        0x00000001, 0x00001000, 0x00000FFF, 0x007FFFFF, 0x7F7FFFFF,
                        0xFF7FFFFF, 0x7F7FEFFF, 0x3F800FFF, 0x3F801000],
                       dtype=np.uint32)
    a = np.concatenate([bits, special]).view(np.float32)
    a.setflags(write=False)
    before = a.copy()
    got = round_tf32(a)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(a, before)  # input untouched
    want = tf32_reference(a)
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(got.astype(np.float64), want)
    # the low 13 bits of every result are zero
    assert not (got.view(np.uint32) & 0x1FFF).any()
    # NaNs with an upper payload stay NaN with it
    nan_in = np.isnan(a) & ((a.view(np.uint32) & 0x007FE000) != 0)
    np.testing.assert_array_equal(got.view(np.uint32)[nan_in],
                                  a.view(np.uint32)[nan_in] & 0xFFFFE000)


def test_round_tf32_ties_go_away_from_zero():
    one = np.float32(1.0)
    ulp = 2.0**-10
    x = np.array([1 + ulp / 2, 1 + 3 * ulp / 2, -(1 + ulp / 2), 1 + ulp / 2 - 2**-23,
                  2.0**-137, 3 * 2.0**-137], dtype=np.float32)  # subnormal ties
    got = round_tf32(x).astype(np.float64)
    assert got[0] == 1 + ulp and got[1] == 1 + 2 * ulp and got[2] == -(1 + ulp)
    assert got[3] == one
    assert got[4] == 2.0**-136 and got[5] == 2.0**-135  # subnormal spacing 2^-136
    np.testing.assert_array_equal(got, tf32_reference(x))


def test_round_tf32_complex_and_strided():
    rng = np.random.default_rng(1)
    z = (rng.standard_normal((4, 6)) + 1j * rng.standard_normal((4, 6))).astype(
        np.complex64)
    view = z[:, ::2]
    got = round_tf32(view)
    np.testing.assert_array_equal(got.real, round_tf32(np.ascontiguousarray(
        view.real)))
    np.testing.assert_array_equal(got.imag, round_tf32(np.ascontiguousarray(
        view.imag)))
    with pytest.raises(TypeError, match="float32 or complex64"):
        round_tf32(np.ones(3))


# ---------------------------------------------------------------------------------
# selection rules (those of use_backend)


def test_default_is_highest(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert select_precision() == "highest"


def test_env_context_keyword_priority(monkeypatch):
    monkeypatch.setenv(ENV_VAR, " TF32 ")
    assert select_precision() == "tf32"
    with gpuconv.use_precision("highest"):
        assert select_precision() == "highest"
        assert select_precision("tf32") == "tf32"
        with gpuconv.use_precision(None):
            assert select_precision() == "tf32"  # back to the environment
        assert select_precision() == "highest"
    with pytest.raises(RuntimeError), gpuconv.use_precision("tf32"):
        raise RuntimeError
    monkeypatch.delenv(ENV_VAR)
    assert select_precision() == "highest"  # restored after the error


@pytest.mark.parametrize("bad", ["TF32", "fp16", "", "high"])
def test_unknown_precisions_are_value_errors(bad, monkeypatch):
    x = np.ones((1, 1, 3, 3), np.float32)
    w = np.ones((1, 1, 2, 2), np.float32)
    with pytest.raises(ValueError, match="'highest' or 'tf32'"):
        gpuconv.conv2d(x, w, precision=bad)
    with pytest.raises(ValueError, match="'highest' or 'tf32'"):
        gpuconv.use_precision(bad).__enter__()
    if bad.strip():
        monkeypatch.setenv(ENV_VAR, bad + "x")
        with pytest.raises(ValueError, match=ENV_VAR):
            gpuconv.conv2d(x, w)


@pytest.mark.parametrize("bad", [1, True, ("tf32",)])
def test_precision_of_the_wrong_type_is_a_type_error(bad):
    x = np.ones((1, 1, 3, 3), np.float32)
    with pytest.raises(TypeError, match="precision must be"):
        gpuconv.conv2d_grad_input(x.shape, np.ones((1, 1, 2, 2)), np.ones((1, 1, 2, 2)),
                                  precision=bad)


# ---------------------------------------------------------------------------------
# the NumPy backend's TF32 model


def _data(seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 6, 9, 8)).astype(dtype)
    w = rng.standard_normal((4, 3, 3, 2)).astype(dtype)
    b = rng.standard_normal(4).astype(dtype)
    kw = {"stride": (2, 1), "padding": (1, 2, 0, 1), "groups": 2, "dilation": (1, 2)}
    return x, w, b, kw


def test_tf32_is_the_highest_result_on_rounded_operands():
    x, w, b, kw = _data()
    for a in (x, w, b):
        a.setflags(write=False)
    y = gpuconv.conv2d(x, w, b, precision="tf32", **kw)
    want = gpuconv.conv2d(round_tf32(x), round_tf32(w), b, **kw)  # bias unrounded
    np.testing.assert_array_equal(y, want)
    assert y.dtype == np.float32
    gy = np.random.default_rng(5).standard_normal(y.shape).astype(np.float32)
    g = gpuconv.conv2d_backward(gy, x, w, precision="tf32", **kw)
    hi = gpuconv.conv2d_backward(round_tf32(gy), round_tf32(x), round_tf32(w), **kw)
    np.testing.assert_array_equal(g.gx, hi.gx)
    np.testing.assert_array_equal(g.gw, hi.gw)
    gb = gpuconv.conv2d_backward(gy, x, w, needs=("bias",), **kw).gb
    np.testing.assert_array_equal(g.gb, gb)  # from the unrounded gy
    np.testing.assert_array_equal(
        gpuconv.conv2d_grad_input(x.shape, w, gy, precision="tf32", **kw), hi.gx)
    with gpuconv.use_precision("tf32"):
        np.testing.assert_array_equal(
            gpuconv.conv2d_grad_weight(x, w.shape, gy, **kw), hi.gw)


def test_highest_is_unchanged_and_float64_ignores_tf32():
    x, w, b, kw = _data()
    np.testing.assert_array_equal(gpuconv.conv2d(x, w, b, precision="highest", **kw),
                                  gpuconv.conv2d(x, w, b, **kw))
    x64, w64, b64, _ = _data(dtype=np.float64)
    np.testing.assert_array_equal(gpuconv.conv2d(x64, w64, b64, precision="tf32", **kw),
                                  gpuconv.conv2d(x64, w64, b64, **kw))


def test_tf32_error_is_within_the_documented_bound():
    x, w, b, kw = _data(3)
    y = gpuconv.conv2d(x, w, b, precision="tf32", **kw)
    x64, w64, b64 = (a.astype(np.float64) for a in (x, w, b))
    ref = gpuconv.conv2d(x64, w64, b64, **kw)
    abs_sum = gpuconv.conv2d(np.abs(x64), np.abs(w64), np.abs(b64), **kw)
    terms = w.shape[1] * w.shape[2] * w.shape[3]
    assert_products_within(y, ref, abs_sum, terms, operand_unit=TF32_UNIT)
    # and it is really TF32: the error is far above float32's
    y32 = gpuconv.conv2d(x, w, b, **kw)
    assert np.abs(y - ref).max() > 50 * np.abs(y32 - ref).max()


def test_complex64_rounds_both_parts():
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((1, 2, 5, 5)) + 1j * rng.standard_normal((1, 2, 5, 5))
         ).astype(np.complex64)
    w = (rng.standard_normal((3, 2, 2, 2)) + 1j * rng.standard_normal((3, 2, 2, 2))
         ).astype(np.complex64)
    np.testing.assert_array_equal(gpuconv.conv2d(x, w, precision="tf32"),
                                  gpuconv.conv2d(round_tf32(x), round_tf32(w)))


def test_applies_tf32_only_to_float32_data():
    assert _precision.applies_tf32("tf32", np.float32)
    assert _precision.applies_tf32("tf32", np.complex64)
    assert not _precision.applies_tf32("tf32", np.float64)
    assert not _precision.applies_tf32("highest", np.float32)


def test_docstring_examples(monkeypatch):
    """use_precision's example (public as gpuconv.use_precision) runs as shown."""
    monkeypatch.delenv(ENV_VAR, raising=False)
    result = doctest.testmod(_precision, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
