"""The Winograd prediction table of docs/performance.md (a model, not a measurement).

For every 3x3 ResNet layer of the H200 rows (``--rows``, default the 491e4e5 conv
rows) and each pass, the time of ``algorithm='winograd'`` (F(2x2, 3x3)) and
``'winograd4'`` (F(4x4, 3x3)) is modelled as the GEMMs' FLOPs at a measured rate plus
the bytes of the workspaces (transformed input written and read, GEMM output written
and read) and of the tensors at ``--bandwidth``. Two rates bound it:

- optimistic: the FLOP rate the direct kernel (``auto``, float32) measured for the
  same layer and pass;
- pessimistic: the rate our 1x1 rows measured (``--slow``: 14 TFLOP/s forward and
  input gradient, 17 TFLOP/s weight gradient), the Winograd GEMMs being 1x1-shaped.

Printed as a Markdown table of ratios to cuDNN FP32 (the rows' peer)::

    PYTHONPATH=. python bench/winograd_model.py [--rows FILE] [--bandwidth 4e12]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:
    sys.path.insert(0, str(HERE.parent))

from gpuconv import _plan_conv as pc  # noqa: E402
from gpuconv._conv_args import normalize_conv2d  # noqa: E402

DEFAULT_ROWS = HERE / "results" / "cuda-h200-2026-12-04-491e4e5-conv.json"
#: The 1x1 rows' measured FP32 rates (491e4e5): forward / input gradient 14 TFLOP/s,
#: weight gradient 17 TFLOP/s.
SLOW = {"conv2d_forward": 14e12, "conv2d_backward_input": 14e12,
        "conv2d_backward_weight": 17e12}
LAYERS = [(n, c, h) for n in (16, 32) for c, h in ((64, 56), (128, 28), (256, 14),
                                                  (512, 7))]


def model(rows: list[dict], bandwidth: float) -> list[str]:
    meas = {(r["op"], r["shape"]): (r["median_s"], r["peer_median_s"]) for r in rows
            if r.get("variant") == "auto" and r["case"].endswith("/float32")
            and r.get("median_s") and r.get("peer_median_s")}
    out = ["| layer | pass | now ms (x cuDNN) | `winograd` model | `winograd4` model |",
           "|---|---|---|---|---|"]
    for n, c, h in LAYERS:
        shape = f"N{n}-C{c}-{h}x{h}-K{c}-3x3-s1p1"
        p = normalize_conv2d((n, c, h, h), (c, c, 3, 3), [np.float32], padding=1)
        direct = 2 * n * c * c * h * h * 9
        tensors = 4 * n * c * h * h * 2  # one tensor read, one written
        for op in SLOW:
            if (op, shape) not in meas:
                continue
            t, peer = meas[(op, shape)]
            cells = []
            for variant in ("winograd", "winograd4"):
                big_p = pc._winograd_geometry(p, "forward", variant)["P"]
                pos = pc.winograd_positions(variant)
                flops = 2 * pos * c * c * big_p
                work = 4 * pos * c * big_p * 4  # two workspaces, written and read
                fast = flops / (direct / t) + (work + tensors) / bandwidth
                slow = flops / SLOW[op] + (work + tensors) / bandwidth
                cells.append(f"{fast / peer:.2f}–{slow / peer:.2f}")
            out.append(f"| {shape} | {op.removeprefix('conv2d_')} | "
                       f"{t * 1e3:.3f} ({t / peer:.2f}) | {cells[0]} | {cells[1]} |")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", default=str(DEFAULT_ROWS))
    ap.add_argument("--bandwidth", type=float, default=4.0e12)
    args = ap.parse_args(argv)
    rows = json.loads(Path(args.rows).read_text())["rows"]
    print("\n".join(model(rows, args.bandwidth)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
