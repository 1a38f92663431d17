"""Reductions: sums, maxima and the like over some axes (``dim``), and scans along one."""
from __future__ import annotations

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
