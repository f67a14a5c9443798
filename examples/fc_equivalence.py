"""A convolution as a fully connected layer: ``gpuconv.conv2d_matrix``, weight sharing.

A convolution is a fully connected layer with most connections removed and the
rest sharing weights. ``gpuconv.conv2d_matrix(x.shape, w, ...)`` builds the
dense matrix ``M`` of a convolution for one image:
``conv2d(x, w, ...).ravel() == M @ x.ravel()``. A fully connected layer from
``C*H*W`` inputs to ``K*OH*OW`` outputs would learn every entry of ``M``; the
convolution keeps only the entries that connect an output pixel to the
``C*KH*KW`` input pixels under its window (local connectivity), and all those
entries are copies of just ``w.size`` numbers (weight sharing). The backward pass
follows: the input gradient is ``M.T @ gy`` and the gradient of each shared
weight is the sum of the gradients of its copies.

Run::

    python examples/fc_equivalence.py                  # CUDA if available, else NumPy
    python examples/fc_equivalence.py --backend cuda   # CuPy arrays on the GPU
    python examples/fc_equivalence.py --quick          # smaller, for the tests
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

import gpuconv


def choose_backend(name: str) -> tuple[str, Any]:
    """Return ``(backend, xp)``: ``'cuda'`` and CuPy, or ``'numpy'`` and NumPy."""
    if name == "auto":
        name = "cuda" if "cuda" in gpuconv.info()["backends"] else "numpy"
    if name == "cuda":
        reason = gpuconv.info()["cuda_missing"]
        if reason is not None:
            raise SystemExit(f"--backend cuda is not available here: {reason}")
        import cupy

        return name, cupy
    return name, np


def check(ok: Any, what: str) -> None:
    """Stop the example loudly if a claim it demonstrates does not hold."""
    if not bool(ok):
        raise SystemExit(f"CHECK FAILED: {what}")


def run(args: argparse.Namespace, backend: str, xp: Any) -> None:
    """The example itself, on ``backend`` with arrays of module ``xp``."""
    C, H, W, K, KH, KW = (2, 6, 7, 3, 3, 3) if args.quick else (3, 16, 16, 8, 3, 3)

    rng = np.random.default_rng(args.seed)
    x = xp.asarray(rng.normal(size=(C, H, W)))  # one image, unbatched (C, H, W)
    w = xp.asarray(rng.normal(size=(K, C, KH, KW)))
    print(
        f"fc_equivalence: backend {backend}, x {tuple(x.shape)} (C, H, W), "
        f"w {tuple(w.shape)} (K, C, KH, KW), float64"
    )

    # The identity holds for every geometry conv2d supports.
    for kw in (
        {"padding": 1},
        {"padding": 0},
        {"stride": 2, "padding": 1},
        {"dilation": 2, "padding": "same"},
        {"padding": 1, "padding_mode": "reflect"},
    ):
        M = gpuconv.conv2d_matrix(x.shape, w, **kw)
        y = gpuconv.conv2d(x, w, **kw)
        err = float(xp.abs(M @ x.ravel() - y.ravel()).max())
        desc = ", ".join(f"{k}={v!r}" for k, v in kw.items())
        print(f"  {desc:<38} M {tuple(M.shape)}: max |M @ x - conv2d| = {err:.1e}")
        check(err <= 1e-12, f"M @ x.ravel() == conv2d(x, w).ravel() for {desc}")

    # The main example: 3x3 kernels, zero padding 1 (the size is kept).
    M = gpuconv.conv2d_matrix(x.shape, w, padding=1)
    y = gpuconv.conv2d(x, w, padding=1)
    rows, cols = M.shape
    err = float(xp.abs(M @ x.ravel() - y.ravel()).max())
    print(f"M shape: ({rows}, {cols}) = (K*OH*OW, C*H*W) for padding=1")
    print(f"max |M @ x.ravel() - conv2d(x, w).ravel()| = {err:.1e}")

    # What the convolution saves: connections and parameters.
    nnz = int(xp.count_nonzero(M))
    distinct = int(xp.unique(M[M != 0]).size)
    print(f"dense layer parameters (rows*cols): {rows * cols}")
    print(f"conv layer parameters (w.size): {w.size}")
    print(f"nonzero fraction of M: {nnz / M.size:.4f} ({nnz} of {M.size} entries)")
    print(
        f"  each output pixel sees at most C*KH*KW = {C * KH * KW} of the {cols} "
        "inputs (local connectivity)"
    )
    print(f"distinct nonzero values in M: {distinct} (= w.size: the shared weights)")
    print(f"  each weight is used {nnz / w.size:.1f} times on average")
    check(distinct == w.size, "M holds exactly the w.size weights")

    # Backward: the input gradient is the transpose, the weight gradient sums
    # the gradients of the entries of M that share a weight.
    gy = xp.asarray(rng.normal(size=y.shape))
    g = gpuconv.conv2d_backward(gy, x, w, padding=1, needs=("input", "weight"))
    err_gx = float(xp.abs(M.T @ gy.ravel() - g.gx.ravel()).max())
    # Which weight each entry of M copies: the matrix of w = 1, 2, ..., w.size.
    index = gpuconv.conv2d_matrix(x.shape, xp.arange(1.0, w.size + 1).reshape(w.shape),
                                  padding=1)
    gM = xp.outer(gy.ravel(), x.ravel())  # dL/dM for y = M @ x
    gw_tied = xp.bincount(index.ravel().astype(np.int64), weights=gM.ravel(),
                          minlength=w.size + 1)[1:].reshape(w.shape)
    err_gw = float(xp.abs(gw_tied - g.gw).max())
    print(f"backward: max |M.T @ gy - conv2d_backward(...).gx| = {err_gx:.1e}")
    print(
        "weight sharing: max |sum of dL/dM over each weight's copies - "
        f"conv2d_backward(...).gw| = {err_gw:.1e}"
    )
    check(err_gx <= 1e-12 and err_gw <= 1e-10, "the backward identities")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("auto", "numpy", "cuda"), default="auto")
    parser.add_argument("--quick", action="store_true", help="smaller sizes (tests)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    backend, xp = choose_backend(args.backend)
    # --backend decides even when GPUCONV_BACKEND is set (the context wins).
    with gpuconv.use_backend(backend):
        run(args, backend, xp)


if __name__ == "__main__":
    main()
