"""The conv2d launch planner, without a GPU or a compiler.

Plans are built with placeholder buffers and checked against CUDA's limits and
against the kernels' parameter lists parsed from the sources: 1-D grids (y, z never
above 65535, also for N*C >= 65536), no empty launch, dynamic shared memory within
48 KiB, every scalar an explicitly typed NumPy scalar of the C type the kernel
declares, registered kernel names; plus the host tables (taps, padding maps) and the
``auto`` decisions.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

from gpuconv import _plan_conv as pc
from gpuconv._conv_args import normalize_conv2d
from gpuconv._kernels import CONV_REGBLOCK_TILES, KERNELS, source_dir
from gpuconv._launch import Launch
from gpuconv._padding import PADDING_MODES, fold_matrix, pad_index
from tests._cuda_conv_cases import CASE_IDS, CASES, VARIANTS, problem


class Buf:
    """A stand-in device buffer (the planner never looks inside)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"Buf({self.name})"


def _params(source: str, kernel: str) -> list[tuple[str, str]]:
    """``(kind, name)`` of each parameter of a kernel in its source; kind is
    'ptr', 'int' or 'long long'."""
    text = (source_dir() / source).read_text()
    base = kernel.split("<")[0]
    m = re.search(rf"\b{base}\s*\(", text)
    assert m, f"{base} not found in {source}"
    i, depth = m.end() - 1, 0
    for j in range(i, len(text)):
        depth += {"(": 1, ")": -1}.get(text[j], 0)
        if depth == 0:
            break
    params = [p.strip() for p in text[i + 1:j].split(",")]
    kinds = []
    for p in params:
        name = re.findall(r"\w+", p)[-1]
        if "*" in p:
            kinds.append(("ptr", name))
        elif "long long" in p:
            kinds.append(("long long", name))
        elif re.match(r"(const\s+)?int\s+\w+$", p):
            kinds.append(("int", name))
        else:
            raise AssertionError(f"unexpected parameter {p!r} of {base}")
    return kinds


def check_launch(launch: Launch) -> None:
    assert launch.kernel in KERNELS[launch.source]
    gx, gy, gz = launch.grid
    assert 1 <= gx < 2**31 and gy == 1 and gz == 1
    bx, by, bz = launch.block
    assert 1 <= bx * by * bz <= 1024
    assert 0 <= launch.shared_mem <= pc.SMEM_LIMIT
    kinds = _params(launch.source, launch.kernel)
    assert len(kinds) == len(launch.args), (launch.kernel, launch.args)
    for (kind, _), a in zip(kinds, launch.args, strict=True):
        if kind == "ptr":
            assert isinstance(a, Buf), (launch.kernel, kind, a)
        elif kind == "int":
            assert type(a) is np.int32, (launch.kernel, kind, a)
        else:
            assert type(a) is np.int64, (launch.kernel, kind, a)


def plan(p, pass_name, variant, bias=True):
    taps = Buf("taps")
    if pass_name == "forward":
        return pc.plan_conv2d_forward(
            p, variant, Buf("x"), Buf("w"), Buf("b") if bias else None, Buf("y"), taps
        )
    return pc.plan_conv2d_backward_input(
        p, variant, Buf("gy"), Buf("w"), Buf("gx"), taps
    )


@pytest.mark.parametrize("pass_name", ["forward", "backward_input"])
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_plans_respect_limits_and_signatures(case, pass_name):
    _, xs, ws, kw = case
    for dtype in (np.float32, np.float64):
        p = pc.padded_problem(problem(xs, ws, dtype, kw))
        for variant in VARIANTS:
            launches = plan(p, pass_name, variant)
            # one launch, or one per output phase of a strided input gradient
            # (tiled_regblock)
            regblock = variant == "tiled_regblock"
            phases = pc.sliced_phases(p, pass_name) if regblock else ()
            assert len(launches) == max(1, len(phases))
            for launch in launches:
                check_launch(launch)


def test_no_bias_passes_a_valid_pointer_and_flag_zero():
    p = problem((1, 2, 5, 5), (3, 2, 3, 3), np.float32, {}, bias=False)
    for variant in VARIANTS:
        (launch,) = plan(p, "forward", variant, bias=False)
        check_launch(launch)
        assert launch.args[2] is launch.args[1]  # w stands in, never read
        names = [name for _, name in _params(launch.source, launch.kernel)]
        assert launch.args[names.index("has_bias")] == 0


@pytest.mark.parametrize(
    "x_shape,w_shape,kw",
    [
        ((70000, 3, 5, 6), (4, 3, 3, 3), {"padding": 1}),  # N*C, N*K >= 65536
        ((2, 70000, 4, 4), (70000, 1, 3, 3), {"groups": 70000}),  # depthwise, huge C
        ((1, 3, 65537, 3), (2, 3, 3, 1), {}),  # tall image
    ],
)
def test_grid_limits_for_many_images_and_channels(x_shape, w_shape, kw):
    p = problem(x_shape, w_shape, np.float32, kw)
    for pass_name in ("forward", "backward_input"):
        for variant in VARIANTS:
            (launch,) = plan(p, pass_name, variant)
            check_launch(launch)


def test_more_than_2_31_elements_use_64_bit_totals():
    p = problem((40000, 64, 32, 32), (64, 64, 3, 3), np.float32, {"padding": 1})
    total = p.N * p.K * p.OH * p.OW
    assert total > 2**31
    (launch,) = plan(p, "forward", "naive")
    check_launch(launch)
    assert launch.args[-1] == np.int64(total)
    assert launch.grid[0] == pc.LINEAR_MAX_BLOCKS  # grid-stride loop covers the rest
    (launch,) = plan(p, "forward", "tiled_regblock")
    m = p.N * p.OH * p.OW
    assert np.int64(m) in [a for a in launch.args if type(a) is np.int64]


def test_plane_beyond_int32_is_rejected():
    p = problem((1, 1, 50000, 50000), (1, 1, 1, 1), np.float32, {})
    with pytest.raises(ValueError, match="32-bit"):
        plan(p, "forward", "naive")


def test_tiled_shared_memory_limit():
    p = problem((1, 1, 300, 300), (1, 1, 7, 7), np.float64, {"dilation": 30})
    assert pc.tiled_smem_bytes(p, "forward") > pc.SMEM_LIMIT
    with pytest.raises(ValueError, match="shared memory"):
        plan(p, "forward", "tiled")
    assert pc.choose_algorithm(p, "forward") == "naive"
    q = problem((1, 1, 64, 64), (1, 1, 7, 7), np.float64, {"padding": 3})
    assert pc.tiled_smem_bytes(q, "forward") <= pc.SMEM_LIMIT
    (launch,) = plan(q, "forward", "tiled")
    rows, cols = pc.tiled_smem_rows_cols(q, "forward")
    assert launch.shared_mem == (rows * cols + 49) * 8


def test_non_zero_padding_needs_the_padded_problem():
    p = problem((1, 2, 5, 5), (3, 2, 3, 3), np.float32, {"padding": 1,
                                                         "padding_mode": "reflect"})
    with pytest.raises(ValueError, match="zero padding"):
        plan(p, "forward", "naive")
    q = pc.padded_problem(p)
    assert (q.H, q.W, q.padding, q.OH, q.OW) == (7, 7, (0, 0, 0, 0), p.OH, p.OW)
    check_launch(pc.plan_pad_gather(p, Buf("x"), Buf("xp"), Buf("r"), Buf("c"))[0])
    check_launch(pc.plan_pad_fold(p, Buf("g"), Buf("gx"), *(Buf(str(i)) for i in
                                                             range(4)))[0])


def _layer(n, c, h, k, r, pad=None, stride=1, dtype=np.float32):
    pad = r // 2 if pad is None else pad
    return normalize_conv2d((n, c, h, h), (k, c, r, r), [np.dtype(dtype)],
                            padding=pad, stride=stride)


BENCH_LAYERS = [
    _layer(16, 64, 56, 64, 3), _layer(16, 128, 28, 128, 3),
    _layer(16, 256, 14, 256, 3), _layer(16, 512, 7, 512, 3),
    _layer(16, 64, 56, 256, 1), _layer(16, 1024, 14, 256, 1),
    _layer(16, 3, 224, 64, 7, 3, 2), _layer(16, 192, 28, 32, 5),
    _layer(8, 64, 54, 64, 3),
]


@pytest.mark.parametrize("pass_name", ["forward", "backward_input", "backward_weight"])
def test_auto_picks_regblock_for_the_benchmark_layers(pass_name):
    # also the input gradient of the 3-channel stem (3 GEMM columns, but 3136
    # reduction terms: DGRAD_REGBLOCK_MIN_RED; 10x faster than tiled on the H200)
    # (the layers with C/groups and K/groups multiples of 4: the NHWC GEMMs, all
    # but the stem; for the forward pass and the input gradient at least 128 GEMM
    # columns and stride 1: not the 64-channel layers, the 5x5 192->32 forward, the
    # stem)
    for p in BENCH_LAYERS:
        if pass_name == "backward_weight":
            nhwc = pc.wgrad_nhwc_applies(p)
        else:
            nhwc = pc.fwd_nhwc_preferred(p, pass_name)
        want = "nhwc" if nhwc else "tiled_regblock"
        if pass_name == "backward_weight" and p.C == 3:  # the stem: along the pixels
            want = "unfold"
        assert pc.choose_algorithm(p, pass_name) == want, p
    nhwc_fwd = [pc.fwd_nhwc_preferred(p, pass_name) for p in BENCH_LAYERS]
    if pass_name in ("forward", "backward_input"):  # C128, C256, C512, two 1x1 or
        assert sum(nhwc_fwd) == 5  # the 5x5 192 -> 32 input gradient
    assert sum(pc.wgrad_nhwc_applies(p) for p in BENCH_LAYERS) == len(BENCH_LAYERS) - 1


def test_auto_decisions_for_small_channel_counts():
    dw = normalize_conv2d((4, 32, 40, 40), (32, 1, 3, 3), [np.dtype("f")], groups=32)
    assert pc.choose_algorithm(dw, "forward") == "tiled"
    assert pc.choose_algorithm(dw, "backward_input") == "tiled"
    # few input channels and a short reduction (K/groups*KH*KW < 1024): tiled
    few = normalize_conv2d((2, 3, 32, 32), (64, 3, 3, 3), [np.dtype("f")])
    assert pc.choose_algorithm(few, "backward_input") == "tiled"
    rgb_out = normalize_conv2d((2, 64, 32, 32), (3, 64, 3, 3), [np.dtype("f")])
    assert pc.choose_algorithm(rgb_out, "forward") == "tiled"
    assert pc.choose_algorithm(rgb_out, "backward_input") == "tiled_regblock"
    big_dil = normalize_conv2d((1, 1, 400, 400), (1, 1, 9, 9), [np.dtype("d")],
                               dilation=40)
    assert pc.choose_algorithm(big_dil, "forward") == "naive"
    with pytest.raises(ValueError, match="pass"):
        pc.choose_algorithm(dw, "sideways")
    assert pc.resolve_algorithm(dw, "forward", "naive") == "naive"
    with pytest.raises(ValueError, match="algorithm"):
        pc.resolve_algorithm(dw, "forward", "fast")


@pytest.mark.parametrize("pass_name", ["forward", "backward_input"])
def test_regblock_tile_choice_wastes_little(pass_name):
    for p in BENCH_LAYERS:
        for dtype in (np.float32, np.float64):
            q = pc.padded_problem(p) if dtype == np.float32 else p
            q = dataclasses.replace(q, dtype=np.dtype(dtype),
                                    compute_dtype=np.dtype(dtype))
            tile = pc.regblock_tile(q, pass_name)
            assert tile in CONV_REGBLOCK_TILES[pc.ctype_of(dtype)]
            m, ng, _ = pc.gemm_shape(q, pass_name)
            if ng >= 32:
                tx, ty, tm, tn = tile
                bn = ty * tn
                assert ng / (-(-ng // bn) * bn) >= 0.75, (p, tile)
    # 32 output channels: a tile 32 columns wide.
    p = _layer(16, 192, 28, 32, 5)
    assert pc.regblock_tile(p, "forward")[1] * pc.regblock_tile(p, "forward")[3] == 32


def test_tap_table_matches_the_reduction_index():
    table = pc.tap_table(3, 2, 4, 5, 7)
    assert table.dtype == np.int32 and table.shape == (24, 4)
    assert table.flags.c_contiguous and table.nbytes == 24 * 16
    for r, (ch, dy, dx, tap) in enumerate(table):
        assert (ch, tap) == divmod(r, 8)
        assert (dy, dx) == (tap // 4 * 5, tap % 4 * 7)


def _slice_terms(p, pass_name):
    """{(pixel row, pixel col, channel, kh, kw)} that the slice tables of a plan
    sum, from the tables alone (the kernel's reading of them)."""
    table = pc.slice_table(p, pass_name)
    assert table.dtype == np.int32 and table.flags.c_contiguous
    assert table.shape[1] == 4 and table.nbytes == 16 * len(table)
    packed = pc.sliced_packed(p, pass_name)
    cred = p.Cg if pass_name == "forward" else p.Kg
    KHKW = p.KH * p.KW
    c_stride = KHKW if pass_name == "forward" else p.Cg * KHKW
    hs, ws = (p.H, p.W) if pass_name == "forward" else (p.OH, p.OW)
    bk = pc.REGBLOCK_BK
    terms = set()
    for ph in pc.sliced_phases(p, pass_name):
        rows = table[ph.offset:ph.offset + ph.count * (bk if packed else 1)]
        for chunk, dy, dx, woff in rows.tolist():
            if packed:
                if woff < 0:
                    continue
                chans = [chunk]
                tap = woff - chunk * c_stride
            else:
                chans = [c for c in range(chunk * bk, chunk * bk + bk) if c < cred]
                tap = woff - chunk * bk * c_stride
            kh, kw = divmod(tap, p.KW)
            for oh in range(ph.Ho):
                for ow in range(ph.Wo):
                    ih, iw = oh * ph.ah + ph.bh + dy, ow * ph.aw + ph.bw + dx
                    if 0 <= ih < hs and 0 <= iw < ws:
                        pix = (oh * ph.osh + ph.oph, ow * ph.osw + ph.opw)
                        terms |= {(*pix, c, kh, kw, ih, iw) for c in chans}
    return terms


def test_packed_padding_rows_fall_outside_every_plane():
    """The padding rows of a packed table carry dy = PACKED_PAD_DY (INT32_MIN); the
    kernel adds it to a pixel row in unsigned 32-bit arithmetic, which leaves every
    row the extent checks allow ([-pad_top, 2**31 - 1024)) at least H + 1024 away
    from the plane: the bounds check alone masks the term."""
    p = normalize_conv2d((1, 3, 4, 4), (2, 3, 1, 2), [np.float32], dilation=3)
    table = pc.slice_table(p, "forward")
    assert table[6:].tolist() == [[0, pc.PACKED_PAD_DY, 0, -1]] * 2
    H, pad_top = 1000, 2**31 - 1024 - 1000 - 1  # the largest pad check_extents allows
    for ih0 in (-pad_top, -1, 0, 1, H - 1, 2**31 - 1025):
        assert (ih0 + pc.PACKED_PAD_DY) % 2**32 >= H + 1024


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_slice_tables_sum_exactly_the_convolution_terms(case):
    """Every (output pixel, channel, tap) term of the pass, with its source element,
    appears in the slice tables exactly where the definition puts it: the forward
    window, and for the input gradient the taps of each output phase (stride
    divisibility), none missing and none extra."""
    _, xs, ws, kw = case
    p = pc.padded_problem(problem(xs, ws, np.float32, kw))
    (sh, sw), (dh, dw) = p.stride, p.dilation
    pt, _, pl, _ = p.padding
    fwd, dgrad = set(), set()
    for c in range(min(p.Cg, 9)):  # enough channels for chunks and packing
        for kh in range(p.KH):
            for kw_ in range(p.KW):
                for oh in range(p.OH):
                    for ow in range(p.OW):
                        ih, iw = oh * sh - pt + kh * dh, ow * sw - pl + kw_ * dw
                        if 0 <= ih < p.H and 0 <= iw < p.W:
                            fwd.add((oh, ow, c, kh, kw_, ih, iw))
    for k in range(min(p.Kg, 9)):
        for kh in range(p.KH):
            for kw_ in range(p.KW):
                for h in range(p.H):
                    for w in range(p.W):
                        th, tw = h + pt - kh * dh, w + pl - kw_ * dw
                        if th % sh or tw % sw:
                            continue
                        oh, ow = th // sh, tw // sw
                        if 0 <= oh < p.OH and 0 <= ow < p.OW:
                            dgrad.add((h, w, k, kh, kw_, oh, ow))
    got_fwd = {t for t in _slice_terms(p, "forward") if t[2] < 9}
    got_dgrad = {t for t in _slice_terms(p, "backward_input") if t[2] < 9}
    assert got_fwd == fwd
    assert got_dgrad == dgrad


@pytest.mark.parametrize("mode", PADDING_MODES)
def test_fold_maps_are_the_transpose_of_the_padding(mode):
    rng = np.random.default_rng(0)
    for n, before, after in [(5, 2, 3), (2, 4, 5), (1, 3, 0), (6, 0, 0)]:
        p = normalize_conv2d((1, 1, n, 3), (1, 1, 1, 1), [np.dtype("d")],
                             padding=(before, after, 1, 1), padding_mode=mode)
        rows, cols = pc.pad_maps(p)
        assert rows.dtype == np.int32
        np.testing.assert_array_equal(rows, pad_index(n, before, after, mode))
        row_ptr, row_src, col_ptr, col_src = pc.fold_maps(p)
        g = rng.standard_normal(before + n + after)
        folded = np.array(
            [g[row_src[row_ptr[h]:row_ptr[h + 1]]].sum() for h in range(n)]
        )
        want = fold_matrix(n, before, after, mode, np.float64).T @ g
        np.testing.assert_allclose(folded, want, rtol=1e-14, atol=1e-14)
        for h in range(n):  # increasing padded index: a fixed summation order
            assert np.all(np.diff(row_src[row_ptr[h]:row_ptr[h + 1]]) > 0)
        assert col_ptr[-1] == len(col_src)


def test_docstring_examples_run():
    import doctest

    result = doctest.testmod(pc, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


# --------------------------------------------------------------------------------
# weight and bias gradients (plan_conv2d_backward_weight / plan_conv2d_backward_bias)


def wgrad_plan(p, variant, bias=True, allocs=None, sm_count=pc.DEFAULT_SM_COUNT):
    def alloc(shape, dtype):
        if allocs is not None:
            allocs.append((tuple(shape), np.dtype(dtype)))
        return Buf(f"ws{tuple(shape)}")

    return pc.plan_conv2d_backward_weight(
        p, variant, Buf("gy"), Buf("x"), Buf("gw"), Buf("gb") if bias else None,
        alloc=alloc, sm_count=sm_count,
    )


def _check_wgrad_plan(p, launches, allocs, bias):
    for launch in launches:
        check_launch(launch)
    wcount = p.K * p.Cg * p.KH * p.KW
    if len(launches) == 1:
        assert allocs == []  # one split: straight into gw/gb, no workspace
        return 1
    main, red = launches
    assert red.kernel.startswith("conv2d_backward_weight_reduce<")
    splits = int(red.args[4])
    assert splits > 1 and red.args[5] == wcount
    assert red.args[6] == wcount + (p.K if bias else 0)
    want = [((splits, wcount), p.compute_dtype)]
    if bias:
        want.append(((splits, p.K), p.compute_dtype))
    assert allocs == want
    assert red.args[2].name == "gw" and red.args[3].name == ("gb" if bias else "gw")
    return splits


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_wgrad_plans_respect_limits_and_signatures(case):
    _, xs, ws, kw = case
    for dtype in (np.float32, np.float64):
        p = pc.padded_problem(problem(xs, ws, dtype, kw))
        for variant in VARIANTS:
            for bias in (True, False):
                allocs = []
                launches = wgrad_plan(p, variant, bias, allocs)
                assert 1 <= len(launches) <= 2
                _check_wgrad_plan(p, launches, allocs, bias)
                names = [n for _, n in _params(launches[0].source, launches[0].kernel)]
                if variant != "naive":
                    assert launches[0].args[names.index("has_bias")] == int(bias)


def test_wgrad_split_k_fills_two_waves_on_the_benchmark_layers():
    """The regblock weight gradient of every benchmark layer runs at least two full
    waves of resident blocks over 132 SMs, with a workspace and a reduce pass."""
    from gpuconv._kernels import CONV_WGRAD_REGBLOCK_TILES

    for p in BENCH_LAYERS:
        allocs = []
        launches = wgrad_plan(p, "tiled_regblock", False, allocs)
        splits = _check_wgrad_plan(p, launches, allocs, False)
        tile = tuple(int(t) for t in launches[0].kernel[:-1].split(", ")[1:])
        assert tile in CONV_WGRAD_REGBLOCK_TILES["float"]
        resident = pc.regblock_blocks_per_sm(tile, np.float32)
        blocks = launches[0].grid[0]
        assert blocks >= 2 * pc.DEFAULT_SM_COUNT * resident, (p, tile, blocks)
        m, ng, red = pc.gemm_shape(p, "backward_weight")
        tx, ty, tm, tn = tile
        assert blocks == -(-m // (tx * tm)) * -(-ng // (ty * tn)) * splits
        assert red / splits >= pc.WGRAD_MIN_CHUNK  # splits are long enough
    # few output channels: a wide tile rather than a half-empty square one
    assert pc.wgrad_regblock_tile(_layer(16, 192, 28, 32, 5)) == (8, 32, 4, 4)


def test_wgrad_tiled_and_bias_plans_split_long_reductions():
    dw = normalize_conv2d((16, 64, 56, 56), (64, 1, 3, 3), [np.dtype("f")],
                          groups=64, padding=1)
    assert pc.choose_algorithm(dw, "backward_weight") == "tiled"
    allocs = []
    launches = wgrad_plan(dw, "tiled", True, allocs)
    splits = _check_wgrad_plan(dw, launches, allocs, True)
    assert launches[0].grid[0] == 64 * splits
    assert launches[0].grid[0] >= 2 * pc.DEFAULT_SM_COUNT * pc.WGRAD_TILED_BLOCKS_PER_SM
    assert launches[0].shared_mem == pc.wgrad_tiled_smem_bytes(dw)
    allocs = []
    bias = pc.plan_conv2d_backward_bias(
        dw, Buf("gy"), Buf("gb"),
        alloc=lambda s, d: allocs.append((s, np.dtype(d))) or Buf("ws"))
    for launch in bias:
        check_launch(launch)
    assert len(bias) == 2 and bias[0].block == (256, 1, 1)
    splits = bias[0].grid[0] // 64
    assert allocs == [((splits, 64), np.dtype("f"))]
    assert bias[0].grid[0] == 64 * splits
    assert splits == 16 * 56 * 56 // pc.BIAS_MIN_CHUNK  # capped: >= 2048 terms each
    tiny = normalize_conv2d((1, 2, 5, 5), (3, 2, 3, 3), [np.dtype("d")])
    (one,) = pc.plan_conv2d_backward_bias(tiny, Buf("gy"), Buf("gb"), alloc=None)
    check_launch(one)
    assert one.args[1].name == "gb" and one.grid == (3, 1, 1)


def test_wgrad_split_count_rules():
    assert pc.split_count(10, 7, 264, 16) == 1  # too short to split
    assert pc.split_count(10**9, 10**6, 264, 16) == 1  # enough blocks already
    for work, base, slots in [(6272, 5, 264), (98, 288, 264), (10**7, 1, 1056),
                              (200, 3, 528)]:
        s = pc.split_count(work, base, slots, 16)
        assert 1 <= s <= min(pc.MAX_SPLITS, max(1, work // 16))
        if s < min(pc.MAX_SPLITS, work // 16):  # not capped: two full waves
            assert base * s >= pc.WGRAD_TARGET_WAVES * slots


@pytest.mark.parametrize("x_shape,w_shape,kw", [
    ((70000, 3, 5, 6), (4, 3, 3, 3), {"padding": 1}),  # N*C, N*K >= 65536
    ((2, 70000, 4, 4), (70000, 1, 3, 3), {"groups": 70000}),  # depthwise, huge C
    ((1, 3, 65537, 3), (2, 3, 3, 1), {}),  # tall image
])
def test_wgrad_grid_limits_for_many_images_and_channels(x_shape, w_shape, kw):
    p = problem(x_shape, w_shape, np.float32, kw)
    for variant in VARIANTS:
        allocs = []
        _check_wgrad_plan(p, wgrad_plan(p, variant, True, allocs), allocs, True)
    for launch in pc.plan_conv2d_backward_bias(p, Buf("gy"), Buf("gb"),
                                               alloc=lambda s, d: Buf("ws")):
        check_launch(launch)


def test_wgrad_auto_decisions():
    for p in BENCH_LAYERS:
        assert pc.choose_algorithm(p, "backward_weight") == (
            "nhwc" if p.C % 4 == 0 else "unfold")  # the stem: along the pixels
    # C/groups or K/groups not a multiple of 4, float64: the SIMT GEMM
    for xs, ws in (((2, 6, 16, 16), (32, 6, 3, 3)), ((2, 32, 16, 16), (34, 32, 3, 3))):
        p = normalize_conv2d(xs, ws, [np.dtype("f")], padding=1)
        assert not pc.wgrad_nhwc_applies(p)
        assert pc.choose_algorithm(p, "backward_weight") == "tiled_regblock"
    # under WGRAD_NHWC_MIN_MACS (two pack launches not paid back): the SIMT GEMM
    small = normalize_conv2d((1, 16, 32, 32), (16, 16, 3, 3), [np.dtype("f")],
                             padding=1)
    assert pc.wgrad_nhwc_applies(small)
    assert 16 * 144 * 1024 < pc.WGRAD_NHWC_MIN_MACS
    assert pc.choose_algorithm(small, "backward_weight") == "tiled_regblock"
    assert pc.resolve_algorithm(small, "backward_weight", "nhwc") == "nhwc"
    p64 = normalize_conv2d((2, 32, 16, 16), (32, 32, 3, 3), [np.dtype("d")])
    assert pc.choose_algorithm(p64, "backward_weight") == "tiled_regblock"
    # tap offsets beyond an int (with room): the SIMT GEMM
    wide = normalize_conv2d((1, 512, 2, 2**20), (32, 512, 3, 3), [np.dtype("f")],
                            padding=1)
    assert not pc.wgrad_nhwc_applies(wide)
    assert pc.choose_algorithm(wide, "backward_weight") == "tiled_regblock"
    assert pc.resolve_algorithm(wide, "backward_weight", "nhwc") == "tiled_regblock"
    assert pc.resolve_algorithm(p64, "forward", "nhwc") == "tiled_regblock"
    # 'unfold' (the GEMM along the pixels): the few-channel layers above the size
    # floor with OW a multiple of 4 and int offsets; forced, wherever it applies
    stem = normalize_conv2d((16, 3, 224, 224), (64, 3, 7, 7), [np.dtype("f")],
                            stride=2, padding=3)
    assert pc.choose_algorithm(stem, "backward_weight") == "unfold"
    assert pc.resolve_algorithm(small, "backward_weight", "unfold") == "unfold"
    assert pc.resolve_algorithm(p64, "backward_weight", "unfold") == "tiled_regblock"
    assert pc.resolve_algorithm(stem, "forward", "unfold") == pc.choose_algorithm(
        stem, "forward")
    assert not pc.wgrad_unfold_applies(wide)  # the unfolded x past 2**31 elements
    odd = normalize_conv2d((16, 3, 222, 222), (64, 3, 7, 7), [np.dtype("f")],
                           stride=2, padding=2)  # OW = 110
    assert pc.choose_algorithm(odd, "backward_weight") == "tiled_regblock"
    # the unfolded x more than WGRAD_UNFOLD_MAX_GROWTH times x: a 15-wide kernel
    # at stride 1 (15x)
    grow = normalize_conv2d((8, 3, 128, 128), (64, 3, 15, 15), [np.dtype("f")],
                            padding=7)
    assert pc.wgrad_unfold_applies(grow) and not pc.wgrad_unfold_preferred(grow)
    # more than WGRAD_UNFOLD_MAX_BYTES of unfolded x (N = 512: 1.1 GiB): tiled_regblock
    big = normalize_conv2d((512, 3, 224, 224), (64, 3, 7, 7), [np.dtype("f")],
                           stride=2, padding=3)
    assert 4 * pc.wgrad_unfold_elements(big) > pc.WGRAD_UNFOLD_MAX_BYTES
    assert pc.choose_algorithm(big, "backward_weight") == "tiled_regblock"
    assert pc.choose_algorithm(
        normalize_conv2d((256, 3, 224, 224), (64, 3, 7, 7), [np.dtype("f")],
                         stride=2, padding=3), "backward_weight") == "unfold"
    rgb_out = normalize_conv2d((2, 64, 32, 32), (3, 64, 3, 3), [np.dtype("f")])
    assert pc.choose_algorithm(rgb_out, "backward_weight") == "tiled"
    big_dil = normalize_conv2d((1, 1, 400, 400), (1, 1, 9, 9), [np.dtype("d")],
                               dilation=40)
    assert pc.wgrad_tiled_smem_bytes(big_dil) > pc.SMEM_LIMIT
    assert pc.choose_algorithm(big_dil, "backward_weight") == "naive"
    with pytest.raises(ValueError, match="shared memory"):
        wgrad_plan(big_dil, "tiled")
    many_taps = normalize_conv2d((1, 1, 40, 40), (2, 1, 16, 17), [np.dtype("f")])
    assert pc.wgrad_tiled_taps(many_taps) == (255, 2)
    launch = wgrad_plan(many_taps, "tiled", False)[0]
    names = [n for _, n in _params(launch.source, launch.kernel)]
    assert launch.args[names.index("tap_blocks")] == 2
    with pytest.raises(ValueError, match="zero padding"):
        wgrad_plan(problem((1, 2, 5, 5), (3, 2, 3, 3), np.float32,
                           {"padding": 1, "padding_mode": "reflect"}), "naive")


#: 3x3 stride-1 layers at the Winograd workspace cap (1 GiB per transformed
#: tensor): the ResNet 64-channel layer at N=256 (822 MB), depthwise 512 channels at
#: N=32 (822 MB), float64 at N=128 (822 MB); one step larger each falls back.
WINOGRAD_AT_CAP = [
    ((256, 64, 56, 56), (64, 64, 3, 3), np.float32, {"padding": 1}, 512),
    ((32, 512, 56, 56), (512, 1, 3, 3), np.float32, {"padding": 1, "groups": 512}, 64),
    ((128, 64, 56, 56), (64, 64, 3, 3), np.float64, {"padding": 1}, 256),
]


@pytest.mark.parametrize("xs, ws, dtype, kw, n_over", WINOGRAD_AT_CAP)
def test_winograd_plans_at_the_workspace_cap(xs, ws, dtype, kw, n_over):
    """Every launch of a Winograd plan at the workspace cap fits the kernels' typed
    arguments and CUDA's grid (the transforms' flat indices are 64-bit, the 16 GEMMs'
    planes P = N*ceil(OH/2)*ceil(OW/2) within the 32-bit checks of
    _regblock_launches), for every pass; past the cap 'winograd' runs 'auto'."""
    p = problem(xs, ws, dtype, kw)
    for pass_name in pc.PASSES:
        assert pc.winograd_applies(p, pass_name), pass_name
        launches = pc.plan_conv2d_winograd(
            p, pass_name, Buf("src"), Buf("w"), Buf("b"), Buf("dst"), Buf("slices"),
            alloc=lambda shape, dt: Buf(f"ws{shape}"))
        for launch in launches:
            check_launch(launch)
        names = [ln.kernel.split("<")[0] for ln in launches]
        assert names[-1] in ("conv2d_winograd_output", "conv2d_winograd_wgrad_output")
        over = problem((n_over, *xs[1:]), ws, dtype, kw)
        assert not pc.winograd_applies(over, pass_name)
        assert pc.resolve_algorithm(over, pass_name, "winograd") == \
            pc.choose_algorithm(over, pass_name)


def test_dgrad_col2im_plan_for_few_input_channels(monkeypatch):
    """The stem's input gradient (3 input channels) plans the column GEMM (the
    forward kernel on gy, w read transposed) and the col2im gather when a workspace
    allocator is given; the phases otherwise, and beyond the workspace cap."""
    p = problem((16, 3, 224, 224), (64, 3, 7, 7), np.float32,
                {"stride": 2, "padding": 3})
    assert pc.dgrad_col2im(p)
    made = []

    def alloc(shape, dtype):
        made.append((tuple(shape), np.dtype(dtype)))
        return Buf("workspace")

    launches = pc.plan_conv2d_backward_input(p, "tiled_regblock", Buf("gy"), Buf("w"),
                                             Buf("gx"), Buf("slices"), alloc=alloc)
    assert made == [((16, 3 * 49, 112, 112), np.dtype(np.float32))]
    assert [ln.kernel.split("<")[0] for ln in launches] == [
        "conv2d_forward_tiled_regblock", "conv2d_backward_input_col2im"]
    for launch in launches:
        check_launch(launch)
    gemm = launches[0].args
    # Csrc .. Wo, then (ah, bh, aw, bw, osh, oph, osw, opw), col_stride, c_stride, KHKW
    assert [int(v) for v in gemm[5:15]] == [64, 112, 112, 64, 147, 112, 112, 147, 112,
                                            112]
    assert [int(v) for v in gemm[23:26]] == [1, 147, 1]
    table = pc.col2im_slice_table(p)
    assert table.tolist() == [[c, 0, 0, c * 8 * 147] for c in range(8)]
    # no allocator: the phases (4 output phases of stride 2)
    phases = pc.plan_conv2d_backward_input(p, "tiled_regblock", Buf("gy"), Buf("w"),
                                           Buf("gx"), Buf("slices"))
    assert len(phases) == 4
    assert all("backward_input_tiled_regblock" in ln.kernel for ln in phases)
    # N = 64: 472 MB of columns, over the cap
    big = problem((64, 3, 224, 224), (64, 3, 7, 7), np.float32,
                  {"stride": 2, "padding": 3})
    assert not pc.dgrad_col2im(big)
    monkeypatch.setattr(pc, "COL2IM_MAX_BYTES", 1 << 40)
    assert pc.dgrad_col2im(big)
    # 16 input channels or more, or fewer than 8 output channels: the phases
    for xs, ws in (((2, 16, 8, 8), (32, 16, 3, 3)), ((2, 3, 8, 8), (7, 3, 3, 3))):
        assert not pc.dgrad_col2im(problem(xs, ws, np.float32, {"padding": 1}))
