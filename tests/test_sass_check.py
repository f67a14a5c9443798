"""The SASS proxy of issue 11 (``bench/sass_check.py``): the kernels ``auto``
launches on the benchmark layers, built with nvcc for sm_90 and disassembled.

Checks that the tool finds every launched kernel, parses registers and the hottest
loop, and holds the main kernels to the issue's goals (FMA share >= 80 % of the
hottest loop, registers for >= 8 warps/SM), except the kernels listed in
:data:`KNOWN_BELOW` with the reason (strict: a listed kernel that meets the goals
fails too, so the list shrinks as the kernels improve). Builds are cached by
content hash (``$GPUCONV_SASS_CACHE``): a rerun on unchanged sources takes about a
second; a cold run builds only the instances ``auto`` launches (about 15 s on 2
cores).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"

pytestmark = pytest.mark.nvcc


def _load():
    spec = importlib.util.spec_from_file_location("_test_sass_check",
                                                  BENCH / "sass_check.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


sass = _load()

#: Main kernels ``auto`` launches that are still below a goal, with the reason.
KNOWN_BELOW: dict[str, str] = {
    # (none: the sliced forward / input-gradient kernels meet the goals since
    # f971f51, cp.async element copies and IMAD.WIDE address chains, the packed RGB
    # stem forward at exactly 80.0 %, 1024 FFMA of 1280; the RGB stem's weight
    # gradient since the GEMM along the pixels, conv2d_backward_weight_unfold, 83 %)
}


@pytest.fixture(scope="module")
def rows():
    reason = sass.unavailable_reason()
    if reason and os.environ.get("GPUCONV_CI") and shutil.which("nvcc"):
        # CI has nvcc and installs the disassembler wheels (test extra)
        pytest.fail(f"GPUCONV_CI=1: {reason}")
    if reason:
        pytest.skip(reason)
    return sass.analyse(sass.auto_kernels())


def test_hottest_loop_and_warps_helpers():
    body = """
        /*0000*/   MOV R1, c[0x0][0x28] ;
        /*0010*/   FFMA R2, R3, R4, R2 ;
        /*0020*/   LDS.128 R4, [R5] ;
        /*0030*/   FFMA R6, R3, R4, R6 ;
        /*0040*/   @P0 BRA 0x10 ;
        /*0050*/   EXIT ;
    """
    loop = sass.hottest_loop(body)
    assert [op for _, op in loop] == ["FFMA", "LDS.128", "FFMA", "BRA"]
    # the compiler's register-zeroing idiom is not an FMA
    assert not sass.is_fma("HFMA2.MMA", " R124, -RZ, RZ, 0, 0 ")
    assert sass.is_fma("FFMA", " R2, R3, R4, R2 ")
    # 255 registers x 256 threads: one block (8 warps); 128 registers: two blocks.
    assert sass.warps_per_sm(255, 256, 0) == 8
    assert sass.warps_per_sm(128, 256, 0) == 16
    assert sass.warps_per_sm(32, 256, 100 * 1024) == 16  # two blocks by shared memory


def test_every_launched_kernel_is_analysed(rows):
    uses = sass.auto_kernels()
    assert {r.kernel for r in rows} == set(uses)
    for r in rows:
        assert r.registers > 0, r.kernel
        assert r.spill == 0, r.kernel
        assert r.rows, r.kernel
    # the regblock main loops are found and do FMAs
    assert any(r.main and "tiled_regblock" in r.kernel for r in rows)


def test_main_kernels_meet_the_issue_goals(rows):
    report = sass.format_rows(rows)
    below = {r.kernel for r in rows if not r.meets_goals()}
    unexpected = sorted(below - set(KNOWN_BELOW))
    assert not unexpected, f"below the goals:\n{report}"
    fixed = sorted(set(KNOWN_BELOW) - below)
    assert not fixed, f"now meeting the goals (remove from KNOWN_BELOW): {fixed}"
