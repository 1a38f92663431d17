"""Fused layer normalisation over the last axis: one kernel forward, one kernel backward.

The math (the reference is ``functional.layer_norm``), per row of C numbers, as PyTorch
(biased variance, eps inside the square root)::

    mean = sum(x) / C,   var = sum((x - mean)^2) / C,   rstd = 1 / sqrt(var + eps)
    xhat = (x - mean) rstd,   y = xhat w + b

and backward, with gw = dy w::

    dx = rstd (gw - mean(gw) - xhat mean(gw xhat))
    dw = sum over rows of dy xhat,   db = sum over rows of dy

The composite is ~10 ops (mean, subtract, square, mean, add, sqrt, divide, multiply, add) and
their backwards.  Forward here saves only each row's mean and rstd (x is kept alive by the
graph anyway, as the input of the residual add); backward recomputes xhat from them, which
costs a subtraction and a multiply per element but no (N, C) array per LayerNorm (13 of them
in a 6-layer GPT).  Rows run in parallel.  For dw and db,
each thread sums its own block of rows into its own row of a (blocks, C) buffer, and NumPy
adds the few blocks afterwards: no two threads ever write the same element.

Fast-math is only "reassoc" (so that LLVM vectorises the row sums), not ``jit.FASTMATH``.
No "arcp": ``sum / C`` must stay a true division, so that a row of equal, exactly
representable values has mean equal to them and xhat exactly 0, as in the reference.  No
"contract": a fused multiply-add in ``g w - mean(g w)`` would leave the rounding error of g w,
times a large rstd, where the reference gets exactly 0 (a row of one element, a constant row).
"""
from __future__ import annotations

import numba
import numpy as np
from numba import prange

from ..autograd import Function
from .jit import parallel_kernel


@parallel_kernel(fastmath={"reassoc"})
def layer_norm_forward(x, w, b, eps, y, mean, rstd):
    # x, y: (N, C) C-contiguous; w, b: (C,); mean, rstd: (N,).
    N, C = x.shape
    zero, one, n, eps_ = (x.dtype.type(0), x.dtype.type(1), x.dtype.type(C),
                          x.dtype.type(eps))
    for i in prange(N):
        s = zero
        for j in range(C):
            s += x[i, j]
        mu = s / n
        v = zero
        for j in range(C):
            d = x[i, j] - mu
            v += d * d
        r = one / np.sqrt(v / n + eps_)
        mean[i] = mu
        rstd[i] = r
        for j in range(C):
            y[i, j] = (x[i, j] - mu) * r * w[j] + b[j]


@parallel_kernel(fastmath={"reassoc"})
def layer_norm_backward(g, x, mean, rstd, w, dx, dw_part, db_part):
    # g, x, dx: (N, C); mean, rstd: (N,); w: (C,); dw_part, db_part: (blocks, C), zeroed.
    N, C = g.shape
    zero, n = g.dtype.type(0), g.dtype.type(C)
    blocks = dw_part.shape[0]
    for blk in prange(blocks):
        lo = blk * N // blocks
        hi = (blk + 1) * N // blocks
        for i in range(lo, hi):
            mu, r = mean[i], rstd[i]
            a = zero                    # sum(gw)
            c = zero                    # sum(gw * xhat)
            for j in range(C):
                h = (x[i, j] - mu) * r  # xhat, recomputed as forward computed it
                gw = g[i, j] * w[j]
                a += gw
                c += gw * h
                dw_part[blk, j] += g[i, j] * h
                db_part[blk, j] += g[i, j]
            a = a / n
            c = c / n
            for j in range(C):
                dx[i, j] = r * (g[i, j] * w[j] - a - (x[i, j] - mu) * r * c)


class LayerNorm(Function):
    """y = layer_norm(x) over the last axis, times ``weight`` plus ``bias`` when given.

    ``apply(x[, weight][, bias], eps=, has_weight=, has_bias=)``: only the tensors that are
    there are inputs, and backward returns one gradient for each."""

    def __init__(self, eps=1e-5, has_weight=False, has_bias=False):
        self.eps, self.has_weight, self.has_bias = eps, has_weight, has_bias

    def forward(self, x, *wb):
        C = x.shape[-1]
        rows = np.ascontiguousarray(x.reshape(-1, C))
        wb = [np.ascontiguousarray(a, dtype=rows.dtype).reshape(C) for a in wb]
        w = wb.pop(0) if self.has_weight else np.ones(C, rows.dtype)
        b = wb.pop(0) if self.has_bias else np.zeros(C, rows.dtype)
        y = np.empty_like(rows)
        mean, rstd = np.empty(rows.shape[0], rows.dtype), np.empty(rows.shape[0], rows.dtype)
        if rows.size:
            layer_norm_forward(rows, w, b, float(self.eps), y, mean, rstd)
        self.shape = x.shape
        self.save_for_backward(rows, mean, rstd, w)
        return y.reshape(x.shape)

    def backward(self, g):
        rows, mean, rstd, w = self.saved
        N, C = rows.shape
        g = np.ascontiguousarray(g.reshape(N, C), dtype=rows.dtype)
        dx = np.empty_like(rows)
        blocks = max(1, min(N, numba.get_num_threads()))
        dw_part, db_part = np.zeros((blocks, C), rows.dtype), np.zeros((blocks, C), rows.dtype)
        if rows.size:
            layer_norm_backward(g, rows, mean, rstd, w, dx, dw_part, db_part)
        grads = [dx.reshape(self.shape)]
        if self.has_weight:
            grads.append(dw_part.sum(axis=0))
        if self.has_bias:
            grads.append(db_part.sum(axis=0))
        return tuple(grads)
