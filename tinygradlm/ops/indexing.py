"""Indexing: picking elements by position (``x[index]``), by condition (``where``), and
its relatives."""
from __future__ import annotations

from .. import backend
from ..backend import get_array_module
from ..autograd import Function


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
