"""``bench/gpu_check.sh`` cannot pass without using the GPU (issue 10).

The script once reported its device step "ok" although CuPy could not be imported,
and its pytest step "ok" with 601 gpu tests skipped. Here it is driven on the CPU
with a fake ``nvidia-smi`` on ``PATH`` (and ``CUDA_VISIBLE_DEVICES`` empty, so that
a machine with a real GPU gives the same answer): it must exit 1 with the device's
reason first in the summary, run nothing else, and leave at most 8 files in $OUT.
The pytest step's verdict (``bench/gpu_check_verdict.py``) is checked on junit XML
documents shaped like pytest's own.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "bench" / "gpu_check.sh"


def _load_verdict():
    path = ROOT / "bench" / "gpu_check_verdict.py"
    spec = importlib.util.spec_from_file_location("_test_gpu_check_verdict", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


V = _load_verdict()


# ---------------------------------------------------------------------------------
# the pytest step's verdict


def _junit(*cases: str) -> str:
    body = "".join(cases)
    return (
        '<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests">'
        f'<testsuite name="pytest" tests="{len(cases)}">{body}</testsuite></testsuites>'
    )


def _ok(name: str = "t") -> str:
    return f'<testcase classname="tests.test_gpu_conv" name="{name}" time="0.1" />'


def _skip(message: str, kind: str = "pytest.skip") -> str:
    return (
        f'<testcase classname="tests.test_gpu_conv" name="s" time="0">'
        f'<skipped type="{kind}" message="{message}">x.py:1: {message}</skipped>'
        "</testcase>"
    )


NO_GPU = (
    "no GPU: CuPy found no usable CUDA device: CUDARuntimeError('cudaErrorNoDevice')"
)
NO_SKLEARN = "could not import 'sklearn': No module named 'sklearn'"
MODULE_SKIP = (
    '<testcase classname="" name="tests.test_dask" time="0">'
    "<skipped message=\"collection skipped\">('tests/test_dask.py', 23, "
    "\"Skipped: dask is not installed (extra 'dask')\")</skipped></testcase>"
)
FAILED = (
    '<testcase classname="tests.test_gpu_conv" name="f" time="0">'
    '<failure message="AssertionError: 1 != 2">trace</failure></testcase>'
)


@pytest.mark.parametrize(
    "cases,expected,status,ok",
    [
        ((_ok("a"), _ok("b")), 2, 0, True),
        ((_ok("a"), _skip(NO_SKLEARN)), 2, 0, True),  # a missing optional package
        ((_ok("a"), MODULE_SKIP), 1, 0, True),  # test_dask.py skipped without dask
        ((_ok("a"), _skip(NO_GPU)), 2, 0, False),  # the 601-skipped run of issue 10
        ((_skip(NO_GPU),) * 3, 3, 0, False),
        (
            (_ok("a"), _skip("needs 30.0 GiB of free device memory, 9.0 GiB")),
            2,
            0,
            False,
        ),  # fmt: skip
        (
            (_ok("a"), _skip("could not import 'cupy': No module named 'cuda'")),
            2,
            0,
            False,
        ),  # fmt: skip
        ((_ok("a"), _skip("known", "pytest.xfail")), 2, 0, False),
        ((_ok("a"), FAILED), 2, 1, False),
        ((_ok("a"),), 2, 0, False),  # fewer ran than collected
        ((_ok("a"), _ok("b")), 2, 2, False),  # pytest itself failed
        ((), 0, 5, False),  # nothing collected, nothing ran
    ],
)
def test_pytest_verdict(cases, expected, status, ok):
    got, line = V.verdict(_junit(*cases), expected, status)
    assert got is ok, line


def test_pytest_verdict_without_junit_and_its_cli(tmp_path):
    assert V.verdict(None, 601, 2)[0] is False
    xml = tmp_path / "j.xml"
    xml.write_text(_junit(_ok("a"), _skip(NO_GPU)))
    cmd = [sys.executable, str(ROOT / "bench" / "gpu_check_verdict.py"), str(xml)]
    proc = subprocess.run(
        [*cmd, "--expected", "2", "--pytest-status", "0"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 1
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("REASON: 1 gpu test(s) skipped") and "no GPU" in last
    xml.write_text(_junit(_ok("a"), _ok("b")))
    proc = subprocess.run(
        [*cmd, "--expected", "2", "--pytest-status", "0"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0 and proc.stdout.startswith("ok: 2 passed of 2")
    assert V.missing_optional_package(NO_SKLEARN) == "sklearn"
    assert V.missing_optional_package(NO_GPU) is None


# ---------------------------------------------------------------------------------
# the script, with a fake nvidia-smi


def _fake_nvidia_smi(folder: Path, gpus: int) -> None:
    folder.mkdir()
    lines = "\n".join(
        f'echo "GPU {i}: NVIDIA H200 (UUID: GPU-fake-{i})"' for i in range(gpus)
    )
    (folder / "nvidia-smi").write_text(
        "#!/bin/sh\n"
        'case "$1" in\n'
        f"  -L) {lines or 'true'};;\n"
        '  *) echo "NVIDIA H200, 00000000:00:06.0, 580.159.04, 143771 MiB";;\n'
        "esac\n"
    )
    (folder / "nvidia-smi").chmod(0o755)


def _run_script(tmp_path: Path, gpus: int, cwd: Path, out: str):
    fake = tmp_path / "fakebin"
    _fake_nvidia_smi(fake, gpus)
    env = dict(os.environ)
    env.pop("GPUCONV_BACKEND", None)
    env.update(
        PATH=f"{fake}{os.pathsep}{env.get('PATH', '')}",
        OUT=out,
        PYTHONPATH=".",  # as run from the root: PYTHONPATH=. bash bench/gpu_check.sh
        PYTHON=sys.executable,
        CUDA_VISIBLE_DEVICES="",  # a real GPU here must not make the script pass
        TMPDIR=str(tmp_path),
    )
    return subprocess.run(
        ["bash", str(SCRIPT)], cwd=cwd, env=env,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def _check_out(out: Path, reason: str) -> list[str]:
    files = sorted(p.name for p in out.iterdir())
    assert len(files) <= 8, files
    assert files == ["logs.tar.gz", "summary.txt"], files  # nothing else ran
    summary = (out / "summary.txt").read_text().splitlines()
    assert summary[0].startswith("FAIL device: ") and reason in summary[0], summary
    assert summary[-1] == "exit status 1 (0: every step passed)"
    for step in ("pytest", "memcheck", "racecheck", "bench_conv", "bench_filt"):
        assert any(
            ln.startswith(step) and "NOT RUN" in ln for ln in summary
        ), summary  # fmt: skip
    with tarfile.open(out / "logs.tar.gz") as tar:
        names = {Path(n).name for n in tar.getnames()}
    assert {"device.log", "summary.txt"} <= names, names
    return summary


def test_script_fails_when_cupy_sees_no_device(tmp_path):
    """nvidia-smi lists a GPU but CuPy sees none (or cannot be imported): exit 1,
    the reason first in the summary, nothing else run."""
    proc = _run_script(tmp_path, 1, ROOT, str(tmp_path / "out"))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    summary = _check_out(tmp_path / "out", "gpuconv's cuda backend is unavailable")
    assert "CuPy" in summary[0], summary[0]
    assert not list(tmp_path.glob("gpuconv-*")), "temporary folders left behind"


def test_script_fails_when_nvidia_smi_lists_no_gpu(tmp_path):
    """Started from another folder with a relative OUT."""
    (tmp_path / "elsewhere").mkdir()
    proc = _run_script(tmp_path, 0, tmp_path / "elsewhere", "out")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    _check_out(tmp_path / "elsewhere" / "out", "nvidia-smi lists no GPU")
