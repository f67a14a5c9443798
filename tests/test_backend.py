"""Backend selection (gpuconv._backend): keyword > use_backend context >
GPUCONV_BACKEND > array type; no silent mixing of NumPy and CuPy arrays; a clear
RuntimeError when 'cuda' cannot run; info()."""

from __future__ import annotations

import doctest
import sys
import types

import numpy as np
import pytest

import gpuconv
from gpuconv import _backend


class FakeCupyArray:
    """Stands in for a cupy.ndarray (is_cupy_array is patched to recognise it)."""

    def __init__(self, a):
        self._a = np.asarray(a)
        self.shape = self._a.shape
        self.dtype = self._a.dtype

    def __array__(self, dtype=None, copy=None):
        return self._a


@pytest.fixture
def fake_cupy_arrays(monkeypatch):
    monkeypatch.setattr(
        _backend, "is_cupy_array", lambda a: isinstance(a, FakeCupyArray)
    )


@pytest.fixture
def cuda_available(monkeypatch):
    """Pretend CuPy and a device exist (only the choice is tested, nothing runs)."""
    monkeypatch.setattr(_backend, "require_cupy", lambda: object())


@pytest.fixture
def no_cupy(monkeypatch):
    """CuPy cannot be imported, whatever is installed here."""
    monkeypatch.setattr(_backend, "_cupy_state", None)
    monkeypatch.setitem(sys.modules, "cupy", None)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    monkeypatch.delenv(_backend.ENV_VAR, raising=False)


A = np.ones(3)


# ------------------------------------------------------------------ priority


def test_default_is_numpy_for_numpy_arrays_and_plain_values():
    assert _backend.select_backend(A) == "numpy"
    assert _backend.select_backend([1, 2], 3.0, None) == "numpy"
    assert _backend.select_backend() == "numpy"


def test_cupy_arrays_choose_cuda(fake_cupy_arrays, cuda_available):
    assert _backend.select_backend(FakeCupyArray(A), None) == "cuda"


def test_env_var_beats_array_type(monkeypatch, fake_cupy_arrays, cuda_available):
    monkeypatch.setenv(_backend.ENV_VAR, "numpy")
    assert _backend.select_backend(FakeCupyArray(A)) == "numpy"
    monkeypatch.setenv(_backend.ENV_VAR, " CUDA ")  # trimmed, case-insensitive
    assert _backend.select_backend(A) == "cuda"


def test_context_beats_env_var(monkeypatch, cuda_available):
    monkeypatch.setenv(_backend.ENV_VAR, "cuda")
    with gpuconv.use_backend("numpy"):
        assert _backend.select_backend(A) == "numpy"
    assert _backend.select_backend(A) == "cuda"


def test_keyword_beats_context(cuda_available):
    with gpuconv.use_backend("cuda"):
        assert _backend.select_backend(A, backend="numpy") == "numpy"
        assert _backend.select_backend(A) == "cuda"
    with gpuconv.use_backend("numpy"):
        assert _backend.select_backend(A, backend="cuda") == "cuda"


def test_contexts_nest_and_restore_even_on_error(monkeypatch, cuda_available):
    monkeypatch.setenv(_backend.ENV_VAR, "cuda")
    with gpuconv.use_backend("numpy"):
        with gpuconv.use_backend(None):  # back to automatic: the env var decides
            assert _backend.select_backend(A) == "cuda"
        with pytest.raises(ZeroDivisionError):
            with gpuconv.use_backend("cuda"):
                assert _backend.select_backend(A) == "cuda"
                raise ZeroDivisionError
        assert _backend.select_backend(A) == "numpy"
    assert _backend.select_backend(A) == "cuda"


def test_public_functions_honour_the_keyword(monkeypatch):
    calls = []
    real = _backend.backend_ops

    def spy(name):
        calls.append(name)
        return real(name)

    monkeypatch.setattr(_backend, "backend_ops", spy)
    x, w = np.ones((1, 1, 3, 3)), np.ones((1, 1, 2, 2))
    gpuconv.conv2d(x, w, backend="numpy")
    gpuconv.conv2d_backward(np.ones((1, 1, 2, 2)), x, w, backend="numpy")
    with gpuconv.use_backend("numpy"):
        gpuconv.conv2d_grad_input(x.shape, w, np.ones((1, 1, 2, 2)))
    assert calls and set(calls) == {"numpy"}


# ------------------------------------------------------------------ mixing


def test_mixing_numpy_and_cupy_is_a_type_error(fake_cupy_arrays, cuda_available):
    with pytest.raises(TypeError, match="does not mix NumPy and CuPy arrays"):
        _backend.select_backend(A, FakeCupyArray(A))
    with pytest.raises(TypeError, match="does not mix NumPy and CuPy arrays"):
        gpuconv.conv2d(np.ones((1, 1, 3, 3)), FakeCupyArray(np.ones((1, 1, 2, 2))))
    with pytest.raises(TypeError, match="does not mix NumPy and CuPy arrays"):
        gpuconv.conv2d_backward(
            FakeCupyArray(np.ones((1, 1, 2, 2))),
            np.ones((1, 1, 3, 3)),
            np.ones((1, 1, 2, 2)),
        )
    # even an explicit backend does not make mixing legal
    with pytest.raises(TypeError, match="does not mix"):
        _backend.select_backend(A, FakeCupyArray(A), backend="numpy")


def test_is_cupy_array_needs_a_cupy_class_and_cupy_imported(monkeypatch):
    cls = type("ndarray", (), {"__cuda_array_interface__": {}})
    cls.__module__ = "cupy._core.core"
    monkeypatch.delitem(sys.modules, "cupy", raising=False)
    assert not _backend.is_cupy_array(cls())
    monkeypatch.setitem(sys.modules, "cupy", types.ModuleType("cupy"))
    assert _backend.is_cupy_array(cls())
    assert not _backend.is_cupy_array(A)
    assert _backend.array_kind(A, [1, 2], 3, None) == "numpy"
    assert _backend.array_kind([1, 2], 3, None) is None


# ------------------------------------------------------------------ unavailable


def test_cuda_without_cupy_raises_runtime_error_saying_why(no_cupy):
    x, w = np.ones((1, 1, 3, 3)), np.ones((1, 1, 2, 2))
    why = r"backend .cuda. is not available: CuPy could not be imported: \w*Error"
    with pytest.raises(RuntimeError, match=why):
        gpuconv.conv2d(x, w, backend="cuda")
    with gpuconv.use_backend("cuda"), pytest.raises(RuntimeError, match=why):
        gpuconv.conv2d_backward(np.ones((1, 1, 2, 2)), x, w)
    assert _backend.cuda_unavailable_reason().startswith("CuPy could not be imported")
    assert _backend.cupy_module() is None
    # the numpy backend is unaffected
    assert gpuconv.conv2d(x, w).shape == (1, 1, 2, 2)


def test_env_var_cuda_without_cupy(monkeypatch, no_cupy):
    monkeypatch.setenv(_backend.ENV_VAR, "cuda")
    with pytest.raises(RuntimeError, match="CuPy could not be imported"):
        gpuconv.conv2d(np.ones((1, 1, 3, 3)), np.ones((1, 1, 2, 2)))


@pytest.mark.parametrize(
    "count,reason",
    [
        (RuntimeError("cudaErrorNoDevice"), "CuPy found no usable CUDA device"),
        (0, "CuPy is installed but no CUDA device exists"),
    ],
)
def test_cupy_without_device_is_reported(monkeypatch, count, reason):
    def get_count():
        if isinstance(count, Exception):
            raise count
        return count

    fake = types.ModuleType("cupy")
    fake.cuda = types.SimpleNamespace(
        runtime=types.SimpleNamespace(getDeviceCount=get_count)
    )
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setattr(_backend, "_cupy_state", None)
    with pytest.raises(
        RuntimeError, match=f"backend 'cuda' is not available: {reason}"
    ):
        _backend.select_backend(A, backend="cuda")
    assert reason in gpuconv.info()["cuda_missing"]


# ------------------------------------------------------------------ names


@pytest.mark.parametrize("name", ["cuda:0", "CUDA", "", "cpu"])
def test_unknown_backend_names_are_value_errors(name, monkeypatch):
    with pytest.raises(ValueError, match=r"backend must be one of 'numpy' or 'cuda'"):
        _backend.select_backend(A, backend=name)
    with pytest.raises(ValueError, match=r"use_backend name must be one of"):
        with gpuconv.use_backend(name):
            pass
    if name.strip():
        monkeypatch.setenv(_backend.ENV_VAR, name + "x")
        with pytest.raises(ValueError, match=r"GPUCONV_BACKEND must be one of"):
            _backend.select_backend(A)


@pytest.mark.parametrize("name", [1, 0, 1.5, True, b"numpy", ["numpy"], np.str_])
def test_backend_names_of_the_wrong_type_are_type_errors(name):
    """A wrong type is a TypeError (a wrong string stays a ValueError), for the
    keyword of every API family, the chooser and the context manager."""
    msg = r"backend must be None, 'numpy' or 'cuda', got "
    with pytest.raises(TypeError, match=msg + type(name).__name__):
        _backend.select_backend(A, backend=name)
    with pytest.raises(TypeError, match=r"use_backend name must be None, 'numpy' or"):
        with gpuconv.use_backend(name):
            pass
    calls = [
        lambda: gpuconv.convolve2d(np.ones((3, 3)), np.ones((2, 2)), backend=name),
        lambda: gpuconv.correlate(A, A, backend=name),
        lambda: gpuconv.conv2d(np.ones((1, 1, 3, 3)), np.ones((1, 1, 2, 2)),
                               backend=name),
    ]  # fmt: skip
    for call in calls:
        with pytest.raises(TypeError, match=msg):
            call()


def test_backend_name_subclass_of_str_is_accepted():
    assert _backend.select_backend(A, backend=np.str_("numpy")) == "numpy"


# ------------------------------------------------------------------ info


def test_info_reports_versions_and_backends(no_cupy):
    info = gpuconv.info()
    assert set(info) >= {
        "gpuconv",
        "python",
        "numpy",
        "platform",
        "cupy",
        "backends",
        "cuda_missing",
        "device",
        "default_backend",
    }
    assert info["gpuconv"] == gpuconv.__version__
    assert info["numpy"] == np.__version__
    assert info["python"] == sys.version.split()[0]
    assert info["backends"] == ["numpy"]
    assert info["cuda_missing"].startswith("CuPy could not be imported")
    assert info["device"] is None
    assert info["default_backend"] == "numpy"


def test_info_with_a_usable_cupy(monkeypatch):
    props = {"name": b"Fake GPU"}
    fake = types.ModuleType("cupy")
    fake.__version__ = "99.0"
    fake.cuda = types.SimpleNamespace(
        runtime=types.SimpleNamespace(
            getDeviceCount=lambda: 1, getDeviceProperties=lambda i: props
        ),
        Device=lambda: types.SimpleNamespace(id=0),
    )
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setattr(_backend, "_cupy_state", None)
    info = gpuconv.info()
    assert info["backends"] == ["numpy", "cuda"]
    assert info["cupy"] == "99.0" and info["device"] == "Fake GPU"
    assert info["cuda_missing"] is None


def test_docstring_examples(monkeypatch):
    """The examples of select_backend, use_backend and info run as shown."""
    monkeypatch.delenv("GPUCONV_BACKEND", raising=False)
    result = doctest.testmod(_backend, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
