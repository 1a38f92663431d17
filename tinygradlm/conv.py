"""Convolution, pooling and resizing, as PyTorch's ``torch.nn.functional`` has them.

Everything here is a composite of two primitives (``ops/windows.py``) and ordinary ops:

* ``Unfold`` (im2col) cuts the padded input into its sliding windows, (N, C, *out, *k).
  A convolution is then ONE matmul: each window, flattened to a row of C*K numbers, times
  the filters, flattened to a (C*K, out_channels) matrix.  Pooling is a max or a mean over
  each window's K numbers.
* ``Fold`` (col2im) is Unfold's adjoint: a transposed convolution is the matmul the other way
  round (each input pixel paints a weighted kernel) followed by a Fold that adds the
  overlapping paintings up.
* Adaptive average pooling and linear interpolation are linear maps along each spatial axis:
  a small constant matrix per axis, applied with a matmul.  Nearest-neighbour resizing picks
  indices.

Shapes follow PyTorch: input (N, C, L) or (N, C, H, W), or without the batch axis; conv
weights (out, in / groups, *k), transposed-conv weights (in, out / groups, *k).
"""
from __future__ import annotations

import functools
import math

import numpy as np

from .ops.windows import Fold, Unfold, window_count
from .tensor import Tensor, where


# --- arguments --------------------------------------------------------------------------------
def _ntuple(op, name, value, n, low=1):
    """An int or a sequence of n ints -> a tuple of n ints, each >= low."""
    t = tuple(value) if isinstance(value, (tuple, list)) else (value,) * n
    if len(t) != n or not all(isinstance(v, (int, np.integer)) for v in t):
        raise ValueError(f"{op}: {name} must be an int or {n} ints, got {value!r}")
    if any(v < low for v in t):
        raise ValueError(f"{op}: {name} must be >= {low}, got {value!r}")
    return tuple(int(v) for v in t)


def _batched(op, x, n):
    """(N, C, *size) as it is, or the unbatched (C, *size) with a batch axis of 1 added."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}: expected a Tensor input, got {type(x).__name__}")
    if x.ndim not in (n + 1, n + 2):
        raise ValueError(f"{op}: expected a {n + 2}-D input (N, C, *size) or a {n + 1}-D "
                         f"unbatched one (C, *size), got shape {x.shape}")
    return (x.unsqueeze(0), True) if x.ndim == n + 1 else (x, False)


def _const(x, array):
    """A constant (no gradient) in x's dtype on x's device, made from a host array."""
    return Tensor(np.asarray(array, dtype=x.dtype), device=x.device)


def _check_float(op, x):
    if x.dtype.kind != "f":
        raise TypeError(f"{op}: expected a floating-point input, got {x.dtype}; convert with "
                        ".float() or .double()")


# --- convolution ------------------------------------------------------------------------------
def _conv(op, n, x, weight, bias, stride, padding, dilation, groups):
    x, unbatched = _batched(op, x, n)
    if weight.ndim != n + 2:
        raise ValueError(f"{op}: expected a {n + 2}-D weight (out_channels, in_channels/groups, "
                         f"*kernel_size), got shape {weight.shape}")
    N, C = x.shape[:2]
    O, Cg, k = weight.shape[0], weight.shape[1], weight.shape[2:]
    if not isinstance(groups, int) or groups < 1 or O % groups:
        raise ValueError(f"{op}: groups={groups} must be a positive int dividing the weight's "
                         f"{O} output channels (weight {weight.shape})")
    if C != Cg * groups:
        raise ValueError(f"{op}: weight {weight.shape} with groups={groups} expects "
                         f"{Cg * groups} input channels, but the input {x.shape} has {C}")
    stride, dilation = _ntuple(op, "stride", stride, n), _ntuple(op, "dilation", dilation, n)
    if padding == "valid":
        pads = ((0, 0),) * n
    elif padding == "same":
        if any(s != 1 for s in stride):
            raise ValueError(f"{op}: padding='same' is not supported for strided convolutions")
        # As PyTorch: the odd pixel of an even total goes after, not before.
        pads = tuple((d * (kk - 1) // 2, d * (kk - 1) - d * (kk - 1) // 2)
                     for kk, d in zip(k, dilation))
    elif isinstance(padding, str):
        raise ValueError(f"{op}: padding must be an int, a tuple, 'same' or 'valid', "
                         f"not {padding!r}")
    else:
        pads = tuple((p, p) for p in _ntuple(op, "padding", padding, n, low=0))
    padded = tuple(s + lo + hi for s, (lo, hi) in zip(x.shape[2:], pads))
    span = tuple(d * (kk - 1) + 1 for kk, d in zip(k, dilation))
    if any(p < s for p, s in zip(padded, span)):
        raise ValueError(f"{op}: the kernel {tuple(k)} (dilated: {span}) is larger than the "
                         f"padded input {padded} (input {x.shape}, padding {padding})")
    G, Og, K = groups, O // groups, math.prod(k)
    win = Unfold.apply(x, kernel_size=k, stride=stride, padding=pads, dilation=dilation)
    out = win.shape[2:2 + n]                                     # win (N, C, *out, *k)
    P = math.prod(out)
    rows = (win.reshape(N, G, Cg, P, K).permute(1, 0, 3, 2, 4)   # (G, N, P, Cg, K)
               .reshape(G, N * P, Cg * K))                       # every window is a row
    w = weight.reshape(G, Og, Cg * K).transpose(1, 2)            # (G, Cg*K, Og)
    y = rows @ w                                                 # (G, N*P, Og): THE matmul
    y = y.reshape(G, N, P, Og).permute(1, 0, 3, 2).reshape((N, O) + out)   # (N, O, *out)
    return _finish(op, y, bias, unbatched)


def _finish(op, y, bias, unbatched):
    """y (N, O, *out) plus the bias (O,) on every pixel; the batch axis dropped again for an
    unbatched input."""
    if bias is not None:
        if bias.shape != y.shape[1:2]:
            raise ValueError(f"{op}: bias must have shape ({y.shape[1]},), got {bias.shape}")
        y = y + bias.reshape(bias.shape + (1,) * (y.ndim - 2))
    return y.squeeze(0) if unbatched else y


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """1-D convolution (cross-correlation, as PyTorch): (N, C, L) * (O, C/groups, k) ->
    (N, O, L_out); padding an int, 'same' or 'valid'."""
    return _conv("conv1d", 1, input, weight, bias, stride, padding, dilation, groups)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution (cross-correlation, as PyTorch): (N, C, H, W) * (O, C/groups, kH, kW)
    -> (N, O, H_out, W_out); padding an int, a pair, 'same' or 'valid'."""
    return _conv("conv2d", 2, input, weight, bias, stride, padding, dilation, groups)


def _conv_transpose(op, n, x, weight, bias, stride, padding, output_padding, groups, dilation):
    x, unbatched = _batched(op, x, n)
    if weight.ndim != n + 2:
        raise ValueError(f"{op}: expected a {n + 2}-D weight (in_channels, out_channels/groups, "
                         f"*kernel_size), got shape {weight.shape}")
    N, C, L = x.shape[0], x.shape[1], x.shape[2:]
    Og, k = weight.shape[1], weight.shape[2:]
    if not isinstance(groups, int) or groups < 1 or C % groups:
        raise ValueError(f"{op}: groups={groups} must be a positive int dividing the "
                         f"{C} input channels of the input {x.shape}")
    if weight.shape[0] != C:
        raise ValueError(f"{op}: weight {weight.shape} expects {weight.shape[0]} input "
                         f"channels, but the input {x.shape} has {C}")
    stride, dilation = _ntuple(op, "stride", stride, n), _ntuple(op, "dilation", dilation, n)
    pad = _ntuple(op, "padding", padding, n, low=0)
    extra = _ntuple(op, "output_padding", output_padding, n, low=0)
    if any(e >= max(s, d) for e, s, d in zip(extra, stride, dilation)):
        raise ValueError(f"{op}: output_padding {extra} must be smaller than either stride "
                         f"{stride} or dilation {dilation}")
    size = tuple((l - 1) * s - 2 * p + d * (kk - 1) + e + 1
                 for l, s, p, d, kk, e in zip(L, stride, pad, dilation, k, extra))
    if any(s < 1 for s in size):
        raise ValueError(f"{op}: input {x.shape} with weight {weight.shape}, stride {stride} "
                         f"and padding {pad} gives an empty output {size}")
    G, Cg, K, P = groups, C // groups, math.prod(k), math.prod(L)
    cols = (x.reshape(N, G, Cg, P).permute(1, 0, 3, 2).reshape(G, N * P, Cg)   # pixel rows
            @ weight.reshape(G, Cg, Og * K))              # (G, N*P, Og*K): each pixel's kernel
    cols = (cols.reshape((G, N) + L + (Og,) + k)
                .permute((1, 0, n + 2) + tuple(range(2, n + 2)) + tuple(range(n + 3, 2 * n + 3)))
                .reshape((N, G * Og) + L + k))             # (N, O, *L, *k)
    # The paintings overlap: Fold adds them up.  output_padding grows the far end only.
    y = Fold.apply(cols, output_size=size, kernel_size=k, stride=stride,
                   padding=tuple((p, p - e) for p, e in zip(pad, extra)), dilation=dilation)
    return _finish(op, y, bias, unbatched)


def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0,
                     groups=1, dilation=1):
    """The gradient of conv1d with respect to its input, as an op (a "deconvolution"):
    (N, C, L) with weight (C, O/groups, k) -> (N, O, (L-1)*stride - 2*padding
    + dilation*(k-1) + output_padding + 1)."""
    return _conv_transpose("conv_transpose1d", 1, input, weight, bias, stride, padding,
                           output_padding, groups, dilation)


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0,
                     groups=1, dilation=1):
    """conv_transpose1d's formula on both axes: (N, C, H, W) with weight (C, O/groups, kH, kW)."""
    return _conv_transpose("conv_transpose2d", 2, input, weight, bias, stride, padding,
                           output_padding, groups, dilation)


# --- pooling ----------------------------------------------------------------------------------
def _pool_geometry(op, size, k, s, p, d, ceil_mode):
    """PyTorch's output sizes and the (before, after) padding that makes exactly that many
    windows: after = where the last window ends minus the input (negative if it stops short,
    more than p with ceil_mode)."""
    for kk, pp, dd in zip(k, p, d):
        if pp > (dd * (kk - 1) + 1) // 2:
            raise ValueError(f"{op}: padding should be at most half of the effective kernel "
                             f"size, but got padding={p}, kernel_size={k}, dilation={d}")
    out, pads = [], []
    for L, kk, ss, pp, dd in zip(size, k, s, p, d):
        span = dd * (kk - 1) + 1
        o = (L + 2 * pp - span + (ss - 1 if ceil_mode else 0)) // ss + 1
        if ceil_mode and (o - 1) * ss >= L + pp:
            o -= 1                  # as PyTorch: the last window must start before the right pad
        out.append(o)
        pads.append((pp, (o - 1) * ss + span - L - pp))
    if any(o < 1 for o in out):
        raise ValueError(f"{op}: input size {tuple(size)} with kernel_size={k}, stride={s}, "
                         f"padding={p}, dilation={d} gives output size {tuple(out)}: too small")
    return tuple(out), tuple(pads)


def _pool_args(op, n, kernel_size, stride, padding, dilation=1):
    k = _ntuple(op, "kernel_size", kernel_size, n)
    s = k if stride is None or stride == [] or stride == () else _ntuple(op, "stride", stride, n)
    return k, s, _ntuple(op, "padding", padding, n, low=0), _ntuple(op, "dilation", dilation, n)


def _max_pool(op, n, x, kernel_size, stride, padding, dilation, ceil_mode, return_indices):
    x, unbatched = _batched(op, x, n)
    k, s, p, d = _pool_args(op, n, kernel_size, stride, padding, dilation)
    out, pads = _pool_geometry(op, x.shape[2:], k, s, p, d, ceil_mode)
    lowest = -np.inf if x.dtype.kind == "f" else np.iinfo(x.dtype).min   # padding never wins
    win = Unfold.apply(x, kernel_size=k, stride=s, padding=pads, dilation=d,
                           pad_value=lowest)                        # (N, C, *out, *k)
    win = win.reshape(x.shape[:2] + out + (-1,))                    # (N, C, *out, K)
    xp = x.xp
    best = win.data.argmax(axis=-1)                                 # (N, C, *out): first max
    # A one-hot pick, not amax: on a tie amax would split the gradient between the equal
    # elements; PyTorch gives it all to the first one, and so does this.
    pick = best[..., None] == xp.arange(win.shape[-1])              # (N, C, *out, K)
    y = where(pick, win, 0).sum(dim=-1)                             # (N, C, *out)
    if unbatched:
        y = y.squeeze(0)
    if not return_indices:
        return y
    # Where each max came from, as a flat index into the input's (unpadded) spatial axes.
    flat = xp.zeros_like(best)
    for axis in range(n):
        ko = (best // math.prod(k[axis + 1:])) % k[axis]               # kernel offset on axis
        o = xp.arange(out[axis]).reshape((-1,) + (1,) * (n - 1 - axis))  # window on axis
        flat = flat * x.shape[2 + axis] + o * s[axis] - p[axis] + ko * d[axis]
    return y, Tensor._from_op(flat[0] if unbatched else flat)


def max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """The max of each window: (N, C, L) -> (N, C, L_out); stride defaults to kernel_size."""
    return _max_pool("max_pool1d", 1, input, kernel_size, stride, padding, dilation,
                     ceil_mode, return_indices)


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """The max of each window: (N, C, H, W) -> (N, C, H_out, W_out)."""
    return _max_pool("max_pool2d", 2, input, kernel_size, stride, padding, dilation,
                     ceil_mode, return_indices)


def _avg_pool(op, n, x, kernel_size, stride, padding, ceil_mode, count_include_pad,
              divisor_override):
    x, unbatched = _batched(op, x, n)
    _check_float(op, x)
    k, s, p, _ = _pool_args(op, n, kernel_size, stride, padding)
    out, pads = _pool_geometry(op, x.shape[2:], k, s, p, (1,) * n, ceil_mode)
    win = Unfold.apply(x, kernel_size=k, stride=s, padding=pads)    # (N, C, *out, *k)
    total = win.sum(dim=tuple(range(-n, 0)))                            # (N, C, *out)
    if divisor_override is not None:
        if divisor_override == 0:
            raise ValueError(f"{op}: divisor_override must be non-zero")
        y = total / divisor_override
    else:
        # The divisor is a box's volume, so one count per axis: PyTorch's window clipped to
        # the padded input (ceil_mode's overhang never counts), or to the input itself when
        # padding does not count either.
        counts = []
        for L, kk, ss, pp, o in zip(x.shape[2:], k, s, p, out):
            start = np.arange(o) * ss - pp
            end = np.minimum(start + kk, L + pp)
            counts.append(end - start if count_include_pad
                          else np.minimum(end, L) - np.maximum(start, 0))
        y = total / _const(x, functools.reduce(np.multiply.outer, counts))     # (*out)
    return y.squeeze(0) if unbatched else y


def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True):
    """The mean of each window: (N, C, L) -> (N, C, L_out)."""
    return _avg_pool("avg_pool1d", 1, input, kernel_size, stride, padding, ceil_mode,
                     count_include_pad, None)


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None):
    """The mean of each window: (N, C, H, W) -> (N, C, H_out, W_out)."""
    return _avg_pool("avg_pool2d", 2, input, kernel_size, stride, padding, ceil_mode,
                     count_include_pad, divisor_override)


# --- linear maps along each axis: adaptive pooling and interpolation ----------------------------
def _along_axes(x, matrices):
    """x (N, C, *size) with spatial axis i mapped by matrices[i] (out_i, size_i): a matmul
    with M^T on that axis moved last, e.g. (N, C, H, W) -> M_h @ x @ M_w^T for two axes."""
    n = len(matrices)
    for i, m in enumerate(matrices):
        axis = x.ndim - n + i
        if m.shape[0] == m.shape[1] and np.array_equal(m, np.eye(m.shape[0])):
            continue                                    # this axis keeps its size and values
        moved = x.transpose(axis, -1) if axis != x.ndim - 1 else x
        y = moved @ _const(x, m.T)                       # (..., size_i) @ (size_i, out_i)
        x = y.transpose(axis, -1) if axis != x.ndim - 1 else y
    return x


def _adaptive_matrix(size, out):
    """(out, size): row i averages the input window floor(i*size/out) .. ceil((i+1)*size/out)."""
    i = np.arange(out)
    start, end = (i * size) // out, -((-(i + 1) * size) // out)
    j = np.arange(size)
    inside = (j >= start[:, None]) & (j < end[:, None])
    return inside / (end - start)[:, None]


def _adaptive_avg_pool(op, n, x, output_size):
    x, unbatched = _batched(op, x, n)
    _check_float(op, x)
    sizes = output_size if isinstance(output_size, (tuple, list)) else (output_size,) * n
    if len(sizes) != n:
        raise ValueError(f"{op}: output_size must be an int or {n} values, got {output_size!r}")
    sizes = tuple(L if o is None else o for L, o in zip(x.shape[2:], sizes))   # None: keep
    _ntuple(op, "output_size", sizes, n)
    y = _along_axes(x, [_adaptive_matrix(L, o) for L, o in zip(x.shape[2:], sizes)])
    return y.squeeze(0) if unbatched else y


def adaptive_avg_pool1d(input, output_size):
    """Average pooling to a fixed output length, whatever the input length."""
    return _adaptive_avg_pool("adaptive_avg_pool1d", 1, input, output_size)


def adaptive_avg_pool2d(input, output_size):
    """Average pooling to a fixed (H_out, W_out); an entry None keeps that input size."""
    return _adaptive_avg_pool("adaptive_avg_pool2d", 2, input, output_size)


def _nearest_index(size, out, scale, exact, n):
    """PyTorch's nearest source pixels, computed in float32 as PyTorch does (so a scale that is
    not exact in binary rounds the same way); plain 'nearest' floors dst * scale."""
    # PyTorch's 2-D kernel (not its 1-D forward) copies when out is in or 2*in, whatever the
    # scale_factor says; its 1-D backward does too, which makes that gradient wrong.
    if not exact and n > 1 and out in (size, 2 * size):
        return np.arange(out) * size // out
    dst = np.arange(out, dtype=np.float32) + np.float32(0.5 if exact else 0.0)
    return np.minimum(np.floor(dst * np.float32(scale)).astype(np.int64), size - 1)


def _linear_matrix(size, out, scale, align_corners, dtype):
    """(out, size): row i mixes the two input pixels around PyTorch's source position of i."""
    if out == size:
        return np.eye(size)             # PyTorch copies an axis that keeps its size
    compute = np.float32 if dtype in (np.float16, np.float32) else np.float64
    i = np.arange(out, dtype=compute)
    if align_corners:
        src = i * compute((size - 1) / (out - 1) if out > 1 else 0.0)
    else:
        src = np.maximum((i + compute(0.5)) * compute(scale) - compute(0.5), 0)
    lo = np.minimum(np.floor(src).astype(np.int64), size - 1)
    frac = np.clip(src - lo, 0, 1).astype(np.float64)
    m = np.zeros((out, size))
    np.add.at(m, (np.arange(out), lo), 1 - frac)
    np.add.at(m, (np.arange(out), np.minimum(lo + 1, size - 1)), frac)
    return m


def interpolate(input, size=None, scale_factor=None, mode="nearest", align_corners=None,
                recompute_scale_factor=None):
    """Resize the spatial axes of (N, C, *size) to ``size``, or by ``scale_factor``.
    Modes: 'nearest' (and 'nearest-exact'), 'linear' (3-D input), 'bilinear' (4-D), 'area'
    (adaptive average pooling)."""
    x = input
    n = x.ndim - 2
    linear = {"linear": 1, "bilinear": 2}                   # mode -> its spatial axes
    if mode not in ("nearest", "nearest-exact", "area", *linear):
        raise ValueError(f"interpolate: unknown mode {mode!r} (nearest, nearest-exact, linear, "
                         f"bilinear, area)")
    if n < 1 or n != linear.get(mode, n):
        raise ValueError(f"interpolate: mode {mode!r} needs a {linear.get(mode, 1) + 2}-D input "
                         f"(N, C, *size), got shape {x.shape}")
    if align_corners is not None and mode not in linear:
        raise ValueError("interpolate: align_corners can only be set with the interpolating "
                         "modes 'linear' and 'bilinear'")
    if (size is None) == (scale_factor is None):
        raise ValueError("interpolate: give exactly one of size and scale_factor")
    L = x.shape[2:]
    if size is not None:
        out = _ntuple("interpolate", "size", size, n)
        scales = [l / o for l, o in zip(L, out)]
    else:
        factors = (tuple(scale_factor) if isinstance(scale_factor, (tuple, list))
                   else (scale_factor,) * n)
        if len(factors) != n or any(f <= 0 for f in factors):
            raise ValueError(f"interpolate: scale_factor must be positive, one or {n} values; "
                             f"got {scale_factor!r}")
        out = tuple(math.floor(l * f) for l, f in zip(L, factors))
        _ntuple("interpolate", "output size (input size * scale_factor)", out, n)
        # PyTorch uses 1/scale_factor, not in/out, to place the pixels unless asked to
        # recompute it: with scale_factor=1.7 on 10 pixels they differ (1/1.7 vs 10/17).
        scales = [l / o if recompute_scale_factor else 1 / f
                  for l, o, f in zip(L, out, factors)]
    if mode == "area":
        return _adaptive_avg_pool("interpolate", n, x, out)
    if mode in linear:
        _check_float("interpolate", x)
        return _along_axes(x, [_linear_matrix(l, o, sc, align_corners, x.dtype.type)
                               for l, o, sc in zip(L, out, scales)])
    for i, (l, o, sc) in enumerate(zip(L, out, scales)):        # nearest: pick, axis by axis
            idx = _nearest_index(l, o, sc, mode == "nearest-exact", n)
            x = x[(slice(None),) * (2 + i) + (idx,)]
    return x


# --- PyTorch's unfold / fold: windows as columns -------------------------------------------------
def _window_args(op, kernel_size, stride, padding, dilation):
    return (_ntuple(op, "kernel_size", kernel_size, 2), _ntuple(op, "stride", stride, 2),
            _ntuple(op, "padding", padding, 2, low=0), _ntuple(op, "dilation", dilation, 2))


def unfold(input, kernel_size, dilation=1, padding=0, stride=1):
    """(N, C, H, W) -> (N, C*kH*kW, L): every window a column, L = number of windows
    (PyTorch's ``F.unfold`` layout: channel-major rows, windows in row-major order)."""
    x, unbatched = _batched("unfold", input, 2)
    k, s, p, d = _window_args("unfold", kernel_size, stride, padding, dilation)
    win = Unfold.apply(x, kernel_size=k, stride=s, padding=p, dilation=d)  # (N, C, oH, oW, kH, kW)
    N, C = x.shape[:2]
    y = win.permute(0, 1, 4, 5, 2, 3).reshape(N, C * k[0] * k[1], -1)
    return y.squeeze(0) if unbatched else y


def fold(input, output_size, kernel_size, dilation=1, padding=0, stride=1):
    """The adjoint of ``unfold``: (N, C*kH*kW, L) columns added back into (N, C, H, W)."""
    x, unbatched = _batched("fold", input, 1)                     # (N, C*kH*kW, L)
    size = _ntuple("fold", "output_size", output_size, 2)
    k, s, p, d = _window_args("fold", kernel_size, stride, padding, dilation)
    K = k[0] * k[1]
    out = tuple(window_count(*a) for a in zip(size, k, s, d, p, p))
    if x.shape[1] % K or x.shape[2] != out[0] * out[1]:
        raise ValueError(f"fold: input {x.shape} must be (N, C*{K}, {out[0] * out[1]}) for "
                         f"output_size={size}, kernel_size={k}, stride={s}, padding={p}")
    C = x.shape[1] // K
    cols = x.reshape((x.shape[0], C) + k + out).permute(0, 1, 4, 5, 2, 3)  # (N, C, oH, oW, kH, kW)
    y = Fold.apply(cols, output_size=size, kernel_size=k, stride=s, padding=p, dilation=d)
    return y.squeeze(0) if unbatched else y
