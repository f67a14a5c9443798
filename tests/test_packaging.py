"""Packaging: the kernel sources ship inside the installed package, and nothing of
the checkout is importable as a top-level ``cuda`` package.

A regular package ``cuda`` in the repository root (a ``cuda/__init__.py``) shadows
NVIDIA's ``cuda`` namespace (``cuda.pathfinder``, ``cuda.bindings``) that CuPy 14
imports on start, so that from the root CuPy cannot be imported and everything
silently falls back to NumPy (issue 10). The wheel test builds a wheel from a copy
of the tree with the running interpreter's setuptools (no network), installs it
into a fresh venv and, from a folder outside the checkout, checks that
:func:`gpuconv._kernels.source_dir` finds every ``.cu``/``.cuh``/``.h``.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from gpuconv._kernels import KERNELS, source_dir

ROOT = Path(__file__).resolve().parent.parent
SUFFIXES = (".cu", ".cuh", ".h")
CHECKOUT_SOURCES = sorted(
    p.name for p in (ROOT / "cuda").iterdir() if p.suffix in SUFFIXES
)


def test_checkout_cuda_folder_is_not_a_package():
    assert CHECKOUT_SOURCES, "no kernel sources in cuda/"
    assert not list((ROOT / "cuda").rglob("__init__.py")), (
        "cuda/__init__.py makes the checkout's cuda/ a regular package that shadows "
        "NVIDIA's `cuda` namespace (CuPy cannot be imported from the root)"
    )
    assert not list((ROOT / "cuda").glob("*.py"))


def test_source_dir_from_checkout():
    # gpuconv is imported from this checkout in the test run (PYTHONPATH or -e).
    assert source_dir() == ROOT / "cuda"
    assert sorted(p.name for p in source_dir().iterdir() if p.suffix in SUFFIXES) == (
        CHECKOUT_SOURCES
    )
    for source in KERNELS:
        assert (source_dir() / source).is_file(), source


def _build_tooling_reason() -> str | None:
    try:
        version = importlib.metadata.version("setuptools")
    except importlib.metadata.PackageNotFoundError:
        return "setuptools is not installed (needed to build the wheel offline)"
    if int(version.split(".")[0]) < 77:  # build-system requirement (SPDX license)
        return f"setuptools {version} < 77 (pyproject's build-system requirement)"
    try:
        pip = importlib.metadata.version("pip")
    except importlib.metadata.PackageNotFoundError:
        return "pip is not installed"
    m = re.match(r"(\d+)\.(\d+)", pip)
    if m is None or (int(m[1]), int(m[2])) < (22, 3):  # pip --python
        return f"pip {pip} < 22.3 (no --python option to install into the venv)"
    return None


def _copy_tree(dst: Path) -> None:
    """The files a wheel is built from (no build/ or egg-info of the checkout)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    dst.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, dst / name)
    for name in ("gpuconv", "cuda"):
        shutil.copytree(ROOT / name, dst / name, ignore=ignore)


_PROBE = """
import json, sys
import gpuconv
from gpuconv._kernels import KERNELS, header_hash, read_source, source_dir
d = source_dir()
for src in KERNELS:
    read_source(src)
header_hash()
print(json.dumps({"gpuconv": gpuconv.__file__, "source_dir": str(d),
    "sources": sorted(p.name for p in d.iterdir()
                      if p.suffix in (".cu", ".cuh", ".h")),
    "registry": sorted(KERNELS)}))
"""


def test_wheel_installs_kernel_sources(tmp_path):
    reason = _build_tooling_reason()
    if reason is not None:
        pytest.skip(reason)
    src = tmp_path / "src"
    _copy_tree(src)
    dist = tmp_path / "dist"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
         "--no-build-isolation", "--no-index", "-w", str(dist), str(src)],
        check=True, cwd=tmp_path, env=env, timeout=300,
    )  # fmt: skip
    (wheel,) = dist.glob("gpuconv-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"gpuconv", wheel.name.split("-py")[0] + ".dist-info"}, tops
    assert not [n for n in names if n.startswith("gpuconv/cuda/") and n.endswith(".py")]
    assert (
        sorted(n.split("/")[-1] for n in names if n.startswith("gpuconv/cuda/"))
        == CHECKOUT_SOURCES
    )

    # A fresh venv; the running interpreter's site-packages (NumPy) is reachable
    # through a .pth file, gpuconv only through the installed wheel.
    venv = tmp_path / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)],
        check=True, env=env, timeout=120,
    )  # fmt: skip
    vpy = venv / "bin" / "python"
    site = subprocess.run(
        [str(vpy), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    ).stdout.strip()
    numpy_site = Path(importlib.util.find_spec("numpy").origin).parent.parent
    Path(site, "outer.pth").write_text(f"{numpy_site}\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(vpy), "install", "--quiet",
         "--no-deps", "--no-index", str(wheel)],
        check=True, env=env, timeout=300,
    )  # fmt: skip
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = subprocess.run(
        [str(vpy), "-c", _PROBE], cwd=elsewhere, env=env,
        check=True, capture_output=True, text=True, timeout=120,
    ).stdout  # fmt: skip
    got = json.loads(out.strip().splitlines()[-1])
    assert Path(got["gpuconv"]).is_relative_to(venv), got["gpuconv"]
    assert Path(got["source_dir"]) == Path(site) / "gpuconv" / "cuda"
    assert got["sources"] == CHECKOUT_SOURCES
    assert set(got["registry"]) <= set(got["sources"])
