"""What the test modules of the CPU emulation harness share: their marks and a
device with its sources compiled."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from gpuconv import _backend, _gpu_conv, _gpu_filter
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


class Router:
    """``backend_ops('numpy')`` returns the CUDA ops on the emulated device while
    ``active``; ``calls`` lists the ops called."""

    def __init__(self, dev):
        self.dev = dev
        self.active = True
        self.calls: list[str] = []

    def ops(self):
        dev, calls = self.dev, self.calls

        def rec(name, fn):
            def call(*args):
                calls.append(name)
                return fn(*args, device=dev)

            return staticmethod(call)

        return type("EmulatedOps", (), {
            name: rec(name, getattr(mod, name))
            for mod, names in ((_gpu_conv, ("conv2d_forward", "conv2d_backward_input",
                                            "conv2d_backward_weight",
                                            "conv2d_backward_bias")),
                               (_gpu_filter, ("correlate2d",)))
            for name in names
        })

    def numpy(self, fn, *args, **kw):
        """``fn`` on the real NumPy backend (the reference)."""
        self.active = False
        try:
            return fn(*args, **kw)
        finally:
            self.active = True


def route_numpy_to(dev: EmulatedDevice, monkeypatch: pytest.MonkeyPatch) -> Router:
    """Route ``backend_ops('numpy')`` to the CUDA ops on ``dev`` (while the
    returned router is ``active``): the public API's NumPy path runs the kernels."""
    router = Router(dev)
    ops = router.ops()
    real = _backend.backend_ops
    monkeypatch.setattr(
        _backend, "backend_ops",
        lambda name: ops if name == "numpy" and router.active else real(name),
    )
    return router
