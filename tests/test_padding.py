"""gpuconv._padding: index maps against np.pad, and the fold (transpose) matrices."""

from __future__ import annotations

import numpy as np
import pytest

from gpuconv._padding import PADDING_MODES, fold_matrix, pad_index

NP_MODE = {
    "zeros": "constant",
    "reflect": "reflect",
    "replicate": "edge",
    "circular": "wrap",
    "symmetric": "symmetric",
}


@pytest.mark.parametrize("mode", PADDING_MODES)
@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_pad_index_matches_np_pad_for_any_pad_size(mode, n):
    """Pads up to 3x the axis length: the pattern repeats as np.pad's does."""
    src = np.arange(n)
    for before in range(0, 3 * n + 2):
        for after in (0, 1, n, 3 * n + 1):
            idx = pad_index(n, before, after, mode)
            kw = {"constant_values": -1} if mode == "zeros" else {}
            want = np.pad(src, (before, after), mode=NP_MODE[mode], **kw)
            np.testing.assert_array_equal(idx, want)


def test_zero_length_axis():
    np.testing.assert_array_equal(pad_index(0, 2, 1, "zeros"), [-1, -1, -1])
    for mode in PADDING_MODES[1:]:
        with pytest.raises(ValueError, match="needs a non-empty axis"):
            pad_index(0, 1, 1, mode)


def test_unknown_mode():
    with pytest.raises(ValueError, match="padding_mode must be one of"):
        pad_index(3, 1, 1, "mirror")


@pytest.mark.parametrize("mode", PADDING_MODES)
def test_fold_matrix_pads_and_folds(mode, rng):
    n, before, after = 4, 5, 2
    P = fold_matrix(n, before, after, mode, np.float64)
    x = rng.standard_normal(n)
    kw = {"constant_values": 0} if mode == "zeros" else {}
    np.testing.assert_array_equal(
        P @ x, np.pad(x, (before, after), NP_MODE[mode], **kw)
    )
    # the transpose adds each padded position's gradient onto its source pixel
    g = rng.standard_normal(n + before + after)
    want = np.zeros(n)
    idx = pad_index(n, before, after, mode)
    for p, s in enumerate(idx):
        if s >= 0:
            want[s] += g[p]
    np.testing.assert_allclose(P.T @ g, want, rtol=1e-15, atol=1e-15)
