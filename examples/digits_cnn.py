"""Train a small CNN on scikit-learn's 8x8 digits with gpuconv's conv2d and gradients.

The network (``'same'`` padding, 3x3 kernels)::

    x (N, 1, 8, 8) -> conv 16 -> ReLU -> max-pool 2 -> (N, 16, 4, 4)
                   -> conv 32 -> ReLU -> max-pool 2 -> (N, 32, 2, 2)
                   -> dense 128 -> 10 -> softmax cross-entropy

Both convolutions run forward through ``gpuconv.conv2d`` and backward through
``gpuconv.conv2d_backward``; the rest (ReLU, pooling, softmax, Adam) is a few lines
of NumPy, or CuPy when the arrays live on the GPU: the same code runs on both
because it only calls methods of the arrays and functions of ``xp``. The data set
ships with scikit-learn (no download). ``--check`` compares the first batch's
gradients with central finite differences (in float64) before training.

``--torch`` trains the same network, from the same initial parameters on the same
batches, as a ``torch.nn.Module`` whose two convolutions are
``gpuconv.torch.Conv2d`` (torch tensors on the CPU, or on the GPU with
``--backend cuda``; autograd calls gpuconv's backward), with ``torch.optim.Adam``
(the same update as :class:`Adam` here); with ``--check`` it compares autograd's
gradients of the first batch with this file's hand-written backward (float64).

Run::

    python examples/digits_cnn.py                  # CUDA if available, else NumPy
    python examples/digits_cnn.py --backend cuda   # CuPy arrays on the GPU
    python examples/digits_cnn.py --check          # gradient check, then train
    python examples/digits_cnn.py --quick          # fewer epochs, for the tests
    python examples/digits_cnn.py --torch          # torch module, gpuconv.torch.Conv2d

The last line printed is ``test accuracy: 0.xxx``.
"""

from __future__ import annotations

import argparse
import contextlib
import time
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


def blas_threads(n: int, backend: str) -> contextlib.AbstractContextManager:
    """Limit the BLAS threads the NumPy backend's GEMMs use to ``n`` (0: no limit).

    This network's matrices are tiny (at most 32 x 144 times 144 x 512 per kernel
    tap): splitting them over threads gains little, and where the cores are busy
    with other work, BLAS threads that spin while waiting for each other slow each
    step down many times over. threadpoolctl comes with scikit-learn.
    """
    if n <= 0 or backend != "numpy":
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn depends on it
        return contextlib.nullcontext()
    return threadpool_limits(limits=n, user_api="blas")


def load_digits(seed: int) -> tuple[np.ndarray, ...]:
    """The 1797 8x8 digits as ``(N, 1, 8, 8)`` float32 in [0, 1], split 80/20."""
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    digits = sk_load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]
    return train_test_split(
        x, digits.target, test_size=0.2, stratify=digits.target, random_state=seed
    )


# -- the layers that are not convolutions ----------------------------------------------


def maxpool2(a: Any, xp: Any) -> tuple[Any, Any]:
    """2x2 max-pooling of ``(N, C, H, W)`` (H, W even) by reshaping, no loops.

    Returns the pooled array and, for the backward pass, the position (0..3) of
    the maximum in each window.
    """
    n, c, h, w = a.shape
    win = a.reshape(n, c, h // 2, 2, w // 2, 2).transpose(0, 1, 2, 4, 3, 5)
    win = win.reshape(n, c, h // 2, w // 2, 4)
    return win.max(axis=-1), win.argmax(axis=-1)


def maxpool2_backward(g: Any, where: Any, xp: Any) -> Any:
    """Route each pooled gradient to the window position that held the maximum."""
    n, c, h, w = g.shape
    g4 = (where[..., None] == xp.arange(4)) * g[..., None]
    return g4.reshape(n, c, h, w, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(
        n, c, 2 * h, 2 * w
    )


def softmax_xent(logits: Any, y: Any, xp: Any) -> tuple[Any, Any]:
    """Mean cross-entropy of softmax(logits) against labels and its gradient."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = xp.exp(z)
    p = e / e.sum(axis=1, keepdims=True)
    n = logits.shape[0]
    rows = xp.arange(n)
    loss = -xp.log(p[rows, y] + 1e-30).mean()
    g = p
    g[rows, y] -= 1
    return loss, g / n


# -- the network -----------------------------------------------------------------------


def init_params(seed: int, xp: Any, dtype: Any = np.float32) -> dict[str, Any]:
    """He-initialised weights (drawn on the host, so every backend starts equal).

    The conv biases start at 0.01, not 0: on the blank background of the digits
    (input exactly 0) a zero bias puts every pre-activation exactly on the ReLU's
    kink, where the gradient is not defined.
    """
    rng = np.random.default_rng(seed)

    def he(shape: tuple[int, ...], fan_in: int) -> Any:
        return xp.asarray(rng.normal(0.0, np.sqrt(2.0 / fan_in), shape).astype(dtype))

    return {
        "w1": he((16, 1, 3, 3), 1 * 9),
        "b1": xp.full(16, 0.01, dtype),
        "w2": he((32, 16, 3, 3), 16 * 9),
        "b2": xp.full(32, 0.01, dtype),
        "wd": he((128, 10), 128),
        "bd": xp.zeros(10, dtype),
    }


def features(P: dict[str, Any], x: Any, xp: Any) -> tuple[Any, dict[str, Any]]:
    """First block: conv1 -> ReLU -> pool. Returns ``h1`` (the input of conv2)."""
    z1 = gpuconv.conv2d(x, P["w1"], P["b1"], padding="same")
    h1, where1 = maxpool2(xp.maximum(z1, 0), xp)
    return h1, {"x": x, "z1": z1, "where1": where1}


def head(
    P: dict[str, Any], h1: Any, y: Any, xp: Any
) -> tuple[Any, Any, dict[str, Any]]:
    """Second block and classifier: conv2 -> ReLU -> pool -> dense -> softmax."""
    z2 = gpuconv.conv2d(h1, P["w2"], P["b2"], padding="same")
    h2, where2 = maxpool2(xp.maximum(z2, 0), xp)
    f = h2.reshape(h2.shape[0], -1)
    logits = f @ P["wd"] + P["bd"]
    loss, g_logits = softmax_xent(logits, y, xp) if y is not None else (None, None)
    cache = {"h1": h1, "z2": z2, "where2": where2, "f": f, "g_logits": g_logits}
    return loss, logits, cache


def loss_and_grads(
    P: dict[str, Any], x: Any, y: Any, xp: Any
) -> tuple[Any, dict[str, Any]]:
    """Forward and backward through the whole network."""
    h1, c1 = features(P, x, xp)
    loss, _, c2 = head(P, h1, y, xp)
    g = {}
    g_logits = c2["g_logits"]
    g["wd"] = c2["f"].T @ g_logits
    g["bd"] = g_logits.sum(axis=0)
    g_h2 = (g_logits @ P["wd"].T).reshape(c2["where2"].shape)
    g_z2 = maxpool2_backward(g_h2, c2["where2"], xp) * (c2["z2"] > 0)
    g2 = gpuconv.conv2d_backward(g_z2, h1, P["w2"], padding="same")
    g["w2"], g["b2"], g["h1"] = g2.gw, g2.gb, g2.gx
    g_z1 = maxpool2_backward(g2.gx, c1["where1"], xp) * (c1["z1"] > 0)
    g1 = gpuconv.conv2d_backward(
        g_z1, x, P["w1"], padding="same", needs=("weight", "bias")
    )
    g["w1"], g["b1"] = g1.gw, g1.gb
    return loss, g


def loss_only(P: dict[str, Any], x: Any, y: Any, xp: Any) -> Any:
    """The loss alone (forward only)."""
    h1, _ = features(P, x, xp)
    return head(P, h1, y, xp)[0]


def predict(P: dict[str, Any], x: Any, xp: Any) -> Any:
    """The predicted digit of each image."""
    h1, _ = features(P, x, xp)
    return head(P, h1, None, xp)[1].argmax(axis=1)


class Adam:
    """Adam (Kingma & Ba), updating the parameter arrays in place."""

    def __init__(self, params: dict[str, Any], lr: float, xp: Any) -> None:
        self.lr, self.b1, self.b2, self.eps, self.t = lr, 0.9, 0.999, 1e-8, 0
        self.m = {k: xp.zeros_like(v) for k, v in params.items()}
        self.v = {k: xp.zeros_like(v) for k, v in params.items()}

    def step(self, params: dict[str, Any], grads: dict[str, Any]) -> None:
        self.t += 1
        c1, c2 = 1 - self.b1**self.t, 1 - self.b2**self.t
        for k, p in params.items():
            g = grads[k]
            self.m[k] = self.b1 * self.m[k] + (1 - self.b1) * g
            self.v[k] = self.b2 * self.v[k] + (1 - self.b2) * (g * g)
            p -= (self.lr / c1) * self.m[k] / ((self.v[k] / c2) ** 0.5 + self.eps)


# -- the finite-difference check -------------------------------------------------------


def gradient_check(
    P32: dict[str, Any], x32: Any, y: Any, xp: Any, seed: int, h: float = 1e-6
) -> float:
    """Compare the analytic gradients of one batch with central differences.

    In float64, for the weights and biases of both convolutions, the input of
    the second convolution and the dense weights and bias (all entries of small
    tensors, 60 random entries of large ones). The network is piecewise smooth: ReLU and
    max-pool switch pieces where a pre-activation crosses 0 or two window values
    tie, and there the two one-sided slopes differ. An entry whose ``+h`` or
    ``-h`` evaluation lands on another piece (any ReLU mask or max-pool choice
    differs from the unperturbed one) is skipped and counted. Prints and returns
    the max over tensors of ``max |analytic - numeric| / max |numeric|``.
    """
    P = {k: v.astype(np.float64) for k, v in P32.items()}
    x = x32.astype(np.float64)
    _, g = loss_and_grads(P, x, y, xp)
    h1, c1 = features(P, x, xp)

    def evaluate(h1_in: Any = None) -> tuple[float, list[Any]]:
        """The loss and the piece it was computed on (ReLU masks, pool choices)."""
        if h1_in is None:
            h1_now, c = features(P, x, xp)
        else:  # perturbing conv2's input directly: the first block is unchanged
            h1_now, c = h1_in, c1
        loss, _, c2 = head(P, h1_now, y, xp)
        return float(loss), [c["z1"] > 0, c["where1"], c2["z2"] > 0, c2["where2"]]

    _, piece = evaluate()
    rng = np.random.default_rng(seed)
    worst = 0.0
    for name in ("w1", "b1", "w2", "b2", "h1", "wd", "bd"):
        target = h1 if name == "h1" else P[name]
        size = int(target.size)
        picks = np.arange(size) if size <= 200 else rng.choice(size, 60, replace=False)
        flat = target.reshape(-1)  # a view: perturbing it perturbs the tensor
        g_flat = g[name].reshape(-1)
        numeric, analytic, skipped = [], [], 0
        for i in picks.tolist():
            old = float(flat[i])
            losses, same_piece = [], True
            for step in (h, -h):
                flat[i] = old + step
                loss, p = evaluate(h1 if name == "h1" else None)
                losses.append(loss)
                same_piece &= all(  # the same ReLU masks and pool choices
                    bool(xp.array_equal(a, b)) for a, b in zip(p, piece, strict=True)
                )
            flat[i] = old
            if not same_piece:
                skipped += 1
                continue
            numeric.append((losses[0] - losses[1]) / (2 * h))
            analytic.append(float(g_flat[i]))
        if not numeric:
            raise SystemExit(f"gradient check: every entry of {name} was at a kink")
        numeric, analytic = np.array(numeric), np.array(analytic)
        scale = max(float(np.abs(numeric).max()), 1e-12)
        err = float(np.abs(analytic - numeric).max()) / scale
        label = "conv2 input" if name == "h1" else name
        print(
            f"  d loss / d {label:<11} {len(numeric):>3} entries checked "
            f"({skipped} at a kink, skipped): rel err {err:.1e}"
        )
        worst = max(worst, err)
    print(f"gradient check (first batch, float64, h={h:g}): max relative error "
          f"{worst:.1e}")
    return worst


# -- training --------------------------------------------------------------------------


class ArrayTrainer:
    """The network of this file on NumPy or CuPy arrays, trained with :class:`Adam`."""

    def __init__(self, P: dict[str, Any], lr: float, xp: Any) -> None:
        self.P, self.xp = P, xp
        self.opt = Adam(P, lr, xp)

    def asarray(self, a: np.ndarray) -> Any:
        return self.xp.asarray(a)

    def step(self, x: Any, y: Any) -> float:
        loss, g = loss_and_grads(self.P, x, y, self.xp)
        self.opt.step(self.P, g)
        return float(loss)

    def accuracy(self, x: Any, y: Any) -> float:
        return float((predict(self.P, x, self.xp) == y).mean())


class TorchTrainer:
    """The same network as a ``torch.nn.Module`` with ``gpuconv.torch.Conv2d``
    layers (autograd computes the gradients: gpuconv's backward for the two
    convolutions, torch's for the rest), trained with ``torch.optim.Adam``.

    Starts from the same parameters as :class:`ArrayTrainer` (``wd`` transposed
    into the ``Linear`` layer's ``(out, in)`` weight).
    """

    def __init__(self, P: dict[str, Any], lr: float, backend: str,
                 dtype: Any = None) -> None:
        import torch
        import torch.nn.functional as F

        import gpuconv.torch as gt

        self.torch, self.F = torch, F
        self.device = torch.device("cuda" if backend == "cuda" else "cpu")
        kw = {"device": self.device, "dtype": dtype or torch.float32}
        self.conv1 = gt.Conv2d(1, 16, 3, padding="same", **kw)
        self.conv2 = gt.Conv2d(16, 32, 3, padding="same", **kw)
        self.dense = torch.nn.Linear(128, 10, **kw)
        self.net = torch.nn.ModuleList([self.conv1, self.conv2, self.dense])
        with torch.no_grad():
            for name, param in self.params_by_name().items():
                value = P[name]
                host = np.asarray(value.get() if hasattr(value, "get") else value)
                param.copy_(torch.from_numpy((host.T if name == "wd" else host).copy()))
        self.opt = torch.optim.Adam(self.net.parameters(), lr=lr, betas=(0.9, 0.999),
                                    eps=1e-8)

    def params_by_name(self) -> dict[str, Any]:
        """The module's parameters under this file's names (``wd`` is transposed)."""
        return {"w1": self.conv1.weight, "b1": self.conv1.bias,
                "w2": self.conv2.weight, "b2": self.conv2.bias,
                "wd": self.dense.weight, "bd": self.dense.bias}

    def asarray(self, a: np.ndarray) -> Any:
        return self.torch.as_tensor(a, device=self.device)

    def logits(self, x: Any) -> Any:
        F = self.F
        h1 = F.max_pool2d(F.relu(self.conv1(x)), 2)
        h2 = F.max_pool2d(F.relu(self.conv2(h1)), 2)
        return self.dense(h2.flatten(1))

    def step(self, x: Any, y: Any) -> float:
        self.opt.zero_grad()
        loss = self.F.cross_entropy(self.logits(x), y)
        loss.backward()
        self.opt.step()
        return loss.item()

    def accuracy(self, x: Any, y: Any) -> float:
        with self.torch.no_grad():
            return float((self.logits(x).argmax(1) == y).float().mean())


def torch_check(P32: dict[str, Any], x32: Any, y: Any, xp: Any,
                backend: str) -> float:
    """Autograd through ``gpuconv.torch`` against this file's hand-written backward
    (:func:`loss_and_grads`) on one batch, in float64: the torch network is the
    same network. Prints and returns the max over parameters of
    ``max |autograd - hand-written| / max |hand-written|``."""
    import torch

    P = {k: v.astype(np.float64) for k, v in P32.items()}
    x = x32.astype(np.float64)
    loss, g = loss_and_grads(P, x, y, xp)
    t = TorchTrainer(P, 0.0, backend, dtype=torch.float64)
    tl = torch.nn.functional.cross_entropy(t.logits(t.asarray(x)), t.asarray(y))
    tl.backward()
    worst = abs(tl.item() - float(loss)) / abs(float(loss))
    for name, param in t.params_by_name().items():
        got = param.grad.detach().cpu().numpy()
        got = got.T if name == "wd" else got
        want = np.asarray(g[name].get() if hasattr(g[name], "get") else g[name])
        worst = max(worst, float(np.abs(got - want).max() / np.abs(want).max()))
    print(f"torch check (first batch, float64): autograd through gpuconv.torch vs "
          f"the hand-written backward, max relative difference {worst:.1e}")
    return worst


def run(args: argparse.Namespace, backend: str, xp: Any) -> None:
    """The example itself, on ``backend`` with arrays of module ``xp`` (or torch
    tensors on the matching device with ``--torch``)."""
    epochs = args.epochs or (6 if args.quick else 25)

    x_train, x_test, y_train, y_test = load_digits(args.seed)
    mode = ", torch (gpuconv.torch.Conv2d, torch.optim.Adam)" if args.torch else ""
    print(
        f"digits_cnn: backend {backend}{mode}, {len(x_train)} training and "
        f"{len(x_test)} test images of 8x8, {epochs} epochs, batch "
        f"{args.batch_size}, float32"
    )
    P = init_params(args.seed, xp)
    sizes = {k: int(v.size) for k, v in P.items()}
    print(
        f"parameters: {sum(sizes.values())} (conv1 {sizes['w1'] + sizes['b1']}, "
        f"conv2 {sizes['w2'] + sizes['b2']}, dense {sizes['wd'] + sizes['bd']})"
    )

    order_rng = np.random.default_rng(args.seed + 1)
    bs = args.batch_size
    if args.check:
        first = order_rng.permutation(len(x_train))[:bs]
        xb, yb = xp.asarray(x_train[first]), xp.asarray(y_train[first])
        if args.torch:
            err = torch_check(P, xb, yb, xp, backend)
            if not err < 1e-10:
                raise SystemExit(f"torch check failed: max relative difference "
                                 f"{err:.1e}")
        else:
            err = gradient_check(P, xb, yb, xp, args.seed)
            if not err < 1e-5:
                raise SystemExit(f"gradient check failed: max relative error "
                                 f"{err:.1e}")
        order_rng = np.random.default_rng(args.seed + 1)  # same batches as without

    trainer: Any = (TorchTrainer(P, args.lr, backend) if args.torch
                    else ArrayTrainer(P, args.lr, xp))
    x_train, x_test = trainer.asarray(x_train), trainer.asarray(x_test)
    y_train, y_test = trainer.asarray(y_train), trainer.asarray(y_test)
    start = time.perf_counter()
    steps = 0
    for epoch in range(epochs):
        order = trainer.asarray(order_rng.permutation(len(x_train)))
        total = 0.0
        for i in range(0, len(order), bs):
            idx = order[i : i + bs]
            total += trainer.step(x_train[idx], y_train[idx]) * len(idx)
            steps += 1
        if epoch == epochs - 1 or epoch % 5 == 0 or args.quick:
            acc = trainer.accuracy(x_test, y_test)
            print(
                f"epoch {epoch + 1:>3}: train loss {total / len(order):.4f}, "
                f"test accuracy {acc:.3f}"
            )
    seconds = time.perf_counter() - start
    print(
        f"training time: {seconds:.1f} s ({steps} steps, "
        f"{1e3 * seconds / steps:.1f} ms per step)"
    )
    print(f"test accuracy: {trainer.accuracy(x_test, y_test):.3f}")


def check_torch(backend: str) -> None:
    """Exit with the reason when ``--torch`` cannot run on ``backend``."""
    try:
        import torch
    except ImportError as exc:
        raise SystemExit(f"--torch needs PyTorch (pip install 'gpuconv[torch]'): "
                         f"{exc}") from None
    if backend == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--torch with --backend cuda needs a CUDA build of PyTorch "
                         "that sees the GPU (torch.cuda.is_available() is False)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("auto", "numpy", "cuda"), default="auto")
    parser.add_argument("--quick", action="store_true", help="fewer epochs (tests)")
    parser.add_argument("--check", action="store_true",
                        help="check the first batch's gradients by finite differences")
    parser.add_argument("--epochs", type=int, help="default 25, or 6 with --quick")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--blas-threads", type=int, default=1,
                        help="BLAS threads on the NumPy backend, and torch's CPU "
                        "threads with --torch (0: leave as is)")
    parser.add_argument("--torch", action="store_true",
                        help="the same network as a torch module with "
                        "gpuconv.torch.Conv2d layers and torch.optim.Adam")
    args = parser.parse_args(argv)
    backend, xp = choose_backend(args.backend)
    if args.torch:
        check_torch(backend)
        if args.blas_threads > 0 and backend == "numpy":
            import torch

            torch.set_num_threads(args.blas_threads)
    # --backend decides even when GPUCONV_BACKEND is set (the context wins).
    with gpuconv.use_backend(backend), blas_threads(args.blas_threads, backend):
        run(args, backend, xp)


if __name__ == "__main__":
    main()
