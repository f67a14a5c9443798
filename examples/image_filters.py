"""Blur, sharpen and edge filters on a synthetic image with ``gpuconv.convolve2d``.

Shows three things every user of ``convolve2d``/``correlate2d`` (SciPy semantics)
should know:

1. ``convolve2d`` flips the kernel, ``correlate2d`` does not:
   ``convolve2d(x, k) == correlate2d(x, k[::-1, ::-1])``. An impulse makes it
   visible: convolving it draws the kernel as written, correlating draws it
   rotated by 180 degrees.
2. ``mode='same'`` keeps the image size; with the default zero fill the pixels
   beyond the border count as 0 (a blurred constant image darkens at its edges),
   ``boundary='symm'`` mirrors the image instead.
3. Derivative kernels (Sobel, Scharr) are usually written for correlation: with
   ``convolve2d`` the flip changes the sign of the gradient.

Run::

    python examples/image_filters.py                  # CUDA if available, else NumPy
    python examples/image_filters.py --backend cuda   # CuPy arrays on the GPU
    python examples/image_filters.py --plot grid.png  # PNG grid of the results
    python examples/image_filters.py --plot           # ... to image_filters.png
    python examples/image_filters.py --quick          # small image, for the tests
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


def to_numpy(a: Any) -> np.ndarray:
    """A NumPy copy of a NumPy or CuPy array (for printing and plotting)."""
    return a.get() if hasattr(a, "get") else np.asarray(a)


def check(ok: Any, what: str) -> None:
    """Stop the example loudly if a claim it demonstrates does not hold."""
    if not bool(ok):
        raise SystemExit(f"CHECK FAILED: {what}")


def test_image(size: int, noise: float, seed: int) -> tuple[np.ndarray, dict]:
    """A dark image with a bright square, a grey disc and a little noise.

    Returns the image and the regions the example measures in.
    """
    s = size
    img = np.zeros((s, s))
    top, bottom, left, right = s // 4, s // 2 + s // 8, s // 8, s // 2
    img[top:bottom, left:right] = 1.0
    yy, xx = np.mgrid[:s, :s]
    disc = (yy - 0.65 * s) ** 2 + (xx - 0.7 * s) ** 2 <= (0.18 * s) ** 2
    img[disc] = 0.6
    img += np.random.default_rng(seed).normal(0.0, noise, img.shape)
    regions = {
        # a flat patch of background far from every edge (top right corner)
        "flat": (slice(2, s // 5), slice(s - s // 4, s - 2)),
        # the square's left edge, rows away from its corners
        "left_edge": (slice(top + 2, bottom - 2), slice(left - 1, left + 1)),
    }
    return img, regions


SOBEL_X = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]) / 8.0
SCHARR_X = np.array([[-3, 0, 3], [-10, 0, 10], [-3, 0, 3]]) / 32.0
SHARPEN = np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]], dtype=float)


def gaussian(size: int, sigma: float) -> np.ndarray:
    """A normalised ``size x size`` Gaussian blur kernel."""
    r = np.arange(size) - (size - 1) / 2
    g = np.exp(-(r**2) / (2 * sigma**2))
    k = np.outer(g, g)
    return k / k.sum()


def run(args: argparse.Namespace, backend: str, xp: Any) -> None:
    """The example itself, on ``backend`` with arrays of module ``xp``."""
    size = 48 if args.quick else 128

    img_h, regions = test_image(size, noise=0.05, seed=args.seed)
    print(f"image_filters: backend {backend}, test image {size}x{size}")
    img = xp.asarray(img_h)
    blur_k, sharpen_k = xp.asarray(gaussian(5, 1.0)), xp.asarray(SHARPEN)
    sobel_x, scharr_x = xp.asarray(SOBEL_X), xp.asarray(SCHARR_X)

    # -- 1. convolve2d flips the kernel, correlate2d does not --------------------------
    impulse = xp.zeros((5, 5))
    impulse[2, 2] = 1.0
    k = xp.arange(1.0, 10.0).reshape(3, 3)  # asymmetric: every entry differs
    conv = gpuconv.convolve2d(impulse, k, mode="same")
    corr = gpuconv.correlate2d(impulse, k, mode="same")
    print("kernel k:\n" + str(to_numpy(k).astype(int)))
    print("convolve2d(impulse, k, 'same'):  the kernel as written\n"
          + str(to_numpy(conv).astype(int)))
    print("correlate2d(impulse, k, 'same'): the kernel rotated by 180 degrees\n"
          + str(to_numpy(corr).astype(int)))
    conv_is_k = bool(xp.array_equal(conv[1:4, 1:4], k))
    corr_is_flipped = bool(xp.array_equal(corr[1:4, 1:4], k[::-1, ::-1]))
    print(f"convolve2d(impulse, k) shows k: {conv_is_k}")
    print(f"correlate2d(impulse, k) shows k[::-1, ::-1]: {corr_is_flipped}")
    check(conv_is_k and corr_is_flipped, "the impulse responses")
    # The general relation, on the noisy image with an even-sized random kernel.
    k43 = xp.asarray(np.random.default_rng(args.seed + 1).normal(size=(4, 3)))
    diff = float(xp.abs(
        gpuconv.convolve2d(img, k43, mode="full")
        - gpuconv.correlate2d(img, k43[::-1, ::-1], mode="full")
    ).max())
    print(
        "max |convolve2d(x, k, 'full') - correlate2d(x, k[::-1, ::-1], 'full')| = "
        f"{diff:.1e}"
    )
    check(diff <= 1e-12, "convolve2d(x, k) == correlate2d(x, k[::-1, ::-1])")

    # -- 2. output sizes; 'same' with zero fill keeps the size -------------------------
    shapes = {m: tuple(gpuconv.convolve2d(img, blur_k, mode=m).shape)
              for m in ("full", "same", "valid")}
    print(
        "5x5 blur output shapes: "
        + ", ".join(f"{m} {s}" for m, s in shapes.items())
        + f"; image {tuple(img.shape)}"
    )
    print(f"'same' keeps the image size: {shapes['same'] == tuple(img.shape)}")
    check(shapes["same"] == tuple(img.shape), "'same' keeps the size")
    ones = xp.ones((16, 16))
    zero_fill = gpuconv.convolve2d(ones, blur_k, mode="same")  # boundary='fill', 0
    mirrored = gpuconv.convolve2d(ones, blur_k, mode="same", boundary="symm")
    print(
        "blurring a constant image of ones, 'same': corner "
        f"{float(zero_fill[0, 0]):.3f} centre {float(zero_fill[8, 8]):.3f} with zero "
        f"fill; corner {float(mirrored[0, 0]):.3f} with boundary='symm'"
    )

    # -- 3. blur, sharpen and edges ----------------------------------------------------
    blurred = gpuconv.convolve2d(img, blur_k, mode="same", boundary="symm")
    sharpened = gpuconv.convolve2d(img, sharpen_k, mode="same", boundary="symm")
    flat = regions["flat"]
    stds = [float(a[flat].std()) for a in (img, blurred, sharpened)]
    print(
        "noise std in a flat patch: image {:.4f}, blurred {:.4f}, sharpened {:.4f}"
        .format(*stds)
    )

    # Sobel/Scharr are written for correlation: correlate2d with [-1 0 1] gives
    # +d/dx (positive where the image gets brighter to the right).
    edges = {}
    for name, kx in (("sobel", sobel_x), ("scharr", scharr_x)):
        gx = gpuconv.correlate2d(img, kx, mode="same", boundary="symm")
        gy = gpuconv.correlate2d(img, kx.T, mode="same", boundary="symm")
        mag = xp.sqrt(gx * gx + gy * gy)
        edges[name] = (gx, gy, mag)
        le = regions["left_edge"]
        print(
            f"{name} |gradient|: mean on the square's edge {float(mag[le].mean()):.3f}"
            f", in a flat patch {float(mag[flat].mean()):.3f}; at the left (vertical)"
            f" edge |gx| {float(xp.abs(gx[le]).mean()):.3f} |gy| "
            f"{float(xp.abs(gy[le]).mean()):.3f}"
        )
    # The square's left edge rises from 0 to 1 left to right.
    le = regions["left_edge"]
    sign_corr = float(gpuconv.correlate2d(img, sobel_x, mode="same")[le].mean())
    sign_conv = float(gpuconv.convolve2d(img, sobel_x, mode="same")[le].mean())
    print(
        f"rising edge, mean Sobel x response: correlate2d {sign_corr:+.3f}, "
        f"convolve2d {sign_conv:+.3f} (the flip changes the sign)"
    )

    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        panels = [
            ("test image", img, "gray"),
            ("blurred (5x5 Gaussian)", blurred, "gray"),
            ("sharpened", sharpened, "gray"),
            ("Sobel d/dx (correlate2d)", edges["sobel"][0], "RdBu_r"),
            ("Sobel |gradient|", edges["sobel"][2], "magma"),
            ("Scharr |gradient|", edges["scharr"][2], "magma"),
            ("convolve2d(impulse, k)", conv, "viridis"),
            ("correlate2d(impulse, k)", corr, "viridis"),
        ]
        fig, axes = plt.subplots(2, 4, figsize=(13, 7))
        for ax, (title, a, cmap) in zip(axes.ravel(), panels, strict=True):
            a = to_numpy(a)
            lim = float(np.abs(a).max()) if cmap == "RdBu_r" else None  # 0 = white
            ax.imshow(a, cmap=cmap, interpolation="nearest", vmin=lim and -lim,
                      vmax=lim)
            ax.set_title(title, fontsize=10)
            ax.set_xticks([])
            ax.set_yticks([])
            if a.shape == (5, 5):
                for (i, j), v in np.ndenumerate(a):
                    if v:
                        ax.text(j, i, f"{v:g}", ha="center", va="center", color="w")
        fig.tight_layout()
        fig.savefig(args.plot, dpi=90)
        print(f"plot written to {args.plot}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("auto", "numpy", "cuda"), default="auto")
    parser.add_argument("--quick", action="store_true", help="small image (tests)")
    parser.add_argument(
        "--plot", nargs="?", const="image_filters.png", metavar="PNG",
        help="write a PNG grid of results (default image_filters.png)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    backend, xp = choose_backend(args.backend)
    # --backend decides even when GPUCONV_BACKEND is set (the context wins).
    with gpuconv.use_backend(backend):
        run(args, backend, xp)


if __name__ == "__main__":
    main()
