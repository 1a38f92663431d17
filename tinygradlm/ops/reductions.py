"""Reductions: sums, maxima and the like over some axes (``dim``), and scans along one."""
from __future__ import annotations

import numpy as np

from ..backend import get_array_module
from ..autograd import Function


# --- reductions -------------------------------------------------------------------------
def normalize_dims(op, dim, ndim):
    """``dim`` as a sorted tuple of non-negative axes (``None`` means every axis)."""
    if dim is None:
        return tuple(range(ndim))
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    out = []
    for d in dims:
        if not -max(ndim, 1) <= d < max(ndim, 1):
            raise IndexError(f"{op}: dim {d} is out of range for a tensor with {ndim} dims "
                             f"(valid: {-max(ndim, 1)} to {max(ndim, 1) - 1})")
        if ndim:                    # a 0-d tensor accepts dim 0 / -1 and has no axis to reduce
            out.append(d % ndim)
    return tuple(sorted(set(out)))


def _unsqueeze_reduced(g, in_shape, dims):
    """Put back the reduced axes as size 1 so ``g`` broadcasts against the input again."""
    shape = [1 if i in dims else n for i, n in enumerate(in_shape)]
    return g.reshape(shape)


class Sum(Function):
    """z = x summed over ``dim``;  every summed element gets the gradient of the sum"""

    def __init__(self, dim=None, keepdim=False):
        self.dim, self.keepdim = dim, keepdim

    def forward(self, x):
        self.in_shape = x.shape
        self.dims = normalize_dims("sum", self.dim, x.ndim)
        return x.sum(axis=self.dims, keepdims=self.keepdim)

    def backward(self, g):
        xp = get_array_module(g)
        g = _unsqueeze_reduced(g, self.in_shape, self.dims)
        return (xp.broadcast_to(g, self.in_shape),)


class Max(Function):
    """z = max of x over ``dim``; the gradient goes to the maximal elements (split on ties)"""

    def __init__(self, dim=None, keepdim=False):
        self.dim, self.keepdim = dim, keepdim

    @staticmethod
    def extreme(x, dims):
        return x.max(axis=dims, keepdims=True)

    def forward(self, x):
        name = type(self).__name__.lower()
        if x.size == 0:
            raise ValueError(f"{name}: cannot take the {name} of an empty tensor of shape "
                             f"{x.shape}")
        self.dims = normalize_dims(name, self.dim, x.ndim)
        z = self.extreme(x, self.dims)
        is_extreme = x == z
        self.save_for_backward(is_extreme, is_extreme.sum(axis=self.dims, keepdims=True))
        self.in_shape = x.shape
        return z if self.keepdim else z.reshape([n for i, n in enumerate(x.shape)
                                                  if i not in self.dims])

    def backward(self, g):
        is_extreme, count = self.saved
        g = _unsqueeze_reduced(g, self.in_shape, self.dims)
        return (g * is_extreme / count.astype(g.dtype),)


class Min(Max):
    """z = min of x over ``dim``; the gradient goes to the minimal elements (split on ties).
    Its own reduction, not -max(-x): negation overflows at an integer type's lowest value."""

    @staticmethod
    def extreme(x, dims):
        return x.min(axis=dims, keepdims=True)


class Prod(Function):
    """z = product of x over ``dim``.  The gradient of one factor is the product of all the
    others -- computed as (product of those before it) * (product of those after it), so a
    zero factor needs no special case (dividing z by x would give 0/0 there)."""

    def __init__(self, dim=None, keepdim=False):
        self.dim, self.keepdim = dim, keepdim

    def forward(self, x):
        self.dims = normalize_dims("prod", self.dim, x.ndim)
        self.save_for_backward(x)
        return x.prod(axis=self.dims, keepdims=self.keepdim)

    def backward(self, g):
        (x,) = self.saved
        xp = get_array_module(x)
        kept = [i for i in range(x.ndim) if i not in self.dims]
        order = kept + list(self.dims)                      # the reduced axes last...
        rows = x.transpose(order).reshape([x.shape[i] for i in kept] + [-1])   # (..., n)
        one = xp.ones(rows.shape[:-1] + (1,), dtype=x.dtype)
        before = xp.concatenate([one, xp.cumprod(rows[..., :-1], axis=-1)], axis=-1)
        after = xp.concatenate([xp.cumprod(rows[..., :0:-1], axis=-1)[..., ::-1], one], axis=-1)
        others = (before * after).reshape([x.shape[i] for i in order])
        others = others.transpose(np.argsort(order).tolist())  # ...and back in place
        return (_unsqueeze_reduced(g, x.shape, self.dims) * others,)


# --- scans: one running result per position along ``dim`` --------------------------------
def running(name, x, axis):
    """z_k = op(x_0, ..., x_k) along ``axis`` for an associative ufunc ``name`` ("maximum",
    "logaddexp", ...).  NumPy has it built in (``ufunc.accumulate``); for other backends, a
    doubling scan: after the step with shift s, z_k combines the 2s elements ending at k, so
    log2(n) vectorised steps suffice."""
    xp = get_array_module(x)
    op = getattr(xp, name)
    if xp is np:
        return op.accumulate(x, axis=axis)
    z = xp.moveaxis(x, axis, -1).copy()                         # (..., n)
    shift = 1
    while shift < z.shape[-1]:
        z[..., shift:] = op(z[..., shift:], z[..., :-shift])    # the right side is read first
        shift *= 2
    return xp.moveaxis(z, -1, axis)


class CumSum(Function):
    """z_k = x_0 + ... + x_k along ``dim``; x_i feeds every z_k with k >= i, so its gradient
    is the sum of g_k for k >= i: a cumulative sum run backwards."""

    def __init__(self, dim):
        self.dim = dim

    def forward(self, x):
        self.axis = normalize_dims("cumsum", self.dim, x.ndim)[0] if x.ndim else None
        return x.cumsum(axis=self.axis).reshape(x.shape)

    def backward(self, g):
        if self.axis is None:
            return (g,)
        xp = get_array_module(g)
        return (xp.flip(xp.flip(g, self.axis).cumsum(axis=self.axis), self.axis),)


class CumProd(Function):
    """z_k = x_0 * ... * x_k along ``dim``.  With s_i = sum over k >= i of g_k * x_(i+1) ...
    x_k, the gradient of x_i is (x_0 ... x_(i-1)) * s_i, and s_i = g_i + x_(i+1) * s_(i+1) is
    one backward pass -- exact when some x is zero, where z / x would be 0/0."""

    def __init__(self, dim):
        self.dim = dim

    def forward(self, x):
        self.axis = normalize_dims("cumprod", self.dim, x.ndim)[0] if x.ndim else None
        z = x.cumprod(axis=self.axis).reshape(x.shape)
        self.save_for_backward(x, z)
        return z

    def backward(self, g):
        x, z = self.saved
        if self.axis is None or g.size == 0:
            return (g,)
        xp = get_array_module(g)
        x, z, g = (xp.moveaxis(a, self.axis, -1) for a in (x, z, g))    # (..., n)
        s = xp.empty_like(g)
        s[..., -1] = g[..., -1]
        for i in range(g.shape[-1] - 2, -1, -1):
            s[..., i] = g[..., i] + x[..., i + 1] * s[..., i + 1]
        before = xp.concatenate([xp.ones_like(z[..., :1]), z[..., :-1]], axis=-1)
        return (xp.moveaxis(before * s, -1, self.axis),)


class LogCumSumExp(Function):
    """z_k = log(exp(x_0) + ... + exp(x_k)) along ``dim``, each step a stable logaddexp.
    The gradient of x_i is the sum over k >= i of g_k * exp(x_i - z_k); it is summed in log
    space too (positive and negative parts of g apart), so nothing overflows."""

    def __init__(self, dim):
        self.dim = dim

    def forward(self, x):
        self.axis = normalize_dims("logcumsumexp", self.dim, x.ndim)[0] if x.ndim else None
        z = x.copy() if self.axis is None else running("logaddexp", x, self.axis)
        self.save_for_backward(x, z)
        return z

    def backward(self, g):
        x, z = self.saved
        if self.axis is None:
            return (g,)
        xp = get_array_module(g)
        grad = xp.zeros_like(x)
        for sign in (1, -1):
            part = xp.maximum(sign * g, 0)
            log_part = xp.where(part > 0, xp.log(xp.where(part > 0, part, 1)), -xp.inf)
            # log of (sum over k >= i of part_k * exp(-z_k)): a reversed log-space cumsum
            rev = xp.flip(log_part - z, self.axis)
            tail = xp.flip(running("logaddexp", rev, self.axis), self.axis)
            grad = grad + sign * xp.exp(x + tail)
        return (grad,)
