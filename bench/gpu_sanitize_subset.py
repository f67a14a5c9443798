"""A small conv2d workload for compute-sanitizer (``bench/gpu_check.sh`` runs it
through ``bench/gpu_sanitize_all.py``).

CuPy's memory pool is switched off first: a pooled sub-allocation would hide an
out-of-bounds access inside a larger block (rapidsai/rmm#1899), so every buffer is
its own ``cudaMalloc`` here, of an odd size where possible. Runs every conv2d
variant, both passes and the weight/bias gradient, float32 and float64 (and TF32
and float16, forward and input gradient, on both routes: the tensor-core kernels,
forced, and the SIMT route, ``cuda/convert.cu`` + the FP32 kernels), on a few
awkward small cases from ``tests/_cuda_conv_cases.py`` (tile +- 1, regblock tails,
every feature at once, a non-zero padding mode with pads larger than the image),
and the NHWC pipeline (``algorithm='mma_nhwc'``, every pass where it applies; and
the FP32 NHWC kernels, op-level ``'nhwc'``) on cases of
``tests/test_emulated_mma_nhwc.py``, and the weight gradient along the pixels
(op-level ``'unfold'``) on cases of ``tests/test_emulated_wgrad_unfold.py``,
checks each result loosely against the NumPy backend, and exits 1 on a wrong
result. Under ``compute-sanitizer --tool memcheck|racecheck --error-exitcode N`` a
memory error or a shared-memory race makes the exit status N.

    PYTHONPATH=. compute-sanitizer --tool memcheck --error-exitcode 99 \\
        python bench/gpu_sanitize_subset.py
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

if str(Path(__file__).resolve().parent) not in sys.path:  # loaded by file path
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from _gpu_common import sanitize_workload

SUBSET = ("tile_plus1", "regblock_fwd_tails", "everything", "symmetric_pad_gt_input")


def _relative_error(got: Any, want: Any) -> float:
    """The largest error relative to the largest ``|want|`` (at least 1), in
    float64."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.abs(got - want).max() / max(np.abs(want).max(), 1))


def _workload(cp: Any) -> tuple[int, int]:
    import gpuconv
    from gpuconv import _gpu_conv
    from tests._cuda_conv_cases import CASE_IDS, CASES, problem, random_inputs

    rule = _gpu_conv.mma_preferred

    bad = 0
    runs = 0
    for case_id in SUBSET:
        _, xs, ws, kw = CASES[CASE_IDS.index(case_id)]
        for dtype in (np.float32, np.float64):
            p = problem(xs, ws, dtype, kw)
            x, w, b, gy = random_inputs(np.random.default_rng(0), p, dtype)
            ref_y = gpuconv.conv2d(x, w, b, backend="numpy", **kw)
            ref_gx = gpuconv.conv2d_grad_input(x.shape, w, gy, backend="numpy", **kw)
            ref_g = gpuconv.conv2d_backward(gy, x, w, needs=("weight", "bias"),
                                            backend="numpy", **kw)
            dx, dw, db, dgy = (cp.asarray(a) for a in (x, w, b, gy))
            for variant in ("naive", "tiled", "tiled_regblock"):
                y = cp.asnumpy(gpuconv.conv2d(dx, dw, db, algorithm=variant, **kw))
                gx = cp.asnumpy(gpuconv.conv2d_grad_input(
                    x.shape, dw, dgy, algorithm=variant, **kw))
                g = gpuconv.conv2d_backward(dgy, dx, dw, needs=("weight", "bias"),
                                            algorithm=variant, **kw)
                gw, gb = cp.asnumpy(g.gw), cp.asnumpy(g.gb)
                runs += 4
                for what, got, want in (("y", y, ref_y), ("gx", gx, ref_gx),
                                        ("gw", gw, ref_g.gw), ("gb", gb, ref_g.gb)):
                    err = _relative_error(got, want)
                    if not err < (1e-4 if dtype == np.float32 else 1e-10):
                        bad += 1
                        print(f"WRONG {case_id} {np.dtype(dtype).name} {variant} "
                              f"{what}: relative error {err:.3g}")
        # TF32 on float32 data and float16 data, 'auto' on both routes: the
        # tensor-core kernels (cuda/conv2d_mma.cu; the dispatch rule forced to take
        # them on these small cases) and the SIMT route (the rule's own choice here:
        # cuda/convert.cu and the FP32 kernels)
        for dtype, precision, mma in ((np.float32, "tf32", True),
                                      (np.float16, "highest", True),
                                      (np.float32, "tf32", False),
                                      (np.float16, "highest", False)):
            _gpu_conv.mma_preferred = (lambda *a: True) if mma else rule
            try:
                p = problem(xs, ws, dtype, kw)
                x, w, b, gy = random_inputs(np.random.default_rng(0), p, dtype)
                pk = dict(kw, precision=precision)
                ref_y = gpuconv.conv2d(x, w, b, backend="numpy", **pk)
                ref_gx = gpuconv.conv2d_grad_input(x.shape, w, gy, backend="numpy",
                                                   **pk)
                dx, dw, db, dgy = (cp.asarray(a) for a in (x, w, b, gy))
                y = cp.asnumpy(gpuconv.conv2d(dx, dw, db, **pk))
                gx = cp.asnumpy(gpuconv.conv2d_grad_input(x.shape, dw, dgy, **pk))
                runs += 2
                for what, got, want in (("y", y, ref_y), ("gx", gx, ref_gx)):
                    err = _relative_error(got, want)
                    if not err < 1e-2:
                        bad += 1
                        print(f"WRONG {case_id} {np.dtype(dtype).name} {precision} "
                              f"{'mma' if mma else 'simt'} {what}: relative error "
                              f"{err:.3g}")
            finally:
                _gpu_conv.mma_preferred = rule
    r, b = _nhwc_workload(cp)
    r2, b2 = _unfold_workload(cp)
    return runs + r + r2, bad + b + b2


def _unfold_workload(cp: Any) -> tuple[int, int]:
    """The FP32 weight gradient along the pixels (op level 'unfold': the width
    unfold, then 16-byte cp.async copies of gy and of the unfolded x) on cases of
    tests/test_emulated_wgrad_unfold.py: the stem's geometry, chunks crossing rows
    and images, dilation with asymmetric padding, a kernel larger than the image."""
    import gpuconv
    from gpuconv import _gpu_conv
    from tests._cuda_conv_cases import problem, random_inputs
    from tests.test_emulated_wgrad_unfold import CASES, IDS

    runs = bad = 0
    for case_id in ("stem", "rows_and_images", "dilated", "kernel_gt_input"):
        _, xs, ws, kw = CASES[IDS.index(case_id)]
        p = problem(xs, ws, np.float32, kw)
        x, _, _, gy = random_inputs(np.random.default_rng(0), p, np.float32)
        want = gpuconv.conv2d_grad_weight(x.astype(np.float64), p.w_shape,
                                          gy.astype(np.float64), backend="numpy",
                                          **kw)
        got = _gpu_conv.conv2d_backward_weight(cp.asarray(gy), cp.asarray(x), p,
                                               "unfold", False)[0]
        runs += 1
        err = _relative_error(cp.asnumpy(got), want)
        if not err < 1e-4:
            bad += 1
            print(f"WRONG unfold {case_id}: relative error {err:.3g}")
    return runs, bad


#: Cases of tests/test_emulated_mma_nhwc.py for the NHWC pipeline (cp.async stages,
#: ldmatrix; 'mma_nhwc' forced at the op level): tails, groups with dilation, the
#: input gradient's crop, a padding mode.
NHWC_SUBSET = ("tails", "groups_dilated", "crop", "reflect")


def _nhwc_workload(cp: Any) -> tuple[int, int]:
    import dataclasses

    from gpuconv import _gpu_conv, _plan_conv
    from tests._cuda_conv_cases import api_pass, problem, random_inputs
    from tests.test_emulated_mma_nhwc import IDS, NHWC_CASES

    runs = bad = 0
    for case_id in NHWC_SUBSET:
        _, xs, ws, kw = NHWC_CASES[IDS.index(case_id)]
        for dtype, kind in ((np.float32, "tf32"), (np.float16, "f16")):
            p = problem(xs, ws, dtype, kw)
            if kind == "tf32":
                p = dataclasses.replace(p, precision="tf32")
            x, w, b, gy = random_inputs(np.random.default_rng(0), p, dtype)
            b = b.astype(np.float32)
            dx, dw, db, dgy = (cp.asarray(a) for a in (x, w, b, gy))
            p0 = _plan_conv.padded_problem(p) if _plan_conv.needs_padding_copy(p) else p

            def op(pass_name, q, algorithm, dx=dx, dw=dw, db=db, dgy=dgy):
                if pass_name == "forward":
                    return _gpu_conv.conv2d_forward(dx, dw, db, q, algorithm)
                if pass_name == "backward_input":
                    return _gpu_conv.conv2d_backward_input(dgy, dw, q, algorithm)
                return _gpu_conv.conv2d_backward_weight(dgy, dx, q, algorithm,
                                                        False)[0]

            for pass_name in _plan_conv.NHWC_PASSES:
                if not _plan_conv.nhwc_applies(p0, pass_name, kind):
                    continue
                got = op(pass_name, p, "mma_nhwc")
                want = api_pass(pass_name, *(a.astype(np.float64) for a in
                                             (x, w, b, gy)), kw, backend="numpy")
                fp = problem(xs, ws, np.float32, kw)
                fp32 = kind == "tf32" and (
                    _plan_conv.wgrad_nhwc_applies(p0) if pass_name == "backward_weight"
                    else _plan_conv.fwd_nhwc_applies(p0, pass_name))
                if fp32:
                    # and the FP32 kernels on NHWC operands (op level 'nhwc': their
                    # ignore-src copies carry addresses outside the tensors)
                    runs += 1
                    err = _relative_error(cp.asnumpy(op(pass_name, fp, "nhwc")), want)
                    if not err < 1e-4:
                        bad += 1
                        print(f"WRONG nhwc fp32 {case_id} {pass_name}: relative error "
                              f"{err:.3g}")
                runs += 1
                err = _relative_error(cp.asnumpy(got), want)
                if not err < 1e-2:
                    bad += 1
                    print(f"WRONG nhwc {case_id} {kind} {pass_name}: relative error "
                          f"{err:.3g}")
    return runs, bad


def main() -> int:
    return sanitize_workload("gpu_sanitize_subset", _workload)


if __name__ == "__main__":
    sys.exit(main())
