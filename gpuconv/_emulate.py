"""CPU emulation of the CUDA kernels: run the unchanged ``cuda/*.cu`` on NumPy buffers.

The launch planners of the CUDA backend produce :class:`gpuconv._launch.Launch`
records; :class:`EmulatedDevice` executes them on the CPU, so every kernel runs in
CI without a GPU (tests marker ``emulated``). How:

- **Build** (:func:`build_library`): for each source, a C++ translation unit
  includes ``cuda/emu_runtime.h`` (the CUDA dialect on C++: fibers with real
  ``__syncthreads`` barriers, poisoned shared memory, warp intrinsics, atomics),
  then the unchanged ``.cu`` (inside an anonymous namespace), and takes the address
  of exactly the template instances that the registry
  (:data:`gpuconv._kernels.KERNELS`) names. g++ compiles it into a shared library
  with ``extern "C"`` entry points. Sanitized builds (the default) use
  ``-fsanitize=address,undefined``; fast builds use ``-O2``. Libraries are cached
  by content hash (sources, headers, names, flags, compiler) in
  ``$GPUCONV_EMU_CACHE`` (default ``~/.cache/gpuconv/emu``); concurrent builders
  are safe (file lock, write to a temporary name, then rename).
- **Run**: a sanitized library needs the ASan runtime loaded first, which a ctypes
  load into a plain Python cannot do, so it runs in a runner subprocess (built
  from the same header with ASan) that receives each launch and its buffers over a
  pipe, copies every buffer into a heap block of exactly its size (ASan redzones
  around each), runs the kernel and sends the written buffers back. A sanitizer
  report ends the runner and comes back as :class:`EmulationError` with the
  report; the next launch starts a fresh runner. A fast library is loaded with
  ctypes and runs in-process on the NumPy buffers themselves (``in_process=True``;
  a memory bug there can crash the interpreter: use the sanitized mode to debug).
- **Arguments** are checked against the kernel's C++ parameter types (exported by
  the library): ``const T*``/``T*`` take a C-contiguous ``numpy.ndarray`` of the
  matching dtype (or ``None``: a null pointer; a read-only strided view at the
  positions a launch lists in ``Launch.views``, whose memory extent is copied),
  ``int`` an ``np.int32``,
  ``long long`` an ``np.int64``, ``float``/``double`` an ``np.float32``/
  ``np.float64``, and so on: a wrong type is a ``TypeError`` here, where a GPU
  would silently misread it.

Examples
--------
>>> import numpy as np
>>> from gpuconv._emulate import EmulatedDevice, emulation_unavailable_reason
>>> dev = EmulatedDevice()  # doctest: +SKIP
>>> from gpuconv._gpu_conv import conv2d_forward  # doctest: +SKIP
>>> y = conv2d_forward(x, w, None, p, "tiled", device=dev)  # doctest: +SKIP
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import fcntl
import functools
import hashlib
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gpuconv._launch import Launch

__all__ = [
    "EmulatedDevice",
    "EmulationBuildError",
    "EmulationError",
    "build_library",
    "emulation_unavailable_reason",
    "runtime_header",
]

RUNTIME_HEADER = "emu_runtime.h"
ABI_VERSION = 1
_MAGIC = 0x554D4547  # "GEMU"

# Flag sets: the sanitized build is the default; the fast one is for big shapes.
SANITIZE_FLAGS = (
    "-O1",
    "-g",
    "-fno-omit-frame-pointer",
    "-fsanitize=address,undefined",
    "-fno-sanitize-recover=undefined",
    "-fsanitize-sections=gpuconv_shared",
)
FAST_FLAGS = ("-O2", "-g")
DEBUG_FLAGS = ("-O0", "-g3", "-fno-inline")  # debug=True: for stepping in gdb
_COMMON_FLAGS = (
    "-std=c++17",
    "-fPIC",
    "-fdata-sections",
    "-fvisibility=hidden",
    "-fvisibility-inlines-hidden",
    "-Wno-unknown-pragmas",
    "-pthread",
)
# Collects the kernels' static __shared__ variables into one output section that
# the runtime poisons at every block start (see emu_runtime.h).
_LINKER_SCRIPT = """\
SECTIONS
{
  gpuconv_shared : ALIGN(16)
  {
    gpuconv_emu_shared_begin = .;
    KEEP(*(gpuconv_shared))
    *(.bss._ZZ*)
    gpuconv_emu_shared_end = .;
  }
}
INSERT AFTER .data;
"""

_ASAN_OPTIONS = (
    "detect_leaks=0:abort_on_error=0:halt_on_error=1:detect_stack_use_after_return=0:"
    "allocator_may_return_null=1:print_summary=1:detect_odr_violation=0"
)
_UBSAN_OPTIONS = "print_stacktrace=1:halt_on_error=1"

# Launch flags understood by the runtime.
_FLAG_POISON = 1
_FLAG_REVERSE = 2
_FLAG_CP_EAGER = 4
_FLAG_WARP_SERIAL = 8

# Signature codes -> (dtype, C spelling).
_CODES: dict[str, tuple[Any, str]] = {
    "f": (np.float32, "float"),
    "d": (np.float64, "double"),
    "?": (np.bool_, "bool"),
    "b": (np.int8, "signed char"),
    "B": (np.uint8, "unsigned char"),
    "h": (np.int16, "short"),
    "H": (np.uint16, "unsigned short"),
    "i": (np.int32, "int"),
    "I": (np.uint32, "unsigned int"),
    "l": (np.int64, "long long"),
    "L": (np.uint64, "unsigned long long"),
}


class EmulationError(RuntimeError):
    """A kernel failed under emulation: a sanitizer report, a divergent
    ``__syncthreads``, a deadlocked warp intrinsic, a crash."""


class EmulationBuildError(EmulationError):
    """g++ could not build a kernel source for emulation (the compiler output is
    in the message)."""


# ----------------------------------------------------------------------------------
# toolchain and cache


def _compiler() -> str | None:
    cxx = os.environ.get("GPUCONV_EMU_CXX")
    if cxx:
        return shutil.which(cxx) or (cxx if os.path.isfile(cxx) else None)
    return shutil.which("g++")


def emulation_unavailable_reason() -> str | None:
    """Why kernels cannot be emulated here (``None`` when they can).

    Examples
    --------
    >>> from gpuconv._emulate import emulation_unavailable_reason
    >>> reason = emulation_unavailable_reason()
    >>> reason is None or "g++" in reason or "Linux" in reason
    True
    """
    if sys.platform != "linux":
        return f"the emulation harness needs Linux (this is {sys.platform})"
    if _compiler() is None:
        return "g++ is not on PATH (set GPUCONV_EMU_CXX to use another compiler)"
    return None


@functools.cache
def runtime_header() -> Path:
    """The path of ``emu_runtime.h`` (next to the kernels, inside the package)."""
    from gpuconv._kernels import source_dir

    return source_dir() / RUNTIME_HEADER


def cache_dir() -> Path:
    """Where built kernel libraries are kept: ``$GPUCONV_EMU_CACHE``, else
    ``$XDG_CACHE_HOME/gpuconv/emu``, else ``~/.cache/gpuconv/emu``."""
    env = os.environ.get("GPUCONV_EMU_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "gpuconv" / "emu"


_compiler_ids: dict[str, str] = {}


def _compiler_id(cxx: str) -> str:
    if cxx not in _compiler_ids:
        out = subprocess.run(
            [cxx, "--version"], capture_output=True, text=True, check=False
        ).stdout
        _compiler_ids[cxx] = f"{os.path.realpath(cxx)}|{out.splitlines()[:1]}"
    return _compiler_ids[cxx]


def _flags(sanitize: bool, debug: bool = False) -> tuple[str, ...]:
    flags = _COMMON_FLAGS + (SANITIZE_FLAGS if sanitize else FAST_FLAGS)
    if debug:
        flags = tuple(f for f in flags if not f.startswith("-O")) + DEBUG_FLAGS
    return flags


def _mode(sanitize: bool, debug: bool) -> str:
    return ("asan" if sanitize else "fast") + ("-debug" if debug else "")


def _header_files(dirs: Iterable[Path]) -> list[Path]:
    files: set[Path] = set()
    for d in dirs:
        for pat in ("*.cuh", "*.h", "*.hpp"):
            files.update(p.resolve() for p in d.glob(pat))
    return sorted(files)


def _digest(parts: Iterable[bytes]) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(len(p).to_bytes(8, "little"))
        h.update(p)
    return h.hexdigest()[:20]


def _c_string(s: str) -> str:
    if any(c in s for c in '"\\\n') or not s.isprintable():
        raise ValueError(f"unsupported character in kernel name expression {s!r}")
    return f'"{s}"'


def generate_translation_unit(source: Path, names: Sequence[str]) -> str:
    """The C++ translation unit of one kernel library (see the module docstring)."""
    if not names:
        raise ValueError(f"no kernel instances registered for {source.name}")
    entries = ",\n".join(
        f"    ::gpuconv_emu::make_entry({_c_string(n)}, &{n})" for n in names
    )
    return f"""\
// Generated by gpuconv._emulate for {source.name}: do not edit.
#include "{runtime_header()}"
namespace {{
#include "{source}"
}}  // namespace
static const ::gpuconv_emu::Entry gpuconv_emu_entries[] = {{
{entries}
}};
namespace gpuconv_emu {{
namespace {{
const Entry* registry(int* n) {{
    *n = {len(names)};
    return gpuconv_emu_entries;
}}
}}  // namespace
}}  // namespace gpuconv_emu
GPUCONV_EMU_DEFINE_API
"""


_RUNNER_TU = """\
// Generated by gpuconv._emulate: the runner of sanitized kernel libraries.
#define GPUCONV_EMU_RUNNER_MAIN 1
#include "{header}"
"""

_build_lock = threading.Lock()


@contextlib.contextmanager
def _file_lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _run_compiler(cmd: list[str], what: str) -> None:
    """Runs one compiler command; raises :class:`EmulationBuildError` on failure."""
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        out = (proc.stderr + proc.stdout).strip()
        hint = ""
        if "storage class" in out or "conflicting specifiers" in out:
            hint = (
                "\nhint: `extern __shared__` is not emulated; declare dynamic shared "
                "memory with GPUCONV_DYNAMIC_SHARED(T, name) from common.cuh"
            )
        if "__constant__" in out:
            hint += "\nhint: __constant__ memory is not emulated (nor launchable here)"
        lines = out.splitlines()
        if len(lines) > 80:
            lines = lines[:80] + [f"... ({len(lines) - 80} more lines)"]
        raise EmulationBuildError(
            f"building {what} for emulation failed:\n$ {' '.join(cmd)}\n"
            + "\n".join(lines)
            + hint
        )


def _build_cached(target: Path, text: str, cmd_tail: list[str], what: str) -> Path:
    """Compiles ``text`` (C++) into ``target`` unless it exists already."""
    if target.exists():
        return target
    cxx = _compiler()
    if cxx is None:
        raise EmulationBuildError(emulation_unavailable_reason() or "no compiler")
    with _file_lock(target.with_name(target.name + ".lock")):
        if target.exists():  # built by someone else meanwhile
            return target
        tmpdir = Path(tempfile.mkdtemp(prefix=".build-", dir=target.parent))
        try:
            # The translation unit is compiled where it stays (next to the library,
            # named after it), so debuggers and sanitizer reports find it.
            tu = target.with_suffix(".cpp")
            tu.write_text(text)
            script = tmpdir / "shared.ld"
            script.write_text(_LINKER_SCRIPT)
            out = tmpdir / target.name
            cmd = [cxx, *cmd_tail, str(tu), "-o", str(out)]
            cmd = [a.replace("@SCRIPT@", str(script)) for a in cmd]
            _run_compiler(cmd, what)
            os.replace(out, target)
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)
        _prune(target)
    return target


_KEEP_VERSIONS = 6


def _prune(target: Path, keep: int = _KEEP_VERSIONS) -> None:
    """Deletes all but the ``keep`` newest builds of the same source and mode (a
    library in use stays mapped; a runner that needs a pruned one rebuilds it)."""
    prefix, _, _ = target.name.partition(".")[0].rpartition("-")
    pattern = re.compile(re.escape(prefix) + r"-[0-9a-f]{20}$")
    builds: dict[str, list[Path]] = {}
    for f in target.parent.iterdir():
        base = f.name
        for suffix in (".lock", ".so", ".cpp"):
            base = base.removesuffix(suffix)
        if pattern.match(base):
            builds.setdefault(base, []).append(f)
    if len(builds) <= keep:
        return

    def newest(files: list[Path]) -> float:
        return max((f.stat().st_mtime for f in files if f.exists()), default=0.0)

    for base in sorted(builds, key=lambda b: newest(builds[b]), reverse=True)[keep:]:
        for f in builds[base]:
            with contextlib.suppress(OSError):
                f.unlink()


def library_path(
    source: str | os.PathLike,
    names: Sequence[str],
    *,
    sanitize: bool = True,
    debug: bool = False,
    cache: Path | None = None,
) -> Path:
    """Where :func:`build_library` puts (or finds) the library of ``source``."""
    src = Path(source).resolve()
    cxx = _compiler() or "g++"
    dirs = [src.parent, runtime_header().parent]
    parts = [
        f"abi{ABI_VERSION}".encode(),
        generate_translation_unit(src, names).encode(),
        src.read_bytes(),
        " ".join(_flags(sanitize, debug)).encode(),
        _LINKER_SCRIPT.encode(),
        _compiler_id(cxx).encode(),
    ]
    for h in _header_files(dirs):
        parts += [str(h).encode(), h.read_bytes()]
    mode = _mode(sanitize, debug)
    return (cache or cache_dir()) / f"{src.stem}-{mode}-{_digest(parts)}.so"


# (source, names, sanitize, cache) -> (stat signature of the inputs, library path):
# launches skip the content hash while no input file changed.
_resolved: dict[tuple, tuple[tuple, Path]] = {}


def _stat_signature(src: Path) -> tuple:
    st = src.stat()
    sig = [(str(src), st.st_mtime_ns, st.st_size)]
    for d in {src.parent, runtime_header().parent}:
        with os.scandir(d) as it:
            for e in it:
                if e.name.endswith((".cuh", ".h", ".hpp")):
                    st = e.stat()
                    sig.append((e.path, st.st_mtime_ns, st.st_size))
    return tuple(sorted(sig))


def build_library(
    source: str | os.PathLike,
    names: Sequence[str],
    *,
    sanitize: bool = True,
    debug: bool = False,
    cache: Path | None = None,
) -> Path:
    """Builds (or finds in the cache) the emulation library of one kernel source.

    Parameters
    ----------
    source : path-like
        The ``.cu`` file.
    names : sequence of str
        The name expressions to instantiate, e.g. ``["conv2d_forward_naive<float>"]``.
    sanitize : bool
        ASan + UBSan build (``-O1 -g``) or fast build (``-O2``).
    debug : bool
        Build with ``-O0 -g3 -fno-inline`` instead (for stepping through a kernel).
    cache : Path, optional
        Cache folder (default :func:`cache_dir`).

    Returns
    -------
    Path
        The shared library. A second call with the same inputs compiles nothing.
    """
    src = Path(source).resolve()
    cache = cache or cache_dir()
    key = (src, tuple(names), bool(sanitize), bool(debug), cache)
    sig = _stat_signature(src)
    hit = _resolved.get(key)
    if hit is not None and hit[0] == sig and hit[1].exists():
        return hit[1]
    target = library_path(src, names, sanitize=sanitize, debug=debug, cache=cache)
    tail = [
        *_flags(sanitize, debug),
        f"-I{src.parent}",
        f"-I{runtime_header().parent}",
        "-shared",
        "-x",
        "c++",
    ]
    # the linker script goes after the inputs; _build_cached appends "tu -o out"
    text = generate_translation_unit(src, names)
    path = _build_cached(target, text, [*tail, "-Wl,-T,@SCRIPT@"], src.name)
    _resolved[key] = (sig, path)
    return path


def build_runner(*, sanitize: bool = True, cache: Path | None = None) -> Path:
    """Builds (or finds) the runner executable that hosts kernel libraries."""
    cxx = _compiler() or "g++"
    header = runtime_header()
    flags = [f for f in _flags(sanitize) if f not in ("-fPIC",)]
    parts = [
        f"abi{ABI_VERSION}".encode(),
        header.read_bytes(),
        " ".join(flags).encode(),
        _compiler_id(cxx).encode(),
    ]
    target = (
        cache or cache_dir()
    ) / f"runner-{_mode(sanitize, False)}-{_digest(parts)}"
    text = _RUNNER_TU.format(header=header)
    return _build_cached(target, text, [*flags, "-x", "c++", "-ldl"], "the runner")


# ----------------------------------------------------------------------------------
# kernel libraries: signatures, argument marshalling, execution


@dataclass(frozen=True)
class _Param:
    pointer: bool
    const: bool
    code: str  # type code of the value or of the pointee: f d i l ... s<N> v

    @property
    def struct_size(self) -> int | None:
        return int(self.code[1:]) if self.code.startswith("s") else None

    def c_spelling(self) -> str:
        if self.code == "v":
            base = "void"
        elif self.code.startswith("s"):
            base = f"struct of {self.code[1:]} bytes"
        else:
            base = _CODES[self.code][1]
        if self.pointer:
            return f"{'const ' if self.const else ''}{base}*"
        return base


def _parse_signature(sig: str) -> tuple[_Param, ...]:
    params = []
    for tok in filter(None, sig.split(",")):
        if tok[0] in "pP":
            params.append(_Param(True, tok[0] == "p", tok[1:]))
        else:
            params.append(_Param(False, False, tok))
    return tuple(params)


@dataclass
class _Marshalled:
    """Launch arguments, checked: pointers as (array or None), scalars as bytes."""

    kinds: list[str]  # "null" | "ptr" | "scalar"
    arrays: list[np.ndarray | None]
    scalars: list[bytes | None]
    writes: list[bool]  # pointer argument through which the kernel may write


def _describe(a: Any) -> str:
    if isinstance(a, np.ndarray):
        return f"ndarray of {a.dtype}"
    if isinstance(a, np.generic):
        return f"np.{type(a).__name__}"
    return type(a).__name__


def _extent(a: np.ndarray) -> tuple[int, int]:
    """The bytes ``[low, high)`` an array's elements occupy (any strides: a
    negative one puts elements below the address of element ``[0, ..., 0]``)."""
    start = a.__array_interface__["data"][0]
    if a.size == 0:
        return start, start
    low = high = start
    for n, st in zip(a.shape, a.strides, strict=True):
        if st < 0:
            low += (n - 1) * st
        else:
            high += (n - 1) * st
    return low, high + a.itemsize


def _marshal(
    kernel: str,
    params: tuple[_Param, ...],
    args: tuple[Any, ...],
    views: tuple[int, ...] = (),
) -> _Marshalled:
    if len(args) != len(params):
        raise TypeError(
            f"{kernel} takes {len(params)} arguments "
            f"({', '.join(p.c_spelling() for p in params)}), "
            f"the launch passes {len(args)}"
        )
    m = _Marshalled([], [], [], [])
    for i, (p, a) in enumerate(zip(params, args, strict=True)):
        where = f"argument {i} of {kernel} ({p.c_spelling()})"
        if p.pointer:
            m.scalars.append(None)
            if a is None:
                m.kinds.append("null")
                m.arrays.append(None)
                m.writes.append(False)
                continue
            if not isinstance(a, np.ndarray):
                raise TypeError(
                    f"{where} must be a numpy.ndarray or None, not {_describe(a)}"
                )
            if i in views:
                # a strided view (Launch.views): read-only, whole-element strides
                if not p.const:
                    raise TypeError(f"{where}: a strided view must be read-only")
                if any(st % a.itemsize for st in a.strides):
                    raise TypeError(f"{where}: strides {a.strides} are not whole "
                                    "elements")
            elif not a.flags.c_contiguous:
                raise TypeError(f"{where}: the buffer is not C-contiguous")
            if p.code in _CODES and p.code not in "bB":
                want = np.dtype(_CODES[p.code][0])
                if a.dtype != want:
                    raise TypeError(
                        f"{where} must be an array of {want}, not {a.dtype}"
                    )
            elif p.struct_size is not None and a.nbytes % p.struct_size:
                raise TypeError(
                    f"{where}: {a.nbytes} bytes is not a whole number of "
                    f"{p.struct_size}-byte elements"
                )
            if not p.const and not a.flags.writeable:
                raise TypeError(
                    f"{where}: the kernel may write, the array is read-only"
                )
            m.kinds.append("ptr")
            m.arrays.append(a)
            m.writes.append(not p.const)
            continue
        m.arrays.append(None)
        m.writes.append(False)
        m.kinds.append("scalar")
        if p.struct_size is not None:
            if isinstance(a, (bytes, bytearray)):
                data = bytes(a)
            elif isinstance(a, ctypes.Structure):
                data = ctypes.string_at(ctypes.addressof(a), ctypes.sizeof(a))
            elif isinstance(a, np.generic):
                data = a.tobytes()
            else:
                raise TypeError(f"{where} must be bytes or a NumPy void scalar")
            if len(data) != p.struct_size:
                raise TypeError(f"{where}: got {len(data)} bytes")
            m.scalars.append(data)
            continue
        want_t = _CODES[p.code][0]
        # dtype equality, not class identity: np.longlong is np.int64's twin
        if not isinstance(a, np.generic) or a.dtype != np.dtype(want_t):
            raise TypeError(
                f"{where} must be np.{np.dtype(want_t).name}, not {_describe(a)}"
            )
        m.scalars.append(a.tobytes())
    return m


class _Library:
    """A loaded kernel library: names -> (index, parameters)."""

    kernels: dict[str, tuple[int, tuple[_Param, ...]]]

    def run(
        self,
        index: int,
        grid: tuple[int, int, int],
        block: tuple[int, int, int],
        shmem: int,
        m: _Marshalled,
        flags: int,
        what: str,
    ) -> None:
        raise NotImplementedError


class _InProcessLibrary(_Library):
    """A fast (unsanitized) library loaded with ctypes into this process."""

    def __init__(self, path: Path) -> None:
        lib = ctypes.CDLL(str(path))
        if lib.gpuconv_emu_abi_version() != ABI_VERSION:
            raise EmulationError(f"{path} has another ABI version")
        if lib.gpuconv_emu_sanitized():
            raise EmulationError(
                f"{path} is a sanitized build: it runs in the runner, not in-process"
            )
        lib.gpuconv_emu_kernel_name.restype = ctypes.c_char_p
        lib.gpuconv_emu_kernel_signature.restype = ctypes.c_char_p
        lib.gpuconv_emu_last_error.restype = ctypes.c_char_p
        lib.gpuconv_emu_launch.argtypes = [
            ctypes.c_int,
            ctypes.POINTER(ctypes.c_uint),
            ctypes.POINTER(ctypes.c_uint),
            ctypes.c_ulonglong,
            ctypes.POINTER(ctypes.c_void_p),
            ctypes.c_uint,
        ]
        self._lib = lib
        self._lock = threading.Lock()
        self.kernels = {}
        for i in range(lib.gpuconv_emu_kernel_count()):
            name = lib.gpuconv_emu_kernel_name(i).decode()
            sig = lib.gpuconv_emu_kernel_signature(i).decode()
            self.kernels[name] = (i, _parse_signature(sig))

    def run(self, index, grid, block, shmem, m, flags, what) -> None:
        n = len(m.kinds)
        keep: list[Any] = []
        argv = (ctypes.c_void_p * max(n, 1))()
        for i, kind in enumerate(m.kinds):
            if kind == "scalar":
                buf = ctypes.create_string_buffer(
                    m.scalars[i], max(len(m.scalars[i]), 16)
                )
                keep.append(buf)
                argv[i] = ctypes.addressof(buf)
            else:
                a = m.arrays[i]
                ptr = ctypes.c_void_p(None if a is None else a.ctypes.data)
                keep.append(ptr)
                argv[i] = ctypes.addressof(ptr)
        g = (ctypes.c_uint * 3)(*grid)
        b = (ctypes.c_uint * 3)(*block)
        with self._lock:
            rc = self._lib.gpuconv_emu_launch(index, g, b, shmem, argv, flags)
            msg = self._lib.gpuconv_emu_last_error().decode(errors="replace")
        if rc != 0:
            raise EmulationError(f"{what}: {msg}")


def _region_view(start: int, size: int) -> memoryview:
    return memoryview((ctypes.c_ubyte * size).from_address(start)).cast("B")


class _RunnerLibrary(_Library):
    """A library hosted by a runner subprocess (sanitized builds need ASan loaded
    first). The runner is restarted after a crash or a sanitizer report."""

    def __init__(self, path: Path, runner: Path, timeout: float | None) -> None:
        self.path = path
        self.runner = runner
        self.timeout = timeout
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._log = None
        self._log_pos = 0
        self.kernels = {}
        self._start()

    # process management
    def _start(self) -> None:
        env = dict(os.environ)
        env.pop("LD_PRELOAD", None)
        env["ASAN_OPTIONS"] = _ASAN_OPTIONS + (
            ":" + os.environ["ASAN_OPTIONS"] if os.environ.get("ASAN_OPTIONS") else ""
        )
        env["UBSAN_OPTIONS"] = _UBSAN_OPTIONS + (
            ":" + os.environ["UBSAN_OPTIONS"] if os.environ.get("UBSAN_OPTIONS") else ""
        )
        self._log = tempfile.TemporaryFile(prefix="gpuconv-emu-", suffix=".log")
        self._log_pos = 0
        self._proc = subprocess.Popen(
            [str(self.runner), str(self.path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
            bufsize=0,
        )
        try:
            magic, n = struct.unpack("<II", self._read(8))
            if magic != _MAGIC:
                raise EmulationError("bad handshake")
            kernels = {}
            for i in range(n):
                name = self._read_str()
                sig = self._read_str()
                kernels[name] = (i, _parse_signature(sig))
            self.kernels = kernels
        except (EmulationError, OSError) as exc:
            log = self._stop()
            raise EmulationError(
                f"the emulation runner for {self.path.name} failed to start: "
                f"{exc}\n{log}"
            ) from None

    def _stop(self) -> str:
        """Ends the runner; returns what it wrote to stderr (new part)."""
        proc, self._proc = self._proc, None
        if proc is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            with contextlib.suppress(OSError):
                proc.stdout.close()
        text = self._new_log()
        if self._log is not None:
            self._log.close()
            self._log = None
        if proc is not None and proc.returncode not in (0, None):
            text += f"\n(runner exit status {proc.returncode})"
        return text

    def close(self) -> None:
        with self._lock:
            if self._proc is not None:
                self._stop()

    def _new_log(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(self._log_pos)
        data = self._log.read()
        self._log_pos += len(data)
        return data.decode(errors="replace")

    # pipe I/O
    def _read(self, n: int) -> bytes:
        buf = bytearray(n)
        self._readinto(memoryview(buf))
        return bytes(buf)

    def _readinto(self, view: memoryview) -> None:
        got = 0
        n = len(view)
        while got < n:
            r = self._proc.stdout.readinto(view[got:])
            if not r:
                raise EOFError("the emulation runner ended")
            got += r

    def _read_str(self) -> str:
        (n,) = struct.unpack("<I", self._read(4))
        return self._read(n).decode(errors="replace")

    def _write(self, data) -> None:
        view = memoryview(data).cast("B")
        while len(view):
            n = self._proc.stdin.write(view)
            if n is None:  # pragma: no cover - non-blocking pipes are not used
                continue
            view = view[n:]

    # a launch
    def run(self, index, grid, block, shmem, m, flags, what) -> None:
        # Regions: maximal overlapping byte ranges of the argument arrays (aliases
        # share one region; distinct arrays get distinct heap blocks).
        spans = []
        # (a strided view's span is its memory extent; the pointer passed is its
        # element [0, ..., 0], which may lie above the extent's start)
        for i, kind in enumerate(m.kinds):
            if kind == "ptr":
                a = m.arrays[i]
                low, high = _extent(a)
                spans.append((low, high, i, a.__array_interface__["data"][0]))
        spans.sort()
        regions: list[list[int]] = []  # [start, end, copyback]
        where: dict[int, tuple[int, int]] = {}  # arg -> (region, offset)
        for start, end, i, ptr in spans:
            if regions and start < regions[-1][1] and end > start:
                r = regions[-1]
                r[1] = max(r[1], end)
            else:
                regions.append([start, end, 0])
            ri = len(regions) - 1
            regions[ri][2] |= int(m.writes[i])
            where[i] = (ri, ptr - regions[ri][0])
        header = struct.pack(
            "<II3I3IQIII",
            _MAGIC,
            index,
            *grid,
            *block,
            shmem,
            flags,
            len(regions),
            len(m.kinds),
        )
        chunks: list[Any] = [header]
        for start, end, cb in regions:
            chunks.append(struct.pack("<QB", end - start, cb))
        for i, kind in enumerate(m.kinds):
            if kind == "null":
                chunks.append(b"\x00")
            elif kind == "ptr":
                r, off = where[i]
                chunks.append(struct.pack("<BIQ", 1, r, off))
            else:
                s = m.scalars[i]
                chunks.append(struct.pack("<BI", 2, len(s)) + s)
        with self._lock:
            if self._proc is None:
                self._start()
            timer = None
            if self.timeout:
                timer = threading.Timer(self.timeout, self._proc.kill)
                timer.daemon = True
                timer.start()
            try:
                self._send_and_receive(b"".join(chunks), regions, what, timer)
            finally:
                if timer is not None:
                    timer.cancel()
            printed = self._new_log()
        if printed:
            sys.stderr.write(printed)

    def _send_and_receive(self, head: bytes, regions, what, timer) -> None:
        try:
            self._write(head)
            for start, end, _ in regions:
                if end > start:
                    self._write(_region_view(start, end - start))
            (status,) = struct.unpack("<i", self._read(4))
            msg = self._read_str()
            if status == 0:
                for start, end, cb in regions:
                    if cb and end > start:
                        self._readinto(_region_view(start, end - start))
        except (OSError, EOFError):
            killed = timer is not None and timer.finished.is_set()
            log = self._stop()
            if killed:
                raise EmulationError(
                    f"{what}: timed out after {self.timeout} s (killed)\n{log}"
                ) from None
            raise EmulationError(
                f"{what}: the emulated launch crashed\n{log}"
            ) from None
        if status != 0:
            raise EmulationError(f"{what}: {msg}")


# Loaded libraries, shared by all devices: (path, in_process) -> _Library.
_libraries: dict[tuple[Path, bool], _Library] = {}
_libraries_lock = threading.Lock()


def _close_all() -> None:
    for lib in list(_libraries.values()):
        if isinstance(lib, _RunnerLibrary):
            with contextlib.suppress(Exception):
                lib.close()
    _libraries.clear()


atexit.register(_close_all)


# ----------------------------------------------------------------------------------
# the device


class EmulatedDevice:
    """Executes planned launches on the CPU (the :class:`gpuconv._launch.Device`
    protocol), on NumPy buffers.

    Parameters
    ----------
    sanitize : bool
        Build with ASan + UBSan and run in a runner subprocess (default), or a fast
        ``-O2`` build run in-process through ctypes.
    poison_shared : bool
        Fill shared memory with 0xFF bytes at every block start (default on).
    thread_order : {"ascending", "descending"}
        The order in which the threads of a block run to their next
        synchronisation point. A missing ``__syncthreads`` shows up when a thread
        reads what a thread scheduled *after* it writes; run both orders to catch
        both directions.
    cp_async : {"deferred", "eager"}
        When a ``cp.async`` copy (``cp_async_zfill16``) lands in shared memory: at
        the issuing thread's covering ``cp_async_wait`` (default: the latest a GPU
        may, so a read before the wait sees the old bytes) or at the issue (the
        earliest: a copy into a stage another thread still reads before the next
        barrier overwrites it under that reader). Run both to bracket the GPU.
    warp_schedule : {"lockstep", "serial"}
        ``"lockstep"`` (default): every pass runs each ready thread of the block to
        its next synchronisation point, so warps meeting the same warp-synchronous
        points advance together. ``"serial"``: one warp at a time runs until all
        its threads wait at a barrier or exit, then the next (in ``thread_order``):
        the largest skew between warps, so that a warp running ahead into the next
        pipeline stage before another is done with it (a missing barrier) shows;
        with ``cp_async='eager'`` a stage refilled too early shows.
    kernels : mapping, optional
        A registry override ``{source: (name expression, ...)}`` (default
        :data:`gpuconv._kernels.KERNELS`, read at each launch).
    source_dir : path-like, optional
        The folder of the sources (default :func:`gpuconv._kernels.source_dir`).
    in_process : bool, optional
        Only for ``sanitize=False``: load the library with ctypes (default) or run it
        in the runner subprocess (isolated from crashes).
    debug : bool
        Build without optimisation (``-O0 -g3 -fno-inline``), to step through a
        kernel in gdb (in-process) with every local variable visible.
    max_dynamic_shared : int
        Dynamic shared memory a launch may ask for (default 48 KiB: what
        :class:`gpuconv._kernels.CupyDevice` can launch without an opt-in).
    timeout : float or None
        Seconds a runner launch may take before it is killed (runner mode only).

    Attributes
    ----------
    launches : list of tuple
        ``(source, kernel, grid, block, shared_mem)`` of every launch run, in order.

    Examples
    --------
    >>> import numpy as np
    >>> from gpuconv._emulate import EmulatedDevice
    >>> dev = EmulatedDevice(sanitize=False)
    >>> dev.name, dev.xp is np
    ('emulated', True)
    """

    name = "emulated"
    xp = np

    def __init__(
        self,
        *,
        sanitize: bool = True,
        poison_shared: bool = True,
        thread_order: str = "ascending",
        cp_async: str = "deferred",
        warp_schedule: str = "lockstep",
        kernels: Mapping[str, Sequence[str]] | None = None,
        source_dir: str | os.PathLike | None = None,
        in_process: bool | None = None,
        debug: bool = False,
        max_dynamic_shared: int = 48 * 1024,
        timeout: float | None = 600.0,
    ) -> None:
        if thread_order not in ("ascending", "descending"):
            raise ValueError(
                "thread_order must be 'ascending' or 'descending', "
                f"not {thread_order!r}"
            )
        if cp_async not in ("deferred", "eager"):
            raise ValueError(
                f"cp_async must be 'deferred' or 'eager', not {cp_async!r}"
            )
        if warp_schedule not in ("lockstep", "serial"):
            raise ValueError(
                f"warp_schedule must be 'lockstep' or 'serial', not {warp_schedule!r}"
            )
        if in_process is None:
            in_process = not sanitize
        if sanitize and in_process:
            raise ValueError(
                "a sanitized build cannot run in-process (ASan must be loaded first); "
                "use in_process=False or sanitize=False"
            )
        self.sanitize = bool(sanitize)
        self.poison_shared = bool(poison_shared)
        self.thread_order = thread_order
        self.cp_async = cp_async
        self.warp_schedule = warp_schedule
        self.in_process = bool(in_process)
        self.debug = bool(debug)
        self.max_dynamic_shared = int(max_dynamic_shared)
        self.timeout = timeout
        self._kernels = (
            None if kernels is None else {k: tuple(v) for k, v in kernels.items()}
        )
        self._source_dir = None if source_dir is None else Path(source_dir)
        self.launches: list[tuple[str, str, tuple, tuple, int]] = []

    def __repr__(self) -> str:
        mode = "sanitized" if self.sanitize else "fast"
        return f"EmulatedDevice({mode}, thread_order={self.thread_order!r})"

    # registry
    def registry(self) -> dict[str, tuple[str, ...]]:
        if self._kernels is not None:
            return self._kernels
        from gpuconv._kernels import KERNELS

        return {k: tuple(v) for k, v in KERNELS.items()}

    def source_path(self, source: str) -> Path:
        if self._source_dir is not None:
            return self._source_dir / source
        from gpuconv._kernels import source_dir

        return source_dir() / source

    def library(self, source: str) -> _Library:
        """The loaded library of ``source`` (built on first use)."""
        names = self.registry().get(source)
        if not names:
            raise KeyError(f"no kernels are registered for {source}")
        path = build_library(
            self.source_path(source), names, sanitize=self.sanitize, debug=self.debug
        )
        key = (path, self.in_process)
        with _libraries_lock:
            lib = _libraries.get(key)
            if lib is None:
                if self.in_process:
                    lib = _InProcessLibrary(path)
                else:
                    runner = build_runner(sanitize=self.sanitize)
                    lib = _RunnerLibrary(path, runner, self.timeout)
                _libraries[key] = lib
        if isinstance(lib, _RunnerLibrary):
            lib.timeout = self.timeout
        return lib

    def prepare(self, sources: Iterable[str] | None = None, *, jobs: int = 2) -> None:
        """Builds the libraries of ``sources`` (default: all registered) in
        parallel, so that the first launches do not wait for the compiler."""
        from concurrent.futures import ThreadPoolExecutor

        todo = list(self.registry() if sources is None else sources)
        if not self.in_process:
            build_runner(sanitize=self.sanitize)
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as ex:
            for f in [ex.submit(self.library, s) for s in todo]:
                f.result()

    # the Device protocol
    def launch(self, launch: Launch) -> None:
        """Runs one planned launch on the CPU; raises :class:`EmulationError` on a
        sanitizer report or a synchronisation error, ``TypeError`` on arguments
        that do not match the kernel's parameters."""
        names = self.registry().get(launch.source, ())
        if launch.kernel not in names:
            raise KeyError(f"{launch.kernel} is not registered for {launch.source}")
        if launch.shared_mem < 0 or launch.shared_mem > self.max_dynamic_shared:
            raise EmulationError(
                f"{launch.kernel}: {launch.shared_mem} bytes of dynamic shared memory "
                f"exceed the {self.max_dynamic_shared} a launch may use"
            )
        lib = self.library(launch.source)
        index, params = lib.kernels[launch.kernel]
        m = _marshal(launch.kernel, params, tuple(launch.args), launch.views)
        flags = (_FLAG_POISON if self.poison_shared else 0) | (
            _FLAG_REVERSE if self.thread_order == "descending" else 0
        ) | (_FLAG_CP_EAGER if self.cp_async == "eager" else 0) | (
            _FLAG_WARP_SERIAL if self.warp_schedule == "serial" else 0
        )
        grid = tuple(int(v) for v in launch.grid)
        block = tuple(int(v) for v in launch.block)
        what = (
            f"{launch.kernel} (grid {grid}, block {block}, {launch.shared_mem} B smem)"
        )
        self.launches.append(
            (launch.source, launch.kernel, grid, block, launch.shared_mem)
        )
        lib.run(index, grid, block, int(launch.shared_mem), m, flags, what)
