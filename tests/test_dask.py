"""gpuconv.dask against the whole-array calls, SciPy and the naive references.

Every chunked result is compared with the in-memory gpuconv call on the whole
array and, for the filters, with ``scipy.signal``; conv2d with the naive loops of
``tests/ref_conv.py`` for a subset. Most cases run on Dask's synchronous scheduler
(fast, same graph); a representative subset runs on a real
``distributed.LocalCluster`` with two worker processes on 127.0.0.1, whose
results must also be bit-identical to the synchronous ones.
"""

from __future__ import annotations

import doctest
import inspect
import itertools
import re
import subprocess
import sys

import numpy as np
import pytest

da = pytest.importorskip("dask.array", reason="dask is not installed (extra 'dask')")
dask = pytest.importorskip("dask")
distributed = pytest.importorskip(
    "distributed", reason="distributed is not installed (extra 'dask')"
)
signal = pytest.importorskip("scipy.signal")
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import assume, given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import gpuconv  # noqa: E402
import gpuconv.dask as gd  # noqa: E402
from tests._tol import assert_close  # noqa: E402
from tests.ref_conv import conv2d_ref  # noqa: E402

pytestmark = pytest.mark.dask


def _sync(*arrays):
    """Compute on the synchronous scheduler (even while the cluster's client is
    the default)."""
    out = dask.compute(*arrays, scheduler="sync")
    return out if len(arrays) > 1 else out[0]


@pytest.fixture(scope="module")
def client():
    """One real cluster: two single-threaded worker processes on 127.0.0.1."""
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=None,
    )
    c = distributed.Client(cluster)
    try:
        yield c
    finally:
        c.close()
        cluster.close()


# ------------------------------------------------------------------ filters

IMAGE = (15, 11)
KERNELS = [(3, 3), (2, 4), (1, 1), (5, 6), (17, 12)]
CHUNKINGS = [((5, 3, 7), (2, 6, 3)), (2, 3), ((7, 1, 7), (1, 9, 1))]
MODES = ("full", "same", "valid")
BOUNDARIES = ("fill", "wrap", "symm")
FILTERS = ("convolve2d", "correlate2d")


@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fn", FILTERS)
def test_filter_every_chunk_edge(fn, mode, boundary):
    """Odd, even, 1x1, larger-than-chunk and larger-than-image kernels on uneven
    chunks and chunks smaller than the kernel: the whole-array call and SciPy."""
    rng = np.random.default_rng(7)
    a = rng.standard_normal(IMAGE)
    for ks, chunks in itertools.product(KERNELS, CHUNKINGS):
        k = rng.standard_normal(ks)
        kw = dict(mode=mode, boundary=boundary, fillvalue=-1.5)
        whole = getattr(gpuconv, fn)(a, k, **kw)
        y = getattr(gd, fn)(da.from_array(a, chunks=chunks), k, **kw)
        assert y.shape == whole.shape and y.dtype == whole.dtype
        got = _sync(y)
        assert_close(got, whole, terms=k.size)
        assert_close(got, getattr(signal, fn)(a, k, **kw), terms=k.size)


def test_filter_output_chunks_follow_input():
    x = da.zeros((20, 17), chunks=((7, 6, 7), (5, 5, 7)))
    assert gd.convolve2d(x, np.ones((3, 5)), "same").chunks == x.chunks
    assert gd.correlate2d(x, np.ones((2, 2)), "same").chunks == x.chunks
    assert gd.convolve2d(x, np.ones((3, 3)), "full").chunks == ((7, 6, 9), (5, 5, 9))
    assert gd.convolve2d(x, np.ones((3, 3)), "valid").chunks == ((7, 6, 5), (5, 5, 5))
    # chunks smaller than the halo (3 rows each side) are merged with a neighbour
    y = gd.convolve2d(da.zeros((20, 17), chunks=2), np.ones((7, 1)), "same")
    assert y.chunks == ((2, 4, 4, 4, 4, 2), (2,) * 8 + (1,))


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_filter_integers_exact(boundary):
    """Integer data stay integers, wrap like SciPy and are compared exactly; the
    fill value is cast as SciPy casts it (2.7 -> 2)."""
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, size=(12, 9)).astype(np.uint8)
    k = rng.integers(0, 4, size=(3, 2)).astype(np.uint8)
    for fn, mode in itertools.product(FILTERS, MODES):
        kw = dict(mode=mode, boundary=boundary, fillvalue=2.7)
        got = _sync(getattr(gd, fn)(da.from_array(a, chunks=(5, 4)), k, **kw))
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, getattr(signal, fn)(a, k, **kw))
        np.testing.assert_array_equal(got, getattr(gpuconv, fn)(a, k, **kw))


@pytest.mark.parametrize("fn", FILTERS)
def test_filter_complex_and_nonfinite_fill(fn):
    rng = np.random.default_rng(4)
    a = rng.standard_normal((10, 9)) + 1j * rng.standard_normal((10, 9))
    k = rng.standard_normal((2, 3)) + 1j * rng.standard_normal((2, 3))
    for mode, boundary in itertools.product(MODES, BOUNDARIES):
        kw = dict(mode=mode, boundary=boundary, fillvalue=1 - 2j)
        got = _sync(getattr(gd, fn)(da.from_array(a, chunks=(3, 4)), k, **kw))
        assert_close(got, getattr(signal, fn)(a, k, **kw), terms=6)
    # NaN as fill value reaches exactly the outputs that read the border
    x = np.arange(30.0).reshape(5, 6)
    kw = dict(mode="same", boundary="fill", fillvalue=np.nan)
    got = _sync(getattr(gd, fn)(da.from_array(x, chunks=2), np.ones((3, 3)), **kw))
    np.testing.assert_array_equal(got, getattr(gpuconv, fn)(x, np.ones((3, 3)), **kw))


def test_filter_float32_large_kernel():
    """Chunks may take the FFT path where the whole array took the direct one (or
    the reverse): equal within the FFT tolerance."""
    rng = np.random.default_rng(5)
    a = rng.standard_normal((70, 64)).astype(np.float32)
    k = rng.standard_normal((15, 15)).astype(np.float32)
    for fn in FILTERS:
        got = _sync(getattr(gd, fn)(da.from_array(a, chunks=(30, 23)), k, "same"))
        whole = getattr(gpuconv, fn)(a, k, "same")
        assert got.dtype == np.float32
        assert_close(got, whole, terms=k.size, scale=float(np.abs(whole).max()))


def test_filter_stacks_with_axes():
    rng = np.random.default_rng(6)
    a = rng.standard_normal((3, 2, 9, 8))
    xd = da.from_array(a, chunks=(2, 1, 4, 3))
    cases = [
        (rng.standard_normal((3, 2)), (-2, -1)),  # one kernel for the stack
        (rng.standard_normal((2, 3, 3)), (-2, -1)),  # (..., KH, KW), broadcast
        (rng.standard_normal((3, 1, 2, 4)), (2, 3)),  # same rank, broadcast
        (rng.standard_normal((2, 3, 4, 2)), (0, 3)),  # filter along axes 0 and 3
    ]
    for (k, axes), fn, mode in itertools.product(cases, FILTERS, MODES):
        boundary = "fill" if mode == "full" else "symm"
        kw = dict(mode=mode, boundary=boundary, fillvalue=0.5, axes=axes)
        try:
            whole = getattr(gpuconv, fn)(a, k, **kw)
        except ValueError as exc:
            with pytest.raises(ValueError, match=re.escape(str(exc))):
                getattr(gd, fn)(xd, k, **kw)
            continue
        y = getattr(gd, fn)(xd, k, **kw)
        assert y.shape == whole.shape
        assert_close(_sync(y), whole, terms=k.size)
    # the image stack broadcasts against a larger kernel stack
    k = rng.standard_normal((4, 1, 3, 3))
    whole = gpuconv.correlate2d(a[:1], k, "same", axes=(-2, -1))
    got = _sync(gd.correlate2d(xd[:1], k, "same", axes=(-2, -1)))
    assert_close(got, whole, terms=9)


def test_filter_swap_empty_and_one_task():
    """'valid' with the image smaller than the kernel (SciPy's swap) and empty
    inputs run as one task on the whole array."""
    rng = np.random.default_rng(8)
    small = rng.standard_normal((3, 4))
    big = rng.standard_normal((6, 7))
    for fn in FILTERS:
        y = getattr(gd, fn)(da.from_array(small, chunks=2), big, "valid")
        assert y.npartitions == 1
        assert_close(_sync(y), getattr(signal, fn)(small, big, "valid"), terms=12)
        for a, k, mode in [
            (np.zeros((0, 5)), np.ones((2, 2)), "full"),
            (np.ones((4, 5)), np.zeros((0, 2)), "full"),
            (np.ones((4, 5)), np.zeros((2, 0)), "same"),
        ]:
            kw = dict(mode=mode, boundary="fill", fillvalue=3.0)
            whole = getattr(gpuconv, fn)(a, k, **kw)
            y = getattr(gd, fn)(da.from_array(a, chunks=2), k, **kw)
            assert y.shape == whole.shape
            np.testing.assert_array_equal(_sync(y), whole)


def test_filter_memmap_larger_than_memory_path(tmp_path):
    """The README's recipe: a read-only memory-mapped file through Dask."""
    rng = np.random.default_rng(9)
    a = rng.standard_normal((40, 33)).astype(np.float32)
    path = tmp_path / "img.npy"
    np.save(path, a)
    mm = np.load(path, mmap_mode="r")
    y = gd.convolve2d(da.from_array(mm, chunks=(16, 16)), np.ones((5, 5)), "same",
                      boundary="symm")
    got = y.compute(scheduler="threads")
    assert_close(got, gpuconv.convolve2d(a, np.ones((5, 5)), "same", boundary="symm"),
                 terms=25)
    np.testing.assert_array_equal(np.load(path), a)  # never modified


def test_dask_kernel_is_computed_and_size_limited(monkeypatch):
    a = np.arange(30.0).reshape(5, 6)
    k = da.from_array(np.ones((2, 3)), chunks=1)
    got = _sync(gd.convolve2d(da.from_array(a, chunks=3), k))
    assert_close(got, signal.convolve2d(a, np.ones((2, 3))), terms=6)
    monkeypatch.setattr(gd, "KERNEL_MAX_BYTES", 16)
    with pytest.raises(ValueError, match="in2 is a Dask array of 48 bytes"):
        gd.convolve2d(da.from_array(a, chunks=3), k)
    with pytest.raises(ValueError, match="w is a Dask array"):
        gd.conv2d(da.ones((1, 1, 4, 4)), da.ones((1, 1, 2, 2)))


def _whole_error(fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except (ValueError, TypeError) as exc:
        return exc
    raise AssertionError("the whole-array call did not raise")


ERRORS = [
    ("convolve2d", (np.ones((4, 4)), np.ones((2, 2))), dict(mode="SAME")),
    ("convolve2d", (np.ones((4, 4)), np.ones((2, 2))), dict(boundary="mirror")),
    ("correlate2d", (np.ones((4, 4)), np.ones((2, 2))), dict(boundary="reflect")),
    ("convolve2d", (np.ones((4, 4, 2)), np.ones((2, 2))), {}),
    ("correlate2d", (np.ones((4, 4)), np.ones((2, 2, 1))), {}),
    ("convolve2d", (np.ones((4, 9)), np.ones((6, 2))), dict(mode="valid")),
    ("convolve2d", (np.ones((4, 4)), np.ones((2, 2))), dict(fillvalue=1j)),
    ("convolve2d", (np.ones((4, 4)), np.ones((2, 2))), dict(fillvalue=[1, 2])),
    ("convolve2d", (np.ones((4, 4), np.float16), np.ones((2, 2), np.float16)), {}),
    ("correlate2d", (np.ones((4, 4), int), np.ones((2, 2), int)), dict(method="fft")),
    ("correlate2d", (np.ones((3, 4, 4)), np.ones((2, 2))), dict(axes=(1, 1))),
    ("convolve2d", (np.ones((4, 4)), np.ones((2, 2))), dict(method="fast")),
    ("conv2d", (np.ones((1, 3, 5, 5)), np.ones((2, 2, 3, 3))), {}),
    ("conv2d", (np.ones((1, 4, 5, 5)), np.ones((2, 2, 3, 3))), dict(groups=3)),
    ("conv2d", (np.ones((1, 2, 5, 5)), np.ones((2, 2, 3, 3))), dict(stride=0)),
    ("conv2d", (np.ones((1, 2, 5, 5)), np.ones((2, 2, 7, 3))), {}),
    ("conv2d", (np.ones((1, 2, 5, 5)), np.ones((2, 2, 3, 3))),
     dict(padding_mode="mirror", padding=1)),
    ("conv2d", (np.ones((1, 2, 5, 5)), np.ones((2, 2, 3, 3))), dict(padding="full")),
    ("conv2d", (np.ones((1, 2, 5, 5), int), np.ones((2, 2, 3, 3), int)), {}),
    ("conv2d", (np.ones((1, 2, 5, 5)), np.ones((2, 2, 3, 3))), dict(bias=np.ones(3))),
    ("conv2d", (np.ones((1, 2, 5, 5)), np.ones((2, 2, 3, 3))),
     dict(algorithm="fft")),
    ("conv2d", (np.ones((1, 2, 5, 5)), np.ones((2, 2, 3, 3))), dict(backend="tpu")),
]


@pytest.mark.parametrize(("fn", "args", "kwargs"), ERRORS)
def test_bad_input_same_error_before_any_work(fn, args, kwargs):
    """Same exception type and text as the whole-array call, raised by the call
    itself (not at compute time)."""
    exc = _whole_error(getattr(gpuconv, fn), *args, **kwargs)
    x = da.from_array(args[0], chunks=2)
    with pytest.raises(type(exc), match=re.escape(str(exc))):
        getattr(gd, fn)(x, *args[1:], **kwargs)


def test_unknown_chunk_sizes_and_non_arrays():
    x = da.from_array(np.arange(20.0), chunks=5)
    x = x[x > 3]  # boolean indexing: chunk sizes unknown until computed
    with pytest.raises(ValueError, match="unknown chunk sizes"):
        gd.convolve2d(x[None], np.ones((1, 2)))
    with pytest.raises(TypeError, match="in1 must be a Dask array"):
        gd.correlate2d(5, np.ones((1, 2)))
    # NumPy arrays and lists are accepted as one chunk
    got = _sync(gd.correlate2d([[1.0, 2.0, 3.0]], np.ones((1, 2)), "valid"))
    np.testing.assert_array_equal(got, [[3.0, 5.0]])
    # keywords of the in-memory function reach every chunk's call
    a = np.arange(42.0).reshape(6, 7)
    y = gd.convolve2d(da.from_array(a, chunks=3), np.ones((2, 2)), "same",
                      method="direct", backend="numpy")
    want = signal.convolve2d(a, np.ones((2, 2)), "same")
    np.testing.assert_array_equal(_sync(y), want)
    with pytest.raises(ValueError, match="backend must be one of"):
        gd.convolve2d(da.from_array(a, chunks=3), np.ones((2, 2)), backend="gpu")


@pytest.mark.parametrize(
    "name", ["convolve2d", "correlate2d", "conv2d", "conv2d_backward"]
)
def test_signatures_equal_the_in_memory_ones(name):
    """Same parameter names, kinds (positional or keyword-only) and defaults, in
    the same order, as gpuconv's whole-array function: no ``**kwargs``."""

    def params(fn):
        return [(q.name, q.kind, q.default)
                for q in inspect.signature(fn).parameters.values()]

    assert params(getattr(gd, name)) == params(getattr(gpuconv, name))
    kinds = {q[1] for q in params(getattr(gd, name))}
    assert inspect.Parameter.VAR_KEYWORD not in kinds
    assert inspect.Parameter.VAR_POSITIONAL not in kinds


def test_method_and_backend_reach_every_chunk(monkeypatch):
    """``method``/``backend`` given to gpuconv.dask are what each chunk's call gets."""
    seen = []
    real = gpuconv.correlate2d

    def spy(*args, **kwargs):
        seen.append((kwargs.get("method"), kwargs.get("backend")))
        return real(*args, **kwargs)

    monkeypatch.setattr(gpuconv, "correlate2d", spy)
    a = np.arange(42.0).reshape(6, 7)
    y = gd.correlate2d(da.from_array(a, chunks=3), np.ones((2, 2)), "same",
                       method="fft", backend="numpy")
    got = _sync(y)
    assert_close(got, signal.correlate2d(a, np.ones((2, 2)), "same"), terms=4)
    # the argument check on a stand-in at graph time, then one call per chunk
    chunk_calls = seen[1:]
    assert len(chunk_calls) == y.npartitions > 1
    assert set(chunk_calls) == {("fft", "numpy")}


def test_backward_bad_input():
    x = da.ones((1, 2, 5, 5))
    w = np.ones((2, 2, 3, 3))
    with pytest.raises(ValueError, match="gy must have the output shape"):
        gd.conv2d_backward(da.ones((1, 2, 4, 4)), x, w)
    with pytest.raises(ValueError, match="needs entries"):
        gd.conv2d_backward(da.ones((1, 2, 3, 3)), x, w, needs=("grad",))


# ------------------------------------------------------------------- conv2d

PADDING_MODES = ("zeros", "reflect", "replicate", "circular", "symmetric")
# (stride, padding, dilation, groups, kernel)
GEOMETRIES = [
    (1, 1, 1, 1, (3, 3)),
    (2, "same", 1, 2, (4, 3)),
    ((3, 1), (2, 0, 1, 3), 1, 1, (2, 4)),
    (1, "same", (2, 1), 4, (3, 2)),
    (2, 4, 2, 1, (3, 3)),
    (1, 0, 1, 2, (1, 1)),
    (3, (1, 2), 1, 1, (5, 5)),
]
X_CHUNKS = [(2, 2, 3, 4), (1, 4, (5, 1, 5), (2, 3, 4))]


@pytest.mark.parametrize("padding_mode", PADDING_MODES)
@pytest.mark.parametrize("geom", range(len(GEOMETRIES)))
def test_conv2d_chunked_over_n_h_w(geom, padding_mode):
    stride, padding, dilation, groups, ks = GEOMETRIES[geom]
    rng = np.random.default_rng(geom)
    x = rng.standard_normal((3, 4, 11, 9))
    w = rng.standard_normal((4, 4 // groups, *ks))
    b = rng.standard_normal(4)
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups,
              padding_mode=padding_mode)
    whole = gpuconv.conv2d(x, w, b, **kw)
    terms = w[0].size
    for chunks in X_CHUNKS:
        y = gd.conv2d(da.from_array(x, chunks=chunks), w, b, **kw)
        assert y.shape == whole.shape and y.chunks[1] == (4,)
        assert y.chunks[0] == da.from_array(x, chunks=chunks).chunks[0]
        assert_close(_sync(y), whole, terms=terms)
    if geom < 3:  # an oracle independent of gpuconv too
        assert_close(_sync(y), conv2d_ref(x, w, b, **kw), terms=terms)


def test_conv2d_stride_alignment_and_unbatched():
    """Interior chunk boundaries move to multiples of the stride (documented);
    unbatched (C, H, W) inputs give unbatched outputs; float16 and float32."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 15, 14)).astype(np.float32)
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    xd = da.from_array(x, chunks=(2, (5, 5, 5), (7, 7)))
    y = gd.conv2d(xd, w, stride=2, padding=1)
    # cuts: rows 5 -> 4 and 10 (outputs 2 and 5), columns 7 -> 6 (output 3)
    assert y.chunks[1:] == ((2, 3, 3), (3, 4))
    assert y.dtype == np.float32
    assert_close(_sync(y), gpuconv.conv2d(x, w, stride=2, padding=1), terms=18)
    x16, w16 = x.astype(np.float16), w.astype(np.float16)
    y16 = _sync(gd.conv2d(da.from_array(x16, chunks=(1, 6, 5)), w16, padding="same"))
    assert y16.dtype == np.float16
    assert_close(y16, gpuconv.conv2d(x16, w16, padding="same"), terms=18)


def test_conv2d_empty_batch():
    x = da.zeros((0, 2, 6, 6), chunks=(1, 2, 3, 3))
    w = np.ones((3, 2, 3, 3))
    y = gd.conv2d(x, w, np.arange(3.0), padding=1)
    np.testing.assert_array_equal(_sync(y), np.zeros((0, 3, 6, 6)))


# ----------------------------------------------------------- conv2d_backward


def _check_grads(got, ref, w, gy):
    gx, gw, gb = got
    terms_x = w.shape[0] * w.shape[2] * w.shape[3] * 4
    terms_w = gy.size // gy.shape[-3]
    assert_close(gx, ref.gx, terms=terms_x)
    assert_close(gw, ref.gw, terms=terms_w)
    assert_close(gb, ref.gb, terms=terms_w)


@pytest.mark.parametrize("padding_mode", PADDING_MODES)
@pytest.mark.parametrize("geom", range(len(GEOMETRIES)))
def test_conv2d_backward_chunked(geom, padding_mode):
    """gx chunk by chunk with halos of gy and the border folded back; gw and gb
    summed over chunks with a tree reduction."""
    stride, padding, dilation, groups, ks = GEOMETRIES[geom]
    rng = np.random.default_rng(100 + geom)
    x = rng.standard_normal((3, 4, 11, 9))
    w = rng.standard_normal((4, 4 // groups, *ks))
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups,
              padding_mode=padding_mode)
    gy = rng.standard_normal(gpuconv.conv2d(x, w, **kw).shape)
    ref = gpuconv.conv2d_backward(gy, x, w, **kw)
    chunks = X_CHUNKS[geom % 2]
    xd = da.from_array(x, chunks=chunks)
    gyd = da.from_array(gy, chunks=(2, 4, 3, 2))  # rechunked to conv2d's output
    g = gd.conv2d_backward(gyd, xd, w, **kw)
    assert g.gx.chunks[0] == xd.chunks[0]
    _check_grads(_sync(*g), ref, w, gy)


def _reduction_tree(arr):
    """``(leaves, fan_in, depth)`` of the tree that sums ``arr``'s chunk partials:
    the per-chunk sums, the largest number of inputs of one combining task, and
    the number of combining levels from a leaf to the root."""
    from dask.core import get_dependencies

    hlg = arr.__dask_graph__()
    dsk = dict(hlg)
    layers = hlg.layers
    combine = {k for name, layer in layers.items()
               if name.startswith(("sum-partial-", "sum-aggregate-")) for k in layer}
    leaves = {k for name, layer in layers.items()
              if re.fullmatch(r"sum-[0-9a-f]+", name) for k in layer}
    deps = {k: get_dependencies(dsk, k) for k in combine}
    (root,) = [k for name, layer in layers.items()
               if name.startswith("sum-aggregate-") for k in layer]

    def reached(k):  # the leaves under k, and the combining levels above them
        if k in leaves:
            return {k}, 0
        below = [reached(d) for d in deps[k]]
        return set().union(*(b[0] for b in below)), 1 + max(b[1] for b in below)

    under_root, depth = reached(root)
    assert under_root == leaves  # every chunk's partial sum reaches the result
    return len(leaves), max(len(d) for d in deps.values()), depth


def test_weight_and_bias_gradients_are_tree_reductions():
    """Many chunks: gw and gb are summed by a tree of fan-in <= split_every (8)
    over several levels, not by one task that gathers every chunk; the values
    still equal the whole-array gradients."""
    rng = np.random.default_rng(12)
    x = rng.standard_normal((40, 2, 12, 12))
    w = rng.standard_normal((3, 2, 3, 3))
    gy = rng.standard_normal((40, 3, 10, 10))
    xd = da.from_array(x, chunks=(2, 2, 6, 6))
    g = gd.conv2d_backward(da.from_array(gy, chunks=(2, 3, 5, 5)), xd, w,
                           needs=("weight", "bias"))
    assert g.gx is None
    for part in (g.gw, g.gb):
        assert part.npartitions == 1
        leaves, fan_in, depth = _reduction_tree(part)
        assert leaves == 20 * 2 * 2  # one partial sum per (N, H, W) chunk
        assert fan_in <= 8  # the documented split_every
        assert depth >= 2
    ref = gpuconv.conv2d_backward(gy, x, w, needs=("weight", "bias"))
    gw, gb = _sync(g.gw, g.gb)
    assert_close(gw, ref.gw, terms=40 * 100)
    assert_close(gb, ref.gb, terms=40 * 100)


def test_conv2d_backward_needs_unbatched_float16():
    rng = np.random.default_rng(12)
    x = rng.standard_normal((3, 10, 7))
    w = rng.standard_normal((2, 3, 3, 2))
    kw = dict(stride=2, padding=(1, 0, 2, 1), padding_mode="reflect")
    gy = rng.standard_normal(gpuconv.conv2d(x, w, **kw).shape)
    xd = da.from_array(x, chunks=(3, 4, 3))
    for needs in [("input",), ("weight",), ("bias",), ("weight", "bias")]:
        g = gd.conv2d_backward(da.from_array(gy), xd, w, needs=needs, **kw)
        ref = gpuconv.conv2d_backward(gy, x, w, needs=needs, **kw)
        for got, want in zip(g, ref, strict=True):
            assert (got is None) == (want is None)
            if got is not None:
                assert_close(_sync(got), want, terms=60)
    x16, w16, gy16 = (a.astype(np.float16) for a in (x, w, gy))
    g = _sync(*gd.conv2d_backward(da.from_array(gy16), da.from_array(x16, chunks=3),
                                  w16, **kw))
    ref = gpuconv.conv2d_backward(gy16, x16, w16, **kw)
    for got, want in zip(g, ref, strict=True):
        assert got.dtype == np.float16
        assert_close(got, want, terms=60)


def test_precision_reaches_every_chunk():
    """precision='tf32' (keyword or a use_precision block around the graph's
    construction) gives the whole-array TF32 result, which differs from FP32."""
    rng = np.random.default_rng(14)
    x = rng.standard_normal((2, 3, 12, 11)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    gy = rng.standard_normal((2, 4, 12, 11)).astype(np.float32)
    xd, gyd = da.from_array(x, chunks=(1, 3, 5, 6)), da.from_array(gy, chunks=-1)
    want = gpuconv.conv2d(x, w, padding=1, precision="tf32")
    assert not np.array_equal(want, gpuconv.conv2d(x, w, padding=1))
    assert_close(_sync(gd.conv2d(xd, w, padding=1, precision="tf32")), want, terms=27)
    with gpuconv.use_precision("tf32"):
        y = gd.conv2d(xd, w, padding=1)
    assert_close(_sync(y), want, terms=27)
    g = gd.conv2d_backward(gyd, xd, w, padding=1, precision="tf32")
    ref = gpuconv.conv2d_backward(gy, x, w, padding=1, precision="tf32")
    for got, r in zip(g, ref, strict=True):
        assert_close(_sync(got), r, terms=264)


def test_one_pixel_axis_next_to_zero_padding():
    """A window ``[row 0, fill, fill...]`` (a one-row image padded after it) is one
    copied row and fill: it once hung the graph build (the fill's -1 was taken for
    row 0's reversed neighbour)."""
    rng = np.random.default_rng(15)
    x = rng.standard_normal((2, 2, 1, 11))
    w = rng.standard_normal((3, 2, 5, 2))
    kw = dict(stride=(2, 1), padding=(0, 4, 1, 2), dilation=(1, 2))
    xd = da.from_array(x, chunks=(1, 2, 1, (10, 1)))
    assert_close(_sync(gd.conv2d(xd, w, **kw)), gpuconv.conv2d(x, w, **kw), terms=20)
    gy = rng.standard_normal(gpuconv.conv2d(x, w, **kw).shape)
    ref = gpuconv.conv2d_backward(gy, x, w, **kw)
    _check_grads(_sync(*gd.conv2d_backward(da.from_array(gy), xd, w, **kw)), ref, w,
                 gy)
    a = rng.standard_normal((1, 9))
    k = rng.standard_normal((4, 3))
    assert_close(_sync(gd.convolve2d(da.from_array(a, chunks=(1, 4)), k, "full")),
                 gpuconv.convolve2d(a, k, "full"), terms=12)


def test_conv2d_backward_empty_batch():
    x = da.zeros((0, 2, 6, 6), chunks=(1, 2, 3, 3))
    g = gd.conv2d_backward(da.zeros((0, 3, 4, 4)), x, np.ones((3, 2, 3, 3)))
    gx, gw, gb = _sync(*g)
    assert gx.shape == (0, 2, 6, 6) and not gw.any() and not gb.any()


# ------------------------------------------------------------ the chunk plan


@given(
    n=st.integers(1, 40),
    cuts=st.lists(st.integers(1, 39), max_size=6),
    before=st.integers(0, 12),
    after=st.integers(0, 12),
    k=st.integers(1, 9),
    dilation=st.integers(1, 3),
    stride=st.integers(1, 4),
    min_chunk=st.integers(1, 8),
)
def test_plan_axis_windows_are_right(n, cuts, before, after, k, dilation, stride,
                                     min_chunk):
    """Each output chunk's window lies in its overlapped chunk and is exactly the
    extended input its outputs read; halos never exceed a neighbouring chunk."""
    extent = dilation * (k - 1) + 1
    assume(n + before + after >= extent)
    bounds = sorted({c for c in cuts if c < n})
    chunks = tuple(np.diff([0, *bounds, n]).tolist())
    plan = gd._plan_axis(n, chunks, before, after, extent, stride, min_chunk)
    assert sum(plan.src_chunks) == n
    assert sum(plan.p_chunks) == n + before + after
    assert plan.out == (n + before + after - extent) // stride + 1
    assert sum(plan.out_chunks) == plan.out
    assert min(plan.out_chunks) >= 1
    left, right = plan.depth
    if len(plan.p_chunks) > 1:
        assert min(plan.p_chunks) >= max(left, right)
    starts = np.cumsum([0, *plan.out_chunks])
    pstarts = np.cumsum([0, *plan.p_chunks])
    for b, (start, length) in enumerate(plan.windows()):
        lo = pstarts[b] - (left if b else 0)
        hi = pstarts[b + 1] + (right if b < len(plan.p_chunks) - 1 else 0)
        assert start >= 0 and lo + start + length <= hi
        assert lo + start == starts[b] * stride
        assert length == (starts[b + 1] - starts[b] - 1) * stride + extent


# ------------------------------------------------------ the real local cluster


def test_cluster_has_two_worker_processes(client):
    info = client.scheduler_info(n_workers=-1) if _takes_n_workers(client) else (
        client.scheduler_info())
    workers = info["workers"]
    assert len(workers) == 2
    assert all(addr.startswith("tcp://127.0.0.1:") for addr in workers)
    pids = client.run(lambda: __import__("os").getpid())
    assert len(set(pids.values())) == 2


def _takes_n_workers(client):
    import inspect

    return "n_workers" in inspect.signature(client.scheduler_info).parameters


def test_cluster_filters(client):
    rng = np.random.default_rng(20)
    a = rng.standard_normal((64, 48))
    xd = da.from_array(a, chunks=((20, 7, 30, 7), (5, 25, 18)))
    cases = [
        ("convolve2d", np.ones((4, 5)) / 20, dict(mode="same", boundary="symm")),
        ("correlate2d", rng.standard_normal((9, 2)),
         dict(mode="full", boundary="wrap")),
        ("convolve2d", rng.standard_normal((3, 3)),
         dict(mode="valid", boundary="fill", fillvalue=2.0)),
    ]
    for fn, k, kw in cases:
        y = getattr(gd, fn)(xd, k, **kw)
        got = y.compute()  # the client is the default scheduler here
        assert_close(got, getattr(signal, fn)(a, k, **kw), terms=k.size)
        np.testing.assert_array_equal(got, _sync(y))


def test_cluster_conv2d_forward_backward(client):
    """The two workers give the same bits as the synchronous scheduler: the
    reduction tree of gw/gb is fixed by the chunks, not by the scheduling."""
    rng = np.random.default_rng(21)
    x = rng.standard_normal((4, 3, 20, 18))
    w = rng.standard_normal((6, 3, 3, 3))
    b = rng.standard_normal(6)
    kw = dict(stride=2, padding="same", dilation=2, padding_mode="circular")
    xd = da.from_array(x, chunks=(1, 3, (9, 2, 9), (6, 12)))
    y = gd.conv2d(xd, w, b, **kw)
    got = client.compute(y).result()
    assert_close(got, gpuconv.conv2d(x, w, b, **kw), terms=27)
    gy = rng.standard_normal(y.shape)
    g = gd.conv2d_backward(da.from_array(gy, chunks=y.chunks), xd, w, **kw)
    grads = client.compute(list(g), sync=True)
    _check_grads(grads, gpuconv.conv2d_backward(gy, x, w, **kw), w, gy)
    for a, s in zip(grads, _sync(*g), strict=True):
        np.testing.assert_array_equal(a, s)


# ---------------------------------------------------------------- packaging


def test_import_gpuconv_does_not_import_dask():
    code = (
        "import sys, gpuconv, numpy as np; gpuconv.conv2d(np.ones((1, 1, 2, 2)), "
        "np.ones((1, 1, 1, 1))); print('dask' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.gpu
def test_cupy_chunks_run_on_cuda():
    """CuPy chunks stay CuPy and use the CUDA kernels; NumPy kernels follow them."""
    import cupy

    rng = np.random.default_rng(30)
    a = rng.standard_normal((50, 41)).astype(np.float32)
    k = rng.standard_normal((4, 3)).astype(np.float32)
    xd = da.from_array(a, chunks=(20, 15)).map_blocks(cupy.asarray)
    y = gd.convolve2d(xd, k, "same", boundary="symm")
    got = _sync(y)
    assert isinstance(got, cupy.ndarray)
    assert_close(cupy.asnumpy(got), signal.convolve2d(a, k, "same", boundary="symm"),
                 terms=12)
    x = rng.standard_normal((2, 3, 17, 16)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    xd = da.from_array(x, chunks=(1, 3, 8, 9)).map_blocks(cupy.asarray)
    got = _sync(gd.conv2d(xd, w, stride=2, padding=1, padding_mode="reflect"))
    assert isinstance(got, cupy.ndarray)
    want = gpuconv.conv2d(x, w, stride=2, padding=1, padding_mode="reflect")
    assert_close(cupy.asnumpy(got), want, terms=27)


def test_public_docstrings_have_parameters_and_examples():
    from tests.test_cli import numpydoc_gaps

    assert numpydoc_gaps(gd) == []


def test_docstring_examples():
    """The examples in gpuconv/dask.py's docstrings run and print what they say
    (on the synchronous scheduler, even while the cluster's client is the
    default)."""
    with dask.config.set(scheduler="sync"):
        result = doctest.testmod(gd, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 4 and result.failed == 0
