"""conv2d_matrix: ``conv2d(x, w).ravel() == M @ x.ravel()`` for one image.

M is built from index arithmetic, not by calling conv2d, so the identity checks
both. Its adjoint gives the input gradient: ``gx == M^H @ gy``.
"""

from __future__ import annotations

import numpy as np
import pytest

import gpuconv
from tests._conv2d_cases import GEOMETRY_IDS, MODES, conv_terms, geometry, random_array
from tests._tol import assert_close
from tests.ref_conv import conv2d_ref


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case_id", GEOMETRY_IDS)
def test_matrix_times_image_is_the_convolution(case_id, mode, rng):
    _, xs, ws, kw = geometry(case_id)
    x = random_array(rng, xs[1:])
    w = random_array(rng, ws)
    M = gpuconv.conv2d_matrix(x.shape, w, padding_mode=mode, **kw)
    y = gpuconv.conv2d(x, w, padding_mode=mode, **kw)
    assert M.shape == (y.size, x.size) and M.dtype == w.dtype
    t = conv_terms(ws)
    assert_close(M @ x.ravel(), y.ravel(), terms=t)
    assert_close(
        M @ x.ravel(), conv2d_ref(x, w, padding_mode=mode, **kw).ravel(), terms=t
    )
    # batched (1, C, H, W) form of input_shape gives the same matrix
    np.testing.assert_array_equal(
        gpuconv.conv2d_matrix((1, *x.shape), w, padding_mode=mode, **kw), M
    )


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "case_id",
    ["3x3-pad1", "even-4x2-same", "stride-dil-groups", "pad>image", "depthwise"],
)
def test_matrix_columns_are_responses_to_unit_images(case_id, mode):
    """Column j of M is the convolution of the j-th unit image (all images in one
    batched call): M equals conv2d as a linear map, entry by entry."""
    _, xs, ws, kw = geometry(case_id)
    rng = np.random.default_rng(7)
    w = random_array(rng, ws)
    C, H, W = xs[1:]
    units = np.eye(C * H * W).reshape(-1, C, H, W)
    responses = gpuconv.conv2d(units, w, padding_mode=mode, **kw)
    M = gpuconv.conv2d_matrix((C, H, W), w, padding_mode=mode, **kw)
    assert_close(M, responses.reshape(C * H * W, -1).T, terms=conv_terms(ws))


@pytest.mark.parametrize("dtype", ["float64", "complex128"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case_id", ["same-stride-even-dil", "groups2", "kernel>input"])
def test_matrix_adjoint_is_the_input_gradient(case_id, mode, dtype, rng):
    _, xs, ws, kw = geometry(case_id)
    w = random_array(rng, ws, dtype)
    M = gpuconv.conv2d_matrix(xs[1:], w, padding_mode=mode, **kw)
    gy = random_array(rng, (M.shape[0],), dtype)
    y_shape = gpuconv.conv2d(np.zeros(xs[1:], dtype), w, padding_mode=mode, **kw).shape
    gx = gpuconv.conv2d_grad_input(
        xs[1:], w, gy.reshape(y_shape), padding_mode=mode, **kw
    )
    assert_close(gx.ravel(), M.conj().T @ gy, terms=conv_terms(ws) * ws[0] * 4)


@pytest.mark.parametrize("dtype", ["float16", "float32", "complex64"])
def test_matrix_dtype_follows_the_weight(dtype, rng):
    w = random_array(rng, (2, 1, 2, 2), dtype)
    M = gpuconv.conv2d_matrix((1, 3, 3), w, padding=1, padding_mode="reflect")
    assert M.dtype == np.dtype(dtype)
    x = random_array(rng, (1, 3, 3), dtype)
    assert_close(
        M.astype(np.complex128) @ x.ravel(),
        conv2d_ref(x, w, padding=1, padding_mode="reflect").ravel(),
        terms=4,
    )


def test_matrix_is_sparse_like_a_pruned_dense_layer():
    """Zeros padding, no groups: each row has at most C*KH*KW non-zeros, and an
    interior output has exactly that many; weights are shared across rows."""
    w = np.arange(1.0, 1 + 2 * 3 * 2 * 2).reshape(2, 3, 2, 2)
    M = gpuconv.conv2d_matrix((3, 4, 5), w, padding=1)
    nnz = (M != 0).sum(axis=1)
    assert nnz.max() == 3 * 2 * 2
    assert set(np.unique(M[M != 0])) == set(w.ravel())
