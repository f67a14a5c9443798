"""What the test modules of the CPU emulation harness share: their marks and a
device with its sources compiled."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from gpuconv._emulate import EmulatedDevice, emulation_unavailable_reason

REASON = emulation_unavailable_reason()

#: ``pytestmark`` of a module whose every test runs kernels on the harness: the
#: ``emulated`` marker, plus a skip with the reason where the harness cannot run.
EMULATED = [pytest.mark.emulated] + (
    [] if REASON is None else [pytest.mark.skip(reason=REASON)]
)


def prepared_device(sources: Iterable[str]) -> EmulatedDevice:
    """An ``EmulatedDevice`` on the fast in-process build with ``sources`` compiled
    (for a module marked :data:`EMULATED`)."""
    d = EmulatedDevice(sanitize=False)
    d.prepare(sources)
    return d
