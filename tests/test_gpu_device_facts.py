"""The GPU benchmark's device facts under each CuPy/CUDA version's sources (no GPU).

On the H200 run (CuPy 14.2, CUDA 13) ``Device.attributes`` had no
``ComputeCapabilityMajor`` key and the benchmark fell back to the H100 constant for
the FP32 peak (issue 10). :func:`bench._gpu_common.device_facts` reads each fact
from whichever source has it; these fakes reproduce each CuPy's shape.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _load(name):
    spec = importlib.util.spec_from_file_location(
        f"_test_facts_{name}", BENCH / f"{name}.py"
    )
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


common = _load("_gpu_common")
conv = _load("bench_gpu_conv")

# H200: 132 SMs, 1980 MHz, sm_90, 60 MiB L2; 132 x 128 lanes x 2 x 1.98 GHz
H200_PEAK = 132 * 128 * 2 * 1.98e9
CUPY14_ATTRS = {"ClockRate": 1980000, "MultiProcessorCount": 132,
                "L2CacheSize": 60 << 20, "MaxThreadsPerBlock": 1024}  # fmt: skip
CUDA13_PROPS = {
    "name": b"NVIDIA H200",
    "multiProcessorCount": 132,
    "major": 9,
    "minor": 0,
    "l2CacheSize": 60 << 20,
}  # fmt: skip  (no clockRate)
ENUMS = {"cudaDevAttrClockRate": 13, "cudaDevAttrMultiProcessorCount": 16,
         "cudaDevAttrL2CacheSize": 38}  # fmt: skip
BY_ENUM = {13: 1980000, 16: 132, 38: 60 << 20}


class _Err(Exception):
    """Stands in for CUDARuntimeError."""


def fake_cupy(attrs=None, props=None, cc=None, enums=False):
    class Device:
        id = 0

        @property
        def attributes(self):
            if attrs is None:
                raise _Err("cudaErrorInsufficientDriver")
            return dict(attrs)

        @property
        def compute_capability(self):
            if cc is None:
                raise _Err("cudaErrorInsufficientDriver")
            return cc

    def get_props(i):
        if props is None:
            raise _Err("cudaErrorInsufficientDriver")
        return dict(props)

    def get_attr(enum, i):
        if not enums:
            raise _Err("cudaErrorInsufficientDriver")
        return BY_ENUM[enum]

    runtime = types.SimpleNamespace(
        getDeviceProperties=get_props, deviceGetAttribute=get_attr,
        **(ENUMS if enums else {}),
    )  # fmt: skip
    return types.SimpleNamespace(
        cuda=types.SimpleNamespace(Device=Device, runtime=runtime)
    )


@pytest.mark.parametrize(
    "fake",
    [
        # CuPy 14 / CUDA 13, as on the H200: no ComputeCapability* attributes
        fake_cupy(attrs=CUPY14_ATTRS, props=CUDA13_PROPS, cc="90"),
        # attributes unreadable: properties (no clockRate) + deviceGetAttribute
        fake_cupy(props=CUDA13_PROPS, enums=True),
        # only the enumerated attributes and compute_capability
        fake_cupy(cc="90", enums=True),
        # an older CuPy: everything in Device.attributes
        fake_cupy(
            attrs={
                **CUPY14_ATTRS,
                "ComputeCapabilityMajor": 9,
                "ComputeCapabilityMinor": 0,
            }
        ),  # fmt: skip
    ],
    ids=["cupy14-cuda13", "properties", "enums", "old-attributes"],
)
def test_h200_facts_from_any_source(fake):
    facts = common.device_facts(fake)
    assert facts == {"sms": 132, "clock_khz": 1980000, "cc": (9, 0),
                     "l2_bytes": 60 << 20}  # fmt: skip
    peak, how = conv.fp32_peak_info(fake)
    assert peak == pytest.approx(H200_PEAK) and "H100" not in how
    assert how == "132 SMs x 128 FP32 lanes x 2 x 1.980 GHz (sm_90)"
    assert conv.l2_bytes(fake) == 60 << 20


def test_three_digit_compute_capability():
    facts = common.device_facts(fake_cupy(attrs=CUPY14_ATTRS, cc="120"))
    assert facts["cc"] == (12, 0)


def test_nothing_readable_falls_back_and_says_what():
    fake = fake_cupy()
    assert common.device_facts(fake) == {"sms": None, "clock_khz": None, "cc": None,
                                         "l2_bytes": None}  # fmt: skip
    peak, how = conv.fp32_peak_info(fake)
    assert peak == conv.H100_SXM_FP32_PEAK
    assert how == "H100 SXM value (unreadable: clock_khz, sms, cc)"
    assert conv.l2_bytes(fake) == 50 << 20


def test_real_cupy():
    """The installed CuPy: every fact read where a device is usable, else the
    fallbacks (and no exception out of the benchmark's helpers)."""
    cp = pytest.importorskip("cupy")
    from gpuconv import _backend

    peak, how = conv.fp32_peak_info(cp)
    if _backend.cuda_unavailable_reason() is None:
        facts = common.device_facts(cp)
        assert None not in facts.values(), facts
        assert "H100" not in how and peak > 1e12
    else:
        assert peak == conv.H100_SXM_FP32_PEAK and "unreadable" in how
        assert conv.l2_bytes(cp) == 50 << 20
