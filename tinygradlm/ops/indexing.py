"""Indexing: picking elements by position (``x[index]``), by condition (``where``), and
its relatives."""
from __future__ import annotations

import math

import numpy as np

from .. import backend
from ..backend import get_array_module
from ..autograd import Function, SliceGrad


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
    Backward with ints and slices returns a ``SliceGrad``: the engine adds it into the input's
    gradient at ``index`` (the pieces of a split share one buffer).  With integer arrays it
    scatters into zeros, where a repeated index receives the sum of its gradients
    (``add.at``), which plain ``z[index] += g`` would get wrong."""

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
        if not _is_advanced(self.index):    # a slice: the engine adds it in where it belongs
            return (SliceGrad(self.index, g),)
        xp = get_array_module(g)
        gx = xp.zeros(self.in_shape, dtype=g.dtype)
        index = self.index
        if xp is np and isinstance(index, np.ndarray) and index.dtype.kind in "iu":
            add_rows(gx, index, g)          # x[ids], an embedding's lookup: rows of x
        else:
            xp.add.at(gx, index, g)
        return (gx,)


def add_rows(out, ids, g):
    """``out[ids[k]] += g[k]`` for every k, a repeated id receiving the sum (``np.add.at``'s
    result, 3-4x faster): sort the ids so that each distinct one's gradients sit together,
    sum each run with one ``reduceat``, then add every distinct row once."""
    ids = ids.reshape(-1)
    if ids.size == 0:
        return
    ids = np.where(ids < 0, ids + out.shape[0], ids)
    width = math.prod(out.shape[1:])
    rows = g.reshape(ids.size, width)                       # (N, the rest of a row)
    order = np.argsort(ids, kind="stable")
    ids = ids[order]
    starts = np.flatnonzero(np.concatenate(([True], ids[1:] != ids[:-1])))
    out.reshape(out.shape[0], width)[ids[starts]] += np.add.reduceat(rows[order], starts, axis=0)


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


# --- gather and scatter: indices along one dim ----------------------------------------------
def along(index, dim):
    """The full index that reads "``index`` along ``dim``, the element's own position along
    every other axis": ``x[along(index, 1)][i, j, k] == x[i, index[i, j, k], k]``."""
    xp = get_array_module(index)
    parts = []
    for axis, n in enumerate(index.shape):
        if axis == dim:
            parts.append(index)
        else:
            shape = [1] * index.ndim
            shape[axis] = n
            parts.append(xp.arange(n).reshape(shape))
    return tuple(parts)


def reduce_into(name, z, index, dim, src):
    """z[along(index, dim)] (op)= src in place, repeated positions combined, for the ufunc
    ``name`` ("add", "multiply", "maximum", "minimum").  NumPy's ``ufunc.at`` does it in one
    call (CuPy's for add); otherwise one slice of the index along ``dim`` at a time -- within
    a slice no two elements land on the same position, so plain indexing is safe."""
    xp = get_array_module(z)
    op = getattr(xp, name)
    if xp is np or name == "add":
        op.at(z, along(index, dim), src)
        return
    for j in range(index.shape[dim]):
        cut = (slice(None),) * dim + (slice(j, j + 1),)
        where = along(index[cut], dim)
        z[where] = op(z[where], src[cut])


def check_index(op, index, x, dim):
    """PyTorch's rules for gather/scatter indices: integers, one per axis of x, no larger
    than x along the other axes, and in [0, size) along ``dim`` (no negative indices)."""
    if index.dtype.kind not in "iu":
        raise TypeError(f"{op}: index must be an integer tensor, got {index.dtype}")
    if index.ndim != x.ndim:
        raise ValueError(f"{op}: index has {index.ndim} dims but the tensor has {x.ndim} "
                         f"(shapes {tuple(index.shape)} and {tuple(x.shape)})")
    if any(i > n for axis, (i, n) in enumerate(zip(index.shape, x.shape)) if axis != dim):
        raise ValueError(f"{op}: index of shape {tuple(index.shape)} is larger than the "
                         f"tensor of shape {tuple(x.shape)} outside dim {dim}")
    if index.size and (int(index.min()) < 0 or int(index.max()) >= x.shape[dim]):
        bad = int(index.min()) if int(index.min()) < 0 else int(index.max())
        raise IndexError(f"{op}: index {bad} is out of bounds for dim {dim} with size "
                         f"{x.shape[dim]}")


class Gather(Function):
    """z[i, j, k] = x[i, index[i, j, k], k] (for dim 1).  Backward adds each gradient back
    where its element came from; an index used twice collects both (``add.at``)."""

    def __init__(self, dim, index):
        self.dim, self.index = dim, index

    def forward(self, x):
        check_index("gather", self.index, x, self.dim)
        self.in_shape = x.shape
        self.where = along(self.index, self.dim)
        return x[self.where]

    def backward(self, g):
        xp = get_array_module(g)
        gx = xp.zeros(self.in_shape, dtype=g.dtype)
        xp.add.at(gx, self.where, g)
        return (gx,)


class Scatter(Function):
    """z = x, then z[i, index[i, j, k], k] = src[i, j, k] (for dim 1).  An overwritten
    element of x gets no gradient; each element of src gets the gradient of where it landed.
    (With a repeated index, which src element wins is unspecified -- in PyTorch too.)"""

    def __init__(self, dim, index):
        self.dim, self.index = dim, index

    def forward(self, x, src):
        check_index("scatter", self.index, x, self.dim)
        self.where = along(self.index, self.dim)
        z = x.copy()
        z[self.where] = src[tuple(slice(0, n) for n in self.index.shape)]
        self.src_shape = src.shape
        return z

    def backward(self, g):
        xp = get_array_module(g)
        gx = None
        if self.needs_input_grad[0]:
            gx = g.copy()
            gx[self.where] = 0
        gsrc = None
        if self.needs_input_grad[1]:
            gsrc = xp.zeros(self.src_shape, dtype=g.dtype)
            gsrc[tuple(slice(0, n) for n in self.index.shape)] = g[self.where]
        return gx, gsrc


class ScatterReduce(Function):
    """z = x with src reduced into it: z[i, index[i, j, k], k] (op)= src[i, j, k] for dim 1,
    op one of "sum", "prod", "mean", "amax", "amin".  ``include_self=False`` leaves x's own
    value out of the positions that receive something.  Gradients as PyTorch's: "amax" and
    "amin" share it evenly among the elements equal to the result; "prod" gives each member
    the product of the others (exact with zeros)."""

    ufuncs = {"sum": "add", "prod": "multiply", "mean": "add", "amax": "maximum",
              "amin": "minimum"}

    def __init__(self, dim, index, reduce, include_self=True):
        if reduce not in self.ufuncs:
            raise ValueError(f"scatter_reduce: reduce must be one of {sorted(self.ufuncs)}, "
                             f"not {reduce!r}")
        self.dim, self.index, self.reduce, self.include_self = dim, index, reduce, include_self

    def forward(self, x, src):
        check_index("scatter_reduce", self.index, x, self.dim)
        xp = get_array_module(x)
        self.where = along(self.index, self.dim)
        self.src_shape = src.shape
        src = src[tuple(slice(0, n) for n in self.index.shape)]      # PyTorch: the corner used
        touched = xp.zeros(x.shape, dtype=bool)
        touched[self.where] = True
        count = xp.zeros(x.shape, dtype=x.dtype)            # members of each position
        xp.add.at(count, self.where, 1)
        z = x.copy()
        if not self.include_self:                   # start from the reduction's identity
            z[touched] = self.identity(x.dtype)
        reduce_into(self.ufuncs[self.reduce], z, self.index, self.dim, src)
        self_in = ~touched | self.include_self        # where x itself is a member
        count = count + self_in
        if self.reduce == "mean":
            z = z / count if x.dtype.kind == "f" else z // count
        self.save_for_backward(x, src, z, count, self_in)
        return z

    def backward(self, g):
        x, src, z, count, self_in = self.saved
        xp = get_array_module(g)
        if self.reduce == "sum":
            gx, share = g * self_in, g
        elif self.reduce == "mean":
            gx, share = g * self_in / count, g / count
        elif self.reduce in ("amax", "amin"):
            ties = (x == z) & self_in                          # members equal to the result
            n_ties = ties.astype(g.dtype)
            xp.add.at(n_ties, self.where, (src == z[self.where]).astype(g.dtype))
            gsrc = (g / n_ties)[self.where] * (src == z[self.where])
            return g * ties / n_ties, self._src_grad(gsrc, xp)
        else:                                                   # prod
            zeros = (x == 0) & self_in
            n_zeros = zeros.astype(g.dtype)
            xp.add.at(n_zeros, self.where, (src == 0).astype(g.dtype))
            rest = xp.where(self_in & ~zeros, x, 1).astype(g.dtype)   # product of non-zeros
            reduce_into("multiply", rest, self.index, self.dim, xp.where(src == 0, 1, src))

            def others(value, n, r):       # product of the members other than ``value``
                return xp.where(n == 0, r / xp.where(value == 0, 1, value),
                                xp.where((n == 1) & (value == 0), r, 0))
            gx = g * self_in * others(x, n_zeros, rest)
            gsrc = g[self.where] * others(src, n_zeros[self.where], rest[self.where])
            return gx, self._src_grad(gsrc, xp)
        return gx, self._src_grad(share[self.where], xp)

    def identity(self, dtype):
        if self.reduce in ("sum", "mean", "prod"):
            return int(self.reduce == "prod")
        low, high = ((-np.inf, np.inf) if dtype.kind == "f" else
                     (np.iinfo(dtype).min, np.iinfo(dtype).max) if dtype.kind in "iu" else (0, 1))
        return low if self.reduce == "amax" else high

    def _src_grad(self, g_members, xp):
        gsrc = xp.zeros(self.src_shape, dtype=g_members.dtype)
        gsrc[tuple(slice(0, n) for n in self.index.shape)] = g_members
        return gsrc
