"""Convolution, pooling and resizing layers, with PyTorch's constructor signatures, defaults
and initialisation.  Each ``forward`` is one call of ``tinygradlm.conv`` (the functional form,
where the work is explained)."""
from __future__ import annotations

import math

from .. import conv as C
from ..functional import pad
from ..tensor import Tensor
from .layers import uniform
from .module import Module, Parameter


class _ConvNd(Module):
    """What Conv1d/2d and ConvTranspose1d/2d share: channels, geometry, weight and bias."""
    n = 2                   # spatial axes
    transposed = False

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, padding_mode="zeros", device=None, dtype=None,
                 output_padding=0):
        super().__init__()
        name = type(self).__name__
        if groups < 1 or in_channels % groups or out_channels % groups:
            raise ValueError(f"{name}: in_channels ({in_channels}) and out_channels "
                             f"({out_channels}) must both be divisible by groups ({groups})")
        modes = ("zeros",) if self.transposed else ("zeros", "reflect", "replicate", "circular")
        if padding_mode not in modes:
            raise ValueError(f"{name}: padding_mode must be one of {modes}, not "
                             f"{padding_mode!r}")
        n = self.n
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = C._ntuple(name, "kernel_size", kernel_size, n)
        self.stride = C._ntuple(name, "stride", stride, n)
        self.dilation = C._ntuple(name, "dilation", dilation, n)
        if isinstance(padding, str):
            if padding not in ("same", "valid") or self.transposed:
                raise ValueError(f"{name}: padding {padding!r} is not supported here (use an int "
                                 f"or a tuple{'' if self.transposed else ', same or valid'})")
            if padding == "same" and any(s != 1 for s in self.stride):
                raise ValueError(f"{name}: padding='same' is not supported for strided "
                                 f"convolutions")
            self.padding = padding
        else:
            self.padding = C._ntuple(name, "padding", padding, n, low=0)
        self.output_padding = C._ntuple(name, "output_padding", output_padding, n, low=0)
        self.padding_mode = padding_mode
        # PyTorch's fan_in is weight.shape[1] * kernel elements, for both weight layouts.
        shape = ((in_channels, out_channels // groups) if self.transposed
                 else (out_channels, in_channels // groups)) + self.kernel_size
        fan_in = shape[1] * math.prod(self.kernel_size)
        bound = 1 / math.sqrt(fan_in) if fan_in else 0.0
        # PyTorch's kaiming_uniform(a=sqrt(5)) works out to this bound, as for the bias.
        self.weight = Parameter(uniform(shape, bound, dtype, device))
        self.bias = Parameter(uniform((out_channels,), bound, dtype, device)) if bias else None

    def _padded(self, x):
        """(input, padding) for the functional call.  A padding_mode other than "zeros" pads
        the input first (``F.pad``: reflect, replicate or circular) and convolves unpadded."""
        if self.padding_mode == "zeros" or self.padding == "valid":
            return x, self.padding
        if self.padding == "same":
            total = [d * (k - 1) for d, k in zip(self.dilation, self.kernel_size)]
            pairs = [(t // 2, t - t // 2) for t in total]
        else:
            pairs = [(p, p) for p in self.padding]
        widths = [w for pair in reversed(pairs) for w in pair]       # F.pad: last dim first
        return pad(x, widths, mode=self.padding_mode), 0

    def extra_repr(self):
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        if self.padding != (0,) * self.n:
            s += f", padding={self.padding}"
        if self.dilation != (1,) * self.n:
            s += f", dilation={self.dilation}"
        if self.output_padding != (0,) * self.n:
            s += f", output_padding={self.output_padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        return s


class _Conv(_ConvNd):
    """Conv1d/Conv2d: (optionally) pad by padding_mode, then the functional convolution."""
    function = None

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, padding_mode="zeros", device=None, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias, padding_mode, device, dtype)

    def forward(self, x: Tensor) -> Tensor:
        x, padding = self._padded(x)
        return type(self).function(x, self.weight, self.bias, self.stride, padding,
                                   self.dilation, self.groups)


class Conv1d(_Conv):
    """(N, C_in, L) -> (N, C_out, L_out); weight (C_out, C_in/groups, k), bias (C_out,)."""
    n = 1
    function = staticmethod(C.conv1d)


class Conv2d(_Conv):
    """(N, C_in, H, W) -> (N, C_out, H_out, W_out); weight (C_out, C_in/groups, kH, kW)."""
    function = staticmethod(C.conv2d)


class _ConvTransposeNd(_ConvNd):
    transposed = True

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, groups=1, bias=True, dilation=1, padding_mode="zeros",
                 device=None, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias, padding_mode, device, dtype, output_padding)

    def _output_padding(self, x, output_size):
        """The output_padding that gives ``output_size`` (PyTorch's forward argument, which
        picks among the sizes a strided convolution maps to the same input size)."""
        if output_size is None:
            return self.output_padding
        n = self.n
        want = tuple(output_size)[-n:]
        least = tuple((l - 1) * s - 2 * p + d * (k - 1) + 1 for l, s, p, d, k in zip(
            x.shape[-n:], self.stride, self.padding, self.dilation, self.kernel_size))
        extra = tuple(w - m for w, m in zip(want, least))
        if len(want) != n or any(not 0 <= e < max(s, d) for e, s, d in
                                 zip(extra, self.stride, self.dilation)):
            raise ValueError(f"{type(self).__name__}: output_size {tuple(output_size)} is not "
                             f"reachable from input {x.shape}: each size must be in "
                             f"[{least}, {least} + max(stride, dilation) - 1]")
        return extra


class ConvTranspose1d(_ConvTransposeNd):
    """(N, C_in, L) -> (N, C_out, L_out); weight (C_in, C_out/groups, k)."""
    n = 1

    def forward(self, x: Tensor, output_size=None) -> Tensor:
        return C.conv_transpose1d(x, self.weight, self.bias, self.stride, self.padding,
                                  self._output_padding(x, output_size), self.groups,
                                  self.dilation)


class ConvTranspose2d(_ConvTransposeNd):
    """(N, C_in, H, W) -> (N, C_out, H_out, W_out); weight (C_in, C_out/groups, kH, kW)."""

    def forward(self, x: Tensor, output_size=None) -> Tensor:
        return C.conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding,
                                  self._output_padding(x, output_size), self.groups,
                                  self.dilation)


# --- pooling ----------------------------------------------------------------------------------
class _MaxPoolNd(Module):
    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False,
                 ceil_mode=False):
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride if stride is not None else kernel_size
        self.padding, self.dilation = padding, dilation
        self.return_indices, self.ceil_mode = return_indices, ceil_mode

    def extra_repr(self):
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class MaxPool1d(_MaxPoolNd):
    def forward(self, x: Tensor):
        return C.max_pool1d(x, self.kernel_size, self.stride, self.padding, self.dilation,
                            self.ceil_mode, self.return_indices)


class MaxPool2d(_MaxPoolNd):
    def forward(self, x: Tensor):
        return C.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation,
                            self.ceil_mode, self.return_indices)


class _AvgPoolNd(Module):
    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


def _single(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v,)


class AvgPool1d(_AvgPoolNd):
    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False,
                 count_include_pad=True):
        super().__init__()
        # As PyTorch, the 1-D layer keeps one-tuples (the 2-D one keeps what it is given).
        self.kernel_size = _single(kernel_size)
        self.stride = _single(stride if stride is not None else kernel_size)
        self.padding, self.ceil_mode = _single(padding), ceil_mode
        self.count_include_pad = count_include_pad

    def forward(self, x: Tensor) -> Tensor:
        return C.avg_pool1d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                            self.count_include_pad)


class AvgPool2d(_AvgPoolNd):
    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False,
                 count_include_pad=True, divisor_override=None):
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride if stride is not None else kernel_size
        self.padding, self.ceil_mode = padding, ceil_mode
        self.count_include_pad, self.divisor_override = count_include_pad, divisor_override

    def forward(self, x: Tensor) -> Tensor:
        return C.avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                            self.count_include_pad, self.divisor_override)


class AdaptiveAvgPool1d(Module):
    """Average pooling to a fixed output size, whatever the input size."""

    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, x: Tensor) -> Tensor:
        return C.adaptive_avg_pool1d(x, self.output_size)

    def extra_repr(self):
        return f"output_size={self.output_size}"


class AdaptiveAvgPool2d(AdaptiveAvgPool1d):
    def forward(self, x: Tensor) -> Tensor:
        return C.adaptive_avg_pool2d(x, self.output_size)


class Upsample(Module):
    """``interpolate`` as a layer: resize to ``size`` or by ``scale_factor``."""

    def __init__(self, size=None, scale_factor=None, mode="nearest", align_corners=None,
                 recompute_scale_factor=None):
        super().__init__()
        if scale_factor:                    # stored as floats, as PyTorch (its repr shows 2.0)
            scale_factor = (tuple(float(f) for f in scale_factor)
                            if isinstance(scale_factor, tuple) else float(scale_factor))
        self.size, self.scale_factor, self.mode = size, scale_factor or None, mode
        self.align_corners, self.recompute_scale_factor = align_corners, recompute_scale_factor

    def forward(self, x: Tensor) -> Tensor:
        return C.interpolate(x, self.size, self.scale_factor, self.mode, self.align_corners,
                             self.recompute_scale_factor)

    def extra_repr(self):
        first = (f"scale_factor={self.scale_factor!r}" if self.scale_factor is not None
                 else f"size={self.size!r}")
        return f"{first}, mode={self.mode!r}"


class Flatten(Module):
    """(N, C, H, W) -> (N, C*H*W): dims start_dim..end_dim merged into one."""

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(self.start_dim, self.end_dim)

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"
