"""The conv2d argument normaliser shared by both backends.

Everything about a conv2d call that is not array data lives in one frozen
:class:`Conv2dProblem`: sizes, stride, dilation, the four pad sizes, groups,
padding mode, output size and dtypes. It is built (and every argument checked)
before any array is touched, converted, compiled for or launched on; a backend
receives a valid, non-empty problem and arrays of ``problem.compute_dtype``.

Shapes: ``x (N, C, H, W)``, ``w (K, C/groups, KH, KW)``, ``y (N, K, OH, OW)``,
``OH = (H + pad_top + pad_bottom - dh*(KH-1) - 1)//sh + 1`` (same for OW).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from gpuconv._padding import PADDING_MODES

_SUPPORTED = tuple(
    np.dtype(t) for t in ("float16", "float32", "float64", "complex64", "complex128")
)
ALGORITHMS = ("auto", "naive", "tiled", "tiled_regblock", "winograd", "winograd4")
NEEDS = ("input", "weight", "bias")


@dataclass(frozen=True)
class Conv2dProblem:
    """A validated conv2d geometry (cross-correlation, NCHW).

    Attributes
    ----------
    N, C, H, W : int
        Input batch, channels, height, width.
    K, KH, KW : int
        Output channels and kernel size; ``w.shape == (K, C // groups, KH, KW)``.
    groups : int
    stride, dilation : tuple of int
        ``(sh, sw)`` and ``(dh, dw)``.
    padding : tuple of int
        ``(top, bottom, left, right)``.
    padding_mode : str
        One of ``'zeros', 'reflect', 'replicate', 'circular', 'symmetric'``.
    OH, OW : int
        Output size.
    dtype : numpy.dtype
        Output dtype (``np.result_type`` of the inputs).
    compute_dtype : numpy.dtype
        What backends compute in: ``float32`` for ``float16`` (float32
        accumulation), else ``dtype``.
    batched : bool
        False when the caller passed an unbatched ``(C, H, W)`` input.
    precision : {'highest', 'tf32'}
        How the products may be computed (:mod:`gpuconv._precision`); set by the
        public API after normalisation.
    """

    N: int
    C: int
    H: int
    W: int
    K: int
    KH: int
    KW: int
    groups: int
    stride: tuple[int, int]
    dilation: tuple[int, int]
    padding: tuple[int, int, int, int]
    padding_mode: str
    OH: int
    OW: int
    dtype: np.dtype
    compute_dtype: np.dtype
    batched: bool = True
    precision: str = "highest"

    @property
    def Cg(self) -> int:
        """Input channels per group."""
        return self.C // self.groups

    @property
    def Kg(self) -> int:
        """Output channels per group."""
        return self.K // self.groups

    @property
    def x_shape(self) -> tuple[int, int, int, int]:
        return (self.N, self.C, self.H, self.W)

    @property
    def w_shape(self) -> tuple[int, int, int, int]:
        return (self.K, self.Cg, self.KH, self.KW)

    @property
    def y_shape(self) -> tuple[int, int, int, int]:
        return (self.N, self.K, self.OH, self.OW)

    @property
    def padded_hw(self) -> tuple[int, int]:
        pt, pb, pl, pr = self.padding
        return (self.H + pt + pb, self.W + pl + pr)

    @property
    def flops(self) -> int:
        """Multiply-adds times two of the forward pass (also of each gradient)."""
        return 2 * self.N * self.K * self.Cg * self.KH * self.KW * self.OH * self.OW

    @property
    def empty(self) -> bool:
        """True when no input element reaches an output (backends never see it)."""
        return (
            self.N * self.K * self.OH * self.OW == 0
            or self.C * self.H * self.W == 0
        )

    def user_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """Drop the batch axis again for an unbatched caller."""
        return shape if self.batched else tuple(shape[1:])


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def check_int64(value: int, name: str) -> int:
    """``value`` if it fits in int64, else ``ValueError`` (before any work: NumPy
    and the kernels index with 64-bit integers, and a larger Python int would
    overflow deep inside with an ``OverflowError``)."""
    if not INT64_MIN <= value <= INT64_MAX:
        raise ValueError(
            f"{name} must fit in a 64-bit signed integer "
            f"(|{name}| < 2**63), got {value}"
        )
    return value


def _int_value(v: object, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise TypeError(f"{name} must be an int or a tuple of ints, got {v!r}")
    return check_int64(int(v), name)


def _pair(v: object, name: str) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        if len(v) == 1:
            v = (v[0], v[0])
        if len(v) != 2:
            raise ValueError(
                f"expected {name} to be a single integer value or a list of 2 values "
                f"to match the convolution dimensions, but got {name}={list(v)}"
            )
        return (_int_value(v[0], name), _int_value(v[1], name))
    val = _int_value(v, name)
    return (val, val)


def normalize_padding(
    padding: object,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
    size: tuple[int, int],
) -> tuple[int, int, int, int]:
    """Resolve ``padding`` to ``(top, bottom, left, right)``.

    ``'same'`` with stride 1 pads ``dilation*(k-1)`` in total with the extra
    row/column at the bottom/right (PyTorch); with a larger stride it uses
    TensorFlow's rule: the output is ``ceil(size/stride)`` and the total pad
    ``max((out-1)*stride + dilation*(k-1) + 1 - size, 0)``, extra at bottom/right.
    """
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0, 0, 0)
        if padding == "same":
            out = []
            for k, s, d, n in zip(kernel, stride, dilation, size, strict=True):
                if s == 1:
                    total = d * (k - 1)
                else:
                    o = -(-n // s)
                    total = max((o - 1) * s + d * (k - 1) + 1 - n, 0)
                out.append((total // 2, total - total // 2))
            return (out[0][0], out[0][1], out[1][0], out[1][1])
        raise ValueError(
            f"Invalid padding string {padding!r}, should be one of 'valid' or 'same'"
        )
    if isinstance(padding, (tuple, list)):
        if len(padding) == 4:
            vals = tuple(_int_value(p, "padding") for p in padding)
            pads = (vals[0], vals[1], vals[2], vals[3])
        elif len(padding) in (1, 2):
            ph, pw = _pair(padding, "padding")
            pads = (ph, ph, pw, pw)
        else:
            raise ValueError(
                "expected padding to be a single integer value, a list of 2 values "
                "(pad_h, pad_w) or of 4 values (top, bottom, left, right), 'valid' or "
                f"'same', but got padding={list(padding)}"
            )
    else:
        p = _int_value(padding, "padding")
        pads = (p, p, p, p)
    if min(pads) < 0:
        raise ValueError(f"negative padding is not supported, got {padding!r}")
    return pads


def check_dtype(dtypes: list[np.dtype], fn: str) -> tuple[np.dtype, np.dtype]:
    """Output and compute dtype of a conv2d call, or ``TypeError``.

    Every input must itself be float16/32/64 or complex64/128 (an integer or bool
    array is refused even beside a float one, rather than silently promoted); the
    output dtype is ``np.result_type`` of the inputs.
    """
    dtypes = [np.dtype(d).newbyteorder("=") for d in dtypes]  # '>f8' is float64
    for d in dtypes:
        if d not in _SUPPORTED:
            raise TypeError(
                f"{fn} supports float16, float32, float64, complex64 and complex128 "
                f"inputs, got {np.dtype(d)} (inputs: "
                f"{', '.join(str(np.dtype(e)) for e in dtypes)}); cast integer or "
                "bool data to a float dtype first"
            )
    dt = np.result_type(*dtypes)
    compute = np.dtype(np.float32) if dt == np.float16 else dt
    return dt, compute


def _shape_of(a: object, what: str) -> tuple[int, ...]:
    shape = getattr(a, "shape", None)
    if shape is None:
        raise TypeError(f"{what} must be an array, got {type(a).__name__}")
    return tuple(int(s) for s in shape)


def normalize_conv2d(
    x_shape: tuple[int, ...],
    w_shape: tuple[int, ...],
    dtypes: list[np.dtype],
    *,
    stride: object = 1,
    padding: object = 0,
    dilation: object = 1,
    groups: object = 1,
    padding_mode: object = "zeros",
    bias_shape: tuple[int, ...] | None = None,
    fn: str = "conv2d",
) -> Conv2dProblem:
    """Check every conv2d argument and return the :class:`Conv2dProblem`.

    Raises ``ValueError`` for wrong values and shapes and ``TypeError`` for wrong
    types, with PyTorch's texts where PyTorch defines one.
    """
    if len(x_shape) not in (3, 4):
        raise ValueError(
            f"Expected 3D (unbatched) or 4D (batched) input to {fn}, but got input "
            f"of size: {list(x_shape)}"
        )
    batched = len(x_shape) == 4
    N, C, H, W = x_shape if batched else (1, *x_shape)
    if len(w_shape) != 4:
        raise ValueError(
            f"{fn} expects a 4-D weight (K, C/groups, KH, KW), got weight of size "
            f"{list(w_shape)}"
        )
    K, Cg, KH, KW = w_shape
    if KH <= 0 or KW <= 0:
        raise ValueError(
            f"{fn} kernel size must be positive, got weight of size {list(w_shape)}"
        )
    sh, sw = _pair(stride, "stride")
    if sh <= 0 or sw <= 0:
        raise ValueError(f"non-positive stride is not supported, got {stride!r}")
    dh, dw = _pair(dilation, "dilation")
    if dh <= 0 or dw <= 0:
        raise ValueError(f"dilation should be greater than zero, got {dilation!r}")
    g = _int_value(groups, "groups")
    if g <= 0:
        raise ValueError(f"non-positive groups is not supported, got {groups!r}")
    if not isinstance(padding_mode, str) or padding_mode not in PADDING_MODES:
        raise ValueError(
            "padding_mode must be one of "
            f"{', '.join(repr(m) for m in PADDING_MODES)}, got {padding_mode!r}"
        )
    if K % g != 0:
        raise ValueError(
            f"Given groups={g}, expected weight to be divisible by {g} at dimension 0, "
            f"but got weight of size {list(w_shape)} instead"
        )
    if Cg * g != C:
        raise ValueError(
            f"Given groups={g}, weight of size {list(w_shape)}, expected input"
            f"{list(x_shape)} to have {Cg * g} channels, but got {C} channels instead"
        )
    if bias_shape is not None and tuple(bias_shape) != (K,):
        raise ValueError(
            f"Given weight of size {list(w_shape)}, expected bias to be 1-dimensional "
            f"with {K} elements, but got bias of size {list(bias_shape)} instead"
        )
    pads = normalize_padding(padding, (KH, KW), (sh, sw), (dh, dw), (H, W))
    pt, pb, pl, pr = pads
    if padding_mode != "zeros" and max(pads) > 0 and (H == 0 or W == 0):
        raise ValueError(
            f"padding_mode={padding_mode!r} needs a non-empty input to extend, got "
            f"input of size {list(x_shape)}"
        )
    Hp, Wp = H + pt + pb, W + pl + pr
    ekh, ekw = dh * (KH - 1) + 1, dw * (KW - 1) + 1
    if Hp < ekh or Wp < ekw:
        raise ValueError(
            f"Calculated padded input size per channel: ({Hp} x {Wp}). Kernel size: "
            f"({ekh} x {ekw}). Kernel size can't be greater than actual input size"
        )
    OH = (Hp - ekh) // sh + 1
    OW = (Wp - ekw) // sw + 1
    # A stride past the last kernel position leaves one output row/column and has
    # no other effect: clamp it (a huge valid stride then works on every backend,
    # whose index arithmetic may be 32-bit).
    if OH == 1:
        sh = min(sh, Hp - ekh + 1)
    if OW == 1:
        sw = min(sw, Wp - ekw + 1)
    limit = np.iinfo(np.intp).max // 16  # bytes of the largest complex128 array
    if max(N * C * Hp * Wp, N * K * OH * OW) > limit:
        raise ValueError(
            f"{fn}: the padded input ({N} x {C} x {Hp} x {Wp}) or the output "
            f"({N} x {K} x {OH} x {OW}) is too large to address"
        )
    dt, compute = check_dtype(dtypes, fn)
    return Conv2dProblem(
        N=N, C=C, H=H, W=W, K=K, KH=KH, KW=KW, groups=g, stride=(sh, sw),
        dilation=(dh, dw), padding=pads, padding_mode=padding_mode, OH=OH, OW=OW,
        dtype=dt, compute_dtype=compute, batched=batched,
    )


def check_algorithm(algorithm: object) -> str:
    if algorithm not in ALGORITHMS:
        raise ValueError(
            "algorithm must be one of "
            f"{', '.join(repr(a) for a in ALGORITHMS)}, got {algorithm!r}"
        )
    return algorithm  # type: ignore[return-value]


def check_needs(needs: object) -> tuple[str, ...]:
    if isinstance(needs, str):
        needs = (needs,)
    try:
        items = tuple(needs)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(
            f"needs must be a sequence of names from {NEEDS}, got {needs!r}"
        ) from None
    bad = [n for n in items if n not in NEEDS]
    if bad:
        raise ValueError(
            f"needs entries must be 'input', 'weight' or 'bias', got {bad[0]!r}"
        )
    return items
