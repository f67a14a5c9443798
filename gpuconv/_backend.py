"""The one place that picks a backend.

Priority, highest first:

1. the ``backend=`` keyword of a public function;
2. the innermost :func:`use_backend` context;
3. the environment variable ``GPUCONV_BACKEND``;
4. the arrays: any CuPy array means ``'cuda'``, anything else ``'numpy'``.

Whatever computes, the caller gets back the array type it passed in: NumPy in,
NumPy out; CuPy in, CuPy out. ``'cuda'`` with NumPy inputs copies them to the
GPU and the result back; ``'numpy'`` with CuPy inputs copies them to the host and
the result back to the current device. Mixing NumPy and CuPy arrays in one call is
a ``TypeError``: gpuconv never decides silently where your data lives.

CuPy is imported lazily, on first need, and the reason it could not be imported
(or no device found) is kept and reported by :func:`cuda_unavailable_reason`,
:func:`info` and the ``RuntimeError`` of an explicit ``'cuda'`` request.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import os
import platform
import sys
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

BACKENDS = ("numpy", "cuda")
ENV_VAR = "GPUCONV_BACKEND"

_context_backend: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "gpuconv_backend", default=None
)

# (cupy module or None, reason string or None); filled on first use.
_cupy_state: tuple[Any, str | None] | None = None


def _check_name(name: object, where: str) -> str:
    """``name`` if it is a backend name: ``TypeError`` for a non-string (a wrong
    type), ``ValueError`` for an unknown string (a wrong value)."""
    if not isinstance(name, str):
        raise TypeError(
            f"{where} must be None, 'numpy' or 'cuda', got "
            f"{type(name).__name__} {name!r}"
        )
    if name not in BACKENDS:
        raise ValueError(
            f"{where} must be one of 'numpy' or 'cuda' (or None for automatic), "
            f"got {name!r}"
        )
    return name  # type: ignore[return-value]


def _import_cupy() -> tuple[Any, str | None]:
    """Import CuPy once; return ``(cupy, None)`` or ``(None, reason)``."""
    global _cupy_state
    if _cupy_state is None:
        try:
            cupy = importlib.import_module("cupy")
        except Exception as exc:  # ImportError, or a broken CUDA install
            _cupy_state = (None, f"CuPy could not be imported: {exc!r}")
        else:
            try:
                n = cupy.cuda.runtime.getDeviceCount()
            except Exception as exc:
                _cupy_state = (None, f"CuPy found no usable CUDA device: {exc!r}")
            else:
                if n < 1:
                    _cupy_state = (None, "CuPy is installed but no CUDA device exists")
                else:
                    _cupy_state = (cupy, None)
    return _cupy_state


def cupy_module() -> Any:
    """Return the CuPy module if it can run kernels, else ``None``."""
    return _import_cupy()[0]


def cuda_unavailable_reason() -> str | None:
    """Why the ``'cuda'`` backend cannot run here, or ``None`` if it can."""
    return _import_cupy()[1]


def require_cupy() -> Any:
    """Return CuPy or raise ``RuntimeError`` saying why the GPU path is unavailable."""
    cupy, reason = _import_cupy()
    if cupy is None:
        raise RuntimeError(f"backend 'cuda' is not available: {reason}")
    return cupy


#: Per array type: could it be a ``cupy.ndarray`` (module ``cupy*`` and a
#: ``__cuda_array_interface__``)? Asked of the type once, not of every array.
_CUPY_TYPES: dict[type, bool] = {np.ndarray: False}


def _cupy_type(t: type) -> bool:
    r = _CUPY_TYPES.get(t)
    if r is None:
        r = t.__module__.startswith("cupy") and hasattr(t, "__cuda_array_interface__")
        _CUPY_TYPES[t] = r
    return r


def is_cupy_array(a: object) -> bool:
    """True for a ``cupy.ndarray``, checked without importing CuPy."""
    return _cupy_type(type(a)) and "cupy" in sys.modules


def array_kind(*arrays: object) -> str | None:
    """``'cupy'``, ``'numpy'`` or ``None`` (no arrays); ``TypeError`` when mixed.

    Python scalars, lists and ``None`` count as neither kind.
    """
    cupy = numpy = False
    for a in arrays:
        if a is None:
            continue
        t = type(a)
        if t is np.ndarray:
            numpy = True
        elif is_cupy_array(a):
            cupy = True
        elif isinstance(a, np.ndarray) or hasattr(a, "__array__"):
            numpy = True
    if cupy and numpy:
        raise TypeError(
            "gpuconv does not mix NumPy and CuPy arrays in one call; move them to "
            "one device first (cupy.asarray(...) or cupy.asnumpy(...))"
        )
    return "cupy" if cupy else ("numpy" if numpy else None)


def select_backend(*arrays: object, backend: str | None = None) -> str:
    """Return ``'numpy'`` or ``'cuda'`` for a call on ``arrays``.

    Parameters
    ----------
    *arrays : array_like or None
        The array arguments of the call (``None`` entries are ignored).
    backend : {None, 'numpy', 'cuda'}, optional
        An explicit choice; it overrides the context and the environment.

    Returns
    -------
    str
        The backend that will compute.

    Raises
    ------
    TypeError
        NumPy and CuPy arrays are mixed.
    ValueError
        An unknown backend name (keyword, context or ``GPUCONV_BACKEND``).
    RuntimeError
        ``'cuda'`` was asked for and CuPy or a device is missing (the message
        says which).

    Examples
    --------
    >>> import numpy as np
    >>> from gpuconv._backend import select_backend
    >>> select_backend(np.ones(3), backend=None)
    'numpy'
    """
    return select_backend_of_kind(array_kind(*arrays), backend)


def select_backend_of_kind(kind: str | None, backend: str | None = None) -> str:
    """:func:`select_backend` for arrays whose :func:`array_kind` is ``kind``."""
    if backend is not None:
        name = _check_name(backend, "backend")
    elif _context_backend.get() is not None:
        name = _context_backend.get()  # type: ignore[assignment]
    elif os.environ.get(ENV_VAR):
        name = _check_name(os.environ[ENV_VAR].strip().lower(), ENV_VAR)
    else:
        name = "cuda" if kind == "cupy" else "numpy"
    if name == "cuda":
        require_cupy()
    return name


@contextlib.contextmanager
def use_backend(name: str | None) -> Iterator[None]:
    """Run the calls inside the ``with`` block on backend ``name``.

    Parameters
    ----------
    name : {'numpy', 'cuda', None}
        ``None`` restores automatic choice inside the block.

    Examples
    --------
    >>> import numpy as np
    >>> import gpuconv
    >>> with gpuconv.use_backend("numpy"):
    ...     gpuconv.convolve([1, 2, 3], [0, 1, 0.5]).tolist()
    [0.0, 1.0, 2.5, 4.0, 1.5]
    """
    if name is not None:
        _check_name(name, "use_backend name")
    token = _context_backend.set(name)
    try:
        yield
    finally:
        _context_backend.reset(token)


def to_backend(name: str, *arrays: Any) -> tuple[list[Any], Callable[[Any], Any]]:
    """Move ``arrays`` to where backend ``name`` computes.

    Returns the moved arrays and a function that moves a result back to the
    caller's array type (identity when nothing moved).
    """
    kind = array_kind(*arrays)
    if name == "cuda":
        cupy = require_cupy()
        if kind == "cupy":
            return list(arrays), _identity
        moved = [None if a is None else cupy.asarray(a) for a in arrays]
        return moved, _to_numpy
    # numpy backend
    if kind == "cupy":
        cupy = require_cupy()
        moved = [None if a is None else cupy.asnumpy(a) for a in arrays]
        return moved, cupy.asarray
    return list(arrays), _identity


def _identity(a: Any) -> Any:
    return a


def _to_numpy(a: Any) -> Any:
    if a is None:
        return None
    cupy = cupy_module()
    return cupy.asnumpy(a) if cupy is not None and is_cupy_array(a) else a


_OPS_MODULES = {"numpy": "gpuconv._cpu", "cuda": "gpuconv._gpu"}


def backend_ops(name: str) -> Any:
    """The module implementing backend ``name`` (imported lazily)."""
    mod = sys.modules.get(_OPS_MODULES[name])
    if mod is None:
        mod = importlib.import_module(_OPS_MODULES[name])
    return mod


def info() -> dict[str, Any]:
    """Versions, available backends and why a backend is missing.

    Returns
    -------
    dict
        Keys ``gpuconv``, ``python``, ``numpy``, ``platform``, ``cupy``
        (version or ``None``), ``backends`` (the usable ones), ``cuda_missing``
        (``None`` or the reason), ``device`` (GPU name or ``None``),
        ``default_backend`` (what a NumPy-array call would use now).

    Examples
    --------
    >>> import gpuconv
    >>> "numpy" in gpuconv.info()["backends"]
    True
    """
    from gpuconv import __version__

    cupy, reason = _import_cupy()
    device = None
    cupy_version = None
    if cupy is not None:
        cupy_version = cupy.__version__
        try:
            props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
            device = props["name"]
            if isinstance(device, bytes):
                device = device.decode()
        except Exception as exc:  # pragma: no cover - needs a GPU
            device = f"unknown ({exc!r})"
    else:
        try:
            cupy_version = importlib.import_module("cupy").__version__
        except Exception:
            cupy_version = None
    try:
        default = select_backend(np.empty(0))
    except Exception as exc:
        default = f"error: {exc}"
    return {
        "gpuconv": __version__,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "platform": platform.platform(),
        "cupy": cupy_version,
        "backends": ["numpy"] + (["cuda"] if cupy is not None else []),
        "cuda_missing": reason,
        "device": device,
        "default_backend": default,
    }
