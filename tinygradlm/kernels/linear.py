"""A Linear layer as one op: y = x @ W + b (PyTorch's ``addmm``), forward and backward.

The reference (``functional.linear``) is two primitives, ``MatMul`` and ``Add``.  As one op:

* forward adds the bias into the product's own output array (``y += b``) instead of making
  a second (N, out) array for ``y + b``;
* backward sums the bias gradient over the rows itself (``g.sum(0)``) instead of the engine
  discovering the broadcast and reducing it (``autograd.reduce_to_shape``), and computes the
  weight gradient as one (in, N) @ (N, out) product over all the rows at once;
* the graph has one node per layer instead of two.

Written in array calls only (no Numba), so it runs on either backend::

    dx = g @ W^T,   dW = x^T g,   db = sum of g over every row
"""
from __future__ import annotations

import math

from ..autograd import Function


class Linear(Function):
    """``apply(x, weight[, bias])``: x (..., in), weight (in, out), bias (out,) -> (..., out)."""

    def forward(self, x, w, *bias):
        rows = x.reshape(math.prod(x.shape[:-1]), x.shape[-1])  # (N, in): leading axes as rows
        y = rows @ w                                      # (N, out)
        if bias:
            y += bias[0]
        self.x_shape = x.shape
        self.save_for_backward(rows, w)
        return y.reshape(*x.shape[:-1], w.shape[1])

    def backward(self, g):
        rows, w = self.saved
        g = g.reshape(rows.shape[0], w.shape[1])          # (N, out)
        need = self.needs_input_grad
        dx = (g @ w.T).reshape(self.x_shape) if need[0] else None
        dw = rows.T @ g if need[1] else None
        if len(need) == 2:
            return dx, dw
        return dx, dw, (g.sum(axis=0) if need[2] else None)
