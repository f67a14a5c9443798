"""What a planned kernel launch is, and the devices that execute one.

A launch planner (one per kernel family: ``gpuconv._plan_conv``,
``gpuconv._plan_filter``) is plain Python: from a validated problem and the
buffers it returns a list of :class:`Launch` records. A device executes them:

- :class:`gpuconv._kernels.CupyDevice` compiles the source with CuPy (RawModule,
  memoised per device) and launches on the GPU;
- ``gpuconv._emulate.EmulatedDevice`` runs the very same launches on the CPU, on
  NumPy buffers, through the emulation harness (tests; no GPU needed).

So everything of the CUDA path except CuPy's own driver calls is exercised
without a GPU. Scalar arguments are NumPy scalars of the exact C type the kernel
declares (``np.int32`` for ``int``, ``np.int64`` for ``long long``,
``np.float32``/``np.float64``), never Python ints (CuPy would pass those as
``long long``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Launch:
    """One kernel launch.

    Attributes
    ----------
    source : str
        The ``.cu`` file in ``cuda/`` that defines the kernel.
    kernel : str
        The name expression of the instance, e.g. ``"conv2d_forward_naive<float>"``;
        it must be listed in :data:`gpuconv._kernels.KERNELS` for ``source``.
    grid, block : tuple of 3 ints
        ``gridDim`` and ``blockDim``; ``grid[1]``, ``grid[2] <= 65535``; never empty.
    shared_mem : int
        Dynamic shared memory in bytes.
    args : tuple
        Device buffers (``cupy.ndarray`` or, emulated, ``numpy.ndarray``) and NumPy
        scalars, in the kernel's parameter order. Buffers are C-contiguous, except
        those listed in ``views``.
    views : tuple of int
        Positions in ``args`` of read-only buffers passed as strided views: the
        kernel receives the address of the view's element ``[0, ..., 0]`` and its
        strides as scalar arguments (of any sign), and reads only the view's
        elements (the filter kernels' flipped kernel, ``cuda/filter_common.cuh``).
        CuPy passes any array's ``data.ptr``; the emulator accepts these positions
        non-contiguous and copies the view's memory extent.
    """

    source: str
    kernel: str
    grid: tuple[int, int, int]
    block: tuple[int, int, int]
    shared_mem: int
    args: tuple[Any, ...]
    views: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        gx, gy, gz = self.grid
        if min(self.grid) < 1 or min(self.block) < 1:
            raise ValueError(
                f"empty launch of {self.kernel}: grid {self.grid}, block {self.block}"
            )
        if gx >= 2**31 or gy > 65535 or gz > 65535:
            raise ValueError(
                f"grid {self.grid} of {self.kernel} exceeds CUDA's limits"
            )
        bx, by, bz = self.block
        if bx * by * bz > 1024 or bz > 64:
            raise ValueError(
                f"block {self.block} of {self.kernel} exceeds 1024 threads"
            )
        for a in self.args:
            # exact types: np.float64 subclasses float but is correctly typed
            if type(a) in (bool, int, float, complex):
                raise TypeError(
                    f"launch of {self.kernel} got a Python {type(a).__name__} "
                    "argument; pass an explicitly typed NumPy scalar"
                )

    def rebind(self, args: tuple[Any, ...]) -> Launch:
        """The same launch with other buffers: ``args`` of the same types in the
        same order (a replayed plan, ``gpuconv._plan_cache.LaunchPlan``). The
        geometry was checked when this launch was made, so it is not checked
        again."""
        new = object.__new__(Launch)
        d = new.__dict__
        d.update(self.__dict__)
        d["args"] = args
        return new


class Device(Protocol):
    """Where launches run: ``xp`` allocates buffers, ``launch`` runs one kernel."""

    xp: Any
    name: str

    def launch(self, launch: Launch) -> None: ...


def device_address(a: Any) -> int:
    """Address of ``a``'s first element: CuPy arrays by ``a.data.ptr``, other
    device arrays by the CUDA array interface, NumPy buffers (the emulated devices)
    by the array interface; the way chosen once per type (~0.1 µs a call). The
    alignment checks of the kernels' vector accesses read it.

    >>> import numpy as np
    >>> a = np.zeros(8, np.float32)
    >>> device_address(a[1:]) - device_address(a)
    4
    """
    get = _ADDRESS_OF.get(type(a))
    if get is None:
        if isinstance(getattr(getattr(a, "data", None), "ptr", None), int):
            get = _cupy_address
        elif hasattr(a, "__cuda_array_interface__"):
            get = _cuda_interface_address
        else:
            get = _interface_address
        _ADDRESS_OF[type(a)] = get
    return get(a)


def _cupy_address(a: Any) -> int:
    return a.data.ptr


def _cuda_interface_address(a: Any) -> int:
    return int(a.__cuda_array_interface__["data"][0])


def _interface_address(a: Any) -> int:
    return int(a.__array_interface__["data"][0])


_ADDRESS_OF: dict[type, Callable[[Any], int]] = {}
