"""The verdict of ``bench/gpu_check.sh``'s pytest step, from pytest's junit XML.

    python bench/gpu_check_verdict.py pytest_gpu.xml --expected N --pytest-status RC

The step passes only when the gpu tests really ran on the GPU:

- pytest's exit status is 0 and no test failed or errored;
- no test was skipped for a reason other than a missing *optional* package
  (``pytest.importorskip`` of e.g. scikit-learn or dask). A skip because CuPy or a
  device is missing (conftest's "no GPU: ..."), because the device has too little
  free memory, or for any other reason fails the step, and so does an xfail;
- at least ``N - (allowed skips)`` tests passed, ``N`` being what
  ``pytest --collect-only -m gpu`` collected on the same files; and at least one.

The last line printed is ``REASON: ...`` on failure (exit status 1) or ``ok: ...``.
"""

from __future__ import annotations

import argparse
import re
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

#: Packages whose absence is never an acceptable skip in a GPU check.
REQUIRED = frozenset({"cupy", "cupyx", "cuda", "gpuconv", "numpy", "pytest", "scipy"})

_PACKAGE_PATTERNS = (
    re.compile(r"could not import '([\w.]+)'"),  # pytest.importorskip's message
    re.compile(r"No module named '([\w.]+)'"),
    re.compile(r"\b([\w.]+) is not installed"),  # importorskip(..., reason=...)
)


def missing_optional_package(message: str) -> str | None:
    """The optional package a skip message says is missing, else ``None``."""
    if "no GPU" in message:  # conftest: CuPy or the device is missing
        return None
    for pat in _PACKAGE_PATTERNS:
        m = pat.search(message)
        if m:
            top = m.group(1).split(".")[0].lower()
            return None if top in REQUIRED else top
    return None


@dataclass
class Tally:
    passed: int = 0
    failed: list[str] = field(default_factory=list)
    allowed_skips: list[tuple[str, str]] = field(default_factory=list)
    bad_skips: list[tuple[str, str]] = field(default_factory=list)


def tally(junit_xml: str) -> Tally:
    """Count the testcases of a pytest junit XML document."""
    t = Tally()
    for case in ET.fromstring(junit_xml).iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        bad = case.find("failure")
        if bad is None:
            bad = case.find("error")
        skip = case.find("skipped")
        if bad is not None:
            t.failed.append(f"{name}: {bad.get('message', '')}")
        elif skip is not None:
            # a module skipped at collection says why in the text, not the message
            msg = skip.get("message") or ""
            if msg in ("", "collection skipped"):
                msg = f"{msg}: {(skip.text or '').strip()}"
            if skip.get("type") == "pytest.xfail":
                t.bad_skips.append((name, f"xfail: {msg}"))
            elif missing_optional_package(msg):
                t.allowed_skips.append((name, msg))
            else:
                t.bad_skips.append((name, msg))
        else:
            t.passed += 1
    return t


def verdict(
    junit_xml: str | None,
    expected: int,
    pytest_status: int,
) -> tuple[bool, str]:
    """``(ok, line)``: whether the pytest step passed, and the line saying why."""
    if junit_xml is None:
        return False, (
            f"pytest wrote no junit XML (exit status {pytest_status}); "
            f"0 of {expected} gpu tests ran"
        )
    t = tally(junit_xml)
    need = expected - len(t.allowed_skips)
    counts = (
        f"{t.passed} passed of {expected} collected with -m gpu, "
        f"{len(t.allowed_skips)} skipped for a missing optional package, "
        f"{len(t.bad_skips)} skipped otherwise, {len(t.failed)} failed"
    )
    if t.failed:
        return (
            False,
            f"{len(t.failed)} gpu test(s) failed, first {t.failed[0]} ({counts})",
        )
    if t.bad_skips:
        name, msg = t.bad_skips[0]
        return False, (
            f"{len(t.bad_skips)} gpu test(s) skipped for a reason other than "
            f"a missing optional package, first {name}: {msg} ({counts})"
        )
    if pytest_status != 0:
        return False, f"pytest exit status {pytest_status} ({counts})"
    if t.passed < max(need, 1):
        return False, f"fewer gpu tests ran than expected ({counts})"
    return True, counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("junit", help="pytest's --junitxml file")
    ap.add_argument(
        "--expected",
        type=int,
        required=True,
        help="the number of tests pytest --collect-only -m gpu collected",
    )
    ap.add_argument("--pytest-status", type=int, required=True)
    args = ap.parse_args(argv)
    try:
        with open(args.junit, encoding="utf-8") as fh:
            text: str | None = fh.read()
    except OSError:
        text = None
    ok, line = verdict(text, args.expected, args.pytest_status)
    if not ok:
        print(f"REASON: {line}")
        return 1
    print(f"ok: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
