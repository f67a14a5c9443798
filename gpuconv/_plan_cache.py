"""Bounded caches of prepared calls and launch plans (the per-call host cost).

A gpuconv call on the CUDA path does a lot of Python before its kernels run:
argument normalisation, the backend's algorithm choice, the launch planner
(grids, tiles, shared memory, typed scalar arguments). None of that depends on the
array *values*, only on the problem, so it runs once per distinct problem and its
result is kept here:

- the public API (``gpuconv._filters``, ``gpuconv._conv``) keeps the validated,
  normalised call (:class:`~gpuconv._filter_args.Filter2dPlan`,
  :class:`~gpuconv._conv_args.Conv2dProblem`) under a key made of the array types,
  shapes and dtypes and every other argument (:func:`arg_key`);
- the CUDA ops (``gpuconv._gpu_filter``, ``gpuconv._gpu_conv``) keep a
  :class:`LaunchPlan` (kernel handles, grids, blocks, shared memory, scalar
  arguments) under the problem, the algorithm and the device.

A repeated call then only checks its key, allocates the output, binds the buffer
pointers into the recorded argument tuples and launches. Every check runs on a miss
(the first call of a problem) before anything is allocated or launched, so a bad
call raises exactly what it always raised; a key is only stored after its call
validated. Values never enter a key except where the planner reads them: scalar
arguments (fill values, strides, paddings) are part of the key with their exact
type (``1``, ``1.0``, ``True`` and ``-0.0``/``0.0`` are different keys); arguments of
any other type (NumPy scalars, lists, arrays) are not cached at all
(:func:`arg_key` raises :class:`Uncacheable`) and take the full path every time.

``GPUCONV_PLAN_CACHE=0`` in the environment (read at import) or
:func:`set_enabled` turns caching off (the tests compare cached calls against
uncached ones this way).
"""

from __future__ import annotations

import math
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

#: Entries per cache (least recently used evicted first).
MAXSIZE = 256

#: A key that is never stored nor found (a call with an argument :func:`arg_key`
#: does not cache).
UNCACHED = object()


class Uncacheable(Exception):
    """Raised by :func:`arg_key` for an argument that must not be cached."""

_ENABLED = os.environ.get("GPUCONV_PLAN_CACHE", "1").strip().lower() not in (
    "0", "off", "false", "no")
_CACHES: list[LRU] = []


class LRU:
    """A small least-recently-used mapping with hit/miss counters."""

    def __init__(self, name: str, maxsize: int = MAXSIZE) -> None:
        self.name = name
        self.maxsize = maxsize
        self._d: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0
        _CACHES.append(self)

    def get(self, key: Any) -> Any:
        """The value stored under ``key`` or ``None`` (also when caching is off or
        the key is :data:`UNCACHED` or not hashable)."""
        if key is UNCACHED or not _ENABLED:
            return None
        try:
            value = self._d[key]
            self._d.move_to_end(key)  # KeyError if another thread evicted it
        except (KeyError, TypeError):
            self.misses += 1
            return None
        self.hits += 1
        return value

    def put(self, key: Any, value: Any) -> None:
        if key is UNCACHED or not _ENABLED:
            return
        with self._lock:  # threads (Dask's threaded scheduler) may put at once
            try:
                self._d[key] = value
            except TypeError:  # an unhashable part: never cached
                return
            self._d.move_to_end(key)
            while len(self._d) > self.maxsize:
                self._d.popitem(last=False)

    def clear(self) -> None:
        self._d.clear()
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._d)


def set_enabled(on: bool) -> bool:
    """Turn the caches on or off (clearing them); returns the previous state."""
    global _ENABLED
    old, _ENABLED = _ENABLED, bool(on)
    clear()
    return old


def enabled() -> bool:
    return _ENABLED


def clear() -> None:
    """Empty every cache."""
    for c in _CACHES:
        c.clear()


def info() -> dict[str, dict[str, int]]:
    """``{cache name: {'size', 'hits', 'misses'}}`` of every cache."""
    return {c.name: {"size": len(c), "hits": c.hits, "misses": c.misses}
            for c in _CACHES}


# ---------------------------------------------------------------------------------
# keys


def arg_key(v: Any) -> Any:
    """A key for one non-array argument that equals another only for an argument
    every check and planner treats identically; :class:`Uncacheable` if none.

    Exact ``int``, ``str`` and ``None`` are their own keys, and so is a tuple of
    exact ints (``(1, 1)``; ``(True, 1)`` and ``(1.0, 1)`` are not cached);
    ``float``, ``complex`` and ``bool`` are tagged with their type and the sign of
    each zero. Anything else is not cached.

    >>> arg_key(1), arg_key("same"), arg_key((1, 2))
    (1, 'same', (1, 2))
    >>> arg_key(-0.0) == arg_key(0.0), arg_key(1.0) == arg_key(1)
    (False, False)
    >>> arg_key([1, 2])
    Traceback (most recent call last):
    ...
    gpuconv._plan_cache.Uncacheable: list
    """
    t = type(v)
    if t is int or t is str or v is None:
        return v
    if t is tuple:
        for e in v:
            if type(e) is not int:
                raise Uncacheable("tuple")
        return v
    if t is float:
        return ("f", v, math.copysign(1.0, v))
    if t is bool:
        return ("b", v)
    if t is complex:
        return ("c", v.real, v.imag, math.copysign(1.0, v.real),
                math.copysign(1.0, v.imag))
    raise Uncacheable(t.__name__)


def array_key(a: Any) -> Any:
    """``(type, shape, dtype)`` of an array (``None`` for ``None``)."""
    if a is None:
        return None
    return (type(a), a.shape, a.dtype)


# ---------------------------------------------------------------------------------
# launch plans


class LaunchPlan:
    """Recorded launches of one problem on one device, replayed with new buffers.

    Built from the :class:`~gpuconv._launch.Launch` records the planner made for
    the first call: its buffer arguments are found by identity among ``buffers``
    (the call's ``n_buffers`` arrays, then its temporaries) and become slots (the
    plan keeps no reference to them); :meth:`run` puts another call's buffers in
    the slots and launches. Temporaries (workspaces, padded copies) are listed as
    ``(shape, dtype)`` in ``temps`` and allocated per run with ``alloc``. A
    planner that reads more of a buffer than its type, shape, dtype and
    contiguity (e.g. its address's alignment) needs that in the plan's key.
    """

    __slots__ = ("steps", "temps", "n_buffers", "reusable")

    def __init__(
        self,
        device: Any,
        launches: Sequence[Any],
        n_buffers: int,
        temps: Sequence[tuple[tuple[int, ...], Any]] = (),
        buffers: Sequence[Any] = (),
    ) -> None:
        ids = {id(b): i for i, b in enumerate(buffers) if b is not None}
        #: False when one object filled two buffer roles in the planning call
        #: (e.g. ``x`` passed as ``gy`` too): its slots are ambiguous, so the plan
        #: must not be kept for other buffers.
        self.reusable = len(ids) == sum(b is not None for b in buffers)
        bind_fn = getattr(device, "bind", None)
        steps = []
        for launch in launches:
            args = list(launch.args)
            where = []
            for i, a in enumerate(args):
                if id(a) in ids:
                    where.append((i, ids[id(a)]))
                    args[i] = None
            call = bind_fn(launch) if bind_fn is not None else _launcher(device, launch)
            steps.append((call, tuple(args), tuple(where)))
        self.steps = tuple(steps)
        self.temps = tuple(temps)
        self.n_buffers = n_buffers

    def run(self, buffers: Sequence[Any], alloc: Callable[..., Any] | None = None
            ) -> list[Any]:
        """Launch with ``buffers`` (their count as when planned); returns the
        buffers and the temporaries allocated for this run."""
        bufs = list(buffers)
        for shape, dtype in self.temps:
            bufs.append(alloc(shape, dtype))  # type: ignore[misc]
        for call, args, where in self.steps:
            if where:
                a = list(args)
                for i, s in where:
                    a[i] = bufs[s]
                call(tuple(a))
            else:
                call(args)
        return bufs


def _launcher(device: Any, template: Any) -> Callable[[tuple], None]:
    """A launch callable for devices that take :class:`Launch` records (the CPU
    emulator, the null device of the overhead benchmark)."""
    rebind = template.rebind

    def call(args: tuple) -> None:
        device.launch(rebind(args))  # looked up per call: tests spy on it

    return call
