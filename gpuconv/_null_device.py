"""A stand-in CuPy and a null device: gpuconv's CUDA path without a GPU.

:func:`make_cupy` builds a ``cupy`` module whose arrays are NumPy arrays of a
subclass (:class:`DeviceArray`) that gpuconv's backend chooser takes for CuPy
arrays, so the public API selects the ``'cuda'`` backend and runs the CUDA ops'
host code (normalisation, plan caches, launch planning, allocation). Where the
launches go is the caller's choice: the test plugin ``tests/_gpu_dry_run.py`` runs
them on the CPU emulation harness; :func:`null_cuda` (``python -m gpuconv bench
--overhead``) drops them, so what remains to time is gpuconv's own Python work per
call, the host overhead a GPU call pays on top of CuPy's allocation and launch.
Nothing here touches a GPU or imports the real CuPy.
"""

from __future__ import annotations

import contextlib
import sys
import time
import types
from collections.abc import Iterator
from typing import Any

import numpy as np


class DeviceArray(np.ndarray):
    """What the stand-in ``cupy`` allocates (host memory, "device" by type)."""

    __module__ = "cupy_dry_run"

    @property
    def __cuda_array_interface__(self) -> dict[str, Any]:
        return self.__array_interface__

    def get(self) -> np.ndarray:
        return np.array(self)


class DeviceOps:
    """What the stand-in CuPy did while :func:`count_device_ops` was active: each
    new device array is an allocation (``allocs``: new memory, i.e. an output, a
    copy, a cast, an elementwise result, an upload; their shapes) or a view
    (``views``: a reshape, slice, broadcast or axis move of existing memory). On a
    real GPU each allocation is a CuPy allocation (plus, for copies, casts and
    elementwise results, a kernel launch) and each view a CuPy call, each costing
    microseconds of host time; :class:`NullDevice` counts gpuconv's own launches.
    """

    def __init__(self) -> None:
        self.allocs: list[tuple[int, ...]] = []
        self.views = 0

    def _finalize(self, arr: np.ndarray, obj: Any) -> None:
        # new memory: an array of the subclass made by NumPy (astype, copy), or a
        # new NumPy result (empty, ufuncs, copies) seen through the subclass; a view
        # of a DeviceArray has a DeviceArray base (NumPy stops collapsing bases at
        # the subclass boundary)
        base = arr.base
        if base is None or (type(base) is np.ndarray and base.flags.owndata):
            self.allocs.append(arr.shape)
        else:
            self.views += 1


@contextlib.contextmanager
def count_device_ops() -> Iterator[DeviceOps]:
    """Counts the stand-in CuPy's allocations and views (:class:`DeviceOps`) in the
    block (one counter at a time; nothing is counted outside one)."""
    ops = DeviceOps()
    if "__array_finalize__" in DeviceArray.__dict__:
        raise RuntimeError("count_device_ops is already active")

    def finalize(self: np.ndarray, obj: Any) -> None:
        ops._finalize(self, obj)

    DeviceArray.__array_finalize__ = finalize  # type: ignore[method-assign]
    try:
        yield ops
    finally:
        del DeviceArray.__array_finalize__


def _wrap(value: Any) -> Any:
    if isinstance(value, np.ndarray) and not isinstance(value, DeviceArray):
        return value.view(DeviceArray)
    if isinstance(value, tuple):
        return tuple(_wrap(v) for v in value)
    return value


class _Namespace(types.ModuleType):
    """NumPy (or a NumPy submodule) whose array results are DeviceArrays."""

    def __init__(self, name: str, base: Any) -> None:
        super().__init__(name)
        self._base = base

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._base, name)
        if isinstance(value, types.ModuleType):
            value = _Namespace(f"{self.__name__}.{name}", value)
        elif callable(value) and not isinstance(value, type):
            fn = value

            def call(*args: Any, **kwargs: Any) -> Any:
                return _wrap(fn(*args, **kwargs))

            value = call
        else:
            return value
        setattr(self, name, value)  # made once: CuPy's own lookups cost nothing
        return value


class _Generator:
    def __init__(self, seed: Any = None) -> None:
        self._rng = np.random.default_rng(seed)

    def __getattr__(self, name: str) -> Any:
        fn = getattr(self._rng, name)
        return lambda *a, **k: _wrap(np.asarray(fn(*a, **k)))


class _Pool:
    def free_all_blocks(self) -> None:
        pass


class _Device:
    id = 0
    mem_info = (0, 0)  # no free memory: memory-gated tests skip
    compute_capability = "90"
    attributes = {"ClockRate": 1980000, "MultiProcessorCount": 132,
                  "ComputeCapabilityMajor": 9, "ComputeCapabilityMinor": 0,
                  "L2CacheSize": 1 << 20}

    def __init__(self, device_id: int = 0) -> None:
        pass

    def synchronize(self) -> None:
        pass


class _Event:
    """Host-clock stand-in for ``cupy.cuda.Event``."""

    t = 0.0

    def record(self, stream: Any = None) -> None:
        self.t = time.perf_counter()

    def synchronize(self) -> None:
        pass


def _elapsed_ms(start: _Event, end: _Event) -> float:
    return max(end.t - start.t, 1e-9) * 1e3


def make_cupy() -> types.ModuleType:
    """The stand-in ``cupy`` module."""
    cp = _Namespace("cupy", np)
    cp.__version__ = "0+dry-run"
    cp.ndarray = DeviceArray
    cp.asarray = lambda a, dtype=None, order=None: _wrap(
        np.array(a, dtype=dtype, order=order or "K"))
    cp.asnumpy = lambda a: np.array(a)
    cp.get_default_memory_pool = lambda: _Pool()
    cp.get_default_pinned_memory_pool = lambda: _Pool()
    cp.random = types.SimpleNamespace(default_rng=_Generator)
    # CuPy's signature (no writeable=): what runs here must run on the real one
    cp.lib = types.SimpleNamespace(stride_tricks=types.SimpleNamespace(
        as_strided=lambda x, shape=None, strides=None: _wrap(
            np.lib.stride_tricks.as_strided(x, shape, strides))))
    runtime = types.SimpleNamespace(
        getDeviceCount=lambda: 1, memGetInfo=lambda: (0, 0),
        getDeviceProperties=lambda i: {"name": b"dry run (EmulatedDevice)"},
    )
    cp.cuda = types.SimpleNamespace(
        runtime=runtime, Device=_Device, Event=_Event, get_elapsed_time=_elapsed_ms,
        set_allocator=lambda *a: None, set_pinned_memory_allocator=lambda *a: None,
    )
    return cp


def make_cupyx() -> dict[str, types.ModuleType]:
    """``cupyx``, ``cupyx.scipy``, ``cupyx.scipy.signal``, ``.ndimage`` and ``.fft``
    on SciPy's (``cupyx.scipy.fft`` has SciPy's signatures: ``norm=``,
    ``overwrite_x=``)."""
    import scipy.fft
    import scipy.ndimage
    import scipy.signal

    signal = _Namespace("cupyx.scipy.signal", scipy.signal)
    ndimage = _Namespace("cupyx.scipy.ndimage", scipy.ndimage)
    fft = _Namespace("cupyx.scipy.fft", scipy.fft)
    scipy_mod = types.ModuleType("cupyx.scipy")
    scipy_mod.signal = signal
    scipy_mod.ndimage = ndimage
    scipy_mod.fft = fft
    cupyx = types.ModuleType("cupyx")
    cupyx.scipy = scipy_mod
    return {"cupyx": cupyx, "cupyx.scipy": scipy_mod, "cupyx.scipy.signal": signal,
            "cupyx.scipy.ndimage": ndimage, "cupyx.scipy.fft": fft}


class NullDevice:
    """A device whose launches do nothing (counted); ``xp`` the stand-in CuPy."""

    name = "null"

    def __init__(self, xp: Any) -> None:
        self.xp = xp
        self.launches = 0

    def launch(self, launch: Any) -> None:
        self.launches += 1


@contextlib.contextmanager
def null_cuda(make_device: Any = NullDevice) -> Iterator[Any]:
    """The stand-in CuPy in ``sys.modules`` (a real one is put back after) and the
    CUDA ops' default device ``make_device(cupy)`` (a :class:`NullDevice`, or e.g.
    one that runs the launches on the CPU emulation harness); yields the device."""
    from gpuconv import _backend, _gpu_conv, _gpu_filter, _plan_cache

    stand_ins = {"cupy": make_cupy(), **make_cupyx()}
    names = tuple(stand_ins)
    saved_modules = {n: sys.modules.get(n) for n in names}
    saved = (_backend._cupy_state, _gpu_conv.default_device,
             _gpu_filter._default_device)
    cp = stand_ins["cupy"]
    dev = make_device(cp)
    for n in names:
        sys.modules.pop(n, None)
    sys.modules.update(stand_ins)  # cupyx too: never the real one on the stand-in
    _backend._cupy_state = None
    _gpu_conv.default_device = lambda: dev
    _gpu_filter._default_device = lambda: dev
    _plan_cache.clear()
    try:
        yield dev
    finally:
        for n, mod in saved_modules.items():
            if mod is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = mod
        (_backend._cupy_state, _gpu_conv.default_device,
         _gpu_filter._default_device) = saved
        _plan_cache.clear()  # its plans launch on the null device
