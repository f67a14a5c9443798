"""The calls Nsight Compute profiles in ``bench/gpu_final.sh`` (step ``ncu``).

Each case runs its call twice (the first compiles and plans) on the layers where the
measurements left the most open:

- ``mma``: the tensor-core kernels forced (``algorithm='mma'``, TF32 and float16) on
  N32 C256 14x14 3x3, forward and input gradient: they measured at about 6% of the
  TF32 peak (0.125 ms for 3.7 GFLOP, 491e4e5), so the profile should say what they
  wait on (warp stall reasons, occupancy, shared-memory bank conflicts);
- ``nhwc``: the same layer on the NHWC pipeline (``'mma_nhwc'``: its packs and the
  cp.async/ldmatrix GEMMs; forward, input and weight gradients), the answer to the
  ``mma`` profile;
- ``winograd``: the forward Winograd plans of the same layer, F(2x2, 3x3) and
  F(4x4, 3x3) (transforms and GEMMs);
- ``stem``: the stem's input gradient (the column GEMM and ``col2im``) and its
  weight gradient (``conv2d_unfold_width`` and the GEMM along the pixels,
  ``conv2d_backward_weight_unfold``, chosen on the SASS proxy, never measured);
- ``fp32``: the FP32 kernels ``auto`` runs on the same layer (float32,
  ``precision='highest'``: ``conv2d_forward_nhwc`` for the forward pass and the input
  gradient, ``conv2d_backward_weight_nhwc``, their packs), chosen on the SASS proxy
  and never measured: whether their ``cp.async`` stages keep the FMA pipes busy.

Run under ncu, e.g.::

    ncu --clock-control none \\
        --kernel-name regex:'mma|winograd|col2im|tiled_regblock|nhwc|unfold' \\
        --launch-count 56 \\
        --section SpeedOfLight --section WarpStateStats --section Occupancy \\
        --section LaunchStats --section SchedulerStats \\
        python bench/ncu_probe.py mma nhwc winograd stem fp32

Without a GPU it does nothing useful (it needs CuPy on a CUDA device).
"""

from __future__ import annotations

import dataclasses
import sys

import numpy as np

#: (x, w) shapes of the tensor-core and Winograd cases, and of the stem (the tests
#: shrink them to run the script on the emulator).
LAYER = ((32, 256, 14, 14), (256, 256, 3, 3))
STEM = ((16, 3, 224, 224), (64, 3, 7, 7))


def _arrays(cp, x_shape, w_shape, dtype):
    rng = np.random.default_rng(0)
    x = cp.asarray(rng.standard_normal(x_shape).astype(dtype))
    w = cp.asarray(rng.standard_normal(w_shape).astype(dtype))
    return x, w


def main(argv: list[str]) -> int:
    import cupy as cp

    import gpuconv
    from gpuconv import _gpu_conv
    from gpuconv._conv_args import normalize_conv2d

    cases = argv or ["mma", "nhwc", "winograd", "stem", "fp32"]
    calls = []
    # the tensor-core kernels forced: NCHW ('mma': forward, input gradient) and the
    # NHWC pipeline ('nhwc': cp.async stages, ldmatrix; the weight gradient too)
    for case, algorithm in (("mma", "mma"), ("nhwc", "mma_nhwc")):
        if case not in cases:
            continue
        for dtype, precision in ((np.float32, "tf32"), (np.float16, "highest")):
            x, w = _arrays(cp, *LAYER, dtype)
            p = normalize_conv2d(x.shape, w.shape, [x.dtype], padding=1)
            p = dataclasses.replace(p, precision=precision)
            gy = cp.ones(p.y_shape, dtype=dtype)
            calls.append(lambda x=x, w=w, p=p, a=algorithm: _gpu_conv.conv2d_forward(
                x, w, None, p, a))
            calls.append(lambda gy=gy, w=w, p=p, a=algorithm:
                         _gpu_conv.conv2d_backward_input(gy, w, p, a))
            if case == "nhwc":
                calls.append(lambda gy=gy, x=x, p=p: _gpu_conv.conv2d_backward_weight(
                    gy, x, p, "mma_nhwc", False))
    if "winograd" in cases:
        x, w = _arrays(cp, *LAYER, np.float32)
        for variant in ("winograd", "winograd4"):
            calls.append(lambda x=x, w=w, v=variant: gpuconv.conv2d(
                x, w, padding=1, algorithm=v))
    if "stem" in cases:
        x, w = _arrays(cp, *STEM, np.float32)
        p = normalize_conv2d(x.shape, w.shape, [x.dtype], stride=2, padding=3)
        gy = cp.ones(p.y_shape, dtype=np.float32)
        calls.append(lambda x=x, w=w, gy=gy: gpuconv.conv2d_grad_input(
            x.shape, w, gy, stride=2, padding=3))
        calls.append(lambda x=x, w=w, gy=gy: gpuconv.conv2d_grad_weight(
            x, w.shape, gy, stride=2, padding=3))
    if "fp32" in cases:
        x, w = _arrays(cp, *LAYER, np.float32)
        p = normalize_conv2d(x.shape, w.shape, [x.dtype], padding=1)
        gy = cp.ones(p.y_shape, dtype=np.float32)
        calls.append(lambda x=x, w=w: gpuconv.conv2d(x, w, padding=1))
        calls.append(lambda x=x, w=w, gy=gy: gpuconv.conv2d_grad_input(
            x.shape, w, gy, padding=1))
        calls.append(lambda x=x, w=w, gy=gy: gpuconv.conv2d_grad_weight(
            x, w.shape, gy, padding=1))
    for call in calls:
        for _ in range(2):
            call()
        cp.cuda.Device().synchronize()
    print(f"ncu_probe: {len(calls)} calls x 2 ({', '.join(cases)})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
