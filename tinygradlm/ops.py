"""Primitive differentiable ops: one class per op, forward and backward side by side.

Every ``forward`` and ``backward`` works on raw backend arrays (NumPy or CuPy); ``xp`` is the
array module of the data at hand, so the same code runs on both devices.  Broadcasting is never
undone here: ``Function.apply`` records the inputs and the engine sums every gradient back to
its input's shape with ``reduce_to_shape``.  Shapes in comments use ``(...)`` for any shape.
"""
from __future__ import annotations

import numpy as np

from . import backend
from .backend import get_array_module
from .autograd import Function


# --- elementwise, two inputs (broadcasting) -----------------------------------------------
class Add(Function):
    """z = x + y"""
    broadcasts = True

    def forward(self, x, y):
        return x + y

    def backward(self, g):
        return g, g


class Sub(Function):
    """z = x - y"""
    broadcasts = True

    def forward(self, x, y):
        return x - y

    def backward(self, g):
        return g, -g


class Mul(Function):
    """z = x * y"""
    broadcasts = True

    def forward(self, x, y):
        self.save_for_backward(x, y)
        return x * y

    def backward(self, g):
        x, y = self.saved
        gx = g * y if self.needs_input_grad[0] else None
        gy = g * x if self.needs_input_grad[1] else None
        return gx, gy


class Div(Function):
    """z = x / y;  dz/dy = -x / y**2 = -z / y"""
    broadcasts = True

    def forward(self, x, y):
        z = x / y
        self.save_for_backward(y, z)
        return z

    def backward(self, g):
        y, z = self.saved
        gx = g / y if self.needs_input_grad[0] else None
        gy = -g * z / y if self.needs_input_grad[1] else None
        return gx, gy


class Pow(Function):
    """z = x ** y;  dz/dx = y * x**(y-1),  dz/dy = z * log(x)  (only needed for x > 0)"""
    broadcasts = True

    def forward(self, x, y):
        z = x ** y
        self.save_for_backward(x, y, z)
        return z

    def backward(self, g):
        x, y, z = self.saved
        xp = get_array_module(g)
        gx = g * y * x ** (y - 1) if self.needs_input_grad[0] else None
        gy = None
        if self.needs_input_grad[1]:
            with np.errstate(divide="ignore", invalid="ignore"):
                gy = g * z * xp.log(x)
        return gx, gy


# --- elementwise, one input -------------------------------------------------------------
class Neg(Function):
    """z = -x"""

    def forward(self, x):
        return -x

    def backward(self, g):
        return (-g,)


class Exp(Function):
    """z = e**x;  dz/dx = z"""

    def forward(self, x):
        z = get_array_module(x).exp(x)
        self.save_for_backward(z)
        return z

    def backward(self, g):
        (z,) = self.saved
        return (g * z,)


class Log(Function):
    """z = ln(x);  dz/dx = 1/x"""

    def forward(self, x):
        self.save_for_backward(x)
        return get_array_module(x).log(x)

    def backward(self, g):
        (x,) = self.saved
        return (g / x,)


class Sqrt(Function):
    """z = sqrt(x);  dz/dx = 1 / (2 z)"""

    def forward(self, x):
        z = get_array_module(x).sqrt(x)
        self.save_for_backward(z)
        return z

    def backward(self, g):
        (z,) = self.saved
        return (g / (2 * z),)


class Tanh(Function):
    """z = tanh(x);  dz/dx = 1 - z**2"""

    def forward(self, x):
        z = get_array_module(x).tanh(x)
        self.save_for_backward(z)
        return z

    def backward(self, g):
        (z,) = self.saved
        return (g * (1 - z * z),)


class Sigmoid(Function):
    """z = 1 / (1 + e**-x);  dz/dx = z (1 - z)"""

    def forward(self, x):
        xp = get_array_module(x)
        z = xp.exp(-xp.logaddexp(0, -x))      # never overflows, unlike 1 / (1 + exp(-x))
        self.save_for_backward(z)
        return z

    def backward(self, g):
        (z,) = self.saved
        return (g * z * (1 - z),)


class ReLU(Function):
    """z = max(x, 0);  dz/dx = 1 where x > 0 else 0"""

    def forward(self, x):
        self.save_for_backward(x > 0)
        return get_array_module(x).maximum(x, 0)

    def backward(self, g):
        (positive,) = self.saved
        return (g * positive,)


class Abs(Function):
    """z = |x|;  dz/dx = sign(x)"""

    def forward(self, x):
        xp = get_array_module(x)
        self.save_for_backward(xp.sign(x))
        return xp.abs(x)

    def backward(self, g):
        (sign,) = self.saved
        return (g * sign,)


class Clip(Function):
    """z = min(max(x, low), high);  dz/dx = 1 inside [low, high], 0 where clipped"""

    def __init__(self, low=None, high=None):
        self.low, self.high = low, high

    def forward(self, x):
        xp = get_array_module(x)
        inside = xp.ones(x.shape, dtype=bool)
        if self.low is not None:
            inside &= x >= self.low
        if self.high is not None:
            inside &= x <= self.high
        self.save_for_backward(inside)
        return xp.clip(x, self.low, self.high)

    def backward(self, g):
        (inside,) = self.saved
        return (g * inside,)


class Erf(Function):
    """z = erf(x);  dz/dx = 2/sqrt(pi) * e**(-x**2)"""

    def forward(self, x):
        self.save_for_backward(x)
        return backend.erf(x)

    def backward(self, g):
        (x,) = self.saved
        xp = get_array_module(x)
        return (g * (2 / np.sqrt(np.pi)) * xp.exp(-x * x),)


class Cast(Function):
    """z = x converted to another dtype; the gradient converts back"""

    def __init__(self, dtype):
        self.dtype = dtype

    def forward(self, x):
        self.in_dtype = x.dtype
        return x.astype(self.dtype)

    def backward(self, g):
        return (g.astype(self.in_dtype),)


class ToDevice(Function):
    """z = x copied to another device; the gradient is copied back"""

    def __init__(self, device):
        self.device = device

    def forward(self, x):
        self.in_device = backend.device_of(x)
        return backend.to_device(x, self.device)

    def backward(self, g):
        return (backend.to_device(g, self.in_device),)


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
        out.append(d % ndim if ndim else 0)
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

    def forward(self, x):
        if x.size == 0:
            raise ValueError(f"max: cannot take the max of an empty tensor of shape {x.shape}")
        self.dims = normalize_dims("max", self.dim, x.ndim)
        z = x.max(axis=self.dims, keepdims=True)
        is_max = x == z
        self.save_for_backward(is_max, is_max.sum(axis=self.dims, keepdims=True))
        self.in_shape = x.shape
        return z if self.keepdim else z.reshape([n for i, n in enumerate(x.shape)
                                                  if i not in self.dims])

    def backward(self, g):
        is_max, count = self.saved
        g = _unsqueeze_reduced(g, self.in_shape, self.dims)
        return (g * is_max / count.astype(g.dtype),)


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


def _is_advanced(index) -> bool:
    """Does the index use integer/boolean arrays (numpy "advanced" indexing)?  (Lists are
    arrays by then: ``_index_on_device`` converted them in forward.)"""
    parts = index if isinstance(index, tuple) else (index,)
    return any(hasattr(p, "shape") and p.ndim > 0 for p in parts)


def _index_on_device(index, x, check_bounds=True):
    """``index`` with its arrays and lists on x's device, integer arrays checked against the
    axis they index (CuPy, unlike NumPy, does not raise for an out-of-range array index)."""
    xp = get_array_module(x)
    device = backend.device_of(x)
    parts = index if isinstance(index, tuple) else (index,)
    # Arrays (0-d too) and lists become arrays on x's device before the axes are counted.
    parts = [backend.to_device(p, device) if hasattr(p, "shape")
             else xp.asarray(p) if isinstance(p, list) else p for p in parts]

    def axes_used(p):               # how many of x's axes an index part consumes
        if p is None or isinstance(p, bool):
            return 0                # None adds an axis; a bare True/False is a 0-d mask
        if hasattr(p, "dtype") and p.dtype == bool:
            return p.ndim
        return 1

    if check_bounds:
        explicit = sum(axes_used(p) for p in parts if p is not Ellipsis)
        axis = 0
        for p in parts:
            if p is Ellipsis:
                axis += x.ndim - explicit
                continue
            if hasattr(p, "dtype") and p.dtype.kind in "iu" and p.size and axis < x.ndim:
                n, lo, hi = x.shape[axis], int(p.min()), int(p.max())
                if hi >= n or lo < -n:
                    raise IndexError(f"index {hi if hi >= n else lo} is out of bounds for "
                                     f"axis {axis} with size {n}")
            axis += axes_used(p)
    return tuple(parts) if isinstance(index, tuple) else parts[0]


class GetItem(Function):
    """z = x[index] for ints, slices, None, ``...`` and integer/boolean arrays.
    Backward scatters the gradient into zeros; with integer arrays a repeated index receives
    the sum of its gradients (``add.at``), which plain ``z[index] += g`` would get wrong."""

    def __init__(self, index, check_bounds=True):
        self.index, self.check_bounds = index, check_bounds

    def forward(self, x):
        self.in_shape, self.in_dtype = x.shape, x.dtype
        try:
            self.index = _index_on_device(self.index, x, self.check_bounds)
            return x[self.index]
        except IndexError as exc:
            raise IndexError(f"index: {exc} (tensor shape {tuple(x.shape)})") from None

    def backward(self, g):
        xp = get_array_module(g)
        gx = xp.zeros(self.in_shape, dtype=g.dtype)
        if _is_advanced(self.index):
            xp.add.at(gx, self.index, g)
        else:
            gx[self.index] = g
        return (gx,)


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


class Where(Function):
    """z = x where cond else y (``cond`` is a boolean array, not differentiated)"""
    broadcasts = True

    def __init__(self, cond):
        self.cond = cond

    def forward(self, x, y):
        return get_array_module(x).where(self.cond, x, y)

    def backward(self, g):
        xp = get_array_module(g)
        zero = xp.zeros((), dtype=g.dtype)
        gx = xp.where(self.cond, g, zero) if self.needs_input_grad[0] else None
        gy = xp.where(self.cond, zero, g) if self.needs_input_grad[1] else None
        return gx, gy


# --- linear algebra ---------------------------------------------------------------------
class MatMul(Function):
    """z = a @ b for a (..., n, k) and b (..., k, m), batch axes broadcast.

    dL/da = g @ b^T and dL/db = a^T @ g, where ^T swaps the *last two* axes (never ``.T``,
    which would reverse the batch axes too); broadcast batch axes are summed by the engine.
    """

    def forward(self, a, b):
        if a.ndim < 2 or b.ndim < 2:
            raise ValueError("MatMul works on >= 2-D arrays; Tensor.matmul handles 1-D operands")
        if a.shape[-1] != b.shape[-2]:
            raise ValueError(f"matmul: shapes {tuple(a.shape)} and {tuple(b.shape)} are not "
                             f"aligned: the left has {a.shape[-1]} columns but the right has "
                             f"{b.shape[-2]} rows")
        try:
            np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        except ValueError:
            raise ValueError(f"matmul: batch dimensions of {tuple(a.shape)} and "
                             f"{tuple(b.shape)} cannot be broadcast together") from None
        self.save_for_backward(a, b)
        if b.ndim == 2 and a.ndim > 2:
            # x @ W in a Linear: one (B*T, k) @ (k, m) product is faster than B products.
            return (a.reshape(-1, a.shape[-1]) @ b).reshape(*a.shape[:-1], b.shape[-1])
        return a @ b

    def backward(self, g):
        a, b = self.saved
        ga = None
        if self.needs_input_grad[0]:
            if b.ndim == 2 and g.ndim > 2:
                ga = (g.reshape(-1, g.shape[-1]) @ b.T).reshape(*g.shape[:-1], b.shape[0])
            else:
                ga = g @ b.swapaxes(-1, -2)
        gb = None
        if self.needs_input_grad[1]:
            if b.ndim == 2 and a.ndim > 2:
                # A shared weight (x @ W in a Linear): fold the batch axes into one product
                # instead of a batch of products that the engine would then sum.
                gb = a.reshape(-1, a.shape[-1]).T @ g.reshape(-1, g.shape[-1])
            else:
                gb = a.swapaxes(-1, -2) @ g
        return ga, gb
