"""Every kernel instance the registry names compiles with nvcc, without spills,
and with NVRTC, the compiler CuPy actually uses.

For each source in :data:`gpuconv._kernels.KERNELS` and each of sm_80 and sm_90, a
generated host translation unit includes the source and takes the address of every
registered instance (which instantiates exactly those templates), and nvcc builds a
cubin with CuPy's NVRTC options (``--std=c++17``, ``-ftz=true``, gpuconv's ``-I`` and
header hash) plus ``-Xptxas -v``. The test fails on a compile error, on any spill
store or load, and on any stack frame (local memory) in ptxas' report.

NVRTC (``libnvrtc`` from the ``nvidia-cuda-nvrtc`` wheel of the ``test`` extra, or
``$GPUCONV_NVRTC``) compiles each source to PTX for sm_90 with the name expressions,
as ``cupy.RawModule`` does: it has no host headers and rejects host functions that
nvcc accepts (an unannotated ``constexpr`` helper, for example), so it catches what
would otherwise fail at the first launch on a GPU. (ptxas is covered by nvcc.)

Results are cached by content hash (sources, headers, names, options, nvcc
version) under ``$GPUCONV_NVCC_CACHE`` (default ``~/.cache/gpuconv/nvcc``), and the
(source, arch) builds run two at a time, so a rerun on unchanged sources is instant
and a cold run stays well under the CI budget (about 25 s on 2 cores: 15 builds,
longest first).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from gpuconv._kernels import KERNELS, compile_options, source_dir

pytestmark = pytest.mark.nvcc

ARCHS = ("sm_80", "sm_90")
NVCC_TIMEOUT_S = 240


def _nvcc_options(arch: str) -> list[str]:
    # compile_options() is exactly what CuPy's RawModule gets; CuPy appends
    # -ftz=true after them and picks -arch itself.
    opts = [o.replace("--std=", "-std=") for o in compile_options()]
    return [f"-arch={arch}", *opts, "-ftz=true", "-Xptxas", "-v", "-cubin"]


def _instance_tu(source: str) -> str:
    refs = ",\n".join(f"    (const void*)&{name}" for name in KERNELS[source])
    return (
        f'#include "{source}"\n'
        "// Taking each registered instance's address instantiates it for the device.\n"
        f"const void* gpuconv_registered_instances[] = {{\n{refs}\n}};\n"
    )


def _cache_dir() -> Path:
    env = os.environ.get("GPUCONV_NVCC_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "gpuconv" / "nvcc"


def _nvcc_version() -> str:
    out = subprocess.run(["nvcc", "--version"], capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1] if out.stdout else "unknown"


def _content_key(source: str, arch: str, version: str) -> str:
    h = hashlib.sha256()
    for p in sorted(source_dir().glob("*.cu*")):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    h.update(_instance_tu(source).encode())
    h.update(" ".join(_nvcc_options(arch)).encode())
    h.update(version.encode())
    return h.hexdigest()[:24]


_ENTRY = re.compile(
    r"(?:Compiling entry function|Function properties for) '?([\w$]+)'?"
)
_FRAME = re.compile(
    r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads"
)
_LMEM = re.compile(r"(\d+) bytes lmem")


def parse_ptxas(report: str) -> list[str]:
    """Problems in a ``ptxas -v`` report: spills, stack frames, local memory."""
    problems = []
    current = "?"
    for line in report.splitlines():
        m = _ENTRY.search(line)
        if m:
            current = m.group(1)
            continue
        m = _FRAME.search(line)
        if m and any(int(v) for v in m.groups()):
            problems.append(f"{current}: {line.strip()}")
        m = _LMEM.search(line)
        if m and int(m.group(1)):
            problems.append(f"{current}: {line.strip()}")
    return problems


def _compile(source: str, arch: str, version: str) -> dict:
    key = _content_key(source, arch, version)
    cache = _cache_dir() / f"{Path(source).stem}-{arch}-{key}.json"
    if cache.exists():
        return json.loads(cache.read_text())
    with tempfile.TemporaryDirectory() as tmp:
        tu = Path(tmp) / f"instances_{Path(source).stem}.cu"
        tu.write_text(_instance_tu(source))
        cmd = ["nvcc", *_nvcc_options(arch), "-I", str(source_dir()), str(tu),
               "-o", str(Path(tmp) / "out.cubin")]
        proc = subprocess.run(cmd, capture_output=True, text=True,
                              timeout=NVCC_TIMEOUT_S)
    report = proc.stdout + proc.stderr
    result = {
        "returncode": proc.returncode,
        "report": report,
        "entries": len(re.findall(r"Compiling entry function", report)),
        "problems": parse_ptxas(report),
        "command": " ".join(cmd),
    }
    if proc.returncode == 0:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp_path = cache.with_suffix(".tmp")
        tmp_path.write_text(json.dumps(result))
        tmp_path.replace(cache)
    return result


def find_nvrtc() -> str | None:
    """Path of libnvrtc: ``$GPUCONV_NVRTC``, the ``nvidia-cuda-nvrtc`` wheel
    (CUDA 13 or 12 layout), or the system's."""
    env = os.environ.get("GPUCONV_NVRTC")
    if env:
        return env
    spec = importlib.util.find_spec("nvidia")
    for base in (spec.submodule_search_locations if spec else None) or []:
        for pattern in ("cu13/lib/libnvrtc.so.*", "cuda_nvrtc/lib/libnvrtc.so.*"):
            hits = sorted(p for p in glob.glob(os.path.join(base, pattern))
                          if ".alt." not in p)
            if hits:
                return hits[0]
    return ctypes.util.find_library("nvrtc")


_nvrtc_lib = None


def _load_nvrtc(path: str):
    global _nvrtc_lib
    if _nvrtc_lib is None:
        # libnvrtc dlopens its builtins by soname: load them first, from its folder.
        for b in sorted(glob.glob(os.path.join(os.path.dirname(path),
                                               "libnvrtc-builtins.so*"))):
            if ".alt." not in b:
                ctypes.CDLL(b, mode=ctypes.RTLD_GLOBAL)
        lib = ctypes.CDLL(path)
        lib.nvrtcGetErrorString.restype = ctypes.c_char_p
        _nvrtc_lib = lib
    return _nvrtc_lib


def nvrtc_compile(path: str, source: str, arch: str = "compute_90") -> dict:
    """Compile one source to PTX with CuPy's options and the registry's name
    expressions; ``{"ok", "log", "lowered"}``, cached by content hash."""
    key = _content_key(source, f"nvrtc-{arch}", os.path.realpath(path))
    cache = _cache_dir() / f"{Path(source).stem}-nvrtc-{arch}-{key}.json"
    if cache.exists():
        return json.loads(cache.read_text())
    lib = _load_nvrtc(path)
    prog = ctypes.c_void_p()
    text = (source_dir() / source).read_bytes()
    rc = lib.nvrtcCreateProgram(ctypes.byref(prog), text, source.encode(), 0, None,
                                None)
    assert rc == 0, lib.nvrtcGetErrorString(rc)
    try:
        for name in KERNELS[source]:
            lib.nvrtcAddNameExpression(prog, name.encode())
        opts = [*compile_options(), f"-arch={arch}", "-ftz=true"]
        argv = (ctypes.c_char_p * len(opts))(*[o.encode() for o in opts])
        rc = lib.nvrtcCompileProgram(prog, len(opts), argv)
        size = ctypes.c_size_t()
        lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        log = ctypes.create_string_buffer(max(size.value, 1))
        lib.nvrtcGetProgramLog(prog, log)
        lowered = {}
        if rc == 0:
            for name in KERNELS[source]:
                out = ctypes.c_char_p()
                if lib.nvrtcGetLoweredName(prog, name.encode(), ctypes.byref(out)) == 0:
                    lowered[name] = out.value.decode()
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))
    result = {"ok": rc == 0, "log": log.value.decode(errors="replace"),
              "lowered": lowered, "options": opts}
    if result["ok"]:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp_path = cache.with_suffix(".tmp")
        tmp_path.write_text(json.dumps(result))
        tmp_path.replace(cache)
    return result


@pytest.fixture(scope="module")
def builds() -> dict[tuple[str, str], dict]:
    """Every (source, arch) nvcc build and every (source, 'nvrtc') NVRTC build, two
    at a time."""
    if shutil.which("nvcc") is None:
        pytest.skip("nvcc is not on PATH")
    version = _nvcc_version()
    nvrtc = find_nvrtc()
    jobs = [(s, a) for s in sorted(KERNELS) for a in ARCHS]
    if nvrtc is not None:
        jobs += [(s, "nvrtc") for s in sorted(KERNELS)]
    # Longest first (by registered instances; NVRTC, without ptxas, costs about
    # half an nvcc build), so the two workers finish together.
    jobs.sort(key=lambda j: -len(KERNELS[j[0]]) * (1 if j[1] == "nvrtc" else 2))

    def run(job: tuple[str, str]) -> dict:
        source, arch = job
        if arch == "nvrtc":
            return nvrtc_compile(nvrtc, source)
        return _compile(source, arch, version)

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(jobs, pool.map(run, jobs), strict=True))


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("source", sorted(KERNELS))
def test_nvcc_compiles_without_spills(builds, source, arch):
    result = builds[(source, arch)]
    assert result["returncode"] == 0, (
        f"nvcc failed for {source} ({arch}):\n{result['command']}\n{result['report']}"
    )
    assert result["entries"] >= len(KERNELS[source]), (
        f"ptxas compiled {result['entries']} entry functions for {source} ({arch}) "
        f"but {len(KERNELS[source])} instances are registered"
    )
    assert not result["problems"], (
        f"register spills or local memory in {source} ({arch}):\n"
        + "\n".join(result["problems"])
    )


@pytest.mark.parametrize("source", sorted(KERNELS))
def test_nvrtc_compiles_every_instance(builds, source):
    if (source, "nvrtc") not in builds:
        pytest.skip("libnvrtc not found (pip install nvidia-cuda-nvrtc, or set "
                    "GPUCONV_NVRTC)")
    result = builds[(source, "nvrtc")]
    assert result["ok"], f"NVRTC rejects {source}:\n{result['log']}"
    missing = sorted(set(KERNELS[source]) - set(result["lowered"]))
    assert not missing, f"NVRTC has no lowered name for {missing}"


def test_parse_ptxas_flags_spills_and_stack():
    report = (
        "ptxas info    : Compiling entry function '_Z3fooIfEvv' for 'sm_90'\n"
        "ptxas info    : Function properties for _Z3fooIfEvv\n"
        "    8 bytes stack frame, 4 bytes spill stores, 4 bytes spill loads\n"
        "ptxas info    : Compiling entry function '_Z3barIfEvv' for 'sm_90'\n"
        "ptxas info    : Function properties for _Z3barIfEvv\n"
        "    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n"
        "ptxas info    : Used 12 registers, 16 bytes lmem\n"
    )
    problems = parse_ptxas(report)
    assert len(problems) == 2
    assert problems[0].startswith("_Z3fooIfEvv:")
    assert "lmem" in problems[1]


def test_instance_tu_takes_every_registered_address():
    for source, names in KERNELS.items():
        tu = _instance_tu(source)
        assert f'#include "{source}"' in tu
        for name in names:
            assert f"&{name}" in tu


#: Sources whose results must be NumPy's bit for bit on a GPU, float32 subnormals
#: included (``cuda/fft_crop.cu``: the FFT path's epilogue). CuPy compiles with
#: ``-ftz=true``, under which NVVM emits ``cvt.ftz`` for a plain ``float`` <->
#: ``double`` conversion and ``.ftz`` on float32 arithmetic, flushing a subnormal
#: operand or result to zero (SASS: ``FMUL.FTZ r, r, 1`` before every widening
#: ``F2F.F64.F32``, a multiply by ``FLT_MIN`` after a narrowing one); these sources
#: convert with explicit non-``.ftz`` instructions and do no float32 arithmetic.
NO_FTZ_SOURCES = ("fft_crop.cu",)


@pytest.mark.parametrize("source", NO_FTZ_SOURCES)
def test_no_flush_to_zero_under_cupys_options(source, tmp_path):
    if shutil.which("nvcc") is None:
        pytest.skip("nvcc is not on PATH")
    tu = tmp_path / "tu.cu"
    tu.write_text(_instance_tu(source))
    ptx = tmp_path / "tu.ptx"
    opts = [o.replace("--std=", "-std=") for o in compile_options()]
    cmd = ["nvcc", "-arch=sm_90", *opts, "-ftz=true", "-ptx", "-o", str(ptx), str(tu)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=NVCC_TIMEOUT_S)
    assert run.returncode == 0, run.stderr
    ftz = re.compile(r"\b[a-z]+(\.[a-z0-9]+)*\.ftz(\.[a-z0-9]+)*")
    flushing = sorted({m.group(0) for m in ftz.finditer(ptx.read_text())})
    assert not flushing, f"{source} flushes float32 subnormals: {flushing}"
