"""Fused softmax over the last axis: one pass per row forward, one pass per row backward.

Reference (what ``kernels.use("reference")`` runs, see ``functional.softmax``)::

    y = exp(x - max(x)) / sum(exp(x - max(x)))
    dx = y * (dy - sum(dy * y))

The composite makes ~6 passes over memory and keeps 4 temporaries alive for backward; the
fused kernel reads x once (three sweeps of a row that sits in cache) and saves only y.
"""
from __future__ import annotations

import numba
import numpy as np
from numba import prange

from ..backend import get_array_module
from ..function import Function
from . import by_size, gpu_kernels, serial_twin
from .fast_math import fast_exp

# Reassociation lets LLVM vectorise the row sums; no "no-infinities" flag, so huge logits
# and masked rows keep IEEE behaviour.
FASTMATH = {"reassoc", "contract", "arcp"}


@numba.njit(inline="always")
def row_max(x, i):
    """max(x[i, :]) in x's dtype (shared with the cross-entropy kernel)."""
    m = x[i, 0]
    for j in range(1, x.shape[1]):
        if x[i, j] > m:
            m = x[i, j]
    return m


@numba.njit(parallel=True, cache=True, fastmath=FASTMATH)
def softmax_forward_cpu(x, y):
    # x, y: (N, C) C-contiguous; rows in parallel.  Arithmetic stays in x's dtype: the
    # accumulators start from x's own elements, never from a float64 literal.
    N, C = x.shape
    for i in prange(N):
        m = row_max(x, i)
        s = m - m
        for j in range(C):
            e = fast_exp(x[i, j] - m)
            y[i, j] = e
            s += e
        inv = (s - s + 1) / s
        for j in range(C):
            y[i, j] *= inv


@numba.njit(parallel=True, cache=True, fastmath=FASTMATH)
def softmax_backward_cpu(y, dy, dx):
    # dx = y * (dy - sum(dy * y)) row by row.
    N, C = y.shape
    for i in prange(N):
        dot = y[i, 0] - y[i, 0]
        for j in range(C):
            dot += dy[i, j] * y[i, j]
        for j in range(C):
            dx[i, j] = y[i, j] * (dy[i, j] - dot)


# The same kernels on one thread, for inputs too small to repay waking the workers.
softmax_forward_serial = serial_twin(softmax_forward_cpu)
softmax_backward_serial = serial_twin(softmax_backward_cpu)


def softmax_reference(x):
    """Plain NumPy softmax over the last axis (the kernels are tested against this)."""
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


class Softmax(Function):
    """y = softmax(x) over the last axis, fused forward and backward (CPU: the Numba kernels
    above; GPU: their numba.cuda versions in ``cuda_kernels.py``)."""

    def forward(self, x):
        # x: (..., C) -> rows (N, C)
        xp = get_array_module(x)
        rows = xp.ascontiguousarray(x.reshape(-1, x.shape[-1]))
        y = xp.empty_like(rows)
        if rows.size:
            run = (by_size(softmax_forward_cpu, softmax_forward_serial, rows.size) if xp is np
                   else gpu_kernels().softmax_forward_cuda)
            run(rows, y)
        y = y.reshape(x.shape)
        self.save_for_backward(y)
        return y

    def backward(self, g):
        (y,) = self.saved
        xp = get_array_module(y)
        C = y.shape[-1]
        rows = y.reshape(-1, C)
        dx = xp.empty_like(rows)
        if rows.size:
            run = (by_size(softmax_backward_cpu, softmax_backward_serial, rows.size) if xp is np
                   else gpu_kernels().softmax_backward_cuda)
            run(rows, xp.ascontiguousarray(g.reshape(-1, C), dtype=y.dtype), dx)
        return (dx.reshape(y.shape),)
