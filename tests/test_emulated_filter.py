"""The CUDA filter kernels (cuda/filter2d.cu) executed by the CPU emulation harness.

Every variant (naive, tiled: compile-time and runtime kernel sizes, RY = 4 and 1)
and every dtype runs through ``gpuconv._emulate.EmulatedDevice`` on the launches
that ``gpuconv._plan_filter`` plans, against ``tests._filter_cases.ref_correlate``
(the FilterProblem definition evaluated in float64/complex128 or exact wrapping
integer arithmetic), which is itself checked against SciPy here. Shapes are small
and awkward: sizes at a tile +-1 (forced small blocks), even and odd kernels, 1x1,
kernels larger than the image with wrap/symm, stacks with Bk = 1 and Bk = B, every
mode, boundary and fill value, integer wrap-around, NaN/inf. Most launches use the
fast in-process build; a subset runs under ASan/UBSan (runner subprocess) and one
with the threads of a block scheduled in reverse order.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal as ss

from gpuconv import _gpu_filter, _plan_cache, _plan_filter
from gpuconv._plan_filter import choose_algorithm, plan_filter, tiled_config
from tests._filter_cases import (
    ALL_DTYPES,
    BOUNDARIES,
    FLOAT_DTYPES,
    MODES,
    check_fft_fill_value,
    op_kernel,
    problem,
    random_values,
    ref_correlate,
    scipy_problem,
)
from tests._tol import assert_close

pytestmark = pytest.mark.emulated

VARIANTS = ("naive", "tiled")


@pytest.fixture(autouse=True)
def _poisoned_outputs(monkeypatch):
    """Outputs start as NaN / 0x5A bytes: an element no thread writes fails."""
    monkeypatch.setattr(_gpu_filter, "POISON_OUTPUTS", True)


@pytest.fixture(scope="module")
def dev():
    from gpuconv._emulate import EmulatedDevice, emulation_unavailable_reason

    reason = emulation_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    d = EmulatedDevice(sanitize=False)
    d.prepare(["filter2d.cu"])
    return d


@pytest.fixture(scope="module")
def sdev():
    from gpuconv._emulate import EmulatedDevice, emulation_unavailable_reason

    reason = emulation_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    d = EmulatedDevice(sanitize=True)
    d.prepare(["filter2d.cu"])
    return d


def run(dev, x, k, fp, method, **kw):
    """The op on the emulated device; inputs must come back unmodified."""
    x0, k0 = x.copy(), k.copy()
    out = _gpu_filter.correlate2d(x, k, fp, method, device=dev, **kw)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(k, k0)
    assert out.shape == (fp.B, fp.OH, fp.OW) and out.dtype == fp.dtype
    return out


def check(out, x, k, fp):
    ref = ref_correlate(x, k, fp)
    if np.dtype(fp.dtype).kind in "iu":
        np.testing.assert_array_equal(out, ref)
    else:
        assert_close(out, ref, dtype=fp.dtype, terms=fp.KH * fp.KW)


# ---------------------------------------------------------------------------------
# the reference itself
# ---------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float64", "complex128", "int16", "uint8"])
@pytest.mark.parametrize("correlate", [True, False])
def test_reference_matches_scipy(rng, dtype, correlate):
    f = ss.correlate2d if correlate else ss.convolve2d
    for h, w, kh, kw in [(5, 7, 2, 3), (6, 6, 4, 4), (7, 5, 3, 3), (3, 4, 5, 7)]:
        for mode in MODES:
            if mode == "valid" and (kh > h or kw > w):
                continue
            for boundary in BOUNDARIES:
                x = random_values(rng, (h, w), dtype, small_int=True)
                ker = random_values(rng, (kh, kw), dtype, small_int=True)
                fill = 3 if boundary == "fill" else 0
                fp = scipy_problem(h, w, kh, kw, mode, boundary, fill, dtype,
                                   correlate=correlate)  # fmt: skip
                got = ref_correlate(x[None], op_kernel(ker, correlate)[None], fp)[0]
                np.testing.assert_array_equal(got, f(x, ker, mode, boundary, fill))


# ---------------------------------------------------------------------------------
# modes, boundaries, fill values, kernel shapes (exact: integer-valued float64)
# ---------------------------------------------------------------------------------
KSHAPES = [(1, 1), (2, 3), (3, 3), (4, 4), (5, 5), (7, 7), (9, 9), (3, 8), (6, 1)]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize(
    "boundary,fill", [("fill", 0), ("fill", -3), ("wrap", 0), ("symm", 0)]
)
@pytest.mark.parametrize("mode", MODES)
def test_modes_boundaries_kernel_shapes(dev, rng, variant, boundary, fill, mode):
    h, w = 19, 29
    x = random_values(rng, (1, h, w), "float64", small_int=True)
    for kh, kw in KSHAPES:
        k = random_values(rng, (1, kh, kw), "float64", small_int=True)
        for correlate in (True, False):
            fp = scipy_problem(h, w, kh, kw, mode, boundary, fill, "float64",
                               correlate=correlate)  # fmt: skip
            out = run(dev, x, k, fp, variant)
            np.testing.assert_array_equal(out, ref_correlate(x, k, fp))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_tile_edges(dev, rng, dtype, boundary):
    """Forced 2x2 blocks make (2*RY) x (2*RX) output tiles (RY = 2 for the
    compile-time 3x3, 4 for the runtime-size path); images of a tile -1, +0, +1 in
    each direction, compile-time and runtime kernel sizes."""
    rx = _plan_filter.rx(np.dtype(dtype).itemsize)
    tw = 2 * rx
    for kh, kw in [(3, 3), (4, 5), (1, 1)]:
        probe = scipy_problem(64, 64, kh, kw, "same", boundary, 2, dtype, B=2)
        th = 2 * tiled_config(probe, block=(2, 2)).ry
        sizes = [
            (th - 1 + 16, tw - 1),
            (th + 16, tw),
            (th + 17, tw + 1),
            (2 * th + 16, 2 * tw + 1),
        ]
        k = random_values(rng, (1, kh, kw), dtype, small_int=True)
        for h, w in sizes:
            x = random_values(rng, (2, h, w), dtype, small_int=True)
            fp = scipy_problem(h, w, kh, kw, "same", boundary, 2, dtype, B=2)
            out = run(dev, x, k, fp, "tiled", block=(2, 2))
            np.testing.assert_array_equal(out, ref_correlate(x, k, fp))
            # the forced tile is what ran
            assert dev.launches[-1][3] == (2, 2, 1)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", ["float64", "int16"])
def test_kernel_larger_than_image(dev, rng, variant, dtype):
    """wrap and symm at distances of several image lengths (scipy#8684)."""
    h, w = 3, 4
    x = random_values(rng, (1, h, w), dtype, small_int=True)
    for kh, kw in [(7, 9), (8, 5), (2, 11)]:
        k = random_values(rng, (1, kh, kw), dtype, small_int=True)
        for boundary in BOUNDARIES:
            for mode in ("full", "same"):
                fp = scipy_problem(h, w, kh, kw, mode, boundary, 5, dtype)
                out = run(dev, x, k, fp, variant)
                np.testing.assert_array_equal(out, ref_correlate(x, k, fp))


# ---------------------------------------------------------------------------------
# dtypes, stacks, integer wrap-around, NaN/inf
# ---------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_dtypes_and_stacks(dev, rng, variant, dtype):
    cases = [
        # (B, Bk, H, W, KH, KW, mode, boundary)
        (3, 1, 17, 21, 3, 3, "same", "symm"),
        (3, 3, 9, 14, 4, 2, "full", "wrap"),
        (2, 2, 18, 10, 5, 5, "valid", "fill"),
    ]
    for B, Bk, h, w, kh, kw, mode, boundary in cases:
        x = random_values(rng, (B, h, w), dtype)
        k = random_values(rng, (Bk, kh, kw), dtype)
        fill = random_values(rng, (), dtype)[()]
        fp = scipy_problem(h, w, kh, kw, mode, boundary, fill, dtype, B=B, Bk=Bk)
        check(run(dev, x, k, fp, variant), x, k, fp)


@pytest.mark.parametrize("variant", VARIANTS)
def test_integer_wraparound_by_hand(dev, variant):
    """Hand-computed wrapped sums (independent of the reference)."""
    cases = [
        # dtype, image value, kernel value, expected 3x3 'valid' value
        ("uint8", 200, 3, (9 * 600) % 256),  # 24
        ("int8", -100, 3, 116),  # -2700 = 116 - 11*256
        ("uint16", 65535, 65535, 9),  # 9 * (2^16-1)^2 = 9 mod 2^16
        ("int32", 2**30, 4, 0),  # 9 * 2^32 = 0 mod 2^32
        ("int64", 2**62, 4, 0),
        ("uint64", 2**63 + 1, 2, 18),  # 9 * (2^64 + 2) = 18 mod 2^64
    ]
    for dtype, xv, kv, expected in cases:
        x = np.full((1, 5, 6), xv, dtype=dtype)
        k = np.full((1, 3, 3), kv, dtype=dtype)
        fp = scipy_problem(5, 6, 3, 3, "valid", "fill", 0, dtype)
        out = run(dev, x, k, fp, variant)
        assert out.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(out, np.full((1, 3, 4), expected, dtype=dtype))


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", ["float32", "float64", "complex64"])
def test_nan_inf(dev, rng, variant, dtype):
    h, w = 18, 13
    x = random_values(rng, (1, h, w), dtype)
    x[0, 0, 0] = np.nan  # corner
    x[0, 0, 6] = np.inf  # border
    x[0, 9, 7] = -np.inf  # interior
    x[0, 12, 3] = np.nan
    k = random_values(rng, (1, 3, 4), dtype)
    k[0, 1, 2] = 0  # 0 * inf = nan must appear
    for boundary in BOUNDARIES:
        for mode in MODES:
            fp = scipy_problem(h, w, 3, 4, mode, boundary, 1.5, dtype)
            out = run(dev, x, k, fp, variant)
            ref = ref_correlate(x, k, fp)
            np.testing.assert_array_equal(np.isnan(out), np.isnan(ref))
            check(out, x, k, fp)
    # an infinite tap and a NaN fill value
    k2 = k.copy()
    k2[0, 2, 0] = np.inf
    fp = scipy_problem(h, w, 3, 4, "full", "fill", np.nan, dtype)
    out = run(dev, x, k2, fp, variant)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(ref_correlate(x, k2, fp)))
    check(out, x, k2, fp)


@pytest.mark.parametrize("dtype", ["float32", "float64", "complex64", "complex128"])
def test_naive_and_tiled_bit_identical(dev, rng, dtype):
    for B, Bk, h, w, kh, kw, boundary in [
        (2, 1, 21, 35, 3, 3, "symm"),
        (2, 2, 20, 33, 5, 5, "wrap"),
        (1, 1, 17, 40, 7, 7, "fill"),
        (1, 1, 16, 24, 9, 9, "symm"),
        (3, 3, 25, 19, 2, 6, "fill"),
    ]:
        x = random_values(rng, (B, h, w), dtype, small_int=True)
        k = random_values(rng, (Bk, kh, kw), dtype, small_int=True)
        fp = scipy_problem(h, w, kh, kw, "same", boundary, 1, dtype, B=B, Bk=Bk)
        a = run(dev, x, k, fp, "naive")
        b = run(dev, x, k, fp, "tiled")
        assert a.tobytes() == b.tobytes()
        np.testing.assert_array_equal(a, ref_correlate(x, k, fp))


def assert_tiled_matches_naive(a, b, x, k, fp, nan_case=False):
    """A tiled result ``b`` equals naive's ``a`` (bit for bit unless the case holds
    NaN, whose payloads may differ), with NaN where the reference has it, and
    passes the reference check."""
    np.testing.assert_array_equal(a, b)
    if not nan_case:
        assert a.tobytes() == b.tobytes()
    ref = ref_correlate(x, k, fp)
    np.testing.assert_array_equal(np.isnan(b), np.isnan(ref))
    check(b, x, k, fp)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("ks", _plan_filter.SPECIALISED_SIZES)
def test_compile_time_instances_rows_streamed(dev, rng, monkeypatch, dtype, ks):
    """Every registered RY of the compile-time ks x ks instance (the planned one and
    the ``RY_ALTERNATIVES`` the benchmark times) is bit-identical to naive on
    standard-normal values (the summation order matters there: the rows-streamed
    tap loop must keep kernel rows ascending, then columns), with forced 2x2
    blocks: images of a tile -1 / +1 in each direction, smaller than a tile (with
    ``SHORT_OH`` lowered, as the planner sends short outputs elsewhere), with
    interior tiles (cp.async staging) on both row alignments, every boundary; NaN
    and inf through an interior tile."""
    dt = np.dtype(dtype)
    tw = 2 * _plan_filter.rx(dt.itemsize)
    planned = _plan_filter.RY_SPECIALISED[ks]
    # (outputs under SHORT_OH rows go to the RY = 1 instance: not here)
    monkeypatch.setattr(_plan_filter, "SHORT_OH", 1)
    for ry in (planned, *_plan_filter.RY_ALTERNATIVES.get(ks, ())):
        monkeypatch.setattr(
            _plan_filter, "RY_SPECIALISED", {**_plan_filter.RY_SPECIALISED, ks: ry}
        )
        _plan_cache.clear()
        th = 2 * ry
        cases = [
            (th - 1 + ks, tw + 1, "fill"),
            (th + 1 + ks, tw - 1, "wrap"),
            (3, 5, "symm"),  # smaller than a tile and than the kernel
            (3 * th + ks, 4 * tw + ks, "symm"),  # interior tiles
            (3 * th + ks + 1, 4 * tw + ks + 1, "wrap"),
        ]
        for i, (h, w, boundary) in enumerate(cases):
            x = random_values(rng, (2, h, w), dtype)
            if i == 3:
                x[0, h // 2, w // 2] = np.nan
                x[1, h // 2, w // 2 + 1] = np.inf
            k = random_values(rng, (1, ks, ks), dtype)
            fp = scipy_problem(h, w, ks, ks, "same", boundary, 0.5, dtype, B=2)
            a = run(dev, x, k, fp, "naive")
            b = run(dev, x, k, fp, "tiled", block=(2, 2))
            assert dev.launches[-1][1] == _plan_filter.tiled_name(dt, ks, ks, ry)
            assert_tiled_matches_naive(a, b, x, k, fp, nan_case=i == 3)


def test_ry_registry_and_override():
    """The planned RY and the alternatives of each compile-time size are registered
    (no duplicates); ``ry_override`` reaches exactly those, never the runtime-size
    path or an unregistered RY."""
    names = _plan_filter.kernel_names()
    assert len(names) == len(set(names))
    for dt in _plan_filter.SPECIALISED_DTYPES:
        for ks in _plan_filter.SPECIALISED_SIZES:
            fp = scipy_problem(64, 64, ks, ks, "same", "fill", 0, dt)
            planned = _plan_filter.RY_SPECIALISED[ks]
            assert tiled_config(fp).ry == planned
            for ry in (planned, *_plan_filter.RY_ALTERNATIVES.get(ks, ())):
                cfg = tiled_config(fp, ry_override=ry)
                assert cfg.ry == ry and cfg.kernel in names
            assert tiled_config(fp, ry_override=3) is None
    fp = scipy_problem(64, 64, 4, 4, "same", "fill", 0, "float32")  # runtime size
    assert tiled_config(fp, ry_override=2) is None
    assert tiled_config(fp, ry_override=None).ry == _plan_filter.RY_IMAGE


def _few_resident_blocks(monkeypatch, dt, ks, blocks, block=(2, 2)):
    """Size the pipelined grid to ``blocks`` blocks (one SM with room for that many
    of this instance's blocks), so that every block walks many tiles."""
    ry = _plan_filter.RY_SPECIALISED[ks]
    smem = _plan_filter.pipelined_smem_bytes(dt.itemsize, block, ry, ks, ks)
    assert blocks <= _plan_filter.tile_min_blocks(dt.itemsize, ks, ry)
    monkeypatch.setattr(_plan_filter, "DEFAULT_SM_COUNT", 1)
    monkeypatch.setattr(_plan_filter, "DEFAULT_SMEM_PER_SM",
                        blocks * (smem + _plan_filter.SMEM_RESERVED_PER_BLOCK))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("ks", [3, 5])
def test_pipelined_instances(dev, rng, monkeypatch, dtype, ks):
    """``filter2d_tiled_pipelined`` (persistent grid, two shared buffers, the next
    tile's cp.async copies in flight over this tile's taps) is bit-identical to
    naive on standard-normal values, forced 2x2 blocks and a grid of 3 blocks: images
    of a tile -1 / +1, smaller than a tile (``SHORT_OH`` lowered), interior tiles on
    both row alignments (16-byte and element copies), every boundary, a stack; each
    block walks up to ~27 tiles (the double buffer wraps many times) and the block
    count divides several of the tile counts not; NaN and inf through an interior tile.
    The copies land at the wait (the emulator's deferred cp.async)."""
    dt = np.dtype(dtype)
    assert (dt.name, ks) in _plan_filter.PIPELINED
    monkeypatch.setattr(_plan_filter, "SHORT_OH", 1)
    _few_resident_blocks(monkeypatch, dt, ks, 3)
    _plan_cache.clear()
    ry = _plan_filter.RY_SPECIALISED[ks]
    tw, th = 2 * _plan_filter.rx(dt.itemsize), 2 * ry
    cases = [
        (th - 1 + ks, tw + 1, "fill", 0),
        (th + 1 + ks, tw - 1, "wrap", 0),
        (3, 5, "symm", 0),  # smaller than a tile and than the kernel
        (5 * th + ks, 4 * tw + ks, "symm", 0),  # interior tiles
        (5 * th + ks + 1, 4 * tw + ks + 1, "wrap", 0),
        (6 * th, 5 * tw, "fill", 1),  # 'valid': tiles start on a vector
    ]
    uneven = wraps = 0
    for i, (h, w, boundary, valid) in enumerate(cases):
        x = random_values(rng, (2, h, w), dtype)
        if i == 3:
            x[0, h // 2, w // 2] = np.nan
            x[1, h // 2, w // 2 + 1] = np.inf
        k = random_values(rng, (1, ks, ks), dtype)
        mode = "valid" if valid else "same"
        fp = scipy_problem(h, w, ks, ks, mode, boundary, 0.5, dtype, B=2)
        a = run(dev, x, k, fp, "naive")
        b = run(dev, x, k, fp, "tiled", block=(2, 2), pipelined=True)
        _, name, grid, blk, *_ = dev.launches[-1]
        assert name == _plan_filter.pipelined_name(dt, ks, ks, ry)
        tiles = 2 * -(-fp.OH // th) * -(-fp.OW // tw)
        assert grid == (min(3, tiles), 1, 1) and tuple(blk[:2]) == (2, 2)
        uneven += tiles > 3 and tiles % 3 != 0
        wraps = max(wraps, tiles // 3)
        assert_tiled_matches_naive(a, b, x, k, fp, nan_case=i == 3)
    assert uneven >= 2 and wraps >= 10


def test_pipelined_planned_block_and_registry(dev, rng, monkeypatch):
    """The pipelined variant with the planner's own block (several warps, 16-byte
    copies of 'valid' tiles and element copies of 'same' ones, a misaligned input)
    equals tiled bit for bit; it is registered for exactly ``PIPELINED``, never
    planned without ``pipelined=True``, and refused elsewhere."""
    names = _plan_filter.kernel_names()
    pipe = [n for n in names if n.startswith("filter2d_tiled_pipelined<")]
    assert len(pipe) == len(_plan_filter.PIPELINED)
    for dt, ks in _plan_filter.PIPELINED:
        ry = _plan_filter.RY_SPECIALISED[ks]
        assert _plan_filter.pipelined_name(dt, ks, ks, ry) in pipe
        fp = scipy_problem(4096, 4096, ks, ks, "same", "fill", 0, dt)
        cfg = tiled_config(fp)
        smem = _plan_filter.pipelined_smem_bytes(
            np.dtype(dt).itemsize, cfg.block, ry, ks, ks)
        assert smem <= _plan_filter.MAX_SHARED_MEM
        x = np.empty((1, 64, 64), dt)
        fp = scipy_problem(64, 64, ks, ks, "same", "fill", 0, dt)
        (launch,) = plan_filter(fp, x, x[:, :ks, :ks], x, "tiled")
        assert "pipelined" not in launch.kernel
    x = np.empty((1, 64, 64), np.float32)
    for ks, dt, kw in [(7, "float32", {}), (3, "float32", {"ry": 4}),
                       (3, "complex64", {})]:  # fmt: skip
        fp = scipy_problem(64, 64, ks, ks, "same", "fill", 0, dt)
        xd = x.astype(dt)
        with pytest.raises(ValueError, match="no pipelined tiled instance"):
            plan_filter(fp, xd, xd[:, :ks, :ks], xd, "tiled", pipelined=True, **kw)
    with pytest.raises(ValueError, match="needs method='tiled'"):
        _gpu_filter.correlate2d(x, x[:, :3, :3], fp, "direct", device=dev,
                                pipelined=True)  # fmt: skip
    dt = np.dtype("float32")
    _few_resident_blocks(monkeypatch, dt, 3, 4, block=(32, 2))
    _plan_cache.clear()
    h, w = 61, 530  # 31 x 3 tiles of 32 x 2 blocks: 93 tiles over 4 blocks
    x = random_values(rng, (1, h, w), dt)
    raw = np.empty(x.nbytes + 32, np.uint8)
    start = (-raw.ctypes.data) % 16 + 4  # one element off 16 bytes
    xm = raw[start : start + x.nbytes].view(dt).reshape(x.shape)
    xm[...] = x
    k = random_values(rng, (1, 3, 3), dt)
    for mode, xin in (("same", x), ("valid", x), ("valid", xm)):
        fp = scipy_problem(h, w, 3, 3, mode, "symm", 0, dt)
        a = run(dev, xin, k, fp, "tiled", block=(32, 2))
        b = run(dev, xin, k, fp, "tiled", block=(32, 2), pipelined=True)
        assert dev.launches[-1][2] == (4, 1, 1)
        assert a.tobytes() == b.tobytes()


# ---------------------------------------------------------------------------------
# paths of the tiled kernel: vector loads/stores, RY = 1, grid-stride loops
# ---------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64", "int8", "complex128"])
def test_vector_and_scalar_paths(dev, rng, dtype):
    """Interior tiles of a W % VEC == 0 image take the 16-byte load path (with the
    aligned-store shortcut when the tile's first column is a vector boundary); a
    misaligned view and vector=False take the scalar paths; same results."""
    dt = np.dtype(dtype)
    tw = 2 * _plan_filter.rx(dt.itemsize)  # block (2, 2)
    h, w = 3 * 2 * _plan_filter.RY_IMAGE + 4, 6 * tw  # several interior tiles
    assert w % (16 // dt.itemsize) == 0
    x = random_values(rng, (1, h, w), dtype, small_int=True)
    off = min(8, dt.itemsize)  # 8 bytes (or one element) off a 16-byte boundary
    raw = np.empty(x.nbytes + 32, np.uint8)
    start = (-raw.ctypes.data) % 16 + off
    xm = raw[start : start + x.nbytes].view(dt).reshape(x.shape)
    xm[...] = x
    assert xm.ctypes.data % 16 != 0
    for kh, kw in [(3, 5), (3, 9), (2, 4), (5, 3)]:  # pad_left 2, 4, 1, 1
        k = random_values(rng, (1, kh, kw), dtype, small_int=True)
        fp = scipy_problem(h, w, kh, kw, "same", "wrap", 0, dtype)
        ref = ref_correlate(x, k, fp)
        out = np.empty((1, h, w), dt)
        # aligned (fresh NumPy buffers are 16-byte aligned): both vector flags on
        (launch,) = plan_filter(fp, x, k, out, "tiled", block=(2, 2))
        assert int(launch.args[-1]) == 3
        np.testing.assert_array_equal(run(dev, x, k, fp, "tiled", block=(2, 2)), ref)
        # misaligned: the scalar loads must run
        (launch,) = plan_filter(fp, xm, k, out, "tiled", block=(2, 2))
        assert int(launch.args[-1]) & 1 == 0
        np.testing.assert_array_equal(run(dev, xm, k, fp, "tiled", block=(2, 2)), ref)
        # vector accesses switched off
        got = run(dev, x, k, fp, "tiled", block=(2, 2), vector=False)
        np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_async_staging_paths(dev, rng, monkeypatch, dtype):
    """The compile-time instances stage interior tiles with cp.async: in 16-byte
    chunks when the tile starts on a vector ('valid': pad 0; 'same' with k = 9, and
    k = 5 in float64), else one element per copy ('same' k = 3, 'full', misaligned
    rows); several interior tiles per image and, with gridDim.y capped at 2,
    several tiles per block (the barrier before a tile is overwritten). The same
    with the register-staged loader (``REGISTER_STAGED``: kernel flag bit 2)."""
    monkeypatch.setattr(_plan_filter, "MAX_GRID_YZ", 2)
    _plan_cache.clear()
    dt = np.dtype(dtype)
    tw = 2 * _plan_filter.rx(dt.itemsize)
    th = 2 * max(_plan_filter.RY_SPECIALISED.values())
    h, w = 5 * th + 9, 6 * tw  # interior tiles for every k and mode below
    x = random_values(rng, (2, h, w), dtype, small_int=True)
    raw = np.empty(x.nbytes + 32, np.uint8)
    start = (-raw.ctypes.data) % 16 + dt.itemsize  # one element off 16 bytes
    xm = raw[start : start + x.nbytes].view(dt).reshape(x.shape)
    xm[...] = x
    for ks, mode, boundary in [(3, "same", "fill"), (9, "same", "wrap"),
                               (5, "valid", "fill"), (5, "full", "symm")]:  # fmt: skip
        k = random_values(rng, (1, ks, ks), dtype, small_int=True)
        fp = scipy_problem(h, w, ks, ks, mode, boundary, 2, dtype, B=2)
        ref = ref_correlate(x, k, fp)
        for staged, xin, flags in ((False, x, 3), (False, xm, 2), (True, x, 3)):
            regs = frozenset({(dt.name, ks)} if staged else ())
            monkeypatch.setattr(_plan_filter, "REGISTER_STAGED", regs)
            out = np.empty((2, fp.OH, fp.OW), dt)
            (launch,) = plan_filter(fp, xin, k, out, "tiled", block=(2, 2))
            ry = _plan_filter.RY_SPECIALISED[ks]
            assert launch.kernel == _plan_filter.tiled_name(dt, ks, ks, ry)
            assert int(launch.args[-1]) == flags | (4 if staged else 0)
            got = run(dev, xin, k, fp, "tiled", block=(2, 2))
            np.testing.assert_array_equal(got, ref)
            assert dev.launches[-1][2][1] == 2  # grid-stride over y tiles
            _plan_cache.clear()


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", ["float32", "int64", "complex64"])
def test_short_outputs_1d(dev, rng, variant, dtype):
    """1-D signals (H = KH = 1): the RY = 1 instance; NumPy's convolve modes."""
    x = random_values(rng, (4, 1, 100), dtype)
    k = random_values(rng, (4, 1, 13), dtype)
    for mode in MODES:
        for Bk in (1, 4):
            fp = scipy_problem(1, 100, 1, 13, mode, "fill", 0, dtype, B=4, Bk=Bk)
            out = run(dev, x, k[:Bk], fp, variant)
            check(out, x, k[:Bk], fp)
            if variant == "tiled":
                assert dev.launches[-1][1].endswith(", 0, 0, 1>")
    # against NumPy's own 1-D convolve (the kernel reversed: a true convolution)
    if np.dtype(dtype).kind != "i":
        fp = scipy_problem(
            1, 100, 1, 13, "full", "fill", 0, dtype, correlate=False, B=4
        )
        out = run(dev, x, np.ascontiguousarray(k[:1, :, ::-1]), fp, variant)
        want = np.convolve(x[2, 0].astype(np.complex128), k[0, 0].astype(np.complex128))
        assert_close(out[2, 0], want.astype(dtype) if np.dtype(dtype).kind == "c" else
                     want.real.astype(dtype), terms=13)  # fmt: skip


@pytest.mark.parametrize("variant", VARIANTS)
def test_grid_stride_loops(dev, rng, monkeypatch, variant):
    """With gridDim.y/z capped at 2, the kernels' loops over y tiles and batches."""
    monkeypatch.setattr(_plan_filter, "MAX_GRID_YZ", 2)
    x = random_values(rng, (5, 40, 11), "float32", small_int=True)
    k = random_values(rng, (5, 3, 3), "float32", small_int=True)
    fp = scipy_problem(40, 11, 3, 3, "same", "symm", 0, "float32", B=5, Bk=5)
    out = run(dev, x, k, fp, variant, block=(2, 2))
    grid = dev.launches[-1][2]
    assert grid[1] == 2 and grid[2] == 2
    np.testing.assert_array_equal(out, ref_correlate(x, k, fp))


def test_non_contiguous_inputs(dev, rng):
    base = random_values(rng, (2, 30, 40), "float64", small_int=True)
    views = [base[:, ::2, ::3], base[:, ::-1, :], base.transpose(0, 2, 1)[:, :20, :25]]
    k = random_values(rng, (1, 3, 4), "float64", small_int=True)
    for v in views:
        _, h, w = v.shape
        fp = scipy_problem(h, w, 3, 4, "same", "symm", 0, "float64", B=2)
        for variant in VARIANTS:
            out = run(dev, v, k[:, ::-1, :], fp, variant)
            np.testing.assert_array_equal(out, ref_correlate(v, k[:, ::-1, :], fp))


# ---------------------------------------------------------------------------------
# sanitizers and the reversed thread order on a subset
# ---------------------------------------------------------------------------------
def test_sanitized_subset(sdev, rng, monkeypatch):
    """ASan + UBSan (runner subprocess, buffers in exact-size heap blocks)."""
    for dtype in ALL_DTYPES:
        x = random_values(rng, (2, 11, 13), dtype)
        k = random_values(rng, (2, 4, 3), dtype)
        fp = scipy_problem(11, 13, 4, 3, "same", "symm", 0, dtype, B=2, Bk=2)
        for variant in VARIANTS:
            check(run(sdev, x, k, fp, variant), x, k, fp)
    for dtype in ("float32", "float64"):  # compile-time sizes, vector paths, borders
        x = random_values(rng, (1, 24, 64), dtype)
        for ks, boundary in [(3, "wrap"), (9, "fill")]:
            k = random_values(rng, (1, ks, ks), dtype)
            fp = scipy_problem(24, 64, ks, ks, "same", boundary, 1.0, dtype)
            check(run(sdev, x, k, fp, "tiled", block=(2, 2)), x, k, fp)
    # cp.async 16-byte staging of interior tiles whose last row and column are the
    # image's ('valid', 5x5, block 2x2: the input tile ends exactly at H and W)
    for dtype, w in (("float32", 36), ("float64", 20)):
        x = random_values(rng, (1, 20, w), dtype)
        k = random_values(rng, (1, 5, 5), dtype)
        fp = scipy_problem(20, w, 5, 5, "valid", "fill", 0, dtype)
        check(run(sdev, x, k, fp, "tiled", block=(2, 2)), x, k, fp)
        ry = _plan_filter.RY_SPECIALISED[5]
        assert sdev.launches[-1][1] == _plan_filter.tiled_name(dtype, 5, 5, ry)
    # the pipelined variant: many tiles per block, both copy paths, every border
    monkeypatch.setattr(_plan_filter, "DEFAULT_SM_COUNT", 1)
    _plan_cache.clear()
    for dtype, ks, mode in (("float32", 3, "same"), ("float64", 5, "valid")):
        fp = scipy_problem(21, 36, ks, ks, mode, "wrap", 0, dtype, B=2)
        x = random_values(rng, (2, 21, 36), dtype)
        k = random_values(rng, (1, ks, ks), dtype)
        out = run(sdev, x, k, fp, "tiled", block=(2, 2), pipelined=True)
        assert "pipelined" in sdev.launches[-1][1]
        assert sdev.launches[-1][2][0] <= 5  # (tile_min_blocks, 1 SM)
        check(out, x, k, fp)
    x = random_values(rng, (1, 3, 2), "int16")  # kernel larger than the image
    k = random_values(rng, (1, 9, 7), "int16")
    for boundary in BOUNDARIES:
        fp = scipy_problem(3, 2, 9, 7, "full", boundary, 7, "int16")
        for variant in VARIANTS:
            check(run(sdev, x, k, fp, variant), x, k, fp)


def test_descending_thread_order(rng):
    """A missing barrier shows up in one of the two schedules: run the other one."""
    from gpuconv._emulate import EmulatedDevice

    d = EmulatedDevice(sanitize=False, thread_order="descending")
    cases = [
        ("float32", 3, "symm"),
        ("float64", 4, "wrap"),
        ("uint8", 5, "fill"),
        ("float32", 9, "fill"),
    ]
    for dtype, ks, boundary in cases:
        x = random_values(rng, (2, 21, 37), dtype, small_int=True)
        k = random_values(rng, (1, ks, ks), dtype, small_int=True)
        fp = scipy_problem(21, 37, ks, ks, "same", boundary, 2, dtype, B=2)
        out = run(d, x, k, fp, "tiled", block=(2, 2))
        np.testing.assert_array_equal(out, ref_correlate(x, k, fp))


# ---------------------------------------------------------------------------------
# the FFT algorithm (NumPy's FFT on the emulated device), algorithm choice, planner
# ---------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_fft_path(dev, rng, dtype):
    for B, Bk, h, w, kh, kw in [
        (1, 1, 23, 17, 5, 4),
        (3, 3, 12, 20, 7, 7),
        (2, 1, 4, 3, 6, 8),
    ]:
        x = random_values(rng, (B, h, w), dtype)
        k = random_values(rng, (Bk, kh, kw), dtype)
        for mode in MODES:
            if mode == "valid" and (kh > h or kw > w):
                continue
            for boundary, fill in [
                ("fill", 0),
                ("fill", 2.5),
                ("wrap", 0),
                ("symm", 0),
            ]:
                fp = scipy_problem(
                    h, w, kh, kw, mode, boundary, fill, dtype, B=B, Bk=Bk
                )
                out = run(dev, x, k, fp, "fft")
                assert_close(out, ref_correlate(x, k, fp), dtype=dtype, terms=kh * kw)


def test_fft_paths_random_problems(dev, monkeypatch):
    """Seeded random problems (a review's fuzzing, kept small) on both FFT paths
    (correlate2d_fft, and correlate1d_fft where it applies, with short segments so
    that several are cut): pads past the full correlation, kernels larger than the
    image, non-zero fills, Bk = B, strided inputs, every dtype and boundary. Each
    element within the direct sum's bound, the same bits twice, inputs unchanged."""
    from tests._filter_cases import direct_bound
    from tests._tol import assert_within_bound

    monkeypatch.setattr(_plan_filter, "FFT1D_MIN_SEGMENT", 8)
    monkeypatch.setattr(_plan_filter, "FFT1D_SEGMENT_TAPS", 2)
    rng = np.random.default_rng(2026_12_05)
    segments = set()
    for _ in range(120):
        dtype = FLOAT_DTYPES[int(rng.integers(len(FLOAT_DTYPES)))]
        one = rng.random() < 0.5  # a 1-D problem (B x 1 x W)
        B = int(rng.integers(1, 4))
        Bk = B if rng.random() < 0.4 else 1
        H, KH = (1, 1) if one else (int(rng.integers(1, 12)), int(rng.integers(1, 14)))
        W, KW = int(rng.integers(1, 60)), int(rng.integers(1, 14))
        pt = 0 if one else int(rng.integers(0, KH + 2))
        pl = int(rng.integers(0, KW + 2))
        oh0, ow0 = max(1, H + pt - KH + 1), max(1, W + pl - KW + 1)  # pads >= 0
        OH = 1 if one else int(rng.integers(oh0, oh0 + KH + 3))
        OW = int(rng.integers(ow0, ow0 + KW + 3))
        boundary = BOUNDARIES[int(rng.integers(3))]
        fill = 0.0
        if boundary == "fill" and rng.random() < 0.4:
            fill = float(rng.standard_normal() * 10)
        fp = problem(B, H, W, Bk, KH, KW, pt, pl, OH, OW, boundary, fill, dtype)
        x = random_values(rng, (B, H, 2 * W), dtype)[:, :, ::2]  # strided
        k = random_values(rng, (Bk, KH, KW), dtype)
        x0, k0 = x.copy(), k.copy()
        want, bound = ref_correlate(x, k, fp), direct_bound(x, k, fp)
        paths = [_gpu_filter.correlate2d_fft]
        if _plan_filter.fft1d_ok(fp):
            paths.append(_gpu_filter.correlate1d_fft)
            segments.add(_plan_filter.fft1d_segment(fp)[1])
        for path in paths:
            out = path(x, k, fp, dev)
            assert out.shape == (B, OH, OW) and out.dtype == np.dtype(dtype)
            assert_within_bound(out, want, bound, dtype)
            np.testing.assert_array_equal(path(x, k, fp, dev), out)
        np.testing.assert_array_equal(x, x0)
        np.testing.assert_array_equal(k, k0)
    assert max(segments) >= 4  # several segments were cut


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_fft_path_fill_value_elementwise(dev, rng, dtype):
    """A non-zero fill value never enters the transform (it is added exactly
    afterwards), so every output is as accurate as the direct sum's, however large
    the fill: per element, not relative to the border-dominated max|ref|."""
    check_fft_fill_value(lambda *a: run(dev, *a), rng, dtype)


def test_choose_algorithm():
    f32 = np.dtype("float32")
    small = problem(1, 4096, 4096, 1, 3, 3, 1, 1, 4096, 4096, "fill", 0, f32)
    big = problem(1, 4096, 4096, 1, 63, 63, 31, 31, 4096, 4096, "fill", 0, f32)
    assert choose_algorithm(small, "auto") == "tiled"
    assert choose_algorithm(big, "auto") == "fft"
    mid = problem(1, 4096, 4096, 1, 31, 31, 15, 15, 4096, 4096, "fill", 0, f32)
    assert choose_algorithm(mid, "direct") == "tiled"
    assert choose_algorithm(big, "direct") == "naive"  # 63x63 float32: no tile fits
    assert choose_algorithm(small, "fft") == "fft"
    assert choose_algorithm(small, "naive") == "naive"
    for dt in ("int8", "uint16", "int64"):  # never the FFT for integers
        p = problem(1, 4096, 4096, 1, 31, 31, 15, 15, 4096, 4096, "fill", 0, dt)
        assert choose_algorithm(p, "auto") == "tiled"
        assert choose_algorithm(p, "fft") == "tiled"
    # a tile that cannot fit in 48 KiB: direct means naive, forced tiled raises
    huge = problem(1, 300, 300, 1, 101, 101, 50, 50, 300, 300, "fill", 0, "float64")
    assert tiled_config(huge) is None
    assert choose_algorithm(huge, "direct") == "naive"
    with pytest.raises(ValueError, match="shared memory"):
        choose_algorithm(huge, "tiled")
    with pytest.raises(ValueError, match="Acceptable method flags"):
        choose_algorithm(small, "fast")


def kernels_since(dev, n):
    """The kernels (names without template arguments) ``dev`` launched after its
    ``n``-th launch, except a spectrum product's (``fft_spectrum_product``, where
    the FFT paths fuse theirs: these tests are about which path ran)."""
    names = [name.split("<")[0] for _, name, *_ in dev.launches[n:]]
    return [m for m in names if m != "fft_spectrum_product"]


def test_auto_avoids_fft_on_non_finite_input(dev, rng, monkeypatch):
    """'auto' that would take the FFT runs a direct kernel when a NaN/inf is present
    (an FFT spreads it over the whole output)."""
    monkeypatch.setattr(_plan_filter, "fft_seconds", lambda fp: 0.0)  # FFT always wins
    x = random_values(rng, (1, 12, 12), "float64")
    k = random_values(rng, (1, 3, 3), "float64")
    fp = scipy_problem(12, 12, 3, 3, "same", "fill", 0, "float64")
    n = len(dev.launches)
    check(run(dev, x, k, fp, "auto"), x, k, fp)
    # finite: the FFT ran, alone
    assert kernels_since(dev, n) == ["fft_gather", "fft_crop"]
    x[0, 5, 5] = np.nan
    n = len(dev.launches)
    out = run(dev, x, k, fp, "auto")
    assert kernels_since(dev, n) == ["fft_gather", "fft_crop", "filter2d_tiled"]
    assert np.isnan(out).sum() == 9  # only the 3x3 neighbourhood of the NaN


def test_auto_fft_reads_finiteness_from_the_spectra(dev, rng, monkeypatch):
    """The auto FFT path learns whether every value is finite from its own DC terms
    (no reduction and sync before the transforms): the old pre-check is never
    called; a NaN or inf in the image (2-D and 1-D), an inf in the kernel, or a
    NaN fill value still give the direct kernel's local result."""
    monkeypatch.setattr(_plan_filter, "fft_seconds", lambda fp: 0.0)
    monkeypatch.setattr(_plan_filter, "fft1d_seconds", lambda fp: 0.0)

    def no_precheck(*a, **kw):
        raise AssertionError("the FFT path must not pre-check finiteness")

    monkeypatch.setattr(_gpu_filter, "_all_finite", no_precheck)
    for dtype in ("float32", "complex128"):
        x = random_values(rng, (2, 14, 13), dtype)
        k = random_values(rng, (1, 3, 4), dtype)
        fp = scipy_problem(14, 13, 3, 4, "same", "symm", 0, dtype, B=2)
        n = len(dev.launches)
        check(run(dev, x, k, fp, "auto"), x, k, fp)
        assert kernels_since(dev, n) == ["fft_gather", "fft_crop"]  # finite: FFT
        for bad_x, bad_k in ((np.nan, None), (np.inf, None), (None, np.inf)):
            xb, kb = x.copy(), k.copy()
            if bad_x is not None:
                xb[1, 6, 7] = bad_x
            if bad_k is not None:
                kb[0, 1, 2] = bad_k
            out = run(dev, xb, kb, fp, "auto")
            assert "tiled" in dev.launches[-1][1]
            with np.errstate(all="ignore"):
                want = ref_correlate(xb, kb, fp)
            np.testing.assert_array_equal(np.isfinite(out), np.isfinite(want))
        # a NaN fill value: direct without a transform
        fpn = scipy_problem(14, 13, 3, 4, "same", "fill", np.nan, dtype, B=2)
        n = len(dev.launches)
        out = run(dev, x, k, fpn, "auto")
        assert kernels_since(dev, n) == ["filter2d_tiled"]
    # 1-D: the segmented FFT's segments cover every sample
    x = random_values(rng, (1, 1, 3000), "float64")
    k = random_values(rng, (1, 1, 301), "float64")
    fp = scipy_problem(1, 3000, 1, 301, "same", "fill", 0, "float64")
    assert _plan_filter.choose_filter1d(fp, "auto") == "fft1d"
    n = len(dev.launches)
    check(run(dev, x, k, fp, "auto"), x, k, fp)
    assert kernels_since(dev, n) == ["fft_gather"]
    x[0, 0, 2999] = np.nan
    n = len(dev.launches)
    out = run(dev, x, k, fp, "auto")
    assert kernels_since(dev, n) == ["fft_gather", "filter1d_tiled"]
    assert np.isnan(out).sum() == 151  # the taps that reach the last sample


def test_huge_kernel_runs_naive(dev, rng):
    x = random_values(rng, (1, 6, 40), "float64", small_int=True)
    k = random_values(rng, (1, 5, 700), "float64", small_int=True)
    fp = scipy_problem(6, 40, 5, 700, "same", "symm", 0, "float64")
    assert tiled_config(fp) is None
    out = run(dev, x, k, fp, "direct")
    assert "naive" in dev.launches[-1][1]
    np.testing.assert_array_equal(out, ref_correlate(x, k, fp))


def test_bool_is_or_of_ands(dev, rng):
    a = rng.random((1, 1, 30)) < 0.3
    v = rng.random((1, 1, 7)) < 0.5
    fp = problem(1, 1, 30, 1, 1, 7, 0, 6, 1, 36, "fill", False, "bool")
    out = run(dev, a, np.ascontiguousarray(v[:, :, ::-1]), fp, "direct")
    assert out.dtype == np.bool_
    np.testing.assert_array_equal(out[0, 0], np.convolve(a[0, 0], v[0, 0]))


def test_launch_records(rng):
    """Typed scalars, grid limits and the shared-memory size of every plan."""
    for dtype in ALL_DTYPES:
        dt = np.dtype(dtype)
        for B, h, w, kh, kw in [
            (1, 40, 70, 3, 3),
            (70000, 2, 3, 2, 2),
            (2, 1, 500, 1, 31),
        ]:
            fp = scipy_problem(h, w, kh, kw, "same", "fill", 1, dtype, B=B)
            x = np.empty((B, h, w), dt)
            k = np.empty((1, kh, kw), dt)
            out = np.empty((B, fp.OH, fp.OW), dt)
            for alg in VARIANTS:
                (launch,) = plan_filter(fp, x, k, out, alg)
                assert launch.grid[2] == min(B, 65535)
                for a in launch.args[3:]:
                    assert type(a) in (np.int32, np.int64, dt.type)
                if alg == "tiled":
                    cfg = tiled_config(fp)
                    assert launch.shared_mem == cfg.shared_mem <= 48 * 1024
                    assert launch.kernel in _plan_filter.kernel_names()
    with pytest.raises(ValueError, match="C-contiguous"):
        fp = scipy_problem(5, 5, 3, 3, "same", "fill", 0, "float32")
        x = np.empty((1, 5, 10), np.float32)[:, :, ::2]
        k, out = np.empty((1, 3, 3), np.float32), np.empty((1, 5, 5), np.float32)
        plan_filter(fp, x, k, out, "naive")


# ---------------------------------------------------------------------------------
# the public API end to end, its backend op routed to the emulated kernels
# ---------------------------------------------------------------------------------
@pytest.fixture
def via_emulator(dev, monkeypatch):
    """gpuconv.convolve2d & co. on NumPy arrays, computed by the CUDA op on the
    emulated device (the API's argument handling, swaps, flips, conjugation and
    stacks, then our kernels); returns the list of methods the op was called with."""
    from gpuconv import _backend

    calls: list[str] = []

    class EmulatedOps:
        @staticmethod
        def correlate2d(in1, k, fp, method):
            calls.append(method)
            return _gpu_filter.correlate2d(in1, k, fp, method, device=dev)

    real = _backend.backend_ops
    monkeypatch.setattr(
        _backend,
        "backend_ops",
        lambda name: EmulatedOps if name == "numpy" else real(name),
    )
    return calls


@pytest.mark.parametrize("fn", ["convolve2d", "correlate2d"])
@pytest.mark.parametrize("dtype", ["float64", "complex128", "uint8", "int32"])
def test_public_2d_api_matches_scipy(via_emulator, rng, fn, dtype):
    import gpuconv

    ours, theirs = getattr(gpuconv, fn), getattr(ss, fn)
    for (h, w), (kh, kw) in [((9, 12), (3, 4)), ((5, 6), (7, 3)), ((4, 4), (5, 6))]:
        x = random_values(rng, (h, w), dtype, small_int=dtype != "uint8")
        ker = random_values(rng, (kh, kw), dtype, small_int=dtype != "uint8")
        for mode in MODES:
            for boundary in BOUNDARIES:
                if mode == "valid" and not (
                    (h >= kh and w >= kw) or (h <= kh and w <= kw)
                ):
                    continue
                want = theirs(x, ker, mode, boundary, 3)
                got = ours(x, ker, mode, boundary, 3, method="direct")
                assert got.dtype == want.dtype
                np.testing.assert_array_equal(got, want)
                got = ours(x, ker, mode, boundary, 3)  # 'auto': maybe the FFT
                assert got.dtype == want.dtype
                assert_close(got, want, terms=kh * kw)
    assert via_emulator  # the op really ran


def test_public_2d_stacks(via_emulator, rng):
    import gpuconv

    imgs = random_values(rng, (2, 3, 11, 14), "float64", small_int=True)
    kers = random_values(rng, (3, 4, 3), "float64", small_int=True)
    got = gpuconv.convolve2d(imgs, kers, "same", "symm", axes=(-2, -1))
    for i in range(2):
        for c in range(3):
            want = ss.convolve2d(imgs[i, c], kers[c], "same", "symm")
            np.testing.assert_array_equal(got[i, c], want)
    one = gpuconv.correlate2d(imgs, kers[0], "full", "wrap", axes=(-2, -1))
    np.testing.assert_array_equal(
        one[1, 2], ss.correlate2d(imgs[1, 2], kers[0], "full", "wrap")
    )


@pytest.mark.parametrize("fn", ["convolve", "correlate"])
@pytest.mark.parametrize("dtype", ["float64", "complex128", "int16", "bool"])
def test_public_1d_api_matches_numpy(via_emulator, rng, fn, dtype):
    import gpuconv

    ours, theirs = getattr(gpuconv, fn), getattr(np, fn)
    for n, m in [(30, 7), (7, 30), (12, 12), (1, 5), (40, 1)]:
        if dtype == "bool":
            a, v = rng.random(n) < 0.4, rng.random(m) < 0.4
        else:
            a = random_values(rng, (n,), dtype, small_int=True)
            v = random_values(rng, (m,), dtype, small_int=True)
        for mode in MODES:
            got = ours(a, v, mode, method="direct")
            want = theirs(a, v, mode)
            assert got.dtype == want.dtype
            np.testing.assert_array_equal(got, want)


# ---------------------------------------------------------------------------------
# separable (rank-1) kernels: two 1-D passes
# ---------------------------------------------------------------------------------
def _rank1(rng, kh, kw, dtype, kind):
    dt = np.dtype(dtype)
    if kind == "box":
        u, v = np.ones(kh), np.ones(kw)
    if kind in ("binomial", "gauss"):
        from math import comb

        if kind == "binomial":
            u = np.array([float(comb(kh - 1, i)) for i in range(kh)])
            v = np.array([float(comb(kw - 1, i)) for i in range(kw)])
        else:
            u = np.exp(-np.linspace(-2, 2, kh) ** 2)
            v = np.exp(-np.linspace(-1.5, 1.5, kw) ** 2)
    k = np.multiply.outer(u, v)
    if dt.kind == "c":
        k = k * (0.6 + 0.8j)
    return k.astype(dt)[None]


@pytest.mark.parametrize("dtype", ["float32", "float64", "complex64"])
def test_separable_two_passes(dev, rng, dtype):
    """Rank-1 kernels (box, binomial, Gaussian; even and odd; kernel larger than the
    image) as a KHx1 then a 1xKW launch, every mode and boundary, within the
    tolerance table against the float64 reference."""
    cases = [  # images off a tile by 1; the last two: kernel larger than the image
        (15, 17, 7, 7, "box"),
        (33, 31, 8, 5, "binomial"),
        (3, 4, 9, 11, "gauss"),
        (2, 7, 4, 3, "gauss"),
    ]
    for h, w, kh, kw, kind in cases:
        x = random_values(rng, (2, h, w), dtype)
        k = _rank1(rng, kh, kw, dtype, kind)
        for mode in MODES:
            if mode == "valid" and (kh > h or kw > w):
                continue
            for boundary, fill in [("fill", 0), ("fill", -2.5), ("wrap", 0),
                                   ("symm", 0)]:  # fmt: skip
                fp = scipy_problem(h, w, kh, kw, mode, boundary, fill, dtype, B=2)
                n = len(dev.launches)
                out = run(dev, x, k, fp, "separable")
                check(out, x, k, fp)
                names = [launch[1] for launch in dev.launches[n:]]
                assert len(names) == 2, names  # the two 1-D passes


def test_separable_falls_back_to_2d(dev, rng, monkeypatch):
    """Not rank 1, a NaN in the image, a kernel stack or an integer dtype: one 2-D
    launch. 'auto'/'direct' take the passes where the cost model says so."""
    x = random_values(rng, (1, 20, 21), "float64")
    k = _rank1(rng, 7, 7, "float64", "gauss")
    fp = scipy_problem(20, 21, 7, 7, "same", "symm", 0, "float64")
    k2 = k.copy()
    k2[0, 3, 3] += 1.0  # rank 2
    xn = x.copy()
    xn[0, 4, 5] = np.nan
    for xx, kk in [(x, k2), (xn, k)]:
        n = len(dev.launches)
        out = run(dev, xx, kk, fp, "separable")
        assert len(dev.launches) == n + 1
        check(out, xx, kk, fp)
    # Bk == B > 1: never separable
    fp2 = scipy_problem(20, 21, 7, 7, "same", "symm", 0, "float64", B=2, Bk=2)
    x2 = random_values(rng, (2, 20, 21), "float64")
    n = len(dev.launches)
    run(dev, x2, np.concatenate([k, k]), fp2, "separable")
    assert len(dev.launches) == n + 1
    # the cost model decides for 'auto' and 'direct'
    n = len(dev.launches)
    run(dev, x, k, fp, "direct")
    assert len(dev.launches) == n + 1  # tiny image: one 2-D launch is cheaper
    monkeypatch.setattr(_gpu_filter, "separable_seconds", lambda fp: 0.0)
    monkeypatch.setattr(_plan_filter, "SEPARABLE_AUTO_MIN_TAPS", 0)
    _plan_cache.clear()  # the model's choice is kept per problem
    for method in ("auto", "direct"):
        n = len(dev.launches)
        check(run(dev, x, k, fp, method), x, k, fp)
        assert len(dev.launches) == n + 2


def test_no_rank_test_below_the_measured_floor(dev, rng, monkeypatch):
    """'auto'/'direct' never copy the kernel to the host for the rank test below
    SEPARABLE_AUTO_MIN_TAPS (measured on the H200: it costs more than the passes
    save there), even where the uncalibrated model prefers the passes."""
    monkeypatch.setattr(_gpu_filter, "separable_seconds", lambda fp: 0.0)

    def no_rank_test(*a, **kw):
        raise AssertionError("rank test below the floor")

    monkeypatch.setattr(_gpu_filter, "separable_factors", no_rank_test)
    _plan_cache.clear()
    g = np.exp(-np.linspace(-2.0, 2.0, 15) ** 2)
    k = np.outer(g, g)[None]
    x = random_values(rng, (1, 40, 50), "float64")
    fp = scipy_problem(40, 50, 15, 15, "same", "symm", 0, "float64")
    assert 15 * 15 < _plan_filter.SEPARABLE_AUTO_MIN_TAPS
    for method in ("auto", "direct"):
        check(run(dev, x, k, fp, method), x, k, fp)
    _plan_cache.clear()


def test_separable_cost_model():
    """Large rank-1 filters: the passes beat the 2-D tiled kernel from k of about 11
    on the model (to recalibrate on measured rows), never for small k."""
    from gpuconv._plan_filter import direct_seconds, separable_seconds

    f32 = np.dtype("float32")
    for k, faster in [(3, False), (5, False), (15, True), (31, True)]:
        fp = problem(1, 8192, 8192, 1, k, k, k // 2, k // 2, 8192, 8192, "fill", 0,
                     f32)  # fmt: skip
        assert (separable_seconds(fp) < direct_seconds(fp, "tiled")) == faster


def test_stack_of_small_images_is_one_launch(via_emulator, dev, rng):
    """A stack (``axes=``) of many small images is one launch (grid z over the
    stack, grid-stride beyond 65535), for the public API too; 4096 images of 64²
    are planned as one launch covering every image."""
    import gpuconv

    imgs = random_values(rng, (300, 12, 13), "float32", small_int=True)
    ker = random_values(rng, (3, 3), "float32", small_int=True)
    n = len(dev.launches)
    got = gpuconv.convolve2d(imgs, ker, "same", "symm", axes=(-2, -1))
    assert len(dev.launches) == n + 1
    assert dev.launches[-1][2][2] == 300  # grid z: one slice per image
    for i in (0, 151, 299):
        np.testing.assert_array_equal(got[i], ss.convolve2d(imgs[i], ker, "same",
                                                            "symm"))  # fmt: skip
    fp = scipy_problem(64, 64, 3, 3, "same", "fill", 0, "float32", B=4096)
    x = np.empty((4096, 64, 64), np.float32)
    (launch,) = plan_filter(fp, x, np.empty((1, 3, 3), np.float32),
                            np.empty_like(x), "tiled")  # fmt: skip
    bx, by, _ = launch.block
    tw, th = bx * _plan_filter.rx(4), by * tiled_config(fp).ry
    assert launch.grid == (-(-64 // tw), -(-64 // th), 4096)
    assert bx * by >= 64  # blocks big enough for full SMs (32 blocks/SM limit)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_fft_kernel_spectrum_by_dft_matrices(rng, dtype):
    """The FFT path's kernel spectrum from two small DFT matrices equals NumPy's
    full-size transform of the zero-padded kernel (both product orders, odd/even
    sizes, kernel stacks), to the FFT tolerance."""
    from gpuconv._gpu_filter import kernel_spectrum

    real = np.dtype(dtype).kind == "f"
    for bk, kh, kw, sh, sw in [(1, 3, 7, 12, 10), (2, 8, 2, 15, 21), (1, 5, 5, 7, 8)]:
        kr = random_values(rng, (bk, kh, kw), dtype)
        got = kernel_spectrum(kr, sh, sw, real, np)
        ref = (np.fft.rfft2 if real else np.fft.fft2)(
            kr.astype(np.complex128 if not real else np.float64), s=(sh, sw)
        )
        assert got.shape == ref.shape
        assert_close(got, ref, dtype=dtype, terms=kh * kw,
                     scale=float(np.abs(ref).max()))  # fmt: skip


def test_fft_path_kernel_spectrum_choice(dev, rng, monkeypatch):
    """Small kernels on images take the DFT-matrix spectrum, large ones and long
    1-D signals (F_w would be KW x the spectrum) the full-size transform; both give
    the same FFT-path result."""
    from gpuconv._gpu_filter import kernel_dft_cheaper

    assert kernel_dft_cheaper(31, 31, 8232, 8232, True)
    assert kernel_dft_cheaper(3, 3, 64, 64, False)
    assert not kernel_dft_cheaper(63, 63, 4158, 4158, True)
    for taps in (3, 31, 10000):
        assert not kernel_dft_cheaper(1, taps, 1, 10**8 + taps, True)
    for dtype in ("float32", "complex128"):
        x = random_values(rng, (2, 14, 11), dtype)
        k = random_values(rng, (2, 4, 5), dtype)
        fp = scipy_problem(14, 11, 4, 5, "full", "fill", 1.5, dtype, B=2, Bk=2)
        ref = ref_correlate(x, k, fp)
        for use_dft in (True, False):  # both spectra of the kernel
            monkeypatch.setattr(_gpu_filter, "kernel_dft_cheaper",
                                lambda *a, use=use_dft: use)  # fmt: skip
            out = run(dev, x, k, fp, "fft")
            assert_close(out, ref, dtype=dtype, terms=20,
                         scale=float(np.abs(ref).max()))  # fmt: skip


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_batched_tile_loader_strides(dev, rng, dtype):
    """The flattened 128-bit tile loader where a block has more threads than a tile
    row has vectors (the (row, vector) step wraps over several rows) and fewer
    (one row per several steps), interior tiles of the compile-time instances (4
    loads in flight) and of the runtime-size path (2 for float and double)."""
    cases = [((8, 4), (40, 200)), ((16, 8), (70, 400)), ((4, 2), (30, 96))]
    for block, (h, w) in cases:
        x = random_values(rng, (1, h, w), dtype, small_int=True)
        for kh, kw in [(3, 3), (9, 9), (4, 6)]:  # (4, 6): the runtime-size path
            k = random_values(rng, (1, kh, kw), dtype, small_int=True)
            fp = scipy_problem(h, w, kh, kw, "same", "symm", 0, dtype)
            (launch,) = plan_filter(fp, x, k, np.empty_like(x), "tiled", block=block)
            assert int(launch.args[-1]) & 1  # the vector loads run
            out = run(dev, x, k, fp, "tiled", block=block)
            np.testing.assert_array_equal(out, ref_correlate(x, k, fp))
