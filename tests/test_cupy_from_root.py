"""CuPy imports from the repository root, and gpuconv reports it truthfully.

A ``cuda/__init__.py`` in the checkout once shadowed NVIDIA's ``cuda`` namespace,
so ``import cupy`` failed from the root and everything fell back to NumPy while
looking healthy (issue 10). These tests run, as a user of a checkout does, in a
subprocess started from the root: ``import cupy`` must work, and
``gpuconv.info()`` and ``python -m gpuconv info`` must name CuPy's version and,
without a device, give the no-device reason rather than an import failure.

CI installs CuPy (``cupy-cuda13x`` imports without a GPU) and sets
``GPUCONV_CI=1``: there a missing CuPy fails these tests instead of skipping them.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# What gpuconv._backend says when CuPy imports but cannot run kernels.
NO_DEVICE = (
    "CuPy found no usable CUDA device",
    "CuPy is installed but no CUDA device exists",
)


@pytest.fixture(scope="module")
def root_env():
    if importlib.util.find_spec("cupy") is None:
        if os.environ.get("GPUCONV_CI"):
            pytest.fail("CI (GPUCONV_CI=1) must install CuPy: pip install cupy-cuda13x")
        pytest.skip("CuPy is not installed (CI installs cupy-cuda13x)")
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT)  # the checkout, as `PYTHONPATH=. python ...` does
    env.pop("GPUCONV_BACKEND", None)
    return env


_PROBE = """
import json
import cupy
import gpuconv
print(json.dumps({"cupy": cupy.__version__, "cupy_file": cupy.__file__,
                  "gpuconv_file": gpuconv.__file__, "info": gpuconv.info()}))
"""


def _run(args, env):
    proc = subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_import_cupy_and_info_from_root(root_env):
    got = json.loads(_run(["-c", _PROBE], root_env).strip().splitlines()[-1])
    # the installed CuPy (a venv may live inside the checkout, as CI's .venv-ci does),
    # never something of the checkout itself
    cupy_file = Path(got["cupy_file"])
    assert "site-packages" in cupy_file.parts, cupy_file
    assert Path(got["gpuconv_file"]).parent == ROOT / "gpuconv"
    info = got["info"]
    assert info["cupy"] == got["cupy"]
    if info["cuda_missing"] is None:  # a machine with a GPU
        assert "cuda" in info["backends"] and info["device"]
    else:
        assert info["cuda_missing"].startswith(NO_DEVICE), info["cuda_missing"]
        assert "could not be imported" not in info["cuda_missing"]
        assert info["backends"] == ["numpy"] and info["device"] is None


def test_cli_info_names_cupy_from_root(root_env):
    version = json.loads(
        _run(["-c", "import cupy, json; print(json.dumps(cupy.__version__))"], root_env)
    )
    out = _run(["-m", "gpuconv", "info"], root_env)
    lines = {ln.split()[0]: ln for ln in out.splitlines() if ln.strip()}
    assert lines["cupy"].split()[1] == version, out
    assert "could not be imported" not in out, out
    cuda = lines["cuda:"]
    if "unavailable" in cuda:
        assert any(reason in cuda for reason in NO_DEVICE), out
        assert lines["device:"].split()[1] == "none", out
    else:
        assert lines["device:"].split()[1] != "none", out
