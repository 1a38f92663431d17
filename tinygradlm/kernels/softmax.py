"""Fused softmax over the last axis: one pass per row forward, one pass per row backward.

The math (the reference is ``functional.softmax``)::

    y = exp(x - max(x)) / sum(exp(x - max(x)))
    dx = y * (dy - sum(dy * y))

The composite makes ~6 passes over memory and keeps 4 temporaries alive for backward; the
fused kernel reads x once (three sweeps of a row that sits in cache) and saves only y.
"""
from __future__ import annotations

import numba
import numpy as np
from numba import prange

from ..autograd import Function
from ..backend import get_array_module
from . import gpu_kernels
from .jit import FASTMATH, by_size, fast_exp, serial_twin


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
    # x, y: (N, C) C-contiguous; rows in parallel.
    N, C = x.shape
    zero, one = x.dtype.type(0), x.dtype.type(1)
    for i in prange(N):
        m = row_max(x, i)
        s = zero
        for j in range(C):
            e = fast_exp(x[i, j] - m)
            y[i, j] = e
            s += e
        inv = one / s
        for j in range(C):
            y[i, j] *= inv


@numba.njit(parallel=True, cache=True, fastmath=FASTMATH)
def softmax_backward_cpu(y, dy, dx):
    # dx = y * (dy - sum(dy * y)) row by row.
    N, C = y.shape
    zero = y.dtype.type(0)
    for i in prange(N):
        dot = zero
        for j in range(C):
            dot += dy[i, j] * y[i, j]
        for j in range(C):
            dx[i, j] = y[i, j] * (dy[i, j] - dot)


softmax_forward_serial = serial_twin(softmax_forward_cpu)
softmax_backward_serial = serial_twin(softmax_backward_cpu)


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
