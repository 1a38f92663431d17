"""Tensor methods that pick, move and copy elements: PyTorch's indexing family (gather,
scatter, index_select, masked_select, nonzero, diagonal, take_along_dim) and its movement
family (flip, roll, repeat, unflatten, unfold, narrow).

``Tensor`` inherits them from ``ShapeMethods``.  Most are composites: an index array built
with plain integer arithmetic, then ``x[index]`` (``ops.GetItem``), whose backward already
adds every gradient back where its element came from.  Flipping is indexing with a reversed
range, rolling with a shifted one, sliding windows with a 2-D one.  Gather and the scatters
are primitives of their own (``ops/indexing.py``).
"""
from __future__ import annotations

import numpy as np

from . import ops


def _axis(op, dim, ndim):
    return ops.normalize_dims(op, dim, ndim)[0]


class ShapeMethods:
    def _index_array(self, op, index):
        """``index`` (a tensor, list or array of integers) as an array on this device."""
        if not isinstance(index, ShapeMethods):        # a list or an array, not a tensor
            index = self._from_op(self.xp.asarray(index))
        if index.device != self.device:
            raise RuntimeError(f"{op}: the index is on {index.device} but the tensor on "
                               f"{self.device}")
        if index.dtype.kind not in "iu":
            raise TypeError(f"{op}: the index must hold integers, not {index.dtype}")
        return index.data

    # --- picking elements -----------------------------------------------------------------
    def gather(self, dim, index):
        """out[i][j][k] = self[i][index[i][j][k]][k] for dim 1 (index: same number of dims)."""
        return ops.Gather.apply(self, dim=_axis("gather", dim, self.ndim),
                                index=self._index_array("gather", index))

    def take_along_dim(self, indices, dim=None):
        """``gather`` whose index broadcasts against the tensor outside ``dim``; with no dim,
        indices into the flattened tensor."""
        index = self._from_op(self._index_array("take_along_dim", indices))
        if dim is None:
            return self.flatten().gather(0, index.flatten())
        dim = _axis("take_along_dim", dim, self.ndim)
        if index.ndim != self.ndim:
            raise ValueError(f"take_along_dim: indices of shape {index.shape} and a tensor of "
                             f"shape {self.shape} must have the same number of dims")
        shape = np.broadcast_shapes(*[tuple(1 if i == dim else n for i, n in enumerate(s))
                                      for s in (self.shape, index.shape)])
        def grown(t):
            return t.expand(tuple(t.shape[i] if i == dim else n for i, n in enumerate(shape)))
        return grown(self).gather(dim, grown(index))

    def index_select(self, dim, index):
        """The slices at ``index`` (1-D) along ``dim``, in that order."""
        dim = _axis("index_select", dim, self.ndim)
        index = self._index_array("index_select", index)
        if index.ndim > 1:
            raise ValueError(f"index_select: the index must be 1-D, got shape {index.shape}")
        return ops.GetItem.apply(self, index=(slice(None),) * dim + (index.reshape(-1),))

    def masked_select(self, mask):
        """The elements where ``mask`` (broadcast with the tensor) is True, as a 1-D tensor."""
        mask = self._operand(mask)
        if mask.dtype.kind != "b":
            raise TypeError(f"masked_select: the mask must be boolean, not {mask.dtype}")
        shape = np.broadcast_shapes(self.shape, mask.shape)
        return ops.GetItem.apply(self.expand(shape), index=mask.expand(shape).data)

    def nonzero(self, as_tuple=False):
        """The indices of the non-zero elements: an (n, ndim) int64 tensor, or with
        ``as_tuple`` one 1-D tensor per dim (what ``x[x.nonzero(as_tuple=True)]`` takes)."""
        found = self.xp.nonzero(self.data if self.ndim else self.data.reshape(1))
        if as_tuple:
            return tuple(self._from_op(i.astype(np.int64)) for i in found)
        return self._from_op(self.xp.stack(found, axis=-1).astype(np.int64)
                             .reshape(-1, self.ndim))

    def diagonal(self, offset=0, dim1=0, dim2=1):
        """The elements (i, i + offset) of the planes (dim1, dim2), as a new last axis."""
        d1, d2 = _axis("diagonal", dim1, self.ndim), _axis("diagonal", dim2, self.ndim)
        if d1 == d2:
            raise ValueError(f"diagonal: dim1 and dim2 are the same dim ({dim1})")
        rest = [d for d in range(self.ndim) if d not in (d1, d2)]
        planes = self.permute(rest + [d1, d2])                 # (..., n, m)
        n, m = planes.shape[-2:]
        length = max(0, min(n, m - offset) if offset >= 0 else min(n + offset, m))
        rows = self.xp.arange(length) + max(-offset, 0)
        return ops.GetItem.apply(planes, index=(Ellipsis, rows, rows + offset))

    def diag(self, diagonal=0):
        """A 1-D tensor becomes a square matrix with it on diagonal ``diagonal`` (0 the main,
        > 0 above, < 0 below); a matrix gives that diagonal as a 1-D tensor."""
        if self.ndim == 2:
            return self.diagonal(diagonal)
        if self.ndim != 1:
            raise ValueError(f"diag: expects a 1-D or 2-D tensor, got shape {self.shape}")
        k = abs(diagonal)
        n = self.shape[0] + k
        padded = ops.Pad.apply(self, widths=((0, k),))           # (n,)
        mask = self._from_op(self.xp.eye(n, k=diagonal, dtype=bool))
        # Above the main diagonal, row i holds v[i]; below it, column j holds v[j].
        spread = padded.unsqueeze(1 if diagonal >= 0 else 0).expand(n, n)
        return ops.Where.apply(spread, self._zero(), cond=mask.data)

    # --- gradients flow into both self and src ---------------------------------------------
    def scatter(self, dim, index, src=None, *, value=None, reduce=None):
        """A copy with ``src[i][j][k]`` written at ``[i][index[i][j][k]][k]`` (dim 1); ``value``
        writes one number instead.  ``reduce`` ("add", "multiply") is PyTorch's older
        spelling of ``scatter_reduce``."""
        if (src is None) == (value is None):
            raise TypeError("scatter: give exactly one of src and value")
        index = self._index_array("scatter", index)
        src = self._operand(value).expand(index.shape) if src is None else self._operand(src)
        dim = _axis("scatter", dim, self.ndim)
        if reduce is not None:
            names = {"add": "sum", "multiply": "prod"}
            if reduce not in names:
                raise ValueError(f"scatter: reduce must be 'add' or 'multiply', not {reduce!r}")
            return ops.ScatterReduce.apply(self, src, dim=dim, index=index,
                                           reduce=names[reduce])
        return ops.Scatter.apply(self, src, dim=dim, index=index)

    def scatter_add(self, dim, index, src):
        """A copy with ``src[i][j][k]`` added at ``[i][index[i][j][k]][k]`` (dim 1); repeated
        indices add up."""
        return self.scatter_reduce(dim, index, src, "sum")

    def scatter_reduce(self, dim, index, src, reduce, *, include_self=True):
        """``src`` reduced into a copy along ``dim`` with "sum", "prod", "mean", "amax" or
        "amin"; ``include_self=False`` leaves out the values already at the positions that
        receive something."""
        return ops.ScatterReduce.apply(self, self._operand(src),
                                       dim=_axis("scatter_reduce", dim, self.ndim),
                                       index=self._index_array("scatter_reduce", index),
                                       reduce=reduce, include_self=include_self)

    # --- moving and copying elements ------------------------------------------------------
    def flip(self, *dims):
        """The order of the elements reversed along ``dims``."""
        axes = ops.normalize_dims("flip", tuple(_flat(dims)), self.ndim)
        return self[tuple(slice(None, None, -1) if d in axes else slice(None)
                          for d in range(self.ndim))]

    def roll(self, shifts, dims=None):
        """Elements shifted by ``shifts`` along ``dims``; those pushed off the end come back
        at the start.  Without dims, the flattened tensor is rolled."""
        if dims is None:
            return self.flatten().roll(shifts, 0).reshape(self.shape)
        shifts = (shifts,) if isinstance(shifts, int) else tuple(shifts)
        dims = (dims,) if isinstance(dims, int) else tuple(dims)
        if len(shifts) != len(dims):
            raise ValueError(f"roll: {len(shifts)} shifts for {len(dims)} dims")
        out = self
        for shift, dim in zip(shifts, dims):
            n = self.shape[_axis("roll", dim, self.ndim)]
            out = out.index_select(dim, (self.xp.arange(n) - shift) % max(n, 1))
        return out

    def repeat(self, *sizes):
        """The whole tensor tiled ``sizes[i]`` times along dim i: [a, b] * 2 -> [a, b, a, b].
        Extra leading sizes add dims.  (Element by element is ``repeat_interleave``.)"""
        sizes = tuple(_flat(sizes))
        if len(sizes) < self.ndim:
            raise ValueError(f"repeat: {len(sizes)} sizes for a tensor with {self.ndim} dims")
        shape = (1,) * (len(sizes) - self.ndim) + self.shape
        # Put a size-1 axis before each axis, expand it to the count, and merge the pairs.
        paired = self.reshape([v for n in shape for v in (1, n)])
        tiled = paired.expand([v for r, n in zip(sizes, shape) for v in (r, n)])
        return tiled.reshape([r * n for r, n in zip(sizes, shape)])

    def unflatten(self, dim, sizes):
        """Dim ``dim`` split into several of ``sizes`` (one may be -1)."""
        dim = _axis("unflatten", dim, self.ndim)
        return self.reshape(self.shape[:dim] + tuple(sizes) + self.shape[dim + 1:])

    def unfold(self, dimension, size, step):
        """Every window of ``size`` elements along ``dimension``, ``step`` apart, as a new
        last axis: (..., n, ...) -> (..., (n - size) // step + 1, ..., size)."""
        dim = _axis("unfold", dimension, self.ndim)
        n = self.shape[dim] if self.ndim else 1
        if not 0 < size <= n or step < 1:
            raise ValueError(f"unfold: windows of size {size}, step {step} do not fit dim "
                             f"{dimension} of size {n}")
        if self.ndim == 0:                  # PyTorch: the one window of a 0-d tensor
            return self.reshape(1)
        xp = self.xp
        windows = xp.arange(0, n - size + 1, step)[:, None] + xp.arange(size)  # (count, size)
        picked = ops.GetItem.apply(self, index=(slice(None),) * dim + (windows,))
        return picked.movedim(dim + 1, -1)

    def narrow(self, dim, start, length):
        """``length`` elements of dim ``dim`` from ``start``."""
        dim = _axis("narrow", dim, self.ndim)
        start = start + self.shape[dim] if start < 0 else start
        if not 0 <= start <= start + length <= self.shape[dim]:
            raise IndexError(f"narrow: [{start}, {start + length}) is outside dim {dim} of "
                             f"size {self.shape[dim]}")
        return self[(slice(None),) * dim + (slice(start, start + length),)]


def _flat(args):
    """``f(0, 1)`` and ``f((0, 1))`` alike."""
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        return list(args[0])
    return list(args)
