"""Stacked GEMM with accumulation, ``c[g] (+)= a[g] @ b[g]``, for the NumPy backend.

NumPy's ``matmul`` cannot accumulate into its output (BLAS ``beta = 1``), so a sum
of per-tap products costs a temporary and an extra pass over the output per tap.
When the OpenBLAS that ships inside the NumPy wheel can be found, this module calls
its CBLAS ``?gemm`` through :mod:`ctypes` with ``beta = 1`` on the strided views
directly (no copies, no temporaries). Otherwise, or with the environment variable
``GPUCONV_CPU_GEMM=numpy``, it falls back to ``np.matmul`` plus an add. Both give
deterministic results (BLAS splits GEMM work over rows/columns of the output, never
over the reduction), and the ctypes path is checked against ``np.matmul`` on first
use (strided, transposed and accumulating cases, NaN-filled outputs with
``beta = 0``); any mismatch disables it.
"""

from __future__ import annotations

import ctypes
import glob
import os
import threading
from typing import Any

import numpy as np

ENV_VAR = "GPUCONV_CPU_GEMM"

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112
# Below this many multiply-adds per call, NumPy's own loop is as fast as a ctypes
# call (whose Python overhead is a few microseconds).
_MIN_CTYPES_WORK = 1 << 15

_BLAS_CHAR = {"f": "s", "d": "d", "F": "c", "D": "z"}

_state: dict[str, Any] = {}
_lock = threading.Lock()


def _candidate_libraries() -> list[str]:
    root = os.path.dirname(np.__file__)
    dirs = [root + ".libs", os.path.join(root, ".dylibs"), os.path.join(root, "_core")]
    out: list[str] = []
    for d in dirs:
        out.extend(sorted(glob.glob(os.path.join(d, "*openblas*"))))
    return out


def _bind(lib: ctypes.CDLL) -> dict[str, Any] | None:
    for prefix, suffix, int_t in (
        ("scipy_cblas_", "64_", ctypes.c_int64),
        ("scipy_cblas_", "", ctypes.c_int),
        ("cblas_", "64_", ctypes.c_int64),
        ("cblas_", "", ctypes.c_int),
    ):
        try:
            funcs = {c: getattr(lib, f"{prefix}{c}gemm{suffix}") for c in "sdcz"}
        except AttributeError:
            continue
        vp, ci = ctypes.c_void_p, ctypes.c_int
        scalar = {"s": ctypes.c_float, "d": ctypes.c_double, "c": vp, "z": vp}
        for c, f in funcs.items():
            f.restype = None
            f.argtypes = [
                ci, ci, ci, int_t, int_t, int_t, scalar[c], vp, int_t, vp, int_t,
                scalar[c], vp, int_t,
            ]
        return funcs
    return None


def _load() -> dict[str, Any] | None:
    """The CBLAS ``?gemm`` functions, or None (found and self-tested once)."""
    if "funcs" in _state:
        return _state["funcs"]
    with _lock:
        if "funcs" in _state:
            return _state["funcs"]
        funcs = None
        if os.environ.get(ENV_VAR, "auto").strip().lower() != "numpy":
            for path in _candidate_libraries():
                try:
                    funcs = _bind(ctypes.CDLL(path))
                except OSError:
                    funcs = None
                if funcs is not None:
                    break
        if funcs is not None and not _self_test(funcs):
            funcs = None
        _state["funcs"] = funcs
    return funcs


def _self_test(funcs: dict[str, Any]) -> bool:
    """Exact comparison with ``np.matmul`` on small-integer data (sums are exact)."""
    _state["testing"] = funcs
    try:
        return _self_test_cases()
    finally:
        del _state["testing"]


def _self_test_cases() -> bool:
    rng = np.random.default_rng(0)
    try:
        for dt in (np.float32, np.float64, np.complex64, np.complex128):
            a = rng.integers(-3, 4, (2, 40, 70)).astype(dt)
            b = rng.integers(-3, 4, (2, 90, 50)).astype(dt)
            if np.dtype(dt).kind == "c":
                a = (a + 1j * rng.integers(-3, 4, a.shape)).astype(dt)
                b = (b + 1j * rng.integers(-3, 4, b.shape)).astype(dt)
            av = a[:, 3:36, 5:65]  # (2, 33, 60), row stride 70
            bv = b[:, 20:80, 7:42]  # (2, 60, 35), row stride 50
            bt = np.ascontiguousarray(b.transpose(0, 2, 1)).transpose(0, 2, 1)[
                :, 20:80, 7:42
            ]  # the same values, column-major
            want = np.matmul(av, bv)
            c = np.full((2, 33, 80), np.nan, dtype=dt)
            cv = c[:, :, 10:45]
            if not _ctypes_gemm(av, bv, cv, False) or not np.array_equal(cv, want):
                return False
            if not _ctypes_gemm(av, bt, cv, True) or not np.array_equal(cv, 2 * want):
                return False
            if not np.isnan(c[:, :, :10]).all() or not np.isnan(c[:, :, 45:]).all():
                return False
    except Exception:  # pragma: no cover - a broken BLAS: use NumPy instead
        return False
    return True


def uses_blas_accumulate() -> bool:
    """True when the ctypes CBLAS path (``beta = 1``) is in use."""
    return _load() is not None


def _layout(m: np.ndarray, isz: int) -> tuple[int, int] | None:
    """``(transpose flag, leading dimension)`` of a 2-D view for row-major CBLAS."""
    rows, cols = m.shape
    s0, s1 = m.strides
    if (s1 == isz or cols <= 1) and s0 % isz == 0 and s0 // isz >= max(cols, 1):
        return _NO_TRANS, s0 // isz
    if (s0 == isz or rows <= 1) and s1 % isz == 0 and s1 // isz >= max(rows, 1):
        return _TRANS, s1 // isz
    if rows <= 1 and s1 == isz:
        return _NO_TRANS, max(cols, 1)
    if cols <= 1 and s0 == isz:
        return _TRANS, max(rows, 1)
    return None


def _address(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


def _ctypes_gemm(a: np.ndarray, b: np.ndarray, c: np.ndarray, accumulate: bool) -> bool:
    """Run the stacked GEMM through CBLAS; False when a view's layout does not fit."""
    funcs = _state.get("funcs", _state.get("testing"))
    dt = c.dtype
    if funcs is None or dt.char not in _BLAS_CHAR or a.dtype != dt or b.dtype != dt:
        return False
    isz = dt.itemsize
    _, m, k = a.shape
    n = b.shape[2]
    plans = []
    for g in range(a.shape[0]):
        ag, bg, cg = a[g], b[g], c[g]
        la, lb, lc = _layout(ag, isz), _layout(bg, isz), _layout(cg, isz)
        if la is None or lb is None or lc is None or lc[0] != _NO_TRANS:
            return False
        plans.append((ag, bg, cg, la, lb, lc))
    f = funcs[_BLAS_CHAR[dt.char]]
    if dt.kind == "c":
        one = np.ones(1, dtype=dt)
        beta_arr = np.array([1.0 if accumulate else 0.0], dtype=dt)
        alpha, beta = _address(one), _address(beta_arr)
    else:
        alpha, beta = 1.0, (1.0 if accumulate else 0.0)
    for ag, bg, cg, la, lb, lc in plans:
        f(
            _ROW_MAJOR, la[0], lb[0], m, n, k, alpha, _address(ag), la[1],
            _address(bg), lb[1], beta, _address(cg), lc[1],
        )
    return True


def gemm(
    a: np.ndarray,
    b: np.ndarray,
    c: np.ndarray,
    accumulate: bool,
    tmp: np.ndarray | None = None,
) -> None:
    """``c[g] = a[g] @ b[g]``, or ``c[g] += a[g] @ b[g]`` when ``accumulate``.

    Parameters
    ----------
    a, b, c : ndarray, shapes ``(G, m, k)``, ``(G, k, n)``, ``(G, m, n)``
        One dtype (float32/64, complex64/128); any strides (views are used
        in place when BLAS can read them). ``c`` must not overlap ``a`` or ``b``.
    accumulate : bool
        Add to ``c`` instead of overwriting it.
    tmp : ndarray of ``c``'s shape and dtype, optional
        Scratch space for the NumPy fallback when accumulating.

    Examples
    --------
    >>> import numpy as np
    >>> c = np.ones((1, 2, 2))
    >>> b = np.array([[[1.0, 2.0], [3.0, 4.0]]])
    >>> gemm(2 * np.eye(2)[None], b, c, accumulate=True)
    >>> c[0]
    array([[3., 5.],
           [7., 9.]])
    """
    G, m, k = a.shape
    n = b.shape[2]
    if G == 0 or m == 0 or n == 0:
        return
    if k == 0:
        if not accumulate:
            c[...] = 0
        return
    if m * n * k >= _MIN_CTYPES_WORK and _load() is not None and a.flags.aligned and (
        b.flags.aligned and c.flags.aligned and c.flags.writeable
    ):
        if _ctypes_gemm(a, b, c, accumulate):
            return
    with np.errstate(all="ignore"):  # NaN/inf propagate silently, as in BLAS
        if not accumulate:
            np.matmul(a, b, out=c)
            return
        if tmp is None:
            tmp = np.empty(c.shape, dtype=c.dtype)
        np.matmul(a, b, out=tmp)
        c += tmp
