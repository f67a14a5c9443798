"""gpuconv inside PyTorch: a differentiable ``conv2d`` and a ``Conv2d`` module.

``import gpuconv.torch`` needs PyTorch (the optional extra ``torch``);
``import gpuconv`` alone never imports it.

:func:`conv2d` is a ``torch.autograd.Function``: the forward pass runs
:func:`gpuconv.conv2d`, the backward pass :func:`gpuconv.conv2d_backward` (only the
gradients autograd asks for, ``ctx.needs_input_grad``). Double (and higher)
backward is supported: the gradient of a convolution is again a convolution, so
under ``create_graph=True`` the backward pass is built from differentiable
gpuconv calls (:func:`gpuconv.conv2d_grad_input`,
:func:`gpuconv.conv2d_grad_weight`, :func:`gpuconv.conv2d`), each of which is
itself a ``torch.autograd.Function``.

:class:`Conv2d` is an ``nn.Module`` with the constructor, parameter names
(``weight``, ``bias``), initialisation and ``state_dict`` of ``torch.nn.Conv2d``
(weights load both ways), plus gpuconv's extras: ``padding_mode='symmetric'``,
4-tuple (asymmetric) padding and ``'same'`` with a stride.

Where the work runs
-------------------
The tensors' device decides (``GPUCONV_BACKEND`` and ``gpuconv.use_backend`` do
not apply here): CPU tensors go to the NumPy backend as NumPy views of their
memory (``Tensor.numpy()``, no copy, also for strided tensors); CUDA tensors go to
the CUDA backend as CuPy views through DLPack (no copy), on the tensor's device
and on torch's current CUDA stream (the same stream handle made CuPy's current
stream: ``cupy.cuda.Stream.from_external``, or ``ExternalStream`` on CuPy 13), so
the kernels and gpuconv's own CuPy work are ordered with the surrounding torch
work and can be captured in the same CUDA graph. Results come back as torch
tensors on the inputs' device, with their dtype (CUDA results through DLPack,
again without a copy). Inputs are never modified.

dtypes: float16 (accumulated in float32), float32, float64, complex64 and
complex128; input, weight and bias must share one dtype and one device.

Precision
---------
``precision=`` (``None``, ``'highest'`` or ``'tf32'``) is that of
:func:`gpuconv.conv2d`: ``'tf32'`` rounds the operands of every product of a
float32 or complex64 convolution to TF32 (on CUDA tensors: the tensor-core
kernels; on CPU tensors: the NumPy backend's exact model of them); float64 and
complex128 are never affected, and float16 is computed the same way under both
(its values are exact in TF32). ``None`` is resolved when the forward pass runs:
the innermost :func:`gpuconv.use_precision`, else ``$GPUCONV_PRECISION``, else
``'highest'``. The resolved precision is kept with the autograd graph, so every
backward pass of that output (also a double backward under
``create_graph=True``) runs at the precision of its forward pass, wherever and
whenever ``backward()`` is called: a ``use_precision`` block around the forward
pass alone governs its gradients too (torch's own ``allow_tf32`` flags, by
contrast, are read when each kernel runs). A bad value raises
:func:`gpuconv.conv2d`'s error before any work.

Examples
--------
>>> import torch
>>> import gpuconv.torch as gt
>>> x = torch.randn(2, 3, 8, 8, dtype=torch.float64, requires_grad=True)
>>> conv = gt.Conv2d(3, 4, 3, padding="same", padding_mode="symmetric",
...                  dtype=torch.float64)
>>> y = conv(x)
>>> y.shape
torch.Size([2, 4, 8, 8])
>>> y.square().sum().backward()
>>> x.grad.shape, conv.weight.grad.shape, conv.bias.grad.shape
(torch.Size([2, 3, 8, 8]), torch.Size([4, 3, 3, 3]), torch.Size([4]))
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

import gpuconv
from gpuconv import _backend
from gpuconv._conv_args import check_algorithm
from gpuconv._padding import PADDING_MODES
from gpuconv._precision import select_precision

__all__ = ["Conv2d", "conv2d"]

#: The torch dtypes gpuconv computes in.
DTYPES = (torch.float16, torch.float32, torch.float64, torch.complex64,
          torch.complex128)
_DTYPE_NAMES = ", ".join(str(d).removeprefix("torch.") for d in DTYPES)


# -- arguments -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Config:
    """Everything about a conv2d call that is not a tensor (hashable, immutable)."""

    stride: Any
    padding: Any
    dilation: Any
    groups: Any
    padding_mode: Any
    algorithm: str
    precision: str  # resolved at forward time ('highest' or 'tf32'), never None

    def kwargs(self) -> dict[str, Any]:
        return {"stride": self.stride, "padding": self.padding,
                "dilation": self.dilation, "groups": self.groups,
                "padding_mode": self.padding_mode, "algorithm": self.algorithm,
                "precision": self.precision}


def _frozen(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def _check_tensors(fn: str, **named: Any) -> torch.device:
    """The common device of the named tensors (``None`` entries skipped), after
    checking type, dtype and device; ``TypeError``/``ValueError`` otherwise."""
    tensors = {k: v for k, v in named.items() if v is not None}
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor):
            raise TypeError(
                f"{fn}: {name} must be a torch.Tensor, got {type(t).__name__} "
                "(use gpuconv.conv2d for NumPy and CuPy arrays)"
            )
        if t.dtype not in DTYPES:
            raise TypeError(
                f"{fn} supports {_DTYPE_NAMES} tensors, got {name} of dtype "
                f"{str(t.dtype).removeprefix('torch.')}; cast it to a float dtype "
                "first"
            )
        if t.layout != torch.strided:
            raise TypeError(
                f"{fn}: {name} must be a dense (strided) tensor, got layout "
                f"{t.layout}"
            )
    dtypes = {t.dtype for t in tensors.values()}
    if len(dtypes) > 1:
        listed = ", ".join(
            f"{k} {str(t.dtype).removeprefix('torch.')}" for k, t in tensors.items()
        )
        raise TypeError(f"{fn}: input, weight and bias must have one dtype, got "
                        f"{listed}")
    devices = {t.device for t in tensors.values()}
    if len(devices) > 1:
        listed = ", ".join(f"{k} on {t.device}" for k, t in tensors.items())
        raise ValueError(
            f"{fn}: input, weight and bias must be on one device, got {listed}"
        )
    (device,) = devices
    if device.type not in ("cpu", "cuda"):
        raise ValueError(
            f"{fn} runs on 'cpu' and 'cuda' tensors, got tensors on {device}"
        )
    return device


# -- tensors <-> arrays, zero-copy -----------------------------------------------------


def _plain(t: torch.Tensor) -> torch.Tensor:
    """``t`` without autograd history and without lazy conj/neg bits (a copy only
    where such a bit is set: NumPy and DLPack cannot express them)."""
    return t.detach().resolve_conj().resolve_neg()


def _cupy_stream(cp: Any, stream: Any, index: int) -> Any:
    """torch's CUDA stream as a CuPy stream (no new stream: the same handle).

    CuPy 14 takes it through the CUDA stream protocol
    (``Stream.from_external``, which keeps the torch stream alive);
    ``ExternalStream`` (deprecated in CuPy 14) serves CuPy 13.
    """
    if stream.cuda_stream == 0:  # torch's default stream: the legacy null stream
        return cp.cuda.Stream.null
    from_external = getattr(cp.cuda.Stream, "from_external", None)
    if from_external is not None and hasattr(stream, "__cuda_stream__"):
        return from_external(stream)
    return cp.cuda.ExternalStream(stream.cuda_stream, index)


class _Place:
    """Where a call computes: the backend, the conversions both ways and the CUDA
    device and stream to run on."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.backend = "cuda" if device.type == "cuda" else "numpy"
        self.cupy = _backend.require_cupy() if self.backend == "cuda" else None

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """CUDA: the tensors' device and torch's current stream on it become
        CuPy's current device and stream (the kernels and CuPy's own work, and the
        DLPack exchanges, are ordered on torch's stream)."""
        if self.cupy is None:
            yield
            return
        cp = self.cupy
        index = self.device.index
        if index is None:
            index = torch.cuda.current_device()
        stream = torch.cuda.current_stream(index)
        with cp.cuda.Device(index), _cupy_stream(cp, stream, index):
            yield

    def array(self, t: torch.Tensor | None) -> Any:
        if t is None:
            return None
        t = _plain(t)
        if self.cupy is None:
            return t.numpy()  # shares memory (strides kept)
        if any(st == 0 and n > 1 for st, n in zip(t.stride(), t.shape, strict=True)):
            # a broadcast view (e.g. the gradient of y.sum()): the CUDA backend
            # would make it contiguous anyway; do it before DLPack sees it
            t = t.contiguous()
        return self.cupy.from_dlpack(t)

    def tensor(self, a: Any) -> torch.Tensor | None:
        if a is None:
            return None
        if self.cupy is None:
            a = np.asarray(a)
            if not a.flags.writeable or any(s < 0 for s in a.strides):
                a = a.copy()  # torch.from_numpy needs both (never so here)
            return torch.from_numpy(a)
        return torch.from_dlpack(a)


# -- the autograd functions ------------------------------------------------------------


def _forward(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None,
             cfg: _Config) -> torch.Tensor:
    place = _Place(x.device)
    with place.active():
        y = gpuconv.conv2d(place.array(x), place.array(w), place.array(b),
                           backend=place.backend, **cfg.kwargs())
        return place.tensor(y)


def _backward(gy: torch.Tensor, x: torch.Tensor, w: torch.Tensor, cfg: _Config,
              needs: tuple[str, ...]) -> tuple[torch.Tensor | None, ...]:
    place = _Place(gy.device)
    with place.active():
        g = gpuconv.conv2d_backward(
            place.array(gy), place.array(x), place.array(w), needs=needs,
            backend=place.backend, **cfg.kwargs(),
        )
        return tuple(place.tensor(a) for a in g)


def _grad_input(x_shape: tuple[int, ...], w: torch.Tensor, gy: torch.Tensor,
                cfg: _Config) -> torch.Tensor:
    place = _Place(gy.device)
    with place.active():
        gx = gpuconv.conv2d_grad_input(x_shape, place.array(w), place.array(gy),
                                       backend=place.backend, **cfg.kwargs())
        return place.tensor(gx)


def _grad_weight(x: torch.Tensor, w_shape: tuple[int, ...], gy: torch.Tensor,
                 cfg: _Config) -> torch.Tensor:
    place = _Place(gy.device)
    with place.active():
        gw = gpuconv.conv2d_grad_weight(place.array(x), w_shape, place.array(gy),
                                        backend=place.backend, **cfg.kwargs())
        return place.tensor(gw)


def _create_graph(*tensors: torch.Tensor | None) -> bool:
    """True inside ``backward(create_graph=True)`` when a gradient may itself be
    differentiated (grad mode is on only then)."""
    return torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in tensors
    )


class _Conv2dFunction(torch.autograd.Function):
    """``y = conv2d(x, w, b)``; backward: gpuconv's gradients."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None,
                cfg: _Config) -> torch.Tensor:
        ctx.cfg = cfg
        ctx.save_for_backward(x, w)
        return _forward(x, w, b, cfg)

    @staticmethod
    def backward(ctx: Any, gy: torch.Tensor) -> tuple[Any, ...]:
        x, w = ctx.saved_tensors
        cfg = ctx.cfg
        want_x, want_w, want_b, _ = ctx.needs_input_grad
        gy = gy.to(x.dtype)  # autograd may hand a different (but castable) dtype
        if _create_graph(gy, x, w):
            gx = _GradInput.apply(gy, w, tuple(x.shape), cfg) if want_x else None
            gw = _GradWeight.apply(x, gy, tuple(w.shape), cfg) if want_w else None
            gb = _GradBias.apply(gy, x, w, cfg) if want_b else None
            return gx, gw, gb, None
        needs = tuple(n for n, want in
                      (("input", want_x), ("weight", want_w), ("bias", want_b))
                      if want)
        if not needs:
            return None, None, None, None
        gx, gw, gb = _backward(gy, x, w, cfg, needs)
        return gx, gw, gb, None


class _GradInput(torch.autograd.Function):
    """``gx = conv2d_grad_input(x_shape, w, gy)``: linear in ``gy``, and in
    ``conj(w)``; its own gradients are a conv2d and a weight gradient."""

    @staticmethod
    def forward(ctx: Any, gy: torch.Tensor, w: torch.Tensor,
                x_shape: tuple[int, ...], cfg: _Config) -> torch.Tensor:
        ctx.cfg = cfg
        ctx.save_for_backward(gy, w)
        return _grad_input(x_shape, w, gy, cfg)

    @staticmethod
    def backward(ctx: Any, ggx: torch.Tensor) -> tuple[Any, ...]:
        gy, w = ctx.saved_tensors
        cfg = ctx.cfg
        want_gy, want_w, _, _ = ctx.needs_input_grad
        # <ggx, A_w^H gy> = <A_w ggx, gy>: d/dgy is the forward conv of ggx, and
        # d/dw the weight gradient of x = ggx (conjugated: gx depends on conj(w)).
        ggy = _Conv2dFunction.apply(ggx, w, None, cfg) if want_gy else None
        gw = None
        if want_w:
            gw = _GradWeight.apply(ggx.conj(), gy.conj(), tuple(w.shape), cfg)
            gw = gw.conj()
        return ggy, gw, None, None


class _GradWeight(torch.autograd.Function):
    """``gw = conv2d_grad_weight(x, w_shape, gy)``: linear in ``gy`` and in
    ``conj(x)``; its own gradients are an input gradient and a conv2d."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, gy: torch.Tensor,
                w_shape: tuple[int, ...], cfg: _Config) -> torch.Tensor:
        ctx.cfg = cfg
        ctx.save_for_backward(x, gy)
        return _grad_weight(x, w_shape, gy, cfg)

    @staticmethod
    def backward(ctx: Any, ggw: torch.Tensor) -> tuple[Any, ...]:
        x, gy = ctx.saved_tensors
        cfg = ctx.cfg
        want_x, want_gy, _, _ = ctx.needs_input_grad
        # <ggw, B_x^H gy> = <conv2d(x, ggw), gy>: d/dgy is conv2d(x, ggw), d/dx the
        # input gradient with weight ggw (conjugated: gw depends on conj(x)).
        gx = None
        if want_x:
            gx = _GradInput.apply(gy.conj(), ggw.conj(), tuple(x.shape), cfg).conj()
        ggy = _Conv2dFunction.apply(x, ggw, None, cfg) if want_gy else None
        return gx, ggy, None, None


class _GradBias(torch.autograd.Function):
    """``gb = sum of gy over all but the channel axis`` (gpuconv's bias gradient);
    linear, its gradient broadcasts back."""

    @staticmethod
    def forward(ctx: Any, gy: torch.Tensor, x: torch.Tensor, w: torch.Tensor,
                cfg: _Config) -> torch.Tensor:
        ctx.gy_shape = tuple(gy.shape)
        return _backward(gy, x, w, cfg, ("bias",))[2]

    @staticmethod
    def backward(ctx: Any, ggb: torch.Tensor) -> tuple[Any, ...]:
        shape = ctx.gy_shape
        view = (1, -1, 1, 1) if len(shape) == 4 else (-1, 1, 1)
        return ggb.reshape(view).expand(shape), None, None, None


# -- the public API --------------------------------------------------------------------


def conv2d(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, ...] | str = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    *,
    algorithm: str = "auto",
    precision: str | None = None,
) -> torch.Tensor:
    """Differentiable 2-D convolution (cross-correlation) of torch tensors.

    ``torch.nn.functional.conv2d``'s arguments and result, computed by gpuconv:
    forward :func:`gpuconv.conv2d`, backward :func:`gpuconv.conv2d_backward`
    (deterministic: bit-identical gradients run after run). Double backward is
    supported.

    Parameters
    ----------
    input : torch.Tensor, shape ``(N, C, H, W)`` or ``(C, H, W)``
    weight : torch.Tensor, shape ``(K, C/groups, KH, KW)``
    bias : torch.Tensor, shape ``(K,)``, optional
    stride : int or (int, int), optional
    padding : int, (int, int), (int, int, int, int), {'valid', 'same'}, optional
        As in :func:`gpuconv.conv2d`: ``(top, bottom, left, right)`` pads
        asymmetrically; ``'same'`` also works with a stride (``ceil(H/stride)``
        outputs).
    dilation : int or (int, int), optional
    groups : int, optional
    padding_mode : {'zeros', 'reflect', 'replicate', 'circular', 'symmetric'}
        How the border is extended, folded into the kernels (no padded copy).
    algorithm : str, optional
        The CUDA kernel variant, keyword only (ignored on CPU tensors), as in
        :func:`gpuconv.conv2d`.
    precision : {None, 'highest', 'tf32'}, optional, keyword only
        As in :func:`gpuconv.conv2d` (``'tf32'``: float32/complex64 operands
        rounded to TF32). ``None``: the innermost :func:`gpuconv.use_precision`,
        else ``$GPUCONV_PRECISION``, else ``'highest'``, resolved now; the
        backward passes of the result run at the precision resolved here.

    Returns
    -------
    torch.Tensor
        Shape ``(N, K, OH, OW)`` (or ``(K, OH, OW)``), on the input's device, with
        its dtype.

    Raises
    ------
    TypeError
        A dtype other than float16, float32, float64, complex64, complex128; mixed
        dtypes; a non-tensor argument; a non-string ``precision``.
    ValueError
        Tensors on different devices (or not on CPU/CUDA); wrong shapes or values
        (the messages of :func:`gpuconv.conv2d`); an unknown ``precision``.

    Examples
    --------
    >>> import torch
    >>> import gpuconv.torch as gt
    >>> x = torch.arange(16.0).reshape(1, 1, 4, 4).requires_grad_()
    >>> w = torch.ones(1, 1, 2, 2, requires_grad=True)
    >>> y = gt.conv2d(x, w)
    >>> y[0, 0]
    tensor([[10., 14., 18.],
            [26., 30., 34.],
            [42., 46., 50.]], grad_fn=<SelectBackward0>)
    >>> y.sum().backward()
    >>> w.grad[0, 0]
    tensor([[45., 54.],
            [81., 90.]])
    >>> gt.conv2d(x, w, padding=(0, 1, 0, 1), padding_mode="symmetric").shape
    torch.Size([1, 1, 4, 4])
    >>> xt = torch.full((1, 1, 1, 1), 1 + 2.0**-12)
    >>> float(gt.conv2d(xt, torch.ones(1, 1, 1, 1), precision="tf32"))
    1.0
    """
    _check_tensors("gpuconv.torch.conv2d", input=input, weight=weight, bias=bias)
    cfg = _Config(
        stride=_frozen(stride), padding=_frozen(padding),
        dilation=_frozen(dilation), groups=groups, padding_mode=padding_mode,
        algorithm=check_algorithm(algorithm),
        precision=select_precision(precision),
    )
    return _Conv2dFunction.apply(input, weight, bias, cfg)


def _pair(v: Any, name: str) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        if len(v) == 1:
            v = (v[0], v[0])
        if len(v) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got {v!r}")
        return (int(v[0]), int(v[1]))
    return (int(v), int(v))


class Conv2d(nn.Module):
    """``torch.nn.Conv2d`` computed by gpuconv, plus ``padding_mode='symmetric'``.

    The constructor, parameter names (``weight``, ``bias``), their
    initialisation (``kaiming_uniform_`` with ``a=sqrt(5)``, the bias uniform in
    ``+-1/sqrt(fan_in)``: with the same torch seed both modules start with the same
    numbers) and the ``state_dict`` are those of ``torch.nn.Conv2d``, so weights
    load both ways. The forward pass is :func:`conv2d`.

    Parameters
    ----------
    in_channels, out_channels : int
        ``C`` and ``K``; both divisible by ``groups``.
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
    padding : int, (int, int), (int, int, int, int), {'valid', 'same'}, optional
        As in :func:`conv2d` (torch's forms, plus the asymmetric 4-tuple and
        ``'same'`` with a stride).
    dilation : int or (int, int), optional
    groups : int, optional
    bias : bool, optional
        Learn an additive bias (default True).
    padding_mode : {'zeros', 'reflect', 'replicate', 'circular', 'symmetric'}
    device, dtype : optional
        Of the parameters, as in torch.
    algorithm : str, keyword only
        The CUDA kernel variant, as in :func:`gpuconv.conv2d`.
    precision : {None, 'highest', 'tf32'}, keyword only
        As in :func:`conv2d`; ``None`` (the default) resolves the scoped default
        (:func:`gpuconv.use_precision`, ``$GPUCONV_PRECISION``) at each forward
        call. Not part of the ``state_dict``.

    Attributes
    ----------
    weight : torch.nn.Parameter
        Shape ``(out_channels, in_channels/groups, *kernel_size)``.
    bias : torch.nn.Parameter or None
        Shape ``(out_channels,)``.
    in_channels, out_channels, kernel_size, stride, padding, dilation, groups
        The constructor's arguments (pairs as tuples; a string padding kept).
    padding_mode, algorithm, precision
        As given (``algorithm`` and ``precision`` may be changed between calls).

    Examples
    --------
    >>> import torch
    >>> import gpuconv.torch as gt
    >>> conv = gt.Conv2d(3, 8, 3, padding=1, padding_mode="symmetric")
    >>> print(conv.extra_repr())
    3, 8, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), padding_mode=symmetric
    >>> conv(torch.randn(2, 3, 5, 5)).shape
    torch.Size([2, 8, 5, 5])
    >>> ref = torch.nn.Conv2d(3, 8, 3, padding=1)
    >>> ref.load_state_dict(conv.state_dict())
    <All keys matched successfully>
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, ...] | str = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: Any = None,
        dtype: Any = None,
        *,
        algorithm: str = "auto",
        precision: str | None = None,
    ) -> None:
        super().__init__()
        if isinstance(groups, bool) or not isinstance(groups, int) or groups <= 0:
            raise ValueError(f"groups must be a positive integer, got {groups!r}")
        if in_channels % groups != 0:
            raise ValueError("in_channels must be divisible by groups")
        if out_channels % groups != 0:
            raise ValueError("out_channels must be divisible by groups")
        if padding_mode not in PADDING_MODES:
            raise ValueError(
                f"padding_mode must be one of {', '.join(map(repr, PADDING_MODES))}"
                f", got {padding_mode!r}"
            )
        if isinstance(padding, str):
            if padding not in ("valid", "same"):
                raise ValueError(
                    f"Invalid padding string {padding!r}, should be one of 'valid' "
                    "or 'same'"
                )
            pad: Any = padding
        elif isinstance(padding, (tuple, list)) and len(padding) == 4:
            pad = tuple(int(p) for p in padding)
        else:
            pad = _pair(padding, "padding")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride = _pair(stride, "stride")
        self.padding = pad
        self.dilation = _pair(dilation, "dilation")
        self.groups = groups
        self.padding_mode = padding_mode
        self.algorithm = check_algorithm(algorithm)
        if precision is not None:
            select_precision(precision)  # the core API's error, before any work
        self.precision = precision
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(
            (out_channels, in_channels // groups, *self.kernel_size), **factory
        ))
        if bias:
            self.bias = nn.Parameter(torch.empty(out_channels, **factory))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``torch.nn.Conv2d``'s initialisation (the same draws from torch's RNG)."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight.shape[1] * self.kernel_size[0] * self.kernel_size[1]
            if fan_in != 0:
                bound = 1 / math.sqrt(fan_in)
                nn.init.uniform_(self.bias, -bound, bound)

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor,
                      bias: torch.Tensor | None) -> torch.Tensor:
        """The convolution with given parameters (``torch.nn.Conv2d``'s hook, which
        subclasses override, e.g. for weight standardisation)."""
        return conv2d(input, weight, bias, self.stride, self.padding, self.dilation,
                      self.groups, self.padding_mode, algorithm=self.algorithm,
                      precision=self.precision)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(input, self.weight, self.bias)

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, "
             f"kernel_size={self.kernel_size}, stride={self.stride}")
        if self.padding != (0,) * len(self.padding):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        if self.algorithm != "auto":
            s += f", algorithm={self.algorithm}"
        if self.precision is not None:
            s += f", precision={self.precision}"
        return s
