"""``gpuconv.torch``: the differentiable conv2d and the Conv2d module on torch tensors.

Oracles: ``torch.autograd.gradcheck``/``gradgradcheck`` (float64 finite
differences, also complex128), ``torch.nn.Conv2d`` and
``torch.nn.functional.conv2d`` with copied weights (outputs and every gradient),
an explicit ``np.pad(..., 'symmetric')`` for the mode torch lacks, and the same
small network trained for a few SGD steps on both. Every test runs on CPU tensors
(the NumPy backend, in CI); the ``device`` fixture repeats them on CUDA tensors,
marked ``gpu`` (``bench/gpu_check.sh`` on a lent GPU), where zero-copy (pointer
equality through DLPack) and torch's current stream are checked too.
"""

from __future__ import annotations

import doctest
import inspect
import os
import subprocess
import sys

import numpy as np
import pytest

if os.environ.get("GPUCONV_CI"):
    import torch  # CI (GPUCONV_CI=1) installs PyTorch: a missing one fails here
else:
    torch = pytest.importorskip(
        "torch", reason="PyTorch is not installed (gpuconv's optional extra 'torch')"
    )
F = torch.nn.functional

import gpuconv  # noqa: E402
import gpuconv.torch as gt  # noqa: E402
from tests._tol import tol  # noqa: E402

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]
TORCH_MODES = ("zeros", "reflect", "replicate", "circular")
MODES = (*TORCH_MODES, "symmetric")


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Torch's CPU ops on one thread (the sizes are tiny; on a shared 2-core CI
    machine spinning intra-op threads slow the torch side down tenfold), and
    torch's CUDA references in FP32, not TF32 (cuDNN's convolutions default to
    TF32, which float32 tolerances would not forgive)."""
    n = torch.get_num_threads()
    tf32 = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.set_num_threads(1)
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.set_num_threads(n)
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32


@pytest.fixture(params=DEVICES)
def device(request):
    if request.param == "cuda" and not torch.cuda.is_available():
        pytest.skip("torch has no CUDA device here (torch.cuda.is_available() is "
                    "False)")
    return torch.device(request.param)


def close(actual, desired, terms=1):
    """``assert_allclose`` with ``tests/_tol.py``'s tolerance for the dtype."""
    a = actual.detach().cpu().resolve_conj().numpy()
    d = desired.detach().cpu().resolve_conj().numpy()
    assert a.shape == d.shape and actual.dtype == desired.dtype
    scale = float(np.abs(d).max()) if d.size else 1.0
    np.testing.assert_allclose(a, d, **tol(a.dtype, terms, scale))


# -- gradcheck over random configurations ----------------------------------------------


def random_config(seed: int) -> dict:
    """A valid small conv2d configuration (sizes, stride, padding in every form,
    dilation, groups, bias, batched or not) drawn from ``seed``; the padding mode
    is ``MODES[seed % 5]``."""
    rng = np.random.default_rng(seed)
    while True:
        g = int(rng.integers(1, 3))
        kh, kw = (int(v) for v in rng.integers(1, 4, 2))
        cfg = {
            "x": (int(rng.integers(1, 3)), g * int(rng.integers(1, 3)),
                  *(int(v) for v in rng.integers(3, 6, 2))),
            "w": (g * int(rng.integers(1, 3)), 0, kh, kw),
            "stride": tuple(int(v) for v in rng.integers(1, 3, 2)),
            "dilation": tuple(int(v) for v in rng.integers(1, 3, 2)),
            "groups": g,
            "padding_mode": MODES[seed % len(MODES)],  # each mode in turn
            "bias": bool(rng.integers(2)),
        }
        cfg["w"] = (cfg["w"][0], cfg["x"][1] // g, kh, kw)
        form = int(rng.integers(5))
        cfg["padding"] = [
            int(rng.integers(0, 3)),
            tuple(int(v) for v in rng.integers(0, 3, 2)),
            tuple(int(v) for v in rng.integers(0, 3, 4)),
            "same", "valid",
        ][form]
        if rng.integers(4) == 0:
            cfg["x"] = cfg["x"][1:]  # unbatched
        try:  # the geometry must be valid (padded size >= dilated kernel)
            gpuconv.conv2d(np.zeros(cfg["x"]), np.zeros(cfg["w"]),
                           **{k: cfg[k] for k in ("stride", "padding", "dilation",
                                                  "groups", "padding_mode")})
        except ValueError:
            continue
        return cfg


def _operands(cfg, dtype, device, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(cfg["x"], generator=gen, dtype=dtype).to(device)
    w = torch.randn(cfg["w"], generator=gen, dtype=dtype).to(device)
    b = (torch.randn(cfg["w"][0], generator=gen, dtype=dtype).to(device)
         if cfg["bias"] else None)
    return [t if t is None else t.requires_grad_() for t in (x, w, b)]


def _fn(cfg):
    kw = {k: cfg[k] for k in ("stride", "padding", "dilation", "groups",
                              "padding_mode")}
    return lambda x, w, b=None: gt.conv2d(x, w, b, **kw)


@pytest.mark.parametrize("seed", range(12))
def test_gradcheck_random_configs(seed, device):
    cfg = random_config(seed)
    args = [a for a in _operands(cfg, torch.float64, device, seed) if a is not None]
    assert torch.autograd.gradcheck(_fn(cfg), args)


def test_random_configs_cover_every_form():
    cfgs = [random_config(s) for s in range(12)]
    assert {c["padding_mode"] for c in cfgs} == set(MODES)
    assert {type(c["padding"]).__name__ for c in cfgs} >= {"int", "tuple", "str"}
    assert any(len(c["x"]) == 3 for c in cfgs) and any(c["groups"] == 2 for c in cfgs)
    assert any(c["stride"] != (1, 1) for c in cfgs)
    assert any(c["dilation"] != (1, 1) for c in cfgs)


@pytest.mark.parametrize("seed", [1, 3, 6, 9])
@pytest.mark.parametrize("dtype", ["float64", "complex128"])
def test_double_backward_gradgradcheck(seed, dtype, device):
    """Double backward is supported: the gradients are themselves differentiable
    gpuconv calls (also for complex tensors: in full on one small configuration,
    elsewhere in gradcheck's fast mode, random projections of the Jacobians, to
    keep it quick)."""
    cfg = random_config(seed)
    args = [a for a in _operands(cfg, getattr(torch, dtype), device, seed)
            if a is not None]
    assert torch.autograd.gradgradcheck(_fn(cfg), args,
                                        fast_mode=dtype == "complex128" and seed != 6)


def test_double_backward_gradient_penalty_matches_torch(device):
    """A gradient penalty (``|dL/dx|^2``, as in WGAN-GP) differentiated once more
    gives torch's result."""
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(2, 4, 7, 6, generator=gen, dtype=torch.float64).to(device)
    w = torch.randn(6, 2, 3, 3, generator=gen, dtype=torch.float64).to(device)
    b = torch.randn(6, generator=gen, dtype=torch.float64).to(device)
    grads = []
    for f in (gt.conv2d, F.conv2d):
        xi, wi, bi = (t.clone().requires_grad_() for t in (x, w, b))
        y = f(xi, wi, bi, 2, 1, 1, 2)
        (gx,) = torch.autograd.grad(y.tanh().sum(), xi, create_graph=True)
        grads.append(torch.autograd.grad(gx.square().sum(), (xi, wi, bi)))
    for ours, ref in zip(*grads, strict=True):
        close(ours, ref, terms=100)


# -- against torch.nn.Conv2d -----------------------------------------------------------


def _pair_modules(mode, dtype, device, **kw):
    ref = torch.nn.Conv2d(4, 6, padding_mode=mode, dtype=dtype, device=device, **kw)
    ours = gt.Conv2d(4, 6, padding_mode=mode, dtype=dtype, device=device, **kw)
    ours.load_state_dict(ref.state_dict())
    return ours, ref


def _check_module_pair(ours, ref, x, seed=3):
    """Outputs and all gradients (input, weight, bias) of two modules agree."""
    xo, xr = x.clone().requires_grad_(), x.clone().requires_grad_()
    yo, yr = ours(xo), ref(xr)
    K, Cg, KH, KW = ref.weight.shape
    close(yo, yr, terms=Cg * KH * KW)
    gen = torch.Generator().manual_seed(seed)
    gy = torch.randn(yr.shape, generator=gen, dtype=yr.dtype).to(yr.device)
    yo.backward(gy)
    yr.backward(gy)
    close(xo.grad, xr.grad, terms=4 * K * KH * KW)  # folding adds up to 4x
    close(ours.weight.grad, ref.weight.grad, terms=gy[0, 0].numel() * gy.shape[0])
    if ref.bias is not None:
        close(ours.bias.grad, ref.bias.grad, terms=gy[0, 0].numel() * gy.shape[0])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("mode", TORCH_MODES)
def test_conv2d_module_matches_torch(mode, dtype, device):
    dt = getattr(torch, dtype)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 9, 8, generator=gen, dtype=dt).to(device)
    for kw in (
        {"kernel_size": 3, "stride": 2, "padding": (1, 2), "groups": 2},
        {"kernel_size": (2, 3), "padding": 2, "dilation": (2, 1), "bias": False},
        {"kernel_size": 3, "padding": "same", "dilation": 2},
    ):
        torch.manual_seed(1)
        ours, ref = _pair_modules(mode, dt, device, **kw)
        _check_module_pair(ours, ref, x)


def test_unbatched_input_matches_torch(device):
    torch.manual_seed(0)
    ours, ref = _pair_modules("reflect", torch.float64, device, kernel_size=3,
                              padding=1, stride=(1, 2))
    x = torch.randn(4, 6, 7, dtype=torch.float64, device=device)
    _check_module_pair(ours, ref, x)


def _symmetric_index(n, before, after):
    """Source index of each padded position, from ``np.pad``'s own 'symmetric'."""
    return torch.from_numpy(np.pad(np.arange(n), (before, after), mode="symmetric"))


@pytest.mark.parametrize("padding", [(1, 2), (2, 0, 1, 3), "same"])
def test_symmetric_against_numpy_pad(padding, device):
    """'symmetric' equals ``np.pad(x, mode='symmetric')`` followed by torch's conv
    (values); the gradients equal autograd through the same gather."""
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, 4, 6, 5, generator=gen, dtype=torch.float64)
    conv = gt.Conv2d(4, 6, (3, 4), padding=padding, padding_mode="symmetric",
                     dtype=torch.float64, device=device)
    pads = {(1, 2): (1, 1, 2, 2), (2, 0, 1, 3): (2, 0, 1, 3),
            "same": (1, 1, 1, 2)}[padding]
    xp = np.pad(x.numpy(), ((0, 0), (0, 0), pads[:2], pads[2:]), mode="symmetric")
    w, b = conv.weight.detach().cpu(), conv.bias.detach().cpu()
    want = F.conv2d(torch.from_numpy(xp), w, b)
    xd = x.clone().to(device).requires_grad_()
    y = conv(xd)
    close(y, want.to(device), terms=4 * 12)
    # gradients: autograd through an explicit gather with np.pad's indices
    xr = x.clone().requires_grad_()
    wr, br = w.clone().requires_grad_(), b.clone().requires_grad_()
    ih = _symmetric_index(6, *pads[:2])
    iw = _symmetric_index(5, *pads[2:])
    yr = F.conv2d(xr[:, :, ih][:, :, :, iw], wr, br)
    gy = torch.randn(yr.shape, generator=gen, dtype=torch.float64)
    yr.backward(gy)
    y.backward(gy.to(device))
    close(xd.grad, xr.grad.to(device), terms=4 * 72)
    close(conv.weight.grad, wr.grad.to(device), terms=60)
    close(conv.bias.grad, br.grad.to(device), terms=60)


def test_asymmetric_padding_and_strided_same(device):
    """gpuconv's extras against torch's own F.pad + conv2d: a 4-tuple padding and
    'same' with a stride (TensorFlow's rule: ceil(H/stride) outputs)."""
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(2, 3, 9, 10, generator=gen, dtype=torch.float64).to(device)
    w = torch.randn(5, 3, 3, 4, generator=gen, dtype=torch.float64).to(device)
    close(gt.conv2d(x, w, padding=(0, 2, 3, 1), padding_mode="replicate"),
          F.conv2d(F.pad(x, (3, 1, 0, 2), mode="replicate"), w), terms=36)
    y = gt.conv2d(x, w, stride=2, padding="same")
    assert y.shape == (2, 5, 5, 5)
    # total pad: H 9 -> (5-1)*2+3-9 = 2 (1, 1); W 10 -> (5-1)*2+4-10 = 2 (1, 1)
    close(y, F.conv2d(x, w, stride=2, padding=1), terms=36)


# -- dtypes, devices, bad inputs -------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "complex64",
                                   "complex128"])
def test_dtypes_and_device_of_results(dtype, device):
    dt = getattr(torch, dtype)
    gen = torch.Generator().manual_seed(5)
    x64 = torch.randn(2, 4, 6, 6, generator=gen, dtype=torch.complex128)
    w64 = torch.randn(3, 4, 3, 3, generator=gen, dtype=torch.complex128)
    if not dt.is_complex:
        x64, w64 = x64.real, w64.real
    x = x64.to(dt).to(device).requires_grad_()
    w = w64.to(dt).to(device).requires_grad_()
    y = gt.conv2d(x, w, padding=1)
    assert y.dtype == dt and y.device == x.device
    gx, gw = torch.autograd.grad(y, (x, w), torch.ones_like(y))
    assert gx.dtype == gw.dtype == dt and gx.device == gw.device == x.device
    # against float64 with the tolerance of the dtype (float16: accumulated in
    # float32, rounded once)
    ref_dt = torch.complex128 if dt.is_complex else torch.float64
    want = F.conv2d(x.detach().to(ref_dt).cpu(), w.detach().to(ref_dt).cpu(),
                    padding=1).numpy()
    got = y.detach().cpu().to(ref_dt).numpy()
    np.testing.assert_allclose(got, want, **tol(dtype, 36, float(np.abs(want).max())))


def test_conj_and_neg_views_are_resolved(device):
    """Lazy conj/neg bits (which NumPy and DLPack cannot express) are honoured."""
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(1, 2, 5, 5, generator=gen, dtype=torch.complex128).to(device)
    w = torch.randn(3, 2, 2, 2, generator=gen, dtype=torch.complex128).to(device)
    xc = x.conj()
    assert xc.is_conj()
    close(gt.conv2d(xc, w), F.conv2d(xc.resolve_conj(), w), terms=8)
    xn = torch._neg_view(x)
    assert xn.is_neg()
    close(gt.conv2d(xn, w), -F.conv2d(x, w), terms=8)


def test_bad_dtypes_raise_type_error_listing_accepted(device):
    w = torch.ones(1, 1, 2, 2, device=device)
    for bad in (torch.int32, torch.int64, torch.bool, torch.bfloat16, torch.uint8):
        x = torch.ones(1, 1, 3, 3, device=device).to(bad)
        with pytest.raises(TypeError, match="float16, float32, float64, complex64, "
                           "complex128") as err:
            gt.conv2d(x, w.to(bad) if bad == torch.bfloat16 else w)
        assert str(bad).removeprefix("torch.") in str(err.value)
    with pytest.raises(TypeError, match="one dtype.*float64.*float32"):
        gt.conv2d(torch.ones(1, 1, 3, 3, dtype=torch.float64, device=device), w)
    with pytest.raises(TypeError, match="must be a torch.Tensor"):
        gt.conv2d(np.ones((1, 1, 3, 3), np.float32), w)


def test_tensors_on_different_devices_raise_value_error():
    """CPU CI has one real device; the 'meta' device stands in for the second
    (the CUDA-vs-CPU case is in test_cuda_and_cpu_tensors_mixed_raise)."""
    x = torch.ones(1, 1, 3, 3)
    with pytest.raises(ValueError, match="one device.*input on cpu.*weight on meta"):
        gt.conv2d(x, torch.ones(1, 1, 2, 2, device="meta"))
    with pytest.raises(ValueError, match="'cpu' and 'cuda'"):
        gt.conv2d(x.to("meta"), torch.ones(1, 1, 2, 2, device="meta"))


def test_bad_geometry_gives_gpuconv_messages(device):
    x = torch.ones(1, 4, 5, 5, device=device)
    with pytest.raises(ValueError, match="expected input.*to have 6 channels"):
        gt.conv2d(x, torch.ones(2, 3, 3, 3, device=device), groups=2)
    with pytest.raises(ValueError, match="padding_mode must be one of"):
        gt.conv2d(x, torch.ones(2, 4, 3, 3, device=device), padding_mode="wrap")
    with pytest.raises(ValueError, match="algorithm must be one of"):
        gt.conv2d(x, torch.ones(2, 4, 3, 3, device=device), algorithm="fast")


def test_module_constructor_errors():
    with pytest.raises(ValueError, match="in_channels must be divisible by groups"):
        gt.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="out_channels must be divisible by groups"):
        gt.Conv2d(4, 3, 3, groups=2)
    with pytest.raises(ValueError, match="'symmetric'"):
        gt.Conv2d(4, 4, 3, padding_mode="wrap")
    with pytest.raises(ValueError, match="Invalid padding string"):
        gt.Conv2d(4, 4, 3, padding="full")


def test_inputs_never_modified(device):
    gen = torch.Generator().manual_seed(8)
    x = torch.randn(2, 4, 6, 6, generator=gen).to(device).requires_grad_()
    w = torch.randn(4, 2, 3, 3, generator=gen).to(device).requires_grad_()
    b = torch.randn(4, generator=gen).to(device).requires_grad_()
    before = [t.detach().clone() for t in (x, w, b)]
    y = gt.conv2d(x, w, b, padding=1, groups=2, padding_mode="circular")
    gy = torch.randn(y.shape, generator=gen).to(device)
    gy_before = gy.clone()
    y.backward(gy)
    for t, t0 in zip((x, w, b, gy), (*before, gy_before), strict=True):
        assert torch.equal(t.detach(), t0)


# -- zero-copy, needs, determinism -----------------------------------------------------


class Spy:
    """Wraps a gpuconv function to record the arrays it receives and returns."""

    def __init__(self, monkeypatch, name):
        self.fn = getattr(gpuconv, name)
        self.calls: list[tuple[tuple, dict, object]] = []
        monkeypatch.setattr(gpuconv, name, self)

    def __call__(self, *args, **kwargs):
        out = self.fn(*args, **kwargs)
        stream = None
        if kwargs.get("backend") == "cuda":
            import cupy

            stream = cupy.cuda.get_current_stream().ptr
        self.calls.append((args, kwargs, out, stream))
        return out


def _ptr(a) -> int:
    if isinstance(a, np.ndarray):
        return a.__array_interface__["data"][0]
    return a.data.ptr  # CuPy


def test_zero_copy_inputs_and_output(monkeypatch, device):
    """The arrays gpuconv receives are views of the tensors' memory (also a strided
    one), and the result tensor is a view of the array gpuconv returned."""
    spy = Spy(monkeypatch, "conv2d")
    x = torch.randn(2, 3, 8, 8, device=device, requires_grad=True)
    w = torch.randn(5, 3, 3, 3, device=device)
    b = torch.randn(5, device=device)
    y = gt.conv2d(x, w, b)
    (args, kwargs, out, _), = spy.calls
    assert kwargs["backend"] == ("cuda" if device.type == "cuda" else "numpy")
    assert [_ptr(a) for a in args] == [t.data_ptr() for t in (x, w, b)]
    assert y.data_ptr() == _ptr(out)
    xt = torch.randn(2, 8, 3, 8, device=device).transpose(1, 2)  # not contiguous
    assert not xt.is_contiguous()
    y2 = gt.conv2d(xt, w)
    arr = spy.calls[-1][0][0]
    assert _ptr(arr) == xt.data_ptr()
    assert tuple(arr.strides) == tuple(s * 4 for s in xt.stride())
    close(y2, F.conv2d(xt, w), terms=27)


def test_backward_computes_only_what_autograd_needs(monkeypatch, device):
    spy = Spy(monkeypatch, "conv2d_backward")
    x = torch.randn(2, 3, 6, 6, device=device)
    w = torch.randn(4, 3, 3, 3, device=device)
    b = torch.randn(4, device=device)
    cases = [((True, False, False), ("input",)), ((False, True, False), ("weight",)),
             ((False, False, True), ("bias",)),
             ((True, True, True), ("input", "weight", "bias"))]
    for flags, needs in cases:
        xi, wi, bi = (t.clone().requires_grad_(f) for t, f in zip((x, w, b), flags,
                                                                  strict=True))
        gt.conv2d(xi, wi, bi, padding=1).sum().backward()
        assert spy.calls[-1][1]["needs"] == needs
        for t, f in zip((xi, wi, bi), flags, strict=True):
            assert (t.grad is not None) == f
    assert len(spy.calls) == len(cases)


def test_gradients_are_bit_identical_run_after_run(device):
    gen = torch.Generator().manual_seed(9)
    x = torch.randn(4, 8, 12, 12, generator=gen).to(device)
    w = torch.randn(8, 8, 3, 3, generator=gen).to(device)
    gy = torch.randn(4, 8, 12, 12, generator=gen).to(device)
    runs = []
    for _ in range(2):
        xi, wi = x.clone().requires_grad_(), w.clone().requires_grad_()
        gt.conv2d(xi, wi, padding=1, padding_mode="reflect").backward(gy)
        runs.append((xi.grad, wi.grad))
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])


# -- the module: init, state_dict, repr, training --------------------------------------


def test_init_state_dict_and_repr_match_torch():
    for kw in ({"kernel_size": 3, "padding": 1},
               {"kernel_size": (1, 5), "stride": 2, "dilation": (1, 2), "groups": 2,
                "bias": False},
               {"kernel_size": 3, "padding": "same", "padding_mode": "reflect"}):
        torch.manual_seed(11)
        ref = torch.nn.Conv2d(4, 6, **kw)
        torch.manual_seed(11)
        ours = gt.Conv2d(4, 6, **kw)
        # the same draws from torch's RNG: identical initial parameters
        assert ours.state_dict().keys() == ref.state_dict().keys()
        for k, v in ref.state_dict().items():
            assert torch.equal(ours.state_dict()[k], v), k
        assert repr(ours) == repr(ref)
        assert [n for n, _ in ours.named_parameters()] == \
            [n for n, _ in ref.named_parameters()]
    sym = gt.Conv2d(2, 2, 3, padding=(0, 1, 2, 3), padding_mode="symmetric")
    assert repr(sym) == ("Conv2d(2, 2, kernel_size=(3, 3), stride=(1, 1), "
                         "padding=(0, 1, 2, 3), padding_mode=symmetric)")


def test_state_dict_round_trip_both_ways():
    torch.manual_seed(12)
    ref = torch.nn.Conv2d(3, 5, 3, padding=1, padding_mode="circular")
    ours = gt.Conv2d(3, 5, 3, padding=1, padding_mode="circular")
    result = ours.load_state_dict(ref.state_dict())
    assert not result.missing_keys and not result.unexpected_keys
    x = torch.randn(2, 3, 7, 7)
    close(ours(x), ref(x), terms=27)
    with torch.no_grad():
        ours.weight.mul_(-2.0)
        ours.bias.add_(1.0)
    back = torch.nn.Conv2d(3, 5, 3, padding=1, padding_mode="circular")
    back.load_state_dict(ours.state_dict())
    for k in ("weight", "bias"):
        assert torch.equal(back.state_dict()[k], ours.state_dict()[k])
    close(ours(x), back(x), terms=27)
    with pytest.raises(RuntimeError, match="Unexpected key"):
        gt.Conv2d(3, 5, 3, bias=False).load_state_dict(ref.state_dict())


def _small_net(conv, dtype, device):
    torch.manual_seed(21)
    net = torch.nn.Sequential(
        conv(1, 4, 3, padding=1), torch.nn.ReLU(),
        conv(4, 8, 3, stride=2, padding=1, padding_mode="reflect"), torch.nn.Tanh(),
        conv(8, 8, (3, 2), groups=2, dilation=(1, 2), padding="same"),
        torch.nn.Flatten(), torch.nn.Linear(8 * 4 * 4, 10),
    )
    return net.to(device=device, dtype=dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sgd_steps_give_torch_losses(dtype, device):
    """Five SGD steps (momentum) of the same small net, one with torch.nn.Conv2d,
    one with gpuconv.torch.Conv2d, from the same initial state: the same losses
    and final parameters."""
    dt = getattr(torch, dtype)
    nets = [_small_net(c, dt, device) for c in (torch.nn.Conv2d, gt.Conv2d)]
    nets[1].load_state_dict(nets[0].state_dict())
    gen = torch.Generator().manual_seed(22)
    x = torch.randn(5, 16, 1, 8, 8, generator=gen, dtype=dt).to(device)
    y = torch.randint(0, 10, (5, 16), generator=gen).to(device)
    losses = []
    for net in nets:
        opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
        run = []
        for step in range(5):
            opt.zero_grad()
            loss = F.cross_entropy(net(x[step]), y[step])
            loss.backward()
            opt.step()
            run.append(loss.item())
        losses.append(run)
    assert losses[0][-1] < losses[0][0]  # it learns
    rtol = 1e-10 if dtype == "float64" else 1e-4
    np.testing.assert_allclose(losses[1], losses[0], rtol=rtol)
    for p0, p1 in zip(nets[0].state_dict().values(),
                      nets[1].state_dict().values(), strict=True):
        close(p1, p0, terms=10_000 if dtype == "float32" else 100)


# -- packaging, docs -------------------------------------------------------------------


def test_import_gpuconv_does_not_import_torch():
    code = ("import sys, gpuconv, numpy as np; gpuconv.conv2d(np.ones((1,1,3,3)), "
            "np.ones((1,1,2,2))); assert 'torch' not in sys.modules, 'torch'; "
            "assert 'gpuconv.torch' not in sys.modules; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_docstring_examples_and_sections():
    from tests.test_cli import numpydoc_gaps

    result = doctest.testmod(gt, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 10 and result.failed == 0
    assert numpydoc_gaps(gt) == []


def test_cupy_stream_wraps_torch_stream_handle():
    """The CuPy stream made current for a torch stream (logic only, with stand-ins:
    the real exchange runs in the gpu tests): the null stream for torch's default
    stream, ``Stream.from_external`` (CuPy 14, the CUDA stream protocol) for
    another, ``ExternalStream(handle, device)`` on a CuPy without it (13)."""
    from types import SimpleNamespace

    from gpuconv.torch import _cupy_stream

    class TorchStream:
        def __init__(self, handle):
            self.cuda_stream = handle

        def __cuda_stream__(self):
            return (0, self.cuda_stream)

    class Stream:
        null = "null"

        @staticmethod
        def from_external(obj):
            return ("from_external", obj.__cuda_stream__()[1])

    cp14 = SimpleNamespace(cuda=SimpleNamespace(Stream=Stream))
    assert _cupy_stream(cp14, TorchStream(0), 0) == "null"
    assert _cupy_stream(cp14, TorchStream(1234), 0) == ("from_external", 1234)
    cp13 = SimpleNamespace(cuda=SimpleNamespace(
        Stream=SimpleNamespace(null="null"),
        ExternalStream=lambda ptr, dev: ("external", ptr, dev)))
    assert _cupy_stream(cp13, TorchStream(99), 1) == ("external", 99, 1)


# -- precision= ('highest' | 'tf32') --------------------------------------------------

PREC_KW = {"padding": 1, "padding_mode": "reflect"}


def _prec_operands(dtype=torch.float32, seed=31):
    """x, w, b, gy with full float32 mantissas (TF32 rounding changes them)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 3, 7, 6, generator=gen, dtype=torch.float64).to(dtype)
    w = torch.randn(4, 3, 3, 3, generator=gen, dtype=torch.float64).to(dtype)
    b = torch.randn(4, generator=gen, dtype=torch.float64).to(dtype)
    gy = torch.randn(2, 4, 7, 6, generator=gen, dtype=torch.float64).to(dtype)
    return x, w, b, gy


def _torch_run(x, w, b, gy, **kw):
    """y and (gx, gw, gb) of gt.conv2d on fresh leaves, backward outside any
    precision block."""
    xi, wi, bi = (t.clone().requires_grad_() for t in (x, w, b))
    y = gt.conv2d(xi, wi, bi, **PREC_KW, **kw)
    return y, y, (xi, wi, bi)


def _grads_after(y, leaves, gy):
    y.backward(gy)
    return tuple(t.grad for t in leaves)


def _core(x, w, b, gy, precision):
    """gpuconv's own NumPy-backend forward and gradients of the same problem."""
    xa, wa, ba, gya = (t.numpy() for t in (x, w, b, gy))
    y = gpuconv.conv2d(xa, wa, ba, precision=precision, **PREC_KW)
    g = gpuconv.conv2d_backward(gya, xa, wa, precision=precision, **PREC_KW)
    return y, tuple(g)


def _same(tensors, arrays):
    for t, a in zip(tensors, arrays, strict=True):
        assert t.dtype == getattr(torch, a.dtype.name)
        assert np.array_equal(t.detach().numpy(), a), "not bit-identical"


def test_tf32_forward_and_gradients_equal_the_core_api_bit_for_bit():
    x, w, b, gy = _prec_operands()
    want_y, want_g = _core(x, w, b, gy, "tf32")
    hi_y, hi_g = _core(x, w, b, gy, "highest")
    y, _, leaves = _torch_run(x, w, b, gy, precision="tf32")
    _same([y], [want_y])
    _same(_grads_after(y, leaves, gy), want_g)
    assert not np.array_equal(want_y, hi_y)  # tf32 did change something
    assert not np.array_equal(want_g[0], hi_g[0])
    assert not np.array_equal(want_g[1], hi_g[1])
    # the module forwards precision to the same function
    conv = gt.Conv2d(3, 4, 3, **PREC_KW, precision="tf32")
    with torch.no_grad():
        conv.weight.copy_(w)
        conv.bias.copy_(b)
    _same([conv(x)], [want_y])
    # 'highest' (and the default) is today's result
    y_hi, _, leaves = _torch_run(x, w, b, gy, precision="highest")
    _same([y_hi], [hi_y])
    _same(_grads_after(y_hi, leaves, gy), hi_g)


def test_precision_is_captured_at_forward_time():
    """A use_precision block around the forward pass alone governs the backward run
    later, outside it; a block around the backward alone changes nothing."""
    x, w, b, gy = _prec_operands(seed=32)
    want_y, want_g = _core(x, w, b, gy, "tf32")
    hi_y, hi_g = _core(x, w, b, gy, "highest")
    with gpuconv.use_precision("tf32"):
        y, _, leaves = _torch_run(x, w, b, gy)
    _same([y], [want_y])
    _same(_grads_after(y, leaves, gy), want_g)
    conv = gt.Conv2d(3, 4, 3, **PREC_KW)  # precision=None: resolved per call
    with torch.no_grad():
        conv.weight.copy_(w)
        conv.bias.copy_(b)
    with gpuconv.use_precision("tf32"):
        ym = conv(x)
    _same([ym], [want_y])
    _same([conv(x)], [hi_y])
    y, _, leaves = _torch_run(x, w, b, gy)
    with gpuconv.use_precision("tf32"):
        _same(_grads_after(y, leaves, gy), hi_g)
    # an explicit keyword wins over the block, as in the core API
    with gpuconv.use_precision("tf32"):
        y, _, leaves = _torch_run(x, w, b, gy, precision="highest")
    _same(_grads_after(y, leaves, gy), hi_g)


def test_precision_from_the_environment_at_call_time(monkeypatch):
    x, w, b, gy = _prec_operands(seed=33)
    want_y, _ = _core(x, w, b, gy, "tf32")
    conv = gt.Conv2d(3, 4, 3, **PREC_KW)
    with torch.no_grad():
        conv.weight.copy_(w)
        conv.bias.copy_(b)
    monkeypatch.setenv("GPUCONV_PRECISION", "tf32")
    _same([conv(x)], [want_y])
    monkeypatch.setenv("GPUCONV_PRECISION", "highest")
    assert not np.array_equal(conv(x).detach().numpy(), want_y)


def test_double_backward_runs_at_the_forward_precision(monkeypatch):
    """Every gpuconv call of a create_graph backward and of the second backward
    gets the precision resolved at forward time (and tf32 changes the result)."""
    spies = [Spy(monkeypatch, n) for n in ("conv2d", "conv2d_grad_input",
                                          "conv2d_grad_weight", "conv2d_backward")]
    x, w, b, gy = _prec_operands(seed=34)

    def penalty(**kw):
        xi, wi = x.clone().requires_grad_(), w.clone().requires_grad_()
        y = gt.conv2d(xi, wi, b, **PREC_KW, **kw)
        gx, = torch.autograd.grad(y, xi, gy, create_graph=True)
        gx.square().sum().backward()
        return wi.grad

    with gpuconv.use_precision("tf32"):
        gw_tf32 = penalty()
    gw_tf32_kw = penalty(precision="tf32")  # backward outside any block
    calls = [c for s in spies for c in s.calls]
    assert len(calls) >= 6  # forward, create_graph backward, second backward, x2
    assert {c[1]["precision"] for c in calls} == {"tf32"}
    assert {s.fn.__name__ for s in spies if s.calls} >= {
        "conv2d", "conv2d_grad_input", "conv2d_grad_weight"}
    assert torch.equal(gw_tf32, gw_tf32_kw)
    assert not torch.equal(gw_tf32, penalty(precision="highest"))
    assert spies[0].calls[-1][1]["precision"] == "highest"


def test_float64_unchanged_by_tf32_and_gradcheck():
    """TF32 applies to float32/complex64 only: float64 (where gradcheck means
    something) is bit-identical under precision='tf32', and gradcheck and
    gradgradcheck pass with it."""
    x, w, b, gy = _prec_operands(torch.float64, seed=35)
    y_t, _, leaves_t = _torch_run(x, w, b, gy, precision="tf32")
    y_h, _, leaves_h = _torch_run(x, w, b, gy, precision="highest")
    assert torch.equal(y_t, y_h)
    for gt_, gh in zip(_grads_after(y_t, leaves_t, gy),
                       _grads_after(y_h, leaves_h, gy), strict=True):
        assert torch.equal(gt_, gh)
    xs, ws = (t[:1, :2, :4, :4].clone().requires_grad_() for t in (x, w[:2]))

    def fn(xi, wi):
        return gt.conv2d(xi, wi, padding=1, precision="tf32")

    assert torch.autograd.gradcheck(fn, (xs, ws))
    assert torch.autograd.gradgradcheck(fn, (xs, ws))


def test_float16_under_tf32_equals_the_core_api():
    """float16 is accumulated in float32 whatever the precision (its values are
    exact in TF32): on CPU tensors the NumPy backend gives the same bits under
    'tf32' and 'highest', and gpuconv.torch returns them as float16."""
    x, w, b, gy = _prec_operands(torch.float16, seed=36)
    want_y, want_g = _core(x, w, b, gy, "tf32")
    hi_y, hi_g = _core(x, w, b, gy, "highest")
    assert want_y.dtype == np.float16
    assert np.array_equal(want_y, hi_y)
    assert all(np.array_equal(a, c) for a, c in zip(want_g, hi_g, strict=True))
    y, _, leaves = _torch_run(x, w, b, gy, precision="tf32")
    _same([y], [want_y])
    _same(_grads_after(y, leaves, gy), want_g)


def test_bad_precision_raises_the_core_error_before_any_work(monkeypatch):
    spies = [Spy(monkeypatch, n) for n in ("conv2d", "conv2d_backward")]
    x, w = torch.ones(1, 1, 3, 3, requires_grad=True), torch.ones(1, 1, 2, 2)
    for bad, exc in (("fp16", ValueError), ("TF32", ValueError), (32, TypeError)):
        with pytest.raises(exc) as core:
            spies[0].fn(x.detach().numpy(), w.numpy(), precision=bad)
        with pytest.raises(exc) as ours:
            gt.conv2d(x, w, precision=bad)
        assert str(ours.value) == str(core.value)
        assert "'highest'" in str(ours.value) and "'tf32'" in str(ours.value)
        with pytest.raises(exc) as mod:
            gt.Conv2d(1, 1, 2, precision=bad)
        assert str(mod.value) == str(core.value)
    assert all(not s.calls for s in spies)
    with gpuconv.use_precision(None):  # None is the default, not an error
        gt.conv2d(x, w, precision=None).sum().backward()
    assert len(spies[0].calls) == len(spies[1].calls) == 1


def test_module_precision_attribute_repr_and_state_dict():
    torch.manual_seed(13)
    ref = torch.nn.Conv2d(3, 4, 3, padding=1)
    torch.manual_seed(13)
    plain = gt.Conv2d(3, 4, 3, padding=1)
    torch.manual_seed(13)
    ours = gt.Conv2d(3, 4, 3, padding=1, precision="tf32")
    assert plain.precision is None and ours.precision == "tf32"
    assert repr(plain) == repr(ref) and "precision" not in repr(plain)
    assert repr(ours) == repr(ref)[:-1] + ", precision=tf32)"
    assert ours.state_dict().keys() == ref.state_dict().keys()
    result = ours.load_state_dict(ref.state_dict())
    assert not result.missing_keys and not result.unexpected_keys
    ref.load_state_dict(ours.state_dict())
    for fn in (gt.conv2d, gt.Conv2d):
        param = inspect.signature(fn).parameters["precision"]
        assert param.kind is param.KEYWORD_ONLY and param.default is None


# -- the benchmark script -------------------------------------------------------------


def _load_bench():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "bench" / "bench_gpu_torch.py"
    spec = importlib.util.spec_from_file_location("bench_gpu_torch", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_cpu_variant_writes_validated_rows(tmp_path, capsys):
    """``bench/bench_gpu_torch.py --device cpu --quick``: the ResNet-block rows
    (gpuconv.torch validated against torch.nn.Conv2d, then timed) and the
    per-call glue rows, in the JSON format of the GPU benchmarks."""
    import json

    bench = _load_bench()
    out = tmp_path / "rows.json"
    rc = bench.main(["--device", "cpu", "--quick", "--budget", "0",
                     "--json", str(out)])
    assert rc == 0
    doc = json.loads(out.read_text())
    assert doc["format"] == "gpuconv-bench/1"
    rows = {r["case"]: r for r in doc["rows"]}
    block = "N2-C8-14x14-K8-3x3-s1p1"
    ours = rows[f"resnet_basic_block_train_step/gpuconv.torch/{block}/float32"]
    ref = rows[f"resnet_basic_block_train_step/torch.nn.Conv2d/{block}/float32"]
    assert set(ours["errors"]) == {"y_block", "y", "gx", "gw"}
    assert ours["max_err"] <= ours["err_limit"]
    for r in (ours, ref):
        assert "error" not in r and r["median_s"] > 0 and r["repeats"] >= 3
    assert ref["ratio"] == 1.0
    assert ours["ratio"] == pytest.approx(ours["median_s"] / ref["median_s"])
    calls = [r for r in doc["rows"] if r["op"] == "conv2d_call"]
    assert [r["variant"] for r in calls] == ["gpuconv.torch", "gpuconv"]
    assert all(r["median_s"] > 0 for r in calls)
    printed = capsys.readouterr().out
    assert "resnet_basic_block_train_step/gpuconv.torch" in printed
    assert bench.main(["--table", str(out)]) == 0
    assert capsys.readouterr().out.strip() == printed.strip()


def test_bench_tf32_validation_accepts_tf32_and_catches_a_wrong_conv():
    """The check the benchmark's gpuconv.torch TF32 row passes before it is timed
    (CUDA only there), run here on a CPU layer: the NumPy backend's TF32 model is
    within the bound, a 'TF32' that truncates instead of rounding is not (gw's
    operands x and gy are truncated by straight-through functions whose gradient
    passes untouched, so only y and gx are checked there)."""
    bench = _load_bench()
    gen = torch.Generator().manual_seed(51)
    x = torch.randn(2, 8, 14, 14, generator=gen)
    gy = torch.randn(2, 8, 14, 14, generator=gen)
    conv = gt.Conv2d(8, 8, 3, padding=1, bias=False, precision="tf32")
    errs = bench.tf32_conv_errors(torch, conv, x, gy)
    assert set(errs) == {"y", "gx", "gw"} and 0 < max(errs.values()) <= 1.0

    class Truncating(torch.nn.Module):  # drops the 13 low bits instead of rounding
        def __init__(self):
            super().__init__()
            self.weight = conv.weight

        def forward(self, xi):
            def t(a):
                return (a.view(torch.int32) & -(1 << 13)).view(torch.float32)

            return gt.conv2d(_TruncGrad.apply(xi, t), _TruncGrad.apply(self.weight, t),
                             padding=1)

    bad = bench.tf32_conv_errors(torch, Truncating(), x, gy)
    assert bad["y"] > 1.0 and bad["gx"] > 1.0
    # the FP32 row's check: gpuconv's FP32 layer is within the float32 summation
    # bound of float64 on the same operands; the TF32 layer (operand rounding, ~1e3
    # times that bound) is not
    fp32 = gt.Conv2d(8, 8, 3, padding=1, bias=False)
    fp32.weight = conv.weight
    errs = bench.conv_errors(torch, fp32, x, gy, tf32=False)
    assert set(errs) == {"y", "gx", "gw"} and 0 < max(errs.values()) <= 1.0
    bad = bench.conv_errors(torch, conv, x, gy, tf32=False)
    assert min(bad.values()) > 1.0
    # the torch port of the rounding is gpuconv's
    from gpuconv._precision import round_tf32

    special = torch.tensor([1 + 2.0**-11, -(1 + 3 * 2.0**-11), 3.4e38, float("inf"),
                            float("nan"), 1e-40, -0.0])
    for a in (x, special):
        assert np.array_equal(bench.round_tf32(torch, a).numpy(),
                              round_tf32(a.numpy()), equal_nan=True)


class _TruncGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, t):
        return t(a)

    @staticmethod
    def backward(ctx, g):
        return g, None


def test_bench_without_cuda_exits_2_with_reason(capsys):
    from gpuconv import _backend

    if _backend.cuda_unavailable_reason() is None and torch.cuda.is_available():
        pytest.skip("a CUDA device is available here")
    assert _load_bench().main([]) == 2
    err = capsys.readouterr().err
    assert "backend 'cuda' is not available" in err or "no CUDA device" in err


@pytest.mark.gpu
def test_bench_gpu_quick_rows(tmp_path):
    """The GPU run in quick mode: validated gpuconv.torch row, FP32 and TF32 torch
    rows, glue rows."""
    import json

    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA device here")
    out = tmp_path / "rows.json"
    tf32 = torch.backends.cudnn.allow_tf32
    try:
        assert _load_bench().main(["--quick", "--budget", "0", "--json",
                                   str(out)]) == 0
    finally:
        torch.backends.cudnn.allow_tf32 = tf32
    rows = json.loads(out.read_text())["rows"]
    block = [r for r in rows if r["op"] == "resnet_basic_block_train_step"]
    assert [(r["variant"], r["math"]) for r in block] == [
        ("gpuconv.torch", "float32"), ("torch.nn.Conv2d", "float32"),
        ("gpuconv.torch", "tf32"), ("torch.nn.Conv2d", "tf32")]
    assert all("error" not in r and r["median_s"] > 0 for r in rows)
    assert block[0]["max_err"] <= block[0]["err_limit"]
    assert set(block[2]["errors"]) == {"y", "gx", "gw"}
    assert 0 < block[2]["max_err"] <= block[2]["err_limit"] == 1.0
    assert block[2]["ratio_tf32"] == pytest.approx(block[2]["median_s"]
                                                   / block[3]["median_s"])


# -- CUDA only -------------------------------------------------------------------------


@pytest.mark.gpu
def test_cuda_and_cpu_tensors_mixed_raise():
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA device here")
    x = torch.ones(1, 1, 3, 3, device="cuda")
    with pytest.raises(ValueError, match="one device.*input on cuda:0.*weight on cpu"):
        gt.conv2d(x, torch.ones(1, 1, 2, 2))
    with pytest.raises(ValueError, match="bias on cpu"):
        gt.conv2d(x, torch.ones(1, 1, 2, 2, device="cuda"), torch.ones(1))


@pytest.mark.gpu
def test_cuda_runs_on_torch_current_stream(monkeypatch):
    """On a non-default torch stream the kernels run on that stream (CuPy's
    current stream inside the call is torch's), and results are ordered with the
    torch work queued before and after them on it."""
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA device here")
    spy = Spy(monkeypatch, "conv2d")
    spy_b = Spy(monkeypatch, "conv2d_backward")
    w = torch.randn(16, 16, 3, 3, device="cuda", requires_grad=True)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        # a long producer on s right before the conv: reading x early would see 0
        x = torch.zeros(8, 16, 64, 64, device="cuda")
        big = torch.randn(2048, 2048, device="cuda")
        for _ in range(20):
            big = big @ big / 2048**0.5
        x += 1.0 + big[:1, :1].abs().clamp(max=0.0)  # depends on the chain
        x.requires_grad_()
        y = gt.conv2d(x, w, padding=1)
        y.sum().backward()
        want = F.conv2d(x.detach(), w.detach(), padding=1)
    s.synchronize()
    assert spy.calls[-1][3] == s.cuda_stream
    assert spy_b.calls[-1][3] == s.cuda_stream
    assert torch.cuda.current_stream().cuda_stream != s.cuda_stream
    close(y, want, terms=144)
    close(x.grad, F.conv_transpose2d(torch.ones_like(y), w.detach(), padding=1),
          terms=144)


@pytest.mark.gpu
def test_cuda_tf32_within_the_bound_of_the_numpy_tf32_model():
    """CUDA float32 tensors with precision='tf32' (the tensor-core kernels or the
    FP32 kernels on rounded operands, as the dispatch rule picks) against
    the NumPy backend's TF32 model (the same rounded operands, exact products,
    float64 sums): only float32 summation error remains (tests/_tol.py's product
    bound with operand_unit 0); forward and both gradients, and the precision
    captured at forward time reaches the backward."""
    from gpuconv._precision import round_tf32
    from tests._tol import assert_products_within

    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA device here")
    gen = torch.Generator().manual_seed(41)
    x = torch.randn(4, 16, 20, 18, generator=gen)
    w = torch.randn(32, 16, 3, 3, generator=gen)
    b = torch.randn(32, generator=gen)
    gy = torch.randn(4, 32, 20, 18, generator=gen)
    xc, wc, bc = (t.cuda().requires_grad_() for t in (x, w, b))
    with gpuconv.use_precision("tf32"):
        y = gt.conv2d(xc, wc, bc, padding=1)
    y.backward(gy.cuda())
    got = [t.detach().cpu().numpy() for t in (y, xc.grad, wc.grad)]
    assert all(g.dtype == np.float32 for g in got)

    xr, wr, gyr = (round_tf32(t.numpy()).astype(np.float64) for t in (x, w, gy))
    b64 = b.numpy().astype(np.float64)
    kw = {"padding": 1, "backend": "numpy"}

    def passes(f):
        return (gpuconv.conv2d(f(xr), f(wr), f(b64), **kw),
                gpuconv.conv2d_grad_input(x.shape, f(wr), f(gyr), **kw),
                gpuconv.conv2d_grad_weight(f(xr), w.shape, f(gyr), **kw))

    models = passes(lambda a: a)
    sums = passes(np.abs)
    terms = (16 * 9, 32 * 9, 4 * 20 * 18)
    for g, m, s, n in zip(got, models, sums, terms, strict=True):
        assert_products_within(g, m, s, n)
    # and the NumPy backend's float32 tf32 result (what CPU tensors give) agrees
    y_cpu = gt.conv2d(x, w, b, padding=1, precision="tf32")
    assert_products_within(got[0], y_cpu.numpy(), sums[0], terms[0],
                           output_unit=2.0**-24)
    # tf32 really ran: 'highest' differs
    y_hi = gt.conv2d(xc.detach(), wc.detach(), bc.detach(), padding=1,
                     precision="highest")
    assert not torch.equal(y_hi.cpu(), y.detach().cpu())
