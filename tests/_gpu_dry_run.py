"""Dry run of the ``gpu``-marked tests on the CPU emulation harness (no GPU).

A pytest plugin::

    python -m pytest -p tests._gpu_dry_run -m gpu tests/test_gpu_conv.py \\
        tests/test_gpu_filter.py

It puts a stand-in ``cupy`` module (and ``cupyx.scipy.signal``, on SciPy) in
``sys.modules`` for the session: NumPy
underneath, its arrays an ``ndarray`` subclass that gpuconv's backend chooser takes
for CuPy arrays, so the public API selects the ``'cuda'`` backend and the CUDA ops
(``gpuconv._gpu_conv``, ``gpuconv._gpu_filter``) run their planned launches on an
``EmulatedDevice`` instead of ``CupyDevice``. The ``gpu`` tests then run unchanged,
with their "no GPU" skips lifted; memory-gated tests skip themselves (the
stand-in reports no free device memory), and so do tests that need the real
CuPy (RawModule). This checks the gpu tests' own logic, shapes and references
where no GPU is lent; it proves nothing about the GPU itself.

The scripts ``bench/gpu_check.sh`` runs on a GPU get the same stand-in::

    python -m tests._gpu_dry_run OUTDIR

runs ``bench/gpu_sanitize_all.py`` (the conv and filter sanitizer workloads),
both GPU benchmarks (``--quick``, with small filter images) and
``bench/filter_kernel_time.py`` (40² images) on the emulator and writes
their JSON rows under ``OUTDIR``; CUDA events time with the host clock there, so
the numbers mean nothing, only that the scripts run and validate.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from gpuconv._null_device import (  # noqa: F401  (the stand-in lives there)
    DeviceArray,
    make_cupy,
    make_cupyx,
)


@contextlib.contextmanager
def stand_in() -> Iterator[None]:
    """The stand-in CuPy in ``sys.modules`` and ``CupyDevice`` on the emulator."""
    from gpuconv import _backend, _gpu_conv, _kernels

    if "cupy" in sys.modules:  # a real CuPy: nothing to stand in for
        raise RuntimeError("tests._gpu_dry_run: CuPy is already imported")
    modules = {"cupy": make_cupy(), **make_cupyx()}
    saved = (_kernels.CupyDevice, _gpu_conv.default_device)
    sys.modules.update(modules)
    _backend._cupy_state = None
    _kernels.CupyDevice = _EmulatedCupyDevice
    _gpu_conv.default_device = _EmulatedCupyDevice
    try:
        yield
    finally:
        for name in modules:
            sys.modules.pop(name, None)
        _backend._cupy_state = None
        _kernels.CupyDevice, _gpu_conv.default_device = saved


_STAND_IN: list[Any] = []


def pytest_configure(config: pytest.Config) -> None:
    ctx = stand_in()
    try:
        ctx.__enter__()
    except RuntimeError as exc:
        raise pytest.UsageError(str(exc)) from None
    _STAND_IN.append(ctx)


def pytest_unconfigure(config: pytest.Config) -> None:
    while _STAND_IN:
        _STAND_IN.pop().__exit__(None, None, None)


#: gpu tests whose claim is about the GPU's arithmetic itself (skipped here).
GPU_ONLY = {
    "test_flush_to_zero": "float32 flush-to-zero is the GPU's (-ftz=true); the "
    "emulator computes with the host's FPU",
    "test_to_tf32_on_the_gpu": "the GPU's cvt.rna (tests/test_mma.py checks the "
    "emulated one bit for bit)",
    "test_mma_on_the_gpu_is_within_fp32_summation_of_the_model": "the GPU's "
    "tensor cores (tests/test_mma.py checks the emulated mma bit for bit)",
    "test_ldmatrix_and_cp_async_on_the_gpu": "the GPU's ldmatrix and cp.async "
    "(tests/test_mma.py checks the emulated ones against the same models)",
}


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list) -> None:
    """Lift the conftest's "no GPU" skips of the gpu tests."""
    for item in items:
        if "gpu" in item.keywords:
            item.own_markers[:] = [
                m for m in item.own_markers
                if not (m.name == "skip"
                        and str(m.kwargs.get("reason", "")).startswith("no GPU"))
            ]
            why = GPU_ONLY.get(item.originalname)
            if why is not None:
                item.add_marker(pytest.mark.skip(reason=f"dry run: {why}"))


_DEVICES: list[Any] = []


class _EmulatedCupyDevice:
    """Stands in for ``gpuconv._kernels.CupyDevice``: one shared EmulatedDevice
    whose buffers are the stand-in's DeviceArrays."""

    name = "emulated"
    _shared: _EmulatedCupyDevice | None = None

    def __new__(cls) -> _EmulatedCupyDevice:
        if cls._shared is None:
            from gpuconv._emulate import EmulatedDevice, emulation_unavailable_reason

            reason = emulation_unavailable_reason()
            if reason is not None:
                pytest.skip(reason)
            self = super().__new__(cls)
            self._dev = EmulatedDevice(sanitize=False)
            self.xp = sys.modules["cupy"]
            self.launches = self._dev.launches
            _DEVICES.append(self)
            cls._shared = self
        return cls._shared

    def launch(self, launch: Any) -> None:
        self._dev.launch(launch)


def main(argv: list[str]) -> int:
    """Run the GPU scripts of ``bench/gpu_check.sh`` on the stand-in (see above)."""
    import importlib.util
    from pathlib import Path

    if len(argv) != 1:
        print("usage: python -m tests._gpu_dry_run OUTDIR", file=sys.stderr)
        return 2
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    bench = Path(__file__).resolve().parent.parent / "bench"

    def load(name: str) -> Any:
        spec = importlib.util.spec_from_file_location(f"_dry_{name}",
                                                      bench / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        sys.modules[spec.name] = mod  # type: ignore[union-attr]  # (dataclasses)
        spec.loader.exec_module(mod)  # type: ignore[union-attr]
        return mod

    status = {}
    with stand_in():
        status["gpu_sanitize_all"] = load("gpu_sanitize_all").main()
        conv = load("bench_gpu_conv")
        status["bench_gpu_conv"] = conv.main(
            ["--quick", "--no-progress", "--variants",
             "naive,tiled,tiled_regblock,winograd,winograd4,nhwc,unfold",
             "--json", str(out / "bench_conv.json")])
        probe = load("ncu_probe")  # the ncu step's calls, on small shapes
        probe.LAYER = ((2, 16, 5, 6), (16, 16, 3, 3))
        probe.STEM = ((1, 3, 12, 11), (16, 3, 7, 7))
        status["ncu_probe"] = probe.main([])
        flt = load("bench_gpu_filter")
        flt.QUICK_SIZES, flt.QUICK_KSIZES = (70,), (3, 9, 31)
        flt.LAUNCH_SIZE, flt.LAUNCH_KSIZES = 33, (3,)
        flt.QUICK_EXTRA = (("2d", "float64", 70, 3), ("2d", "complex64", 70, 3),
                           ("rank1", "float32", 70, 9), ("stack", "float32", 16, 3),
                           ("1d", "float32", 1000, 31))
        flt.STACK_IMAGES = 4
        flt.copy_bandwidth = lambda cp, nbytes=0: 1e12
        status["bench_gpu_filter"] = flt.main(
            ["--quick", "--budget", "0", "--json", str(out / "bench_filter.json")])
        # the kernel-time rows: both stagings, the RY alternatives, a forced block
        ktime = load("filter_kernel_time")
        ktime.gc.copy_bandwidth = lambda cp, nbytes=0: 1e12
        status["filter_kernel_time"] = ktime.main(
            ["--n", "40", "--k", "3", "5", "--batch", "1", "--repeats", "1",
             "--blocks", "8x4", "--stack", "6x20", "--json",
             str(out / "filter_kernel_time.json")])
    print(f"gpu dry run of the scripts: {status}")
    return 0 if not any(status.values()) else 1


def pytest_terminal_summary(terminalreporter: Any) -> None:
    launches = sum(len(d.launches) for d in _DEVICES)
    terminalreporter.write_line(
        f"gpu dry run: {launches} launches ran on the CPU emulation harness"
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
