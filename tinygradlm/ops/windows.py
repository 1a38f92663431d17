"""Sliding windows: ``Unfold`` (im2col) and its adjoint ``Fold`` (col2im).

Convolution and pooling look at every small window of an image.  Rather than loop over the
windows, ``Unfold`` lays them out as a new array -- every window becomes a row -- and the rest
is ordinary ops: a convolution becomes ONE matmul of the windows with the filters, max pooling
a max over each window, average pooling a mean.

    x (N, C, H, W)  --Unfold-->  windows (N, C, oH, oW, kH, kW)
    windows[n, c, i, j, a, b] = padded_x[n, c, i*sH + a*dH, j*sW + b*dW]

Making the windows needs no loop either.  An array is a block of memory plus *strides*: how
many bytes to step for +1 along each axis.  Stepping +1 window along H moves sH rows; +1
element inside a window moves dH rows.  So the windows are the padded image seen through the
strides (..., sH*row, sW*col, dH*row, dW*col): ``as_strided`` builds that view in one call.

The gradient runs the other way: every window element sends its gradient back to the pixel it
was read from, and a pixel shared by overlapping windows collects the sum.  That is ``Fold``
(col2im): a loop over the kH*kW kernel offsets, each adding one strided slice.  ``Fold`` is the
adjoint (the transpose) of ``Unfold``, so each is the other's backward, and ``Fold`` is also the
forward of a transposed convolution.

Shapes: ``n`` spatial axes (1, 2, 3, ...) at the end, any leading axes before them.
Padding is one ``(before, after)`` pair per spatial axis, and together with the size it
decides how many windows fit.  ``after`` may be negative: then the last ``-after`` pixels are
never read (pooling's ``ceil_mode`` and ``conv_transpose``'s ``output_padding`` need padding
that is not the same on both sides).
"""
from __future__ import annotations

import itertools

from ..autograd import Function
from ..backend import get_array_module


def window_count(size, kernel, stride, dilation, before, after):
    """How many windows fit along one axis of ``size`` pixels padded by (before, after)."""
    return (size + before + after - dilation * (kernel - 1) - 1) // stride + 1


def _tuples(kernel_size, stride, padding, dilation):
    """Ints become one value per spatial axis; padding becomes (before, after) pairs."""
    kernel = tuple(kernel_size) if isinstance(kernel_size, (tuple, list)) else (kernel_size,)
    n = len(kernel)

    def per_axis(v):
        return tuple(v) if isinstance(v, (tuple, list)) else (v,) * n
    pads = tuple(p if isinstance(p, (tuple, list)) else (p, p) for p in per_axis(padding))
    return kernel, per_axis(stride), pads, per_axis(dilation)


def unfold(x, kernel, stride, padding, dilation, pad_value=0.0):
    """x (..., *size) -> windows (..., *out, *kernel), a fresh array (see the module doc)."""
    xp = get_array_module(x)
    n = len(kernel)
    lead, size = x.shape[:-n], x.shape[-n:]
    out = tuple(window_count(*a) for a in zip(size, kernel, stride, dilation,
                                              *zip(*padding)))
    if any(o < 1 for o in out):
        span = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))
        padded = tuple(s + lo + hi for s, (lo, hi) in zip(size, padding))
        raise ValueError(f"unfold: the kernel {tuple(kernel)} (dilated: {span}) is larger than "
                         f"the padded input {padded} (input {tuple(x.shape)})")
    grow = [(0, 0)] * len(lead) + [(lo, max(hi, 0)) for lo, hi in padding]
    if any(lo or hi for lo, hi in grow):
        x = xp.pad(x, grow, mode="constant", constant_values=pad_value)
    step = x.strides[-n:]                           # bytes per pixel along each spatial axis
    view = xp.lib.stride_tricks.as_strided(
        x, shape=lead + out + tuple(kernel),
        strides=(x.strides[:-n] + tuple(b * s for b, s in zip(step, stride))     # next window
                 + tuple(b * d for b, d in zip(step, dilation))))                # next element
    # Copy: overlapping windows share memory in the view, and writing into one would
    # change the others.
    return view.copy()


def fold(cols, size, kernel, stride, padding, dilation):
    """cols (..., *out, *kernel) -> (..., *size): each window element added back into the pixel
    ``unfold`` read it from (the adjoint of ``unfold``; padding is cut off at the end)."""
    xp = get_array_module(cols)
    n = len(kernel)
    lead, out = cols.shape[:-2 * n], cols.shape[-2 * n:-n]
    padded = tuple(s + lo + max(hi, 0) for s, (lo, hi) in zip(size, padding))
    z = xp.zeros(lead + padded, dtype=cols.dtype)                       # (..., *padded)
    for offset in itertools.product(*(range(k) for k in kernel)):
        # Kernel element `offset` of window o was read from padded pixel o*s + offset*d: for
        # all windows at once that is a strided slice, and no pixel appears in it twice.
        where = tuple(slice(a * d, a * d + s * (o - 1) + 1, s)
                      for a, d, s, o in zip(offset, dilation, stride, out))
        z[(Ellipsis,) + where] += cols[(Ellipsis,) + offset]               # (..., *out)
    return z[(Ellipsis,) + tuple(slice(lo, lo + s) for s, (lo, _) in zip(size, padding))]


class Unfold(Function):
    """im2col: x (N, C, *size) -> windows (N, C, *out, *kernel_size), every sliding window of
    the padded input (``pad_value`` fills the padding: 0 for convolution and average pooling,
    -inf for max pooling).  Backward is col2im (``fold``): overlapping windows add up."""

    def __init__(self, kernel_size, stride=1, padding=0, dilation=1, pad_value=0.0):
        self.kernel, self.stride, self.padding, self.dilation = _tuples(
            kernel_size, stride, padding, dilation)
        self.pad_value = pad_value

    def forward(self, x):                               # (N, C, *size)
        n = len(self.kernel)
        if x.ndim < n or len({n, len(self.stride), len(self.padding), len(self.dilation)}) > 1:
            raise ValueError(f"unfold: kernel {self.kernel}, stride {self.stride}, padding "
                             f"{self.padding} and dilation {self.dilation} need one value per "
                             f"spatial axis of the input {tuple(x.shape)}")
        self.size = x.shape[-n:]
        return unfold(x, self.kernel, self.stride, self.padding, self.dilation,
                      self.pad_value)                   # (N, C, *out, *kernel)

    def backward(self, g):                              # (N, C, *out, *kernel)
        return (fold(g, self.size, self.kernel, self.stride, self.padding, self.dilation),)


class Fold(Function):
    """col2im: cols (N, C, *out, *kernel_size) -> (N, C, *output_size), each window element
    added into the pixel it would have been read from.  The adjoint of ``Unfold`` with the
    same geometry, so its backward is ``Unfold``'s forward; a transposed convolution is a
    matmul followed by a Fold."""

    def __init__(self, output_size, kernel_size, stride=1, padding=0, dilation=1):
        self.kernel, self.stride, self.padding, self.dilation = _tuples(
            kernel_size, stride, padding, dilation)
        self.size = tuple(output_size)

    def forward(self, cols):                            # (N, C, *out, *kernel)
        n = len(self.kernel)
        want = tuple(window_count(*a) for a in zip(self.size, self.kernel, self.stride,
                                                   self.dilation, *zip(*self.padding)))
        if cols.ndim < 2 * n or cols.shape[-2 * n:] != want + self.kernel:
            raise ValueError(f"fold: output size {self.size} with kernel {self.kernel}, stride "
                             f"{self.stride}, padding {self.padding}, dilation {self.dilation} "
                             f"has windows {want}, so the input must end in {want + self.kernel}"
                             f"; got {tuple(cols.shape)}")
        return fold(cols, self.size, self.kernel, self.stride, self.padding, self.dilation)

    def backward(self, g):                              # (N, C, *output_size)
        return (unfold(g, self.kernel, self.stride, self.padding, self.dilation),)
