"""Benchmark: ``gpuconv.torch`` in a torch training step, against ``torch.nn.Conv2d``.

The workload is one training step (forward, then backward for the input and every
parameter) of a ResNet basic block, NCHW float32::

    x -> conv3x3 -> BN -> ReLU -> conv3x3 -> BN -> (+ x) -> ReLU,   C = 64, 56 x 56

with N = 16 (``--batch``). The block is built twice, once with
``gpuconv.torch.Conv2d`` and once with ``torch.nn.Conv2d`` (the same weights; BN,
ReLU, the sum and autograd are torch's on both sides), so the difference is the
two convolutions: gpuconv's kernels plus the glue (DLPack views, torch's stream
made CuPy's, the autograd Function) against cuDNN.

Sides (one row each, in this order):

- ``gpuconv.torch`` FP32 (``precision='highest'``);
- ``torch.nn.Conv2d`` FP32: ``torch.backends.cudnn.allow_tf32 = False``;
- ``gpuconv.torch`` TF32: ``gpuconv.torch.Conv2d(..., precision='tf32')`` (the
  tensor-core kernels; ``allow_tf32 = True`` as on the next row, which gpuconv
  does not read);
- ``torch.nn.Conv2d`` TF32: ``allow_tf32 = True`` (cuDNN's default for convolutions).

``cudnn.benchmark = True`` (cuDNN's fastest algorithms). Every row has ``ratio``
(its median over the FP32 torch row's) and ``ratio_tf32`` (over the TF32 row's).
Before timing, the gpuconv FP32 side's block output is validated against the FP32
torch side (relative max error within ``tests/_tol.py``'s float32 rule) and its first
convolution alone (output, input and weight gradient) against float64 on the same
operands within the float32 summation bound (the block's gradients are no fair
test: a last-bit difference before BN and ReLU flips ReLU masks); the gpuconv TF32
side's first convolution alone
(output, input and weight gradient, on the block's input) against the TF32 model
(the operands rounded to TF32 as ``cvt.rna`` does, then float64: the NumPy
backend's model) within ``tests/_tol.py``'s product bound, float32 summation only
(``errors`` hold error / bound, at most 1; a kernel that truncates instead of
rounding fails it). Through BN and ReLU a TF32 forward flips some ReLU masks, so
the block's gradients are no fair test of a TF32 convolution. A side that fails
validation is not timed.
``conv_flops`` counts the six convolution passes of the step (forward, input and
weight gradient of each conv); ``gflops`` divides it by the step time.

Two more rows show the glue alone: ``conv2d_call`` times one small conv2d
(``(1, 8, 16, 16)`` by ``(8, 8, 3, 3)``) through ``gpuconv.torch.conv2d`` and through
``gpuconv.conv2d`` on the same memory as CuPy arrays (``variant`` ``gpuconv.torch``
and ``gpuconv``); their difference is the per-call cost of the torch glue.

Timing: CUDA events on torch's current stream, warm-up calls first, then the
median (and min) of at least 5 steps, more while under ``--budget`` seconds.
``--device cpu`` runs the same rows on CPU tensors (the NumPy backend against
torch's CPU convolution; the host clock; small sizes by default, and the TF32
rows make no sense there, so they are left out): a smoke test that runs anywhere.

Standalone::

    PYTHONPATH=. python bench/bench_gpu_torch.py [--batch 16] [--budget 0.3]
        [--json out.json]
    PYTHONPATH=. python bench/bench_gpu_torch.py --device cpu --quick --json out.json
    python bench/bench_gpu_torch.py --table out.json     # the table of a run

Exits 2 with the reason when the CUDA device (CuPy's or torch's) is missing for
``--device cuda`` (the default), 1 when a row failed validation or raised.
"""

from __future__ import annotations

import argparse
import functools
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if str(Path(__file__).resolve().parent) not in sys.path:  # loaded by file path
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from _gpu_common import failed, repo_on_path, row_saver, start_run

OP = "resnet_basic_block_train_step"
GPU_SHAPE = {"c": 64, "hw": 56}
CPU_SHAPE = {"c": 16, "hw": 28}
QUICK_SHAPE = {"c": 8, "hw": 14}


def err_limit(terms: int) -> float:
    """tests/_tol.py's float32 rule, relative to max|reference|."""
    return 1e-5 + 5e-6 * math.sqrt(terms)


# tests/_tol.py's tensor-core product bound against the TF32 model: the same
# rounded operands, exact products, so only the float32 summation error remains.
FP32_UNIT = 2.0**-24


def _gamma(n: int, unit: float) -> float:
    return n * unit / (1 - n * unit)


def tf32_bound_coeff(terms: int) -> float:
    """``gamma_{n+1}(2^-24) + gamma_{n+1}(2^-53)``: times ``S = sum |a||b|`` it
    bounds each element's distance from the TF32 model (tests/_tol.py)."""
    n = terms + 1
    return _gamma(n, FP32_UNIT) + _gamma(n, 2.0**-53)


def round_tf32(torch: Any, a: Any) -> Any:
    """float32 ``a`` rounded to TF32 as ``cvt.rna.tf32.f32`` (ties away from zero;
    inf/NaN kept): gpuconv._precision.round_tf32 on torch tensors."""
    u = a.detach().contiguous().view(torch.int32)
    special = (u & 0x7F800000) == 0x7F800000
    r = torch.where(special, u, u + (1 << 12)) & -(1 << 13)
    return r.view(torch.float32)


def tf32_conv_errors(torch: Any, conv: Any, x: Any, gy: Any) -> dict[str, float]:
    """``conv`` (a bias-free 3x3 ``padding=1`` stride-1 layer, C -> C) on float32
    ``x`` with output gradient ``gy``: max error / bound of ``y``, ``gx`` and
    ``gw`` against float64 torch on TF32-rounded operands (each at most 1 when
    correct)."""
    return conv_errors(torch, conv, x, gy, tf32=True)


def conv_errors(torch: Any, conv: Any, x: Any, gy: Any, *, tf32: bool
                ) -> dict[str, float]:
    """``conv`` (a bias-free 3x3 ``padding=1`` stride-1 layer, C -> C) on float32
    ``x`` with output gradient ``gy``: max error / bound of ``y``, ``gx`` and
    ``gw`` against float64 torch on the same operands, rounded to TF32 first when
    ``tf32`` (each at most 1 when correct: the float32 summation bound
    :func:`tf32_bound_coeff` times ``sum |a||b|``, element by element)."""
    f = torch.nn.functional
    g = torch.nn.grad
    xi = x.detach().clone().requires_grad_()
    y = conv(xi)
    gx, gw = torch.autograd.grad(y, (xi, conv.weight), gy)
    rnd = (lambda t: round_tf32(torch, t)) if tf32 else (lambda t: t.detach())
    x64, w64, gy64 = (rnd(t).double() for t in (x, conv.weight, gy))
    n, c, hw = x.shape[0], x.shape[1], x.shape[2] * x.shape[3]
    k = w64.shape[2] * w64.shape[3]

    def passes(a: Any, b: Any, d: Any) -> tuple[Any, Any, Any]:
        return (f.conv2d(a, b, padding=1),
                g.conv2d_input(x.shape, b, d, padding=1),
                g.conv2d_weight(a, w64.shape, d, padding=1))

    refs = passes(x64, w64, gy64)
    sums = passes(x64.abs(), w64.abs(), gy64.abs())
    out = {}
    for name, got, ref, s, terms in zip(("y", "gx", "gw"), (y, gx, gw), refs, sums,
                                        (c * k, w64.shape[0] * k, n * hw),
                                        strict=True):
        limit = tf32_bound_coeff(terms) * s
        err = (got.detach().double() - ref).abs()
        ratio = float((err / limit.clamp_min(1e-300)).max())
        out[name] = ratio if math.isfinite(ratio) else math.inf
    return out


def make_block(torch: Any, conv: Callable[..., Any], c: int, device: Any) -> Any:
    """The ResNet basic block (stride 1, no downsampling) with ``conv`` layers."""

    class BasicBlock(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = conv(c, c, 3, padding=1, bias=False)
            self.bn1 = torch.nn.BatchNorm2d(c)
            self.conv2 = conv(c, c, 3, padding=1, bias=False)
            self.bn2 = torch.nn.BatchNorm2d(c)

        def forward(self, x: Any) -> Any:
            y = torch.relu(self.bn1(self.conv1(x)))
            return torch.relu(self.bn2(self.conv2(y)) + x)

    return BasicBlock().to(device)


class Timer:
    """Times ``fn`` on the device: CUDA events on torch's current stream, or the
    host clock on the CPU."""

    def __init__(self, torch: Any, device: Any, budget_s: float,
                 min_repeats: int = 5, max_repeats: int = 200) -> None:
        self.torch, self.cuda = torch, device.type == "cuda"
        self.budget, self.min_rep, self.max_rep = budget_s, min_repeats, max_repeats

    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()

    def __call__(self, fn: Callable[[], Any], warmup: int = 3
                 ) -> tuple[float, float, int]:
        for _ in range(warmup):
            fn()
        self.sync()
        times: list[float] = []
        t0 = time.perf_counter()
        while len(times) < self.min_rep or (
            time.perf_counter() - t0 < self.budget and len(times) < self.max_rep
        ):
            if self.cuda:
                start = self.torch.cuda.Event(enable_timing=True)
                end = self.torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end) / 1e3)
            else:
                t = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t)
        return statistics.median(times), min(times), len(times)


def train_step(block: Any, x: Any, gy: Any) -> Callable[[], Any]:
    """One step: forward, backward with ``gy`` (input and parameter gradients)."""

    def step() -> Any:
        block.zero_grad(set_to_none=True)
        x.grad = None
        block(x).backward(gy)

    return step


def _grads(torch: Any, block: Any, x: Any, gy: Any) -> list[Any]:
    block.zero_grad(set_to_none=True)
    x.grad = None
    y = block(x)
    y.backward(gy)
    return [y.detach().clone(), x.grad.clone(), block.conv1.weight.grad.clone(),
            block.conv2.weight.grad.clone()]


def _rel_err(got: Any, want: Any) -> float:
    scale = max(float(want.abs().max()), 1e-30)
    err = float((got.double() - want.double()).abs().max())
    return err / scale if math.isfinite(err) else math.inf


def run_torch_bench(device_name: str = "cuda", batch: int | None = None,
                    quick: bool = False, budget_s: float = 0.3,
                    sink: Callable[[dict[str, Any]], None] | None = None,
                    ) -> list[dict[str, Any]]:
    """The rows (see the module docstring); ``sink`` gets each row when done."""
    repo_on_path()
    import torch

    import gpuconv.torch as gt

    device = torch.device(device_name)
    cuda = device.type == "cuda"
    shape = GPU_SHAPE if cuda else (QUICK_SHAPE if quick else CPU_SHAPE)
    n = batch or (16 if cuda else 2)
    if quick and cuda:
        n = min(n, 4)
    c, hw = shape["c"], shape["hw"]
    if cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = False
        dev_label = torch.cuda.get_device_name(device)
    else:
        dev_label = "cpu"
    name = f"N{n}-C{c}-{hw}x{hw}-K{c}-3x3-s1p1"
    conv_flops = 6 * 2 * n * c * c * 9 * hw * hw
    timer = Timer(torch, device, budget_s, min_repeats=3 if quick else 5)
    rows: list[dict[str, Any]] = []

    def emit(row: dict[str, Any]) -> None:
        rows.append(row)
        if sink is not None:
            sink(row)

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, c, hw, hw, generator=gen).to(device).requires_grad_()
    gy = torch.randn(n, c, hw, hw, generator=gen).to(device)
    torch.manual_seed(1)
    ref_block = make_block(torch, torch.nn.Conv2d, c, device)
    ours_block = make_block(torch, gt.Conv2d, c, device)
    ours_block.load_state_dict(ref_block.state_dict())

    sides = [("gpuconv.torch", ours_block, False),
             ("torch.nn.Conv2d", ref_block, False)]
    if cuda:
        tf32_block = make_block(
            torch, functools.partial(gt.Conv2d, precision="tf32"), c, device)
        tf32_block.load_state_dict(ref_block.state_dict())
        sides += [("gpuconv.torch", tf32_block, True),
                  ("torch.nn.Conv2d", ref_block, True)]
    if cuda:
        torch.backends.cudnn.allow_tf32 = False
    want = _grads(torch, ref_block, x, gy)
    limits = [err_limit(c * 9)]
    medians: dict[tuple[str, bool], float] = {}
    pending = []
    for variant, block, tf32 in sides:
        if cuda:
            torch.backends.cudnn.allow_tf32 = tf32
        dtype_label = "tf32" if tf32 else "float32"
        row: dict[str, Any] = {
            "case": f"{OP}/{variant}/{name}/{dtype_label}", "op": OP, "shape": name,
            "dtype": "float32", "math": dtype_label,
            "backend": "cuda" if cuda else "numpy", "device": dev_label,
            "variant": variant, "peer": "torch.nn.Conv2d (cuDNN)" if cuda
            else "torch.nn.Conv2d (CPU)", "unit": "gflops", "flops": conv_flops,
            "conv_flops": conv_flops, "batch": n,
        }
        try:
            if variant == "gpuconv.torch" and tf32:
                errors = tf32_conv_errors(torch, block.conv1, x, gy)
                row.update(errors=errors, max_err=max(errors.values()), err_limit=1.0,
                           validation="conv1 vs float64, error / TF32 product bound")
                if not row["max_err"] <= 1.0:
                    row.update(error=f"validation failed: error / bound {errors} "
                               "over 1; not timed", error_kind="validation",
                               validation_failed=True)
                    pending.append(row)
                    continue
            elif variant == "gpuconv.torch":
                # the block's output against torch's (relative, tests/_tol.py's
                # float32 rule), and conv1's three passes against float64 within
                # the float32 summation bound: the block's gradients are no fair
                # test, a last-bit difference before BN and ReLU flips ReLU masks
                # (measured on the H200: gx 6e-3 relative for that reason alone)
                got = _grads(torch, block, x, gy)
                y_err = _rel_err(got[0], want[0])
                errors = conv_errors(torch, block.conv1, x, gy, tf32=False)
                row["errors"] = dict(y_block=y_err / limits[0], **errors)
                row.update(max_err=max(row["errors"].values()), err_limit=1.0,
                           validation="block y vs torch (float32 rule); conv1 vs "
                           "float64, error / float32 summation bound")
                if not row["max_err"] <= 1.0:
                    row.update(error=f"validation failed: error / bound "
                               f"{row['errors']} over 1; not timed",
                               error_kind="validation", validation_failed=True)
                    pending.append(row)
                    continue
            med, best, reps = timer(train_step(block, x, gy))
            row.update(median_s=med, min_s=best, repeats=reps,
                       gflops=conv_flops / med / 1e9)
            row["rate"] = row["gflops"]
            medians[(variant, tf32)] = med
        except Exception as exc:  # one side failing must not end the run
            row.update(error=f"{type(exc).__name__}: {exc}", error_kind="exception")
        pending.append(row)
    if cuda:
        torch.backends.cudnn.allow_tf32 = False
    fp32, tf = medians.get(("torch.nn.Conv2d", False)), medians.get(
        ("torch.nn.Conv2d", True))
    for row in pending:
        med = row.get("median_s")
        row.setdefault("median_s", None)
        row["peer_median_s"] = fp32
        row["ratio"] = med / fp32 if med and fp32 else None
        row["peer_tf32_median_s"] = tf
        row["ratio_tf32"] = med / tf if med and tf else None
        emit(row)
    for row in _call_rows(torch, gt, device, dev_label, timer):
        emit(row)
    return rows


def _call_rows(torch: Any, gt: Any, device: Any, dev_label: str,
               timer: Timer) -> list[dict[str, Any]]:
    """The glue alone: one small conv2d through gpuconv.torch and through gpuconv
    on the same memory as arrays."""
    import gpuconv

    gen = torch.Generator().manual_seed(2)
    x = torch.randn(1, 8, 16, 16, generator=gen).to(device)
    w = torch.randn(8, 8, 3, 3, generator=gen).to(device)
    cuda = device.type == "cuda"
    if cuda:
        import cupy

        xa, wa = cupy.from_dlpack(x), cupy.from_dlpack(w)
    else:
        xa, wa = x.numpy(), w.numpy()
    shape = "N1-C8-16x16-K8-3x3-s1p1"
    out = []
    for variant, fn in (("gpuconv.torch", lambda: gt.conv2d(x, w, padding=1)),
                        ("gpuconv", lambda: gpuconv.conv2d(xa, wa, padding=1))):
        row: dict[str, Any] = {
            "case": f"conv2d_call/{variant}/{shape}/float32", "op": "conv2d_call",
            "shape": shape, "dtype": "float32", "backend": "cuda" if cuda else "numpy",
            "device": dev_label, "variant": variant, "unit": "us",
        }
        try:
            med, best, reps = timer(fn, warmup=5)
            row.update(median_s=med, min_s=best, repeats=reps, rate=med * 1e6)
        except Exception as exc:
            row.update(error=f"{type(exc).__name__}: {exc}", error_kind="exception")
        out.append(row)
    base = out[1].get("median_s")
    for row in out:
        med = row.get("median_s")
        row["ratio"] = med / base if med and base else None
        row["glue_s"] = med - base if med and base else None
    return out


def format_rows(rows: list[dict[str, Any]]) -> str:
    head = ("case", "ms", "vs FP32", "vs TF32", "conv TFLOP/s", "note")
    data = []
    for r in rows:
        def f(v: Any, fmt: str) -> str:
            return "-" if v is None else format(v, fmt)

        med = r.get("median_s")
        ms = f(med and med * 1e3, ".4f" if r["op"] == "conv2d_call" else ".3f")
        note = r.get("error") or (f"glue {r['glue_s'] * 1e6:.1f} us per call"
                                  if r.get("glue_s") is not None and
                                  r["variant"] == "gpuconv.torch" else "")
        data.append((r["case"], ms, f(r.get("ratio"), ".2f"),
                     f(r.get("ratio_tf32"), ".2f"),
                     f(r.get("gflops") and r["gflops"] / 1e3, ".2f"), note[:90]))
    widths = [max(len(x[i]) for x in [head, *data]) for i in range(len(head))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(x, widths, strict=True))
              for x in data]
    return "\n".join(line.rstrip() for line in lines)


def _cuda_missing() -> str | None:
    try:
        import torch
    except Exception as exc:
        return f"PyTorch could not be imported: {exc!r}"
    if not torch.cuda.is_available():
        return "torch.cuda.is_available() is False"
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    ap.add_argument("--batch", type=int, default=None,
                    help="N (default 16 on the GPU, 2 on the CPU)")
    ap.add_argument("--quick", action="store_true",
                    help="smaller sizes, fewer repeats (a smoke test)")
    ap.add_argument("--budget", type=float, default=0.3,
                    help="seconds of timed steps per side beyond the minimum")
    ap.add_argument("--json", default=None,
                    help="write the rows here (rewritten after every row)")
    ap.add_argument("--table", default=None, metavar="ROWS.json",
                    help="print the table of a JSON file written before, and exit")
    args = ap.parse_args(argv)
    prog = "bench_gpu_torch"
    if args.table:
        import json

        print(format_rows(json.loads(Path(args.table).read_text())["rows"]))
        return 0
    if args.device == "cuda":
        meta = start_run(prog, argv)
        if meta is None:
            return 2
        reason = _cuda_missing()
        if reason is not None:
            print(f"{prog}: no CUDA device for torch: {reason}", file=sys.stderr)
            return 2
    else:
        meta = {"argv": sys.argv if argv is None else [f"{prog}.py", *argv],
                "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    rows, save = row_saver(args.json, meta)
    run_torch_bench(args.device, batch=args.batch, quick=args.quick,
                    budget_s=args.budget, sink=lambda row: save([row]))
    print(format_rows(rows))
    return 1 if failed(rows) else 0


if __name__ == "__main__":
    sys.exit(main())
