"""The tensor-core dispatch rule (``gpuconv._plan_conv.mma_preferred``) replayed on
the committed H200 rows of 2026-12-04.

Since the NHWC pipeline (``'mma_nhwc'``, chosen on the SASS proxy where
``nhwc_preferred``; never measured) 'auto' asks ``mma_preferred`` only where the
NHWC pipeline is not taken; the replay checks the measured rule itself (NCHW mma
kernels against the SIMT route), which still decides those passes.

Two runs: ``df4f664`` ran the mma kernels on every ``precision='tf32'`` and float16
row (``algorithm='auto'``); ``491e4e5`` ran the rule of that commit: the mma kernels
(with a faster main loop) where it picked them, else the SIMT route (convert.cu,
then the FP32 kernels). For every tf32/float16 row, the time of each route is the
newest measurement of it: the mma time from 491e4e5 where it ran there, else from
df4f664 (the older, slower kernels: an upper bound); the SIMT route's from 491e4e5
where it ran there, else estimated as the float32 row of the same pass and layer
plus the conversion pre-pass of the pass's two operands at the row's copy bandwidth
(read 4 bytes, or 2 for float16, and write 4 an element). The pick of
``gpuconv.choose_algorithm`` must be within 1.1x of the faster route on every row
but the listed 3x3 gradient rows (the rule's comment in gpuconv/_plan_conv.py), and
within 1.45x there.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest

import gpuconv
from gpuconv import _gpu_conv, _plan_conv
from gpuconv._conv_args import normalize_conv2d

RESULTS = Path(__file__).resolve().parent.parent / "bench" / "results"
ROWS_MMA = RESULTS / "cuda-h200-2026-12-04-df4f664-conv.json"
ROWS_RULE = RESULTS / "cuda-h200-2026-12-04-491e4e5-conv.json"
TOLERANCE = 1.1
#: (pass, layer, precision) where the rule's pick measured more than 1.1x the faster
#: route: TF32 input gradients where the (older) mma kernels were faster on one batch
#: size but not the other, and small weight gradients.
KNOWN_LOSSES = {
    ("backward_input", "N16-C128-28x28-K128-3x3-s1p1", "tf32"),  # 1.26
    ("backward_input", "N32-C256-14x14-K256-3x3-s1p1", "tf32"),  # 1.12
    ("backward_input", "N8-C64-54x54-K64-3x3-s1p1", "tf32"),  # 1.42
    ("backward_weight", "N16-C64-56x56-K256-1x1-s1p0", "float16"),  # 1.15
    ("backward_weight", "N8-C64-54x54-K64-3x3-s1p1", "float16"),  # 1.27
    ("backward_weight", "N8-C64-54x54-K64-3x3-s1p1", "tf32"),  # 1.12
}
KNOWN_LOSS_LIMIT = 1.45
_SHAPE = re.compile(r"N(\d+)-C(\d+)-(\d+)x(\d+)-K(\d+)-(\d+)x(\d+)-s(\d+)p(\d+)$")


def _rows(path):
    return json.loads(path.read_text())["rows"]


def _measured_rule_pick(x_shape, w_shape, pass_name, *, dtype="float32",
                        precision=None, **kw):
    """``'mma'`` where the measured rule (``mma_preferred``) takes the NCHW mma
    kernels, else what the SIMT route runs (the float32 choice)."""
    p = normalize_conv2d(x_shape, w_shape, [np.dtype(dtype)], **kw)
    p = dataclasses.replace(p, precision=precision or "highest")
    kp = _gpu_conv.kernel_problem(p)
    if _plan_conv.mma_kind(kp, pass_name) and _plan_conv.mma_preferred(kp, pass_name):
        return "mma"
    fp32 = _gpu_conv.kernel_problem(dataclasses.replace(p, precision="highest"))
    return _plan_conv.choose_algorithm(fp32, pass_name)


def _replay():
    """``[(pass, layer, precision, pick, picked_s, mma_s, simt_s)]``."""
    fp32: dict[tuple[str, str, str], float] = {}
    mma: dict[tuple[str, str, str], float] = {}
    simt: dict[tuple[str, str, str], float] = {}
    bandwidth: dict[tuple[str, str, str], float] = {}
    for path in (ROWS_MMA, ROWS_RULE):  # the newer run last: its times win
        for r in _rows(path):
            if r.get("median_s") is None or r["variant"] != "auto":
                continue
            op, _, layer, prec = r["case"].split("/")
            key = (op.removeprefix("conv2d_"), layer, prec)
            if prec == "float32":
                fp32[(key[0], layer)] = r["median_s"]
            elif prec in ("tf32", "float16"):
                route = mma if r["resolved"] == "mma" else simt
                route[key] = r["median_s"]
                bandwidth[key] = r["copy_bandwidth_bytes_s"]
    out = []
    for key in sorted(bandwidth):
        pass_name, layer, prec = key
        n, c, h, w, k, kh, kw, s, pd = map(int, _SHAPE.match(layer).groups())
        oh, ow = (h + 2 * pd - kh) // s + 1, (w + 2 * pd - kw) // s + 1
        nx, nw, ngy = n * c * h * w, k * c * kh * kw, n * k * oh * ow
        elements = {"forward": nx + nw, "backward_input": ngy + nw,
                    "backward_weight": ngy + nx}[pass_name]
        convert_s = elements * (6 if prec == "float16" else 8) / bandwidth[key]
        dtype = "float16" if prec == "float16" else "float32"
        precision = "tf32" if prec == "tf32" else None
        pick = _measured_rule_pick((n, c, h, w), (k, c, kh, kw), pass_name,
                                   stride=s, padding=pd, dtype=dtype,
                                   precision=precision)
        simt_s = simt.get(key, fp32[(pass_name, layer)] + convert_s)
        mma_s = mma[key]
        picked_s = mma_s if pick == "mma" else simt_s
        out.append((pass_name, layer, prec, pick, picked_s, mma_s, simt_s))
    return out


def test_rows_cover_every_pass_and_both_precisions():
    got = _replay()
    assert len(got) == 2 * 3 * 15
    assert {(g[0], g[2]) for g in got} == {
        (p, q) for p in ("forward", "backward_input", "backward_weight")
        for q in ("tf32", "float16")}
    # both routes are taken: the rule is not 'never' or 'always'
    assert "mma" in {g[3] for g in got} and len({g[3] for g in got}) > 1


def test_the_pick_is_within_the_tolerance_of_the_faster_kernel():
    losses = set()
    for pass_name, layer, prec, pick, picked_s, mma_s, simt_s in _replay():
        ratio = picked_s / min(mma_s, simt_s)
        key = (pass_name, layer, prec)
        if ratio > TOLERANCE:
            losses.add(key)
            assert ratio <= KNOWN_LOSS_LIMIT, (key, pick, ratio)
    assert losses == KNOWN_LOSSES


def test_the_picks_add_up_to_less_than_either_kernel_alone():
    got = _replay()
    picked = sum(g[4] for g in got)
    best = sum(min(g[5], g[6]) for g in got)
    mma_only = sum(g[5] for g in got)
    # over the 90 rows: within 3 % of a per-row oracle, far below mma everywhere
    # (the stem's input gradient: 22-53 ms on mma)
    assert picked <= 1.03 * best, (picked, best)
    assert picked < 0.5 * mma_only


@pytest.mark.parametrize("pass_name", ["backward_input", "backward_weight"])
def test_gradients_on_mma_for_a_wide_1x1_and_float16_input_gradients(pass_name):
    for dtype, precision in (("float16", None), ("float32", "tf32")):
        assert _measured_rule_pick(
            (16, 1024, 14, 14), (256, 1024, 1, 1), pass_name, dtype=dtype,
            precision=precision) == "mma"
        assert _measured_rule_pick(
            (16, 1024, 14, 14), (256, 1024, 1, 1), pass_name, dtype=dtype,
            precision=precision, stride=2) != "mma"
        # 3x3: the float16 input gradient only (>= 1024 input pixels, stride 1)
        want = pass_name == "backward_input" and dtype == "float16"
        assert (_measured_rule_pick(
            (16, 1024, 14, 14), (256, 1024, 3, 3), pass_name, dtype=dtype,
            precision=precision, padding=1) == "mma") == want
    for x_shape in ((1, 1024, 7, 7), (16, 1024, 14, 14)):  # 49 pixels; strided
        stride = 2 if x_shape[0] == 16 else 1
        assert _measured_rule_pick(
            x_shape, (256, 1024, 3, 3), "backward_input", dtype="float16",
            padding=1, stride=stride) != "mma"


def test_precision_highest_and_float64_never_pick_mma():
    for dtype, want in ((np.float32, "nhwc"), (np.float64, "tiled_regblock")):  # C128
        assert gpuconv.choose_algorithm((16, 128, 28, 28), (128, 128, 3, 3),
                                        padding=1, dtype=dtype) == want
    assert gpuconv.choose_algorithm((16, 128, 28, 28), (128, 128, 3, 3), padding=1,
                                    dtype=np.float64, precision="tf32") not in (
                                        "mma", "mma_nhwc")


@pytest.mark.parametrize("dtype,precision", [("float16", None), ("float32", "tf32")])
def test_auto_takes_the_nhwc_pipeline_where_it_applies(dtype, precision):
    """'auto' runs the NHWC pipeline (chosen on the SASS proxy) on every pass of
    the ResNet 3x3 and 1x1 layers, the measured rule elsewhere."""
    def pick(x_shape, w_shape, pass_name, **kw):
        return gpuconv.choose_algorithm(x_shape, w_shape, pass_name, dtype=dtype,
                                        precision=precision, **kw)

    for pass_name in ("forward", "backward_input", "backward_weight"):
        for c, hw, k, r in ((64, 56, 64, 3), (256, 14, 256, 3), (1024, 14, 256, 1),
                            (192, 28, 32, 5)):
            assert pick((16, c, hw, hw), (k, c, r, r), pass_name,
                        padding=r // 2) == "mma_nhwc", (c, hw, k, r)
        # the RGB stem: 3 channels fill no 16-byte copy
        assert pick((16, 3, 224, 224), (64, 3, 7, 7), pass_name, stride=2,
                    padding=3) != "mma_nhwc"
        # 25 output pixels
        assert pick((1, 64, 7, 7), (64, 64, 3, 3), pass_name) != "mma_nhwc"
    # a strided input gradient, 24 channels (not a slab of 32 float16 / 16 TF32
    # for the forward pass): the measured rule
    assert pick((16, 64, 56, 56), (64, 64, 3, 3), "backward_input", padding=1,
                stride=2) == _measured_rule_pick(
        (16, 64, 56, 56), (64, 64, 3, 3), "backward_input", padding=1, stride=2,
        dtype=dtype, precision=precision)
    assert pick((16, 24, 56, 56), (64, 24, 3, 3), "forward", padding=1) != "mma_nhwc"
