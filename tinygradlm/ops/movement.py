"""Movement: the same elements in another shape, order or arrangement."""
from __future__ import annotations

import numpy as np

from ..backend import get_array_module
from ..autograd import Function
from .reductions import normalize_dims


# --- movement ---------------------------------------------------------------------------
class Reshape(Function):
    """z = x with a new shape (same elements, same order)"""

    def __init__(self, shape):
        self.shape = tuple(shape)

    def forward(self, x):
        self.in_shape = x.shape
        try:
            return x.reshape(self.shape)
        except ValueError:
            raise ValueError(f"reshape: cannot view a tensor of shape {tuple(x.shape)} "
                             f"({x.size} elements) as shape {self.shape}") from None

    def backward(self, g):
        return (g.reshape(self.in_shape),)


class Permute(Function):
    """z = x with its axes reordered; the gradient applies the inverse order"""

    def __init__(self, dims):
        self.dims = tuple(dims)

    def forward(self, x):
        if sorted(d % max(x.ndim, 1) for d in self.dims) != list(range(x.ndim)):
            raise ValueError(f"permute: {self.dims} is not a permutation of the "
                             f"{x.ndim} dims of a tensor of shape {tuple(x.shape)}")
        return x.transpose(self.dims)

    def backward(self, g):
        return (g.transpose(np.argsort([d % g.ndim for d in self.dims]).tolist()),)


class Expand(Function):
    """z = x broadcast to a larger shape (a view, no copy).  The backward is the identity:
    the engine's ``reduce_to_shape`` sums the copies back, as for every broadcast."""

    def __init__(self, shape):
        self.shape = tuple(shape)

    def forward(self, x):
        try:
            return get_array_module(x).broadcast_to(x, self.shape)
        except ValueError:
            raise ValueError(f"expand: cannot expand shape {tuple(x.shape)} to {self.shape} "
                             "(only size-1 axes can grow, and new axes go in front)") from None

    def backward(self, g):
        return (g,)


class Cat(Function):
    """z = the inputs joined along ``dim``; the gradient is cut back into pieces"""

    def __init__(self, dim=0):
        self.dim = dim

    def forward(self, *xs):
        first = xs[0]
        dim = normalize_dims("cat", self.dim, first.ndim)[0]
        for x in xs[1:]:
            if x.ndim != first.ndim or any(a != b for i, (a, b) in
                                           enumerate(zip(x.shape, first.shape)) if i != dim):
                raise ValueError(f"cat: tensors must have the same shape except in dim {dim}; "
                                 f"got {tuple(first.shape)} and {tuple(x.shape)}")
        self.dim_ = dim
        self.sizes = [x.shape[dim] for x in xs]
        return get_array_module(first).concatenate(xs, axis=dim)

    def backward(self, g):
        xp = get_array_module(g)
        cuts = np.cumsum(self.sizes)[:-1].tolist()
        return tuple(xp.split(g, cuts, axis=self.dim_))


class Pad(Function):
    """z = x with ``widths[axis] = (before, after)`` elements of ``value`` added around each
    axis; a negative width cuts elements off instead, as PyTorch allows.  The gradient is
    the middle of g (the added elements came from no input; the cut ones get zero)."""

    def __init__(self, widths, value=0.0):
        self.widths, self.value = widths, value

    def forward(self, x):
        xp = get_array_module(x)
        self.in_shape = x.shape
        grow = [(max(lo, 0), max(hi, 0)) for lo, hi in self.widths]
        z = xp.pad(x, grow, mode="constant", constant_values=self.value)
        return z[_cut(self.widths, z.shape, sign=-1)]

    def backward(self, g):
        xp = get_array_module(g)
        g = xp.pad(g, [(max(-lo, 0), max(-hi, 0)) for lo, hi in self.widths])
        return (g[_cut(self.widths, g.shape, sign=1)],)


def _cut(widths, shape, sign):
    """Slices removing ``sign * width`` elements at each end where that is positive."""
    return tuple(slice(max(sign * lo, 0), n - max(sign * hi, 0))
                 for (lo, hi), n in zip(widths, shape))
