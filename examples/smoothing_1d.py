"""Smooth a noisy 1-D track with a causal weighted average (``gpuconv.convolve``).

A car drives along a road; every tick (100 per second) an imprecise sensor reports
its position with Gaussian noise. We estimate the position at tick ``t`` from the
readings up to ``t`` only (a *causal* filter, usable while driving) as a weighted
average of the last ``L`` readings, the weights decaying with the age of the
reading:

    y[t] = sum_k w[k] * x[t - k],   w[k] = exp(-k / tau) / sum_j exp(-j / tau)

That sum is exactly the first ``n`` samples of the 'full' convolution of the
readings with the weights, ``gpuconv.convolve(x, w)[:n]``.

Run::

    python examples/smoothing_1d.py                   # CUDA if available, else NumPy
    python examples/smoothing_1d.py --backend cuda    # CuPy arrays on the GPU
    python examples/smoothing_1d.py --plot track.png  # also draw the tracks
    python examples/smoothing_1d.py --plot            # ... to smoothing_1d.png
    python examples/smoothing_1d.py --quick           # small, for the test suite
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


def simulate(n: int, dt: float, noise: float, seed: int) -> tuple[np.ndarray, ...]:
    """True and measured positions of a car whose speed varies smoothly."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) * dt
    speed = 10.0 + 6.0 * np.sin(2 * np.pi * t / 30) + 2.0 * np.sin(2 * np.pi * t / 7)
    true = np.cumsum(speed) * dt  # position in metres
    measured = true + rng.normal(0.0, noise, n)
    return true, measured, speed


def causal_weights(length: int, tau: float) -> np.ndarray:
    """``w[k]`` for a reading ``k`` ticks old: exponential decay, summing to one."""
    w = np.exp(-np.arange(length) / tau)
    return w / w.sum()


def run(args: argparse.Namespace, backend: str, xp: Any) -> None:
    """The example itself, on ``backend`` with arrays of module ``xp``."""

    dt, noise, length, tau = 0.01, 2.0, 25, 5.0
    n = 1000 if args.quick else 6000
    true_h, measured_h, speed = simulate(n, dt, noise, args.seed)
    w_h = causal_weights(length, tau)
    print(
        f"smoothing_1d: backend {backend}, {n} ticks of {dt} s, "
        f"sensor noise {noise:.2f} m (rms)"
    )
    print(
        f"kernel: L = {length} weights, w[k] = exp(-k/{tau:g}) / sum, "
        f"k = age of the reading in ticks"
    )
    print("  w[0..4] =", " ".join(f"{v:.4f}" for v in w_h[:5]), "...  (newest first)")

    # The data lives where the backend computes: NumPy arrays or CuPy arrays.
    true, x, w = (xp.asarray(a) for a in (true_h, measured_h, w_h))

    # Why this is a weighted average: the weights are positive and sum to one, so
    # the output is a convex combination of readings; in particular a car standing
    # still (a constant track) is reported exactly where it stands.
    print(f"weights sum: {float(w.sum()):.6f}")

    # Why convolve(x, w)[:n] is the causal filter: the 'full' convolution is
    # full[t] = sum_k w[k] * x[t - k] for t = 0 .. n + L - 2, with x[t - k] = 0 when
    # t - k < 0. Its first n samples use only readings at or before t (causal); the
    # last L - 1 samples would need readings that do not exist yet, we drop them.
    # ('same' mode would centre the window and use future readings.)
    raw = gpuconv.convolve(x, w)[:n]
    t0 = n // 2
    by_hand = sum(w_h[k] * measured_h[t0 - k] for k in range(length))
    print(
        "causal filter: y[t] = sum_k w[k] x[t-k] = convolve(x, w)[:n]; "
        f"check at t = {t0}: by hand {by_hand:.9f}, convolve {float(raw[t0]):.9f}"
    )

    # During the first L - 1 ticks fewer than L readings exist and the missing ones
    # count as zero, which would drag the estimate towards 0 m. Dividing by the sum
    # of the weights actually used (the same filter applied to ones) keeps a
    # weighted average there too; from tick L - 1 on that sum is exactly 1.
    used = gpuconv.convolve(xp.ones(n), w)[:n]
    smoothed = raw / used

    c = 7.5
    const = xp.full(n, c)
    const_full = gpuconv.convolve(const, w)[:n]
    dev_steady = float(xp.abs(const_full[length - 1 :] - c).max())
    dev_all = float(xp.abs(const_full / used - c).max())
    print(
        f"constant track check: a car standing at {c} m -> max |y - {c}| = "
        f"{dev_steady:.1e} from tick {length - 1} on, {dev_all:.1e} on every tick "
        f"with warm-up normalisation"
    )

    # The price of causality: an average of past positions lags behind a moving
    # car by the mean age of the weights times its speed.
    mean_age = float((xp.arange(length) * w).sum())
    print(
        f"mean age of the weights: {mean_age:.2f} ticks = {mean_age * dt:.3f} s -> "
        f"lag about {mean_age * dt * speed.mean():.2f} m at {speed.mean():.1f} m/s"
    )

    def rms(a: Any) -> float:
        return float(xp.sqrt(xp.mean(a * a)))

    err_raw = rms(x - true)
    err_smooth = rms(smoothed - true)
    # The filter is linear: smoothed = smooth(true) + smooth(noise), so its error
    # splits into the lag (smoothing the noiseless track) and the noise left over.
    lag_only = gpuconv.convolve(true, w)[:n] / used
    noise_left = gpuconv.convolve(x - true, w)[:n] / used
    print(f"rms error raw: {err_raw:.3f} m")
    print(f"rms error smoothed: {err_smooth:.3f} m")
    print(
        "  of which lag (smoothing the true track alone): "
        f"{rms(lag_only - true):.3f} m, noise left: {rms(noise_left):.3f} m"
        f" (white noise shrinks by sqrt(sum w^2) = {float(xp.sqrt((w * w).sum())):.3f})"
    )

    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        t = np.arange(n) * dt
        sm = to_numpy(smoothed)
        fig, axes = plt.subplots(2, 1, figsize=(9, 7))
        zoom = slice(n // 2, n // 2 + min(n // 4, 200))
        for ax, sl in zip(axes, (slice(None), zoom), strict=True):
            ax.plot(t[sl], measured_h[sl], ".", ms=2, color="0.6", label="measured")
            ax.plot(t[sl], true_h[sl], "k-", lw=1.5, label="true")
            ax.plot(t[sl], sm[sl], "C1-", lw=1.5, label="smoothed (causal)")
            ax.set_xlabel("time [s]")
            ax.set_ylabel("position [m]")
        axes[0].set_title(
            f"rms error: measured {err_raw:.2f} m, smoothed {err_smooth:.2f} m"
        )
        axes[1].set_title("zoom: the causal average lags slightly behind the car")
        axes[0].legend(loc="upper left")
        fig.tight_layout()
        fig.savefig(args.plot, dpi=100)
        print(f"plot written to {args.plot}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("auto", "numpy", "cuda"), default="auto")
    parser.add_argument("--quick", action="store_true", help="short track (tests)")
    parser.add_argument(
        "--plot", nargs="?", const="smoothing_1d.png", metavar="PNG",
        help="draw the tracks to this file (default smoothing_1d.png)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    backend, xp = choose_backend(args.backend)
    # --backend decides even when GPUCONV_BACKEND is set (the context wins).
    with gpuconv.use_backend(backend):
        run(args, backend, xp)


if __name__ == "__main__":
    main()
