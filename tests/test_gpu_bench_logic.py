"""The host-side logic of the GPU benchmarks, without a GPU (no marker).

The device facts (FP32 peak from the device attributes, L2 size) with fake CuPy
devices, the failure rule and the tables of rows with errors or without a peer. The
benchmarks themselves run end to end on the emulator in
``tests/test_emulated_api.py::test_gpu_check_scripts_dry_run_on_the_emulator``.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"_test_{name}", BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


conv = _load("bench_gpu_conv")
flt = _load("bench_gpu_filter")


def fake_cupy(attributes):
    class Device:
        def __init__(self, i=0):
            if attributes is None:
                raise RuntimeError("no device attributes")
            self.attributes = attributes

    return types.SimpleNamespace(cuda=types.SimpleNamespace(Device=Device))


@pytest.mark.parametrize("attrs,want", [
    # H100 SXM: 132 SMs x 128 lanes x 2 x 1.98 GHz
    ({"ClockRate": 1980000, "MultiProcessorCount": 132,
      "ComputeCapabilityMajor": 9, "ComputeCapabilityMinor": 0}, 66.9e12),
    # A100 SXM: 108 SMs x 64 FP32 lanes x 2 x 1.41 GHz = 19.5 TFLOP/s
    ({"ClockRate": 1410000, "MultiProcessorCount": 108,
      "ComputeCapabilityMajor": 8, "ComputeCapabilityMinor": 0}, 19.49e12),
    # L40S (sm_89): 142 SMs x 128 x 2 x 2.52 GHz
    ({"ClockRate": 2520000, "MultiProcessorCount": 142,
      "ComputeCapabilityMajor": 8, "ComputeCapabilityMinor": 9}, 91.6e12),
])
def test_fp32_peak_from_the_device_attributes(attrs, want):
    peak, how = conv.fp32_peak_info(fake_cupy(attrs))
    assert peak == pytest.approx(want, rel=2e-3)
    assert "SMs" in how and f"sm_{attrs['ComputeCapabilityMajor']}" in how


@pytest.mark.parametrize("attrs", [None, {"MultiProcessorCount": 132},
                                   {"ClockRate": 0, "MultiProcessorCount": 132,
                                    "ComputeCapabilityMajor": 9,
                                    "ComputeCapabilityMinor": 0}])
def test_fp32_peak_falls_back_to_the_h100_value(attrs):
    peak, how = conv.fp32_peak_info(fake_cupy(attrs))
    assert peak == conv.H100_SXM_FP32_PEAK == 66.9e12
    assert "H100 SXM value" in how


def test_l2_size_from_the_attributes_or_50_mib():
    assert conv.l2_bytes(fake_cupy({"L2CacheSize": 60 << 20})) == 60 << 20
    assert conv.l2_bytes(fake_cupy(None)) == 50 << 20


def test_failure_rule_and_tables_of_odd_rows(tmp_path):
    rows = [
        {"case": "conv2d_forward/tiled/L/float32", "error": "ValueError: shared memory",
         "error_kind": "refused"},
        {"case": "conv2d_forward/auto/L/float32", "median_s": 1e-3, "ratio": None},
    ]
    assert not conv.failed(rows)
    assert conv.failed([*rows, {"case": "c", "error_kind": "validation"}])
    assert conv.failed([{"case": "c", "error_kind": "exception"}])
    table = conv.format_rows(rows)
    assert "ValueError: shared memory" in table and "1.000" in table
    frows = [
        {"case": "filter2d/-/4096x4096/k3", "error": "MemoryError: x",
         "error_kind": "exception"},
        {"case": "filter2d/auto/512x512/k3", "peer": None, "median_s": 2e-4,
         "peer_median_s": None, "ratio": None, "gpx_s": 1.3, "mem_floor_share": 0.5},
    ]
    assert flt.failed(frows) and not flt.failed(frows[1:])
    table = flt._table(frows)
    assert "MemoryError: x" in table and "0.200" in table
    path = tmp_path / "rows.json"
    flt.write_rows(path, frows, {"argv": ["x"]})
    doc = json.loads(path.read_text())
    assert doc["argv"] == ["x"] and len(doc["rows"]) == 2
    assert not path.with_name("rows.json.tmp").exists()


def test_winograd_model_table_is_the_docs_table():
    """docs/performance.md's Winograd prediction table is what bench/winograd_model.py
    prints from the committed H200 rows (the model, reproducible)."""
    import json

    mod = _load("winograd_model")
    rows = json.loads(mod.DEFAULT_ROWS.read_text())["rows"]
    table = mod.model(rows, 4.0e12)
    assert len(table) == 2 + 8 * 3
    docs = (BENCH.parent / "docs" / "performance.md").read_text()
    for line in table:
        assert line in docs, line
