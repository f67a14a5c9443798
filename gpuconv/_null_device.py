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

The stand-in's ``cupy.fft`` and ``cupyx.scipy.fft`` transforms follow CuPy's own
code path (its pads, casts, copies, outputs and normalisation passes, its
signatures and result dtypes) with NumPy's values; :func:`count_device_ops` counts
the allocations and views, and the bytes of those steps and of the elementwise
operations (:class:`DeviceOps`, a proxy of the device memory traffic;
``bench/fft_traffic_proxy.py``).
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
import types
from collections.abc import Iterator
from numbers import Number
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


def _owns_memory(arr: np.ndarray) -> bool:
    """Whether a DeviceArray is new memory (CuPy: ``arr.base is None``) rather than
    a view: an array of the subclass made by NumPy (astype, copy), or a new NumPy
    result seen through the subclass; a view of a DeviceArray has a DeviceArray
    base (NumPy stops collapsing bases at the subclass boundary)."""
    base = arr.base
    return base is None or (type(base) is np.ndarray and base.flags.owndata)


class DeviceOps:
    """What the stand-in CuPy did while :func:`count_device_ops` was active.

    ``allocs``: the shape of each new device array (an output, a copy, a cast, an
    elementwise result, an upload, and the stand-in FFT's hidden ones);
    ``alloc_bytes``: their bytes; ``views``: new arrays on existing memory (a
    reshape, slice, broadcast or axis move). On a real GPU each allocation is a
    CuPy allocation (plus, for copies, casts and elementwise results, a kernel
    launch) and each view a CuPy call, each costing microseconds of host time;
    :class:`NullDevice` counts gpuconv's own launches.

    Device memory traffic, a proxy (bytes the work must move through device
    memory at least; nothing about caches, cuFFT's internal passes or speed):

    - ``passes``: ``(label, bytes)`` per step of the stand-in ``cupy.fft`` /
      ``cupyx.scipy.fft``, which follows CuPy's code path (``cupy/fft/_fft.py``):
      ``astype`` (read + write), ``pad`` (zeros written, then the data read and
      written into them), ``copy`` of a view or a non-contiguous input,
      ``c2r-copy`` (CuPy keeps a C2R transform's input), ``contiguous``
      (``ascontiguousarray``), one transform per cuFFT plan execution (``C2C 1-D``,
      ``R2C 2-D``, ...: the input read and the output written once, a lower bound
      on cuFFT's own passes) and ``norm`` (``out /= n``: read + write);
    - ``elementwise``: ``(label, bytes)`` per NumPy ufunc call on device arrays
      (``multiply``, ``add.reduce``, ``matmul``, in place or not: the array
      operands read, the result written; an operand the ufunc broadcasts read
      once) and per ``a[key] = b`` (``setitem``: ``b`` read, the region written),
      outside the FFT steps;
    - ``written_bytes``: the other allocations (copies, casts, uploads, ``empty``
      filled by a kernel), each counted as written once (its ``nbytes``; the reads
      of a copy or cast are not seen);
    - ``bytes_moved``: the sum of the three.

    Not seen: the reads of copies and casts made outside the FFT steps, and
    gpuconv's own kernel launches (counted by :class:`NullDevice`; their traffic
    is not).
    """

    def __init__(self) -> None:
        self.allocs: list[tuple[int, ...]] = []
        self.alloc_bytes = 0
        self.views = 0
        self.passes: list[tuple[str, int]] = []
        self.elementwise: list[tuple[str, int]] = []
        self.written_bytes = 0
        self._in_step = 0

    @property
    def fft_bytes(self) -> int:
        """Bytes moved by the stand-in FFT's steps (``passes``)."""
        return sum(n for _, n in self.passes)

    @property
    def elementwise_bytes(self) -> int:
        """Bytes moved by the ufunc calls and item assignments (``elementwise``)."""
        return sum(n for _, n in self.elementwise)

    @property
    def bytes_moved(self) -> int:
        """``fft_bytes + elementwise_bytes + written_bytes``: the traffic proxy."""
        return self.fft_bytes + self.elementwise_bytes + self.written_bytes

    def _finalize(self, arr: np.ndarray, obj: Any) -> None:
        if _owns_memory(arr):
            self.allocs.append(arr.shape)
            self.alloc_bytes += arr.nbytes
            if not self._in_step:  # an FFT step or a ufunc counts its own bytes
                self.written_bytes += arr.nbytes
        else:
            self.views += 1

    def _ufunc(self, ufunc: Any, method: str, inputs: tuple, kwargs: dict) -> Any:
        """The ufunc on plain views of the device arrays, its results as
        DeviceArrays (``out=`` ones returned as given), its bytes recorded."""
        def plain(x: Any) -> Any:
            return x.view(np.ndarray) if isinstance(x, DeviceArray) else x

        out = kwargs.get("out")
        if out is not None:
            kwargs["out"] = tuple(plain(o) for o in out)
        read = sum(x.nbytes for x in inputs if isinstance(x, np.ndarray))
        self._in_step += 1  # the results' allocation is this pass's write
        try:
            result = getattr(ufunc, method)(*map(plain, inputs), **kwargs)
            results = result if isinstance(result, tuple) else (result,)
            if out is not None:
                results = tuple(out) + results[len(out):]
            results = tuple(_wrap(r) for r in results)
        finally:
            self._in_step -= 1
        written = sum(r.nbytes for r in results if isinstance(r, np.ndarray))
        if not self._in_step:
            name = ufunc.__name__
            if method != "__call__":
                name = f"{name}.{method}"
            self.elementwise.append((name, read + written))
        if result is None:
            return None
        return results if isinstance(result, tuple) else results[0]

    def _setitem(self, arr: np.ndarray, key: Any, value: Any) -> None:
        target = arr.view(np.ndarray)
        if isinstance(value, DeviceArray):
            value = value.view(np.ndarray)
        target[key] = value
        if not self._in_step:
            region = target[key]
            written = region.nbytes if isinstance(region, np.ndarray) else arr.itemsize
            read = value.nbytes if isinstance(value, np.ndarray) else 0
            self.elementwise.append(("setitem", read + written))


#: the active counter (at most one), seen by the stand-in FFT's steps
_ACTIVE: list[DeviceOps] = []


@contextlib.contextmanager
def count_device_ops() -> Iterator[DeviceOps]:
    """Counts the stand-in CuPy's allocations, views and traffic
    (:class:`DeviceOps`) in the block (one counter at a time; nothing is counted
    outside one)."""
    ops = DeviceOps()
    if "__array_finalize__" in DeviceArray.__dict__:
        raise RuntimeError("count_device_ops is already active")

    def finalize(self: np.ndarray, obj: Any) -> None:
        ops._finalize(self, obj)

    def array_ufunc(self: np.ndarray, ufunc: Any, method: str, *inputs: Any,
                    **kwargs: Any) -> Any:
        return ops._ufunc(ufunc, method, inputs, kwargs)

    def setitem(self: np.ndarray, key: Any, value: Any) -> None:
        ops._setitem(self, key, value)

    DeviceArray.__array_finalize__ = finalize  # type: ignore[method-assign]
    DeviceArray.__array_ufunc__ = array_ufunc  # type: ignore[method-assign]
    DeviceArray.__setitem__ = setitem  # type: ignore[method-assign]
    _ACTIVE.append(ops)
    try:
        yield ops
    finally:
        _ACTIVE.clear()
        del DeviceArray.__array_finalize__
        del DeviceArray.__array_ufunc__
        del DeviceArray.__setitem__


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


# ---------------------------------------------------------------------------------
# cupy.fft and cupyx.scipy.fft: CuPy's code path, NumPy's values
#
# A port of the decisions of cupy/fft/_fft.py (CuPy main: _fft, _fftn, _cook_shape,
# _exec_fft, _exec_fftn, _default_fft_func with n-D plans enabled, CuPy's default;
# no plan objects, no callbacks, CUDA not HIP): each pad, cast, copy, output and
# normalisation CuPy makes is made here too, as a DeviceArray operation (so
# count_device_ops sees it) recorded as a step with its bytes; the transform values
# are NumPy's (unnormalised, then normalised as CuPy does).

_FORWARD, _INVERSE = -1, 1  # cufft.CUFFT_FORWARD, cufft.CUFFT_INVERSE


def _step(label: str | None, nbytes: int, make: Any) -> Any:
    """``make()``, recorded as one FFT step moving ``nbytes`` (DeviceOps.passes);
    ``label`` None: an output whose write the transform's step counts."""
    ops = _ACTIVE[0] if _ACTIVE else None
    if ops is None:
        return make()
    ops._in_step += 1
    try:
        out = make()
    finally:
        ops._in_step -= 1
    if label is not None:
        ops.passes.append((label, nbytes))
    return out


def _new(shape: Any, dtype: Any, order: str = "C", zeros: bool = False) -> Any:
    make = np.zeros if zeros else np.empty
    return make(shape, dtype, order=order).view(DeviceArray)


def _copy(a: Any, label: str, order: str = "C") -> Any:
    return _step(label, 2 * a.nbytes, lambda: a.copy(order=order))


def _output_dtype(dtype: Any, value_type: str) -> np.dtype:
    dtype = np.dtype(dtype)
    if value_type != "R2C":
        if dtype in (np.float16, np.float32):
            return np.dtype(np.complex64)
        if dtype not in (np.complex64, np.complex128):
            return np.dtype(np.complex128)
    else:
        if dtype in (np.complex64, np.complex128):
            return np.dtype(dtype.char.lower())
        if dtype == np.float16:
            return np.dtype(np.float32)
        if dtype not in (np.float32, np.float64):
            return np.dtype(np.float64)
    return dtype


def _convert_dtype(a: Any, value_type: str) -> Any:
    dt = _output_dtype(a.dtype, value_type)
    if dt != a.dtype:
        a = _step("astype", a.nbytes + a.size * dt.itemsize, lambda: a.astype(dt))
    return a


def _check_fft_type(dtype: Any, value_type: str) -> None:
    want = {"C2C": "FD", "R2C": "fd", "C2R": "FD"}[value_type]
    if np.dtype(dtype).char not in want:
        raise ValueError


def _pad(a: Any, shape: list[int], index: tuple, order: str) -> Any:
    z = _new(shape, a.dtype.char, order, zeros=True)
    z[index] = a
    return z


def _cook_shape(a: Any, s: Any, axes: Any, value_type: str, order: str = "C") -> Any:
    if s is None or s == a.shape:
        return a
    if (value_type == "C2R") and (s[-1] is not None):
        s = list(s)
        s[-1] = s[-1] // 2 + 1
    for sz, axis in zip(s, axes, strict=False):
        if (sz is not None) and (sz != a.shape[axis]):
            shape = list(a.shape)
            index = [slice(None)] * a.ndim
            if shape[axis] > sz:
                index[axis] = slice(0, sz)
                a = a[tuple(index)]
            else:
                index[axis] = slice(0, shape[axis])
                shape[axis] = sz
                zbytes = int(np.prod(shape)) * a.itemsize
                a = _step("pad", zbytes + 2 * a.nbytes,
                          lambda a=a, shape=shape, index=tuple(index):
                          _pad(a, shape, index, order))
    return a


def _transform(a: Any, out: Any, direction: int, value_type: str,
               axes: tuple[int, ...]) -> None:
    """The unnormalised transform of ``a`` over ``axes`` written into ``out``."""
    x = np.asarray(a)
    if value_type == "R2C":
        v = np.fft.rfftn(x, axes=axes)
    elif value_type == "C2R":
        v = np.fft.irfftn(x, s=[out.shape[ax] for ax in axes], axes=axes,
                          norm="forward")
    elif direction == _FORWARD:
        v = np.fft.fftn(x, axes=axes)
    else:
        v = np.fft.ifftn(x, axes=axes, norm="forward")
    np.copyto(out, v, casting="same_kind")


def _run(a: Any, out: Any, direction: int, value_type: str, axes: tuple[int, ...],
         sz: int, norm: str) -> Any:
    """The plan's execution (one step) and CuPy's normalisation (another)."""
    if out.size != 0:
        label = f"{value_type} {len(axes)}-D"
        _step(label, a.nbytes + out.nbytes,
              lambda: _transform(a, out, direction, value_type, axes))
    if norm == "ortho" or (norm == "backward") == (direction == _INVERSE):
        scale = math.sqrt(sz) if norm == "ortho" else sz  # out /= scale, in place
        _step("norm", 2 * out.nbytes, lambda: np.divide(out, scale, out=out))
    return out


def _exec_fft(a: Any, direction: int, value_type: str, norm: str, axis: int,
              overwrite_x: bool, out_size: int | None = None) -> Any:
    _check_fft_type(a.dtype, value_type)
    swapped = axis % a.ndim != a.ndim - 1
    if swapped:
        a = a.swapaxes(axis, -1)
    if not _owns_memory(a) or not a.flags.c_contiguous:
        a = _copy(a, "copy")
    elif value_type == "C2R" and not overwrite_x:
        a = _copy(a, "c2r-copy")  # cuFFT's C2R may overwrite its input
    n = a.shape[-1]
    if n < 1:
        raise ValueError(f"Invalid number of FFT data points ({n}) specified.")
    if out_size is None:
        out_size = n
    if out_size < 1 and a.size:  # cufft.Plan1d: cuFFT refuses it (CuFFTError)
        raise RuntimeError("CUFFT_INVALID_SIZE")
    size = out_size // 2 + 1 if value_type == "R2C" else out_size
    out = _output(a, value_type, overwrite_x, a.ndim - 1, size)
    sz = n if value_type == "R2C" else out.shape[-1]
    out = _run(a, out, direction, value_type, (a.ndim - 1,), sz, norm)
    return out.swapaxes(axis, -1) if swapped else out


def _output(a: Any, value_type: str, overwrite_x: bool, axis: int, size: int,
            order: str = "C") -> Any:
    """The transform's output (CuPy: the plan's ``get_output_array``): ``a`` itself
    for an in-place C2C, else a new array of the output dtype with ``size``
    elements along ``axis`` (R2C/C2R)."""
    if overwrite_x and value_type == "C2C":
        return a
    shape = list(a.shape)
    dtype = a.dtype
    if value_type != "C2C":
        shape[axis] = size
        dtype = _output_dtype(dtype, "C2C" if value_type == "R2C" else "R2C")
    return _step(None, 0, lambda: _new(shape, dtype, order))


def _fft_c2c(a: Any, direction: int, norm: str, axes: Any, overwrite_x: bool) -> Any:
    for axis in axes:
        a = _exec_fft(a, direction, "C2C", norm, axis, overwrite_x)
    return a


def _check_norm(norm: Any) -> str:
    if norm is None:  # for backward compatibility
        norm = "backward"
    if norm not in ("backward", "ortho", "forward"):
        raise ValueError(f'Invalid norm value {norm}, should be "backward", '
                         '"ortho", or "forward".')
    return norm


def _fft(a: Any, s: Any, axes: Any, norm: Any, direction: int,
         value_type: str = "C2C", overwrite_x: bool = False) -> Any:
    if not isinstance(a, DeviceArray):
        raise TypeError("The input array a must be a cupy.ndarray")
    if (s is not None) and (axes is not None) and len(s) != len(axes):
        raise ValueError("Shape and axes have different lengths.")
    if axes is None:
        axes = list(range(-(a.ndim if s is None else len(s)), 0))
    else:
        axes = tuple(axes)
    if not axes:
        if value_type == "C2C":
            return a
        raise IndexError("list index out of range")
    norm = _check_norm(norm)
    a = _convert_dtype(a, value_type)
    a = _cook_shape(a, s, axes, value_type)
    if value_type == "C2C":
        return _fft_c2c(a, direction, norm, axes, overwrite_x)
    if value_type == "R2C":
        a = _exec_fft(a, direction, value_type, norm, axes[-1], overwrite_x)
        return _fft_c2c(a, direction, norm, axes[:-1], overwrite_x)
    a = _fft_c2c(a, direction, norm, axes[:-1], overwrite_x)
    out_size = _get_fftn_out_size(a.shape, s, axes[-1], value_type)
    return _exec_fft(a, direction, value_type, norm, axes[-1], overwrite_x, out_size)


def _prep_fftn_axes(ndim: int, s: Any = None, axes: Any = None,
                    value_type: str = "C2C") -> tuple[tuple, tuple]:
    if (s is not None) and (axes is not None) and len(s) != len(axes):
        raise ValueError("Shape and axes have different lengths.")
    if axes is None:
        dim = ndim if s is None else len(s)
        axes = tuple(i + ndim for i in range(-dim, 0))
        return axes, axes
    axes = tuple(axes)
    if not axes:
        return (), ()
    if min(axes) < -ndim or max(axes) > ndim - 1:
        raise ValueError("The specified axes exceed the array dimensions.")
    if value_type == "C2C":
        return axes, tuple(sorted(ax % ndim for ax in axes))
    # the R2C/C2R axis last, the others sorted
    return axes, (*sorted(ax % ndim for ax in axes[:-1]), axes[-1] % ndim)


def _nd_plan_is_possible(axes_sorted: tuple, ndim: int) -> bool:
    return (0 < len(axes_sorted) <= 3
            and (0 in axes_sorted or (ndim - 1) in axes_sorted)
            and all((axes_sorted[n + 1] - axes_sorted[n]) == 1
                    for n in range(len(axes_sorted) - 1)))


def _get_fftn_out_size(in_shape: Any, s: Any, last_axis: int,
                       value_type: str) -> int | None:
    if value_type == "C2R":
        if (s is None) or (s[-1] is None):
            return 2 * (in_shape[last_axis] - 1)
        return s[-1]
    if value_type == "R2C":
        return in_shape[last_axis] // 2 + 1
    return None


def _exec_fftn(a: Any, direction: int, value_type: str, norm: str, axes: tuple,
               overwrite_x: bool, out_size: int | None = None) -> Any:
    _check_fft_type(a.dtype, value_type)
    if a.flags.c_contiguous:
        order = "C"
    elif a.flags.f_contiguous:
        order = "F"
    else:
        raise ValueError("a must be contiguous")
    if value_type == "C2R" and not overwrite_x:
        a = _copy(a, "c2r-copy")  # cuFFT's C2R may overwrite its input
    # _get_cufft_plan_nd's checks (the layout: _default_fft_func chose this path)
    plan_shape = [a.shape[ax] for ax in axes]
    if value_type == "C2R":
        plan_shape[-1] = out_size
    if any(n < 1 for n in plan_shape):
        raise ValueError("Invalid number of FFT data points specified.")
    out = _output(a, value_type, overwrite_x, axes[-1], out_size, order)
    arr = a if value_type == "R2C" else out
    sz = math.prod(arr.shape[ax] for ax in axes)
    return _run(a, out, direction, value_type, axes, sz, norm)


def _fftn(a: Any, s: Any, axes: Any, norm: Any, direction: int,
          value_type: str = "C2C", overwrite_x: bool = False) -> Any:
    if not isinstance(a, DeviceArray):
        raise TypeError("The input array a must be a cupy.ndarray")
    norm = _check_norm(norm)
    axes, axes_sorted = _prep_fftn_axes(a.ndim, s, axes, value_type)
    if not axes_sorted:
        if value_type == "C2C":
            return a
        raise IndexError("list index out of range")
    a = _convert_dtype(a, value_type)
    if a.flags.f_contiguous:
        order = "F"
    elif a.flags.c_contiguous:
        order = "C"
    else:
        a = _copy(a, "contiguous")
        order = "C"
    a = _cook_shape(a, s, axes, value_type, order=order)
    for n in a.shape:
        if n < 1:
            raise ValueError(f"Invalid number of FFT data points ({n}) specified.")
    if order == "C" and not a.flags.c_contiguous:
        a = _copy(a, "contiguous")
    elif order == "F" and not a.flags.f_contiguous:
        a = _copy(a, "contiguous", "F")
    out_size = _get_fftn_out_size(a.shape, s, axes_sorted[-1], value_type)
    return _exec_fftn(a, direction, value_type, norm, axes_sorted, overwrite_x,
                      out_size)


def _default_fft_func(a: Any, s: Any = None, axes: Any = None,
                      value_type: str = "C2C") -> Any:
    if a.ndim == 1:
        return _fft
    # cuFFT's N-D C2R/R2C transforms may not agree with NumPy's outcomes
    if a.flags.f_contiguous and value_type != "C2C":
        return _fft
    _, axes_sorted = _prep_fftn_axes(a.ndim, s, axes, value_type)
    if len(axes_sorted) > 1 and _nd_plan_is_possible(axes_sorted, a.ndim):
        return _fftn
    return _fft


def _nd(a: Any, s: Any, axes: Any, norm: Any, direction: int,
        value_type: str = "C2C", overwrite_x: bool = False) -> Any:
    func = _default_fft_func(a, s, axes, value_type)
    return func(a, s, axes, norm, direction, value_type, overwrite_x=overwrite_x)


def _compat_caster(a: Any, axes: Any) -> Any:
    real_dtype = np.result_type(a.real.dtype, 1.0)
    if axes is None or len(axes) != 1:
        return lambda x: x

    def cast(x: Any) -> Any:  # x.astype(real_dtype, copy=False)
        if x.dtype == real_dtype:
            return x
        nbytes = x.nbytes + x.size * real_dtype.itemsize
        return _step("astype", nbytes, lambda: x.astype(real_dtype))

    return cast


def _cupy_fft() -> dict[str, Any]:
    """``cupy.fft``'s twelve transforms, CuPy's signatures."""

    def fft(a, n=None, axis=-1, norm=None):
        return _fft(a, (n,), (axis,), norm, _FORWARD)

    def ifft(a, n=None, axis=-1, norm=None):
        return _fft(a, (n,), (axis,), norm, _INVERSE)

    def rfft(a, n=None, axis=-1, norm=None):
        return _fft(a, (n,), (axis,), norm, _FORWARD, "R2C")

    def irfft(a, n=None, axis=-1, norm=None):
        caster = _compat_caster(a, (axis,))
        return caster(_fft(a, (n,), (axis,), norm, _INVERSE, "C2R"))

    def fft2(a, s=None, axes=(-2, -1), norm=None):
        return _nd(a, s, axes, norm, _FORWARD)

    def ifft2(a, s=None, axes=(-2, -1), norm=None):
        return _nd(a, s, axes, norm, _INVERSE)

    def rfft2(a, s=None, axes=(-2, -1), norm=None):
        return _nd(a, s, axes, norm, _FORWARD, "R2C")

    def irfft2(a, s=None, axes=(-2, -1), norm=None):
        caster = _compat_caster(a, axes)
        return caster(_nd(a, s, axes, norm, _INVERSE, "C2R"))

    def fftn(a, s=None, axes=None, norm=None):
        return _nd(a, s, axes, norm, _FORWARD)

    def ifftn(a, s=None, axes=None, norm=None):
        return _nd(a, s, axes, norm, _INVERSE)

    def rfftn(a, s=None, axes=None, norm=None):
        return _nd(a, s, axes, norm, _FORWARD, "R2C")

    def irfftn(a, s=None, axes=None, norm=None):
        caster = _compat_caster(a, axes)
        return caster(_nd(a, s, axes, norm, _INVERSE, "C2R"))

    return {f.__name__: f for f in (fft, ifft, rfft, irfft, fft2, ifft2, rfft2,
                                    irfft2, fftn, ifftn, rfftn, irfftn)}


def _cupyx_fft() -> dict[str, Any]:
    """``cupyx.scipy.fft``'s twelve transforms, CuPy's signatures (``plan`` must
    be None here: the stand-in has no cuFFT plans)."""

    def seq(x: Any) -> Any:  # cupyx.scipy.fft._assequence
        return (x,) if isinstance(x, Number) else x

    def no_plan(plan: Any) -> None:
        if plan is not None:
            raise NotImplementedError(
                "the stand-in cupyx.scipy.fft takes plan=None only")

    def fft(x, n=None, axis=-1, norm=None, overwrite_x=False, *,
            plan=None):
        no_plan(plan)
        return _fft(x, (n,), (axis,), norm, _FORWARD, overwrite_x=overwrite_x)

    def ifft(x, n=None, axis=-1, norm=None, overwrite_x=False, *,
            plan=None):
        no_plan(plan)
        return _fft(x, (n,), (axis,), norm, _INVERSE, overwrite_x=overwrite_x)

    def rfft(x, n=None, axis=-1, norm=None, overwrite_x=False, *,
            plan=None):
        no_plan(plan)
        return _fft(x, (n,), (axis,), norm, _FORWARD, "R2C", overwrite_x)

    def irfft(x, n=None, axis=-1, norm=None, overwrite_x=False, *,
            plan=None):
        no_plan(plan)
        return _fft(x, (n,), (axis,), norm, _INVERSE, "C2R", overwrite_x)

    def fftn(x, s=None, axes=None, norm=None, overwrite_x=False, *,
             plan=None):
        no_plan(plan)
        return _nd(x, seq(s), seq(axes), norm, _FORWARD, overwrite_x=overwrite_x)

    def ifftn(x, s=None, axes=None, norm=None, overwrite_x=False, *,
              plan=None):
        no_plan(plan)
        return _nd(x, seq(s), seq(axes), norm, _INVERSE, overwrite_x=overwrite_x)

    def rfftn(x, s=None, axes=None, norm=None, overwrite_x=False, *,
              plan=None):
        no_plan(plan)
        return _nd(x, seq(s), seq(axes), norm, _FORWARD, "R2C", overwrite_x)

    def irfftn(x, s=None, axes=None, norm=None, overwrite_x=False, *,
               plan=None):
        no_plan(plan)
        return _nd(x, seq(s), seq(axes), norm, _INVERSE, "C2R", overwrite_x)

    def fft2(x, s=None, axes=(-2, -1), norm=None, overwrite_x=False, *,
             plan=None):
        return fftn(x, s, axes, norm, overwrite_x, plan=plan)

    def ifft2(x, s=None, axes=(-2, -1), norm=None, overwrite_x=False, *,
              plan=None):
        return ifftn(x, s, axes, norm, overwrite_x, plan=plan)

    def rfft2(x, s=None, axes=(-2, -1), norm=None, overwrite_x=False, *,
              plan=None):
        return rfftn(x, s, axes, norm, overwrite_x, plan=plan)

    def irfft2(x, s=None, axes=(-2, -1), norm=None, overwrite_x=False, *,
               plan=None):
        return irfftn(x, s, axes, norm, overwrite_x, plan=plan)

    return {f.__name__: f for f in (fft, ifft, rfft, irfft, fft2, ifft2, rfft2,
                                    irfft2, fftn, ifftn, rfftn, irfftn)}


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
    cp.fft = _Namespace("cupy.fft", np.fft)  # fftfreq, fftshift, ...: NumPy's
    for name, fn in _cupy_fft().items():  # the transforms: CuPy's code path
        setattr(cp.fft, name, fn)
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
    fft = _Namespace("cupyx.scipy.fft", scipy.fft)  # next_fast_len, ...: SciPy's
    for name, fn in _cupyx_fft().items():  # the transforms: CuPy's code path
        setattr(fft, name, fn)
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
