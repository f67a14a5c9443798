"""gpuconv.dask on CuPy chunks, with the stand-in CuPy (no GPU): every chunk is
filtered by the CUDA path (its kernels run on the CPU emulation harness) and no
chunk or halo passes through host memory: ``.get()`` and ``cupy.asnumpy`` are
refused, the NumPy backend is never asked, and every window handed to the
in-memory call and every result chunk is a (stand-in) CuPy array. The graph has one
task per output chunk on top of the input's own tasks (conv2d_backward: one per
chunk of gx and one per partial sum of gw), and no overlap or concatenate layers."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest

import gpuconv
import gpuconv.dask as gd
from gpuconv import _backend
from gpuconv._null_device import null_cuda
from tests._emu_helpers import EMULATED, prepared_device
from tests._tol import assert_close

pytestmark = EMULATED


class EmulatedCupy:
    """The CUDA ops' device: stand-in CuPy buffers, launches on the emulator."""

    name = "emulated"
    _dev = None

    def __init__(self, cp):
        self.xp = cp
        self.launches = 0
        if EmulatedCupy._dev is None:
            EmulatedCupy._dev = prepared_device(
                ["filter2d.cu", "conv2d_forward.cu", "conv2d_pad.cu",
                 "conv2d_backward_input.cu", "conv2d_backward_weight.cu"])

    def launch(self, launch):
        self.launches += 1
        self._dev.launch(launch)


CASES = [
    ("convolve2d", (5, 5), dict(mode="same")),
    ("convolve2d", (4, 3), dict(mode="full", boundary="symm")),
    ("correlate2d", (3, 6), dict(mode="same", boundary="wrap")),
    ("convolve2d", (3, 3), dict(mode="valid")),
    ("correlate2d", (9, 9), dict(mode="same", boundary="fill", fillvalue=1.5)),
]


@pytest.mark.parametrize("name, kshape, kw", CASES)
def test_cupy_chunks_stay_on_the_device(name, kshape, kw, monkeypatch):
    rng = np.random.default_rng(0)
    img = rng.standard_normal((37, 45)).astype(np.float32)
    ker = rng.standard_normal(kshape).astype(np.float32)
    want = getattr(gpuconv, name)(img, ker, **kw)
    chunks = ((10, 15, 12), (20, 7, 18))

    def host(*a, **k):
        raise AssertionError("a chunk or halo was copied to the host")

    with null_cuda(EmulatedCupy) as dev:
        cp = dev.xp
        monkeypatch.setattr(cp.ndarray, "get", host)
        monkeypatch.setattr(cp, "asnumpy", host)
        seen = []
        real_fn = getattr(gpuconv, name)

        def spy(win, k, **kwargs):
            out = real_fn(win, k, **kwargs)
            seen.append((win, out))
            return out

        monkeypatch.setattr(gpuconv, name, spy)
        x = da.from_array(cp.asarray(img), chunks=chunks, asarray=False, name=False)
        y = getattr(gd, name)(x, cp.asarray(ker), **kw)
        # the graph is built (its argument checks ran the NumPy backend on a
        # one-pixel stand-in of the image); from now on the host computes nothing
        seen.clear()
        real_ops = _backend.backend_ops
        monkeypatch.setattr(_backend, "backend_ops",
                            lambda n: host() if n == "numpy" else real_ops(n))
        n_in = len(dict(x.__dask_graph__()))
        assert len(dict(y.__dask_graph__())) == n_in + y.npartitions
        with dask.config.set(scheduler="sync"):
            blocks = dask.compute(*y.to_delayed().ravel())
        assert len(seen) == y.npartitions and dev.launches >= y.npartitions
        assert all(isinstance(w, cp.ndarray) and isinstance(o, cp.ndarray)
                   for w, o in seen)
        assert all(isinstance(b, cp.ndarray) for b in blocks)
    got = np.block([[np.asarray(b) for b in row] for row in
                    np.array(blocks, dtype=object).reshape(y.numblocks)])
    assert got.shape == want.shape
    assert_close(got, want, np.float32, terms=ker.size, scale=np.abs(want).max())


@pytest.mark.parametrize("kw", [dict(padding=1),
                                dict(padding=2, stride=2, padding_mode="reflect")])
def test_cupy_chunks_of_conv2d_stay_on_the_device(kw, monkeypatch):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 3, 21, 17)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    want = gpuconv.conv2d(x, w, b, **kw)

    def host(*a, **k):
        raise AssertionError("a chunk or halo was copied to the host")

    with null_cuda(EmulatedCupy) as dev:
        cp = dev.xp
        monkeypatch.setattr(cp.ndarray, "get", host)
        monkeypatch.setattr(cp, "asnumpy", host)
        dx = da.from_array(cp.asarray(x), chunks=((2, 3), 3, (8, 13), (9, 8)),
                           asarray=False, name=False)
        y = gd.conv2d(dx, cp.asarray(w), cp.asarray(b), **kw)
        real_ops = _backend.backend_ops
        monkeypatch.setattr(_backend, "backend_ops",
                            lambda n: host() if n == "numpy" else real_ops(n))
        layers = y.__dask_graph__().layers
        assert len(layers[y.name]) == y.npartitions  # one task per output chunk
        assert not [n for n in layers if "overlap" in n or "concatenate" in n]
        with dask.config.set(scheduler="sync"):
            blocks = dask.compute(*y.to_delayed().ravel())
        assert all(isinstance(blk, cp.ndarray) for blk in blocks)
        assert dev.launches >= y.npartitions
    grid = np.array(blocks, dtype=object).reshape(y.numblocks)
    got = np.block([[[[np.asarray(grid[i, j, h, v]) for v in range(grid.shape[3])]
                      for h in range(grid.shape[2])] for j in range(grid.shape[1])]
                    for i in range(grid.shape[0])])
    assert got.shape == want.shape
    assert_close(got, want, np.float32, terms=27, scale=np.abs(want).max())


@pytest.mark.parametrize("kw", [dict(padding=1),
                                dict(padding=(2, 1, 0, 3), stride=2, dilation=(1, 2),
                                     padding_mode="reflect"),
                                dict(padding=2, padding_mode="circular")])
def test_cupy_chunks_of_conv2d_backward_stay_on_the_device(kw, monkeypatch):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 3, 19, 17)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    gy = rng.standard_normal(gpuconv.conv2d(x, w, **kw).shape).astype(np.float32)
    want = gpuconv.conv2d_backward(gy, x, w, **kw)

    def host(*a, **k):
        raise AssertionError("a chunk or halo was copied to the host")

    with null_cuda(EmulatedCupy) as dev:
        cp = dev.xp
        monkeypatch.setattr(cp.ndarray, "get", host)
        monkeypatch.setattr(cp, "asnumpy", host)
        # x's chunks on the stride, gy in the chunks the forward gives y: no
        # rechunk (the stand-in's concatenation, which a rechunk uses, makes host
        # arrays; real CuPy's does not)
        dx = da.from_array(cp.asarray(x), chunks=((1, 2), 3, (8, 11), (10, 7)),
                           asarray=False, name=False)
        y_chunks = gd.conv2d(dx, cp.asarray(w), **kw).chunks
        dgy = da.from_array(cp.asarray(gy), chunks=y_chunks, asarray=False,
                            name=False)
        g = gd.conv2d_backward(dgy, dx, cp.asarray(w), **kw)
        real_ops = _backend.backend_ops
        monkeypatch.setattr(_backend, "backend_ops",
                            lambda n: host() if n == "numpy" else real_ops(n))
        layers = {}
        for part in g:
            layers.update(part.__dask_graph__().layers)
        assert not [n for n in layers if "overlap" in n or "concatenate" in n]
        gx_layer = [n for n in layers if n.startswith("gpuconv-gx-")]
        gw_layer = [n for n in layers if n.startswith("gpuconv-gw-")]
        assert len(gx_layer) == len(gw_layer) == 1
        assert len(layers[gx_layer[0]]) == g.gx.npartitions  # one task per chunk
        # one partial of gw per chunk of gy (rechunked to the forward's output
        # chunks, which correspond one to one to x's)
        assert len(layers[gw_layer[0]]) == g.gx.npartitions
        # every gx chunk and every partial of gw is computed on the device (the
        # final gw/gb sums and the assembly of gx go through the stand-in's
        # concatenation, which makes host arrays: looked at for values only)
        graph = dict(g.gw.__dask_graph__())
        graph.update(dict(g.gx.__dask_graph__()))
        keys = [k for k in graph if k[0] in (gx_layer[0], gw_layer[0])]
        with dask.config.set(scheduler="sync"):
            blocks = dask.get(graph, keys)
            got = dask.compute(*g)
        assert len(blocks) == 2 * g.gx.npartitions
        assert all(isinstance(b, cp.ndarray) for b in blocks)
        assert dev.launches > g.gx.npartitions
    for a, r, terms in zip(got, want, (4 * 9 * 4, gy.size // 4, gy.size // 4),
                           strict=True):
        a = np.asarray(a)
        assert a.shape == r.shape and a.dtype == r.dtype
        assert_close(a, r, np.float32, terms=terms, scale=np.abs(r).max())
