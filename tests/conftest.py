"""Shared fixtures and the automatic skips of optional tiers (each with its reason)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

try:  # hypothesis is a test extra; the GPU machine runs the gpu tests without it
    from hypothesis import settings
except ImportError:  # pragma: no cover
    settings = None
else:
    settings.register_profile("ci", derandomize=True, deadline=None, max_examples=60)
    settings.load_profile("ci")


def _gpu_reason() -> str | None:
    from gpuconv import _backend

    return _backend.cuda_unavailable_reason()


def pytest_collection_modifyitems(config, items):
    gpu_reason = None
    checked = False
    for item in items:
        if "gpu" in item.keywords:
            if not checked:
                gpu_reason = _gpu_reason()
                checked = True
            if gpu_reason is not None:
                item.add_marker(pytest.mark.skip(reason=f"no GPU: {gpu_reason}"))
        if "nvcc" in item.keywords and shutil.which("nvcc") is None:
            item.add_marker(pytest.mark.skip(reason="nvcc is not on PATH"))
        if "emulated" in item.keywords and shutil.which("g++") is None:
            item.add_marker(pytest.mark.skip(reason="g++ is not on PATH"))


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def poisoned_conv_outputs(monkeypatch):
    """Every output and temporary the CUDA conv ops allocate is filled with NaN
    (``_gpu_conv.POISON_OUTPUTS``): an element a kernel forgets to write fails the
    comparison. Modules take it with ``pytest.mark.usefixtures``."""
    from gpuconv import _gpu_conv

    monkeypatch.setattr(_gpu_conv, "POISON_OUTPUTS", True)


@pytest.fixture(autouse=True)
def _fresh_plan_caches():
    """Every test starts with empty plan caches (``gpuconv._plan_cache``): tests
    monkeypatch planner functions and constants, and a plan kept from another test
    would hide that. Within a test, repeated calls do replay cached plans."""
    from gpuconv import _plan_cache

    _plan_cache.clear()
    yield
