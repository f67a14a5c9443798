"""``python -m gpuconv bench --overhead --quick``: runs on any machine (the null
device needs no GPU and no CuPy), writes JSON rows like the other benchmarks and
puts everything back (no stand-in CuPy left in ``sys.modules``)."""

from __future__ import annotations

import json
import sys

import gpuconv
from gpuconv import _backend, _bench, _gpu_conv, _gpu_filter
from gpuconv.__main__ import main


def test_bench_overhead_quick_writes_rows(tmp_path, capsys):
    defaults = (_gpu_conv.default_device, _gpu_filter._default_device)
    out = tmp_path / "overhead.json"
    assert main(["bench", "--overhead", "--quick", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "null-device" in text and "convolve2d 256^2 k3 same" in text
    doc = json.loads(out.read_text())
    assert doc["format"] == "gpuconv-bench/1"
    rows = doc["rows"]
    null = [r for r in rows if r["backend"] == "null-device"]
    assert [r["op"] for r in null] == ["convolve2d", "convolve", "correlate", "conv2d",
                                    "conv2d_backward"]
    for r in rows:
        assert set(_bench.ROW_KEYS) <= set(r), set(_bench.ROW_KEYS) - set(r)
        assert r["unit"] == "us" and r["rate"] > 0 and r["min_s"] > 0
        assert r["case"].startswith("overhead ")
    for r in null:
        assert r["peer"].startswith("scipy.signal.convolve2d")
        assert r["peer_rate"] > 0 and r["ratio"] > 0
        assert r["target_us"] in (25.0, 20.0, 45.0)
        assert isinstance(r["meets_target"], bool)
    # the stand-in is gone again (the GPU part may have imported the real CuPy to
    # ask for a device): the public API is as before
    assert getattr(sys.modules.get("cupy"), "__version__", None) != "0+dry-run"
    assert (_gpu_conv.default_device, _gpu_filter._default_device) == defaults
    assert _backend.select_backend([1.0]) == "numpy"
    assert gpuconv.convolve2d([[1.0]], [[2.0]]).tolist() == [[2.0]]


def test_gpu_rows_logic_on_the_stand_in():
    """The GPU part's code path (no GPU: the stand-in CuPy poses as one; the filter
    peers are the stand-in's cupyx/cupy (SciPy's and NumPy's functions), PyTorch has
    no CUDA device, so the conv cases give one row without a peer)."""
    from gpuconv import _bench_overhead
    from gpuconv._null_device import null_cuda

    with null_cuda() as dev:
        rows = _bench_overhead.run_gpu(quick=True)
        assert dev.launches > 0
    assert [(r["op"], r["peer"]) for r in rows] == [
        ("convolve2d", "cupyx.scipy.signal.convolve2d"),
        ("convolve2d", "cupyx.scipy.ndimage.convolve"),
        ("convolve", "cupy.convolve"), ("correlate", "cupy.correlate"),
        ("conv2d", None), ("conv2d_backward", None)]
    for r in rows:
        assert set(_bench.ROW_KEYS) <= set(r)
        assert r["backend"] == "cuda" and r["rate"] > 0
